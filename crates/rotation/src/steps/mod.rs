//! One module per step of the state machine. Each `handle` takes the step's input as
//! JSON and returns its output or a named `RotationError`.

pub mod check_status;
pub mod create_key;
pub mod delete_key;
pub mod deploy_cluster;
pub mod preflight;
pub mod update_qovery;

use crate::config::Deps;
use crate::error::RotationError;
use crate::secret::Secret;
use crate::secrets_manager;

/// The Qovery API token, read fresh from Secrets Manager for each invocation.
pub(crate) async fn qovery_token(deps: &Deps, context: &str) -> Result<Secret, RotationError> {
    let id = &deps.settings.qovery_token_secret_id;
    let token = secrets_manager::read_string(&deps.secrets, id)
        .await
        .map_err(|e| {
            e.into_rotation_error(&format!(
                "The Qovery API token is read from secret {id}. {context}"
            ))
        })?;
    if token.is_empty() {
        return Err(RotationError::QoveryUnauthorized(format!(
            "The secret {id} that should hold the Qovery API token is empty. Put the token in it with \
             `aws secretsmanager put-secret-value --secret-id {id} --secret-string <token>`. {context}"
        )));
    }
    Ok(token)
}

/// The credentials entries of the organization that hold `access_key_id` right now,
/// whatever their type, as `<id> (<name>)`. Asked fresh every time: the key Qovery
/// holds is never deleted, and only Qovery knows which key it holds now.
pub(crate) fn holders(
    usages: &[crate::qovery::CredentialsUsage],
    access_key_id: &str,
) -> Vec<String> {
    usages
        .iter()
        .filter(|u| u.credential.holds_key(access_key_id))
        .map(|u| {
            format!(
                "{} ({})",
                u.credential.id,
                u.credential.name.as_deref().unwrap_or("")
            )
        })
        .collect()
}

/// The user's keys, with `context` (which keys are live, what to do) on failure.
pub(crate) async fn list_keys(
    deps: &Deps,
    user: &str,
    context: &str,
) -> Result<Vec<crate::state::KeySummary>, RotationError> {
    crate::iam::list_access_keys(&deps.iam, user)
        .await
        .map_err(|e| e.into_rotation_error(context))
}

/// Every credentials entry of the organization, asked now.
pub(crate) async fn list_credentials(
    deps: &Deps,
    token: &Secret,
    organization_id: &str,
    context: &str,
) -> Result<Vec<crate::qovery::CredentialsUsage>, RotationError> {
    deps.qovery
        .list_organization_credentials(token, organization_id)
        .await
        .map_err(|e| e.into_rotation_error(context))
}
