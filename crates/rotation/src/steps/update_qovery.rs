//! Steps 3 and 4. Prove the new key works with STS and give it to every Qovery
//! credentials entry holding the old key. Then note, for each cluster, what Qovery
//! reports right after the hand-over, and delete the key secret: its secret now lives
//! only in Qovery.
//!
//! Safe to run twice: Qovery is read before any PUT, and an entry that already holds
//! the new key is left alone. Once every entry holds it, nothing else needs the secret.
//!
//! In `reconcile` mode (after a hand-over whose outcome is unknown) it only reads:
//! which key does each entry hold now? The state machine then either finishes the
//! hand-over or rolls back.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;
use crate::qovery::CredentialsUsage;
use crate::secret::Secret;
use crate::state::{parse_step_input, CredentialsRef, QoveryHolds, ReconcileResult, RotationState};
use crate::{secrets_manager, sts, timefmt};

pub async fn handle(deps: &Deps, event: Value) -> Result<Value, RotationError> {
    // Type-erased: written out, this future is too deep for rustc to lay out inside the
    // Lambda binary's runtime loop ("queries overflow the depth limit").
    let step: Pin<Box<dyn Future<Output = Result<Value, RotationError>> + Send + '_>> =
        Box::pin(run(deps, event));
    step.await
}

