//! Step 2. Create the second key and store it in this execution's key secret.
//!
//! Safe to run twice with the same input. A retry finds the key the first call stored.
//! A first call that lost its answer after `CreateAccessKey` (or was killed before it
//! stored the key) leaves a key whose secret nobody has: created after preflight, held
//! by nothing in Qovery, stored nowhere. Such a key is useless and would block the
//! rotation (IAM allows two keys), so it is deleted and the step goes on.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Deps;
use crate::error::RotationError;
use crate::secret::Secret;
use crate::state::{describe_keys, parse_step_input, KeySummary, RotationState};
use crate::{iam, secrets_manager, timefmt};

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
    let old_only = format!("Qovery still holds the old key {old}.");
    let secret_name = deps.settings.key_secret_name(&user, &state.execution_id);
    let version_id = version_id_for(&state.execution_id);

    // A retry of this step in the same execution: the first call stored the key.
    let stored = secrets_manager::read_key(&deps.secrets, &secret_name, &version_id)
        .await
        .map_err(|e| {
            // Nothing was created yet in this call, but an earlier attempt may have: say
            // only what is known. The retry lists the keys.
            e.into_rotation_error(&format!(
                "This call created no key before the failure. {old_only}"
            ))
        })?;
    let keys = super::list_keys(deps, &user, &old_only).await?;
    if let Some((secret_arn, stored)) = stored {
        if !keys.iter().any(|k| k.access_key_id == stored.access_key_id) {
            return Err(RotationError::PreconditionFailed(format!(
                "This execution already created key {} (stored in {secret_arn}), but IAM user {user} no longer has \
                 it; its keys are: {}. Someone deleted it. Delete the secret {secret_arn} and start a new rotation. \
                 {old_only}",
                stored.access_key_id,
                describe_keys(&keys)
            )));
        }
        tracing::info!(new_access_key_id = %stored.access_key_id, "key already created by this execution");
        return Ok(with_new_key(
            state,
            stored.access_key_id,
            secret_arn,
            version_id,
        ));
    }

    let keys = remove_lost_keys(deps, &state, keys, &old_only).await?;
    if keys.len() != 1 || keys[0].access_key_id != old {
        return Err(RotationError::PreconditionFailed(format!(
            "IAM user {user} should have only the old key {old} before a new one is created, but it has {}: {}. \
             Another process may be rotating it. Delete any key that Qovery does not hold once nothing uses it, \
             and start again. No key was created by this execution. {old_only}",
            keys.len(),
            describe_keys(&keys)
        )));
    }

    let (new_key, secret_access_key) = create_once(deps, &state, &old_only).await?;
    tracing::info!(new_access_key_id = %new_key, "created access key");

    let stored = secrets_manager::create_key_secret(
        &deps.secrets,
        &secret_name,
        &format!(
            "New access key {new_key} of IAM user {user} while qovery-key-rotator hands it to Qovery; deleted once \
             Qovery holds it."
        ),
        &version_id,
        &new_key,
        &secret_access_key,
    )
    .await
    // Secrets Manager's messages are not known to quote a value, but this one carried
    // the secret key: scrub it before it can reach an error.
    .map_err(|mut e| {
        e.message = crate::secret::scrub_all(&e.message, &[&secret_access_key]);
        e
    });
    drop(secret_access_key);
    match stored {
        Ok(secret_arn) => Ok(with_new_key(state, new_key, secret_arn, version_id)),
        Err(store_error) => {
            // The secret exists nowhere else: a key we cannot store is useless, and would
            // block the next rotation. Remove it.
            let cleanup = iam::delete_access_key(&deps.iam, &user, &new_key).await;
            let outcome = match cleanup {
                Ok(()) => format!("The new key {new_key} was deleted again, so {old} is the only key."),
                Err(e) => format!(
                    "Deleting the unusable new key {new_key} failed too ({}); the next attempt deletes it, or \
                     delete it by hand with `aws iam delete-access-key --user-name {user} --access-key-id {new_key}`.",
                    e.message
                ),
            };
            Err(store_error.into_rotation_error(&format!(
                "The new key could not be stored in {secret_name}. {outcome} {old_only}"
            )))
        }
    }
}

/// Deletes every key of the user that an earlier attempt of this step created and lost:
/// not the old key, created at or after preflight, and held by nothing in Qovery.
/// Returns the keys left.
async fn remove_lost_keys(
    deps: &Deps,
    state: &RotationState,
    keys: Vec<KeySummary>,
    context: &str,
) -> Result<Vec<KeySummary>, RotationError> {
    let since = timefmt::parse(&state.preflight_at);
    let candidates: Vec<&KeySummary> = keys
        .iter()
        .filter(|k| k.access_key_id != state.old_access_key_id)
        .filter(|k| {
            let created = timefmt::parse(&k.create_date);
            matches!((created, since), (Some(c), Some(s)) if c >= s)
        })
        .collect();
    if candidates.is_empty() {
        return Ok(keys);
    }
    let token = super::qovery_token(deps, context).await?;
    let all = super::survey(deps, &token, &state.organization_id, context).await?;
    let mut deleted = Vec::new();
    for key in candidates {
        // Fail closed: a holder whose key id cannot be read might hold this key.
        if !crate::qovery::holders::may_hold(&all, &key.access_key_id).is_empty() {
            continue;
        }
        iam::delete_access_key(&deps.iam, &state.iam_user_name, &key.access_key_id)
            .await
            .map_err(|e| {
                e.into_rotation_error(&format!(
                    "Key {} was created after preflight by a lost attempt of this step and nobody holds its \
                     secret; it could not be deleted. {context}",
                    key.access_key_id
                ))
            })?;
        tracing::warn!(access_key_id = %key.access_key_id, "deleted a key a lost attempt of this step created");
        deleted.push(key.access_key_id.clone());
    }
    if deleted.is_empty() {
        return Ok(keys);
    }
    super::list_keys(deps, &state.iam_user_name, context).await
}

/// `CreateAccessKey`, once more if its answer was lost: the SDK's own retry of a call
/// that did create a key fails with `LimitExceeded`, and that key is lost.
async fn create_once(
    deps: &Deps,
    state: &RotationState,
    context: &str,
) -> Result<(String, Secret), RotationError> {
    let user = &state.iam_user_name;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match iam::create_access_key(&deps.iam, user).await {
            Ok(created) => return Ok(created),
            Err(error) => error,
        };
        // Never say what happened without looking: list the keys again.
        let keys = super::list_keys(deps, user, context).await?;
        let before = keys.len();
        let keys = remove_lost_keys(deps, state, keys, context).await?;
        if keys.len() < before && attempt == 1 {
            tracing::warn!(error = %error.message, "CreateAccessKey failed after creating a key; deleted it, trying again");
            continue;
        }
        return Err(error.into_rotation_error(&format!(
            "IAM user {user} now has: {}. {context}",
            describe_keys(&keys)
        )));
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
