//! Step 8, the rollback, and the undo of what an ended run left. Delete exactly one
//! key, and only when it is safe: it is not the key the other half of the rotation
//! depends on, nothing in Qovery holds it right now, of any kind of holder (asked just
//! before the delete; a holder whose key id cannot be read counts as holding it), and
//! the ledger proves the tool made it (a new key) or recorded it as the old key.
//!
//! Retiring the old key also needs the kept key Active, every holder of the rotation
//! holding it, and no holder holding the old key.
//!
//! Safe to run twice: if the key is already gone and Qovery holds the key that was to
//! be kept, an earlier attempt did the work and lost its answer; that is success.
//!
//! The rollback deactivates the new key before it asks Qovery one last time, and
//! deletes it only then: if Qovery took it at the last moment, it is turned back on. A
//! key is never left Inactive while a holder holds it, also when a retry finds it
//! switched off by an earlier attempt.
//!
//! The rotation's lock is released once the rotation is finished (the old key retired)
//! or undone (the rollback); an undo within a new run keeps it.

use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;
use crate::ledger::{LedgerPhase, Record};
use crate::qovery::holders::{self, Holder};
use crate::state::{
    describe_keys, parse_step_input, DeleteKeyRequest, DeleteKeyResult, DeleteMode, KeySummary,
    LastUse,
};
use crate::{iam, report, secrets_manager, timefmt};

/// The delete-key function serves the quarantine too (QuarantineOldKey), told apart by
/// its mode.
/// Type-erased, as `check_status::serve_either`.
pub fn serve_either(deps: &Deps, event: Value) -> super::StepFuture<'_> {
    Box::pin(async move {
        if event.get("mode").and_then(Value::as_str) == Some("abandon_migration") {
            let result = super::move_to_role::abandon_migration(deps, event).await?;
            return Ok(serde_json::to_value(result).expect("an abandon result always serializes"));
        }
        if event.get("mode").and_then(Value::as_str) == Some("quarantine_old_key") {
            let result = super::quarantine::handle(deps, event).await?;
            return Ok(serde_json::to_value(result).expect("a quarantine result always serializes"));
        }
        let result = handle(deps, event).await?;
        Ok(serde_json::to_value(result).expect("a delete result always serializes"))
    })
}

