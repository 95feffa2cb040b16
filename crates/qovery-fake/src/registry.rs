//! Container registries and helm repositories: organization objects that keep their
//! own copy of an AWS key (kind `ECR` and `OCI_ECR`), so a rotation must edit each.
//!
//! Both lists have the same shape in Qovery (list, get, a PUT that replaces the
//! object), so one type serves both, told apart by [`RegistryList`].

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::replace::Fields;
use crate::routes::ApiError;
use crate::state::{now, parse_seed_uuid, seeded_at};

/// The AWS account the constructors' URLs point at.
const ACCOUNT: &str = "123456789012";

/// A container registry or helm repository to seed. An object of kind `ECR`
/// (container registries) or `OCI_ECR` (helm repositories) holds either a static key
/// (`access_key_id`, with its `secret_access_key`) or a `role_arn`, and a `region`;
/// other kinds hold no AWS key at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRegistry {
    /// A UUID.
    pub id: String,
    pub name: String,
    /// A `ContainerRegistryKindEnum` value for a container registry, a
    /// `HelmRepositoryKindEnum` value for a helm repository.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Helm repositories only.
    #[serde(default)]
    pub skip_tls_verification: bool,
    /// Container registries only: this is the mirroring registry of that seeded
    /// cluster (listed with a `cluster` reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Never returned by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

impl SeedRegistry {
    /// An `ECR` container registry with a static key, at its account's registry URL.
    pub fn ecr(id: &str, name: &str, region: &str, access_key_id: &str, secret: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            kind: "ECR".to_owned(),
            url: Some(format!("https://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com")),
            description: None,
            skip_tls_verification: false,
            cluster_id: None,
            region: Some(region.to_owned()),
            access_key_id: Some(access_key_id.to_owned()),
            secret_access_key: Some(secret.to_owned()),
            role_arn: None,
        }
    }

    /// An `ECR` container registry that assumes a role: it holds no key.
    pub fn ecr_role(id: &str, name: &str, region: &str, role_arn: &str) -> Self {
        Self {
            access_key_id: None,
            secret_access_key: None,
            role_arn: Some(role_arn.to_owned()),
            ..Self::ecr(id, name, region, "", "")
        }
    }

    /// An `OCI_ECR` helm repository with a static key.
    pub fn oci_ecr(id: &str, name: &str, region: &str, access_key_id: &str, secret: &str) -> Self {
        Self {
            kind: "OCI_ECR".to_owned(),
            url: Some(format!("oci://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com")),
            ..Self::ecr(id, name, region, access_key_id, secret)
        }
    }

    /// An `OCI_ECR` helm repository that assumes a role.
    pub fn oci_ecr_role(id: &str, name: &str, region: &str, role_arn: &str) -> Self {
        Self {
            kind: "OCI_ECR".to_owned(),
            url: Some(format!("oci://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com")),
            ..Self::ecr_role(id, name, region, role_arn)
        }
    }

    /// An object of another kind (`DOCKER_HUB`, `HTTPS`, …): no AWS key, `config` `{}`.
    pub fn other(id: &str, name: &str, kind: &str, url: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            url: Some(url.to_owned()),
            description: None,
            skip_tls_verification: false,
            cluster_id: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            role_arn: None,
        }
    }

    /// Makes it the mirroring registry of a seeded cluster.
    pub fn mirroring(mut self, cluster_id: &str) -> Self {
        self.cluster_id = Some(cluster_id.to_owned());
        self
    }

    pub fn with_description(mut self, description: &str) -> Self {
        self.description = Some(description.to_owned());
        self
    }
}

/// A container registry or helm repository as the fake holds it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySnapshot {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub url: Option<String>,
    pub description: Option<String>,
    pub skip_tls_verification: bool,
    pub cluster_id: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    /// Never returned by the API; exposed so a test can prove the key Qovery holds works.
    pub secret_access_key: Option<String>,
    pub role_arn: Option<String>,
}

/// What an accepted registry or helm repository PUT gives the object to hold.
pub(crate) enum Replacement<'b> {
    Key {
        access_key_id: &'b str,
        secret_access_key: &'b str,
    },
    Role {
        role_arn: &'b str,
    },
}

/// Which of the two lists an object is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegistryList {
    Container,
    Helm,
}

