//! The client: one method per Qovery call a rotation makes, and how a call is sent,
//! retried once on a short `Retry-After`, and turned into a typed answer or error.

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::cloud_provider_info::{CloudProviderInfoAnswer, CloudProviderInfoRequest};
use super::credentials::{
    AwsCredentials, CredentialsHeader, CredentialsUsage, CredentialsUsageList,
};
use super::error::{classify, error_chain, error_detail, QoveryError, QoveryErrorKind};
use super::status::{ClusterStatus, ClusterStatusList};
use crate::secret::{scrub_all, Secret};

/// A `Retry-After` up to this long is waited out in-process, once; a longer one goes
/// back to the state machine's Retry.
const MAX_INLINE_RETRY_AFTER_SECONDS: u64 = 10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
// A step keeps QOVERY_CALL_BUDGET for each request: the timeout must end sooner.
const _: () = assert!(REQUEST_TIMEOUT.as_secs() < crate::deadline::QOVERY_CALL_BUDGET.as_secs());

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
            // Never follow a redirect: reqwest would send a PUT's body, the new secret
            // key in it, again to wherever the Location points (307 and 308 keep it).
            .redirect(reqwest::redirect::Policy::none())
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

    /// `createAWSCredentials` with an `AwsRoleCredentialsRequest`, the body Qovery's
    /// console sends (`type` included: the spec requires it). Never retried in-process,
    /// even on a short `Retry-After`: a create is not idempotent, and an answer lost
    /// after Qovery applied it is found again by listing (`credentials::role_entry`).
    pub async fn create_aws_role_credentials(
        &self,
        token: &Secret,
        organization_id: &str,
        name: &str,
        role_arn: &str,
    ) -> Result<CredentialsHeader, QoveryError> {
        let path = format!("/organization/{organization_id}/aws/credentials");
        let body = json!({"type": "AWS_ROLE", "name": name, "role_arn": role_arn});
        let answer = self
            .send(Method::POST, &path, token, Some(body), None, Retry::Never)
            .await?;
        answer.decode(&[token])
    }

    /// `deleteAWSCredentials`: 204, no body.
    pub async fn delete_aws_credentials(
        &self,
        token: &Secret,
        organization_id: &str,
        credentials_id: &str,
    ) -> Result<(), QoveryError> {
        let path = format!("/organization/{organization_id}/aws/credentials/{credentials_id}");
        self.send(
            Method::DELETE,
            &path,
            token,
            None,
            None,
            Retry::OnShortRetryAfter,
        )
        .await
        .map(drop)
    }

    /// `getOrganizationCloudProviderInfo`: the credentials entry a cluster deploys with.
    pub(super) async fn cloud_provider_info(
        &self,
        token: &Secret,
        organization_id: &str,
        cluster_id: &str,
    ) -> Result<CloudProviderInfoAnswer, QoveryError> {
        let path = cloud_provider_info_path(organization_id, cluster_id);
        self.call(Method::GET, &path, token, None, None).await
    }

    /// `specifyClusterCloudProviderInfo`: points a cluster at another credentials
    /// entry, which its next deployment uses. Sending the same body twice is harmless.
    pub(super) async fn specify_cloud_provider_info(
        &self,
        token: &Secret,
        organization_id: &str,
        cluster_id: &str,
        request: &CloudProviderInfoRequest,
    ) -> Result<CloudProviderInfoAnswer, QoveryError> {
        let path = cloud_provider_info_path(organization_id, cluster_id);
        let body = serde_json::to_value(request).expect("a request of strings always serializes");
        self.call(Method::POST, &path, token, Some(body), None)
            .await
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

    /// A GET whose answer the holder modules read field by field (`qovery/registries.rs`,
    /// `qovery/secret_manager_accesses.rs`, `qovery/dns_providers.rs`): they must see
    /// every field Qovery returns, to send each one back, or to refuse.
    pub(super) async fn get_json(&self, token: &Secret, path: &str) -> Result<Value, QoveryError> {
        self.call(Method::GET, path, token, None, None).await
    }

    /// A PUT of a body that carries `secret` (a new secret access key): an error quotes
    /// only Qovery's `detail` or `message`, scrubbed of the secret.
    pub(super) async fn put_json(
        &self,
        token: &Secret,
        path: &str,
        body: Value,
        secret: &Secret,
    ) -> Result<Value, QoveryError> {
        self.call(Method::PUT, path, token, Some(body), Some(secret))
            .await
    }

    /// A PUT of a body that carries no secret (a role ARN): an error may quote the body.
    pub(super) async fn put_json_without_secret(
        &self,
        token: &Secret,
        path: &str,
        body: Value,
    ) -> Result<Value, QoveryError> {
        self.call(Method::PUT, path, token, Some(body), None).await
    }

    /// One call whose answer is JSON. `sent_secret` is a secret the body carries: an
    /// error then quotes only Qovery's `detail` or `message`, never the body. Whatever
    /// an error quotes is scrubbed of the token and of `sent_secret`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &Secret,
        body: Option<Value>,
        sent_secret: Option<&Secret>,
    ) -> Result<T, QoveryError> {
        let answer = self
            .send(
                method,
                path,
                token,
                body,
                sent_secret,
                Retry::OnShortRetryAfter,
            )
            .await?;
        let secrets: Vec<&Secret> = std::iter::once(token).chain(sent_secret).collect();
        answer.decode(&secrets)
    }

    /// One call: its 2xx answer, not yet read as JSON (a 204 has no body), or the error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: &Secret,
        body: Option<Value>,
        sent_secret: Option<&Secret>,
        retry: Retry,
    ) -> Result<Answer, QoveryError> {
        let operation = format!("{method} {path}");
        let secrets: Vec<&Secret> = std::iter::once(token).chain(sent_secret).collect();
        let scrub = |text: &str| scrub_all(text, &secrets);
        let mut waited_once = false;
        loop {
            // Never start a request the Lambda deadline could cut off halfway: a PUT
            // could apply with nobody left to see it.
            if let Some(why) = crate::deadline::shortfall(crate::deadline::QOVERY_CALL_BUDGET) {
                return Err(QoveryError {
                    kind: QoveryErrorKind::Unavailable,
                    operation,
                    status: None,
                    detail: format!("not sent: {why}"),
                    retry_after_seconds: None,
                });
            }
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
            let location = response
                .headers()
                .get("Location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = response.text().await.unwrap_or_default();
            tracing::info!(operation = %operation, status = status.as_u16(), "qovery call");

            if status.is_redirection() {
                // Not followed: whatever it points at is not Qovery's API. For a PUT the
                // request reached something that may have applied it; the hand-over's
                // reconcile decides.
                return Err(QoveryError {
                    kind: QoveryErrorKind::Rejected,
                    operation,
                    status: Some(status.as_u16()),
                    detail: scrub(&format!(
                        "a redirect to {}, which the rotation never follows (a request may carry a secret key); \
                         check QOVERY_API_URL and what sits between the functions and Qovery",
                        location.as_deref().unwrap_or("(no Location)")
                    )),
                    retry_after_seconds: None,
                });
            }

            if status.is_success() {
                return Ok(Answer {
                    operation,
                    status: status.as_u16(),
                    text,
                });
            }
            let kind = classify(status);
            if kind == QoveryErrorKind::Unavailable
                && retry == Retry::OnShortRetryAfter
                && !waited_once
            {
                if let Some(wait) = retry_after_seconds
                    .filter(|s| *s <= MAX_INLINE_RETRY_AFTER_SECONDS)
                    .filter(|s| {
                        crate::deadline::fits(
                            crate::deadline::QOVERY_CALL_BUDGET + Duration::from_secs(*s),
                        )
                    })
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
                detail: error_detail(&text, sent_secret.is_none(), &secrets),
                retry_after_seconds,
            });
        }
    }
}

