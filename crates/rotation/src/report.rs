//! The success report a finished rotation publishes to the notification topic (the
//! ReportSuccess state sends it; `NotifyOnSuccess` turns it off): who was rotated,
//! which keys, every holder changed, the clusters redeployed or skipped, the drain and
//! the duration. Key ids only, never a secret: it travels through Step Functions
//! history and SNS like everything else.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::qovery::HolderRef;
use crate::state::{LastUse, QuarantineResult, Recovery, SkippedCluster};
use crate::steps::check_wave::WaveOutcome;
use crate::timefmt;

/// What DeleteOldKey passes for the report: when the execution started, and the
/// rotation state as it reached the drain's end (`$`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRequest {
    /// `$$.Execution.StartTime`.
    pub started_at: String,
    pub rotation: RotationOutcome,
}

/// The parts of the rotation state the report reads. Not `deny_unknown_fields`: it is
/// the whole state, whatever else it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationOutcome {
    #[serde(default)]
    pub holders: Vec<HolderRef>,
    #[serde(default)]
    pub skipped_clusters: Vec<SkippedCluster>,
    /// One entry per wave (`$.deployments`, CheckWave's outputs).
    #[serde(default)]
    pub deployments: Vec<WaveOutcome>,
    pub drain_seconds: u64,
    #[serde(default)]
    pub qovery_updated_at: Option<String>,
    #[serde(default)]
    pub drain_until: Option<String>,
    #[serde(default)]
    pub recovery: Recovery,
    #[serde(default)]
    pub quarantine_seconds: u64,
    /// A move to an IAM role instead of a new key.
    #[serde(default)]
    pub migration: Option<crate::state::MigrationRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLine {
    pub id: String,
    pub name: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    pub seconds: u64,
    /// When Qovery took the new key: the drain counts from it.
    pub from: Option<String>,
    pub until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUse {
    pub at_drain_end: Option<LastUse>,
    pub before_delete: Option<LastUse>,
}

/// The message, as the topic's subscribers read it (JSON, like the failure one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessReport {
    /// The SNS subject: ASCII, one line, under 100 characters.
    pub subject: String,
    pub summary: String,
    pub iam_user_name: String,
    pub old_access_key_id: String,
    pub new_access_key_id: String,
    pub holders_changed: Vec<String>,
    pub clusters: Vec<ClusterLine>,
    pub drain: Drain,
    /// The old key's last use when the drain ended (checked idle), and just before
    /// the delete (`None`: never used).
    pub old_key_last_used: KeyUse,
    /// Seconds the old key stayed switched off before the delete (0: none).
    pub quarantine_seconds: u64,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: u64,
}

pub fn success(
    request: &ReportRequest,
    iam_user_name: &str,
    old_access_key_id: &str,
    new_access_key_id: &str,
    quarantine: Option<&QuarantineResult>,
    last_used: Option<&LastUse>,
    now: OffsetDateTime,
) -> SuccessReport {
    let rotation = &request.rotation;
    let started = timefmt::parse(&request.started_at);
    let duration_seconds = started
        .map(|at| (now - at).whole_seconds().max(0) as u64)
        .unwrap_or(0);
    let holders_changed: Vec<String> = rotation.holders.iter().map(HolderRef::label).collect();
    let mut clusters: Vec<ClusterLine> = rotation
        .deployments
        .iter()
        .flat_map(|wave| &wave.clusters)
        .map(|c| ClusterLine {
            id: c.id.clone(),
            name: c.name.clone(),
            outcome: match c.outcome.as_str() {
                "deployed" => "redeployed".to_string(),
                "skipped" => "skipped".to_string(),
                other => other.to_string(),
            },
            reason: (c.outcome == "skipped")
                .then(|| "stopped or deleted during the rotation".to_string()),
        })
        .collect();
    clusters.extend(rotation.skipped_clusters.iter().map(|c| ClusterLine {
        id: c.id.clone(),
        name: c.name.clone(),
        outcome: "skipped".to_string(),
        reason: Some(c.reason.clone()),
    }));
    let redeployed = clusters
        .iter()
        .filter(|c| c.outcome == "redeployed")
        .count();
    let skipped = clusters.len() - redeployed;
    let finished = if rotation.recovery == Recovery::Finish {
        " (finishing a rotation an ended run left)"
    } else {
        ""
    };
    let changed = if holders_changed.is_empty() {
        "none".to_string()
    } else {
        holders_changed.join("; ")
    };
    let summary = match &rotation.migration {
        Some(migration) => format!(
            "Qovery's move from IAM user {iam_user_name}'s key to role {} succeeded{finished} in {}: every cluster \
             uses role credentials {} ({redeployed} redeployed on the role, {skipped} not running, pointed at it), \
             {} holder(s) moved ({changed}), the static credentials {} deleted after a drain of {}, and the old key \
             {old_access_key_id} is deleted.",
            migration.role_arn,
            duration(duration_seconds),
            migration
                .role_credentials
                .as_ref()
                .map(|r| format!("{} ({})", r.name, r.id))
                .unwrap_or_default(),
            holders_changed.len(),
            migration
                .static_credentials
                .iter()
                .map(|c| format!("{} ({})", c.name, c.id))
                .collect::<Vec<_>>()
                .join(", "),
            duration(rotation.drain_seconds),
        ),
        None => format!(
            "Qovery key rotation of IAM user {iam_user_name} succeeded{finished} in {}: Qovery holds the new key \
             {new_access_key_id} ({} holder(s) changed: {changed}), {redeployed} cluster(s) redeployed, {skipped} \
             skipped, a drain of {} after the hand-over, and the old key {old_access_key_id} is deleted.",
            duration(duration_seconds),
            holders_changed.len(),
            duration(rotation.drain_seconds),
        ),
    };
    SuccessReport {
        subject: subject(iam_user_name),
        summary,
        iam_user_name: iam_user_name.to_string(),
        old_access_key_id: old_access_key_id.to_string(),
        new_access_key_id: new_access_key_id.to_string(),
        holders_changed,
        clusters,
        drain: Drain {
            seconds: rotation.drain_seconds,
            from: rotation.qovery_updated_at.clone(),
            until: rotation.drain_until.clone(),
        },
        old_key_last_used: KeyUse {
            at_drain_end: quarantine.and_then(|q| q.last_used.clone()),
            before_delete: last_used.cloned(),
        },
        quarantine_seconds: rotation.quarantine_seconds,
        started_at: request.started_at.clone(),
        finished_at: timefmt::format(now),
        duration_seconds,
    }
}

