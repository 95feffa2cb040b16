//! Qovery's REST API: the five calls a rotation needs, typed as
//! `../shared/qovery-openapi.yaml` specifies them.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::RotationError;
use crate::secret::Secret;

/// A `Retry-After` up to this long is waited out in-process, once; a longer one goes
/// back to the state machine's Retry.
const MAX_INLINE_RETRY_AFTER_SECONDS: u64 = 10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// `ClusterCredentials` (an AWS static or role variant); the secret never comes back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AwsCredentials {
    pub id: String,
    pub name: String,
    /// `AWS` for static keys, `AWS_ROLE` for a role, which needs no rotation.
    pub object_type: String,
    #[serde(default)]
    pub access_key_id: Option<String>,
}

/// One entry of `listOrganizationCredentials`: credentials and the clusters using them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CredentialsUsage {
    pub credential: CredentialsHeader,
    #[serde(default)]
    pub clusters: Vec<CredentialCluster>,
}

/// The `credential` of a `listOrganizationCredentials` entry: a `ClusterCredentials`.
/// Static AWS keys (`object_type: "AWS"`) carry the `access_key_id` Qovery holds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CredentialsHeader {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub object_type: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<String>,
}

impl CredentialsHeader {
    /// Whether these are static AWS keys holding `access_key_id`.
    pub fn holds_aws_key(&self, access_key_id: &str) -> bool {
        self.object_type.as_deref() == Some("AWS")
            && self.access_key_id.as_deref() == Some(access_key_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CredentialCluster {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ClusterStatusList {
    #[serde(default)]
    results: Vec<ClusterStatus>,
}

#[derive(Debug, Deserialize)]
struct CredentialsUsageList {
    #[serde(default)]
    results: Vec<CredentialsUsage>,
}

/// `ClusterStatus`. Only the fields a rotation reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub status: ClusterState,
    /// "Has been deployed at some point": its infrastructure was installed.
    #[serde(default)]
    pub is_deployed: bool,
    #[serde(default)]
    pub last_execution_id: Option<String>,
    #[serde(default)]
    pub last_deployment_date: Option<String>,
}

/// A `ClusterStateEnum` value, kept as Qovery spelled it. The enum keeps growing, so
/// an unknown value is a class of its own, never a parse failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterState(pub String);

/// How a rotation treats each cluster state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateClass {
    /// `DEPLOYED`.
    Deployed,
    /// `*_ERROR` and `INVALID_CREDENTIALS` (what bad keys most likely give).
    Failed,
    /// `QUEUED`, `*_QUEUED`, `*ING`, and `DRY_RUN` (which Qovery's own clients disagree on).
    Busy,
    /// Terminal but not a deploy success: `READY`, `STOPPED`, `CANCELED`, `DELETED`, `RESTARTED`.
    Idle,
    /// A value this version does not know: treated as in progress.
    Unknown,
}

impl ClusterState {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn class(&self) -> StateClass {
        let s = self.0.as_str();
        match s {
            "DEPLOYED" => StateClass::Deployed,
            "INVALID_CREDENTIALS" => StateClass::Failed,
            "READY" | "STOPPED" | "CANCELED" | "DELETED" | "RESTARTED" => StateClass::Idle,
            "QUEUED" | "DRY_RUN" => StateClass::Busy,
            _ if s.ends_with("_ERROR") => StateClass::Failed,
            _ if s.ends_with("_QUEUED") || s.ends_with("ING") => StateClass::Busy,
            _ => StateClass::Unknown,
        }
    }
}

/// Why a Qovery call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QoveryErrorKind {
    /// 401 or 403: the token is wrong, expired, or lacks the permission.
    Unauthorized,
    /// 5xx, 429 or a network failure: worth retrying.
    Unavailable,
    /// Another 4xx, or a body that does not match the spec.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QoveryError {
    pub kind: QoveryErrorKind,
    /// e.g. `PUT /organization/{id}/aws/credentials/{id}`.
    pub operation: String,
    pub status: Option<u16>,
    /// Qovery's `detail` or `message`, or the raw body; scrubbed of secrets.
    pub detail: String,
    pub retry_after_seconds: Option<u64>,
}

impl QoveryError {
    /// The named error, with the step's `context` (which keys are live, what to do next).
    pub fn into_rotation_error(self, context: &str) -> RotationError {
        let status = self.status.map(|s| format!(" {s}")).unwrap_or_default();
        let what = format!(
            "Qovery answered{status} to {}: {}.",
            self.operation, self.detail
        );
        let error = match self.kind {
            QoveryErrorKind::Unauthorized => RotationError::QoveryUnauthorized(format!(
                "{what} The Qovery API token was refused: check that the token secret holds a valid organization API token with admin rights on this organization."
            )),
            QoveryErrorKind::Unavailable => {
                let retry = self
                    .retry_after_seconds
                    .map(|s| format!(" Qovery asked to retry after {s} s."))
                    .unwrap_or_default();
                RotationError::QoveryUnavailable(format!(
                    "{what}{retry} This is usually temporary and the state machine retries it."
                ))
            }
            QoveryErrorKind::Rejected => RotationError::QoveryRejected(format!(
                "{what} Check the organization, credentials and cluster ids in the execution input."
            )),
        };
        error.with_context(context)
    }
}

/// A client for Qovery's API. The token is passed to each call, not stored, so that it
/// is read from Secrets Manager when needed and dropped afterwards.
#[derive(Debug, Clone)]
pub struct QoveryApi {
    http: reqwest::Client,
    base_url: String,
}

impl QoveryApi {
    pub fn new(base_url: &str) -> Self {
        let http = crate::http::reqwest_builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("qovery-key-rotator/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with static settings always builds");
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    /// `getAWSCredentials`
    pub async fn get_aws_credentials(
        &self,
        token: &Secret,
        organization_id: &str,
        credentials_id: &str,
    ) -> Result<AwsCredentials, QoveryError> {
        let path = format!("/organization/{organization_id}/aws/credentials/{credentials_id}");
        self.call(Method::GET, &path, token, None, None).await
    }

    /// `editAWSCredentials` with an `AWS_STATIC` body. Qovery uses the new key at the
    /// next deployment of each cluster.
    pub async fn put_aws_static_credentials(
        &self,
        token: &Secret,
        organization_id: &str,
        credentials_id: &str,
        name: &str,
        access_key_id: &str,
        secret_access_key: &Secret,
    ) -> Result<AwsCredentials, QoveryError> {
        let path = format!("/organization/{organization_id}/aws/credentials/{credentials_id}");
        let body = json!({
            "type": "AWS_STATIC",
            "name": name,
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key.expose(),
        });
        self.call(
            Method::PUT,
            &path,
            token,
            Some(body),
            Some(secret_access_key),
        )
        .await
    }

    /// `listOrganizationCredentials`: every credentials set with the clusters using it.
    pub async fn list_organization_credentials(
        &self,
        token: &Secret,
        organization_id: &str,
    ) -> Result<Vec<CredentialsUsage>, QoveryError> {
        let path = format!("/organization/{organization_id}/credentials");
        let list: CredentialsUsageList = self.call(Method::GET, &path, token, None, None).await?;
        Ok(list.results)
    }

    /// `deployCluster` (no body; any 2xx is success).
    pub async fn deploy_cluster(
        &self,
        token: &Secret,
        organization_id: &str,
        cluster_id: &str,
    ) -> Result<ClusterStatus, QoveryError> {
        let path = format!("/organization/{organization_id}/cluster/{cluster_id}/deploy");
        self.call(Method::POST, &path, token, None, None).await
    }

    /// `getClusterStatus`
    pub async fn cluster_status(
        &self,
        token: &Secret,
        organization_id: &str,
        cluster_id: &str,
    ) -> Result<ClusterStatus, QoveryError> {
        let path = format!("/organization/{organization_id}/cluster/{cluster_id}/status");
        self.call(Method::GET, &path, token, None, None).await
    }

    /// `getOrganizationClusterStatus`: every cluster's status in one call.
    pub async fn organization_cluster_statuses(
        &self,
        token: &Secret,
        organization_id: &str,
    ) -> Result<Vec<ClusterStatus>, QoveryError> {
        let path = format!("/organization/{organization_id}/cluster/status");
        let list: ClusterStatusList = self.call(Method::GET, &path, token, None, None).await?;
        Ok(list.results)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &Secret,
        body: Option<Value>,
        also_secret: Option<&Secret>,
    ) -> Result<T, QoveryError> {
        let operation = format!("{method} {path}");
        let scrub = |text: &str| {
            let text = token.scrub(text);
            also_secret.map_or(text.clone(), |s| s.scrub(&text))
        };
        let mut waited_once = false;
        loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base_url))
                .header("Authorization", format!("Token {}", token.expose()))
                .header("Accept", "application/json");
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    return Err(QoveryError {
                        kind: QoveryErrorKind::Unavailable,
                        operation,
                        status: None,
                        detail: scrub(&format!("network error: {}", error_chain(&e))),
                        retry_after_seconds: None,
                    })
                }
            };
            let status = response.status();
            let retry_after_seconds = response
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let text = response.text().await.unwrap_or_default();
            tracing::info!(operation = %operation, status = status.as_u16(), "qovery call");

            if status.is_success() {
                return serde_json::from_str(&text).map_err(|e| QoveryError {
                    kind: QoveryErrorKind::Rejected,
                    operation: operation.clone(),
                    status: Some(status.as_u16()),
                    detail: format!("the response does not match Qovery's API spec ({e})"),
                    retry_after_seconds: None,
                });
            }
            let kind = classify(status);
            if kind == QoveryErrorKind::Unavailable && !waited_once {
                if let Some(wait) =
                    retry_after_seconds.filter(|s| *s <= MAX_INLINE_RETRY_AFTER_SECONDS)
                {
                    tracing::warn!(operation = %operation, status = status.as_u16(), wait, "qovery asked to retry later; waiting");
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    waited_once = true;
                    continue;
                }
            }
            return Err(QoveryError {
                kind,
                operation,
                status: Some(status.as_u16()),
                detail: scrub(&error_detail(&text)),
                retry_after_seconds,
            });
        }
    }
}

