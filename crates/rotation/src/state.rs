//! What flows between the steps. Every field here is safe to keep in Step Functions
//! history: key ids, never secret keys, and never the token.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::RotationError;

/// One access key of the IAM user, as reports and error messages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySummary {
    pub access_key_id: String,
    pub status: String,
    pub create_date: String,
}

/// A cluster that uses the rotated credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRef {
    pub id: String,
    pub name: String,
}

/// What preflight found, so that a dry run (and the execution history) shows what a
/// rotation would do before it does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightReport {
    pub summary: String,
    pub keys: Vec<KeySummary>,
    pub qovery_access_key_id: String,
    pub clusters: Vec<ClusterRef>,
    /// Clusters that use the credentials but were left out by `cluster_ids`. They take
    /// the new key at their next deployment.
    pub clusters_not_redeployed: Vec<ClusterRef>,
}

/// The rotation state: preflight creates it, and each later step returns it enriched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationState {
    pub execution_id: String,
    pub state_machine_arn: String,
    pub iam_user_name: String,
    pub organization_id: String,
    pub credentials_id: String,
    pub credentials_name: String,
    pub cluster_ids: Vec<String>,
    pub drain_seconds: u64,
    pub deploy_timeout_seconds: u64,
    pub poll_interval_seconds: u64,
    pub dry_run: bool,
    /// The key Qovery held when the rotation started: the one to retire.
    pub old_access_key_id: String,
    pub report: PreflightReport,
    /// Set by create-key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_key_version_id: Option<String>,
    /// Set by update-qovery: when Qovery took the new key, and when the drain ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qovery_updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_until: Option<String>,
}

/// Where a cluster's redeploy stands. The ASL's Choice states compare these strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The cluster was busy; deploy again once it settles.
    AwaitingIdle,
    /// The deploy was requested; keep polling.
    InProgress,
    /// A new deployment reached DEPLOYED.
    Deployed,
}

/// One cluster's redeploy, carried around the Map iteration's loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterDeployment {
    pub organization_id: String,
    pub cluster_id: String,
    pub poll_interval_seconds: u64,
    pub deploy_timeout_seconds: u64,
    /// Only for messages; the Map's ItemSelector passes them in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_access_key_id: Option<String>,
    /// Set on the first deploy-cluster call: past it the wait fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The last status Qovery reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The deployment that existed before our POST: a DEPLOYED that still carries
    /// these is stale and does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_deployment_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_requested_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_execution_id: Option<String>,
    #[serde(default)]
    pub polls: u32,
}

/// Which key delete-key retires, and which rules guard it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// After the drain: delete the key Qovery held before the rotation.
    RetireOldKey,
    /// UpdateQovery failed: delete the new key, which Qovery never took.
    RollbackNewKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteKeyRequest {
    pub mode: DeleteMode,
    pub iam_user_name: String,
    pub organization_id: String,
    pub credentials_id: String,
    pub old_access_key_id: String,
    #[serde(default)]
    pub new_access_key_id: Option<String>,
    #[serde(default)]
    pub key_secret_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteKeyResult {
    pub mode: DeleteMode,
    pub deleted_access_key_id: String,
    pub qovery_access_key_id: String,
    pub remaining_keys: Vec<KeySummary>,
}

/// Parse a step's input, turning any mismatch into `InvalidInput` that names the step.
pub fn parse_step_input<T: DeserializeOwned>(step: &str, value: Value) -> Result<T, RotationError> {
    serde_json::from_value(value).map_err(|e| {
        RotationError::InvalidInput(format!(
            "The {step} step got an input it cannot read: {e}. This step's input comes from the state machine; \
             check that statemachine/rotation.asl.json and the deployed functions are the same version. Nothing was changed."
        ))
    })
}

/// Render keys for messages: `AKIA… (Active, created 2026-01-01T00:00:00Z)`.
pub fn describe_keys(keys: &[KeySummary]) -> String {
    if keys.is_empty() {
        return "no access key".to_string();
    }
    keys.iter()
        .map(|k| {
            format!(
                "{} ({}, created {})",
                k.access_key_id, k.status, k.create_date
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
