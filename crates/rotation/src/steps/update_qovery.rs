//! Steps 3 and 4. Prove the new key works with STS and give it to every holder of the
//! old key in Qovery, of every kind (`qovery::holders`). Then note, for each cluster,
//! what Qovery reports right after the hand-over, and delete the key secret: its
//! secret now lives only in Qovery.
//!
//! Safe to run twice: every holder is read before any PUT, and a holder that already
//! holds the new key is left alone. Once every holder holds it, nothing else needs the
//! secret.
//!
//! Once the hand-over has started (a PUT was sent, or a holder already holds the new
//! key), it only goes forward: a failure is `HandOverIncomplete` (or a retryable
//! outage), which the state machine reconciles and never rolls back. The old secret
//! cannot be given back: the tool never had it.
//!
//! With `mode: reconcile` (after a hand-over whose outcome is unknown) it only reads:
//! which key does each holder hold now? The state machine then either finishes the
//! hand-over or rolls back.

use std::future::Future;
use std::pin::Pin;

use serde::Deserialize;
use serde_json::Value;

use crate::clusters::{self, Decision};
use crate::config::Deps;
use crate::error::RotationError;
use crate::ledger::{LedgerPhase, Record};
use crate::qovery::holders::{self, Holder, HolderRef, Holding};
use crate::secret::Secret;
use crate::state::{
    parse_step_input, ClusterPlan, QoveryHolds, ReconcileResult, RotationState, SkippedCluster,
};
use crate::{secrets_manager, sts, timefmt};

/// What the ASL passes: an explicit mode, and the rotation state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateQoveryEvent {
    mode: Mode,
    state: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    /// Give the new key to every holder of the old one (UpdateQovery, FinishHandOver).
    HandOver,
    /// Only read which key each holder holds (ReconcileHandOver).
    Reconcile,
    /// A migration: make the role credentials and plan the clusters onto them
    /// (CreateRoleEntry; `move_to_role`).
    CreateRoleEntry,
    /// A migration: switch the other holders to the proven role (HandOverToRole).
    HandOverRole,
    /// A migration: point the clusters back at their static credentials (UndoMigration).
    UndoMigration,
}

pub async fn handle(deps: &Deps, event: Value) -> Result<Value, RotationError> {
    // Type-erased: written out, this future is too deep for rustc to lay out inside the
    // Lambda binary's runtime loop ("queries overflow the depth limit").
    let step: Pin<Box<dyn Future<Output = Result<Value, RotationError>> + Send + '_>> =
        Box::pin(run(deps, event));
    step.await
}

async fn run(deps: &Deps, event: Value) -> Result<Value, RotationError> {
    let event: UpdateQoveryEvent = serde_json::from_value(event).map_err(|e| {
        RotationError::InvalidInput(format!(
            "The update-qovery step got an input it cannot read: {e}. The state machine passes \
             {{\"mode\": \"hand_over\", \"reconcile\", \"create_role_entry\", \"hand_over_role\" or \"undo_migration\", \"state\": <the rotation state>}}. Nothing was changed."
        ))
    })?;
    let state: RotationState = parse_step_input("update-qovery", event.state)?;
    match event.mode {
        Mode::Reconcile => {
            let result = reconcile(deps, &state).await?;
            Ok(serde_json::to_value(result).expect("a reconcile result always serializes"))
        }
        Mode::CreateRoleEntry | Mode::HandOverRole | Mode::UndoMigration => {
            let state = match event.mode {
                Mode::CreateRoleEntry => {
                    super::move_to_role::create_role_entry(deps, state).await?
                }
                Mode::HandOverRole => super::move_to_role::hand_over_role(deps, state).await?,
                _ => super::move_to_role::undo_migration(deps, state).await?,
            };
            Ok(serde_json::to_value(state).expect("a rotation state always serializes"))
        }
        Mode::HandOver => {
            let mut state = hand_over(deps, state).await?;
            // The clusters are final now (holders added since preflight brought theirs).
            state.deploy_waves = clusters::waves(&state.clusters, state.deploy_concurrency);
            Ok(serde_json::to_value(state).expect("a rotation state always serializes"))
        }
    }
}

