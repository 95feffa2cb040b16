//! Container registries (kind `ECR`; every AWS cluster's mirroring registry is one) and
//! helm repositories (kind `OCI_ECR`): the same list / PUT-back-every-field shape.
//!
//! A PUT replaces the object (`editContainerRegistry`, `editHelmRepository`), so the
//! body sends back every writable field the object had, as Qovery's console does, with
//! a new `config` of `region`, `access_key_id`, `secret_access_key`. An object with a
//! field the rotation does not know cannot be sent back whole, so it is refused rather
//! than changed. Qovery reads these at each service deployment (build, image mirroring,
//! chart pull), so no cluster redeploy is needed for them.

use serde_json::{json, Map, Value};

use super::client::QoveryApi;
use super::error::{QoveryError, QoveryErrorKind};
use super::holders::{key_field, text, ClusterRef, Edit, Holder, HolderKind, Holding};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryFamily {
    Container,
    Helm,
}

/// The response fields no request carries: they are not ours to send back.
const READ_ONLY: [&str; 5] = [
    "id",
    "created_at",
    "updated_at",
    "cluster",
    "associated_services_count",
];
/// The `config` fields of a static-key object as Qovery returns them.
const STATIC_CONFIG: [&str; 2] = ["region", "access_key_id"];

impl RegistryFamily {
    fn path(self, organization_id: &str) -> String {
        match self {
            Self::Container => format!("/organization/{organization_id}/containerRegistry"),
            Self::Helm => format!("/organization/{organization_id}/helmRepository"),
        }
    }

    fn kind(self) -> HolderKind {
        match self {
            Self::Container => HolderKind::ContainerRegistry,
            Self::Helm => HolderKind::HelmRepository,
        }
    }

    /// The kinds whose `config` carries an AWS key and that the rotation can edit.
    fn static_key_kind(self) -> &'static str {
        match self {
            Self::Container => "ECR",
            Self::Helm => "OCI_ECR",
        }
    }

    /// The request's fields besides `config`, sent back as the object had them.
    fn writable(self) -> &'static [&'static str] {
        match self {
            Self::Container => &["name", "kind", "description", "url"],
            Self::Helm => &[
                "name",
                "kind",
                "description",
                "url",
                "skip_tls_verification",
            ],
        }
    }
}

pub(super) async fn holders(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
    family: RegistryFamily,
) -> Result<Vec<Holder>, QoveryError> {
    let path = family.path(organization_id);
    let list = api.get_json(token, &path).await?;
    Ok(super::holders::results(&list, &path)?
        .iter()
        .filter_map(|v| match v {
            Value::Object(object) => Some(holder(family, object.clone())),
            _ => None,
        })
        .collect())
}

fn holder(family: RegistryFamily, object: Map<String, Value>) -> Holder {
    let kind = text(&object, "kind").unwrap_or_default();
    let config = object.get("config").and_then(Value::as_object);
    let role = config.and_then(|c| text(c, "role_arn"));
    let shows_key = config.is_some_and(|c| c.contains_key("access_key_id"));
    // ECR and OCI_ECR hold a key or a role; the public ECR kinds may show a key too.
    let aws_kind = kind.ends_with("ECR");
    let holding = match (&role, shows_key, aws_kind) {
        (_, true, _) => key_field(config, "access_key_id"),
        (Some(arn), false, _) => Holding::Role(arn.clone()),
        (None, false, true) => Holding::Unreadable,
        (None, false, false) => Holding::Nothing,
    };
    let cannot_give = blocker(family, &object, &kind);
    let cluster = object
        .get("cluster")
        .and_then(Value::as_object)
        .and_then(|c| {
            Some(ClusterRef {
                id: text(c, "id")?.to_ascii_lowercase(),
                name: text(c, "name").unwrap_or_default(),
            })
        });
    Holder {
        kind: family.kind(),
        id: text(&object, "id").unwrap_or_default().to_ascii_lowercase(),
        name: text(&object, "name").unwrap_or_default(),
        cluster,
        holding,
        redeploy: Vec::new(),
        edit: if cannot_give.is_none() {
            Edit::Registry { family, object }
        } else {
            Edit::None
        },
        cannot_give,
    }
}

/// Why this object cannot be sent back whole with a new key, if it cannot.
fn blocker(family: RegistryFamily, object: &Map<String, Value>, kind: &str) -> Option<String> {
    if kind != family.static_key_kind() {
        return Some(format!(
            "the rotation edits only {} objects, and this one is of kind {}",
            family.static_key_kind(),
            if kind.is_empty() { "unknown" } else { kind }
        ));
    }
    if let Some(field) = object.keys().find(|k| {
        !READ_ONLY.contains(&k.as_str())
            && !family.writable().contains(&k.as_str())
            && *k != "config"
    }) {
        return Some(format!(
            "Qovery returns a field `{field}` the rotation does not know, so a PUT could not send it back"
        ));
    }
    let config = object.get("config").and_then(Value::as_object);
    if let Some(field) =
        config.and_then(|c| c.keys().find(|k| !STATIC_CONFIG.contains(&k.as_str())))
    {
        return Some(format!(
            "its config has a field `{field}` besides region and access_key_id, which a PUT with a new key \
             would drop"
        ));
    }
    if config.and_then(|c| text(c, "region")).is_none() {
        return Some("its config has no region, which a PUT must send back".to_string());
    }
    None
}

