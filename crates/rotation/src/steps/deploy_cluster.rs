//! Step 5, for one cluster (run in a wave's Map). Redeploy the cluster so it picks up
//! the new credentials.
//!
//! - A deployment that started after the hand-over (its execution id or date differs
//!   from what Qovery reported then) already uses the new key: it is followed, not
//!   repeated. This is also what makes a second call with the same input safe: the
//!   first call's deployment is found and followed, so at most one extra deployment
//!   ever happens, and the loop ends. If Qovery's status does not show that deployment
//!   yet, the repeat's deploy is refused (one is already queued): the cluster, busy
//!   now, is left to settle as below.
//! - A busy cluster is left to settle first: a deployment that began before the
//!   hand-over runs with the old key.
//! - A cluster stopped or deleted since preflight is not started again (`skipped`).

use serde_json::Value;

use crate::clusters::{self, Decision};
use crate::config::Deps;
use crate::error::RotationError;
use crate::qovery::{QoveryErrorKind, StateClass};
use crate::state::{parse_step_input, ClusterDeployment, Phase};
use crate::timefmt;

pub async fn handle(deps: &Deps, event: Value) -> Result<ClusterDeployment, RotationError> {
    let mut cluster: ClusterDeployment = parse_step_input("deploy-cluster", event)?;
    // A migration's PointCluster: the same function, before the cluster's first deploy.
    if cluster.target_credentials.is_some() && !cluster.pointed {
        // Boxed: inline, the Lambda binary's runtime loop is too deep for rustc to lay out.
        let point: std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<ClusterDeployment, RotationError>>
                    + Send
                    + '_,
            >,
        > = Box::pin(super::move_to_role::point_cluster(deps, cluster));
        return point.await;
    }
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

    let status = deps
        .qovery
        .cluster_status(&token, &cluster.organization_id, &cluster.cluster_id)
        .await
        .map_err(|e| e.into_rotation_error(&context))?;
    cluster.status = Some(status.status.as_str().to_string());

    // First: a stop or a delete is an execution of its own, so a cluster stopped since the
    // hand-over also shows a new execution id, and must not be followed as a deployment.
    if let Decision::Skip(reason) = clusters::decide(&status) {
        tracing::info!(cluster_id = %cluster.cluster_id, status = status.status.as_str(), reason, "not redeployed");
        cluster.phase = Some(Phase::Skipped);
        return Ok(cluster);
    }
    if super::check_status::is_new_deployment(&cluster, &status) {
        tracing::info!(cluster_id = %cluster.cluster_id, status = status.status.as_str(),
            last_execution_id = ?status.last_execution_id, "a deployment started after the hand-over; following it");
        cluster.last_execution_id = status.last_execution_id;
        cluster.phase = Some(Phase::InProgress);
        return Ok(cluster);
    }
    if matches!(
        status.status.class(),
        StateClass::Busy | StateClass::Unknown
    ) {
        if now >= deadline {
            return Err(super::check_status::timed_out(
                &cluster,
                "waiting for it to settle before the redeploy",
            ));
        }
        tracing::info!(cluster_id = %cluster.cluster_id, status = status.status.as_str(), "cluster busy; deploying once it settles");
        cluster.phase = Some(Phase::AwaitingIdle);
        return Ok(cluster);
    }

    let started = match deps
        .qovery
        .deploy_cluster(&token, &cluster.organization_id, &cluster.cluster_id)
        .await
    {
        Ok(started) => started,
        Err(refused) if refused.kind == QoveryErrorKind::Rejected => {
            // A repeat of this step whose first call's deploy Qovery's status did not
            // show yet: the refusal is that deployment. Asked again, the cluster is busy.
            let now_status = deps
                .qovery
                .cluster_status(&token, &cluster.organization_id, &cluster.cluster_id)
                .await
                .map_err(|e| e.into_rotation_error(&context))?;
            let busy = matches!(
                now_status.status.class(),
                StateClass::Busy | StateClass::Unknown
            );
            if !busy && !super::check_status::is_new_deployment(&cluster, &now_status) {
                return Err(refused.into_rotation_error(&context));
            }
            tracing::info!(cluster_id = %cluster.cluster_id, status = now_status.status.as_str(),
                "deploy refused while a deployment is queued; following it once it settles");
            cluster.status = Some(now_status.status.as_str().to_string());
            cluster.phase = Some(Phase::AwaitingIdle);
            return Ok(cluster);
        }
        Err(e) => return Err(e.into_rotation_error(&context)),
    };
    tracing::info!(cluster_id = %cluster.cluster_id, status = started.status.as_str(), "redeploy requested");
    cluster.deploy_requested_at = Some(timefmt::format(now));
    cluster.status = Some(started.status.as_str().to_string());
    cluster.last_execution_id = started.last_execution_id;
    cluster.phase = Some(Phase::InProgress);
    Ok(cluster)
}