impl RegistryList {
    /// The spec's `ContainerRegistryKindEnum` and `HelmRepositoryKindEnum`.
    fn kinds(self) -> &'static [&'static str] {
        match self {
            Self::Container => &[
                "ECR",
                "SCALEWAY_CR",
                "DOCKER_HUB",
                "GITHUB_CR",
                "GITHUB_ENTERPRISE_CR",
                "GITLAB_CR",
                "PUBLIC_ECR",
                "DOCR",
                "GENERIC_CR",
                "GCP_ARTIFACT_REGISTRY",
                "AZURE_CR",
            ],
            Self::Helm => &[
                "HTTPS",
                "OCI_ECR",
                "OCI_SCALEWAY_CR",
                "OCI_DOCKER_HUB",
                "OCI_PUBLIC_ECR",
                "OCI_GENERIC_CR",
                "OCI_GITHUB_CR",
                "OCI_GITLAB_CR",
            ],
        }
    }

    fn kind_enum(self) -> &'static str {
        match self {
            Self::Container => "ContainerRegistryKindEnum",
            Self::Helm => "HelmRepositoryKindEnum",
        }
    }

    fn request_schema(self) -> &'static str {
        match self {
            Self::Container => "ContainerRegistryRequest",
            Self::Helm => "HelmRepositoryRequest",
        }
    }

    /// The request's top-level fields.
    fn request_fields(self) -> &'static [&'static str] {
        match self {
            Self::Container => &["name", "kind", "description", "url", "config"],
            Self::Helm => &[
                "name",
                "kind",
                "description",
                "url",
                "skip_tls_verification",
                "config",
            ],
        }
    }

    /// The kind whose config holds an AWS key.
    fn aws_kind(self) -> &'static str {
        match self {
            Self::Container => "ECR",
            Self::Helm => "OCI_ECR",
        }
    }

    pub(crate) fn what(self) -> &'static str {
        match self {
            Self::Container => "container registry",
            Self::Helm => "helm repository",
        }
    }

    /// The name of the id's path parameter.
    pub(crate) fn id_parameter(self) -> &'static str {
        match self {
            Self::Container => "containerRegistryId",
            Self::Helm => "helmRepositoryId",
        }
    }
}

pub(crate) struct Registry {
    pub(crate) id: Uuid,
    name: String,
    kind: &'static str,
    url: Option<String>,
    description: Option<String>,
    skip_tls_verification: bool,
    pub(crate) cluster_id: Option<Uuid>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    role_arn: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

impl Registry {
    /// Fails, saying what is wrong, on an id that is not a UUID, a kind outside the
    /// list's enum, a field the list does not have, a mirrored cluster that is not in
    /// `clusters`, or AWS fields that do not make one key (or one role) of an AWS kind.
    pub(crate) fn from_seed(
        list: RegistryList,
        seed: SeedRegistry,
        clusters: &[Uuid],
    ) -> Result<Self, String> {
        let what = list.what();
        let id = parse_seed_uuid(&format!("{what} id"), &seed.id)?;
        let kind = list
            .kinds()
            .iter()
            .copied()
            .find(|k| *k == seed.kind)
            .ok_or_else(|| {
                format!(
                    "{what} {id}: kind {:?} is not a {} value",
                    seed.kind,
                    list.kind_enum()
                )
            })?;
        let cluster_id = match (&seed.cluster_id, list) {
            (None, _) => None,
            (Some(_), RegistryList::Helm) => {
                return Err(format!(
                    "{what} {id}: cluster_id is for container registries only (a cluster's mirroring registry)"
                ))
            }
            (Some(cluster_id), RegistryList::Container) => {
                let cluster_id = parse_seed_uuid(&format!("{what} {id}: cluster_id"), cluster_id)?;
                if !clusters.contains(&cluster_id) {
                    return Err(format!(
                        "{what} {id} is the mirroring registry of cluster {cluster_id}, which is not seeded"
                    ));
                }
                Some(cluster_id)
            }
        };
        if seed.skip_tls_verification && list == RegistryList::Container {
            return Err(format!(
                "{what} {id}: skip_tls_verification is for helm repositories only"
            ));
        }
        check_aws_fields(list, id, kind, &seed)?;
        let created_at = seeded_at();
        Ok(Self {
            id,
            name: seed.name,
            kind,
            url: seed.url,
            description: seed.description,
            skip_tls_verification: seed.skip_tls_verification,
            cluster_id,
            region: seed.region,
            access_key_id: seed.access_key_id,
            secret_access_key: seed.secret_access_key,
            role_arn: seed.role_arn,
            updated_at: created_at.clone(),
            created_at,
        })
    }

    pub(crate) fn snapshot(&self) -> RegistrySnapshot {
        RegistrySnapshot {
            id: self.id.to_string(),
            name: self.name.clone(),
            kind: self.kind.to_owned(),
            url: self.url.clone(),
            description: self.description.clone(),
            skip_tls_verification: self.skip_tls_verification,
            cluster_id: self.cluster_id.map(|id| id.to_string()),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            role_arn: self.role_arn.clone(),
        }
    }

    /// The spec's `ContainerRegistryResponse` or `HelmRepositoryResponse`; the secret
    /// never leaves the fake. `cluster_name` is the mirrored cluster's.
    pub(crate) fn to_json(&self, list: RegistryList, cluster_name: Option<&str>) -> Value {
        let mut config = Map::new();
        for (name, value) in [
            ("region", &self.region),
            ("access_key_id", &self.access_key_id),
            ("role_arn", &self.role_arn),
        ] {
            if let Some(value) = value {
                config.insert(name.to_owned(), json!(value));
            }
        }
        let mut object = json!({
            "id": self.id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "name": self.name,
            "kind": self.kind,
            // Services are outside what the fake knows.
            "associated_services_count": 0,
            "config": config,
        });
        if let Some(url) = &self.url {
            object["url"] = json!(url);
        }
        if let Some(description) = &self.description {
            object["description"] = json!(description);
        }
        if list == RegistryList::Helm {
            object["skip_tls_verification"] = json!(self.skip_tls_verification);
        }
        if let (Some(id), Some(name)) = (self.cluster_id, cluster_name) {
            object["cluster"] = json!({"id": id, "name": name});
        }
        object
    }

