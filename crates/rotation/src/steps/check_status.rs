//! Step 6, for one cluster. Read its status: a new deployment that reached DEPLOYED is
//! done, a failure state stops the rotation, anything else is still in progress until
//! the deadline.

use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;
use crate::qovery::{ClusterState, ClusterStatus, StateClass};
use crate::state::{parse_step_input, ClusterDeployment, Phase};
use crate::timefmt;

/// The check-status function serves two states: CheckStatus (one cluster's status) and
/// CheckWave (a wave's outcome, `check_wave`), told apart by the `wave` field.
/// Type-erased: written out, this future is too deep for rustc to lay out inside the
/// Lambda binary's runtime loop ("queries overflow the depth limit").
pub fn serve_either(deps: &Deps, event: Value) -> super::StepFuture<'_> {
    Box::pin(async move {
        if event.get("wave").is_some() {
            let outcome = super::check_wave::handle(event)?;
            return Ok(serde_json::to_value(outcome).expect("a wave outcome always serializes"));
        }
        let cluster = handle(deps, event).await?;
        Ok(serde_json::to_value(cluster).expect("a cluster deployment always serializes"))
    })
}

pub async fn handle(deps: &Deps, event: Value) -> Result<ClusterDeployment, RotationError> {
    let mut cluster: ClusterDeployment = parse_step_input("check-status", event)?;
    let context = keys_context(&cluster);
    let token = super::qovery_token(deps, &context).await?;
    let status = deps
        .qovery
        .cluster_status(&token, &cluster.organization_id, &cluster.cluster_id)
        .await
        .map_err(|e| e.into_rotation_error(&context))?;
    cluster.polls += 1;
    cluster.status = Some(status.status.as_str().to_string());
    let fresh = is_new_deployment(&cluster, &status);
    if fresh {
        cluster.last_execution_id = status.last_execution_id.clone();
    }
    tracing::info!(cluster_id = %cluster.cluster_id, status = status.status.as_str(), fresh, polls = cluster.polls, "cluster status");

    match (status.status.class(), fresh) {
        (StateClass::Deployed, true) => {
            cluster.phase = Some(Phase::Deployed);
            return Ok(cluster);
        }
        (StateClass::Failed, true) | (StateClass::Idle, true) => {
            if let Some(role) = &cluster.target_credentials {
                // A migration: the cluster ran on the role; its static credentials keep the key.
                return Err(RotationError::ClusterDeployFailed(format!(
                    "Cluster {} ended in {} after its redeploy on role credentials {} ({}){}.",
                    cluster.label(),
                    status.status.as_str(),
                    role.name,
                    role.id,
                    if status.status.as_str() == "INVALID_CREDENTIALS" {
                        ": Qovery could not assume the role"
                    } else {
                        ""
                    }
                )));
            }
            return Err(RotationError::ClusterDeployFailed(format!(
                "Cluster {} ended in {} after the redeploy with the new credentials. No further cluster is \
                 started (the others of its wave are followed to their end). {} Look at the cluster's deployment logs in the \
                 Qovery console{} and fix the cause, then start a new run: it redeploys the clusters that did not \
                 deploy since the hand-over, drains, and deletes the old key.",
                cluster.label(),
                status.status.as_str(),
                context,
                if status.status.as_str() == "INVALID_CREDENTIALS" {
                    ": INVALID_CREDENTIALS means Qovery could not use the new key. It belongs to the same IAM user, \
                     so it has the same permissions; IAM can take a while to accept a new key everywhere, so redeploy \
                     the cluster once more, and if it fails again look for an SCP or permission boundary that treats \
                     the new key differently"
                } else {
                    ", fix the cause and redeploy the cluster"
                }
            )));
        }
        // A stale terminal state (from before our POST), busy, or unknown: keep polling.
        _ => {}
    }

    let past_deadline = cluster
        .deadline
        .as_deref()
        .and_then(timefmt::parse)
        .is_some_and(|deadline| timefmt::now() >= deadline);
    if past_deadline {
        return Err(timed_out(
            &cluster,
            "waiting for the redeploy to reach DEPLOYED",
        ));
    }
    cluster.phase = Some(Phase::InProgress);
    Ok(cluster)
}

/// Whether `status` is about a deployment that started after the hand-over: its
/// execution id differs from what Qovery reported just after it (or, with no execution
/// id, its date does).
pub(crate) fn is_new_deployment(cluster: &ClusterDeployment, status: &ClusterStatus) -> bool {
    if cluster.baseline_status.is_none() {
        // No record of the hand-over: nothing can be proven to use the new key.
        return false;
    }
    // The execution id names a deployment. The same one is the deployment that ran at the
    // hand-over, with the old key, even though it got a new date when it ended.
    if status.last_execution_id.is_some() {
        return status.last_execution_id != cluster.baseline_execution_id;
    }
    // Only the date is left, and a deployment running at the hand-over sets it when it
    // ends: then nothing proves a new one.
    let busy_at_handover = cluster.baseline_status.as_deref().is_some_and(|s| {
        matches!(
            ClusterState(s.to_string()).class(),
            StateClass::Busy | StateClass::Unknown
        )
    });
    !busy_at_handover
        && status.last_deployment_date.is_some()
        && status.last_deployment_date != cluster.baseline_deployment_date
}

