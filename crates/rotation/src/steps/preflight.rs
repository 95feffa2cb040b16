//! Step 1. Check that a rotation is safe, and change nothing: the input is valid, no
//! other rotation of this user runs, the token works, and the IAM user has exactly
//! one key, the one Qovery holds.

use serde::Deserialize;
use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;
use crate::input::ExecutionInput;
use crate::state::{describe_keys, parse_step_input, ClusterRef, PreflightReport, RotationState};
use crate::{iam, step_functions};

/// What the ASL passes in: the execution input plus ids from the context object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreflightEvent {
    input: Value,
    execution_id: String,
    state_machine_arn: String,
}

const NOTHING_CHANGED: &str = "Nothing was changed.";

pub async fn handle(deps: &Deps, event: Value) -> Result<RotationState, RotationError> {
    let event: PreflightEvent = parse_step_input("preflight", event)?;
    let input = ExecutionInput::parse(&event.input)?;
    let user = &input.iam_user_name;
    tracing::info!(iam_user_name = %user, organization_id = %input.organization_id,
        credentials_id = %input.credentials_id, dry_run = input.dry_run, "preflight");

    let others = step_functions::running_rotations_for_user(
        &deps.sfn,
        &event.state_machine_arn,
        &event.execution_id,
        user,
    )
    .await
    .map_err(|e| e.into_rotation_error(NOTHING_CHANGED))?;
    if !others.is_empty() {
        return Err(RotationError::RotationInProgress(format!(
            "Another execution is already rotating the key of IAM user {user}: {}. Two rotations at once could \
             delete the key the other one gave Qovery. Let it finish (or stop it) and start again. {NOTHING_CHANGED}",
            others.join(", ")
        )));
    }

    let token = super::qovery_token(deps, NOTHING_CHANGED).await?;
    let credentials = deps
        .qovery
        .get_aws_credentials(&token, &input.organization_id, &input.credentials_id)
        .await
        .map_err(|e| e.into_rotation_error(NOTHING_CHANGED))?;
    let qovery_key = match (credentials.object_type.as_str(), &credentials.access_key_id) {
        ("AWS", Some(key)) => key.clone(),
        (kind, _) => {
            return Err(RotationError::PreconditionFailed(format!(
                "Qovery credentials {} ({}) are of type {kind}, not static AWS keys. Role credentials (AWS_ROLE) \
                 need no rotation. {NOTHING_CHANGED}",
                credentials.id, credentials.name
            )))
        }
    };

    let (clusters, clusters_not_redeployed) = resolve_clusters(deps, &token, &input).await?;
    input.check_history_budget(clusters.len())?;

    let keys = iam::list_access_keys(&deps.iam, user).await.map_err(|e| {
        let context = if e.is_code("NoSuchEntity") {
            format!("IAM user {user} does not exist; check iam_user_name. {NOTHING_CHANGED}")
        } else {
            NOTHING_CHANGED.to_string()
        };
        e.into_rotation_error(&context)
    })?;
    let only_key_is_qoverys = keys.len() == 1 && keys[0].access_key_id == qovery_key;
    if !only_key_is_qoverys {
        let advice = if keys.iter().any(|k| k.access_key_id == qovery_key) {
            format!(
                "A rotation needs room for a second key. Delete the key(s) other than {qovery_key} (the one Qovery \
                 holds) once you are sure nothing uses them, then start again."
            )
        } else {
            format!(
                "Qovery holds {qovery_key}, which is not a key of this user: check iam_user_name and \
                 credentials_id, and make Qovery hold a working key of {user} before rotating."
            )
        };
        return Err(RotationError::PreconditionFailed(format!(
            "IAM user {user} must have exactly one access key, the one Qovery credentials {} hold ({qovery_key}); \
             it has {}: {}. {advice} {NOTHING_CHANGED}",
            input.credentials_id,
            keys.len(),
            describe_keys(&keys)
        )));
    }

    let summary = summary(
        &input,
        &credentials.name,
        &qovery_key,
        &clusters,
        &clusters_not_redeployed,
    );
    tracing::info!(old_access_key_id = %qovery_key, clusters = clusters.len(), "{summary}");
    Ok(RotationState {
        execution_id: event.execution_id,
        state_machine_arn: event.state_machine_arn,
        iam_user_name: input.iam_user_name.clone(),
        organization_id: input.organization_id.clone(),
        credentials_id: input.credentials_id.clone(),
        credentials_name: credentials.name.clone(),
        cluster_ids: clusters.iter().map(|c| c.id.clone()).collect(),
        drain_seconds: input.drain_seconds,
        deploy_timeout_seconds: input.deploy_timeout_seconds,
        poll_interval_seconds: input.poll_interval_seconds,
        dry_run: input.dry_run,
        old_access_key_id: qovery_key.clone(),
        report: PreflightReport {
            summary,
            keys,
            qovery_access_key_id: qovery_key,
            clusters,
            clusters_not_redeployed,
        },
        new_access_key_id: None,
        key_secret_id: None,
        new_key_version_id: None,
        qovery_updated_at: None,
        drain_until: None,
    })
}

