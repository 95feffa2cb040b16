//! A cluster's secret manager accesses (`secret_manager_accesses` of each `Cluster`).
//!
//! An access with `authentication.mode: AWS_STATIC_CREDENTIALS` holds an AWS key in
//! `access_key`. Qovery edits accesses only through the whole cluster (`editCluster`,
//! `ClusterRequest`), and a cluster read cannot be sent back whole: `Cluster` does not
//! return `cloud_provider_credentials`, returns `features` in another shape than
//! `ClusterRequest` takes (`ClusterFeatureResponse` against `{id, value}`), and never
//! returns an access's `secret_key`, whose omission the spec does not define. So the
//! rotation never edits them: preflight refuses while one holds the key, and the delete
//! is refused while one does.

use serde_json::{Map, Value};

use super::client::QoveryApi;
use super::error::QoveryError;
use super::holders::{key_field, text, ClusterRef, Edit, Holder, HolderKind, Holding};
use crate::secret::Secret;

pub(super) const CANNOT_GIVE: &str =
    "Qovery edits a secret manager access only through its whole cluster \
     (editCluster), which a rotation cannot send back without losing settings";

/// Why a move to a role refuses an access holding the key, and what to do instead.
pub(super) const TO_ROLE: &str =
    "a secret manager access is edited only through its whole cluster, which this tool never sends; \
     switch it to AWS_ROLE_ARN (the role) in the Qovery console, then start again";

/// `listOrganizationCluster`: every cluster of the organization, as JSON objects.
pub(super) async fn clusters(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
) -> Result<Vec<Map<String, Value>>, QoveryError> {
    let path = format!("/organization/{organization_id}/cluster");
    let list = api.get_json(token, &path).await?;
    Ok(super::holders::results(&list, &path)?
        .iter()
        .filter_map(|v| v.as_object().cloned())
        .collect())
}

pub(super) fn holders(clusters: &[Map<String, Value>]) -> Vec<Holder> {
    let mut holders = Vec::new();
    for cluster in clusters {
        let cluster_ref = ClusterRef {
            id: text(cluster, "id").unwrap_or_default().to_ascii_lowercase(),
            name: text(cluster, "name").unwrap_or_default(),
        };
        let accesses = cluster
            .get("secret_manager_accesses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for access in accesses.iter().filter_map(Value::as_object) {
            let authentication = access.get("authentication").and_then(Value::as_object);
            let holding = match authentication.and_then(|a| text(a, "mode")).as_deref() {
                Some("AWS_STATIC_CREDENTIALS") => key_field(authentication, "access_key"),
                Some("AWS_ROLE_ARN") => Holding::Role(
                    authentication
                        .and_then(|a| text(a, "role_arn"))
                        .unwrap_or_default(),
                ),
                Some("AUTOMATICALLY_CONFIGURED" | "GCP_JSON_CREDENTIALS") => Holding::Nothing,
                // A mode this version does not know may carry a key: fail closed.
                _ => Holding::Unreadable,
            };
            holders.push(Holder {
                kind: HolderKind::SecretManagerAccess,
                id: text(access, "id").unwrap_or_default().to_ascii_lowercase(),
                name: text(access, "name").unwrap_or_default(),
                cluster: Some(cluster_ref.clone()),
                holding,
                cannot_give: Some(CANNOT_GIVE.to_string()),
                redeploy: vec![cluster_ref.clone()],
                edit: Edit::None,
            });
        }
    }
    holders
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn access(authentication: Value) -> Holder {
        let cluster = json!({"id": "C", "name": "c", "secret_manager_accesses": [
            {"id": "A", "name": "a", "authentication": authentication}
        ]});
        holders(&[cluster.as_object().cloned().unwrap()]).remove(0)
    }

    #[test]
    fn a_mode_this_version_does_not_know_counts_as_holding_every_key() {
        let unknown = access(json!({"mode": "AWS_SOMETHING_NEW", "key": "AKIAOLD"}));
        assert_eq!(unknown.holding, Holding::Unreadable);
        let missing = access(json!({}));
        assert_eq!(missing.holding, Holding::Unreadable);
        let static_key = access(json!({"mode": "AWS_STATIC_CREDENTIALS", "access_key": "AKIAOLD"}));
        assert!(static_key.holds("AKIAOLD") && static_key.cannot_give.is_some());
        let automatic = access(json!({"mode": "AUTOMATICALLY_CONFIGURED"}));
        assert_eq!(automatic.holding, Holding::Nothing);
    }
}
