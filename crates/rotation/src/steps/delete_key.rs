//! Step 8, and the rollback. Delete exactly one key, and only when it is safe: it is
//! not the key the other half of the rotation depends on, and nothing in Qovery holds
//! it right now, of any kind of holder (asked just before the delete; a holder whose
//! key id cannot be read counts as holding it).
//!
//! Safe to run twice: if the key is already gone and Qovery holds the key that was to
//! be kept, an earlier attempt did the work and lost its answer; that is success.
//!
//! The rollback deactivates the new key before it asks Qovery one last time, and
//! deletes it only then: if Qovery took it at the last moment, it is turned back on.

use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;
use crate::qovery::holders::{self, Holder};
use crate::state::{
    describe_keys, parse_step_input, DeleteKeyRequest, DeleteKeyResult, DeleteMode, KeySummary,
};
use crate::{iam, secrets_manager};

pub async fn handle(deps: &Deps, event: Value) -> Result<DeleteKeyResult, RotationError> {
    let request: DeleteKeyRequest = parse_step_input("delete-key", event)?;
    let user = request.iam_user_name.as_str();
    let old = request.old_access_key_id.as_str();
    let (target, keep) = match (request.mode, request.new_access_key_id.as_deref()) {
        (DeleteMode::RetireOldKey, Some(new)) => (old, new),
        (DeleteMode::RollbackNewKey, Some(new)) => (new, old),
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

    let keys = super::list_keys(deps, user, &nothing_deleted).await?;
    let token = super::qovery_token(deps, &nothing_deleted).await?;
    let all = super::survey(deps, &token, &request.organization_id, &nothing_deleted).await?;

    if !keys.iter().any(|k| k.access_key_id == target) {
        return already_deleted(deps, &request, target, keep, &keys, &all).await;
    }

    if !holders::may_hold(&all, target).is_empty() {
        return Err(refusal(&request, target, keep, &all, &keys));
    }

    if request.mode == DeleteMode::RollbackNewKey {
        // A hand-over whose answer was lost may still apply: switch the key off first, so
        // that Qovery's last answer can be trusted, and switch it back on if Qovery has it.
        iam::set_access_key_active(&deps.iam, user, target, false)
            .await
            .map_err(|e| e.into_rotation_error(&nothing_deleted))?;
        let context = format!(
            "The new key {target} was switched off for the rollback and is switched back on."
        );
        let now = match super::survey(deps, &token, &request.organization_id, &context).await {
            Ok(now) => now,
            Err(e) => return Err(reactivate_after(deps, user, target, e).await),
        };
        if !holders::may_hold(&now, target).is_empty() {
            let reactivated = iam::set_access_key_active(&deps.iam, user, target, true).await;
            let outcome = match reactivated {
                Ok(()) => format!("The new key {target} was turned back on."),
                Err(e) => format!(
                    "Turning the new key {target} back on failed ({}): do it now with `aws iam update-access-key \
                     --user-name {user} --access-key-id {target} --status Active`.",
                    e.message
                ),
            };
            return Err(RotationError::UnsafeDelete(format!(
                "Refused to roll back: Qovery took the new key {target} while the rollback ran. {outcome} Both keys \
                 stay. Holders of {target}: {}. Holders of {old}: {}. Delete a key only once no holder holds it.",
                super::describe_holding(&now, target),
                super::describe_holding(&now, old)
            )));
        }
    }

    iam::delete_access_key(&deps.iam, user, target)
        .await
        .map_err(|e| {
            e.into_rotation_error(&format!(
                "Key {target} was not deleted{}. Qovery holds {keep}.",
                if request.mode == DeleteMode::RollbackNewKey {
                    " (it is Inactive; the retry deletes it)"
                } else {
                    ""
                }
            ))
        })?;
    tracing::info!(deleted_access_key_id = %target, mode = ?request.mode, "deleted access key");
    finish(deps, &request, target, keep, false, &all).await
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
    if keep_is_users && !holding_keep.is_empty() && holders::may_hold(all, target).is_empty() {
        tracing::info!(access_key_id = %target, "already deleted by an earlier attempt");
        return finish(deps, request, target, keep, true, all).await;
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
    Ok(DeleteKeyResult {
        mode: request.mode,
        deleted_access_key_id: target.to_string(),
        already_deleted,
        kept_access_key_id: keep.to_string(),
        kept_by,
        remaining_keys,
        summary,
    })
}

fn refusal(
    request: &DeleteKeyRequest,
    target: &str,
    keep: &str,
    all: &[Holder],
    keys: &[KeySummary],
) -> RotationError {
    let next = match request.mode {
        DeleteMode::RollbackNewKey => format!(
            "Qovery took the new key before the failure, so the rotation cannot be rolled back. Both keys ({}) \
             stay active. Give the new key to the holders still on {keep}, redeploy the clusters that use them, and \
             delete {keep} only once no holder holds it.",
            describe_keys(keys)
        ),
        DeleteMode::RetireOldKey => format!(
            "Deleting it would break them. Both keys ({}) stay active; give those holders the new key {keep} (or \
             find out why they hold the old one) before deleting it.",
            describe_keys(keys)
        ),
    };
    RotationError::UnsafeDelete(format!(
        "Refused to delete key {target}: Qovery holds it right now. Holders of {target}: {}. Holders of {keep}: {}. \
         {next}",
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
