//! Step 1. Check that a rotation is safe, and change nothing: the input is valid, no
//! other rotation of this user runs, the token works, the IAM user has exactly one key,
//! and Qovery holds it. Finds every holder of that key, of every kind (credentials,
//! container and helm registries, secret manager accesses, DNS providers), refuses if
//! one cannot be given a new key, and decides which clusters to redeploy.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::clusters::{self, Decision};
use crate::config::Deps;
use crate::error::RotationError;
use crate::input::ExecutionInput;
use crate::qovery::holders;
use crate::qovery::{ClusterStatus, Holder, HolderKind, HolderRef, Holding};
use crate::secret::Secret;
use crate::state::{
    describe_keys, ClusterPlan, KeySummary, LeftAlone, PreflightReport, RotationState,
    SkippedCluster,
};
use crate::{iam, step_functions, timefmt};

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
    let event: PreflightEvent = serde_json::from_value(event).map_err(|e| {
        RotationError::InvalidInput(format!(
            "The preflight step got an input it cannot read: {e}. The state machine passes the execution input \
             as `input`, with `execution_id` and `state_machine_arn`. {NOTHING_CHANGED}"
        ))
    })?;
    let input = ExecutionInput::parse(&event.input)?;
    let user = &input.iam_user_name;
    let preflight_at = timefmt::format(timefmt::now());
    tracing::info!(iam_user_name = %user, organization_id = %input.organization_id,
        credentials_id = ?input.credentials_id, dry_run = input.dry_run, "preflight");

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
    let all = super::survey(deps, &token, &input.organization_id, NOTHING_CHANGED).await?;

    let keys = iam::list_access_keys(&deps.iam, user).await.map_err(|e| {
        let context = if e.is_code("NoSuchEntity") {
            format!("IAM user {user} does not exist; check iam_user_name. {NOTHING_CHANGED}")
        } else {
            NOTHING_CHANGED.to_string()
        };
        e.into_rotation_error(&context)
    })?;
    let qovery_key = key_to_rotate(&input, &all, &keys)?;
    let holding = holders_of(&all, &qovery_key)?;
    let left_alone: Vec<LeftAlone> = all
        .iter()
        .filter(|h| {
            !h.holds(&qovery_key) && matches!(h.holding, Holding::Key(_) | Holding::Role(_))
        })
        .map(|h| LeftAlone {
            holder: h.to_ref(),
            reason: h.holding_text(),
        })
        .collect();

    let (clusters, skipped_clusters) =
        plan_clusters(deps, &token, &input.organization_id, &holding).await?;
    input.check_history_budget(clusters.len())?;

    let holders: Vec<HolderRef> = holding.iter().map(|h| h.to_ref()).collect();
    let summary = summary(
        &input,
        &holders,
        &qovery_key,
        &clusters,
        &skipped_clusters,
        &left_alone,
    );
    tracing::info!(old_access_key_id = %qovery_key, holders = holders.len(),
        clusters = clusters.len(), skipped = skipped_clusters.len(), "{summary}");
    Ok(RotationState {
        execution_id: event.execution_id,
        state_machine_arn: event.state_machine_arn,
        preflight_at,
        iam_user_name: input.iam_user_name.clone(),
        organization_id: input.organization_id.clone(),
        holders,
        clusters,
        skipped_clusters,
        drain_seconds: input.drain_seconds,
        deploy_timeout_seconds: input.deploy_timeout_seconds,
        poll_interval_seconds: input.poll_interval_seconds,
        dry_run: input.dry_run,
        old_access_key_id: qovery_key.clone(),
        report: PreflightReport {
            summary,
            keys,
            qovery_access_key_id: qovery_key,
            left_alone,
        },
        new_access_key_id: None,
        key_secret_id: None,
        new_key_version_id: None,
        qovery_updated_at: None,
        drain_until: None,
    })
}

