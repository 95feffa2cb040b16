//! Step 6, for one wave of clusters (the CheckWave state, served by the check-status
//! function). Every cluster of a wave is followed to its end, even once one of them
//! failed: the ASL catches each cluster's failure into its result instead of letting
//! it stop the Map, which would abandon the others mid-deployment. This step then
//! reads the results: all deployed or skipped, and the next wave may start; otherwise
//! it fails with the first failed cluster's error, naming every cluster's outcome, and
//! no further wave starts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::RotationError;
use crate::state::Mode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaveEvent {
    /// The results of the wave's Map: each cluster's last state, with `failure` when
    /// one of its tasks failed (the Catch's `{Error, Cause}`).
    wave: Vec<Value>,
    /// 0 for the canary.
    #[serde(default)]
    wave_number: u64,
    /// The run's mode: a migration's failures are `RoleNotProven` (the migration is
    /// undone), an undo's are `FallbackFailed`.
    #[serde(default)]
    mode: crate::state::Mode,
}

/// One cluster's outcome, as the success report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOutcome {
    pub id: String,
    pub name: String,
    /// `deployed`, `skipped` or `failed`.
    pub outcome: String,
    /// The last status Qovery reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// What a wave that succeeded hands on: `$.deployments[n]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveOutcome {
    pub wave: u64,
    pub clusters: Vec<ClusterOutcome>,
}

struct Failure {
    label: String,
    error: String,
    message: String,
}

pub fn handle(event: Value) -> Result<WaveOutcome, RotationError> {
    let event: WaveEvent = serde_json::from_value(event).map_err(|e| {
        RotationError::InvalidInput(format!(
            "The wave check got an input it cannot read: {e}. The state machine passes {{\"wave\": [the results of \
             the wave's clusters], \"wave_number\": n}}. Nothing was changed."
        ))
    })?;
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for result in &event.wave {
        let text = |field: &str| {
            result
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let id = text("cluster_id").unwrap_or_default();
        let name = text("cluster_name").unwrap_or_else(|| id.clone());
        let status = text("status");
        let outcome = match (result.get("failure"), text("phase").as_deref()) {
            (Some(failure), _) => {
                failures.push(failure_of(&format!("{name} ({id})"), failure));
                "failed"
            }
            (None, Some("deployed")) => "deployed",
            (None, Some("skipped")) => "skipped",
            // Not reached: the iteration ends only deployed, skipped or caught.
            (None, other) => {
                failures.push(Failure {
                    label: format!("{name} ({id})"),
                    error: "ClusterDeployFailed".to_string(),
                    message: format!(
                        "its redeploy ended in phase {} without reaching DEPLOYED",
                        other.unwrap_or("(none)")
                    ),
                });
                "failed"
            }
        };
        clusters.push(ClusterOutcome {
            id,
            name,
            outcome: outcome.to_string(),
            status,
        });
    }
    let Some(first) = failures.first() else {
        tracing::info!(
            wave = event.wave_number,
            clusters = clusters.len(),
            "wave deployed"
        );
        return Ok(WaveOutcome {
            wave: event.wave_number,
            clusters,
        });
    };
    let outcomes = clusters
        .iter()
        .map(|c| format!("{} ({}): {}", c.name, c.id, c.outcome))
        .collect::<Vec<_>>()
        .join("; ");
    let others = failures
        .iter()
        .skip(1)
        .map(|f| format!(" Also {} failed with {}: {}", f.label, f.error, f.message))
        .collect::<String>();
    let wave = match event.wave_number {
        0 => "the canary (the first cluster, redeployed alone)".to_string(),
        n => format!("wave {n}"),
    };
    let message = format!(
        "Cluster {} of {wave} failed with {}: {}{others} Every cluster of this wave was followed to its end ({outcomes}); \
         no cluster of a later wave was started.",
        first.label, first.error, first.message
    );
    tracing::warn!(
        wave = event.wave_number,
        failed = failures.len(),
        "wave failed"
    );
    match event.mode {
        // The cluster's own message says what happened on the role (check_status).
        Mode::Migrate => Err(RotationError::RoleNotProven(format!(
            "{message} {} The migration is undone next: every cluster moved goes back to its static credentials, \
             whose key was never touched, and is redeployed there; the registries never left the key.",
            role_advice(&first.message, &first.error)
        ))),
        Mode::UndoMigration => Err(RotationError::FallbackFailed(format!(
            "Cluster {} failed its redeploy on its static credentials ({}), after the move to the role failed; the \
             clusters: {outcomes}. The static key and every registry are untouched and the lock is kept. Fix the \
             cluster in the Qovery console, then start a new run: it finishes the undo.",
            first.label, first.error
        ))),
        _ => Err(error_named(&first.error, message)),
    }
}

/// What to check when a cluster fails on the role.
fn role_advice(failure: &str, error: &str) -> &'static str {
    if failure.contains("INVALID_CREDENTIALS") {
        "Qovery could not use the role's credentials: check that the role's trust policy lets Qovery's principal \
         assume it and requires no external id Qovery does not send (the dry run's report.migration.trust_lines show \
         what it allows)."
    } else if error == "ClusterDeployTimedOut" {
        "It did not reach DEPLOYED in time: check the cluster in the Qovery console (raise deploy_timeout_seconds if \
         deployments are slow)."
    } else {
        "The cluster failed on the role: check the role's permissions against Qovery's CloudFormation template, and \
         the cluster's deployment logs in the Qovery console."
    }
}