/// Whether a call is sent again, once, after a short `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    OnShortRetryAfter,
    Never,
}

/// A 2xx answer, as Qovery sent it.
struct Answer {
    operation: String,
    status: u16,
    text: String,
}

impl Answer {
    /// The answer as `T`, or an error quoting serde's message scrubbed of `secrets`
    /// (serde's message may quote a value of the body).
    fn decode<T: DeserializeOwned>(self, secrets: &[&Secret]) -> Result<T, QoveryError> {
        serde_json::from_str(&self.text).map_err(|e| QoveryError {
            kind: QoveryErrorKind::Rejected,
            operation: self.operation,
            status: Some(self.status),
            detail: scrub_all(
                &format!("the response does not match Qovery's API spec ({e})"),
                secrets,
            ),
            retry_after_seconds: None,
        })
    }
}

fn cloud_provider_info_path(organization_id: &str, cluster_id: &str) -> String {
    format!("/organization/{organization_id}/cluster/{cluster_id}/cloudProviderInfo")
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    const TOKEN: &str = "qov_t0ken-that-must-never-leak-8c1f";
    const KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// A server that answers every request with 200 and `body`.
    pub(in crate::qovery) fn answering(body: String) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = stream.read(&mut [0u8; 8192]);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        url
    }

    /// `text` quoted something in place of a secret, and no piece of either is left.
    fn assert_scrubbed(text: &str) {
        for secret in [TOKEN, KEY] {
            for start in 0..=secret.len() - crate::secret::PIECE {
                let piece = &secret[start..start + crate::secret::PIECE];
                assert!(!text.contains(piece), "{piece:?} left in {text:?}");
            }
        }
        assert!(text.contains("[redacted]"), "nothing was quoted: {text}");
    }

    #[tokio::test]
    async fn network_and_parse_errors_from_qovery_carry_no_secret() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let token = Secret::new(TOKEN);
        let key = Secret::new(KEY);

        // A network error quotes the URL: here one that carries the token.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let api = QoveryApi::new(&format!("http://{closed}/{TOKEN}"));
        let error = api
            .cluster_status(&token, "org", "cluster")
            .await
            .unwrap_err();
        assert_eq!(error.kind, QoveryErrorKind::Unavailable);
        assert!(
            error.detail.starts_with("network error"),
            "{}",
            error.detail
        );
        assert_scrubbed(&error.detail);

        // A 200 that does not parse: serde quotes the string it found, here an echo of
        // the request: a PUT's secret key and the token; a GET's token.
        let echo = |text: String| answering(serde_json::to_string(&text).unwrap());
        let put = QoveryApi::new(&echo(format!(
            "secret_access_key={KEY} Authorization: Token {TOKEN}"
        )))
        .put_aws_static_credentials(&token, "org", "creds", "aws-prod", "AKIANEW", &key)
        .await
        .unwrap_err();
        let get = QoveryApi::new(&echo(format!("Authorization: Token {TOKEN}")))
            .list_organization_credentials(&token, "org")
            .await
            .unwrap_err();
        for error in [put, get] {
            assert_eq!(error.kind, QoveryErrorKind::Rejected);
            assert!(
                error.detail.contains("does not match Qovery's API spec"),
                "{}",
                error.detail
            );
            assert_scrubbed(&error.detail);
        }
    }
}