/// The key to rotate: the one the named credentials hold, or, without
/// `credentials_id`, the user's key. Either way it must be the user's only key.
fn key_to_rotate(
    input: &ExecutionInput,
    all: &[Holder],
    keys: &[KeySummary],
) -> Result<String, RotationError> {
    let user = &input.iam_user_name;
    let qovery_key = match &input.credentials_id {
        Some(id) => {
            let entry = all
                .iter()
                .find(|h| h.kind == HolderKind::Credentials && h.id.eq_ignore_ascii_case(id))
                .ok_or_else(|| {
                    RotationError::PreconditionFailed(format!(
                        "Qovery organization {} has no credentials {id}; it has: {}. Fix credentials_id, or leave it \
                         out to find the credentials from the key of {user}. {NOTHING_CHANGED}",
                        input.organization_id,
                        holders::describe_all(all.iter().filter(|h| h.kind == HolderKind::Credentials))
                    ))
                })?;
            match (&entry.holding, &entry.cannot_give) {
                (Holding::Key(key), None) => key.clone(),
                (Holding::Role(_), _) => {
                    return Err(RotationError::PreconditionFailed(format!(
                        "Qovery {} by role, not by a static key: role credentials (AWS_ROLE) need no rotation. \
                         {NOTHING_CHANGED}",
                        entry.describe()
                    )))
                }
                _ => {
                    return Err(RotationError::PreconditionFailed(format!(
                        "Qovery {} are not static AWS keys a rotation can change{}. {NOTHING_CHANGED}",
                        entry.describe(),
                        entry
                            .cannot_give
                            .as_deref()
                            .map(|why| format!(": {why}"))
                            .unwrap_or_default()
                    )))
                }
            }
        }
        None => match keys {
            [only] => only.access_key_id.clone(),
            _ => {
                return Err(RotationError::PreconditionFailed(format!(
                    "IAM user {user} must have exactly one access key, the one Qovery holds; it has {}: {}. \
                     A rotation needs room for a second key. Delete the key(s) Qovery does not hold once you are \
                     sure nothing uses them, then start again. {NOTHING_CHANGED}",
                    keys.len(),
                    describe_keys(keys)
                )))
            }
        },
    };

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
            input.credentials_id.as_deref().unwrap_or("(found from the key)"),
            keys.len(),
            describe_keys(keys)
        )));
    }
    Ok(qovery_key)
}

