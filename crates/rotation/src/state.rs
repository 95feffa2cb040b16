//! What flows between the steps. Every field here is safe to keep in Step Functions
//! history: key ids, never secret keys, and never the token.
//!
//! Each step may be invoked on its own, so each input is validated (`Validate`) before
//! anything is read or changed: ids must be UUIDs, the user an IAM user name, keys
//! access key ids.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::RotationError;
use crate::input::{is_iam_user_name, normalize_uuid};

/// One access key of the IAM user, as reports and error messages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySummary {
    pub access_key_id: String,
    pub status: String,
    pub create_date: String,
}

pub use crate::qovery::{CredentialsRef, HolderRef};

/// A key's last use, as IAM's GetAccessKeyLastUsed reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUse {
    /// RFC 3339.
    pub at: String,
    pub service: String,
    pub region: String,
}

impl LastUse {
    pub fn describe(&self) -> String {
        format!("{} by {} in {}", self.at, self.service, self.region)
    }
}

/// A holder that does not hold the rotated key (another key, or a role), named in the
/// report and left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftAlone {
    #[serde(flatten)]
    pub holder: HolderRef,
    /// `holds AKIA…` or `uses role arn:…`.
    pub reason: String,
}

/// A cluster the rotation redeploys, in order (the first one is the canary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPlan {
    pub id: String,
    pub name: String,
    /// The holder that makes it redeploy: credentials it uses, or its DNS provider.
    pub held_by: String,
    /// Its status at preflight.
    pub status: String,
    /// What Qovery reported just after it took the new key. A deployment whose
    /// execution id or date differs started after the hand-over, so it uses the new
    /// key. Always serialized (null until update-qovery sets them): the Map's
    /// ItemSelector reads them by path.
    #[serde(default)]
    pub handover_status: Option<String>,
    #[serde(default)]
    pub handover_execution_id: Option<String>,
    #[serde(default)]
    pub handover_deployment_date: Option<String>,
    /// A migration: the role credentials to point the cluster at before its redeploy.
    /// Always serialized (null in a rotation): the Map's ItemSelector reads it by path.
    #[serde(default)]
    pub target_credentials: Option<CredentialsRef>,
}

impl ClusterPlan {
    /// Notes `status` as the cluster's deployment at the hand-over: a deployment with
    /// another execution id (or date) started after it.
    pub fn note_handover(&mut self, status: crate::qovery::ClusterStatus) {
        self.handover_status = Some(status.status.as_str().to_string());
        self.handover_execution_id = status.last_execution_id;
        self.handover_deployment_date = status.last_deployment_date;
    }
}

/// A cluster that uses the key but is not redeployed, because its infrastructure is not
/// installed or not running (see `clusters::decide`). It picks up the new credentials
/// when it is next started or deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedCluster {
    pub id: String,
    pub name: String,
    pub held_by: String,
    pub status: String,
    pub reason: String,
}

/// What a run does about the record an ended run left (see `steps::recovery`). The
/// ASL's Choice after preflight compares these strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    /// Nothing to finish or undo: rotate from the start.
    #[default]
    Fresh,
    /// An ended run created a key no holder took: delete it, then rotate from the start.
    Undo,
    /// An ended run gave some holders the new key: give it to the rest, redeploy, drain
    /// from the recorded hand-over, delete the old key.
    Finish,
}

/// What the run does. The ASL's WhichWork Choice compares these strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Rotate the key Qovery holds (fresh, or finishing or undoing an ended run).
    #[default]
    Rotate,
    /// Qovery uses a role and holds no key of the user (after a move to an IAM role):
    /// nothing to rotate, nothing changed, a success.
    NothingToRotate,
    /// Move Qovery from the key to an IAM role (`migrate_to_role`).
    Migrate,
    /// Undo a move to a role before its point of no return: the clusters back on their
    /// static credentials, redeployed, the role credentials this migration made removed.
    UndoMigration,
}