pub async fn handle(deps: &Deps, event: Value) -> Result<DeleteKeyResult, RotationError> {
    let request: DeleteKeyRequest = parse_step_input("delete-key", event)?;
    if request.mode == DeleteMode::QuarantineOldKey {
        return Err(RotationError::InvalidInput(
            "delete-key's quarantine_old_key mode is served by steps::quarantine. Nothing was changed.".to_string(),
        ));
    }
    let user = request.iam_user_name.as_str();
    let old = request.old_access_key_id.as_str();
    let role = request.migration.as_ref().map(|m| m.role_arn.clone());
    let (target, keep) = match (request.mode, request.new_access_key_id.as_deref()) {
        // A move to a role keeps the role: the messages name it where a key would be.
        (DeleteMode::RetireOldKey, None) if role.is_some() => (old, role.as_deref().unwrap_or_default()),
        (DeleteMode::RetireOldKey | DeleteMode::QuarantineOldKey, Some(new)) => (old, new),
        (DeleteMode::RollbackNewKey | DeleteMode::UndoPrevious, Some(new)) => (new, old),
        (_, None) => {
            return Err(RotationError::InvalidInput(format!(
                "delete-key needs new_access_key_id: the key to delete (rollback) or to keep (retire). Nothing was \
                 deleted; {old} is untouched."
            )))
        }
    };
    if keep == target {
        return Err(RotationError::UnsafeDelete(format!(
            "Refused to delete key {target}: it is the key the other half of this rotation relies on (mode {:?}). \
             Nothing was deleted.",
            request.mode
        )));
    }
    let nothing_deleted = format!("Nothing was deleted; the keys of {user} are as they were.");

    let record = super::own_record(deps, user, &request.execution_id, &nothing_deleted).await?;
    let keys = super::list_keys(deps, user, &nothing_deleted).await?;
    let token = super::qovery_token(deps, &nothing_deleted).await?;
    let all = super::survey(deps, &token, &request.organization_id, &nothing_deleted).await?;

    if !keys.iter().any(|k| k.access_key_id == target) {
        return already_deleted(deps, &request, target, keep, &keys, &all).await;
    }
    let target_active = keys
        .iter()
        .any(|k| k.access_key_id == target && k.status == "Active");

    if !holders::may_hold(&all, target).is_empty() {
        // An earlier attempt of the rollback may have switched it off: never leave a
        // key Inactive while a holder holds it.
        let outcome = if target_active {
            String::new()
        } else {
            reactivate(deps, user, target).await
        };
        return Err(refusal(&request, target, keep, &all, &keys, &outcome));
    }
    if request.mode == DeleteMode::RetireOldKey {
        check_kept_key(&request, keep, &keys, &all)?;
    }
    // Provenance: the record must name the key as this rotation's.
    let proven = match (&record, request.mode) {
        (Some(r), DeleteMode::RetireOldKey) => r.old_access_key_id == target,
        (Some(r), _) => r.new_access_key_id.as_deref() == Some(target),
        (None, _) => false,
    };
    if !proven {
        return Err(RotationError::UnsafeDelete(format!(
            "Refused to delete key {target}: the rotation record of IAM user {user} in table {} does not name it as \
             this rotation's {} key ({}). {nothing_deleted}",
            deps.ledger.table(),
            if request.mode == DeleteMode::RetireOldKey { "old" } else { "new" },
            record
                .as_ref()
                .map(Record::describe)
                .unwrap_or_else(|| "there is no record".to_string())
        )));
    }
    // Nothing outside Qovery may still use the old key: idle per IAM while it is on;
    // after a quarantine (it is off), no cluster of the rotation may have failed.
    if request.mode == DeleteMode::RetireOldKey {
        if target_active {
            super::quarantine::check_idle(deps, &request, target, keep, &keys, &all).await?;
        } else {
            super::quarantine::check_clusters(deps, &token, &request, target).await?;
        }
    }
    write_phase(
        deps,
        record.as_ref(),
        if request.mode == DeleteMode::RetireOldKey {
            LedgerPhase::Retiring
        } else {
            LedgerPhase::RollingBack
        },
        &nothing_deleted,
    )
    .await?;

    if request.mode != DeleteMode::RetireOldKey {
        // A hand-over whose answer was lost may still apply: switch the key off first, so
        // that Qovery's last answer can be trusted, and switch it back on if Qovery has it.
        if target_active {
            iam::set_access_key_active(&deps.iam, user, target, false)
                .await
                .map_err(|e| e.into_rotation_error(&nothing_deleted))?;
        }
        let context = format!(
            "The new key {target} was switched off for the rollback and is switched back on."
        );
        let now = match super::survey(deps, &token, &request.organization_id, &context).await {
            Ok(now) => now,
            Err(e) => return Err(reactivate_after(deps, user, target, e).await),
        };
        if !holders::may_hold(&now, target).is_empty() {
            let outcome = reactivate(deps, user, target).await;
            return Err(RotationError::UnsafeDelete(format!(
                "Refused to roll back: Qovery took the new key {target} while the rollback ran. {outcome} Both keys \
                 stay. Holders of {target}: {}. Holders of {old}: {}. Start a new run: it finishes the hand-over.",
                super::describe_holding(&now, target),
                super::describe_holding(&now, old)
            )));
        }
    }

    // The old key's last use just before the delete, for the report (after the
    // quarantine's: unchanged, since a switched-off key cannot be used).
    let last_used = match request.mode {
        DeleteMode::RetireOldKey => iam::access_key_last_used(&deps.iam, target)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e.message, "could not read the old key's last use");
                None
            }),
        _ => None,
    };
    iam::delete_access_key(&deps.iam, user, target)
        .await
        .map_err(|e| {
            e.into_rotation_error(&format!(
                "Key {target} was not deleted{}. Qovery holds {keep}.",
                if request.mode == DeleteMode::RetireOldKey && !target_active {
                    " (it stays switched off since the quarantine, held by no holder; the next run deletes it)"
                } else if request.mode == DeleteMode::RetireOldKey {
                    ""
                } else {
                    " (it is Inactive, and no holder holds it; the retry deletes it)"
                }
            ))
        })?;
    tracing::info!(deleted_access_key_id = %target, mode = ?request.mode, "deleted access key");
    finish(deps, &request, target, keep, false, &all, last_used).await
}

pub(crate) async fn write_phase(
    deps: &Deps,
    record: Option<&Record>,
    phase: LedgerPhase,
    context: &str,
) -> Result<(), RotationError> {
    if let Some(record) = record {
        let record = Record {
            phase,
            ..record.clone()
        };
        super::write_record(deps, record, context).await?;
    }
    Ok(())
}

