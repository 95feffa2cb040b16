//! Step 1. Check that a rotation is safe, and change nothing in IAM or Qovery: the
//! input is valid, no other execution holds the user's lock, the token works, the IAM
//! user has exactly one key (besides one an undo removes), and Qovery holds it. Finds
//! every holder of that key, of every kind (credentials, container and helm
//! registries, secret manager accesses, DNS providers), refuses if one cannot be given
//! a new key, and decides which clusters to redeploy. A lock left by an ended execution
//! is taken over, and what that run left is finished or undone (`recovery`). The last
//! act, unless a dry run: take the lock.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::clusters::{self, Decision};
use crate::config::Deps;
use crate::error::RotationError;
use crate::input::ExecutionInput;
use crate::ledger::{Claim, LedgerPhase, Record};
use crate::qovery::holders::{self, RoleRoute};
use crate::qovery::{ClusterStatus, Holder, HolderKind, HolderRef, Holding, StateClass};
use crate::secret::Secret;
use crate::state::{
    describe_keys, ClusterOrigin, ClusterPlan, CredentialsRef, KeySummary, LeftAlone,
    MigrationReport, MigrationRun, Mode, PreflightReport, Recovery, RotationState, SkippedCluster,
    UndoTarget,
};
use crate::step_functions::{self, ExecutionState};
use crate::{iam, timefmt};

