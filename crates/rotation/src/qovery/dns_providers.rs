//! A cluster's DNS provider (`/cluster/{clusterId}/dnsProvider`). A Route53 provider
//! with `STATIC` credentials holds an AWS key in `credentials.aws_access_key_id`.
//!
//! The spec says the key id "must be sent back when editing" and the secret "must be
//! provided on every edit": a PUT sends back `domain`, `aws_region` and
//! `hosted_zone_id` as read, with the new credentials. The engine gets the DNS
//! provider with each cluster deployment, and Qovery's console asks for a redeploy
//! after a DNS change, so the provider's cluster is redeployed.

use serde_json::{json, Map, Value};

use super::client::QoveryApi;
use super::error::QoveryError;
use super::holders::unexpected;
use super::holders::{key_field, text, ClusterRef, Edit, Holder, HolderKind};
use crate::secret::Secret;

/// Why a move to a role refuses a Route53 provider holding the key: the spec's
/// `Route53DnsProviderRequestCredentials` has one variant, `STATIC`.
pub(super) const NO_ROLE: &str =
    "a Route53 DNS provider takes only static credentials (Route53DnsProviderRequestCredentials has no role \
     variant), so it would lose its key; give it an IAM user of its own in the Qovery console, then start again";

/// The fields of a Route53 provider a PUT sends back, besides `credentials`.
const ROUTE53_FIELDS: [&str; 4] = ["provider", "domain", "aws_region", "hosted_zone_id"];

pub(super) async fn holders(
    api: &QoveryApi,
    token: &Secret,
    clusters: &[Map<String, Value>],
) -> Result<Vec<Holder>, QoveryError> {
    let mut holders = Vec::new();
    for cluster in clusters {
        let Some(id) = text(cluster, "id") else {
            continue;
        };
        let cluster_ref = ClusterRef {
            id: id.to_ascii_lowercase(),
            name: text(cluster, "name").unwrap_or_default(),
        };
        let path = format!("/cluster/{}/dnsProvider", cluster_ref.id);
        let answer = api.get_json(token, &path).await?;
        // An answer without a provider cannot say it holds no key: fail closed.
        let provider = answer
            .get("dns_provider")
            .and_then(Value::as_object)
            .filter(|p| text(p, "provider").is_some())
            .ok_or_else(|| unexpected(&path, "no `dns_provider.provider`"))?;
        if text(provider, "provider").as_deref() != Some("ROUTE53") {
            continue;
        }
        let credentials = provider.get("credentials").and_then(Value::as_object);
        let holding = key_field(credentials, "aws_access_key_id");
        let cannot_give = blocker(provider, credentials);
        holders.push(Holder {
            kind: HolderKind::DnsProvider,
            id: cluster_ref.id.clone(),
            name: text(provider, "domain").unwrap_or_default(),
            cluster: Some(cluster_ref.clone()),
            holding,
            redeploy: vec![cluster_ref],
            edit: if cannot_give.is_none() {
                Edit::DnsProvider {
                    provider: provider.clone(),
                }
            } else {
                Edit::None
            },
            cannot_give,
        });
    }
    Ok(holders)
}

fn blocker(
    provider: &Map<String, Value>,
    credentials: Option<&Map<String, Value>>,
) -> Option<String> {
    if let Some(field) = provider
        .keys()
        .find(|k| !ROUTE53_FIELDS.contains(&k.as_str()) && *k != "credentials")
    {
        return Some(format!(
            "Qovery returns a field `{field}` the rotation does not know, so a PUT could not send it back"
        ));
    }
    match credentials.and_then(|c| text(c, "type")).as_deref() {
        Some("STATIC") => {}
        other => {
            return Some(format!(
                "its credentials are of type {}, not STATIC",
                other.unwrap_or("unknown")
            ))
        }
    }
    if let Some(field) =
        credentials.and_then(|c| c.keys().find(|k| *k != "type" && *k != "aws_access_key_id"))
    {
        return Some(format!(
            "its credentials have a field `{field}` the rotation does not know"
        ));
    }
    None
}

pub(super) async fn give(
    api: &QoveryApi,
    token: &Secret,
    cluster_id: &str,
    provider: &Map<String, Value>,
    access_key_id: &str,
    secret_access_key: &Secret,
) -> Result<Option<String>, QoveryError> {
    let mut body = Map::new();
    for field in ROUTE53_FIELDS {
        if let Some(value) = provider.get(field) {
            body.insert(field.to_string(), value.clone());
        }
    }
    body.insert(
        "credentials".to_string(),
        json!({
            "type": "STATIC",
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key.expose(),
        }),
    );
    let answer = api
        .put_json(
            token,
            &format!("/cluster/{cluster_id}/dnsProvider"),
            json!({ "dns_provider": Value::Object(body) }),
            secret_access_key,
        )
        .await?;
    Ok(answer
        .get("dns_provider")
        .and_then(|p| p.get("credentials"))
        .and_then(|c| c.get("aws_access_key_id"))
        .and_then(Value::as_str)
        .map(str::to_string))
}
