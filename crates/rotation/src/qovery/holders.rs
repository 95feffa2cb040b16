//! Every place Qovery keeps an AWS access key, behind one interface the steps share.
//!
//! Qovery stores the same IAM key, each time with its own copy of the secret, in up to
//! five kinds of object: cloud provider credentials, container registries (every AWS
//! cluster's mirroring registry is one), helm repositories, a cluster's secret manager
//! accesses and a cluster's Route53 DNS provider. A rotation that updates one kind and
//! deletes the old key breaks the others, so the steps never ask one kind: they
//! [`survey`] them all, ask who holds a key ([`holding`], [`may_hold`]), and [`give`]
//! the new key to each. Each kind lives in its own file; adding one touches this
//! directory only.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::client::QoveryApi;
use super::error::QoveryError;
use super::registries::RegistryFamily;
use super::{credentials, dns_providers, registries, secret_manager_accesses};
use crate::secret::Secret;

// A migration's calls besides `give_role`, here so that steps call this file only.
pub use super::cloud_provider_info::{
    cloud_provider_info, point_cluster, CloudProviderInfo, CredentialsRef, Moved,
};
pub use super::credentials::{delete_entry, role_entry, Deleted, RoleEntry};

/// The kinds of object that can hold an AWS access key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HolderKind {
    /// Cloud provider credentials (`AWS_STATIC`), used by clusters.
    Credentials,
    /// A container registry of kind `ECR`; a cluster's mirroring registry is one.
    ContainerRegistry,
    /// A helm repository of kind `OCI_ECR`.
    HelmRepository,
    /// A cluster's secret manager access (`AWS_STATIC_CREDENTIALS`).
    SecretManagerAccess,
    /// A cluster's Route53 DNS provider with static credentials.
    DnsProvider,
}

impl HolderKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Credentials => "credentials",
            Self::ContainerRegistry => "container registry",
            Self::HelmRepository => "helm repository",
            Self::SecretManagerAccess => "secret manager access",
            Self::DnsProvider => "DNS provider",
        }
    }
}

/// What a holder holds, as Qovery reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// An access key id.
    Key(String),
    /// An IAM role: no key to rotate.
    Role(String),
    /// A kind that carries a static key, but no key id could be read (missing, null or
    /// not a string). It counts as holding any key: a delete is refused (fail closed).
    Unreadable,
    /// A kind of object that holds no AWS key (a Docker Hub registry, Qovery's DNS, …).
    Nothing,
}

/// How a holder of the static key moves to an IAM role (a migration, issue 14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "route", content = "why")]
pub enum RoleRoute {
    /// Static credentials are never edited into a role (the PUT would throw away the
    /// static secret, which this tool never has, so nothing could move back): their
    /// clusters are pointed at a role credentials entry one by one (`cloudProviderInfo`),
    /// and the entry is deleted once no cluster uses it.
    MoveClusters,
    /// Sent `config: {region, role_arn}`, as Qovery's console does for ECR.
    SwitchToRole,
    /// Cannot be moved by this tool: why, and what the operator does.
    Refused(String),
}

impl RoleRoute {
    pub fn describe(&self) -> String {
        match self {
            Self::MoveClusters => {
                "its clusters are pointed at role credentials, then it is deleted".to_string()
            }
            Self::SwitchToRole => "switched to the role".to_string(),
            Self::Refused(why) => format!("refused: {why}"),
        }
    }
}

/// A cluster as holders name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRef {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

/// One object of the organization that holds (or could hold) an AWS key.
#[derive(Debug, Clone)]
pub struct Holder {
    pub kind: HolderKind,
    /// Its Qovery id; for a DNS provider, its cluster's id (it has none of its own).
    pub id: String,
    pub name: String,
    /// The cluster it belongs to: a mirroring registry's, an access's, a DNS provider's.
    pub cluster: Option<ClusterRef>,
    pub holding: Holding,
    /// Why a rotation cannot give it a new key, when it cannot.
    pub cannot_give: Option<String>,
    /// The clusters that must be redeployed before they use a new key given here.
    pub redeploy: Vec<ClusterRef>,
    pub(super) edit: Edit,
}

/// What [`give`] needs to send a holder its new key.
#[derive(Debug, Clone)]
pub(super) enum Edit {
    Credentials,
    Registry {
        family: RegistryFamily,
        object: Map<String, Value>,
    },
    DnsProvider {
        provider: Map<String, Value>,
    },
    /// Nothing: `cannot_give` says why.
    None,
}

