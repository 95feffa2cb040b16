//! Cloud provider credentials as Qovery returns them. The secret never comes back.

use serde::Deserialize;

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
}

impl CredentialsHeader {
    /// Whether these credentials, of any type, hold `access_key_id`.
    pub fn holds_key(&self, access_key_id: &str) -> bool {
        self.access_key_id.as_deref() == Some(access_key_id)
    }

    /// Whether these are static AWS keys holding `access_key_id`.
    pub fn holds_aws_key(&self, access_key_id: &str) -> bool {
        self.object_type.as_deref() == Some("AWS") && self.holds_key(access_key_id)
    }
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
