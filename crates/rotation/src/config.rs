//! Settings from the environment, and the clients each step uses, built once per
//! Lambda sandbox.

use aws_config::SdkConfig;

use crate::error::RotationError;
use crate::qovery::QoveryApi;

pub const DEFAULT_QOVERY_API_URL: &str = "https://api.qovery.com";
pub const DEFAULT_KEY_SECRET_PREFIX: &str = "qovery-key-rotator";

/// The environment variables the functions read. These names are the contract with
/// template.yaml and the local tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `QOVERY_API_URL`
    pub qovery_api_url: String,
    /// `QOVERY_TOKEN_SECRET_ID`: the secret (name or ARN) that holds the API token.
    pub qovery_token_secret_id: String,
    /// `KEY_SECRET_PREFIX`: the new key lives in the secret `<prefix>/<iam_user_name>`.
    pub key_secret_prefix: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, RotationError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let qovery_token_secret_id = var("QOVERY_TOKEN_SECRET_ID").ok_or_else(|| {
            RotationError::InvalidInput(
                "The environment variable QOVERY_TOKEN_SECRET_ID is not set: it must name the Secrets Manager \
                 secret that holds the Qovery API token. Nothing was changed."
                    .to_string(),
            )
        })?;
        Ok(Self {
            qovery_api_url: var("QOVERY_API_URL")
                .unwrap_or_else(|| DEFAULT_QOVERY_API_URL.to_string()),
            qovery_token_secret_id,
            key_secret_prefix: var("KEY_SECRET_PREFIX")
                .unwrap_or_else(|| DEFAULT_KEY_SECRET_PREFIX.to_string()),
        })
    }

    /// The secret that holds the new key for `iam_user_name`.
    pub fn key_secret_name(&self, iam_user_name: &str) -> String {
        format!(
            "{}/{}",
            self.key_secret_prefix.trim_end_matches('/'),
            iam_user_name
        )
    }
}

/// The clients a step needs, passed by reference into every handler.
#[derive(Debug, Clone)]
pub struct Deps {
    pub settings: Settings,
    /// Kept to build an STS client signed with the new key.
    pub sdk_config: SdkConfig,
    pub iam: aws_sdk_iam::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub qovery: QoveryApi,
}

impl Deps {
    pub fn new(sdk_config: SdkConfig, settings: Settings) -> Self {
        Self {
            iam: aws_sdk_iam::Client::new(&sdk_config),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk_config),
            sfn: aws_sdk_sfn::Client::new(&sdk_config),
            qovery: QoveryApi::new(&settings.qovery_api_url),
            settings,
            sdk_config,
        }
    }

    /// Reads `AWS_*` (including `AWS_ENDPOINT_URL`) through aws-config. Every SDK client
    /// built from the config shares its HTTP client (`http::aws_http_client`).
    pub async fn from_env() -> Result<Self, RotationError> {
        let settings = Settings::from_env()?;
        let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(crate::http::aws_http_client())
            .load()
            .await;
        Ok(Self::new(sdk_config, settings))
    }
}