/// The clusters to redeploy (the requested ones, or every cluster using the
/// credentials) and the ones using the credentials that will not be redeployed.
async fn resolve_clusters(
    deps: &Deps,
    token: &crate::secret::Secret,
    input: &ExecutionInput,
) -> Result<(Vec<ClusterRef>, Vec<ClusterRef>), RotationError> {
    let usages = deps
        .qovery
        .list_organization_credentials(token, &input.organization_id)
        .await
        .map_err(|e| e.into_rotation_error(NOTHING_CHANGED))?;
    let using: Vec<ClusterRef> = usages
        .iter()
        .filter(|u| u.credential.id.eq_ignore_ascii_case(&input.credentials_id))
        .flat_map(|u| u.clusters.iter())
        .map(|c| ClusterRef {
            id: c.id.to_ascii_lowercase(),
            name: c.name.clone().unwrap_or_default(),
        })
        .collect();
    let Some(requested) = &input.cluster_ids else {
        return Ok((using, Vec::new()));
    };
    if let Some(stranger) = requested
        .iter()
        .find(|id| !using.iter().any(|c| &c.id == *id))
    {
        return Err(RotationError::PreconditionFailed(format!(
            "Cluster {stranger} in cluster_ids does not use credentials {}; the clusters that do are: {}. \
             Redeploying it would not apply the new key. Fix cluster_ids or omit it. {NOTHING_CHANGED}",
            input.credentials_id,
            if using.is_empty() {
                "none".to_string()
            } else {
                using.iter().map(|c| format!("{} ({})", c.id, c.name)).collect::<Vec<_>>().join(", ")
            }
        )));
    }
    let (chosen, left_out) = using.into_iter().partition(|c| requested.contains(&c.id));
    Ok((chosen, left_out))
}

fn summary(
    input: &ExecutionInput,
    credentials_name: &str,
    old_key: &str,
    clusters: &[ClusterRef],
    left_out: &[ClusterRef],
) -> String {
    let names = |list: &[ClusterRef]| {
        list.iter()
            .map(|c| format!("{} ({})", c.name, c.id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "{}Rotation of IAM user {}: create a second key, prove it with STS, give it to Qovery credentials {} ({}), \
         redeploy {} cluster(s){}, wait until every one is DEPLOYED, wait a drain of {} s, then delete the old key {}.",
        if input.dry_run { "Dry run, nothing was changed. " } else { "" },
        input.iam_user_name,
        input.credentials_id,
        credentials_name,
        clusters.len(),
        if clusters.is_empty() { String::new() } else { format!(": {}", names(clusters)) },
        input.drain_seconds,
        old_key,
    );
    if !left_out.is_empty() {
        text.push_str(&format!(
            " Not redeployed, because cluster_ids leaves them out (they take the new key at their next deployment, \
             and may fail once the old key is deleted): {}.",
            names(left_out)
        ));
    }
    text
}