struct Keys {
    new: String,
    secret_id: String,
    version_id: String,
}

fn keys_of(state: &RotationState) -> Result<Keys, RotationError> {
    match (
        &state.new_access_key_id,
        &state.key_secret_id,
        &state.new_key_version_id,
    ) {
        (Some(new), Some(secret_id), Some(version_id)) => Ok(Keys {
            new: new.clone(),
            secret_id: secret_id.clone(),
            version_id: version_id.clone(),
        }),
        _ => Err(RotationError::InvalidInput(
            "update-qovery needs new_access_key_id, key_secret_id and new_key_version_id from create-key. Nothing was changed."
                .to_string(),
        )),
    }
}

/// Where the hand-over stands, for every message: who holds which key.
struct Progress<'a> {
    old: &'a str,
    new: &'a str,
    secret_id: &'a str,
    /// Holders on the new key (before this call, and given by it).
    on_new: Vec<String>,
    /// Holders still on the old key, or that might be.
    on_old: Vec<String>,
    /// A PUT was sent, or a holder already held the new key: only forward from here.
    started: bool,
}

impl Progress<'_> {
    fn text(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join("; ")
            }
        };
        format!(
            "Holders on the new key {}: {}. Holders still on the old key {}: {}.",
            self.new,
            list(&self.on_new),
            self.old,
            list(&self.on_old)
        )
    }

    /// `error`, with who holds which key. Once the hand-over has started, a failure
    /// that is not retried (a 4xx, an unexpected answer, a holder that cannot be given
    /// the key) becomes `HandOverIncomplete`, so that the state machine reconciles and
    /// goes forward instead of rolling back a key some holder already holds.
    fn fail(&self, error: RotationError) -> RotationError {
        let both = format!(
            "{} Both keys are active and neither is deleted while a holder holds it.",
            self.text()
        );
        if !self.started {
            return error.with_context(&format!("{both} No holder was sent the new key yet."));
        }
        match error {
            RotationError::QoveryUnavailable(_) | RotationError::AwsUnavailable(_) => {
                error.with_context(&both)
            }
            other => RotationError::HandOverIncomplete(format!(
                "The hand-over of the new key {} did not finish: {} {both} The new key's secret is kept in secret {} \
                 (if it still exists) while a holder lacks the key. The state machine asks Qovery again and \
                 finishes the hand-over; if it fails again, fix the cause above, then start a new run: it gives the \
                 key to the rest, redeploys, drains and only then deletes the old key. Never delete the old key by \
                 hand while a holder or a running deployment may use it.",
                self.new,
                other.message(),
                self.secret_id
            )),
        }
    }
}

