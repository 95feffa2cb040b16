//! A move of Qovery from the static key to an IAM role, after preflight planned it
//! (`migrate_to_role`). The order keeps every holder working at every step:
//!
//! 1. CreateRoleEntry: the AWS_ROLE credentials for the role (adopted when an earlier
//!    attempt made them). Nothing points at them yet.
//! 2. PointCluster, in the DeployClusters waves (canary first): each running cluster is
//!    pointed at them and redeployed. Its static credentials keep the key, so moving
//!    it back is one call. A failure on the role is `RoleNotProven`: UndoMigration
//!    points every moved cluster back, they are redeployed on the key, and
//!    AbandonMigration removes the role credentials this migration made.
//! 3. HandOverToRole, once every running cluster is DEPLOYED on the role (proven): the
//!    clusters that are not running are pointed at the role, and every registry and
//!    helm repository on the key switches to it: the point of no return (the tool never
//!    had the static secret to give back).
//! 4. After the drain, the quarantine deletes the static credentials (no cluster uses
//!    them), then switches the old key off; DeleteOldKey deletes it as in a rotation,
//!    once no holder holds it.
//!
//! Each step writes the ledger's phase before it acts; the next run undoes a migration
//! stopped before the switch, and finishes one stopped after it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clusters;
use crate::config::Deps;
use crate::error::RotationError;
use crate::ledger::{LedgerPhase, Record};
use crate::qovery::holders::{self, Holder, RoleRoute};
use crate::qovery::{self, CredentialsRef, HolderKind, Holding, QoveryErrorKind};
use crate::secret::Secret;
use crate::state::{ClusterDeployment, ClusterPlan, MigrationRun, Mode, RotationState};
use crate::timefmt;

const NOTHING_MOVED: &str =
    "No cluster was moved; the static key and every holder are as they were.";

fn migration_of(state: &RotationState) -> Result<MigrationRun, RotationError> {
    state.migration.clone().ok_or_else(|| {
        RotationError::InvalidInput(
            "This step moves Qovery to a role, but the state carries no migration. Nothing was changed."
                .to_string(),
        )
    })
}

/// The lock holder's record: this execution's, and there must be one.
async fn locked_record(
    deps: &Deps,
    state: &RotationState,
    context: &str,
) -> Result<Record, RotationError> {
    super::locked_record(deps, &state.iam_user_name, &state.execution_id, context).await
}

async fn write(
    deps: &Deps,
    record: &Record,
    phase: LedgerPhase,
    migration: &MigrationRun,
    context: &str,
) -> Result<Record, RotationError> {
    super::write_record(
        deps,
        Record {
            phase,
            migration: Some(migration.clone()),
            ..record.clone()
        },
        context,
    )
    .await
}

/// CreateRoleEntry: records the migration, then makes (or adopts) the role credentials
/// and plans the waves with them as every running cluster's target.
pub async fn create_role_entry(
    deps: &Deps,
    mut state: RotationState,
) -> Result<RotationState, RotationError> {
    let mut migration = migration_of(&state)?;
    let record = locked_record(deps, &state, NOTHING_MOVED).await?;
    let record = write(
        deps,
        &record,
        LedgerPhase::MovingClusters,
        &migration,
        NOTHING_MOVED,
    )
    .await?;
    let token = super::qovery_token(deps, NOTHING_MOVED).await?;
    let name = role_credentials_name(&migration.role_arn);
    let entry = qovery::role_entry(
        &deps.qovery,
        &token,
        &state.organization_id,
        &name,
        &migration.role_arn,
        &migration.credentials_before,
    )
    .await
    .map_err(|e| e.into_rotation_error(NOTHING_MOVED))?;
    migration.role_credentials_created |= entry.created;
    let target = CredentialsRef {
        id: entry.id,
        name: entry.name,
    };
    migration.role_credentials = Some(target.clone());
    write(
        deps,
        &record,
        LedgerPhase::MovingClusters,
        &migration,
        NOTHING_MOVED,
    )
    .await?;
    tracing::info!(role_credentials_id = %target.id, created = migration.role_credentials_created,
        role_arn = %migration.role_arn, "role credentials ready");
    for plan in &mut state.clusters {
        plan.target_credentials = Some(target.clone());
    }
    state.deploy_waves = clusters::waves(&state.clusters, state.deploy_concurrency);
    state.migration = Some(migration);
    Ok(state)
}