use super::{audit, migration, recovery};

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
    let me = event.execution_id.as_str();
    let preflight_at = timefmt::format(timefmt::now());
    tracing::info!(iam_user_name = %user, organization_id = %input.organization_id,
        credentials_id = ?input.credentials_id, dry_run = input.dry_run, "preflight");

    let record = deps
        .ledger
        .read(user)
        .await
        .map_err(|e| e.into_rotation_error(&ledger_context(deps)))?;
    // A record of another execution: the lock is taken, unless that execution ended.
    let ended = match &record {
        Some(r) if r.execution_id != me => match ended_owner(deps, r).await {
            Ok(how) => Some(how),
            // A rotation under way is no finding: it is replacing the key right now.
            Err(RotationError::RotationInProgress(why)) if input.audit => {
                return Ok(audit_while_rotating(&event, &input, r, &why, preflight_at))
            }
            Err(e) => return Err(e),
        },
        _ => None,
    };

    let token = super::qovery_token(deps, NOTHING_CHANGED).await?;
    let all = super::survey(deps, &token, &input.organization_id, NOTHING_CHANGED).await?;
    // A user that does not exist is an error, unless Qovery has moved to a role.
    let keys = match iam::list_access_keys(&deps.iam, user).await {
        Err(e) if !e.is_code("NoSuchEntity") => return Err(e.into_rotation_error(NOTHING_CHANGED)),
        listed => listed,
    };

    // The record to finish or undo: an ended execution's, or this execution's own once
    // it took one over (a retry of this step must decide the same).
    let previous = match &record {
        Some(r) if ended.is_some() => Some(r),
        Some(r) if r.phase != LedgerPhase::Planned => Some(r),
        _ => None,
    };
    if let Some(r) = previous.filter(|r| r.migration.is_some() && r.phase != LedgerPhase::Planned) {
        let keys = keys.map_err(|e| e.into_rotation_error(NOTHING_CHANGED))?;
        return resume_migration(deps, &event, &input, r, ended.is_some(), keys, preflight_at)
            .await;
    }
    if previous.is_none() {
        if let Some(found) = nothing_to_rotate(&input, &all, keys.as_deref().ok()) {
            tracing::info!("{found}");
            return Ok(nothing_to_rotate_state(
                &event,
                &input,
                found,
                keys.unwrap_or_default(),
                preflight_at,
            ));
        }
    }
    let keys = keys.map_err(|e| {
        e.into_rotation_error(&format!(
            "IAM user {user} does not exist; check iam_user_name. {NOTHING_CHANGED}"
        ))
    })?;
    if let Some(role_arn) = &input.migrate_to_role {
        let plan = MigrationPlanning {
            event: &event,
            input: &input,
            token: &token,
            all: &all,
            previous,
            taken_over: previous
                .filter(|_| ended.is_some())
                .map(|r| r.execution_id.as_str()),
        };
        return plan.run(deps, role_arn, keys, preflight_at).await;
    }
    let decision = match previous {
        Some(r) => recovery::decide(r, &input.organization_id, &keys, &all).map_err(|unexplained| {
            RotationError::PreconditionFailed(format!(
                "The last rotation of IAM user {user} did not finish, and what it left cannot be explained: \
                 {unexplained}. A new run neither finishes nor undoes it. Fix that by hand (see docs/errors.md, \
                 \"Errors and how to recover\"), then start again. {NOTHING_CHANGED}"
            ))
        })?,
        _ => recovery::Decision {
            recovery: Recovery::Fresh,
            why: "no unfinished rotation of this user".to_string(),
        },
    };
    let undo_key = previous
        .filter(|_| decision.recovery == Recovery::Undo)
        .and_then(|r| r.new_access_key_id.clone());

    let (qovery_key, holding) = match (decision.recovery, previous) {
        (Recovery::Finish, Some(r)) => {
            let new = r.new_access_key_id.as_deref().unwrap_or_default();
            (
                r.old_access_key_id.clone(),
                finishing_holders(&all, &r.old_access_key_id, new)?,
            )
        }
        _ => {
            // The key an undo removes does not count against the one-key rule.
            let kept: Vec<KeySummary> = keys
                .iter()
                .filter(|k| Some(&k.access_key_id) != undo_key.as_ref())
                .cloned()
                .collect();
            let key = match key_to_rotate(&input, &all, &kept) {
                Ok(key) => key,
                // Two runs started together: the other may have taken the lock and made
                // its new key while this one read the keys. Say so, not "two keys".
                Err(refusal) if record.is_none() => {
                    return Err(lock_taken_meanwhile(deps, user, me)
                        .await
                        .unwrap_or(refusal))
                }
                Err(refusal) => return Err(refusal),
            };
            let holding = holders_of(&all, &key)?;
            (key, holding)
        }
    };
    let left_alone: Vec<LeftAlone> = all
        .iter()
        .filter(|h| holding.iter().all(|held| !std::ptr::eq(*held, *h)))
        .filter(|h| matches!(h.holding, Holding::Key(_) | Holding::Role(_)))
        .map(|h| LeftAlone {
            holder: h.to_ref(),
            reason: h.holding_text(),
        })
        .collect();

    let (mut clusters, skipped_clusters) =
        plan_clusters(deps, &token, &input.organization_id, &holding).await?;
    if let (Recovery::Finish, Some(r)) = (decision.recovery, previous) {
        keep_deployments_since_handover(deps, &token, &input.organization_id, r, &mut clusters)
            .await?;
    }
    input.check_history_budget(clusters.len())?;

    let holders: Vec<HolderRef> = holding.iter().map(|h| h.to_ref()).collect();
    let summary = summary(
        &input,
        &holders,
        &qovery_key,
        &clusters,
        &skipped_clusters,
        &left_alone,
        &decision,
    );
    tracing::info!(old_access_key_id = %qovery_key, holders = holders.len(),
        clusters = clusters.len(), skipped = skipped_clusters.len(), recovery = ?decision.recovery, "{summary}");
    let now = timefmt::now();
    let key_age_days = audit::key_age_days(&keys, &qovery_key, now);
    // For the report only: the check that matters runs at the drain's end.
    let key_last_used = iam::access_key_last_used(&deps.iam, &qovery_key)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e.message, "could not read the key's last use");
            None
        });
    let audit = if input.audit {
        let verdict = audit::judge(&input, &keys, &qovery_key, decision.recovery, previous, now)?;
        tracing::info!(key_age_days = ?key_age_days, "{verdict}");
        Some(verdict)
    } else {
        None
    };
    let mut state = RotationState {
        execution_id: event.execution_id.clone(),
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
        deploy_concurrency: input.deploy_concurrency,
        deploy_waves: Vec::new(),
        key_idle_seconds: input.key_idle_seconds,
        quarantine_seconds: input.quarantine_seconds,
        dry_run: input.dry_run,
        audit: input.audit,
        recovery: decision.recovery,
        mode: Mode::Rotate,
        migration: None,
        migration_error: None,
        deployments: Vec::new(),
        undo: None,
        old_access_key_id: qovery_key.clone(),
        report: PreflightReport {
            summary,
            keys,
            qovery_access_key_id: qovery_key,
            recovery: decision.why.clone(),
            left_alone,
            key_age_days,
            key_last_used,
            audit,
            migration: None,
        },
        new_access_key_id: None,
        key_secret_id: None,
        new_key_version_id: None,
        qovery_updated_at: None,
        drain_until: None,
        quarantine: None,
    };
    if let Some(r) = previous {
        match decision.recovery {
            Recovery::Finish => {
                state.new_access_key_id = r.new_access_key_id.clone();
                state.key_secret_id = r.key_secret_id.clone();
                state.new_key_version_id = r.new_key_version_id.clone();
                // The hand-over time stays in the ledger: update-qovery reads it there.
            }
            Recovery::Undo => {
                state.undo = r.new_access_key_id.clone().map(|key| UndoTarget {
                    execution_id: r.started_by().to_string(),
                    new_access_key_id: key,
                    key_secret_id: r.key_secret_id.clone(),
                })
            }
            Recovery::Fresh => {}
        }
    }
    if !state.dry_run {
        let from = previous.filter(|_| ended.is_some());
        take_lock(
            deps,
            &state,
            previous,
            from.map(|r| r.execution_id.as_str()),
        )
        .await?;
    }
    Ok(state)
}

