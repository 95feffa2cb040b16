//! Step 8, and the rollback. Delete exactly one key, and only when it is safe: the key
//! belongs to the user, Qovery does not hold it right now, and it is not the key the
//! other half of the rotation depends on.

use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;
use crate::state::{
    describe_keys, parse_step_input, DeleteKeyRequest, DeleteKeyResult, DeleteMode,
};
use crate::{iam, secrets_manager};

pub async fn handle(deps: &Deps, event: Value) -> Result<DeleteKeyResult, RotationError> {
    let request: DeleteKeyRequest = parse_step_input("delete-key", event)?;
    let user = &request.iam_user_name;
    let old = &request.old_access_key_id;
    let new = request.new_access_key_id.as_deref();
    let (target, keep) = match (request.mode, new) {
        (DeleteMode::RetireOldKey, _) => (old.as_str(), new),
        (DeleteMode::RollbackNewKey, Some(new)) => (new, Some(old.as_str())),
        (DeleteMode::RollbackNewKey, None) => {
            return Err(RotationError::InvalidInput(format!(
                "A rollback needs new_access_key_id, the key to delete. Nothing was deleted; {old} is untouched."
            )))
        }
    };
    let nothing_deleted = format!("Nothing was deleted; the keys of {user} are as they were.");

    let keys = iam::list_access_keys(&deps.iam, user)
        .await
        .map_err(|e| e.into_rotation_error(&nothing_deleted))?;
    if !keys.iter().any(|k| k.access_key_id == target) {
        return Err(RotationError::UnsafeDelete(format!(
            "Refused to delete key {target}: it is not a key of IAM user {user}, whose keys are: {}. {nothing_deleted}",
            describe_keys(&keys)
        )));
    }
    if keep == Some(target) {
        return Err(RotationError::UnsafeDelete(format!(
            "Refused to delete key {target}: it is the key the other half of this rotation relies on (mode {:?}). \
             {nothing_deleted}",
            request.mode
        )));
    }

    // Ask Qovery now, not what an earlier step saw: the key Qovery holds is never deleted.
    let token = super::qovery_token(deps, &nothing_deleted).await?;
    let held = deps
        .qovery
        .get_aws_credentials(&token, &request.organization_id, &request.credentials_id)
        .await
        .map_err(|e| e.into_rotation_error(&nothing_deleted))?
        .access_key_id
        .unwrap_or_default();
    if held == target {
        let next = match request.mode {
            DeleteMode::RollbackNewKey => format!(
                "Qovery took the new key before the failure, so the rotation cannot be rolled back. Both keys \
                 ({}) stay active. Redeploy the clusters that use credentials {} so they pick up {target}, then \
                 delete {old} by hand after two hours.",
                describe_keys(&keys),
                request.credentials_id
            ),
            DeleteMode::RetireOldKey => format!(
                "Someone gave Qovery the old key again. Both keys ({}) stay active; find out which key Qovery \
                 should hold before deleting either.",
                describe_keys(&keys)
            ),
        };
        return Err(RotationError::UnsafeDelete(format!(
            "Refused to delete key {target}: Qovery credentials {} hold it right now. {next}",
            request.credentials_id
        )));
    }

    iam::delete_access_key(&deps.iam, user, target)
        .await
        .map_err(|e| {
            e.into_rotation_error(&format!(
                "Key {target} was not deleted. Qovery holds {held}."
            ))
        })?;
    tracing::info!(deleted_access_key_id = %target, mode = ?request.mode, qovery_access_key_id = %held, "deleted access key");

    if request.mode == DeleteMode::RollbackNewKey {
        // The deleted key's version should not look like a rotation in progress.
        if let Some(secret_id) = &request.key_secret_id {
            if let Err(e) = secrets_manager::unstage_pending(&deps.secrets, secret_id).await {
                tracing::warn!(secret_id = %secret_id, error = %e.message, "could not unstage the rolled-back key");
            }
        }
    }

    let remaining_keys = iam::list_access_keys(&deps.iam, user)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e.message, "could not list the keys left after the delete");
            Vec::new()
        });
    Ok(DeleteKeyResult {
        mode: request.mode,
        deleted_access_key_id: target.to_string(),
        qovery_access_key_id: held,
        remaining_keys,
    })
}