async fn hand_over(deps: &Deps, mut state: RotationState) -> Result<RotationState, RotationError> {
    let keys = keys_of(&state)?;
    let new_key = keys.new.clone();
    let old = state.old_access_key_id.clone();
    let user = state.iam_user_name.clone();
    let before =
        format!("Both keys are active: the old key {old} and the new key {new_key} of {user}.");

    // Until Qovery answers, nobody can tell whether an earlier attempt of this step
    // already sent the new key somewhere: never a reason to roll back.
    let token = super::qovery_token(deps, &before)
        .await
        .map_err(|e| unknown_progress(e, &keys))?;
    let all = super::survey(deps, &token, &state.organization_id, &before)
        .await
        .map_err(|e| unknown_progress(e, &keys))?;
    let mut progress = Progress {
        old: &old,
        new: &new_key,
        secret_id: &keys.secret_id,
        on_new: holders::holding(&all, &new_key)
            .iter()
            .map(|h| h.label())
            .collect(),
        on_old: holders::may_hold(&all, &old)
            .iter()
            .map(|h| h.label())
            .collect(),
        started: false,
    };
    progress.started = !progress.on_new.is_empty();
    let to_give = holders_to_give(&state, &all, &new_key).map_err(|e| progress.fail(e))?;
    let record = super::own_record(deps, &user, &state.execution_id, &before)
        .await
        .map_err(|e| progress.fail(e))?
        .ok_or_else(|| {
            progress.fail(RotationError::RotationInProgress(format!(
                "This execution {} does not hold the rotation lock of IAM user {user}: table {} has no record of it.",
                state.execution_id,
                deps.ledger.table()
            )))
        })?;

    if !to_give.is_empty() {
        let secret_access_key = read_new_secret(deps, &keys, &before)
            .await
            .map_err(|e| progress.fail(e))?;
        if !progress.started {
            // Proven before the first PUT; once a holder has the key, it is not asked again.
            prove_with_sts(deps, &new_key, &secret_access_key, &user, &before).await?;
        }
        // Written before the first PUT: a run that ends from here on is finished, not
        // undone, by the next one if any holder took the key.
        let handing_over = Record {
            phase: LedgerPhase::HandingOver,
            new_access_key_id: Some(new_key.clone()),
            key_secret_id: Some(keys.secret_id.clone()),
            new_key_version_id: Some(keys.version_id.clone()),
            holders: all
                .iter()
                .filter(|h| h.holds(&old) || h.holds(&new_key))
                .map(|h| h.to_ref())
                .collect(),
            handover_at: None,
            ..record.clone()
        };
        super::write_record(deps, handing_over, &before)
            .await
            .map_err(|e| progress.fail(e))?;
        for holder in &to_give {
            // The lock is asked before each PUT: a run that was stopped (its Lambda
            // still at work) must not race the run that took its rotation over.
            if super::own_record(deps, &user, &state.execution_id, &before)
                .await
                .map_err(|e| progress.fail(e))?
                .is_none()
            {
                return Err(progress.fail(RotationError::RotationInProgress(format!(
                    "This execution {} no longer holds the rotation lock of IAM user {user} (table {}); it sends \
                     nothing more.",
                    state.execution_id,
                    deps.ledger.table()
                ))));
            }
            progress.started = true;
            let answered = holders::give(
                &deps.qovery,
                &token,
                &state.organization_id,
                holder,
                &new_key,
                &secret_access_key,
            )
            .await
            .map_err(|e| progress.fail(e.into_rotation_error("")))?;
            if answered.as_deref() != Some(new_key.as_str()) {
                return Err(progress.fail(RotationError::QoveryRejected(format!(
                    "Qovery accepted the new key for {} but answers with key {}, not the new key {new_key}; check it \
                     in the Qovery console.",
                    holder.label(),
                    answered.as_deref().unwrap_or("(none)")
                ))));
            }
            tracing::info!(new_access_key_id = %new_key, holder = %holder.label(), "holder has the new key");
            progress.on_old.retain(|label| *label != holder.label());
            progress.on_new.push(holder.label());
        }
    } else {
        tracing::info!(new_access_key_id = %new_key, "every holder already holds the new key");
    }

    // Every holder of the old key now holds the new one; the ones added since
    // preflight need their clusters redeployed too.
    let preflight_holders = std::mem::take(&mut state.holders);
    state.holders = holders::holding(&all, &new_key)
        .into_iter()
        .chain(to_give.iter().copied())
        .map(|h| HolderRef {
            access_key_id: Some(new_key.clone()),
            ..h.to_ref()
        })
        .collect();
    // Also holders an earlier attempt gave the key: their clusters join the plan too.
    let added: Vec<&Holder> = holders::holding(&all, &new_key)
        .into_iter()
        .chain(to_give.iter().copied())
        .filter(|h| !preflight_holders.iter().any(|r| h.is(r)))
        .collect();

    // Counted from now: Qovery took the key at the latest now, and a later drain end
    // is the safe side. Finishing an ended run that sends nothing more keeps the
    // hand-over time the ledger holds, and the clusters' records of it; once this
    // execution sent a PUT, the HandingOver write cleared it, so a retry counts the
    // drain from its own PUTs.
    let recorded = record.handover_at.as_deref().and_then(timefmt::parse);
    let handover_now = !to_give.is_empty() || recorded.is_none();
    let handover_at = match recorded {
        Some(at) if !handover_now => at,
        _ => timefmt::now(),
    };
    state.qovery_updated_at = Some(timefmt::format(handover_at));
    state.drain_until = Some(timefmt::after(handover_at, state.drain_seconds));

    let after = format!(
        "Every Qovery holder has the new key {new_key}; the old key {old} is still active and is kept until the \
         drain ends."
    );
    note_clusters_at_handover(deps, &token, &mut state, &added, handover_now, &after)
        .await
        .map_err(|e| progress.fail(e))?;
    let handed_over = Record {
        phase: LedgerPhase::HandedOver,
        new_access_key_id: Some(new_key.clone()),
        key_secret_id: Some(keys.secret_id.clone()),
        new_key_version_id: Some(keys.version_id.clone()),
        holders: state.holders.clone(),
        clusters: state.clusters.clone(),
        handover_at: state.qovery_updated_at.clone(),
        ..record
    };
    super::write_record(deps, handed_over, &after)
        .await
        .map_err(|e| progress.fail(e))?;

    // The secret's only purpose was to carry the key to Qovery.
    match secrets_manager::delete_key_secret(&deps.secrets, &keys.secret_id).await {
        Ok(deleted) => {
            tracing::info!(secret_id = %keys.secret_id, deleted, "key secret deleted")
        }
        // DeleteOldKey deletes it again; it must not fail a hand-over that succeeded.
        Err(e) => {
            tracing::warn!(secret_id = %keys.secret_id, error = %e.message, "could not delete the key secret yet")
        }
    }
    Ok(state)
}