/// Retiring the old key: the kept key must be Active, and every holder of the rotation
/// must hold it.
pub(crate) fn check_kept_key(
    request: &DeleteKeyRequest,
    keep: &str,
    keys: &[KeySummary],
    all: &[Holder],
) -> Result<(), RotationError> {
    let target = &request.old_access_key_id;
    if let Some(migration) = &request.migration {
        return super::move_to_role::check_on_role(all, migration, &request.holders).map_err(|why| {
            RotationError::UnsafeDelete(format!(
                "Refused to retire key {target}: {why}. Nothing was deleted; the static key stays. Start a new run: \
                 it finishes the move to role {}.",
                migration.role_arn
            ))
        });
    }
    let active = keys
        .iter()
        .any(|k| k.access_key_id == keep && k.status == "Active");
    if !active {
        return Err(RotationError::UnsafeDelete(format!(
            "Refused to delete key {target}: the key to keep, {keep}, is not Active ({}). Holders of {keep}: {}. \
             Nothing was deleted. Switch {keep} on (`aws iam update-access-key --user-name {} --access-key-id {keep} \
             --status Active`) and start a new run.",
            describe_keys(keys),
            super::describe_holding(all, keep),
            request.iam_user_name
        )));
    }
    let lacking: Vec<String> = request
        .holders
        .iter()
        .filter(|r| !all.iter().any(|h| h.is(r) && h.holds(keep)))
        .map(|r| r.label())
        .collect();
    if !lacking.is_empty() || holders::holding(all, keep).is_empty() {
        return Err(RotationError::UnsafeDelete(format!(
            "Refused to delete key {target}: not every holder of the rotation holds the kept key {keep} (lacking: \
             {}). Holders of {keep}: {}. Nothing was deleted. Start a new run: it gives the key to the rest.",
            if lacking.is_empty() {
                "every holder".to_string()
            } else {
                lacking.join("; ")
            },
            super::describe_holding(all, keep)
        )));
    }
    Ok(())
}

/// Switch `key` back on; says what happened, for the message.
pub(crate) async fn reactivate(deps: &Deps, user: &str, key: &str) -> String {
    match iam::set_access_key_active(&deps.iam, user, key, true).await {
        Ok(()) => format!("The key {key} was switched back on."),
        Err(e) => format!(
            "Switching the key {key} back on failed ({}): do it now with `aws iam update-access-key --user-name \
             {user} --access-key-id {key} --status Active`.",
            e.message
        ),
    }
}

/// The target is not a key of the user. If Qovery holds the key to keep, an earlier
/// attempt deleted it and lost its answer: success. Otherwise refuse.
async fn already_deleted(
    deps: &Deps,
    request: &DeleteKeyRequest,
    target: &str,
    keep: &str,
    keys: &[KeySummary],
    all: &[Holder],
) -> Result<DeleteKeyResult, RotationError> {
    let holding_keep = holders::holding(all, keep);
    let keep_is_users = keys.iter().any(|k| k.access_key_id == keep);
    let kept = match &request.migration {
        Some(migration) => {
            super::move_to_role::check_on_role(all, migration, &request.holders).is_ok()
        }
        None => keep_is_users && !holding_keep.is_empty(),
    };
    if kept && holders::may_hold(all, target).is_empty() {
        tracing::info!(access_key_id = %target, "already deleted by an earlier attempt");
        // The key is gone: its last use before the delete is the one read at the
        // drain's end (switched off since, or deleted right after it).
        let last_used = request
            .quarantine
            .as_ref()
            .and_then(|q| q.last_used.clone());
        return finish(deps, request, target, keep, true, all, last_used).await;
    }
    Err(RotationError::UnsafeDelete(format!(
        "Key {target} is not a key of IAM user {}, whose keys are: {}. Holders of the kept key {keep}: {}. Holders \
         of {target}: {}. This is not a retry of a delete that went through. Nothing was deleted. Find out which \
         key each holder should hold before changing either.",
        request.iam_user_name,
        describe_keys(keys),
        super::describe_holding(all, keep),
        super::describe_holding(all, target)
    )))
}