/// The name the role credentials get in Qovery: the role's, so the console shows which.
fn role_credentials_name(role_arn: &str) -> String {
    let role = role_arn.rsplit('/').next().unwrap_or(role_arn);
    format!("{role} (role)")
}

/// PointCluster, in the wave's iteration: points the cluster at the role credentials
/// and takes its deployment as of then as the baseline, so that DeployCluster redeploys
/// it on the role. A repeat finds it pointed and sends nothing.
pub async fn point_cluster(
    deps: &Deps,
    mut cluster: ClusterDeployment,
) -> Result<ClusterDeployment, RotationError> {
    let Some(target) = cluster.target_credentials.clone() else {
        return Ok(cluster);
    };
    let context = format!(
        "Cluster {} was to be pointed at role credentials {} ({}); its static credentials still hold the key.",
        cluster.label(),
        target.name,
        target.id
    );
    let token = super::qovery_token(deps, &context).await?;
    let moved = qovery::point_cluster(
        &deps.qovery,
        &token,
        &cluster.organization_id,
        &cluster.cluster_id,
        &target,
    )
    .await
    .map_err(|e| e.into_rotation_error(&context))?;
    // No deployment can start between the move and this read: DeployCluster comes next.
    let status = deps
        .qovery
        .cluster_status(&token, &cluster.organization_id, &cluster.cluster_id)
        .await
        .map_err(|e| e.into_rotation_error(&context))?;
    tracing::info!(cluster_id = %cluster.cluster_id, from = %moved.from.id, to = %target.id,
        already = moved.already, "cluster pointed at the role credentials");
    cluster.baseline_status = Some(status.status.as_str().to_string());
    cluster.baseline_execution_id = status.last_execution_id;
    cluster.baseline_deployment_date = status.last_deployment_date;
    cluster.pointed = true;
    Ok(cluster)
}

/// HandOverToRole: the role is proven on every running cluster. Points the others at
/// it, switches every registry and helm repository on the static key to the role, and
/// records the hand-over, from which the drain counts.
pub async fn hand_over_role(
    deps: &Deps,
    mut state: RotationState,
) -> Result<RotationState, RotationError> {
    let migration = migration_of(&state)?;
    let old = state.old_access_key_id.clone();
    let Some(target) = migration.role_credentials.clone() else {
        return Err(RotationError::PreconditionFailed(format!(
            "The migration of IAM user {} records no role credentials to hand over to. Nothing was changed; the \
             static key {old} stays.",
            state.iam_user_name
        )));
    };
    let context = format!(
        "Every running cluster is DEPLOYED on role credentials {} ({}); the static key {old} stays until every \
         holder is on the role. Start a new run: it finishes the hand-over.",
        target.name, target.id
    );
    let record = locked_record(deps, &state, &context).await?;
    let handed_over_before = record.handover_at.clone();
    let record = if handed_over_before.is_none() {
        write(
            deps,
            &record,
            LedgerPhase::SwitchingHolders,
            &migration,
            &context,
        )
        .await?
    } else {
        record
    };
    let token = super::qovery_token(deps, &context).await?;
    for origin in &migration.cluster_origins {
        if state
            .clusters
            .iter()
            .any(|c| c.id.eq_ignore_ascii_case(&origin.cluster_id))
        {
            continue;
        }
        // Not running: it uses the role from its next start.
        qovery::point_cluster(
            &deps.qovery,
            &token,
            &state.organization_id,
            &origin.cluster_id,
            &target,
        )
        .await
        .map_err(|e| e.into_rotation_error(&context))?;
    }
    let all = super::survey(deps, &token, &state.organization_id, &context).await?;
    for holder in holders::holding(&all, &old) {
        if holder.role_route() != RoleRoute::SwitchToRole {
            continue;
        }
        let holding = holders::give_role(
            &deps.qovery,
            &token,
            &state.organization_id,
            holder,
            &migration.role_arn,
        )
        .await
        .map_err(|e| match e.kind {
            // A refusal is final: the next run finishes. An outage is retried by the ASL.
            QoveryErrorKind::Rejected => {
                RotationError::HandOverIncomplete(format!("{} {context}", e.describe()))
            }
            _ => e.into_rotation_error(&context),
        })?;
        if holding != Holding::Role(migration.role_arn.clone()) {
            return Err(RotationError::HandOverIncomplete(format!(
                "Qovery answered the switch of {} to role {} with {holding:?}. {context}",
                holder.label(),
                migration.role_arn
            )));
        }
        tracing::info!(holder = %holder.label(), role_arn = %migration.role_arn, "switched to the role");
    }
    let now = super::survey(deps, &token, &state.organization_id, &context).await?;
    let stuck = still_on_key(&now, &old, &migration);
    if !stuck.is_empty() {
        return Err(RotationError::HandOverIncomplete(format!(
            "These still hold the static key {old} and cannot be moved to the role: {}. {context}",
            stuck.join("; ")
        )));
    }
    let handover_at = handed_over_before.unwrap_or_else(|| timefmt::format(timefmt::now()));
    let holders_now: Vec<_> = state
        .holders
        .iter()
        .map(|h| {
            now.iter()
                .find(|n| n.is(h))
                .map(Holder::to_ref)
                .unwrap_or_else(|| h.clone())
        })
        .collect();
    super::write_record(
        deps,
        Record {
            phase: LedgerPhase::HandedOver,
            handover_at: Some(handover_at.clone()),
            holders: holders_now.clone(),
            migration: Some(migration),
            ..record
        },
        &context,
    )
    .await?;
    let at = timefmt::parse(&handover_at).unwrap_or_else(timefmt::now);
    state.holders = holders_now;
    state.qovery_updated_at = Some(handover_at);
    state.drain_until = Some(timefmt::after(at, state.drain_seconds));
    Ok(state)
}

