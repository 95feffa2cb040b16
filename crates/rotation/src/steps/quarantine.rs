//! Step 8, first half: before the old key goes, make sure nothing outside Qovery still
//! uses it. The rotation can only see the holders of one Qovery organization; another
//! organization on the same IAM user, an application's variables or a script may
//! hold the key too. So, at the drain's end:
//! 1. ask IAM when the old key was last used (GetAccessKeyLastUsed; it must come first:
//!    a key switched off cannot be used, so its last use would say nothing). Used
//!    within `key_idle_seconds` of now: `KeyStillInUse`, both keys stay active;
//! 2. switch it off (IAM's own way to retire a key) and let the Quarantine Wait run;
//! 3. DeleteOldKey then checks that no cluster of the rotation fell into
//!    `INVALID_CREDENTIALS` or an error meanwhile (`check_clusters`): if one did, the key
//!    is switched back on and the run fails with `KeyStillInUse`. Otherwise it goes.
//!
//! A quarantine of 0 switches nothing off: DeleteOldKey deletes at once, after the same
//! idle check. Safe to run twice: a repeat finds the key already off (or gone) and
//! ends the same way.

use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;
use crate::ledger::LedgerPhase;
use crate::qovery::holders::{self, Holder};
use crate::qovery::StateClass;
use crate::secret::Secret;
use crate::state::{
    describe_keys, parse_step_input, DeleteKeyRequest, DeleteMode, KeySummary, LastUse,
    QuarantineResult,
};
use crate::{iam, timefmt};

use super::delete_key::{check_kept_key, reactivate, refusal, write_phase};

pub async fn handle(deps: &Deps, event: Value) -> Result<QuarantineResult, RotationError> {
    let request: DeleteKeyRequest = parse_step_input("delete-key", event)?;
    let user = request.iam_user_name.as_str();
    let old = request.old_access_key_id.as_str();
    // The kept side: the new key, or in a move to a role, the role.
    let kept = match (&request.migration, &request.new_access_key_id) {
        (Some(migration), _) => Some(migration.role_arn.clone()),
        (None, new) => new.clone(),
    };
    let Some(new) = kept
        .as_deref()
        .filter(|_| request.mode == DeleteMode::QuarantineOldKey)
    else {
        return Err(RotationError::InvalidInput(format!(
            "The quarantine needs mode quarantine_old_key and new_access_key_id (the key to keep). Nothing was \
             changed; {old} is untouched."
        )));
    };
    let nothing_changed = format!("Nothing was changed; the keys of {user} are as they were.");
    let record = super::own_record(deps, user, &request.execution_id, &nothing_changed).await?;
    let keys = super::list_keys(deps, user, &nothing_changed).await?;
    let token = super::qovery_token(deps, &nothing_changed).await?;
    let owns_old_key = record.as_ref().is_some_and(|r| r.old_access_key_id == old);
    if let (Some(migration), true) = (&request.migration, owns_old_key) {
        // The static credentials hold the old key: they go first, once no cluster uses them.
        super::move_to_role::retire_static_credentials(
            deps,
            &token,
            &request.organization_id,
            migration,
            &nothing_changed,
        )
        .await?;
    }
    let all = super::survey(deps, &token, &request.organization_id, &nothing_changed).await?;
    let quarantine_seconds = request.quarantine_seconds.unwrap_or(0);
    let until = timefmt::after(timefmt::now(), quarantine_seconds);

    let Some(status) = keys
        .iter()
        .find(|k| k.access_key_id == old)
        .map(|k| k.status.clone())
    else {
        // An earlier DeleteOldKey went through (this is a repeat after its answer was
        // lost); DeleteOldKey judges it again.
        return Ok(QuarantineResult {
            old_access_key_id: old.to_string(),
            last_used: None,
            switched_off: false,
            already_off: false,
            already_deleted: true,
            until: timefmt::format(timefmt::now()),
            summary: format!("The old key {old} is already deleted."),
        });
    };
    let active = status == "Active";
    if !holders::may_hold(&all, old).is_empty() {
        let outcome = if active {
            String::new()
        } else {
            reactivate(deps, user, old).await
        };
        return Err(refusal(&request, old, new, &all, &keys, &outcome));
    }
    check_kept_key(&request, new, &keys, &all)?;
    if record.as_ref().map(|r| r.old_access_key_id.as_str()) != Some(old) {
        return Err(RotationError::UnsafeDelete(format!(
            "Refused to switch off key {old}: the rotation record of IAM user {user} in table {} does not name it as \
             this rotation's old key. {nothing_changed}",
            deps.ledger.table()
        )));
    }
    if !active {
        // An earlier attempt checked it idle and switched it off; its last use since
        // cannot have changed, and the report wants it.
        let last_used = iam::access_key_last_used(&deps.iam, old)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e.message, "could not read the old key's last use");
                None
            });
        return Ok(QuarantineResult {
            old_access_key_id: old.to_string(),
            last_used,
            switched_off: false,
            already_off: true,
            until,
            summary: format!(
                "The old key {old} was already switched off (an earlier attempt); the quarantine lasts \
                 {quarantine_seconds} s more, then it is deleted."
            ),
            already_deleted: false,
        });
    }
    let last_used = check_idle(deps, &request, old, new, &keys, &all).await?;
    let switched_off = quarantine_seconds > 0;
    if switched_off {
        write_phase(
            deps,
            record.as_ref(),
            LedgerPhase::Quarantined,
            &nothing_changed,
        )
        .await?;
        iam::set_access_key_active(&deps.iam, user, old, false)
            .await
            .map_err(|e| e.into_rotation_error(&nothing_changed))?;
        tracing::info!(access_key_id = %old, until = %until, "old key switched off for the quarantine");
    }
    let used = last_used
        .as_ref()
        .map(LastUse::describe)
        .unwrap_or_else(|| "never".to_string());
    Ok(QuarantineResult {
        old_access_key_id: old.to_string(),
        last_used,
        switched_off,
        already_off: false,
        already_deleted: false,
        summary: if switched_off {
            format!(
                "The old key {old} (last used: {used}) is switched off until {until}; it is deleted then unless a \
                 cluster fails meanwhile."
            )
        } else {
            format!(
                "The old key {old} (last used: {used}) is idle; no quarantine: it is deleted now."
            )
        },
        until,
    })
}

