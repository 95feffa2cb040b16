//! Step 2. Create the second key, record it in the ledger, and store it in this
//! execution's key secret.
//!
//! Provenance: a key is deleted here only when the ledger proves that this execution
//! created it (its id recorded right after `CreateAccessKey`), its secret was lost, and
//! no holder holds it. A key this step cannot prove it made (a person's, a script's,
//! another execution's, or one whose `CreateAccessKey` answer was lost) is never
//! deleted: the step fails with `PreconditionFailed`, names it, and changes nothing.
//!
//! Safe to run twice with the same input: a retry finds the key the first call stored.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Deps;
use crate::error::RotationError;
use crate::ledger::{LedgerPhase, Record};
use crate::qovery::holders;
use crate::secret::Secret;
use crate::state::{describe_keys, parse_step_input, KeySummary, RotationState};
use crate::{iam, secrets_manager, timefmt};

pub async fn handle(deps: &Deps, event: Value) -> Result<RotationState, RotationError> {
    // Type-erased: written out, this future is too deep for rustc to lay out inside the
    // Lambda binary's runtime loop ("queries overflow the depth limit").
    let step: Pin<Box<dyn Future<Output = Result<RotationState, RotationError>> + Send + '_>> =
        Box::pin(run(deps, event));
    step.await
}

async fn run(deps: &Deps, event: Value) -> Result<RotationState, RotationError> {
    let state: RotationState = parse_step_input("create-key", event)?;
    if state.dry_run {
        return Err(RotationError::InvalidInput(
            "create-key was called for a dry run; the state machine should have stopped after preflight. Nothing was changed."
                .to_string(),
        ));
    }
    let user = state.iam_user_name.clone();
    let old = state.old_access_key_id.clone();
    let old_only = format!("Qovery still holds the old key {old}.");
    let secret_name = deps.settings.key_secret_name(&user, &state.execution_id);
    let version_id = version_id_for(&state.execution_id);

    let mut record = super::locked_record(
        deps,
        &user,
        &state.execution_id,
        &format!("No key was created. {old_only}"),
    )
    .await?;
    let keys = super::list_keys(deps, &user, &old_only).await?;

    // A retry of this step in the same execution: the first call stored the key.
    let stored = secrets_manager::read_key(&deps.secrets, &secret_name, &version_id)
        .await
        .map_err(|e| {
            e.into_rotation_error(&format!(
                "This call created no key before the failure. {old_only}"
            ))
        })?;
    if let Some((secret_arn, stored)) = stored {
        if record.new_access_key_id.as_deref() == Some(stored.access_key_id.as_str())
            && keys.iter().any(|k| k.access_key_id == stored.access_key_id)
        {
            tracing::info!(new_access_key_id = %stored.access_key_id, "key already created by this execution");
            return Ok(with_new_key(
                state,
                stored.access_key_id,
                secret_arn,
                version_id,
            ));
        }
    }
    // Recorded by an earlier attempt, but its secret was never stored: the key is
    // useless, provably ours, and (if no holder holds it) safe to delete.
    if let Some(lost) = record.new_access_key_id.clone() {
        if keys.iter().any(|k| k.access_key_id == lost) {
            remove_recorded_lost_key(deps, &state, &lost, &old_only).await?;
        }
        record = write(
            deps,
            Record {
                phase: LedgerPhase::Planned,
                new_access_key_id: None,
                ..record
            },
            &old_only,
        )
        .await?;
    }
    let keys = super::list_keys(deps, &user, &old_only).await?;
    if keys.len() != 1 || keys[0].access_key_id != old {
        return Err(unproven_keys(&state, &keys, &old_only));
    }

    let record = write(
        deps,
        Record {
            phase: LedgerPhase::CreatingKey,
            key_secret_id: Some(secret_name.clone()),
            new_key_version_id: Some(version_id.clone()),
            ..record
        },
        &old_only,
    )
    .await?;
    let (new_key, secret_access_key) = create(deps, &state, &old_only).await?;
    tracing::info!(new_access_key_id = %new_key, "created access key");
    // The proof that this tool made the key, before anything else can go wrong.
    let recorded = Record {
        phase: LedgerPhase::KeyCreated,
        new_access_key_id: Some(new_key.clone()),
        updated_at: timefmt::format(timefmt::now()),
        ..record
    };
    if let Err(e) = deps.ledger.write(&recorded).await {
        let outcome = delete_unstorable(deps, &user, &new_key).await;
        return Err(e.into_rotation_error(&format!(
            "The new key {new_key} could not be recorded in the ledger. {outcome} {old_only}"
        )));
    }

    let stored = secrets_manager::create_key_secret(
        &deps.secrets,
        &secret_name,
        &format!(
            "New access key {new_key} of IAM user {user} while qovery-key-rotator hands it to Qovery; deleted once \
             every holder in Qovery holds it."
        ),
        &version_id,
        &new_key,
        &secret_access_key,
    )
    .await;
    drop(secret_access_key);
    match stored {
        Ok(secret_arn) => {
            let record = Record {
                key_secret_id: Some(secret_arn.clone()),
                updated_at: timefmt::format(timefmt::now()),
                ..recorded
            };
            // The name recorded before works as well as the ARN: only log a failure.
            if let Err(e) = deps.ledger.write(&record).await {
                tracing::warn!(error = %e.message, "could not record the key secret's ARN");
            }
            Ok(with_new_key(state, new_key, secret_arn, version_id))
        }
        Err(store_error) => {
            // The secret exists nowhere else: a key we cannot store is useless, and would
            // block the next rotation. Remove it; the ledger proves it is ours.
            let outcome = delete_unstorable(deps, &user, &new_key).await;
            Err(store_error.into_rotation_error(&format!(
                "The new key could not be stored in {secret_name}. {outcome} {old_only}"
            )))
        }
    }
}

