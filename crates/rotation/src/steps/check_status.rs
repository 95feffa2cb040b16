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