/// A move of Qovery from the static key to an IAM role, as the state carries it and the
/// ledger records it. Ids and names only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRun {
    pub role_arn: String,
    /// Every credentials id of the organization at preflight: an AWS_ROLE entry for the
    /// role that is not among them was made by this migration.
    #[serde(default)]
    pub credentials_before: Vec<String>,
    /// The AWS_ROLE credentials the clusters move to (set by CreateRoleEntry).
    #[serde(default)]
    pub role_credentials: Option<CredentialsRef>,
    /// This migration made them: an undo deletes them, never others.
    #[serde(default)]
    pub role_credentials_created: bool,
    /// Each cluster of the plan (running or not) and the static credentials it used:
    /// its way back, until the holders switch.
    #[serde(default)]
    pub cluster_origins: Vec<ClusterOrigin>,
    /// The static credentials that held the key: deleted after the drain, once no
    /// cluster uses them.
    #[serde(default)]
    pub static_credentials: Vec<CredentialsRef>,
}

/// A cluster of a migration and the static credentials it used before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOrigin {
    pub cluster_id: String,
    #[serde(default)]
    pub cluster_name: String,
    pub credentials: CredentialsRef,
}

/// A migration's plan, in a dry run's report: the role and what its trust policy
/// allows, every holder of the static key and how it moves. Key ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    pub role_arn: String,
    pub static_access_key_id: String,
    pub trust: crate::iam_role::TrustReport,
    /// The trust policy in words: principals, conditions, the external id (or its
    /// absence, said plainly).
    pub trust_lines: Vec<String>,
    pub holders: Vec<RoutedHolder>,
    /// AWS_ROLE credentials that already name the role: used instead of a new entry.
    pub role_credentials_before: Vec<String>,
    /// The user's keys Qovery does not hold: never touched.
    pub other_user_keys: Vec<String>,
}

/// A holder of the static key and how it moves to the role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedHolder {
    pub holder: HolderRef,
    #[serde(flatten)]
    pub route: crate::qovery::holders::RoleRoute,
}

/// The key an ended run created and no holder took, and the secret it kept it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoTarget {
    pub execution_id: String,
    pub new_access_key_id: String,
    #[serde(default)]
    pub key_secret_id: Option<String>,
}

/// What preflight found, so that a dry run (and the execution history) shows what a
/// rotation would do before it does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightReport {
    pub summary: String,
    pub keys: Vec<KeySummary>,
    pub qovery_access_key_id: String,
    /// What this run does about the record an ended run left, in words.
    #[serde(default)]
    pub recovery: String,
    /// Holders of another key, or of a role: not touched.
    #[serde(default)]
    pub left_alone: Vec<LeftAlone>,
    /// Whole days since the key Qovery holds was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_age_days: Option<u64>,
    /// When, by which service and where the key Qovery holds was last used (IAM's
    /// GetAccessKeyLastUsed; absent: never, or it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_last_used: Option<LastUse>,
    /// An audit's verdict, when it passed (a failed audit is an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<String>,
    /// A migration's plan (`migrate_to_role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationReport>,
}