/// The request's fields besides `config`, as the object had them.
fn sent_back(family: RegistryFamily, object: &Map<String, Value>) -> Map<String, Value> {
    family
        .writable()
        .iter()
        .filter_map(|field| Some(((*field).to_string(), object.get(*field)?.clone())))
        .collect()
}

/// The object's `config.region` as read (`blocker` refuses an object without one).
fn region(object: &Map<String, Value>) -> Value {
    object
        .get("config")
        .and_then(|c| c.get("region"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// PUT the object back with a new key. Returns the key id Qovery answers with.
#[allow(clippy::too_many_arguments)]
pub(super) async fn give(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
    family: RegistryFamily,
    id: &str,
    object: &Map<String, Value>,
    access_key_id: &str,
    secret_access_key: &Secret,
) -> Result<Option<String>, QoveryError> {
    let mut body = sent_back(family, object);
    body.insert(
        "config".to_string(),
        json!({
            "region": region(object),
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key.expose(),
        }),
    );
    let path = format!("{}/{id}", family.path(organization_id));
    let answer = api
        .put_json(token, &path, Value::Object(body), secret_access_key)
        .await?;
    Ok(answer
        .get("config")
        .and_then(|c| c.get("access_key_id"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// PUT the object back with the role: `config` is exactly `{region, role_arn}`, as
/// Qovery's console sends for an ECR role (region as read), every other field as read.
/// Returns what the object holds by Qovery's answer. The static secret is gone after
/// this, so no call can move the object back to the key.
pub(super) async fn give_role(
    api: &QoveryApi,
    token: &Secret,
    organization_id: &str,
    family: RegistryFamily,
    id: &str,
    object: &Map<String, Value>,
    role_arn: &str,
) -> Result<Holding, QoveryError> {
    let mut body = sent_back(family, object);
    body.insert(
        "config".to_string(),
        json!({"region": region(object), "role_arn": role_arn}),
    );
    let path = format!("{}/{id}", family.path(organization_id));
    let answer = api
        .put_json_without_secret(token, &path, Value::Object(body))
        .await?;
    match answer {
        Value::Object(answer) => Ok(holder(family, answer).holding),
        _ => Err(QoveryError {
            kind: QoveryErrorKind::Rejected,
            operation: format!("PUT {path}"),
            status: None,
            detail: "an answer the rotation cannot rely on (not an object): what the object holds \
                     now is unknown; read it again"
                .to_string(),
            retry_after_seconds: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn ecr(config: Value) -> Holder {
        holder(
            RegistryFamily::Container,
            object(
                json!({"id": "R", "name": "r", "kind": "ECR", "url": "https://x", "config": config}),
            ),
        )
    }

    #[test]
    fn a_key_id_that_cannot_be_read_counts_as_holding_every_key() {
        for config in [
            json!({"region": "eu-west-3"}),
            json!({"region": "eu-west-3", "access_key_id": null}),
            json!({"access_key_id": ""}),
        ] {
            let registry = ecr(config.clone());
            assert_eq!(registry.holding, Holding::Unreadable, "{config}");
            assert!(registry.may_hold("AKIAANYKEY0000000001"), "{config}");
            assert!(!registry.holds("AKIAANYKEY0000000001"), "{config}");
        }
        let by_role = ecr(json!({"region": "eu-west-3", "role_arn": "arn:aws:iam::1:role/r"}));
        assert!(!by_role.may_hold("AKIAANYKEY0000000001"));
        let docker = holder(
            RegistryFamily::Container,
            object(json!({"id": "D", "name": "d", "kind": "DOCKER_HUB", "config": {}})),
        );
        assert_eq!(docker.holding, Holding::Nothing);
    }

    #[test]
    fn an_object_that_cannot_be_sent_back_whole_is_never_given_a_key() {
        let plain = ecr(json!({"region": "eu-west-3", "access_key_id": "AKIAOLD"}));
        assert!(plain.cannot_give.is_none());
        let extra_config =
            ecr(json!({"region": "eu-west-3", "access_key_id": "AKIAOLD", "username": "u"}));
        assert!(extra_config.cannot_give.unwrap().contains("username"));
        let no_region = ecr(json!({"access_key_id": "AKIAOLD"}));
        assert!(no_region.cannot_give.unwrap().contains("region"));
        let unknown = holder(
            RegistryFamily::Helm,
            object(
                json!({"id": "H", "name": "h", "kind": "OCI_ECR", "skip_tls_verification": false,
                          "tls_ca": "x", "config": {"region": "r", "access_key_id": "AKIAOLD"}}),
            ),
        );
        assert!(unknown.cannot_give.unwrap().contains("tls_ca"));
        let public = holder(
            RegistryFamily::Container,
            object(
                json!({"id": "P", "name": "p", "kind": "PUBLIC_ECR", "config": {"access_key_id": "AKIAOLD"}}),
            ),
        );
        assert!(public.holds("AKIAOLD") && public.cannot_give.is_some());
    }
}