async fn run(deps: &Deps, event: Value) -> Result<Value, RotationError> {
    // ReconcileHandOver passes `{"reconcile": <state>}` and nothing else. FinishHandOver
    // passes the state itself, which by then carries reconcile's result at `$.reconcile`:
    // that is a hand-over.
    let to_reconcile = event
        .as_object()
        .filter(|fields| fields.len() == 1)
        .and_then(|fields| fields.get("reconcile"));
    if let Some(state) = to_reconcile {
        let state: RotationState = parse_step_input("update-qovery (reconcile)", state.clone())?;
        let result = reconcile(deps, &state).await?;
        return Ok(serde_json::to_value(result).expect("a reconcile result always serializes"));
    }
    let state: RotationState = parse_step_input("update-qovery", event)?;
    let state = hand_over(deps, state).await?;
    Ok(serde_json::to_value(state).expect("a rotation state always serializes"))
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

/// Which key each entry of the rotation holds, and which entries hold the old key
/// now (including any added since preflight): those get the new key too.
fn entries_to_update(
    state: &RotationState,
    usages: &[CredentialsUsage],
    new_key: &str,
) -> Result<(Vec<CredentialsRef>, Vec<CredentialsRef>), RotationError> {
    let old = &state.old_access_key_id;
    let mut done = Vec::new();
    let mut to_update = Vec::new();
    for entry in &state.credentials {
        let now = usages
            .iter()
            .find(|u| u.credential.id.eq_ignore_ascii_case(&entry.id));
        let held = now.and_then(|u| u.credential.access_key_id.clone());
        match held.as_deref() {
            Some(k) if k == new_key => done.push(entry.clone()),
            Some(k) if k == old => to_update.push(entry.clone()),
            other => {
                return Err(RotationError::PreconditionFailed(format!(
                    "Qovery credentials {} ({}) now hold {}, neither the old key {old} nor the new key {new_key}: \
                     someone changed them during the rotation. Both keys are still active. Check who holds which key \
                     before rotating again.",
                    entry.id,
                    entry.name,
                    match other {
                        Some(k) => format!("key {k}"),
                        None => "no key (they are gone)".to_string(),
                    }
                )))
            }
        }
    }
    for usage in usages {
        let id = usage.credential.id.to_ascii_lowercase();
        let known = state.credentials.iter().any(|c| c.id == id);
        if !known && usage.credential.holds_aws_key(old) {
            tracing::info!(credentials_id = %id, "credentials added since preflight also hold the old key");
            to_update.push(CredentialsRef {
                id,
                name: usage.credential.name.clone().unwrap_or_default(),
            });
        }
    }
    Ok((done, to_update))
}

async fn hand_over(deps: &Deps, mut state: RotationState) -> Result<RotationState, RotationError> {
    let keys = keys_of(&state)?;
    let new_key = keys.new.clone();
    let old = state.old_access_key_id.clone();
    let user = state.iam_user_name.clone();
    let before =
        format!("Both keys are active: the old key {old} and the new key {new_key} of {user}.");

    let token = super::qovery_token(deps, &before).await?;
    let usages = super::list_credentials(deps, &token, &state.organization_id, &before).await?;
    let (mut done, to_update) = entries_to_update(&state, &usages, &new_key)?;

    if !to_update.is_empty() {
        let secret_access_key = read_new_secret(deps, &keys, &before).await?;
        prove_with_sts(deps, &new_key, &secret_access_key, &user, &before).await?;
        for entry in to_update {
            let context = if done.is_empty() {
                before.clone()
            } else {
                format!(
                    "{before} Qovery credentials {} already hold the new key.",
                    done.iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let updated = deps
                .qovery
                .put_aws_static_credentials(
                    &token,
                    &state.organization_id,
                    &entry.id,
                    &entry.name,
                    &new_key,
                    &secret_access_key,
                )
                .await
                .map_err(|e| e.into_rotation_error(&context))?;
            let answered = updated.access_key_id.unwrap_or_default();
            if answered != new_key {
                return Err(RotationError::QoveryRejected(format!(
                    "Qovery accepted the update of credentials {} but answers with key {answered}, not the new key \
                     {new_key}. {context} Check the credentials in the Qovery console.",
                    entry.id
                )));
            }
            tracing::info!(new_access_key_id = %new_key, credentials_id = %entry.id, "Qovery credentials hold the new key");
            done.push(entry);
        }
    } else {
        tracing::info!(new_access_key_id = %new_key, "every credentials entry already holds the new key");
    }
    state.credentials = done;

    // Counted from now: Qovery took the key at the latest now, and a later drain end
    // is the safe side.
    let now = timefmt::now();
    state.qovery_updated_at = Some(timefmt::format(now));
    state.drain_until = Some(timefmt::after(now, state.drain_seconds));

    let after = format!(
        "Qovery holds the new key {new_key}; the old key {old} is still active and is kept until the drain ends."
    );
    note_clusters_at_handover(deps, &token, &mut state, &after).await?;

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

/// What Qovery reports for each planned cluster just after the hand-over: a
/// deployment that starts later uses the new key.
async fn note_clusters_at_handover(
    deps: &Deps,
    token: &Secret,
    state: &mut RotationState,
    context: &str,
) -> Result<(), RotationError> {
    if state.clusters.is_empty() {
        return Ok(());
    }
    let statuses = deps
        .qovery
        .organization_cluster_statuses(token, &state.organization_id)
        .await
        .map_err(|e| e.into_rotation_error(context))?;
    for plan in &mut state.clusters {
        let status = match statuses
            .iter()
            .find(|s| s.cluster_id.eq_ignore_ascii_case(&plan.id))
        {
            Some(status) => status.clone(),
            None => deps
                .qovery
                .cluster_status(token, &state.organization_id, &plan.id)
                .await
                .map_err(|e| e.into_rotation_error(context))?,
        };
        plan.handover_status = Some(status.status.as_str().to_string());
        plan.handover_execution_id = status.last_execution_id;
        plan.handover_deployment_date = status.last_deployment_date;
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
            "The key secret {} (version {}) no longer holds the new key {}, and some Qovery credentials still hold \
             the old key: the new key's secret is lost. {context} The rollback deletes the new key.",
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

/// After a hand-over whose outcome is unknown (a timeout, a 5xx, a lost answer): which
/// key do the entries hold now? Only if none holds the new key may it be rolled back.
async fn reconcile(deps: &Deps, state: &RotationState) -> Result<ReconcileResult, RotationError> {
    let keys = keys_of(state)?;
    let context = format!(
        "The outcome of the hand-over of the new key {} is unknown; both keys stay active and nothing is deleted \
         until Qovery can be asked.",
        keys.new
    );
    let token = super::qovery_token(deps, &context).await?;
    let usages = super::list_credentials(deps, &token, &state.organization_id, &context).await?;
    let holding_new = super::holders(&usages, &keys.new);
    let holding_old = super::holders(&usages, &state.old_access_key_id);
    let qovery_holds = match (holding_new.is_empty(), holding_old.is_empty()) {
        (true, _) => QoveryHolds::OldKey,
        (false, true) => QoveryHolds::NewKey,
        (false, false) => QoveryHolds::Mixed,
    };
    let credentials: Vec<String> = usages
        .iter()
        .filter(|u| {
            u.credential.holds_key(&keys.new) || u.credential.holds_key(&state.old_access_key_id)
        })
        .map(|u| {
            format!(
                "{}: {}",
                u.credential.id,
                u.credential.access_key_id.as_deref().unwrap_or("")
            )
        })
        .collect();
    let summary = match qovery_holds {
        QoveryHolds::OldKey => format!(
            "No Qovery credentials hold the new key {}: the hand-over did not apply, and the rollback may remove it.",
            keys.new
        ),
        QoveryHolds::NewKey => format!(
            "Qovery credentials {} hold the new key {}: the hand-over applied; the rotation goes on.",
            holding_new.join(", "),
            keys.new
        ),
        QoveryHolds::Mixed => format!(
            "Qovery credentials {} hold the new key {} and {} still hold the old key {}: the hand-over is finished \
             for the others.",
            holding_new.join(", "),
            keys.new,
            holding_old.join(", "),
            state.old_access_key_id
        ),
    };
    tracing::info!(?qovery_holds, "{summary}");
    Ok(ReconcileResult {
        qovery_holds,
        credentials,
        summary,
    })
}