/// An audit that met a rotation under way: nothing to judge until it ends.
fn audit_while_rotating(
    event: &PreflightEvent,
    input: &ExecutionInput,
    record: &Record,
    why: &str,
    preflight_at: String,
) -> RotationState {
    let verdict = format!(
        "Audit passed: IAM user {} is being rotated right now ({why}). The next audit judges the new key.",
        input.iam_user_name
    );
    tracing::info!("{verdict}");
    let mut state = read_only_state(event, input, verdict.clone(), Vec::new(), preflight_at);
    state.dry_run = true;
    state.old_access_key_id = record.old_access_key_id.clone();
    state.report.qovery_access_key_id = record.old_access_key_id.clone();
    state.report.audit = Some(verdict);
    state
}

/// A run that found Qovery on a role and no key of the user held: it ends a success
/// (`mode: nothing_to_rotate`), takes no lock and changes nothing. An audit passes.
fn nothing_to_rotate_state(
    event: &PreflightEvent,
    input: &ExecutionInput,
    summary: String,
    keys: Vec<KeySummary>,
    preflight_at: String,
) -> RotationState {
    let mut state = read_only_state(event, input, summary.clone(), keys, preflight_at);
    state.mode = Mode::NothingToRotate;
    if input.audit {
        state.report.audit = Some(format!("Audit passed: {summary}"));
    }
    state
}

/// The state of a run that ends in preflight without touching anything: no holder, no
/// cluster, no key to retire.
fn read_only_state(
    event: &PreflightEvent,
    input: &ExecutionInput,
    summary: String,
    keys: Vec<KeySummary>,
    preflight_at: String,
) -> RotationState {
    RotationState {
        execution_id: event.execution_id.clone(),
        state_machine_arn: event.state_machine_arn.clone(),
        preflight_at,
        iam_user_name: input.iam_user_name.clone(),
        organization_id: input.organization_id.clone(),
        holders: Vec::new(),
        clusters: Vec::new(),
        skipped_clusters: Vec::new(),
        drain_seconds: input.drain_seconds,
        deploy_timeout_seconds: input.deploy_timeout_seconds,
        poll_interval_seconds: input.poll_interval_seconds,
        deploy_concurrency: input.deploy_concurrency,
        deploy_waves: Vec::new(),
        key_idle_seconds: input.key_idle_seconds,
        quarantine_seconds: input.quarantine_seconds,
        dry_run: input.dry_run,
        audit: input.audit,
        recovery: Recovery::Fresh,
        mode: Mode::Rotate,
        migration: None,
        migration_error: None,
        deployments: Vec::new(),
        undo: None,
        old_access_key_id: String::new(),
        report: PreflightReport {
            summary,
            keys,
            qovery_access_key_id: String::new(),
            recovery: String::new(),
            left_alone: Vec::new(),
            key_age_days: None,
            key_last_used: None,
            audit: None,
            migration: None,
        },
        new_access_key_id: None,
        key_secret_id: None,
        new_key_version_id: None,
        qovery_updated_at: None,
        drain_until: None,
        quarantine: None,
    }
}

