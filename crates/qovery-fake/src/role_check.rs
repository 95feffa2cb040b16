//! What a deploy does with a cluster whose credentials entry is an IAM role: Qovery
//! assumes the role, and a deployment whose role it cannot assume ends
//! `INVALID_CREDENTIALS`.
//!
//! A setting decides ([`RoleDeploys`]): always succeed, always fail, or really call
//! `sts:AssumeRole` as Qovery's principal (against moto: [`StsConfig`]), so that a role
//! whose trust policy refuses Qovery fails for a real reason. [`assume_role`] is the one
//! function that judges a role, async and called outside the state's lock.

use std::fmt;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How deploys on role credentials end: set with `--role-deploys` (or `--aws-endpoint`
/// and `--qovery-principal`), [`crate::FakeQovery::with_role_deploys`],
/// [`crate::RunningFake::set_role_deploys`] or `POST /_fake/role_deploys` (`succeed`
/// and `fail` only). A new seed keeps it: it is how the fake runs, not what Qovery holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RoleDeploys {
    /// Qovery assumes the role: the deployment ends as the cluster's `outcome` says.
    #[default]
    Succeed,
    /// Qovery cannot assume the role: the deployment ends `INVALID_CREDENTIALS`.
    Fail,
    /// Qovery calls `sts:AssumeRole` on the role as its own principal: the deployment
    /// ends as the cluster's `outcome` says if STS gives it credentials, and
    /// `INVALID_CREDENTIALS` if STS refuses (AWS's error code and message say why) or
    /// cannot be reached (fail closed).
    AssumeWithSts(StsConfig),
}

/// Where and as whom Qovery calls STS: an endpoint (moto's) and the access key of
/// Qovery's principal. Its `Debug` never shows the secret, and no error or log of the
/// fake carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsConfig {
    endpoint_url: String,
    access_key_id: String,
    secret_access_key: SecretKey,
    region: String,
}

/// A secret access key: shown as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
struct SecretKey(String);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The region Qovery's STS calls are signed for.
const STS_REGION: &str = "us-east-1";

/// The file `tests/workflow/moto_trust.py` writes (`QKR_MOTO_QOVERY_PRINCIPAL`): the
/// IAM user Qovery assumes roles with, and its key.
#[derive(Deserialize)]
struct PrincipalFile {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    arn: Option<String>,
}

impl StsConfig {
    /// STS at `endpoint_url` (like `http://127.0.0.1:5000`), called with this key in
    /// region `us-east-1`.
    pub fn new(
        endpoint_url: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint_url: endpoint_url.into(),
            access_key_id: access_key_id.into(),
            secret_access_key: SecretKey(secret_access_key.into()),
            region: STS_REGION.to_owned(),
        }
    }

    /// STS at `endpoint_url`, called with the key of the Qovery principal that
    /// `moto_trust.py` wrote to `path` (JSON with `access_key_id` and
    /// `secret_access_key`; its other fields, such as `arn`, are not needed). The error
    /// never quotes the file.
    pub fn from_principal_file(
        endpoint_url: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<Self, String> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // Every field read is a string, so serde's errors never quote a value.
        let principal: PrincipalFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a Qovery principal ({{\"access_key_id\", \"secret_access_key\", ...}}): {e}",
                path.display()
            )
        })?;
        if principal.access_key_id.is_empty() || principal.secret_access_key.is_empty() {
            return Err(format!(
                "{}: the Qovery principal's access key id or secret is empty",
                path.display()
            ));
        }
        if let Some(arn) = &principal.arn {
            tracing::info!(principal = arn.as_str(), "the Qovery principal");
        }
        Ok(Self::new(
            endpoint_url,
            principal.access_key_id,
            principal.secret_access_key,
        ))
    }

    pub fn endpoint_url(&self) -> &str {
        &self.endpoint_url
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    fn client(&self) -> aws_sdk_sts::Client {
        let credentials = Credentials::new(
            &self.access_key_id,
            &self.secret_access_key.0,
            None,
            None,
            "qovery-principal",
        );
        let config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .endpoint_url(&self.endpoint_url)
            .credentials_provider(credentials)
            .http_client(HTTP_CLIENT.clone())
            // One attempt, soon over: the deploy call waits for it.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(10))
                    .build(),
            )
            .build();
        aws_sdk_sts::Client::from_conf(config)
    }

    /// `sts:AssumeRole` as Qovery calls it: session `qovery-<first 8 characters of the
    /// cluster id>`, 900 seconds, no external id (Qovery's API has none).
    async fn assume(&self, cluster_id: Uuid, role_arn: &str) -> Result<(), String> {
        let cluster = cluster_id.to_string();
        let answer = self
            .client()
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(format!("qovery-{}", &cluster[..8]))
            .duration_seconds(900)
            .send()
            .await;
        match answer {
            Ok(output) => {
                let assumed = output.assumed_role_user().map(|u| u.arn()).unwrap_or("");
                tracing::info!(%cluster_id, role_arn, assumed, "role assumed");
                Ok(())
            }
            Err(SdkError::ServiceError(e)) => {
                let e = e.err();
                Err(format!(
                    "{}: {}",
                    e.code().unwrap_or("UnknownError"),
                    e.message().unwrap_or("(no message)")
                ))
            }
            Err(e) => {
                let error = format!(
                    "STS at {} gave no answer: {}",
                    self.endpoint_url,
                    DisplayErrorContext(&e)
                );
                tracing::warn!(
                    %cluster_id,
                    role_arn,
                    error = error.as_str(),
                    "sts:AssumeRole failed: the deployment ends INVALID_CREDENTIALS"
                );
                Err(error)
            }
        }
    }
}

/// The SDK's HTTP client, built once: plain HTTP (moto) or HTTPS.
static HTTP_CLIENT: LazyLock<SharedHttpClient> = LazyLock::new(|| {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
});

/// One deploy's attempt to assume a role, as the snapshot lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleCheck {
    pub cluster_id: String,
    pub role_arn: String,
    pub ok: bool,
    /// Why the role could not be assumed.
    #[serde(default)]
    pub error: Option<String>,
}

/// Whether Qovery could assume `role_arn` to deploy cluster `cluster_id`; `Err` says why
/// not, as AWS would.
pub(crate) async fn assume_role(
    setting: &RoleDeploys,
    cluster_id: Uuid,
    role_arn: &str,
) -> Result<(), String> {
    match setting {
        RoleDeploys::Succeed => Ok(()),
        RoleDeploys::Fail => Err(format!(
            "role deploys are set to fail: Qovery could not assume {role_arn} to deploy cluster {cluster_id}"
        )),
        RoleDeploys::AssumeWithSts(sts) => sts.assume(cluster_id, role_arn).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let sts = StsConfig::new(
            "http://127.0.0.1:1",
            "AKIAQOVERY",
            "s3cr3t-that-must-not-show",
        );
        let shown = format!("{:?} {:#?}", sts, RoleDeploys::AssumeWithSts(sts.clone()));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("AKIAQOVERY") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