impl Holder {
    /// Whether it holds exactly `key`.
    pub fn holds(&self, key: &str) -> bool {
        matches!(&self.holding, Holding::Key(k) if k == key)
    }

    /// Whether it holds `key`, or might (fail closed: an unreadable key id counts).
    pub fn may_hold(&self, key: &str) -> bool {
        self.holds(key) || self.holding == Holding::Unreadable
    }

    /// The key id it holds, if one could be read.
    pub fn key(&self) -> Option<&str> {
        match &self.holding {
            Holding::Key(k) => Some(k),
            _ => None,
        }
    }

    /// `container registry registry-1a2b (<id>) of cluster production`.
    pub fn label(&self) -> String {
        let mut text = format!("{} {} ({})", self.kind.label(), self.name, self.id);
        if let Some(cluster) = &self.cluster {
            if self.kind != HolderKind::DnsProvider || !cluster.name.is_empty() {
                text.push_str(&format!(" of cluster {}", cluster_label(cluster)));
            }
        }
        text
    }

    /// The label and what it holds: `… holds AKIA…`, `… uses role arn:…`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.label(), self.holding_text())
    }

    pub fn holding_text(&self) -> String {
        match &self.holding {
            Holding::Key(k) => format!("holds {k}"),
            Holding::Role(arn) => format!("uses role {arn}"),
            Holding::Unreadable => "holds a key whose id Qovery does not show".to_string(),
            Holding::Nothing => "holds no AWS key".to_string(),
        }
    }

    /// How it moves from a static key to a role.
    pub fn role_route(&self) -> RoleRoute {
        match (&self.edit, self.kind) {
            (Edit::Credentials, _) => RoleRoute::MoveClusters,
            (Edit::Registry { .. }, _) => RoleRoute::SwitchToRole,
            (_, HolderKind::DnsProvider) => RoleRoute::Refused(dns_providers::NO_ROLE.to_string()),
            (_, HolderKind::SecretManagerAccess) => {
                RoleRoute::Refused(secret_manager_accesses::TO_ROLE.to_string())
            }
            (Edit::DnsProvider { .. } | Edit::None, _) => RoleRoute::Refused(
                self.cannot_give
                    .clone()
                    .unwrap_or_else(|| "this kind of holder cannot be moved to a role".to_string()),
            ),
        }
    }

    /// What the step output records of it.
    pub fn to_ref(&self) -> HolderRef {
        HolderRef {
            kind: self.kind,
            id: self.id.clone(),
            name: self.name.clone(),
            cluster_id: self.cluster.as_ref().map(|c| c.id.clone()),
            access_key_id: self.key().map(str::to_string),
        }
    }

    /// The same object as `reference`.
    pub fn is(&self, reference: &HolderRef) -> bool {
        self.kind == reference.kind && self.id.eq_ignore_ascii_case(&reference.id)
    }
}

fn cluster_label(cluster: &ClusterRef) -> String {
    if cluster.name.is_empty() {
        cluster.id.clone()
    } else {
        format!("{} ({})", cluster.name, cluster.id)
    }
}

/// A holder as the rotation state and the reports carry it: kind, id, name, and the
/// key id it held when last asked. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRef {
    pub kind: HolderKind,
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<String>,
}

impl HolderRef {
    pub fn label(&self) -> String {
        let mut text = format!("{} {} ({})", self.kind.label(), self.name, self.id);
        if let (Some(cluster), false) = (&self.cluster_id, self.kind == HolderKind::DnsProvider) {
            text.push_str(&format!(" of cluster {cluster}"));
        }
        text
    }
}

/// Every object of the organization that can hold an AWS key, of every kind, asked
/// now (those of a kind that holds none, `Holding::Nothing`, included: a report names
/// the credentials it saw).
pub async fn survey(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
) -> Result<Vec<Holder>, QoveryError> {
    let mut holders = credentials::holders(api, token, organization_id).await?;
    for family in [RegistryFamily::Container, RegistryFamily::Helm] {
        holders.extend(registries::holders(api, token, organization_id, family).await?);
    }
    let clusters = secret_manager_accesses::clusters(api, token, organization_id).await?;
    holders.extend(secret_manager_accesses::holders(&clusters));
    holders.extend(dns_providers::holders(api, token, &clusters).await?);
    Ok(holders)
}

/// The holders that hold exactly `key`.
pub fn holding<'a>(holders: &'a [Holder], key: &str) -> Vec<&'a Holder> {
    holders.iter().filter(|h| h.holds(key)).collect()
}