/// A migration's plan (`migrate_to_role`): the role checked, every holder of the
/// static key and its route, the clusters canary first. A dry run stops there;
/// otherwise the lock is taken with the migration recorded.
struct MigrationPlanning<'a> {
    event: &'a PreflightEvent,
    input: &'a ExecutionInput,
    token: &'a Secret,
    all: &'a [Holder],
    /// Only a record of a run that changed nothing (phase planned): taken over.
    previous: Option<&'a Record>,
    taken_over: Option<&'a str>,
}

impl MigrationPlanning<'_> {
    async fn run(
        &self,
        deps: &Deps,
        role_arn: &str,
        keys: Vec<KeySummary>,
        preflight_at: String,
    ) -> Result<RotationState, RotationError> {
        let input = self.input;
        let user = &input.iam_user_name;
        if let Some(record) = self.previous.filter(|r| r.phase != LedgerPhase::Planned) {
            return Err(RotationError::PreconditionFailed(format!(
                "The last rotation of IAM user {user}, {}, did not finish. Start a run without migrate_to_role: it \
                 finishes or undoes that rotation. Then plan the migration again. {NOTHING_CHANGED}",
                record.describe()
            )));
        }
        let (_, trust, trust_lines) = migration::check_role(deps, input, role_arn).await?;
        let (key, holding, routed) = migration::plan(input, role_arn, self.all, &keys)?;
        let (clusters, skipped_clusters) =
            plan_clusters(deps, self.token, &input.organization_id, &holding).await?;
        if clusters.is_empty() {
            return Err(RotationError::PreconditionFailed(format!(
                "No running cluster uses key {key}, so nothing could prove that Qovery can assume role {role_arn} \
                 before the registries move to it and the key is deleted. Not running: {}. Start one of them, \
                 then start again. {NOTHING_CHANGED}",
                skipped_clusters
                    .iter()
                    .map(|c| format!("{} ({}, {})", c.name, c.id, c.status))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        input.check_migration_history_budget(clusters.len())?;
        let report = MigrationReport {
            role_arn: role_arn.to_string(),
            static_access_key_id: key.clone(),
            trust,
            trust_lines,
            holders: routed,
            role_credentials_before: self
                .all
                .iter()
                .filter(|h| h.kind == HolderKind::Credentials)
                .filter(|h| matches!(&h.holding, Holding::Role(arn) if arn == role_arn))
                .map(|h| h.id.clone())
                .collect(),
            other_user_keys: keys
                .iter()
                .filter(|k| k.access_key_id != key)
                .map(|k| k.access_key_id.clone())
                .collect(),
        };
        let summary = migration::summary(input, &report, &clusters, &skipped_clusters);
        tracing::info!(old_access_key_id = %key, role_arn, holders = holding.len(),
            clusters = clusters.len(), "{summary}");
        let run = migration_run(role_arn, self.all, &holding);
        let mut state = read_only_state(self.event, input, summary, keys, preflight_at);
        state.mode = Mode::Migrate;
        state.holders = holding.iter().map(|h| h.to_ref()).collect();
        state.clusters = clusters;
        state.skipped_clusters = skipped_clusters;
        state.old_access_key_id = key.clone();
        state.report.qovery_access_key_id = key;
        state.report.migration = Some(report);
        state.migration = Some(run);
        if !state.dry_run {
            take_lock(deps, &state, self.previous, self.taken_over).await?;
        }
        Ok(state)
    }
}

/// What a migration carries and records: the credentials before it, the static
/// credentials that hold the key, and each cluster's way back.
fn migration_run(role_arn: &str, all: &[Holder], holding: &[&Holder]) -> MigrationRun {
    let statics: Vec<&&Holder> = holding
        .iter()
        .filter(|h| h.role_route() == RoleRoute::MoveClusters)
        .collect();
    MigrationRun {
        role_arn: role_arn.to_string(),
        credentials_before: all
            .iter()
            .filter(|h| h.kind == HolderKind::Credentials)
            .map(|h| h.id.clone())
            .collect(),
        role_credentials: None,
        role_credentials_created: false,
        cluster_origins: statics
            .iter()
            .flat_map(|h| {
                h.redeploy.iter().map(|c| ClusterOrigin {
                    cluster_id: c.id.clone(),
                    cluster_name: c.name.clone(),
                    credentials: CredentialsRef {
                        id: h.id.clone(),
                        name: h.name.clone(),
                    },
                })
            })
            .collect(),
        static_credentials: statics
            .iter()
            .map(|h| CredentialsRef {
                id: h.id.clone(),
                name: h.name.clone(),
            })
            .collect(),
    }
}

/// A record of a migration an ended run left (or this run's own, on a retry): before
/// the switch of holders it is undone, after it finished, whatever this run was asked.
#[allow(clippy::too_many_arguments)]
async fn resume_migration(
    deps: &Deps,
    event: &PreflightEvent,
    input: &ExecutionInput,
    record: &Record,
    ended: bool,
    keys: Vec<KeySummary>,
    preflight_at: String,
) -> Result<RotationState, RotationError> {
    let migration = record.migration.clone().expect("a migration record");
    if let Some(asked) = input
        .migrate_to_role
        .as_deref()
        .filter(|a| *a != migration.role_arn)
    {
        return Err(RotationError::PreconditionFailed(format!(
            "IAM user {}'s last run, {}, moved Qovery to role {}, not {asked}, and did not finish. Start a run for \
             role {} (or without migrate_to_role): it finishes or undoes that move. {NOTHING_CHANGED}",
            input.iam_user_name,
            record.describe(),
            migration.role_arn,
            migration.role_arn
        )));
    }
    if input.audit {
        return Err(RotationError::RotationUnfinished(format!(
            "Audit of IAM user {}: the last run, {}, was moving Qovery to role {} and ended without finishing. The \
             next run finishes it (after the registries switched) or undoes it (before). Read why that run failed, \
             fix the cause, and start a run (or let the schedule start one). The audit changed nothing.",
            input.iam_user_name,
            record.describe(),
            migration.role_arn
        )));
    }
    let switched = matches!(
        record.phase,
        LedgerPhase::SwitchingHolders
            | LedgerPhase::HandedOver
            | LedgerPhase::Quarantined
            | LedgerPhase::Retiring
    );
    let (mode, recovery, what) = if switched {
        (
            Mode::Migrate,
            Recovery::Finish,
            format!(
                "{} moved Qovery to role {} past its point of no return (phase {:?}): this run finishes it (the \
                 holders still on the key switched, the drain from the recorded hand-over, the static credentials \
                 and the old key {} deleted)",
                record.describe(),
                migration.role_arn,
                record.phase,
                record.old_access_key_id
            ),
        )
    } else {
        (
            Mode::UndoMigration,
            Recovery::Undo,
            format!(
                "{} was moving Qovery to role {} and ended before any registry switched (phase {:?}): this run undoes \
                 it (every cluster back on its static credentials and redeployed there, the role credentials it \
                 made deleted); start the migration again afterwards",
                record.describe(),
                migration.role_arn,
                record.phase
            ),
        )
    };
    let summary = format!(
        "{}{what}.",
        if input.dry_run {
            "Dry run, nothing was changed. "
        } else {
            ""
        }
    );
    tracing::info!("{summary}");
    let mut state = read_only_state(event, input, summary, keys, preflight_at);
    state.mode = mode;
    state.recovery = recovery;
    state.report.recovery = what;
    state.holders = record.holders.clone();
    state.clusters = record.clusters.clone();
    state.old_access_key_id = record.old_access_key_id.clone();
    state.report.qovery_access_key_id = record.old_access_key_id.clone();
    state.migration = Some(migration);
    if !state.dry_run {
        let taken = Record {
            execution_id: state.execution_id.clone(),
            took_over_from: (record.execution_id != state.execution_id)
                .then(|| record.started_by().to_string())
                .or_else(|| record.took_over_from.clone()),
            updated_at: timefmt::format(timefmt::now()),
            ..record.clone()
        };
        let from = (ended && record.execution_id != state.execution_id)
            .then_some(record.execution_id.as_str());
        let claim = deps
            .ledger
            .claim(&taken, from)
            .await
            .map_err(|e| e.into_rotation_error(&ledger_context(deps)))?;
        if let Claim::HeldBy(other) = claim {
            return Err(RotationError::RotationInProgress(format!(
                "Another run took the rotation lock of IAM user {} first: {}. Let it finish and start again. \
                 {NOTHING_CHANGED}",
                input.iam_user_name,
                other.describe()
            )));
        }
    }
    Ok(state)
}

fn ledger_context(deps: &Deps) -> String {
    format!(
        "The rotation lock and record live in DynamoDB table {} (LEDGER_TABLE). {NOTHING_CHANGED}",
        deps.ledger.table()
    )
}

/// The record of another execution: refuse while it runs (or nobody can tell);
/// otherwise say how it ended.
async fn ended_owner(deps: &Deps, record: &Record) -> Result<String, RotationError> {
    let user = &record.iam_user_name;
    match step_functions::execution_state(&deps.sfn, &record.execution_id).await {
        Ok(ExecutionState::Ended { how, stopped_at }) => {
            let grace = time::Duration::seconds(deps.settings.takeover_grace_seconds as i64);
            match stopped_at.map(|at| at + grace) {
                Some(until) if timefmt::now() < until => Err(RotationError::RotationInProgress(format!(
                    "IAM user {user}'s rotation lock in table {} is held by {}, which ended ({how}) at {}; the step \
                     it was running may still be at work until {} (stopping an execution does not stop its \
                     Lambda). Start again after that: the new run then finishes or undoes what it left. \
                     {NOTHING_CHANGED}",
                    deps.ledger.table(),
                    record.describe(),
                    stopped_at.map(timefmt::format).unwrap_or_default(),
                    timefmt::format(until)
                ))),
                _ => Ok(how),
            }
        }
        Ok(ExecutionState::Running) => Err(RotationError::RotationInProgress(format!(
            "IAM user {user} is being rotated by {}, which holds the rotation lock in table {}. Two rotations at \
             once could delete the key the other one gave Qovery. Let it finish (or stop it: the next run then \
             finishes or undoes what it did) and start again. {NOTHING_CHANGED}",
            record.describe(),
            deps.ledger.table()
        ))),
        Err(e) if e.transient => Err(e.into_rotation_error(NOTHING_CHANGED)),
        Err(e) => Err(RotationError::RotationInProgress(format!(
            "IAM user {user}'s rotation lock in table {} is held by {}, and whether that execution ended cannot be \
             told ({}: {}); it may belong to another stack. Let it finish, or stop it, and start again. \
             {NOTHING_CHANGED}",
            deps.ledger.table(),
            record.describe(),
            e.operation,
            e.message
        ))),
    }
}

/// A run that saw no lock at its start and is refused since: if another execution took
/// the lock meanwhile and still runs, that is the reason (`RotationInProgress`).
async fn lock_taken_meanwhile(deps: &Deps, user: &str, me: &str) -> Option<RotationError> {
    let record = deps.ledger.read(user).await.ok()??;
    if record.execution_id == me {
        return None;
    }
    match step_functions::execution_state(&deps.sfn, &record.execution_id).await {
        Ok(ExecutionState::Running) => Some(RotationError::RotationInProgress(format!(
            "IAM user {user} is being rotated by {}, which took the rotation lock in table {} while this run was \
             checking the user's keys (the second key IAM lists is likely its new one). Let it finish and start \
             again. {NOTHING_CHANGED}",
            record.describe(),
            deps.ledger.table()
        ))),
        _ => None,
    }
}

/// Takes the user's lock for this run, or takes it over from the ended execution whose
/// record it read. Losing a race to another run is `RotationInProgress`.
async fn take_lock(
    deps: &Deps,
    state: &RotationState,
    previous: Option<&Record>,
    from: Option<&str>,
) -> Result<(), RotationError> {
    let record = match (state.recovery, previous) {
        (Recovery::Finish, Some(r)) => Record {
            execution_id: state.execution_id.clone(),
            took_over_from: Some(r.started_by().to_string()),
            updated_at: timefmt::format(timefmt::now()),
            ..r.clone()
        },
        _ => Record {
            iam_user_name: state.iam_user_name.clone(),
            execution_id: state.execution_id.clone(),
            organization_id: state.organization_id.clone(),
            phase: if state.undo.is_some() {
                LedgerPhase::Undoing
            } else {
                LedgerPhase::Planned
            },
            old_access_key_id: state.old_access_key_id.clone(),
            new_access_key_id: state.undo.as_ref().map(|u| u.new_access_key_id.clone()),
            key_secret_id: state.undo.as_ref().and_then(|u| u.key_secret_id.clone()),
            new_key_version_id: None,
            holders: state.holders.clone(),
            // A migration's plan: the next run undoes or finishes it from these.
            clusters: if state.migration.is_some() {
                state.clusters.clone()
            } else {
                Vec::new()
            },
            handover_at: None,
            migration: state.migration.clone(),
            took_over_from: previous
                .filter(|_| state.undo.is_some())
                .map(|r| r.started_by().to_string()),
            updated_at: timefmt::format(timefmt::now()),
        },
    };
    let claim = deps
        .ledger
        .claim(&record, from)
        .await
        .map_err(|e| e.into_rotation_error(&ledger_context(deps)))?;
    match claim {
        Claim::Taken => {
            tracing::info!(iam_user_name = %record.iam_user_name, taken_over = ?from, "rotation lock taken");
            Ok(())
        }
        Claim::HeldBy(other) => Err(RotationError::RotationInProgress(format!(
            "Another run took the rotation lock of IAM user {} first: {}. Let it finish and start again. \
             {NOTHING_CHANGED}",
            record.iam_user_name,
            other.describe()
        ))),
    }
}

/// Finishing an ended run: every holder of the old or the new key. Each holder still
/// on the old key must be one the rotation can change.
fn finishing_holders<'a>(
    all: &'a [Holder],
    old: &str,
    new: &str,
) -> Result<Vec<&'a Holder>, RotationError> {
    let stuck: Vec<String> = holders::holding(all, old)
        .iter()
        .filter_map(|h| {
            h.cannot_give
                .as_ref()
                .map(|why| format!("{} ({why})", h.label()))
        })
        .collect();
    if !stuck.is_empty() {
        return Err(RotationError::PreconditionFailed(format!(
            "These hold the old key {old} and cannot be given the new key {new}: {}. Point them at the new key or a \
             role in the Qovery console, then start again. {NOTHING_CHANGED}",
            stuck.join("; ")
        )));
    }
    Ok(all
        .iter()
        .filter(|h| h.holds(old) || h.holds(new))
        .collect())
}

/// Finishing an ended run: a cluster whose deployment started after the recorded
/// hand-over, and reached DEPLOYED or is still under way, uses the new key. It keeps
/// the recorded baseline, so that deploy-cluster follows that deployment instead of
/// starting one. Every other cluster (a failed or no deployment since) is redeployed.
async fn keep_deployments_since_handover(
    deps: &Deps,
    token: &Secret,
    organization_id: &str,
    record: &Record,
    clusters: &mut [ClusterPlan],
) -> Result<(), RotationError> {
    if record.clusters.is_empty() {
        return Ok(());
    }
    let statuses = deps
        .qovery
        .organization_cluster_statuses(token, organization_id)
        .await
        .map_err(|e| e.into_rotation_error(NOTHING_CHANGED))?;
    for plan in clusters.iter_mut() {
        let recorded = record.clusters.iter().find(|c| c.id == plan.id);
        let now = statuses
            .iter()
            .find(|s| s.cluster_id.eq_ignore_ascii_case(&plan.id));
        if let (Some(recorded), Some(now)) = (recorded, now) {
            // DEPLOYED, or still deploying: followed. Failed since: redeployed.
            let deployed_since = recorded.handover_status.is_some()
                && now.last_execution_id != recorded.handover_execution_id
                && matches!(now.status.class(), StateClass::Deployed | StateClass::Busy);
            if deployed_since {
                plan.handover_status = recorded.handover_status.clone();
                plan.handover_execution_id = recorded.handover_execution_id.clone();
                plan.handover_deployment_date = recorded.handover_deployment_date.clone();
            }
        }
    }
    Ok(())
}

/// After a move to an IAM role: Qovery has role credentials, and nothing in Qovery
/// holds (or may hold) a key of the user, who may have none or no longer exist
/// (`keys` is `None`). Returns the report's words, or `None` when there is a key to
/// rotate or a reason to refuse, which `key_to_rotate` and `holders_of` give.
fn nothing_to_rotate(
    input: &ExecutionInput,
    all: &[Holder],
    keys: Option<&[KeySummary]>,
) -> Option<String> {
    let user = &input.iam_user_name;
    let roles: Vec<&Holder> = all
        .iter()
        .filter(|h| h.kind == HolderKind::Credentials && matches!(h.holding, Holding::Role(_)))
        .collect();
    if roles.is_empty() {
        return None;
    }
    let named = input.credentials_id.as_ref().map(|id| {
        all.iter()
            .find(|h| h.kind == HolderKind::Credentials && h.id.eq_ignore_ascii_case(id))
    });
    // Named static credentials are judged as a rotation (a wrong user, a wrong key).
    if let Some(Some(entry)) = named {
        if !matches!(entry.holding, Holding::Role(_)) {
            return None;
        }
    }
    let user_keys = keys.unwrap_or_default();
    // An unreadable holder may hold a key of the user, if the user has one.
    if all
        .iter()
        .any(|h| user_keys.iter().any(|k| h.may_hold(&k.access_key_id)))
    {
        return None;
    }
    let uses = roles
        .iter()
        .map(|h| {
            let clusters = h
                .redeploy
                .iter()
                .map(|c| {
                    if c.name.is_empty() {
                        c.id.clone()
                    } else {
                        format!("{} ({})", c.name, c.id)
                    }
                })
                .collect::<Vec<_>>();
            format!(
                "{} (credentials {} ({}), {})",
                match &h.holding {
                    Holding::Role(arn) => arn.as_str(),
                    _ => "",
                },
                h.name,
                h.id,
                if clusters.is_empty() {
                    "no cluster".to_string()
                } else {
                    format!("cluster(s) {}", clusters.join(", "))
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let user_state = match keys {
        None => format!("IAM user {user} no longer exists"),
        Some([]) => format!(
            "IAM user {user} has no access key. This tool never deletes users: once nothing else uses it, detach \
             its policies and run `aws iam delete-user --user-name {user}`"
        ),
        Some(keys) => format!(
            "IAM user {user} has {}, which nothing in Qovery holds; this tool deletes only keys it rotates",
            describe_keys(keys)
        ),
    };
    let mut text = format!(
        "{}Qovery uses role {uses}. {user_state}. Nothing to rotate. {NOTHING_CHANGED} To stop these runs, set the \
         stack's ScheduleEnabled to false, or delete the stack.",
        if input.dry_run { "Dry run. " } else { "" },
    );
    if let (Some(id), Some(found)) = (&input.credentials_id, named) {
        text.push_str(&format!(
            " credentials_id {id} names {}: set QoveryCredentialsId to empty.",
            if found.is_some() {
                "role credentials, which need no rotation"
            } else {
                "no credentials of the organization"
            }
        ));
    }
    Some(text)
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
    let unreadable = holders::unreadable(all);
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
                    target_credentials: None,
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
    decision: &recovery::Decision,
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
    let what = match decision.recovery {
        Recovery::Fresh => String::new(),
        _ => format!("{}. ", decision.why),
    };
    let mut text = format!(
        "{}{what}Rotation of IAM user {}: create a second key, prove it with STS, give it to the {} Qovery holder(s) of \
         {old_key}: {entries}; redeploy {} cluster(s){}, the first (the canary) alone, then at most {} at a \
         time, waiting until each is DEPLOYED (a failure starts no further cluster); wait a drain of {} s; then \
         delete the old key {old_key}.",
        if input.dry_run { "Dry run, nothing was changed. " } else { "" },
        input.iam_user_name,
        holders.len(),
        clusters.len(),
        if planned.is_empty() { String::new() } else { format!(": {planned}") },
        input.deploy_concurrency,
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
