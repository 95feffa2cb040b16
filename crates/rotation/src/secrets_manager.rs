//! Secrets Manager: the Qovery token, and the new key between its creation and the
//! moment Qovery holds it. Secrets live only here, never in the execution's state.
//!
//! Each execution keeps its new key in a secret of its own, created with the key and
//! deleted without a recovery window once Qovery holds the key (or the rollback removed
//! it): after a rotation no secret holds a secret access key.

use aws_sdk_secretsmanager::Client;
use serde::Deserialize;
use serde_json::json;

use crate::aws::AwsError;
use crate::secret::Secret;

/// A key as stored in the key secret: `{"access_key_id", "secret_access_key"}`.
#[derive(Debug, Deserialize)]
pub struct StoredKey {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// A plain-string secret, such as the Qovery API token.
pub async fn read_string(secrets: &Client, secret_id: &str) -> Result<Secret, AwsError> {
    crate::deadline::ensure_time_for("secretsmanager:GetSecretValue")?;
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

/// Creates secret `name` holding the key, as version `version_id`, and returns its
/// ARN. The same `version_id` again is a retry and stores nothing new. A failure's
/// message is scrubbed of the secret key.
pub async fn create_key_secret(
    secrets: &Client,
    name: &str,
    description: &str,
    version_id: &str,
    access_key_id: &str,
    secret_access_key: &Secret,
) -> Result<String, AwsError> {
    crate::deadline::ensure_time_for("secretsmanager:CreateSecret")?;
    let value = json!({
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key.expose(),
    });
    let output = secrets
        .create_secret()
        .name(name)
        .description(description)
        .client_request_token(version_id)
        .secret_string(value.to_string())
        .send()
        .await
        .map_err(|e| {
            // Secrets Manager's messages are not known to quote a value, but this call
            // carried the secret key: scrub it before it can reach an error.
            let mut error = AwsError::from_sdk("secretsmanager:CreateSecret", e);
            error.message = crate::secret::scrub_all(&error.message, &[secret_access_key]);
            error
        })?;
    Ok(output.arn().unwrap_or(name).to_string())
}

/// The key stored as `version_id` of `secret_id`, with the secret's ARN, or `None`
/// if there is no such secret or version (never created, or already deleted).
pub async fn read_key(
    secrets: &Client,
    secret_id: &str,
    version_id: &str,
) -> Result<Option<(String, StoredKey)>, AwsError> {
    crate::deadline::ensure_time_for("secretsmanager:GetSecretValue")?;
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
    let arn = output.arn().unwrap_or(secret_id).to_string();
    let text = output.secret_string().unwrap_or_default();
    let key = serde_json::from_str(text).map_err(|_| AwsError {
        operation: "secretsmanager:GetSecretValue",
        code: None,
        // serde's message could quote the value; say only where the problem is.
        message: format!("version {version_id} of {secret_id} is not a stored access key"),
        transient: false,
    })?;
    Ok(Some((arn, key)))
}

/// Deletes the key secret at once, without a recovery window. Returns false if it
/// was already gone.
pub async fn delete_key_secret(secrets: &Client, secret_id: &str) -> Result<bool, AwsError> {
    crate::deadline::ensure_time_for("secretsmanager:DeleteSecret")?;
    match secrets
        .delete_secret()
        .secret_id(secret_id)
        .force_delete_without_recovery(true)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) => {
            let error = AwsError::from_sdk("secretsmanager:DeleteSecret", e);
            if error.is_code("ResourceNotFoundException") {
                Ok(false)
            } else {
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_credential_types::Credentials;

    use super::*;

    const KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// A Secrets Manager that refuses every request with a message quoting its body,
    /// as a misbehaving service or proxy might.
    fn echoing_refusals() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let answer = json!({
                    "__type": "InvalidRequestException",
                    "message": format!("cannot create {}", String::from_utf8_lossy(&body)),
                })
                .to_string();
                let _ = reader.into_inner().write_all(
                    format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    )
                    .as_bytes(),
                );
            }
        });
        url
    }

    #[tokio::test]
    async fn a_failed_create_secret_message_carries_no_secret() {
        let config =
            SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .http_client(crate::http::aws_http_client())
                .region(Region::new("us-east-1"))
                .endpoint_url(echoing_refusals())
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(
                        Credentials::new("AKIATEST", "test-signing-secret", None, None, "test"),
                    ),
                )
                .build();
        let error = create_key_secret(
            &Client::new(&config),
            "qovery-key-rotator/qovery/run-1",
            "the new key",
            "11111111-2222-4333-8444-555555555555",
            "AKIANEWKEY",
            &Secret::new(KEY),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code.as_deref(), Some("InvalidRequestException"));
        let message = &error.message;
        for start in 0..=KEY.len() - crate::secret::PIECE {
            let piece = &KEY[start..start + crate::secret::PIECE];
            assert!(!message.contains(piece), "{piece:?} left in {message:?}");
        }
        assert!(
            message.contains("AKIANEWKEY") && message.contains("[redacted]"),
            "the refusal quoted the request: {message}"
        );
    }
}