/// The holders that hold `key` or might: a delete of `key` must wait for all of them.
pub fn may_hold<'a>(holders: &'a [Holder], key: &str) -> Vec<&'a Holder> {
    holders.iter().filter(|h| h.may_hold(key)).collect()
}

/// The holders whose key id cannot be read: any of them could hold any key.
pub fn unreadable(holders: &[Holder]) -> Vec<&Holder> {
    holders
        .iter()
        .filter(|h| h.holding == Holding::Unreadable)
        .collect()
}

/// `label holds key, label holds key`, or `none`.
pub fn describe_all<'a>(holders: impl IntoIterator<Item = &'a Holder>) -> String {
    let text = holders
        .into_iter()
        .map(Holder::describe)
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        "none".to_string()
    } else {
        text
    }
}

/// Give `holder` the new key: the PUT Qovery's console sends for its kind, with every
/// other field sent back as Qovery gave it. Returns the key id Qovery answers with.
/// Call only for a holder whose `cannot_give` is `None`.
pub async fn give(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
    holder: &Holder,
    access_key_id: &str,
    secret_access_key: &Secret,
) -> Result<Option<String>, QoveryError> {
    match &holder.edit {
        Edit::Credentials => {
            let answer = api
                .put_aws_static_credentials(
                    token,
                    organization_id,
                    &holder.id,
                    &holder.name,
                    access_key_id,
                    secret_access_key,
                )
                .await?;
            Ok(answer.access_key_id)
        }
        Edit::Registry { family, object } => {
            registries::give(
                api,
                token,
                organization_id,
                *family,
                &holder.id,
                object,
                access_key_id,
                secret_access_key,
            )
            .await
        }
        Edit::DnsProvider { provider } => {
            dns_providers::give(
                api,
                token,
                &holder.id,
                provider,
                access_key_id,
                secret_access_key,
            )
            .await
        }
        Edit::None => Err(QoveryError {
            kind: super::QoveryErrorKind::Rejected,
            operation: format!("give {}", holder.label()),
            status: None,
            detail: holder
                .cannot_give
                .clone()
                .unwrap_or_else(|| "this kind of holder cannot be given a key".to_string()),
            retry_after_seconds: None,
        }),
    }
}

/// Switch `holder` to the IAM role `role_arn`: for a holder whose [`Holder::role_route`]
/// is `SwitchToRole` (an ECR registry or OCI_ECR helm repository), the PUT Qovery's
/// console sends, with every other field sent back as read. Returns what Qovery
/// answers it holds (`Holding::Role`, when it took the role). Any other route is
/// refused here, with no call: credentials move by their clusters, the rest cannot.
pub async fn give_role(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
    holder: &Holder,
    role_arn: &str,
) -> Result<Holding, QoveryError> {
    match (holder.role_route(), &holder.edit) {
        (RoleRoute::SwitchToRole, Edit::Registry { family, object }) => {
            registries::give_role(
                api,
                token,
                organization_id,
                *family,
                &holder.id,
                object,
                role_arn,
            )
            .await
        }
        (route, _) => Err(QoveryError {
            kind: super::QoveryErrorKind::Rejected,
            operation: format!("give role {role_arn} to {}", holder.label()),
            status: None,
            detail: format!("not sent: {}", route.describe()),
            retry_after_seconds: None,
        }),
    }
}

/// The `results` of a list answer. An answer without them cannot say nothing holds a
/// key: it is an error, never an empty list.
pub(super) fn results<'a>(list: &'a Value, path: &str) -> Result<&'a Vec<Value>, QoveryError> {
    list.get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            unexpected(
                path,
                "no `results` list: it cannot tell that nothing holds the key",
            )
        })
}

/// An answer that does not match the spec where a holder is concerned.
pub(super) fn unexpected(path: &str, what: &str) -> QoveryError {
    QoveryError {
        kind: super::QoveryErrorKind::Rejected,
        operation: format!("GET {path}"),
        status: Some(200),
        detail: format!("an answer the rotation cannot rely on ({what})"),
        retry_after_seconds: None,
    }
}

/// A string field of a JSON object.
pub(super) fn text(object: &Map<String, Value>, field: &str) -> Option<String> {
    object
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// What a key id field says: a key, or unreadable (missing, null, not a string, empty).
pub(super) fn key_field(object: Option<&Map<String, Value>>, field: &str) -> Holding {
    match object.and_then(|o| o.get(field)).and_then(Value::as_str) {
        Some(key) if !key.is_empty() => Holding::Key(key.to_string()),
        _ => Holding::Unreadable,
    }
}