async fn finish(
    deps: &Deps,
    request: &DeleteKeyRequest,
    target: &str,
    keep: &str,
    already_deleted: bool,
    all: &[Holder],
    old_key_last_used: Option<LastUse>,
) -> Result<DeleteKeyResult, RotationError> {
    let user = &request.iam_user_name;
    if let Some(secret_id) = &request.key_secret_id {
        // The execution's key secret: normally deleted at the hand-over. Never keep a
        // secret access key around once the key is settled.
        secrets_manager::delete_key_secret(&deps.secrets, secret_id)
            .await
            .map_err(|e| {
                e.into_rotation_error(&format!(
                    "Key {target} is deleted and Qovery holds {keep}, but the secret {secret_id} that held the new \
                     key during the hand-over could not be deleted: delete it with `aws secretsmanager \
                     delete-secret --secret-id {secret_id} --force-delete-without-recovery`."
                ))
            })?;
    }
    let remaining_keys = iam::list_access_keys(&deps.iam, user)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e.message, "could not list the keys left after the delete");
            Vec::new()
        });
    release_or_reset(deps, request).await;
    let kept_by: Vec<String> = holders::holding(all, keep)
        .iter()
        .map(|h| h.label())
        .collect();
    let summary = format!(
        "{} key {target}; holders of {keep}: {}; user keys now: {}.",
        if already_deleted {
            "Already deleted"
        } else {
            "Deleted"
        },
        kept_by.join("; "),
        describe_keys(&remaining_keys)
    );
    let mut report = match (request.mode, &request.report) {
        (DeleteMode::RetireOldKey, Some(wanted)) => Some(report::success(
            wanted,
            user,
            target,
            keep,
            request.quarantine.as_ref(),
            old_key_last_used.as_ref(),
            timefmt::now(),
        )),
        _ => None,
    };
    // After a move to a role, the user may hold no key at all: the operator deletes it.
    if let (Some(report), Some(_)) = (report.as_mut(), &request.migration) {
        report.summary.push_str(&if remaining_keys.is_empty() {
            format!(
                " IAM user {user} has no access key left. This tool never deletes users: once nothing else uses it, \
                 detach its policies and run `aws iam delete-user --user-name {user}`."
            )
        } else {
            format!(
                " IAM user {user} keeps {}, which Qovery does not hold.",
                describe_keys(&remaining_keys)
            )
        });
    }
    Ok(DeleteKeyResult {
        mode: request.mode,
        deleted_access_key_id: target.to_string(),
        already_deleted,
        kept_access_key_id: keep.to_string(),
        kept_by,
        remaining_keys,
        summary,
        old_key_last_used,
        report,
    })
}

/// The rotation is finished or undone: release the user's lock. An undo within a new
/// run keeps the lock and records that the ended run's key is gone. A failure here is
/// only logged: the key work is done, and the next run takes over an ended owner's lock.
async fn release_or_reset(deps: &Deps, request: &DeleteKeyRequest) {
    let user = &request.iam_user_name;
    let outcome = match request.mode {
        DeleteMode::UndoPrevious => match deps.ledger.read(user).await {
            Ok(Some(record)) if record.execution_id == request.execution_id => deps
                .ledger
                .write(&Record {
                    phase: LedgerPhase::Planned,
                    new_access_key_id: None,
                    key_secret_id: None,
                    new_key_version_id: None,
                    took_over_from: None,
                    updated_at: timefmt::format(timefmt::now()),
                    ..record
                })
                .await
                .map(|()| true),
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        },
        _ => deps.ledger.release(user, &request.execution_id).await,
    };
    match outcome {
        Ok(done) => {
            tracing::info!(iam_user_name = %user, mode = ?request.mode, done, "rotation lock updated")
        }
        Err(e) => {
            tracing::warn!(iam_user_name = %user, error = %e.message, "could not update the rotation lock")
        }
    }
}

pub(crate) fn refusal(
    request: &DeleteKeyRequest,
    target: &str,
    keep: &str,
    all: &[Holder],
    keys: &[KeySummary],
    outcome: &str,
) -> RotationError {
    let next = match request.mode {
        DeleteMode::RollbackNewKey | DeleteMode::UndoPrevious => format!(
            "Qovery took the new key, so the rotation cannot be rolled back. {outcome} Both keys ({}) stay active. \
             Start a new run: it gives the new key to the holders still on {keep}, redeploys their clusters, and \
             deletes {keep} once no holder holds it.",
            describe_keys(keys)
        ),
        DeleteMode::RetireOldKey | DeleteMode::QuarantineOldKey => format!(
            "Switching it off or deleting it would break them. {outcome} Both keys ({}) stay active. Start a new run: it gives those \
             holders the new key {keep}; or find out why they hold the old one.",
            describe_keys(keys)
        ),
    };
    RotationError::UnsafeDelete(format!(
        "Refused to {} key {target}: Qovery holds it right now. Holders of {target}: {}. Holders of {keep}: {}. \
         {next}",
        if request.mode == DeleteMode::QuarantineOldKey {
            "switch off"
        } else {
            "delete"
        },
        super::describe_holding(all, target),
        super::describe_holding(all, keep)
    ))
}

/// Qovery could not be asked after the key was switched off: switch it back on, since
/// nobody can tell whether Qovery holds it, and fail with the original error.
async fn reactivate_after(
    deps: &Deps,
    user: &str,
    key: &str,
    error: RotationError,
) -> RotationError {
    if let Err(e) = iam::set_access_key_active(&deps.iam, user, key, true).await {
        return error.with_context(&format!(
            "Switching it back on failed too ({}): run `aws iam update-access-key --user-name {user} \
             --access-key-id {key} --status Active`.",
            e.message
        ));
    }
    error
}