    /// Checks that a PUT body sends back every field as stored, with in `config`
    /// either a new static key (only for an object that holds one) or a role (for any
    /// object of the AWS kind: a migration's retry sends the same role again); returns
    /// what the object is to hold.
    pub(crate) fn check_replacement<'b>(
        &self,
        list: RegistryList,
        body: &'b Value,
    ) -> Result<Replacement<'b>, ApiError> {
        let schema = list.request_schema();
        let fields = Fields::body(body, schema)?;
        fields.only(
            list.request_fields(),
            &format!("it is not part of {schema}"),
        )?;
        fields.same_text("name", &self.name)?;
        fields.same_text("kind", self.kind)?;
        if list == RegistryList::Helm {
            fields.same_bool("skip_tls_verification", self.skip_tls_verification)?;
        }
        fields.same_optional_text("url", self.url.as_deref())?;
        fields.same_optional_text("description", self.description.as_deref())?;
        let config = fields.object("config")?;
        // The console's role form sends exactly `{region, role_arn}`; a config that also
        // has a key is a static one, whose check below names `role_arn` as unexpected.
        if config.has("role_arn")
            && !config.has("access_key_id")
            && !config.has("secret_access_key")
        {
            let Some(region) = self
                .region
                .as_ref()
                .filter(|_| self.kind == list.aws_kind())
            else {
                return Err(ApiError::bad_request(format!(
                    "{} {} is of kind {}; a config with a role_arn is for kind {} only",
                    list.what(),
                    self.id,
                    self.kind,
                    list.aws_kind()
                )));
            };
            config.only(
                &["region", "role_arn"],
                "the config of an ECR role is exactly region and role_arn",
            )?;
            config.same_text("region", region)?;
            return Ok(Replacement::Role {
                role_arn: config.text("role_arn")?,
            });
        }
        let (Some(region), true) = (&self.region, self.holds_static_key(list)) else {
            return Err(ApiError::bad_request(format!(
                "{} {} holds no static AWS key; this fake only edits static ECR keys",
                list.what(),
                self.id
            )));
        };
        config.only(
            &["region", "access_key_id", "secret_access_key"],
            "the config of a static ECR key is exactly region, access_key_id and secret_access_key",
        )?;
        config.same_text("region", region)?;
        Ok(Replacement::Key {
            access_key_id: config.text("access_key_id")?,
            secret_access_key: config.text("secret_access_key")?,
        })
    }

    /// Holds what a checked PUT sent: a role replaces a key, so the key and its
    /// secret are gone, as in Qovery (the tool cannot give them back: the point of no
    /// return of a migration).
    pub(crate) fn replace(&mut self, replacement: Replacement) {
        match replacement {
            Replacement::Key {
                access_key_id,
                secret_access_key,
            } => {
                self.access_key_id = Some(access_key_id.to_owned());
                self.secret_access_key = Some(secret_access_key.to_owned());
            }
            Replacement::Role { role_arn } => {
                self.access_key_id = None;
                self.secret_access_key = None;
                self.role_arn = Some(role_arn.to_owned());
            }
        }
        self.updated_at = now();
    }

    fn holds_static_key(&self, list: RegistryList) -> bool {
        self.kind == list.aws_kind() && self.role_arn.is_none() && self.access_key_id.is_some()
    }
}

/// An object of the AWS kind has a region and one key or one role; others have none.
fn check_aws_fields(
    list: RegistryList,
    id: Uuid,
    kind: &str,
    seed: &SeedRegistry,
) -> Result<(), String> {
    let what = list.what();
    let aws_kind = list.aws_kind();
    if kind != aws_kind {
        let aws_fields = [
            &seed.region,
            &seed.access_key_id,
            &seed.secret_access_key,
            &seed.role_arn,
        ];
        if aws_fields.iter().any(|f| f.is_some()) {
            return Err(format!(
                "{what} {id}: kind {kind} holds no AWS key; region, access_key_id, secret_access_key and role_arn are for kind {aws_kind}"
            ));
        }
        return Ok(());
    }
    if seed.region.as_deref().unwrap_or_default().is_empty() {
        return Err(format!("{what} {id}: kind {aws_kind} needs a region"));
    }
    match (&seed.access_key_id, &seed.role_arn) {
        (Some(key), None) if !key.is_empty() => Ok(()),
        (None, Some(role)) if !role.is_empty() => match seed.secret_access_key {
            None => Ok(()),
            Some(_) => Err(format!(
                "{what} {id}: a secret_access_key needs an access_key_id, not a role_arn"
            )),
        },
        (Some(_), Some(_)) => Err(format!(
            "{what} {id}: give access_key_id (a static key) or role_arn, not both"
        )),
        _ => Err(format!(
            "{what} {id}: kind {aws_kind} needs a non-empty access_key_id (a static key) or role_arn"
        )),
    }
}