/// Holders of the static key after the switch that the migration does not retire: only
/// its static credentials, with no cluster left on them, may still hold it.
pub fn still_on_key(all: &[Holder], old: &str, migration: &MigrationRun) -> Vec<String> {
    holders::may_hold(all, old)
        .into_iter()
        .filter(|h| {
            let retired = h.kind == HolderKind::Credentials
                && h.redeploy.is_empty()
                && migration
                    .static_credentials
                    .iter()
                    .any(|s| s.id.eq_ignore_ascii_case(&h.id));
            !retired
        })
        .map(Holder::describe)
        .collect()
}

/// UndoMigration: points every cluster of the plan that is on role credentials back at
/// its static credentials, and plans the running ones to be redeployed there.
pub async fn undo_migration(
    deps: &Deps,
    mut state: RotationState,
) -> Result<RotationState, RotationError> {
    let migration = migration_of(&state)?;
    let context = format!(
        "The migration to role {} is being undone; the static key {} was never touched. Start a new run: it \
         finishes the undo.",
        migration.role_arn, state.old_access_key_id
    );
    let record = locked_record(deps, &state, &context).await?;
    let switching = !matches!(
        record.phase,
        LedgerPhase::Planned | LedgerPhase::MovingClusters | LedgerPhase::UndoingMigration
    );
    if record.handover_at.is_some() || switching {
        return Err(RotationError::PreconditionFailed(format!(
            "The migration to role {} switched holders to the role already: it is never undone, only finished. \
             Start a new run: it finishes it.",
            migration.role_arn
        )));
    }
    // An earlier attempt of the undo (a retry after a lost answer, or an ended run's undo
    // that the next run resumes) may have pointed clusters back without their redeploy.
    // Such a cluster cannot be told from one that never moved, so each running one is
    // redeployed on its static credentials; otherwise it stayed as its deploy on the role
    // left it (INVALID_CREDENTIALS) while AbandonMigration reports the migration undone.
    let undo_seen_before = record.phase == LedgerPhase::UndoingMigration;
    write(
        deps,
        &record,
        LedgerPhase::UndoingMigration,
        &migration,
        &context,
    )
    .await?;
    let token = super::qovery_token(deps, &context).await?;
    let mut redeploy = Vec::new();
    for origin in &migration.cluster_origins {
        let info = pointed_at(
            deps,
            &token,
            &state.organization_id,
            &origin.cluster_id,
            &context,
        )
        .await?;
        if info.credentials.is(&origin.credentials) {
            if undo_seen_before {
                redeploy.push(origin.cluster_id.to_ascii_lowercase());
            }
            continue;
        }
        if !is_migration_entry(&info.credentials, &migration) {
            return Err(RotationError::PreconditionFailed(format!(
                "Cluster {} ({}) points at credentials {} ({}), neither its static credentials {} nor the role \
                 credentials of this migration: someone moved it. Nothing was moved back. {context}",
                origin.cluster_name, origin.cluster_id, info.credentials.name, info.credentials.id, origin.credentials.id
            )));
        }
        qovery::point_cluster(
            &deps.qovery,
            &token,
            &state.organization_id,
            &origin.cluster_id,
            &origin.credentials,
        )
        .await
        .map_err(|e| e.into_rotation_error(&context))?;
        tracing::info!(cluster_id = %origin.cluster_id, to = %origin.credentials.id, "cluster pointed back at its static credentials");
        redeploy.push(origin.cluster_id.to_ascii_lowercase());
    }
    // The running ones deployed (or may have) on the role: redeployed on the key.
    let statuses = deps
        .qovery
        .organization_cluster_statuses(&token, &state.organization_id)
        .await
        .map_err(|e| e.into_rotation_error(&context))?;
    let mut plans: Vec<ClusterPlan> = Vec::new();
    for plan in state
        .clusters
        .iter()
        .filter(|c| redeploy.contains(&c.id.to_ascii_lowercase()))
    {
        let status = super::status_of(
            deps,
            &token,
            &state.organization_id,
            &statuses,
            &plan.id,
            &context,
        )
        .await?;
        let mut back = ClusterPlan {
            target_credentials: None,
            ..plan.clone()
        };
        back.note_handover(status);
        plans.push(back);
    }
    state.mode = Mode::UndoMigration;
    state.deploy_waves = clusters::waves(&plans, state.deploy_concurrency);
    Ok(state)
}