/// IAM user names are ASCII and at most 64 characters: the subject stays under SNS's
/// 100.
fn subject(iam_user_name: &str) -> String {
    format!("Qovery key rotated: IAM user {iam_user_name}")
}

/// `2 h 14 min`, `45 s`.
pub fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn request() -> ReportRequest {
        serde_json::from_value(json!({
            "started_at": "2026-11-30T09:00:00.123Z",
            "rotation": {
                "execution_id": "ignored: the report reads only what it needs",
                "holders": [
                    {"kind": "credentials", "id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "name": "prod", "access_key_id": "AKIANEW"},
                    {"kind": "container_registry", "id": "9b2f6a51-1d3c-4c1e-8f6e-6a1b2c3d4e5f", "name": "mirror", "access_key_id": "AKIANEW"}
                ],
                "skipped_clusters": [{"id": "c3", "name": "sandbox", "held_by": "prod", "status": "STOPPED",
                                      "reason": "stopped or being stopped; a deploy would start it"}],
                "deployments": [
                    {"wave": 0, "clusters": [{"id": "c1", "name": "production", "outcome": "deployed", "status": "DEPLOYED"}]},
                    {"wave": 1, "clusters": [{"id": "c2", "name": "staging", "outcome": "skipped"}]}
                ],
                "drain_seconds": 7200,
                "qovery_updated_at": "2026-11-30T09:05:00Z",
                "drain_until": "2026-11-30T11:05:00Z",
                "recovery": "fresh"
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_report_names_the_user_keys_holders_clusters_drain_and_duration() {
        let now = datetime!(2026-11-30 11:14:30 UTC);
        let report = success(&request(), "qovery", "AKIAOLD", "AKIANEW", None, None, now);
        assert_eq!(report.subject, "Qovery key rotated: IAM user qovery");
        assert_eq!(report.duration_seconds, 2 * 3600 + 14 * 60 + 29);
        assert_eq!(report.holders_changed.len(), 2);
        let outcomes: Vec<(&str, &str)> = report
            .clusters
            .iter()
            .map(|c| (c.name.as_str(), c.outcome.as_str()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("production", "redeployed"),
                ("staging", "skipped"),
                ("sandbox", "skipped")
            ]
        );
        assert_eq!(report.drain.from.as_deref(), Some("2026-11-30T09:05:00Z"));
        for needle in [
            "qovery",
            "AKIANEW",
            "AKIAOLD",
            "2 h 14 min",
            "1 cluster(s) redeployed",
            "2 skipped",
            "a drain of 2 h 0 min",
            "credentials prod",
            "deleted",
        ] {
            assert!(
                report.summary.contains(needle),
                "{needle}: {}",
                report.summary
            );
        }
    }

    #[test]
    fn the_subject_fits_sns_for_the_longest_user_name() {
        let longest = "u".repeat(64);
        let subject = subject(&longest);
        assert!(subject.len() < 100 && subject.is_ascii() && !subject.contains('\n'));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(61), "1 min 1 s");
        assert_eq!(duration(7200), "2 h 0 min");
    }
}
