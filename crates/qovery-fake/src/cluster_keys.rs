//! The other AWS keys a cluster holds besides its credentials: in its secret manager
//! accesses (read-only here: the rotator reports them, it does not edit clusters) and
//! in its Route53 DNS provider (which a PUT replaces as a whole).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::replace::Fields;
use crate::routes::ApiError;
use crate::state::{parse_seed_uuid, seeded_at};

/// How a cluster reads an AWS Secrets Manager: `mode` is `AWS_STATIC_CREDENTIALS`
/// (with `access_key` and `secret_key`), `AWS_ROLE_ARN` (with `role_arn`) or
/// `AUTOMATICALLY_CONFIGURED` (neither).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSecretManagerAccess {
    /// A UUID.
    pub id: String,
    pub name: String,
    /// The region of the endpoint, and of the static credentials.
    pub region: String,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// Never returned by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

impl SeedSecretManagerAccess {
    pub fn aws_static(id: &str, name: &str, region: &str, access_key: &str, secret: &str) -> Self {
        Self {
            access_key: Some(access_key.to_owned()),
            secret_key: Some(secret.to_owned()),
            ..Self::automatic(id, name, region)
        }
        .with_mode(STATIC)
    }

    pub fn role(id: &str, name: &str, region: &str, role_arn: &str) -> Self {
        Self {
            role_arn: Some(role_arn.to_owned()),
            ..Self::automatic(id, name, region)
        }
        .with_mode(ROLE)
    }

    pub fn automatic(id: &str, name: &str, region: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            region: region.to_owned(),
            mode: AUTOMATIC.to_owned(),
            access_key: None,
            secret_key: None,
            role_arn: None,
        }
    }

    fn with_mode(mut self, mode: &str) -> Self {
        self.mode = mode.to_owned();
        self
    }
}

const STATIC: &str = "AWS_STATIC_CREDENTIALS";
const ROLE: &str = "AWS_ROLE_ARN";
const AUTOMATIC: &str = "AUTOMATICALLY_CONFIGURED";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretManagerAccessSnapshot {
    pub id: String,
    pub name: String,
    pub mode: String,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub role_arn: Option<String>,
}

/// A cluster's Route53 DNS provider, with static credentials (the only kind the
/// spec has for Route53). A cluster without one uses Qovery's own DNS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDnsProvider {
    pub domain: String,
    pub aws_region: String,
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    pub aws_access_key_id: String,
    /// Never returned by the API.
    #[serde(default)]
    pub aws_secret_access_key: String,
}

impl SeedDnsProvider {
    pub fn route53(domain: &str, aws_region: &str, access_key_id: &str, secret: &str) -> Self {
        Self {
            domain: domain.to_owned(),
            aws_region: aws_region.to_owned(),
            hosted_zone_id: None,
            aws_access_key_id: access_key_id.to_owned(),
            aws_secret_access_key: secret.to_owned(),
        }
    }