/// The rotation state: preflight creates it, and each later step returns it enriched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationState {
    pub execution_id: String,
    pub state_machine_arn: String,
    /// When preflight ran (RFC 3339). A key of the user created after it, held by no
    /// Qovery credentials and not stored by this execution, can only be this
    /// execution's own lost key.
    pub preflight_at: String,
    pub iam_user_name: String,
    pub organization_id: String,
    /// Every holder of the rotated key, of every kind (credentials, container
    /// registries, helm repositories, DNS providers), with the key id it holds: the old
    /// key after preflight, the new one after the hand-over.
    pub holders: Vec<HolderRef>,
    /// The clusters to redeploy, in this order (the canary first, then `deploy_waves`). A cluster whose
    /// `handover_*` fields preflight already set (finishing an ended run) deployed
    /// since that run's hand-over: it is followed, not redeployed.
    pub clusters: Vec<ClusterPlan>,
    pub skipped_clusters: Vec<SkippedCluster>,
    pub drain_seconds: u64,
    pub deploy_timeout_seconds: u64,
    pub poll_interval_seconds: u64,
    /// After the canary, at most this many clusters redeploy at once.
    #[serde(default = "one")]
    pub deploy_concurrency: u64,
    /// `clusters` in the order they redeploy: the canary alone, then waves of at most
    /// `deploy_concurrency` (`clusters::waves`). Set by update-qovery once the
    /// clusters to redeploy are final; the DeployClusters Map iterates over it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deploy_waves: Vec<Vec<ClusterPlan>>,
    /// The old key must have been idle this long when the drain ends.
    #[serde(default = "default_key_idle_seconds")]
    pub key_idle_seconds: u64,
    /// The old key stays switched off this long before it is deleted (0: not at all).
    #[serde(default = "default_quarantine_seconds")]
    pub quarantine_seconds: u64,
    pub dry_run: bool,
    /// A read-only audit of the key's age (a dry run too).
    #[serde(default)]
    pub audit: bool,
    /// Fresh, or finishing or undoing what an ended run left.
    #[serde(default)]
    pub recovery: Recovery,
    /// Rotate, nothing to rotate, migrate, or undo a migration. Always written: a Choice
    /// on a missing field fails.
    #[serde(default)]
    pub mode: Mode,
    /// A move to an IAM role. Always written (null in a rotation): the delete steps'
    /// Parameters read it.
    #[serde(default)]
    pub migration: Option<MigrationRun>,
    /// What DeployClusters' waves reported (`$.deployments`, its ResultPath), carried
    /// through a step that returns the whole state (HandOverToRole) for the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<Value>,
    /// The failure (`{Error, Cause}`) that made this run undo its migration: the
    /// execution fails with it once the undo is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_error: Option<Value>,
    /// With `recovery: undo`, the key to remove before rotating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<UndoTarget>,
    /// The key Qovery held when the rotation started: the one to retire.
    pub old_access_key_id: String,
    pub report: PreflightReport,
    /// Set by create-key. The key secret exists only until Qovery holds the new key.
    /// Always serialized (null in a migration): the delete steps' Parameters read them.
    #[serde(default)]
    pub new_access_key_id: Option<String>,
    #[serde(default)]
    pub key_secret_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_key_version_id: Option<String>,
    /// Set by update-qovery: when Qovery was known to hold the new key, and when the
    /// drain ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qovery_updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_until: Option<String>,
    /// Set by QuarantineOldKey (its ResultPath): what the drain's end found and did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineResult>,
}

fn one() -> u64 {
    1
}

fn default_key_idle_seconds() -> u64 {
    crate::input::DEFAULT_KEY_IDLE_SECONDS
}

fn default_quarantine_seconds() -> u64 {
    crate::input::DEFAULT_QUARANTINE_SECONDS
}

/// Where a cluster's redeploy stands. The ASL's Choice states compare these strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The cluster was busy; deploy again once it settles.
    AwaitingIdle,
    /// A deployment that started after the hand-over runs; keep polling.
    InProgress,
    /// A new deployment reached DEPLOYED.
    Deployed,
    /// The cluster was stopped or deleted during the rotation: not redeployed.
    Skipped,
}

/// One cluster's redeploy, carried around the Map iteration's loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterDeployment {
    pub organization_id: String,
    pub cluster_id: String,
    #[serde(default)]
    pub cluster_name: Option<String>,
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
    /// The cluster as Qovery reported it just after the hand-over (`handover_*` of its
    /// `ClusterPlan`): a deployment that still carries these ids started before the
    /// new key, and a DEPLOYED that carries them is stale.
    #[serde(default)]
    pub baseline_status: Option<String>,
    #[serde(default)]
    pub baseline_execution_id: Option<String>,
    #[serde(default)]
    pub baseline_deployment_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_requested_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_execution_id: Option<String>,
    #[serde(default)]
    pub polls: u32,
    /// A migration: the role credentials PointCluster points the cluster at.
    #[serde(default)]
    pub target_credentials: Option<CredentialsRef>,
    /// PointCluster did (the baseline is then the cluster as of the move).
    #[serde(default)]
    pub pointed: bool,
}

impl ClusterDeployment {
    /// The cluster as messages name it.
    pub fn label(&self) -> String {
        match &self.cluster_name {
            Some(name) if !name.is_empty() => format!("{name} ({})", self.cluster_id),
            _ => self.cluster_id.clone(),
        }
    }
}