/// The old key's last use: refused with `KeyStillInUse` if within `key_idle_seconds`.
pub(crate) async fn check_idle(
    deps: &Deps,
    request: &DeleteKeyRequest,
    old: &str,
    new: &str,
    keys: &[KeySummary],
    all: &[Holder],
) -> Result<Option<LastUse>, RotationError> {
    let user = &request.iam_user_name;
    let last = iam::access_key_last_used(&deps.iam, old).await.map_err(|e| {
        e.into_rotation_error(&format!(
            "Whether the old key {old} is still in use cannot be told, so it stays active; nothing was changed."
        ))
    })?;
    let window = request.key_idle_seconds.unwrap_or(0);
    let Some(used) = &last else {
        return Ok(None);
    };
    let ago = timefmt::parse(&used.at).map(|at| (timefmt::now() - at).whole_seconds());
    match ago {
        Some(ago) if ago >= window as i64 => Ok(last),
        ago => Err(RotationError::KeyStillInUse(format!(
            "The old key {old} of IAM user {user} was used {} (by {} in region {}), within key_idle_seconds \
             ({window} s) of the drain's end. Every holder in Qovery already holds the new key {new} ({}), so the \
             caller is something this rotation cannot see: another Qovery organization set up with the same IAM \
             user, an application whose variables hold the key, a script or a laptop (CloudTrail shows its calls \
             by accessKeyId). Both keys stay active ({}); nothing was deleted. Move that caller to the new key or \
             its own credentials, then start a new run: the ledger records the hand-over, so it only checks, \
             switches off and deletes {old}.",
            match ago {
                Some(s) => format!("at {} ({s} s ago)", used.at),
                None => format!("at {}", used.at),
            },
            used.service,
            used.region,
            super::describe_holding(all, new),
            describe_keys(keys)
        ))),
    }
}

/// After the quarantine: every cluster of the rotation must still be healthy. One in
/// `INVALID_CREDENTIALS` or an error state may need the old key: switch it back on and
/// fail.
pub(crate) async fn check_clusters(
    deps: &Deps,
    token: &Secret,
    request: &DeleteKeyRequest,
    old: &str,
) -> Result<(), RotationError> {
    let user = &request.iam_user_name;
    let statuses = match deps
        .qovery
        .organization_cluster_statuses(token, &request.organization_id)
        .await
    {
        Ok(statuses) => statuses,
        Err(e) => {
            // Nobody can tell whether a cluster broke: the key goes back on.
            let outcome = reactivate(deps, user, old).await;
            return Err(e.into_rotation_error(&format!(
                "The clusters could not be checked after the quarantine of the old key {old}. {outcome} Nothing was \
                 deleted; start a new run."
            )));
        }
    };
    let broken: Vec<String> = request
        .clusters
        .iter()
        .filter_map(|c| {
            let status = statuses.iter().find(|s| s.cluster_id == c.id)?;
            (status.status.class() == StateClass::Failed)
                .then(|| format!("{} ({}) is {}", c.name, c.id, status.status.as_str()))
        })
        .collect();
    if broken.is_empty() {
        return Ok(());
    }
    let outcome = reactivate(deps, user, old).await;
    Err(RotationError::KeyStillInUse(format!(
        "While the old key {old} of IAM user {user} was switched off, a cluster of the rotation failed: {}. It may \
         still need the old key. {outcome} Both keys are active again; nothing was deleted. Read the cluster's \
         deployment logs in the Qovery console and find what still uses {old}; redeploy the cluster, then start a \
         new run: it checks, switches off and deletes {old} again.",
        broken.join("; ")
    )))
}
