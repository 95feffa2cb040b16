//! Where a cluster stands, and how a rotation treats each state.

use serde::{Deserialize, Serialize};

/// `ClusterStatus`. Only the fields a rotation reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub status: ClusterState,
    /// "Has been deployed at some point": its infrastructure was installed.
    #[serde(default)]
    pub is_deployed: bool,
    #[serde(default)]
    pub last_execution_id: Option<String>,
    #[serde(default)]
    pub last_deployment_date: Option<String>,
}

/// A `ClusterStateEnum` value, kept as Qovery spelled it. The enum keeps growing, so
/// an unknown value is a class of its own, never a parse failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterState(pub String);

/// How a rotation treats each cluster state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateClass {
    /// `DEPLOYED`.
    Deployed,
    /// `*_ERROR` and `INVALID_CREDENTIALS` (what bad keys most likely give).
    Failed,
    /// `QUEUED`, `*_QUEUED`, `*ING`, and `DRY_RUN` (which Qovery's own clients disagree on).
    Busy,
    /// Terminal but not a deploy success: `READY`, `STOPPED`, `CANCELED`, `DELETED`, `RESTARTED`.
    Idle,
    /// A value this version does not know: treated as in progress.
    Unknown,
}

impl ClusterState {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn class(&self) -> StateClass {
        let s = self.0.as_str();
        match s {
            "DEPLOYED" => StateClass::Deployed,
            "INVALID_CREDENTIALS" => StateClass::Failed,
            "READY" | "STOPPED" | "CANCELED" | "DELETED" | "RESTARTED" => StateClass::Idle,
            "QUEUED" | "DRY_RUN" => StateClass::Busy,
            _ if s.ends_with("_ERROR") => StateClass::Failed,
            _ if s.ends_with("_QUEUED") || s.ends_with("ING") => StateClass::Busy,
            _ => StateClass::Unknown,
        }
    }
}

/// `ClusterStatusResponseList`.
#[derive(Debug, Deserialize)]
pub(super) struct ClusterStatusList {
    #[serde(default)]
    pub(super) results: Vec<ClusterStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every value of the spec's `ClusterStateEnum`, with the class a rotation gives it.
    const SPEC_STATES: [(&str, StateClass); 24] = [
        ("BUILDING", StateClass::Busy),
        ("BUILD_ERROR", StateClass::Failed),
        ("CANCELED", StateClass::Idle),
        ("CANCELING", StateClass::Busy),
        ("DELETED", StateClass::Idle),
        ("DELETE_ERROR", StateClass::Failed),
        ("DELETE_QUEUED", StateClass::Busy),
        ("DELETING", StateClass::Busy),
        ("DEPLOYED", StateClass::Deployed),
        ("DEPLOYING", StateClass::Busy),
        ("DEPLOYMENT_ERROR", StateClass::Failed),
        ("DEPLOYMENT_QUEUED", StateClass::Busy),
        ("DRY_RUN", StateClass::Busy),
        ("QUEUED", StateClass::Busy),
        ("READY", StateClass::Idle),
        ("STOPPED", StateClass::Idle),
        ("STOPPING", StateClass::Busy),
        ("STOP_ERROR", StateClass::Failed),
        ("STOP_QUEUED", StateClass::Busy),
        ("RESTART_QUEUED", StateClass::Busy),
        ("RESTARTING", StateClass::Busy),
        ("RESTARTED", StateClass::Idle),
        ("RESTART_ERROR", StateClass::Failed),
        ("INVALID_CREDENTIALS", StateClass::Failed),
    ];

    #[test]
    fn every_spec_state_has_its_class() {
        for (state, class) in SPEC_STATES {
            assert_eq!(ClusterState(state.into()).class(), class, "{state}");
        }
    }

    #[test]
    fn an_unknown_state_parses_and_is_unknown() {
        let status: ClusterStatus = serde_json::from_value(json!({
            "cluster_id": "c", "status": "HIBERNATED", "is_deployed": true, "reason": "UNSPECIFIED"
        }))
        .unwrap();
        assert_eq!(status.status.class(), StateClass::Unknown);
        assert_eq!(
            ClusterState("INTERNAL_ERROR".into()).class(),
            StateClass::Failed
        );
    }
}