fn classify(status: StatusCode) -> QoveryErrorKind {
    match status.as_u16() {
        401 | 403 => QoveryErrorKind::Unauthorized,
        429 => QoveryErrorKind::Unavailable,
        s if s >= 500 => QoveryErrorKind::Unavailable,
        _ => QoveryErrorKind::Rejected,
    }
}

/// Qovery's clients read `detail` or `message` from an error body; keep the raw body
/// (shortened) when it has neither.
fn error_detail(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    field("detail")
        .or_else(|| field("message"))
        .or_else(|| field("error"))
        .unwrap_or_else(|| {
            let trimmed = body.trim();
            if trimmed.is_empty() {
                "(empty body)".to_string()
            } else {
                trimmed.chars().take(300).collect()
            }
        })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value of the spec's `ClusterStateEnum`, with the class a rotation gives it.
    const SPEC_STATES: [(&str, StateClass); 24] = [
        ("BUILDING", StateClass::Busy),
        ("BUILD_ERROR", StateClass::Failed),
        ("CANCELED", StateClass::Idle),
        ("CANCELING", StateClass::Busy),
        ("DELETED", StateClass::Idle),
        ("DELETE_ERROR", StateClass::Failed),
        ("DELETE_QUEUED", StateClass::Busy),
        ("DELETING", StateClass::Busy),
        ("DEPLOYED", StateClass::Deployed),
        ("DEPLOYING", StateClass::Busy),
        ("DEPLOYMENT_ERROR", StateClass::Failed),
        ("DEPLOYMENT_QUEUED", StateClass::Busy),
        ("DRY_RUN", StateClass::Busy),
        ("QUEUED", StateClass::Busy),
        ("READY", StateClass::Idle),
        ("STOPPED", StateClass::Idle),
        ("STOPPING", StateClass::Busy),
        ("STOP_ERROR", StateClass::Failed),
        ("STOP_QUEUED", StateClass::Busy),
        ("RESTART_QUEUED", StateClass::Busy),
        ("RESTARTING", StateClass::Busy),
        ("RESTARTED", StateClass::Idle),
        ("RESTART_ERROR", StateClass::Failed),
        ("INVALID_CREDENTIALS", StateClass::Failed),
    ];

    #[test]
    fn every_spec_state_has_its_class() {
        for (state, class) in SPEC_STATES {
            assert_eq!(ClusterState(state.into()).class(), class, "{state}");
        }
    }

    #[test]
    fn an_unknown_state_parses_and_is_unknown() {
        let status: ClusterStatus = serde_json::from_value(json!({
            "cluster_id": "c", "status": "HIBERNATED", "is_deployed": true, "reason": "UNSPECIFIED"
        }))
        .unwrap();
        assert_eq!(status.status.class(), StateClass::Unknown);
        assert_eq!(
            ClusterState("INTERNAL_ERROR".into()).class(),
            StateClass::Failed
        );
    }

    #[test]
    fn error_detail_prefers_detail_then_message() {
        assert_eq!(
            error_detail(r#"{"status":400,"detail":"bad name"}"#),
            "bad name"
        );
        assert_eq!(error_detail(r#"{"message":"nope","error":"x"}"#), "nope");
        assert_eq!(error_detail("plain"), "plain");
        assert_eq!(error_detail(""), "(empty body)");
    }
}
