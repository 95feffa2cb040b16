//! Cloud provider credentials as Qovery returns them. The secret never comes back.

use serde::Deserialize;

use super::client::QoveryApi;
use super::error::{QoveryError, QoveryErrorKind};
use super::holders::{ClusterRef, Edit, Holder, HolderKind, Holding};
use crate::secret::Secret;

/// `ClusterCredentials` (an AWS static or role variant).
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
    #[serde(default)]
    pub role_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CredentialCluster {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `OrganizationCrendentialsResponseList` (sic, as the spec spells it).
#[derive(Debug, Deserialize)]
pub(super) struct CredentialsUsageList {
    #[serde(default)]
    pub(super) results: Vec<CredentialsUsage>,
}

/// Every credentials entry of the organization as a holder. Static AWS keys
/// (`object_type: "AWS"`) are given a new key with `editAWSCredentials` and take it at
/// their clusters' next deployment, so their clusters are redeployed.
pub(super) async fn holders(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
) -> Result<Vec<Holder>, QoveryError> {
    let usages = api
        .list_organization_credentials(token, organization_id)
        .await?;
    Ok(usages.iter().map(holder).collect())
}

fn holder(usage: &CredentialsUsage) -> Holder {
    let c = &usage.credential;
    let key = || match c.access_key_id.as_deref() {
        Some(k) if !k.is_empty() => Holding::Key(k.to_string()),
        _ => Holding::Unreadable,
    };
    let object_type = c.object_type.as_deref().unwrap_or("");
    let (holding, cannot_give) = match object_type {
        "AWS" => (key(), None),
        "AWS_ROLE" => (
            Holding::Role(c.role_arn.clone().unwrap_or_default()),
            None,
        ),
        // EKS Anywhere keeps an AWS key beside vSphere credentials; the rotation only
        // sends AWS_STATIC bodies, which would turn the entry into another type.
        "EKS_ANYWHERE_VSPHERE" => match (&c.access_key_id, &c.role_arn) {
            (None, Some(arn)) => (Holding::Role(arn.clone()), None),
            _ => (
                key(),
                Some(
                    "EKS Anywhere (vSphere) credentials are edited with their vSphere user and password, which \
                     the rotation does not have"
                        .to_string(),
                ),
            ),
        },
        // Scaleway, GCP, Azure, generic: no AWS key. An unknown type showing an AWS key
        // id still counts, so that the key is never deleted under it.
        _ => match &c.access_key_id {
            Some(_) => (
                key(),
                Some(format!(
                    "credentials of type {} are not static AWS keys",
                    if object_type.is_empty() { "unknown" } else { object_type }
                )),
            ),
            None => (Holding::Nothing, None),
        },
    };
    let redeploy = usage
        .clusters
        .iter()
        .map(|cl| ClusterRef {
            id: cl.id.to_ascii_lowercase(),
            name: cl.name.clone().unwrap_or_default(),
        })
        .collect();
    Holder {
        kind: HolderKind::Credentials,
        id: c.id.to_ascii_lowercase(),
        name: c.name.clone().unwrap_or_default(),
        cluster: None,
        edit: if cannot_give.is_none() && object_type == "AWS" {
            Edit::Credentials
        } else {
            Edit::None
        },
        holding,
        cannot_give,
        redeploy,
    }
}

/// The role credentials entry a migration points clusters at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleEntry {
    /// Lowercase, as holders carry ids.
    pub id: String,
    /// What `cloudProviderInfo` must be sent with the id.
    pub name: String,
    /// Made by this run (now, or by an earlier attempt whose answer was lost): the run
    /// may delete it when it gives up. An entry that was there before is never its own.
    pub created: bool,
}

/// The `AWS_ROLE` entry for `role_arn`: one that exists is adopted, else one is created
/// with the body Qovery's console sends. Safe to call again after any failure.
///
/// `before` is every credentials id of the organization before this run touched
/// anything (the migration's preflight): an entry with `role_arn` that is not in it was
/// made by an earlier attempt of this run (a 201 lost on the way back, say), so it is
/// preferred and reported `created`. Otherwise the first listed one is adopted, not
/// created. An incomplete `before` would make the run think it owns, and may delete,
/// an entry someone else made.
pub async fn role_entry(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
    name: &str,
    role_arn: &str,
    before: &[String],
) -> Result<RoleEntry, QoveryError> {
    let usages = api
        .list_organization_credentials(token, organization_id)
        .await?;
    let existed = |id: &str| before.iter().any(|b| b.eq_ignore_ascii_case(id));
    let for_role: Vec<&CredentialsHeader> = usages
        .iter()
        .map(|u| &u.credential)
        .filter(|c| {
            c.object_type.as_deref() == Some("AWS_ROLE") && c.role_arn.as_deref() == Some(role_arn)
        })
        .collect();
    let adopted = for_role
        .iter()
        .find(|c| !existed(&c.id))
        .map(|c| (c, true))
        .or_else(|| for_role.first().map(|c| (c, false)));
    if let Some((entry, created)) = adopted {
        return Ok(RoleEntry {
            id: entry.id.to_ascii_lowercase(),
            name: entry.name.clone().unwrap_or_default(),
            created,
        });
    }

    let made = api
        .create_aws_role_credentials(token, organization_id, name, role_arn)
        .await?;
    if made.object_type.as_deref() != Some("AWS_ROLE")
        || made.role_arn.as_deref() != Some(role_arn)
        || made.id.is_empty()
    {
        // Qovery made something, but not what was asked: nothing may be pointed at it.
        return Err(QoveryError {
            kind: QoveryErrorKind::Rejected,
            operation: format!("POST /organization/{organization_id}/aws/credentials"),
            status: None,
            detail: format!(
                "Qovery answered with credentials {:?} of type {} for role {}, not an AWS_ROLE entry for {role_arn}",
                made.id,
                made.object_type.as_deref().unwrap_or("unknown"),
                made.role_arn.as_deref().unwrap_or("none"),
            ),
            retry_after_seconds: None,
        });
    }
    Ok(RoleEntry {
        id: made.id.to_ascii_lowercase(),
        name: made.name.unwrap_or_else(|| name.to_string()),
        created: true,
    })
}