/// The credentials a cluster deploys with now.
async fn pointed_at(
    deps: &Deps,
    token: &Secret,
    organization_id: &str,
    cluster_id: &str,
    context: &str,
) -> Result<qovery::CloudProviderInfo, RotationError> {
    qovery::cloud_provider_info(&deps.qovery, token, organization_id, cluster_id)
        .await
        .map_err(|e| e.into_rotation_error(context))
}

/// Role credentials this migration made or recorded.
fn is_migration_entry(entry: &CredentialsRef, migration: &MigrationRun) -> bool {
    migration
        .role_credentials
        .as_ref()
        .is_some_and(|r| r.is(entry))
        || !migration
            .credentials_before
            .iter()
            .any(|id| id.eq_ignore_ascii_case(&entry.id))
}

/// What AbandonMigration did: the execution's cause when it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abandoned {
    pub cause: String,
    pub deleted_role_credentials: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AbandonEvent {
    #[allow(dead_code)]
    mode: String,
    execution_id: String,
    state: Value,
}

/// AbandonMigration: every cluster is back on its static credentials; the role
/// credentials this migration made are deleted, and the lock released.
pub async fn abandon_migration(deps: &Deps, event: Value) -> Result<Abandoned, RotationError> {
    let event: AbandonEvent = serde_json::from_value(event).map_err(|e| {
        RotationError::InvalidInput(format!(
            "The abandon step got an input it cannot read: {e}. Nothing was changed."
        ))
    })?;
    let state: RotationState = crate::state::parse_step_input("delete-key", event.state)?;
    let migration = migration_of(&state)?;
    let user = &state.iam_user_name;
    let context = format!(
        "The static key {} was never touched; the lock of IAM user {user} is kept. Start a new run: it finishes the \
         undo.",
        state.old_access_key_id
    );
    let record = super::own_record(deps, user, &event.execution_id, &context).await?;
    let token = super::qovery_token(deps, &context).await?;
    for origin in &migration.cluster_origins {
        let info = pointed_at(
            deps,
            &token,
            &state.organization_id,
            &origin.cluster_id,
            &context,
        )
        .await?;
        if !info.credentials.is(&origin.credentials) {
            return Err(RotationError::UnsafeDelete(format!(
                "Cluster {} ({}) still points at credentials {} ({}), not its static credentials {}: the role \
                 credentials stay. {context}",
                origin.cluster_name, origin.cluster_id, info.credentials.name, info.credentials.id, origin.credentials.id
            )));
        }
    }
    let mut deleted = Vec::new();
    let all = super::survey(deps, &token, &state.organization_id, &context).await?;
    for entry in all.iter().filter(|h| {
        h.kind == HolderKind::Credentials
            && h.holding == Holding::Role(migration.role_arn.clone())
            && !migration
                .credentials_before
                .iter()
                .any(|id| id.eq_ignore_ascii_case(&h.id))
    }) {
        match qovery::delete_entry(&deps.qovery, &token, &state.organization_id, &entry.id).await {
            Ok(_) => deleted.push(format!("{} ({})", entry.name, entry.id)),
            Err(e) if e.kind == QoveryErrorKind::Rejected => {
                return Err(RotationError::UnsafeDelete(format!(
                    "{} {context}",
                    e.describe()
                )))
            }
            Err(e) => return Err(e.into_rotation_error(&context)),
        }
    }
    if record.is_some() {
        deps.ledger
            .release(user, &event.execution_id)
            .await
            .map_err(|e| e.into_rotation_error(&context))?;
    }
    let moved_back: Vec<String> = migration
        .cluster_origins
        .iter()
        .map(|o| {
            format!(
                "{} ({}) on {}",
                o.cluster_name, o.cluster_id, o.credentials.name
            )
        })
        .collect();
    let why = state
        .migration_error
        .as_ref()
        .and_then(|e| e.get("Cause"))
        .and_then(Value::as_str)
        .map(cause_message)
        .unwrap_or_else(|| "An ended run left the migration unfinished.".to_string());
    let cause = format!(
        "{why} The migration to role {} was undone: every cluster points at its static credentials again \
         ({}), the static key {} and every registry and helm repository are as before, {} and the lock of IAM \
         user {user} is released. Fix the cause, then start the migration again (a dry run first).",
        migration.role_arn,
        moved_back.join(", "),
        state.old_access_key_id,
        if deleted.is_empty() {
            "no role credentials of this migration were left".to_string()
        } else {
            format!("the role credentials it made were deleted ({})", deleted.join(", "))
        },
    );
    tracing::info!("{cause}");
    Ok(Abandoned {
        cause,
        deleted_role_credentials: deleted,
    })
}