/// A failure before Qovery said who holds which key. An earlier attempt of this step
/// may have sent the new key to a holder, so a failure that is not retried is
/// `HandOverIncomplete`: the state machine asks Qovery again before any rollback.
fn unknown_progress(error: RotationError, keys: &Keys) -> RotationError {
    match error {
        RotationError::QoveryUnavailable(_) | RotationError::AwsUnavailable(_) => error,
        other => RotationError::HandOverIncomplete(format!(
            "Qovery could not be asked which holder holds which key, so whether an earlier attempt already gave \
             the new key {} to a holder is unknown: {} The new key's secret is kept in secret {}. The state machine \
             asks Qovery again, and rolls back only if no holder holds the new key.",
            keys.new,
            other.message(),
            keys.secret_id
        )),
    }
}

/// The holders to give the new key: every holder of the old key now, the ones found
/// at preflight and any added since. Refuses when a holder found at preflight now holds
/// a third key or is gone (someone changed it during the rotation), or when a holder of
/// the old key cannot be given a new key or hides which key it holds.
fn holders_to_give<'a>(
    state: &RotationState,
    all: &'a [Holder],
    new_key: &str,
) -> Result<Vec<&'a Holder>, RotationError> {
    let old = &state.old_access_key_id;
    for reference in &state.holders {
        let now = all.iter().find(|h| h.is(reference));
        match now.map(|h| &h.holding) {
            Some(Holding::Key(k)) if k == new_key || k == old => {}
            Some(Holding::Unreadable) => {}
            other => {
                return Err(RotationError::PreconditionFailed(format!(
                    "{} now {}, neither the old key {old} nor the new key {new_key}: someone changed it during the \
                     rotation. Check who holds which key before rotating again.",
                    reference.label(),
                    match (other, now) {
                        (Some(_), Some(h)) => h.holding_text(),
                        _ => "is gone".to_string(),
                    }
                )))
            }
        }
    }
    let unreadable = holders::unreadable(all);
    if !unreadable.is_empty() {
        return Err(RotationError::PreconditionFailed(format!(
            "Qovery does not show which key these hold, so the rotation cannot tell whether they need the new key: \
             {}.",
            holders::describe_all(unreadable)
        )));
    }
    let to_give: Vec<&Holder> = holders::holding(all, old);
    let stuck: Vec<String> = to_give
        .iter()
        .filter_map(|h| {
            h.cannot_give
                .as_ref()
                .map(|why| format!("{} ({why})", h.label()))
        })
        .collect();
    if !stuck.is_empty() {
        return Err(RotationError::PreconditionFailed(format!(
            "These hold the old key {old} and cannot be given a new key by this rotation (they started holding it \
             after preflight): {}. Point them at another key or a role in the Qovery console.",
            stuck.join("; ")
        )));
    }
    for holder in &to_give {
        if !state.holders.iter().any(|r| holder.is(r)) {
            tracing::info!(holder = %holder.label(), "a holder added since preflight also holds the old key");
        }
    }
    Ok(to_give)
}

