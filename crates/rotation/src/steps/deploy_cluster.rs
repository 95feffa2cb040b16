//! Step 5, for one cluster (run in a Map). Redeploy the cluster so it picks up the new
//! credentials. A busy cluster is left to settle first: a deploy queued behind a
//! running one might not apply the new credentials.

use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;
use crate::qovery::StateClass;
use crate::state::{parse_step_input, ClusterDeployment, Phase};
use crate::timefmt;

pub async fn handle(deps: &Deps, event: Value) -> Result<ClusterDeployment, RotationError> {
    let mut cluster: ClusterDeployment = parse_step_input("deploy-cluster", event)?;
    let now = timefmt::now();
    let deadline = match cluster.deadline.as_deref().and_then(timefmt::parse) {
        Some(deadline) => deadline,
        None => {
            let deadline = now + time::Duration::seconds(cluster.deploy_timeout_seconds as i64);
            cluster.deadline = Some(timefmt::format(deadline));
            deadline
        }
    };
    let context = super::check_status::keys_context(&cluster);
    let token = super::qovery_token(deps, &context).await?;

    let before = deps
        .qovery
        .cluster_status(&token, &cluster.organization_id, &cluster.cluster_id)
        .await
        .map_err(|e| e.into_rotation_error(&context))?;
    cluster.status = Some(before.status.as_str().to_string());
    if matches!(
        before.status.class(),
        StateClass::Busy | StateClass::Unknown
    ) {
        if now >= deadline {
            return Err(super::check_status::timed_out(
                &cluster,
                "waiting for it to settle before the redeploy",
            ));
        }
        tracing::info!(cluster_id = %cluster.cluster_id, status = before.status.as_str(), "cluster busy; deploying once it settles");
        cluster.phase = Some(Phase::AwaitingIdle);
        return Ok(cluster);
    }

    // What Qovery reports now belongs to the previous deployment: a DEPLOYED that still
    // carries these ids is stale.
    cluster.baseline_execution_id = before.last_execution_id;
    cluster.baseline_deployment_date = before.last_deployment_date;
    let started = deps
        .qovery
        .deploy_cluster(&token, &cluster.organization_id, &cluster.cluster_id)
        .await
        .map_err(|e| e.into_rotation_error(&context))?;
    tracing::info!(cluster_id = %cluster.cluster_id, status = started.status.as_str(), "redeploy requested");
    cluster.deploy_requested_at = Some(timefmt::format(now));
    cluster.status = Some(started.status.as_str().to_string());
    cluster.last_execution_id = started.last_execution_id;
    cluster.phase = Some(Phase::InProgress);
    Ok(cluster)
}