/// Which keys are live while clusters redeploy, for every message of this stage.
pub(crate) fn keys_context(cluster: &ClusterDeployment) -> String {
    if let Some(role) = &cluster.target_credentials {
        return format!(
            "The cluster points at role credentials {} ({}); its static credentials still hold the working key.",
            role.name, role.id
        );
    }
    let new = cluster
        .new_access_key_id
        .as_deref()
        .unwrap_or("(the new key)");
    let old = cluster
        .old_access_key_id
        .as_deref()
        .unwrap_or("(the old key)");
    let user = cluster.iam_user_name.as_deref().unwrap_or("the IAM user");
    format!(
        "Qovery now holds the new key {new}; the old key {old} of {user} is still active and will not be deleted \
         by this execution; the user's rotation lock stays, for the next run to finish."
    )
}

pub(crate) fn timed_out(cluster: &ClusterDeployment, doing: &str) -> RotationError {
    if cluster.target_credentials.is_some() {
        return RotationError::ClusterDeployTimedOut(format!(
            "Cluster {} is still {} after {} s {doing} on the role (deadline {}). {}",
            cluster.label(),
            cluster.status.as_deref().unwrap_or("in an unknown state"),
            cluster.deploy_timeout_seconds,
            cluster.deadline.as_deref().unwrap_or("unknown"),
            keys_context(cluster)
        ));
    }
    RotationError::ClusterDeployTimedOut(format!(
        "Cluster {} is still {} after {} s {doing} (deadline {}). No further cluster is started (the others of its \
         wave are followed to their end). {} Check the cluster in the Qovery console (raise deploy_timeout_seconds if \
         deployments are slow), then start a new run: it follows or redeploys the clusters that did not deploy \
         since the hand-over, drains, and deletes the old key.",
        cluster.label(),
        cluster.status.as_deref().unwrap_or("in an unknown state"),
        cluster.deploy_timeout_seconds,
        cluster.deadline.as_deref().unwrap_or("unknown"),
        keys_context(cluster)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BEFORE: &str = "2025-03-01T10:00:00Z";
    const AFTER: &str = "2025-03-01T10:20:00Z";

    /// A cluster as the Map gives it, with what Qovery reported at the hand-over.
    fn cluster(
        status: Option<&str>,
        execution_id: Option<&str>,
        date: Option<&str>,
    ) -> ClusterDeployment {
        serde_json::from_value(json!({
            "organization_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "cluster_id": "0b7a9c2e-1d2f-4e5a-8b6c-7d8e9f0a1b2c",
            "poll_interval_seconds": 10,
            "deploy_timeout_seconds": 600,
            "baseline_status": status,
            "baseline_execution_id": execution_id,
            "baseline_deployment_date": date,
        }))
        .unwrap()
    }

    /// What Qovery reports now.
    fn now(status: &str, execution_id: Option<&str>, date: Option<&str>) -> ClusterStatus {
        serde_json::from_value(json!({
            "cluster_id": "0b7a9c2e-1d2f-4e5a-8b6c-7d8e9f0a1b2c",
            "status": status,
            "last_execution_id": execution_id,
            "last_deployment_date": date,
        }))
        .unwrap()
    }

    #[test]
    fn a_deployment_without_an_execution_id_is_new_only_if_its_date_changed() {
        let idle = cluster(Some("DEPLOYED"), None, Some(BEFORE));
        assert!(!is_new_deployment(
            &idle,
            &now("DEPLOYED", None, Some(BEFORE))
        ));
        assert!(!is_new_deployment(&idle, &now("DEPLOYED", None, None)));
        assert!(is_new_deployment(
            &idle,
            &now("DEPLOYED", None, Some(AFTER))
        ));
        assert!(is_new_deployment(
            &idle,
            &now("DEPLOYMENT_ERROR", None, Some(AFTER))
        ));
        // Never deployed before the hand-over: any date is a change.
        let never = cluster(Some("READY"), None, None);
        assert!(is_new_deployment(
            &never,
            &now("DEPLOYED", None, Some(AFTER))
        ));
        assert!(!is_new_deployment(&never, &now("DEPLOYED", None, None)));
        // A deployment running at the hand-over (with the old key) dates itself when it
        // ends: a new date then proves nothing.
        for busy in ["DEPLOYING", "DEPLOYMENT_QUEUED", "HIBERNATED"] {
            let running = cluster(Some(busy), None, Some(BEFORE));
            assert!(
                !is_new_deployment(&running, &now("DEPLOYED", None, Some(AFTER))),
                "{busy}"
            );
        }
    }

    #[test]
    fn a_deployment_with_an_execution_id_is_new_only_if_its_id_changed() {
        let at_handover = cluster(Some("DEPLOYING"), Some("exec-1"), Some(BEFORE));
        // The deployment that ran at the hand-over, ended since: a new date, the same id.
        assert!(!is_new_deployment(
            &at_handover,
            &now("DEPLOYED", Some("exec-1"), Some(AFTER))
        ));
        assert!(is_new_deployment(
            &at_handover,
            &now("DEPLOYING", Some("exec-2"), Some(BEFORE))
        ));
        let no_id_then = cluster(Some("DEPLOYED"), None, Some(BEFORE));
        assert!(is_new_deployment(
            &no_id_then,
            &now("DEPLOYED", Some("exec-2"), Some(BEFORE))
        ));
    }

    #[test]
    fn without_a_hand_over_record_no_deployment_counts_as_new() {
        // A cluster whose state at the hand-over was not recorded: nothing Qovery
        // reports can prove a deployment with the new key, whatever it says.
        let unrecorded = cluster(None, None, None);
        for status in [
            now("DEPLOYED", Some("exec-2"), Some(AFTER)),
            now("DEPLOYED", None, Some(AFTER)),
            now("DEPLOYMENT_ERROR", Some("exec-2"), Some(AFTER)),
            now("DEPLOYED", None, None),
        ] {
            assert!(!is_new_deployment(&unrecorded, &status), "{status:?}");
        }
    }
}