/// What Qovery reports for each planned cluster just after the hand-over: a
/// deployment that starts later uses the new key. The clusters of holders `added`
/// since preflight join the plan (or the skipped list), so that they are redeployed
/// with the new key before anything is deleted.
async fn note_clusters_at_handover(
    deps: &Deps,
    token: &Secret,
    state: &mut RotationState,
    added: &[&Holder],
    handover_now: bool,
    context: &str,
) -> Result<(), RotationError> {
    let added_clusters: Vec<(&Holder, &holders::ClusterRef)> = added
        .iter()
        .flat_map(|h| h.redeploy.iter().map(move |c| (*h, c)))
        .filter(|(_, c)| {
            !state.clusters.iter().any(|p| p.id == c.id)
                && !state.skipped_clusters.iter().any(|s| s.id == c.id)
        })
        .collect();
    if state.clusters.is_empty() && added_clusters.is_empty() {
        return Ok(());
    }
    let statuses = deps
        .qovery
        .organization_cluster_statuses(token, &state.organization_id)
        .await
        .map_err(|e| e.into_rotation_error(context))?;
    for (holder, cluster) in added_clusters {
        if state.clusters.iter().any(|p| p.id == cluster.id) {
            continue; // named by two added holders
        }
        let status = super::status_of(
            deps,
            token,
            &state.organization_id,
            &statuses,
            &cluster.id,
            context,
        )
        .await?;
        tracing::info!(cluster_id = %cluster.id, holder = %holder.label(), "a cluster of a holder added since preflight");
        match clusters::decide(&status) {
            Decision::Redeploy => state.clusters.push(ClusterPlan {
                id: cluster.id.clone(),
                name: cluster.name.clone(),
                held_by: holder.label(),
                status: status.status.as_str().to_string(),
                handover_status: None,
                handover_execution_id: None,
                handover_deployment_date: None,
                target_credentials: None,
            }),
            Decision::Skip(reason) => state.skipped_clusters.push(SkippedCluster {
                id: cluster.id.clone(),
                name: cluster.name.clone(),
                held_by: holder.label(),
                status: status.status.as_str().to_string(),
                reason: reason.to_string(),
            }),
        }
    }
    for plan in &mut state.clusters {
        // Finishing an ended run: a cluster that deployed since its hand-over keeps
        // that record (preflight set it), and is followed rather than redeployed.
        if !handover_now && plan.handover_status.is_some() {
            continue;
        }
        let status = super::status_of(
            deps,
            token,
            &state.organization_id,
            &statuses,
            &plan.id,
            context,
        )
        .await?;
        plan.note_handover(status);
    }
    Ok(())
}

