//! Secrets Manager: the Qovery token, and the new key between its creation and its
//! hand-over to Qovery. Secrets live only here, never in the execution's state.

use aws_sdk_secretsmanager::Client;
use serde::Deserialize;
use serde_json::json;

use crate::aws::AwsError;
use crate::secret::Secret;

pub const AWSCURRENT: &str = "AWSCURRENT";
pub const AWSPENDING: &str = "AWSPENDING";

/// A key as stored in the key secret: `{"access_key_id", "secret_access_key"}`.
#[derive(Debug, Deserialize)]
pub struct StoredKey {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// A plain-string secret, such as the Qovery API token.
pub async fn read_string(secrets: &Client, secret_id: &str) -> Result<Secret, AwsError> {
    let output = secrets
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("secretsmanager:GetSecretValue", e))?;
    Ok(Secret::new(
        output.secret_string().unwrap_or_default().trim(),
    ))
}

/// The ARN of secret `name`. A new secret starts with a version that records
/// `current_access_key_id` (without its secret, which only IAM's creator ever saw),
/// staged `AWSCURRENT`: Secrets Manager would otherwise stage the first stored key
/// `AWSCURRENT` too, and `AWSCURRENT` must always name the key Qovery holds.
pub async fn ensure_secret(
    secrets: &Client,
    name: &str,
    description: &str,
    current_access_key_id: &str,
) -> Result<String, AwsError> {
    // Create first, describe only if it exists: describing a secret that does not
    // exist can be refused as AccessDenied under a policy scoped to `<name>-??????`.
    let created = secrets
        .create_secret()
        .name(name)
        .description(description)
        .secret_string(
            json!({
                "access_key_id": current_access_key_id,
                "secret_access_key": null,
                "note": "The key Qovery held before qovery-key-rotator first rotated it; its secret is not stored here.",
            })
            .to_string(),
        )
        .send()
        .await;
    match created {
        Ok(output) => return Ok(output.arn().unwrap_or(name).to_string()),
        Err(e) => {
            let error = AwsError::from_sdk("secretsmanager:CreateSecret", e);
            if !error.is_code("ResourceExistsException") {
                return Err(error);
            }
        }
    }
    let output = secrets
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("secretsmanager:DescribeSecret", e))?;
    Ok(output.arn().unwrap_or(name).to_string())
}

/// Stores a new key as version `version_id`, staged `AWSPENDING`. The same
/// `version_id` twice stores nothing new: Secrets Manager treats it as a retry.
pub async fn put_pending_key(
    secrets: &Client,
    secret_id: &str,
    version_id: &str,
    access_key_id: &str,
    secret_access_key: &Secret,
) -> Result<(), AwsError> {
    let value = json!({
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key.expose(),
    });
    secrets
        .put_secret_value()
        .secret_id(secret_id)
        .client_request_token(version_id)
        .secret_string(value.to_string())
        .version_stages(AWSPENDING)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("secretsmanager:PutSecretValue", e))?;
    Ok(())
}

/// The key stored as `version_id`, or `None` if there is no such version.
pub async fn read_key_version(
    secrets: &Client,
    secret_id: &str,
    version_id: &str,
) -> Result<Option<StoredKey>, AwsError> {
    let output = match secrets
        .get_secret_value()
        .secret_id(secret_id)
        .version_id(version_id)
        .send()
        .await
    {
        Ok(output) => output,
        Err(e) => {
            let error = AwsError::from_sdk("secretsmanager:GetSecretValue", e);
            return if error.is_code("ResourceNotFoundException") {
                Ok(None)
            } else {
                Err(error)
            };
        }
    };
    let text = output.secret_string().unwrap_or_default();
    serde_json::from_str(text).map(Some).map_err(|_| AwsError {
        operation: "secretsmanager:GetSecretValue",
        code: None,
        // serde's message could quote the value; say only where the problem is.
        message: format!("version {version_id} of {secret_id} is not a stored access key"),
        transient: false,
    })
}

/// Each version of the secret with its stages.
pub async fn version_stages(
    secrets: &Client,
    secret_id: &str,
) -> Result<Vec<(String, Vec<String>)>, AwsError> {
    let output = secrets
        .describe_secret()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("secretsmanager:DescribeSecret", e))?;
    Ok(output
        .version_ids_to_stages()
        .map(|m| m.iter().map(|(v, s)| (v.clone(), s.clone())).collect())
        .unwrap_or_default())
}

/// The version holding `stage`, if any.
fn version_with<'a>(stages: &'a [(String, Vec<String>)], stage: &str) -> Option<&'a str> {
    stages
        .iter()
        .find(|(_, s)| s.iter().any(|s| s == stage))
        .map(|(v, _)| v.as_str())
}

/// Makes `version_id` the `AWSCURRENT` version and drops its `AWSPENDING` stage:
/// the secret then says which key Qovery holds.
pub async fn make_current(
    secrets: &Client,
    secret_id: &str,
    version_id: &str,
) -> Result<(), AwsError> {
    let stages = version_stages(secrets, secret_id).await?;
    let current = version_with(&stages, AWSCURRENT);
    if current != Some(version_id) {
        let mut request = secrets
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(AWSCURRENT)
            .move_to_version_id(version_id);
        if let Some(current) = current {
            request = request.remove_from_version_id(current);
        }
        request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:UpdateSecretVersionStage", e))?;
    }
    if version_with(&stages, AWSPENDING) == Some(version_id) {
        remove_pending(secrets, secret_id, version_id).await?;
    }
    Ok(())
}

/// Removes the `AWSPENDING` stage from whichever version has it, and returns that
/// version: after a rollback, no key should look like a hand-over in progress.
pub async fn unstage_pending(
    secrets: &Client,
    secret_id: &str,
) -> Result<Option<String>, AwsError> {
    let stages = version_stages(secrets, secret_id).await?;
    let Some(pending) = version_with(&stages, AWSPENDING) else {
        return Ok(None);
    };
    remove_pending(secrets, secret_id, pending).await?;
    Ok(Some(pending.to_string()))
}

async fn remove_pending(
    secrets: &Client,
    secret_id: &str,
    version_id: &str,
) -> Result<(), AwsError> {
    secrets
        .update_secret_version_stage()
        .secret_id(secret_id)
        .version_stage(AWSPENDING)
        .remove_from_version_id(version_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("secretsmanager:UpdateSecretVersionStage", e))?;
    Ok(())
}