    pub fn with_hosted_zone(mut self, hosted_zone_id: &str) -> Self {
        self.hosted_zone_id = Some(hosted_zone_id.to_owned());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsProviderSnapshot {
    pub domain: String,
    pub aws_region: String,
    pub hosted_zone_id: Option<String>,
    pub aws_access_key_id: String,
    /// Never returned by the API; exposed so a test can prove the key Qovery holds works.
    pub aws_secret_access_key: String,
}

pub(crate) struct SecretManagerAccess {
    pub(crate) id: Uuid,
    name: String,
    region: String,
    authentication: Authentication,
    created_at: String,
}

enum Authentication {
    Static {
        access_key: String,
        secret_key: Option<String>,
    },
    Role {
        role_arn: String,
    },
    Automatic,
}

impl SecretManagerAccess {
    /// Fails, saying what is wrong, on an id that is not a UUID, an unknown mode, or
    /// fields that do not fit the mode.
    pub(crate) fn from_seed(cluster: Uuid, seed: SeedSecretManagerAccess) -> Result<Self, String> {
        let id = parse_seed_uuid(
            &format!("cluster {cluster}: secret manager access id"),
            &seed.id,
        )?;
        let what = format!("cluster {cluster}: secret manager access {id}");
        if seed.region.is_empty() {
            return Err(format!("{what} needs a region"));
        }
        let authentication = match (
            seed.mode.as_str(),
            seed.access_key,
            seed.secret_key,
            seed.role_arn,
        ) {
            (STATIC, Some(access_key), secret_key, None) if !access_key.is_empty() => {
                Authentication::Static {
                    access_key,
                    secret_key,
                }
            }
            (STATIC, ..) => {
                return Err(format!(
                    "{what}: mode {STATIC} needs a non-empty access_key (and optionally secret_key), no role_arn"
                ))
            }
            (ROLE, None, None, Some(role_arn)) if !role_arn.is_empty() => {
                Authentication::Role { role_arn }
            }
            (ROLE, ..) => {
                return Err(format!(
                    "{what}: mode {ROLE} needs a non-empty role_arn, no access_key or secret_key"
                ))
            }
            (AUTOMATIC, None, None, None) => Authentication::Automatic,
            (AUTOMATIC, ..) => {
                return Err(format!(
                    "{what}: mode {AUTOMATIC} takes no access_key, secret_key or role_arn"
                ))
            }
            (other, ..) => {
                return Err(format!(
                    "{what}: mode {other:?} is not one of {STATIC}, {ROLE}, {AUTOMATIC}"
                ))
            }
        };
        Ok(Self {
            id,
            name: seed.name,
            region: seed.region,
            authentication,
            created_at: seeded_at(),
        })
    }

    pub(crate) fn snapshot(&self) -> SecretManagerAccessSnapshot {
        let (mode, access_key, secret_key, role_arn) = match &self.authentication {
            Authentication::Static {
                access_key,
                secret_key,
            } => (STATIC, Some(access_key), secret_key.as_ref(), None),
            Authentication::Role { role_arn } => (ROLE, None, None, Some(role_arn)),
            Authentication::Automatic => (AUTOMATIC, None, None, None),
        };
        SecretManagerAccessSnapshot {
            id: self.id.to_string(),
            name: self.name.clone(),
            mode: mode.to_owned(),
            access_key: access_key.cloned(),
            secret_key: secret_key.cloned(),
            role_arn: role_arn.cloned(),
        }
    }

    /// The spec's `SecretManagerAccess`. The spec makes `secret_key` nullable: it
    /// comes back `null`, the way an API that never returns a secret answers.
    pub(crate) fn to_json(&self) -> Value {
        let authentication = match &self.authentication {
            Authentication::Static { access_key, .. } => json!({
                "mode": STATIC,
                "region": self.region,
                "access_key": access_key,
                "secret_key": null,
            }),
            Authentication::Role { role_arn } => json!({"mode": ROLE, "role_arn": role_arn}),
            Authentication::Automatic => json!({ "mode": AUTOMATIC }),
        };
        json!({
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "endpoint": {"mode": "AWS_SECRET_MANAGER", "region": self.region},
            "authentication": authentication,
        })
    }
}

pub(crate) fn check_dns_provider(cluster: Uuid, seed: &SeedDnsProvider) -> Result<(), String> {
    for (name, value) in [
        ("domain", &seed.domain),
        ("aws_region", &seed.aws_region),
        ("aws_access_key_id", &seed.aws_access_key_id),
    ] {
        if value.is_empty() {
            return Err(format!("cluster {cluster}: dns_provider {name} is empty"));
        }
    }
    Ok(())
}

pub(crate) fn dns_snapshot(provider: &SeedDnsProvider) -> DnsProviderSnapshot {
    DnsProviderSnapshot {
        domain: provider.domain.clone(),
        aws_region: provider.aws_region.clone(),
        hosted_zone_id: provider.hosted_zone_id.clone(),
        aws_access_key_id: provider.aws_access_key_id.clone(),
        aws_secret_access_key: provider.aws_secret_access_key.clone(),
    }
}

/// The spec's `ClusterDnsProviderResponse`: the Route53 provider without its secret,
/// or, when there is none, Qovery's own DNS under a domain made from the cluster id.
pub(crate) fn dns_json(cluster: Uuid, provider: Option<&SeedDnsProvider>) -> Value {
    let dns_provider = match provider {
        Some(p) => json!({
            "provider": "ROUTE53",
            "domain": p.domain,
            "credentials": {"type": "STATIC", "aws_access_key_id": p.aws_access_key_id},
            "aws_region": p.aws_region,
            "hosted_zone_id": p.hosted_zone_id,
        }),
        None => json!({
            "provider": "QOVERY",
            "domain": format!("z{}.qovery.io", &cluster.simple().to_string()[..8]),
        }),
    };
    json!({ "dns_provider": dns_provider })
}

/// Checks that a PUT body (`ClusterDnsProviderRequest`) sends back the stored Route53
/// provider unchanged but for new static credentials; returns the key and its secret.
pub(crate) fn check_dns_replacement<'b>(
    cluster: Uuid,
    stored: Option<&SeedDnsProvider>,
    body: &'b Value,
) -> Result<(&'b str, &'b str), ApiError> {
    let schema = "ClusterDnsProviderRequest";
    let fields = Fields::body(body, schema)?;
    fields.only(&["dns_provider"], &format!("it is not part of {schema}"))?;
    let provider = fields.object("dns_provider")?;
    let Some(stored) = stored else {
        return Err(ApiError::bad_request(format!(
            "cluster {cluster} uses Qovery's DNS; this fake only edits the static keys of a Route53 provider"
        )));
    };
    provider.only(
        &[
            "provider",
            "domain",
            "credentials",
            "aws_region",
            "hosted_zone_id",
        ],
        "it is not part of Route53DnsProviderRequest",
    )?;
    provider.same_text("provider", "ROUTE53")?;
    provider.same_text("domain", &stored.domain)?;
    provider.same_text("aws_region", &stored.aws_region)?;
    provider.same_nullable_text("hosted_zone_id", stored.hosted_zone_id.as_deref())?;
    let credentials = provider.object("credentials")?;
    credentials.only(
        &["type", "aws_access_key_id", "aws_secret_access_key"],
        "it is not part of Route53StaticCredentialsRequest",
    )?;
    credentials.same_text("type", "STATIC")?;
    Ok((
        credentials.text("aws_access_key_id")?,
        credentials.text("aws_secret_access_key")?,
    ))
}