async fn read_new_secret(deps: &Deps, keys: &Keys, context: &str) -> Result<Secret, RotationError> {
    let stored = secrets_manager::read_key(&deps.secrets, &keys.secret_id, &keys.version_id)
        .await
        .map_err(|e| e.into_rotation_error(context))?;
    match stored {
        Some((_, stored)) if stored.access_key_id == keys.new => Ok(stored.secret_access_key),
        _ => Err(RotationError::PreconditionFailed(format!(
            "The key secret {} (version {}) no longer holds the new key {} (it is deleted once every holder has \
             the key), and a holder still holds the old key, perhaps one that took it since: nobody can give it \
             the new key now. Point that holder at the new key by hand in the Qovery console, or at a role, then \
             start a new run. {context}",
            keys.secret_id, keys.version_id, keys.new
        ))),
    }
}

/// IAM is eventually consistent: a key can take seconds to work everywhere. Qovery
/// must never be given a key that does not work yet.
async fn prove_with_sts(
    deps: &Deps,
    new_key: &str,
    secret_access_key: &Secret,
    user: &str,
    context: &str,
) -> Result<(), RotationError> {
    match sts::caller_arn_with_key(&deps.sdk_config, new_key, secret_access_key).await {
        Ok(arn) if sts::is_user_arn(&arn, user) => {
            tracing::info!(new_access_key_id = %new_key, caller = %arn, "new key proven with STS");
            Ok(())
        }
        Ok(arn) => Err(RotationError::NewKeyNotValid(format!(
            "STS says the new key {new_key} belongs to {arn}, not to IAM user {user}. {context}"
        ))),
        Err(e) => Err(RotationError::NewKeyNotValid(format!(
            "STS does not accept the new key {new_key} yet ({}: {}). A new key can take a few seconds to \
             propagate, and the state machine retries. {context}",
            e.code.as_deref().unwrap_or("error"),
            e.message
        ))),
    }
}

/// After a hand-over whose outcome is unknown (a timeout, a 5xx, a lost answer, a
/// failure after a PUT): which key do the holders hold now? Only if none holds the new
/// key (and none hides its key id) may it be rolled back.
async fn reconcile(deps: &Deps, state: &RotationState) -> Result<ReconcileResult, RotationError> {
    let keys = keys_of(state)?;
    let old = &state.old_access_key_id;
    let context = format!(
        "The outcome of the hand-over of the new key {} is unknown; both keys stay active and nothing is deleted \
         until Qovery can be asked.",
        keys.new
    );
    let token = super::qovery_token(deps, &context).await?;
    let all = super::survey(deps, &token, &state.organization_id, &context).await?;
    let holding_new = holders::holding(&all, &keys.new);
    let holding_old = holders::holding(&all, old);
    let unreadable = holders::unreadable(&all);
    let qovery_holds = if holding_new.is_empty() && unreadable.is_empty() {
        QoveryHolds::OldKey
    } else if holding_old.is_empty() && unreadable.is_empty() {
        QoveryHolds::NewKey
    } else {
        QoveryHolds::Mixed
    };
    let described: Vec<String> = holding_new
        .iter()
        .chain(&holding_old)
        .chain(&unreadable)
        .map(|h| h.describe())
        .collect();
    let summary = match qovery_holds {
        QoveryHolds::OldKey => format!(
            "Nothing in Qovery holds the new key {}: the hand-over did not apply, and the rollback may remove it. \
             Holders of the old key {old}: {}.",
            keys.new,
            holders::describe_all(holding_old.iter().copied())
        ),
        QoveryHolds::NewKey => format!(
            "Every holder has the new key {}: {}. The hand-over applied; the rotation goes on.",
            keys.new,
            holders::describe_all(holding_new.iter().copied())
        ),
        QoveryHolds::Mixed => format!(
            "The hand-over is partly done: {}. It is finished for the others; the new key {} is never rolled back \
             once a holder may hold it.",
            described.join("; "),
            keys.new
        ),
    };
    tracing::info!(?qovery_holds, "{summary}");
    Ok(ReconcileResult {
        qovery_holds,
        holders: described,
        summary,
    })
}