/// Every holder of `key`, of every kind. Each must be one a rotation can give the new
/// key to, and none may hide which key it holds: the old key is deleted at the end,
/// and it must not be deleted under any of them.
fn holders_of<'a>(all: &'a [Holder], key: &str) -> Result<Vec<&'a Holder>, RotationError> {
    let holding = holders::holding(all, key);
    if holding.is_empty() {
        return Err(RotationError::PreconditionFailed(format!(
            "Nothing in the Qovery organization holds key {key}; what holds an AWS key: {}. Check iam_user_name \
             and organization_id. {NOTHING_CHANGED}",
            holders::describe_all(all.iter().filter(|h| h.holding != Holding::Nothing))
        )));
    }
    let unreadable: Vec<&Holder> = all
        .iter()
        .filter(|h| h.holding == Holding::Unreadable)
        .collect();
    if !unreadable.is_empty() {
        return Err(RotationError::PreconditionFailed(format!(
            "Qovery does not show which key these hold: {}. Any of them could hold {key}, which the rotation \
             deletes at the end, so it does not start. Check them in the Qovery console (give them a key again, or \
             a role), then start again. {NOTHING_CHANGED}",
            holders::describe_all(unreadable)
        )));
    }
    let stuck: Vec<&&Holder> = holding.iter().filter(|h| h.cannot_give.is_some()).collect();
    if !stuck.is_empty() {
        return Err(RotationError::PreconditionFailed(format!(
            "These hold key {key} but cannot be given a new key by this rotation: {}. Deleting {key} later would \
             break them. Point each at another key (an IAM user of its own) or at a role (AWS_ROLE_ARN for a \
             secret manager access) in the Qovery console, then start again. {NOTHING_CHANGED}",
            stuck
                .iter()
                .map(|h| format!(
                    "{} ({})",
                    h.label(),
                    h.cannot_give.as_deref().unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(holding)
}

/// Every cluster a holder needs redeployed (the clusters of credentials, the cluster
/// of a DNS provider), each either planned for a redeploy or skipped.
async fn plan_clusters(
    deps: &Deps,
    token: &Secret,
    organization_id: &str,
    holding: &[&Holder],
) -> Result<(Vec<ClusterPlan>, Vec<SkippedCluster>), RotationError> {
    let statuses: BTreeMap<String, ClusterStatus> = deps
        .qovery
        .organization_cluster_statuses(token, organization_id)
        .await
        .map_err(|e| e.into_rotation_error(NOTHING_CHANGED))?
        .into_iter()
        .map(|s| (s.cluster_id.to_ascii_lowercase(), s))
        .collect();
    let mut plans = Vec::new();
    let mut skipped = Vec::new();
    for holder in holding {
        for cluster in &holder.redeploy {
            let id = cluster.id.to_ascii_lowercase();
            if plans.iter().any(|p: &ClusterPlan| p.id == id)
                || skipped.iter().any(|s: &SkippedCluster| s.id == id)
            {
                continue;
            }
            let status = match statuses.get(&id) {
                Some(status) => status.clone(),
                None => deps
                    .qovery
                    .cluster_status(token, organization_id, &id)
                    .await
                    .map_err(|e| e.into_rotation_error(NOTHING_CHANGED))?,
            };
            let name = cluster.name.clone();
            match clusters::decide(&status) {
                Decision::Redeploy => plans.push(ClusterPlan {
                    id,
                    name,
                    held_by: holder.label(),
                    status: status.status.as_str().to_string(),
                    handover_status: None,
                    handover_execution_id: None,
                    handover_deployment_date: None,
                }),
                Decision::Skip(reason) => skipped.push(SkippedCluster {
                    id,
                    name,
                    held_by: holder.label(),
                    status: status.status.as_str().to_string(),
                    reason: reason.to_string(),
                }),
            }
        }
    }
    Ok((plans, skipped))
}

fn summary(
    input: &ExecutionInput,
    holders: &[HolderRef],
    old_key: &str,
    clusters: &[ClusterPlan],
    skipped: &[SkippedCluster],
    left_alone: &[LeftAlone],
) -> String {
    let entries = holders
        .iter()
        .map(HolderRef::label)
        .collect::<Vec<_>>()
        .join("; ");
    let planned = clusters
        .iter()
        .map(|c| format!("{} ({}, {})", c.name, c.id, c.status))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "{}Rotation of IAM user {}: create a second key, prove it with STS, give it to the {} Qovery holder(s) of \
         {old_key}: {entries}; redeploy {} cluster(s) one at a time{}, waiting until each is DEPLOYED (the first \
         is the canary: a failure stops the rotation before the next); wait a drain of {} s; then delete the old \
         key {old_key}.",
        if input.dry_run { "Dry run, nothing was changed. " } else { "" },
        input.iam_user_name,
        holders.len(),
        clusters.len(),
        if planned.is_empty() { String::new() } else { format!(": {planned}") },
        input.drain_seconds,
    );
    if !skipped.is_empty() {
        text.push_str(&format!(
            " Not redeployed (they pick up the new key when next started or deployed): {}.",
            skipped
                .iter()
                .map(|c| format!("{} ({}, {}: {})", c.name, c.id, c.status, c.reason))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !left_alone.is_empty() {
        text.push_str(&format!(
            " Left alone (they do not hold {old_key}): {}.",
            left_alone
                .iter()
                .map(|l| format!("{} {}", l.holder.label(), l.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    text
}