/// Which key delete-key retires, and which rules guard it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// After the drain: check that nothing uses the old key, and switch it off for
    /// the quarantine (QuarantineOldKey; `steps::quarantine`).
    QuarantineOldKey,
    /// After the drain (and the quarantine): delete the key Qovery held before the
    /// rotation.
    RetireOldKey,
    /// The hand-over failed: delete the new key, which Qovery never took.
    RollbackNewKey,
    /// A new run removes the key an ended run created and no holder took, then goes on
    /// rotating: the lock stays.
    UndoPrevious,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteKeyRequest {
    pub mode: DeleteMode,
    /// The execution that holds the user's lock (`$$.Execution.Id`).
    pub execution_id: String,
    pub iam_user_name: String,
    pub organization_id: String,
    pub old_access_key_id: String,
    #[serde(default)]
    pub new_access_key_id: Option<String>,
    /// The execution's key secret, deleted (without recovery) once the key it holds is
    /// no longer needed.
    #[serde(default)]
    pub key_secret_id: Option<String>,
    /// Retire only: the holders of the rotation, each of which must hold the kept key.
    #[serde(default)]
    pub holders: Vec<HolderRef>,
    /// Retire only: what the success report needs (the execution's start, the state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::report::ReportRequest>,
    /// Quarantine and retire: the old key must have been idle this long.
    #[serde(default)]
    pub key_idle_seconds: Option<u64>,
    /// Quarantine: how long the old key stays switched off before the delete.
    #[serde(default)]
    pub quarantine_seconds: Option<u64>,
    /// Retire: what QuarantineOldKey found and did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineResult>,
    /// Retire after a quarantine: the clusters that must still be healthy.
    #[serde(default)]
    pub clusters: Vec<ClusterPlan>,
    /// A move to a role: the kept target is the role, not a new key.
    #[serde(default)]
    pub migration: Option<MigrationRun>,
}

/// What QuarantineOldKey did: the old key's last use (checked idle), whether it was
/// switched off, and until when the quarantine lasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineResult {
    pub old_access_key_id: String,
    /// Its last use when the drain ended, as IAM reported it (`None`: never used).
    #[serde(default)]
    pub last_used: Option<LastUse>,
    /// Switched off by this step (false with a quarantine of 0, or when an earlier
    /// attempt had switched it off already).
    pub switched_off: bool,
    /// Already Inactive when this step looked: an earlier attempt switched it off.
    pub already_off: bool,
    /// Already deleted: an earlier DeleteOldKey went through.
    pub already_deleted: bool,
    /// When the Quarantine Wait ends (RFC 3339).
    pub until: String,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteKeyResult {
    pub mode: DeleteMode,
    pub deleted_access_key_id: String,
    /// True when an earlier attempt had already deleted it (its answer was lost).
    pub already_deleted: bool,
    pub kept_access_key_id: String,
    /// Every holder of the key that was kept, asked just before the delete.
    pub kept_by: Vec<String>,
    pub remaining_keys: Vec<KeySummary>,
    pub summary: String,
    /// Retiring the old key: its last use just before the delete (`None`: never used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_key_last_used: Option<LastUse>,
    /// Retiring the old key: the message ReportSuccess publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::report::SuccessReport>,
}

/// What reconcile found after a hand-over whose outcome was unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QoveryHolds {
    /// No holder holds the new key: the rollback may delete it.
    OldKey,
    /// Every holder holds the new key: finish the hand-over.
    NewKey,
    /// Some holders hold the new key (or may: an unreadable key id counts): finish
    /// the hand-over for the others.
    Mixed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileResult {
    pub qovery_holds: QoveryHolds,
    /// Each holder of either key and the key it holds, as Qovery reports it now.
    pub holders: Vec<String>,
    pub summary: String,
}

/// Input checks shared by every step: a step can be invoked on its own, so the ids it
/// is given are checked before anything is read or changed.
pub trait Validate {
    fn validate(&self) -> Result<(), String>;
}

/// Parse a step's input and validate it, turning any problem into `InvalidInput` that
/// names the step.
pub fn parse_step_input<T: DeserializeOwned + Validate>(
    step: &str,
    value: Value,
) -> Result<T, RotationError> {
    let parsed: T =
        serde_json::from_value(value).map_err(|e| bad_step_input(step, &e.to_string()))?;
    parsed.validate().map_err(|e| bad_step_input(step, &e))?;
    Ok(parsed)
}

fn bad_step_input(step: &str, problem: &str) -> RotationError {
    RotationError::InvalidInput(format!(
        "The {step} step got an input it cannot use: {problem}. This step's input comes from the state machine; \
         check that statemachine/rotation.asl.json and the deployed functions are the same version. Nothing was changed."
    ))
}

pub(crate) fn check_uuid(field: &str, value: &str) -> Result<(), String> {
    match normalize_uuid(value) {
        Some(canonical) if canonical == value => Ok(()),
        _ => Err(format!(
            "`{field}` must be a lower-case UUID; got {value:?}"
        )),
    }
}

