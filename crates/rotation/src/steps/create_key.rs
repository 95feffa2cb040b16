//! Step 2. Create the second key and store it in Secrets Manager, staged `AWSPENDING`.
//! Idempotent per execution: a retried call returns the key the first call stored.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Deps;
use crate::error::RotationError;
use crate::state::{describe_keys, parse_step_input, RotationState};
use crate::{iam, secrets_manager};

pub async fn handle(deps: &Deps, event: Value) -> Result<RotationState, RotationError> {
    let state: RotationState = parse_step_input("create-key", event)?;
    if state.dry_run {
        return Err(RotationError::InvalidInput(
            "create-key was called for a dry run; the state machine should have stopped after preflight. Nothing was changed."
                .to_string(),
        ));
    }
    let user = state.iam_user_name.clone();
    let old = state.old_access_key_id.clone();
    let old_only =
        format!("The old key {old} is still the only key in use and Qovery still holds it.");

    let secret_name = deps.settings.key_secret_name(&user);
    let secret_id = secrets_manager::ensure_secret(
        &deps.secrets,
        &secret_name,
        &format!("Access key of IAM user {user}, written by qovery-key-rotator. AWSCURRENT is the key Qovery holds."),
        &old,
    )
    .await
    .map_err(|e| e.into_rotation_error(&format!("No key was created. {old_only}")))?;
    let version_id = version_id_for(&state.execution_id);

    // A retry of this step in the same execution: the first call stored the key.
    let stored = secrets_manager::read_key_version(&deps.secrets, &secret_id, &version_id)
        .await
        .map_err(|e| e.into_rotation_error(&old_only))?;
    let keys = iam::list_access_keys(&deps.iam, &user)
        .await
        .map_err(|e| e.into_rotation_error(&old_only))?;
    if let Some(stored) = stored {
        if !keys.iter().any(|k| k.access_key_id == stored.access_key_id) {
            return Err(RotationError::PreconditionFailed(format!(
                "This execution already created key {} (stored as version {version_id} of {secret_id}), but IAM user \
                 {user} no longer has it; its keys are: {}. Someone deleted it. Start a new rotation. {old_only}",
                stored.access_key_id,
                describe_keys(&keys)
            )));
        }
        tracing::info!(new_access_key_id = %stored.access_key_id, "key already created by this execution");
        return Ok(with_new_key(
            state,
            stored.access_key_id,
            secret_id,
            version_id,
        ));
    }

    if keys.len() != 1 || keys[0].access_key_id != old {
        return Err(RotationError::PreconditionFailed(format!(
            "IAM user {user} should have only the old key {old} before a new one is created, but it has {}: {}. \
             Another process may be rotating it, or a retry lost a key it created. Delete any key that Qovery does \
             not hold (Qovery holds {old} unless someone changed it) and start again. No key was created.",
            keys.len(),
            describe_keys(&keys)
        )));
    }

    let (new_key, secret_access_key) = iam::create_access_key(&deps.iam, &user)
        .await
        .map_err(|e| e.into_rotation_error(&format!("No key was created. {old_only}")))?;
    tracing::info!(new_access_key_id = %new_key, "created access key");

    let stored = secrets_manager::put_pending_key(
        &deps.secrets,
        &secret_id,
        &version_id,
        &new_key,
        &secret_access_key,
    )
    .await;
    drop(secret_access_key);
    if let Err(store_error) = stored {
        // The secret exists nowhere else: a key we cannot store is useless, and would
        // block the next rotation (IAM allows two keys). Remove it.
        let cleanup = iam::delete_access_key(&deps.iam, &user, &new_key).await;
        let outcome = match cleanup {
            Ok(()) => format!("The new key {new_key} was deleted again, so {old} is the only key."),
            Err(e) => format!(
                "Deleting the unusable new key {new_key} failed too ({}); delete it by hand with \
                 `aws iam delete-access-key --user-name {user} --access-key-id {new_key}`.",
                e.message
            ),
        };
        return Err(store_error.into_rotation_error(&format!(
            "The new key could not be stored in {secret_id}. {outcome} Qovery still holds {old}."
        )));
    }
    Ok(with_new_key(state, new_key, secret_id, version_id))
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
