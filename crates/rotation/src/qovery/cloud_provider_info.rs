//! Which credentials entry a cluster deploys with (`cloudProviderInfo`), and moving it
//! to another: how a migration points clusters at role credentials, and back.
//!
//! The POST sends what Qovery's console sends: `cloud_provider` and `region` as the GET
//! gave them, and the target entry's `id` and `name`. Terraform's provider puts the
//! cluster's name in `credentials.name`; the console's body is the one Qovery's own UI
//! is known to get through. A cluster uses the entry from its next deployment on.

use serde::{Deserialize, Serialize};

use super::client::QoveryApi;
use super::error::{QoveryError, QoveryErrorKind};
use crate::secret::Secret;

/// A credentials entry as `cloudProviderInfo` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsRef {
    pub id: String,
    pub name: String,
}

impl CredentialsRef {
    /// The same entry (ids compared without case, as holders do).
    pub fn is(&self, other: &CredentialsRef) -> bool {
        self.id.eq_ignore_ascii_case(&other.id)
    }
}

/// `ClusterCloudProviderInfo`, every field present: what a POST must send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudProviderInfo {
    pub cloud_provider: String,
    pub region: String,
    pub credentials: CredentialsRef,
}

/// `ClusterCloudProviderInfo` as the spec has it: no field is required.
#[derive(Debug, Deserialize)]
pub(super) struct CloudProviderInfoAnswer {
    #[serde(default)]
    cloud_provider: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    credentials: Option<CredentialsAnswer>,
}

#[derive(Debug, Deserialize)]
struct CredentialsAnswer {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// `ClusterCloudProviderInfoRequest`, as the console fills it.
#[derive(Debug, Serialize)]
pub(super) struct CloudProviderInfoRequest {
    cloud_provider: String,
    credentials: CredentialsRef,
    region: String,
}

/// What [`point_cluster`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The entry the cluster was on before.
    pub from: CredentialsRef,
    /// It was on the target already: nothing was sent.
    pub already: bool,
}

impl CloudProviderInfoAnswer {
    /// Every field, or an error naming the missing one: a POST built from an answer
    /// without its region could move the cluster's region.
    fn complete(self, operation: &str) -> Result<CloudProviderInfo, QoveryError> {
        let missing = |field: &str| {
            QoveryError {
            kind: QoveryErrorKind::Rejected,
            operation: operation.to_string(),
            status: None,
            detail: format!(
                "an answer the rotation cannot rely on (no `{field}`, which moving the cluster must send back)"
            ),
            retry_after_seconds: None,
        }
        };
        let present = |value: Option<String>, field: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| missing(field))
        };
        let credentials = self.credentials.ok_or_else(|| missing("credentials"))?;
        Ok(CloudProviderInfo {
            cloud_provider: present(self.cloud_provider, "cloud_provider")?,
            region: present(self.region, "region")?,
            credentials: CredentialsRef {
                id: present(credentials.id, "credentials.id")?,
                name: credentials.name.unwrap_or_default(),
            },
        })
    }
}

/// The entry a cluster deploys with now, with its cloud provider and region.
pub async fn cloud_provider_info(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
    cluster_id: &str,
) -> Result<CloudProviderInfo, QoveryError> {
    api.cloud_provider_info(token, organization_id, cluster_id)
        .await?
        .complete(&format!(
            "GET /organization/{organization_id}/cluster/{cluster_id}/cloudProviderInfo"
        ))
}

/// Points a cluster at entry `to`, which its next deployment uses (the caller redeploys
/// it). Reads first: a cluster already on `to` is sent nothing, so a retry is a no-op.
/// Qovery's answer must show `to`, else the move is an error.
pub async fn point_cluster(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
    cluster_id: &str,
    to: &CredentialsRef,
) -> Result<Moved, QoveryError> {
    let now = cloud_provider_info(api, token, organization_id, cluster_id).await?;
    if now.credentials.is(to) {
        return Ok(Moved {
            from: now.credentials,
            already: true,
        });
    }
    let request = CloudProviderInfoRequest {
        cloud_provider: now.cloud_provider,
        credentials: to.clone(),
        region: now.region,
    };
    let operation =
        format!("POST /organization/{organization_id}/cluster/{cluster_id}/cloudProviderInfo");
    let answer = api
        .specify_cloud_provider_info(token, organization_id, cluster_id, &request)
        .await?;
    let on = answer.credentials.and_then(|c| c.id);
    if !on
        .as_deref()
        .is_some_and(|id| id.eq_ignore_ascii_case(&to.id))
    {
        return Err(QoveryError {
            kind: QoveryErrorKind::Rejected,
            operation,
            status: None,
            detail: format!(
                "Qovery accepted the move to credentials {} ({}) but answered that the cluster uses {}",
                to.name,
                to.id,
                on.as_deref().unwrap_or("no credentials")
            ),
            retry_after_seconds: None,
        });
    }
    Ok(Moved {
        from: now.credentials,
        already: false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::qovery::client::tests::answering;

    const ORG: &str = "org";

    fn to() -> CredentialsRef {
        CredentialsRef {
            id: "ROLE-ENTRY".into(),
            name: "qovery-role".into(),
        }
    }

    #[tokio::test]
    async fn a_move_qovery_answers_with_other_credentials_is_an_error() {
        // Every call, the POST included, answers that the cluster is on "STATIC".
        let api = QoveryApi::new(&answering(
            json!({"cloud_provider": "AWS", "region": "eu-west-3",
                   "credentials": {"id": "STATIC", "name": "aws-prod"}})
            .to_string(),
        ));
        let error = point_cluster(&api, &Secret::new("t"), ORG, "cluster", &to())
            .await
            .unwrap_err();
        assert_eq!(error.kind, QoveryErrorKind::Rejected);
        assert!(error.operation.starts_with("POST "), "{}", error.operation);
        assert!(
            error.detail.contains("ROLE-ENTRY") && error.detail.contains("STATIC"),
            "{}",
            error.detail
        );

        // Already there by the GET (ids compared without case): nothing is sent.
        let there = CredentialsRef {
            id: "static".into(),
            name: "aws-prod".into(),
        };
        let moved = point_cluster(&api, &Secret::new("t"), ORG, "cluster", &there)
            .await
            .unwrap();
        assert!(moved.already);
    }

    #[tokio::test]
    async fn an_answer_missing_what_a_move_sends_back_moves_nothing() {
        for (answer, missing) in [
            (
                json!({"cloud_provider": "AWS", "credentials": {"id": "S", "name": "s"}}),
                "`region`",
            ),
            (
                json!({"region": "r", "credentials": {"id": "S", "name": "s"}}),
                "`cloud_provider`",
            ),
            (
                json!({"cloud_provider": "AWS", "region": ""}),
                "`credentials`",
            ),
            (
                json!({"cloud_provider": "AWS", "region": "r", "credentials": {"name": "s"}}),
                "`credentials.id`",
            ),
        ] {
            let api = QoveryApi::new(&answering(answer.to_string()));
            let error = point_cluster(&api, &Secret::new("t"), ORG, "cluster", &to())
                .await
                .unwrap_err();
            assert!(error.operation.starts_with("GET "), "{}", error.operation);
            assert!(error.detail.contains(missing), "{answer}: {}", error.detail);
        }
    }
}