/// A Step Functions execution ARN: the lock's owner.
pub(crate) fn check_execution(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() >= 8 && parts[0] == "arn" && parts[2] == "states" && parts[5] == "execution" {
        Ok(())
    } else {
        Err(format!(
            "`execution_id` must be a Step Functions execution ARN; got {value:?}"
        ))
    }
}

pub(crate) fn check_user(value: &str) -> Result<(), String> {
    if is_iam_user_name(value) {
        Ok(())
    } else {
        Err(format!(
            "`iam_user_name` must be an IAM user name; got {value:?}"
        ))
    }
}

/// IAM access key ids: upper-case letters and digits, 16 to 128 characters.
pub fn is_access_key_id(value: &str) -> bool {
    (16..=128).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

pub(crate) fn check_key(field: &str, value: &str) -> Result<(), String> {
    if is_access_key_id(value) {
        Ok(())
    } else {
        Err(format!("`{field}` must be an access key id; got {value:?}"))
    }
}

fn check_optional_key(field: &str, value: &Option<String>) -> Result<(), String> {
    value.as_deref().map_or(Ok(()), |v| check_key(field, v))
}

impl Validate for RotationState {
    fn validate(&self) -> Result<(), String> {
        check_user(&self.iam_user_name)?;
        check_uuid("organization_id", &self.organization_id)?;
        check_key("old_access_key_id", &self.old_access_key_id)?;
        check_optional_key("new_access_key_id", &self.new_access_key_id)?;
        if self.holders.is_empty() {
            return Err("`holders` is empty".to_string());
        }
        for h in &self.holders {
            check_uuid("holders[].id", &h.id)?;
        }
        for c in &self.clusters {
            check_uuid("clusters[].id", &c.id)?;
        }
        if crate::timefmt::parse(&self.preflight_at).is_none() {
            return Err(format!(
                "`preflight_at` must be an RFC 3339 time; got {:?}",
                self.preflight_at
            ));
        }
        Ok(())
    }
}

impl Validate for ClusterDeployment {
    fn validate(&self) -> Result<(), String> {
        check_uuid("organization_id", &self.organization_id)?;
        check_uuid("cluster_id", &self.cluster_id)?;
        if let Some(user) = &self.iam_user_name {
            check_user(user)?;
        }
        check_optional_key("old_access_key_id", &self.old_access_key_id)?;
        check_optional_key("new_access_key_id", &self.new_access_key_id)?;
        if self.poll_interval_seconds == 0 || self.deploy_timeout_seconds == 0 {
            return Err(
                "`poll_interval_seconds` and `deploy_timeout_seconds` must be greater than 0"
                    .to_string(),
            );
        }
        Ok(())
    }
}

impl Validate for DeleteKeyRequest {
    fn validate(&self) -> Result<(), String> {
        check_execution(&self.execution_id)?;
        check_user(&self.iam_user_name)?;
        check_uuid("organization_id", &self.organization_id)?;
        check_key("old_access_key_id", &self.old_access_key_id)?;
        check_optional_key("new_access_key_id", &self.new_access_key_id)?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_step_refuses_ids_that_are_not_ids() {
        let event = json!({
            "mode": "retire_old_key", "iam_user_name": "qovery",
            "execution_id": "arn:aws:states:us-east-1:123456789012:execution:rotation:run-1",
            "organization_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "old_access_key_id": "AKIA../../etc/passwd",
        });
        let error = parse_step_input::<DeleteKeyRequest>("delete-key", event).unwrap_err();
        assert_eq!(error.name(), "InvalidInput");
        assert!(error.message().contains("old_access_key_id"), "{error}");
        assert!(error.message().contains("Nothing was changed"), "{error}");

        let event = json!({
            "organization_id": "not-a-uuid", "cluster_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "poll_interval_seconds": 60, "deploy_timeout_seconds": 600,
        });
        let error = parse_step_input::<ClusterDeployment>("check-status", event).unwrap_err();
        assert!(error.message().contains("organization_id"), "{error}");
    }

    #[test]
    fn access_key_ids_are_upper_case_alphanumerics() {
        assert!(is_access_key_id("AKIAIOSFODNN7EXAMPLE"));
        assert!(!is_access_key_id("akiaiosfodnn7example"));
        assert!(!is_access_key_id("AKIA"));
    }
}