/// A Lambda error's cause is `{"errorType", "errorMessage"}` as JSON: its message.
fn cause_message(cause: &str) -> String {
    serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| cause.to_string())
}

/// The quarantine of a migration, first: the static credentials, which no cluster uses
/// any more, are deleted (they hold the old key). Refused while a cluster uses one.
pub async fn retire_static_credentials(
    deps: &Deps,
    token: &Secret,
    organization_id: &str,
    migration: &MigrationRun,
    context: &str,
) -> Result<(), RotationError> {
    for entry in &migration.static_credentials {
        match qovery::delete_entry(&deps.qovery, token, organization_id, &entry.id).await {
            Ok(deleted) => {
                tracing::info!(credentials_id = %entry.id, already = deleted.already, "static credentials deleted")
            }
            Err(e) if e.kind == QoveryErrorKind::Rejected => {
                return Err(RotationError::UnsafeDelete(format!(
                    "The static credentials {} ({}) hold the old key and cannot be deleted yet: {}. {context}",
                    entry.name,
                    entry.id,
                    e.describe()
                )))
            }
            Err(e) => return Err(e.into_rotation_error(context)),
        }
    }
    Ok(())
}

/// The kept side of a migration: every holder of the run on the role, and every
/// cluster of the plan on the role credentials.
pub fn check_on_role(
    all: &[Holder],
    migration: &MigrationRun,
    holders: &[crate::qovery::HolderRef],
) -> Result<(), String> {
    let role = Holding::Role(migration.role_arn.clone());
    let Some(entry) = migration.role_credentials.as_ref().and_then(|r| {
        all.iter()
            .find(|h| h.kind == HolderKind::Credentials && h.id.eq_ignore_ascii_case(&r.id))
    }) else {
        return Err(format!(
            "the role credentials of the migration to {} are gone",
            migration.role_arn
        ));
    };
    if entry.holding != role {
        return Err(format!(
            "{} no longer uses role {}",
            entry.describe(),
            migration.role_arn
        ));
    }
    let off: Vec<String> = migration
        .cluster_origins
        .iter()
        .filter(|o| {
            !entry
                .redeploy
                .iter()
                .any(|c| c.id.eq_ignore_ascii_case(&o.cluster_id))
        })
        .map(|o| format!("cluster {} ({})", o.cluster_name, o.cluster_id))
        .collect();
    if !off.is_empty() {
        return Err(format!(
            "{} do not use the role credentials {}",
            off.join(", "),
            entry.label()
        ));
    }
    let not_on_role: Vec<String> = holders
        .iter()
        .filter(|h| h.kind != HolderKind::Credentials)
        .filter_map(|h| all.iter().find(|n| n.is(h)))
        .filter(|n| n.holding != role)
        .map(Holder::describe)
        .collect();
    if !not_on_role.is_empty() {
        return Err(format!(
            "{} are not on role {}",
            not_on_role.join("; "),
            migration.role_arn
        ));
    }
    Ok(())
}
