//! STS: proof that a key works before Qovery is given it.

use aws_config::SdkConfig;
use aws_credential_types::Credentials;

use crate::aws::AwsError;
use crate::secret::Secret;

/// The ARN STS reports for a caller signing with this key. Needs no IAM permission.
pub async fn caller_arn_with_key(
    sdk_config: &SdkConfig,
    access_key_id: &str,
    secret_access_key: &Secret,
) -> Result<String, AwsError> {
    crate::deadline::ensure_time_for("sts:GetCallerIdentity")?;
    let credentials = Credentials::new(
        access_key_id,
        secret_access_key.expose(),
        None,
        None,
        "qovery-key-rotator-new-key",
    );
    let config = aws_sdk_sts::config::Builder::from(sdk_config)
        .credentials_provider(credentials)
        .build();
    let output = aws_sdk_sts::Client::from_conf(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("sts:GetCallerIdentity", e))?;
    Ok(output.arn().unwrap_or_default().to_string())
}

/// Whether `arn` names the IAM user `user` (whatever its path).
pub fn is_user_arn(arn: &str, user: &str) -> bool {
    arn.split_once(":user/")
        .is_some_and(|(_, path_and_name)| path_and_name.rsplit('/').next() == Some(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_arns_match_by_name_whatever_the_path() {
        assert!(is_user_arn(
            "arn:aws:iam::123456789012:user/qovery",
            "qovery"
        ));
        assert!(is_user_arn(
            "arn:aws:iam::123456789012:user/ops/qovery",
            "qovery"
        ));
        assert!(!is_user_arn(
            "arn:aws:iam::123456789012:user/qovery-2",
            "qovery"
        ));
        assert!(!is_user_arn(
            "arn:aws:sts::123456789012:assumed-role/qovery/x",
            "qovery"
        ));
    }
}
