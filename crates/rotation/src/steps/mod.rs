//! One module per step of the state machine. Each `handle` takes the step's input as
//! JSON and returns its output or a named `RotationError`.

pub mod audit;
pub mod check_status;
pub mod check_wave;
pub mod create_key;
pub mod delete_key;
pub mod deploy_cluster;
pub mod migration;
pub mod move_to_role;
pub mod preflight;
pub mod quarantine;
pub mod recovery;
pub mod update_qovery;

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;
use crate::ledger::Record;
use crate::qovery::holders::{self, Holder};
use crate::qovery::ClusterStatus;
use crate::secret::Secret;
use crate::secrets_manager;

/// A step's future, boxed: a function that serves two states picks one at run time.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, RotationError>> + Send + 'a>>;

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

/// Every holder of an AWS key in the organization, of every kind, asked now. Asked
/// fresh every time: a key any holder holds is never deleted, and only Qovery knows
/// which key each holds now.
pub(crate) async fn survey(
    deps: &Deps,
    token: &Secret,
    organization_id: &str,
    context: &str,
) -> Result<Vec<Holder>, RotationError> {
    holders::survey(&deps.qovery, token, organization_id)
        .await
        .map_err(|e| e.into_rotation_error(context))
}

/// `label holds key` for each holder that holds `key` or might; `none` when none does.
pub(crate) fn describe_holding(all: &[Holder], key: &str) -> String {
    holders::describe_all(holders::may_hold(all, key))
}

/// The user's rotation record, which must be `execution_id`'s own: `None` when there
/// is none (released by an earlier attempt that lost its answer), `RotationInProgress`
/// when another execution holds the lock.
pub(crate) async fn own_record(
    deps: &Deps,
    user: &str,
    execution_id: &str,
    context: &str,
) -> Result<Option<Record>, RotationError> {
    let record = deps
        .ledger
        .read(user)
        .await
        .map_err(|e| e.into_rotation_error(context))?;
    match record {
        Some(r) if r.execution_id != execution_id => Err(RotationError::RotationInProgress(format!(
            "The rotation lock of IAM user {user} is held by {}, not by this execution {execution_id}: it no longer \
             owns the rotation. {context}",
            r.describe()
        ))),
        other => Ok(other),
    }
}

/// The user's record, which must exist and be `execution_id`'s own: preflight took the
/// lock for this execution, so a missing record means it no longer owns the rotation.
pub(crate) async fn locked_record(
    deps: &Deps,
    user: &str,
    execution_id: &str,
    context: &str,
) -> Result<Record, RotationError> {
    own_record(deps, user, execution_id, context)
        .await?
        .ok_or_else(|| {
            RotationError::RotationInProgress(format!(
                "This execution {execution_id} does not hold the rotation lock of IAM user {user}: table {} has no \
                 record of it.",
                deps.ledger.table()
            ))
            .with_context(context)
        })
}

/// A cluster's status, from the organization's list when it names the cluster, else
/// asked for that cluster alone (the list can miss one).
pub(crate) async fn status_of(
    deps: &Deps,
    token: &Secret,
    organization_id: &str,
    statuses: &[ClusterStatus],
    cluster_id: &str,
    context: &str,
) -> Result<ClusterStatus, RotationError> {
    match statuses
        .iter()
        .find(|s| s.cluster_id.eq_ignore_ascii_case(cluster_id))
    {
        Some(status) => Ok(status.clone()),
        None => deps
            .qovery
            .cluster_status(token, organization_id, cluster_id)
            .await
            .map_err(|e| e.into_rotation_error(context)),
    }
}

/// Writes `record` (stamped now) as the lock holder's.
pub(crate) async fn write_record(
    deps: &Deps,
    record: Record,
    context: &str,
) -> Result<Record, RotationError> {
    let record = Record {
        updated_at: crate::timefmt::format(crate::timefmt::now()),
        ..record
    };
    deps.ledger
        .write(&record)
        .await
        .map_err(|e| e.into_rotation_error(context))?;
    Ok(record)
}
