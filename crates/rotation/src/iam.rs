//! IAM: the access keys of the user Qovery signs in as.

use aws_sdk_iam::Client;
use aws_smithy_types::date_time::Format;

use crate::aws::AwsError;
use crate::secret::Secret;
use crate::state::{KeySummary, LastUse};

/// Every access key of `user` (IAM allows two at most).
pub async fn list_access_keys(iam: &Client, user: &str) -> Result<Vec<KeySummary>, AwsError> {
    crate::deadline::ensure_time_for("iam:ListAccessKeys")?;
    let output = iam
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("iam:ListAccessKeys", e))?;
    Ok(output
        .access_key_metadata()
        .iter()
        .map(|k| KeySummary {
            access_key_id: k.access_key_id().unwrap_or_default().to_string(),
            status: k
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            create_date: k
                .create_date()
                .and_then(|d| d.fmt(Format::DateTime).ok())
                .unwrap_or_default(),
        })
        .collect())
}

/// Creates a key and returns its id and secret. The secret exists only here: IAM never
/// shows it again, so the caller must store it before doing anything else.
pub async fn create_access_key(iam: &Client, user: &str) -> Result<(String, Secret), AwsError> {
    crate::deadline::ensure_time_for("iam:CreateAccessKey")?;
    let output = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("iam:CreateAccessKey", e))?;
    let key = output.access_key().ok_or_else(|| AwsError {
        operation: "iam:CreateAccessKey",
        code: None,
        message: "the response holds no access key".to_string(),
        transient: false,
    })?;
    Ok((
        key.access_key_id().to_string(),
        Secret::new(key.secret_access_key()),
    ))
}

pub async fn delete_access_key(
    iam: &Client,
    user: &str,
    access_key_id: &str,
) -> Result<(), AwsError> {
    crate::deadline::ensure_time_for("iam:DeleteAccessKey")?;
    iam.delete_access_key()
        .user_name(user)
        .access_key_id(access_key_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("iam:DeleteAccessKey", e))?;
    Ok(())
}

/// Makes a key `Active` or `Inactive`. The rollback deactivates the new key before it
/// asks Qovery one last time, so that a key Qovery took at the last moment can be
/// turned back on instead of being lost.
pub async fn set_access_key_active(
    iam: &Client,
    user: &str,
    access_key_id: &str,
    active: bool,
) -> Result<(), AwsError> {
    crate::deadline::ensure_time_for("iam:UpdateAccessKey")?;
    let status = if active {
        aws_sdk_iam::types::StatusType::Active
    } else {
        aws_sdk_iam::types::StatusType::Inactive
    };
    iam.update_access_key()
        .user_name(user)
        .access_key_id(access_key_id)
        .status(status)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("iam:UpdateAccessKey", e))?;
    Ok(())
}

/// When, by which service and in which region `access_key_id` was last used, as IAM
/// reports it; `None` if it never was. IAM documents no delay for this data: a steady
/// caller shows, a single late call may not yet.
pub async fn access_key_last_used(
    iam: &Client,
    access_key_id: &str,
) -> Result<Option<LastUse>, AwsError> {
    crate::deadline::ensure_time_for("iam:GetAccessKeyLastUsed")?;
    let output = iam
        .get_access_key_last_used()
        .access_key_id(access_key_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("iam:GetAccessKeyLastUsed", e))?;
    Ok(output.access_key_last_used().and_then(|used| {
        let at = used.last_used_date()?.fmt(Format::DateTime).ok()?;
        Some(LastUse {
            at,
            service: used.service_name().to_string(),
            region: used.region().to_string(),
        })
    }))
}

/// What `iam:GetRole` tells of the role a migration hands Qovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFound {
    /// With its path, to compare with the ARN the operator gave.
    pub arn: String,
    /// `AssumeRolePolicyDocument` as IAM sends it: URL-encoded, and aws-sdk-iam does not
    /// decode it (`iam_role::decode_trust_policy` does). Not a secret; empty if absent.
    pub trust_policy_raw: String,
}

/// The role named `role_name` (the last segment of its ARN: GetRole takes no path).
/// `NoSuchEntity` when it does not exist.
pub async fn get_role(iam: &Client, role_name: &str) -> Result<RoleFound, AwsError> {
    crate::deadline::ensure_time_for("iam:GetRole")?;
    let output = iam
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("iam:GetRole", e))?;
    let role = output.role().ok_or_else(|| AwsError {
        operation: "iam:GetRole",
        code: None,
        message: "the response holds no role".to_string(),
        transient: false,
    })?;
    Ok(RoleFound {
        arn: role.arn().to_string(),
        trust_policy_raw: role
            .assume_role_policy_document()
            .unwrap_or_default()
            .to_string(),
    })
}
