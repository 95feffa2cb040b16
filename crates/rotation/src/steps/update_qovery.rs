//! Step 3 and 4. Prove the new key works with STS, give it to Qovery, and mark it
//! `AWSCURRENT` in the key secret. Safe to retry: if Qovery already holds the new key,
//! the PUT is skipped.

use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;
use crate::state::{parse_step_input, RotationState};
use crate::{secrets_manager, sts, timefmt};

pub async fn handle(deps: &Deps, event: Value) -> Result<RotationState, RotationError> {
    let mut state: RotationState = parse_step_input("update-qovery", event)?;
    let (Some(new_key), Some(secret_id), Some(version_id)) = (
        state.new_access_key_id.clone(),
        state.key_secret_id.clone(),
        state.new_key_version_id.clone(),
    ) else {
        return Err(RotationError::InvalidInput(
            "update-qovery needs new_access_key_id, key_secret_id and new_key_version_id from create-key. Nothing was changed."
                .to_string(),
        ));
    };
    let user = state.iam_user_name.clone();
    let old = state.old_access_key_id.clone();
    let both_live = format!(
        "Qovery still holds the old key {old}. The new key {new_key} exists and will be deleted by the rollback."
    );

    let stored = secrets_manager::read_key_version(&deps.secrets, &secret_id, &version_id)
        .await
        .map_err(|e| e.into_rotation_error(&both_live))?
        .filter(|stored| stored.access_key_id == new_key)
        .ok_or_else(|| {
            RotationError::PreconditionFailed(format!(
                "Version {version_id} of secret {secret_id} does not hold the new key {new_key}; its secret is lost. {both_live}"
            ))
        })?;

    // IAM is eventually consistent: a key can take seconds to work everywhere. Qovery
    // must never be given a key that does not work yet.
    match sts::caller_arn_with_key(&deps.sdk_config, &new_key, &stored.secret_access_key).await {
        Ok(arn) if sts::is_user_arn(&arn, &user) => {
            tracing::info!(new_access_key_id = %new_key, caller = %arn, "new key proven with STS")
        }
        Ok(arn) => {
            return Err(RotationError::NewKeyNotValid(format!(
                "STS says the new key {new_key} belongs to {arn}, not to IAM user {user}. {both_live}"
            )))
        }
        Err(e) => {
            return Err(RotationError::NewKeyNotValid(format!(
                "STS does not accept the new key {new_key} yet ({}: {}). A new key can take a few seconds to \
                 propagate, and the state machine retries. {both_live}",
                e.code.as_deref().unwrap_or("error"),
                e.message
            )))
        }
    }

    let token = super::qovery_token(deps, &both_live).await?;
    let credentials = deps
        .qovery
        .get_aws_credentials(&token, &state.organization_id, &state.credentials_id)
        .await
        .map_err(|e| e.into_rotation_error(&both_live))?;
    let held = credentials.access_key_id.clone().unwrap_or_default();
    if held == new_key {
        tracing::info!(new_access_key_id = %new_key, "Qovery already holds the new key (retry); skipping the PUT");
    } else if held != old {
        return Err(RotationError::PreconditionFailed(format!(
            "Qovery credentials {} now hold {held}, neither the old key {old} nor the new key {new_key}: someone \
             changed them during the rotation. The rollback deletes the new key; check who holds which key before \
             rotating again.",
            state.credentials_id
        )));
    } else {
        let updated = deps
            .qovery
            .put_aws_static_credentials(
                &token,
                &state.organization_id,
                &state.credentials_id,
                &credentials.name,
                &new_key,
                &stored.secret_access_key,
            )
            .await
            .map_err(|e| e.into_rotation_error(&both_live))?;
        let answered = updated.access_key_id.unwrap_or_default();
        if answered != new_key {
            return Err(RotationError::QoveryRejected(format!(
                "Qovery accepted the credentials update but answers with key {answered}, not the new key {new_key}. \
                 The rollback deletes the new key only if Qovery does not hold it; check the credentials in the \
                 Qovery console."
            )));
        }
        tracing::info!(new_access_key_id = %new_key, credentials_id = %state.credentials_id, "Qovery holds the new key");
    }
    drop(stored);

    secrets_manager::make_current(&deps.secrets, &secret_id, &version_id)
        .await
        .map_err(|e| {
            e.into_rotation_error(&format!(
                "Qovery already holds the new key {new_key}; the old key {old} is still active. The rollback will \
                 refuse to delete the new key. Mark version {version_id} of {secret_id} AWSCURRENT by hand, redeploy \
                 the clusters, and delete {old} after two hours."
            ))
        })?;

    let now = timefmt::now();
    state.qovery_updated_at = Some(timefmt::format(now));
    state.drain_until = Some(timefmt::after(now, state.drain_seconds));
    Ok(state)
}