/// What [`delete_entry`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// It was gone already: deleted by an earlier attempt, or by someone else.
    pub already: bool,
}

/// Deletes credentials entry `id`, only once no cluster uses it.
///
/// The list comes first: Qovery refuses to delete an entry in use, but the spec
/// documents no status for that refusal, so one must never be relied on. An entry in
/// use is refused here (`Rejected`) with the clusters named, and nothing is sent.
pub async fn delete_entry(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
    id: &str,
) -> Result<Deleted, QoveryError> {
    let operation = format!("DELETE /organization/{organization_id}/aws/credentials/{id}");
    let usages = api
        .list_organization_credentials(token, organization_id)
        .await?;
    let Some(usage) = usages
        .iter()
        .find(|u| u.credential.id.eq_ignore_ascii_case(id))
    else {
        return Ok(Deleted { already: true });
    };
    if !usage.clusters.is_empty() {
        let clusters = usage
            .clusters
            .iter()
            .map(|c| named(c.name.as_deref(), &c.id))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(QoveryError {
            kind: QoveryErrorKind::Rejected,
            operation,
            status: None,
            detail: format!(
                "not sent: credentials {} are still used by cluster {clusters}; point each at \
                 other credentials first",
                named(usage.credential.name.as_deref(), &usage.credential.id)
            ),
            retry_after_seconds: None,
        });
    }
    match api
        .delete_aws_credentials(token, organization_id, &usage.credential.id)
        .await
    {
        Ok(()) => Ok(Deleted { already: false }),
        // Listed a moment ago, gone now: an earlier attempt's DELETE, or someone else's.
        Err(e) if e.status == Some(404) => Ok(Deleted { already: true }),
        Err(e) => Err(e),
    }
}

/// `name (id)`, or the id alone when Qovery gives no name.
fn named(name: Option<&str>, id: &str) -> String {
    match name {
        Some(name) if !name.is_empty() => format!("{name} ({id})"),
        _ => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(credential: serde_json::Value) -> Holder {
        let usage: CredentialsUsage =
            serde_json::from_value(serde_json::json!({"credential": credential, "clusters": []}))
                .unwrap();
        holder(&usage)
    }

    #[test]
    fn static_keys_without_a_readable_key_id_count_as_holding_every_key() {
        for credential in [
            serde_json::json!({"id": "C", "name": "c", "object_type": "AWS"}),
            serde_json::json!({"id": "C", "name": "c", "object_type": "AWS", "access_key_id": null}),
            serde_json::json!({"id": "C", "name": "c", "object_type": "AWS", "access_key_id": ""}),
        ] {
            let holder = entry(credential.clone());
            assert_eq!(holder.holding, Holding::Unreadable, "{credential}");
            assert!(holder.may_hold("AKIAANYKEY0000000001"));
        }
        let role = entry(
            serde_json::json!({"id": "R", "name": "r", "object_type": "AWS_ROLE", "role_arn": "arn"}),
        );
        assert_eq!(role.holding, Holding::Role("arn".into()));
        let scaleway = entry(serde_json::json!({"id": "S", "name": "s", "object_type": "SCW"}));
        assert_eq!(scaleway.holding, Holding::Nothing);
        let eks_anywhere = entry(
            serde_json::json!({"id": "E", "name": "e", "object_type": "EKS_ANYWHERE_VSPHERE",
                                                    "access_key_id": "AKIAOLD", "role_arn": null}),
        );
        assert!(eks_anywhere.holds("AKIAOLD") && eks_anywhere.cannot_give.is_some());
    }

    #[test]
    fn only_static_aws_keys_are_edited_eks_anywhere_is_refused_with_its_reason() {
        let edited = |holder: &Holder| matches!(holder.edit, Edit::Credentials);
        let aws = entry(
            serde_json::json!({"id": "A", "name": "a", "object_type": "AWS", "access_key_id": "AKIAOLD"}),
        );
        assert!(edited(&aws) && aws.cannot_give.is_none());
        // A role entry is given nothing: a PUT of static keys would turn it into one.
        let role = entry(
            serde_json::json!({"id": "R", "name": "r", "object_type": "AWS_ROLE", "role_arn": "arn"}),
        );
        assert!(!edited(&role) && role.cannot_give.is_none());

        let eks_key = entry(
            serde_json::json!({"id": "E", "name": "e", "object_type": "EKS_ANYWHERE_VSPHERE",
                                                    "access_key_id": "AKIAOLD"}),
        );
        let why = eks_key.cannot_give.clone().unwrap();
        assert!(why.contains("vSphere user and password"), "{why}");
        assert!(!edited(&eks_key));
        let eks_role = entry(
            serde_json::json!({"id": "E", "name": "e", "object_type": "EKS_ANYWHERE_VSPHERE",
                                                    "role_arn": "arn:aws:iam::1:role/eks"}),
        );
        assert_eq!(
            eks_role.holding,
            Holding::Role("arn:aws:iam::1:role/eks".into())
        );
        assert!(eks_role.cannot_give.is_none() && !edited(&eks_role));
    }
}