/// The caught `{Error, Cause}`: a step's error (its Cause is the Lambda error document
/// with `errorMessage`), or the platform's (a timeout, a Lambda failure), whose Cause is text.
fn failure_of(label: &str, failure: &Value) -> Failure {
    let error = failure
        .get("Error")
        .and_then(Value::as_str)
        .unwrap_or("States.TaskFailed")
        .to_string();
    let cause = failure.get("Cause").and_then(Value::as_str).unwrap_or("");
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|doc| {
            doc.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| cause.to_string());
    Failure {
        label: label.to_string(),
        error,
        message,
    }
}

/// The wave fails with its first cluster's error name, as the execution did before
/// waves; a platform error (`States.*`, `Lambda.*`) is a cluster whose redeploy could
/// not be followed, reported as `ClusterDeployFailed` with the original name in the text.
fn error_named(name: &str, message: String) -> RotationError {
    match name {
        "ClusterDeployTimedOut" => RotationError::ClusterDeployTimedOut(message),
        "QoveryUnauthorized" => RotationError::QoveryUnauthorized(message),
        "QoveryUnavailable" => RotationError::QoveryUnavailable(message),
        "QoveryRejected" => RotationError::QoveryRejected(message),
        "InvalidInput" => RotationError::InvalidInput(message),
        "AwsUnavailable" => RotationError::AwsUnavailable(message),
        "AwsRejected" => RotationError::AwsRejected(message),
        _ => RotationError::ClusterDeployFailed(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployed(id: &str) -> Value {
        json!({"cluster_id": id, "cluster_name": format!("name-{id}"), "phase": "deployed", "status": "DEPLOYED"})
    }

    fn failed(id: &str, error: &str, cause: &str) -> Value {
        json!({"cluster_id": id, "cluster_name": format!("name-{id}"), "phase": "in_progress",
               "status": "DEPLOYMENT_ERROR", "failure": {"Error": error, "Cause": cause}})
    }

    #[test]
    fn a_wave_of_deployed_and_skipped_clusters_lets_the_next_start() {
        let mut skipped = deployed("b");
        skipped["phase"] = json!("skipped");
        let outcome = handle(json!({"wave": [deployed("a"), skipped], "wave_number": 2})).unwrap();
        assert_eq!(outcome.wave, 2);
        let names: Vec<_> = outcome
            .clusters
            .iter()
            .map(|c| c.outcome.as_str())
            .collect();
        assert_eq!(names, ["deployed", "skipped"]);
    }

    #[test]
    fn a_failed_cluster_fails_the_wave_with_its_own_error_and_every_outcome() {
        let cause = json!({"errorType": "ClusterDeployTimedOut", "errorMessage": "Cluster b is still DEPLOYING"})
            .to_string();
        let error = handle(json!({"wave": [deployed("a"), failed("b", "ClusterDeployTimedOut", &cause),
                                           failed("c", "States.Timeout", "Task timed out")], "wave_number": 1}))
        .unwrap_err();
        assert_eq!(error.name(), "ClusterDeployTimedOut");
        let message = error.message();
        assert!(
            message.contains("Cluster b is still DEPLOYING"),
            "{message}"
        );
        assert!(message.contains("name-a (a): deployed"), "{message}");
        assert!(
            message.contains("Also name-c (c) failed with States.Timeout: Task timed out"),
            "{message}"
        );
        assert!(
            message.contains("no cluster of a later wave was started"),
            "{message}"
        );
    }

    #[test]
    fn a_platform_error_is_reported_as_a_failed_deploy_naming_it() {
        let error =
            handle(json!({"wave": [failed("a", "Lambda.Unknown", "boom")], "wave_number": 0}))
                .unwrap_err();
        assert_eq!(error.name(), "ClusterDeployFailed");
        assert!(error.message().contains("the canary"));
        assert!(error.message().contains("Lambda.Unknown: boom"));
    }

    #[test]
    fn a_migration_failure_is_role_not_proven_and_an_undo_failure_fallback_failed() {
        let cause = json!({"errorType": "ClusterDeployFailed",
                           "errorMessage": "Cluster a ended in INVALID_CREDENTIALS after its redeploy on role credentials r (1)"})
            .to_string();
        let wave = json!([failed("a", "ClusterDeployFailed", &cause)]);
        let error = handle(json!({"wave": wave, "wave_number": 0, "mode": "migrate"})).unwrap_err();
        assert_eq!(error.name(), "RoleNotProven");
        let message = error.message();
        assert!(
            message.contains("ended in INVALID_CREDENTIALS") && message.contains("trust policy"),
            "{message}"
        );
        assert!(
            message.contains("undone") && !message.contains("new key"),
            "{message}"
        );
        let error =
            handle(json!({"wave": wave, "wave_number": 0, "mode": "undo_migration"})).unwrap_err();
        assert_eq!(error.name(), "FallbackFailed");
        assert!(error.message().contains("lock is kept"));
        let error = handle(json!({"wave": wave, "wave_number": 0, "mode": "rotate"})).unwrap_err();
        assert_eq!(error.name(), "ClusterDeployFailed");
    }

    #[test]
    fn bad_input_is_invalid_input() {
        let error = handle(json!({"wave": "nope"})).unwrap_err();
        assert_eq!(error.name(), "InvalidInput");
    }
}