async fn write(deps: &Deps, record: Record, context: &str) -> Result<Record, RotationError> {
    super::write_record(deps, record, context).await
}

/// The key an earlier attempt of this execution created and recorded, whose secret it
/// never stored: deleted unless a holder holds it.
async fn remove_recorded_lost_key(
    deps: &Deps,
    state: &RotationState,
    lost: &str,
    context: &str,
) -> Result<(), RotationError> {
    let token = super::qovery_token(deps, context).await?;
    let all = super::survey(deps, &token, &state.organization_id, context).await?;
    if !holders::may_hold(&all, lost).is_empty() {
        return Err(RotationError::PreconditionFailed(format!(
            "Key {lost}, which an earlier attempt of this execution created and whose secret it lost, is held in \
             Qovery: {}. It was not deleted. {context}",
            super::describe_holding(&all, lost)
        )));
    }
    iam::delete_access_key(&deps.iam, &state.iam_user_name, lost)
        .await
        .map_err(|e| {
            e.into_rotation_error(&format!(
                "Key {lost} was created by an earlier attempt of this execution (the ledger records it) and its \
                 secret was lost; it could not be deleted. {context}"
            ))
        })?;
    tracing::warn!(access_key_id = %lost, "deleted a key an earlier attempt created and could not store");
    Ok(())
}

fn unproven_keys(state: &RotationState, keys: &[KeySummary], context: &str) -> RotationError {
    let old = &state.old_access_key_id;
    let others: Vec<&str> = keys
        .iter()
        .map(|k| k.access_key_id.as_str())
        .filter(|k| *k != old)
        .collect();
    RotationError::PreconditionFailed(format!(
        "IAM user {} should have only the old key {old} before a new one is created, but it has {}: {}. This \
         rotation cannot prove it made {}, so it does not delete {}: a person, a script or another rotation may \
         use it. Nothing was changed. Find out who made it; once nothing uses it, delete it and start again. \
         {context}",
        state.iam_user_name,
        keys.len(),
        describe_keys(keys),
        if others.is_empty() { "any key".to_string() } else { others.join(", ") },
        if others.len() == 1 { "it" } else { "them" },
    ))
}

/// `CreateAccessKey`. If it fails, the keys are listed again: a key that appeared
/// may be this call's own (its answer lost) or someone else's, and is never deleted.
async fn create(
    deps: &Deps,
    state: &RotationState,
    context: &str,
) -> Result<(String, Secret), RotationError> {
    let user = &state.iam_user_name;
    match iam::create_access_key(&deps.iam, user).await {
        Ok(created) => Ok(created),
        Err(error) => {
            let keys = super::list_keys(deps, user, context).await?;
            if keys.len() > 1 {
                return Err(unproven_keys(state, &keys, context).with_context(&format!(
                    "(CreateAccessKey failed: {}; a key it created before its answer was lost cannot be told \
                     from someone else's.)",
                    error.message
                )));
            }
            Err(error.into_rotation_error(&format!(
                "IAM user {user} now has: {}. {context}",
                describe_keys(&keys)
            )))
        }
    }
}

/// Deletes a key this call created (in memory: the proof) but could not keep.
async fn delete_unstorable(deps: &Deps, user: &str, new_key: &str) -> String {
    match iam::delete_access_key(&deps.iam, user, new_key).await {
        Ok(()) => format!("The new key {new_key} was deleted again."),
        Err(e) => format!(
            "Deleting the unusable new key {new_key} failed too ({}); delete it with `aws iam delete-access-key \
             --user-name {user} --access-key-id {new_key}`.",
            e.message
        ),
    }
}

fn with_new_key(
    mut state: RotationState,
    key: String,
    secret_id: String,
    version_id: String,
) -> RotationState {
    state.new_access_key_id = Some(key);
    state.key_secret_id = Some(secret_id);
    state.new_key_version_id = Some(version_id);
    state
}

/// The secret version (and `ClientRequestToken`) for an execution: the same on every
/// retry of the same execution, different for every other execution.
pub fn version_id_for(execution_id: &str) -> String {
    let digest = Sha256::digest(execution_id.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_are_stable_per_execution_and_uuid_shaped() {
        let a = version_id_for("arn:aws:states:us-east-1:1:execution:m:one");
        assert_eq!(
            a,
            version_id_for("arn:aws:states:us-east-1:1:execution:m:one")
        );
        assert_ne!(
            a,
            version_id_for("arn:aws:states:us-east-1:1:execution:m:two")
        );
        assert!(crate::input::normalize_uuid(&a).is_some(), "{a}");
    }
}
