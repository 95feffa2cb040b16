//! The execution input: the user-facing contract. Validated by hand, field by field,
//! so that every message names the field at fault and nothing is guessed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::RotationError;

/// Deployments already under way keep the old key for up to two hours, so deleting it
/// sooner could break them. Shorter drains need `allow_short_drain`.
pub const MIN_SAFE_DRAIN_SECONDS: u64 = 7200;
pub const DEFAULT_DRAIN_SECONDS: u64 = 7200;
pub const DEFAULT_DEPLOY_TIMEOUT_SECONDS: u64 = 7200;
pub const DEFAULT_POLL_INTERVAL_SECONDS: u64 = 60;
/// Qovery's own clients poll every 5 to 10 s; slower keeps us far from its rate limit.
pub const MIN_POLL_INTERVAL_SECONDS: u64 = 10;
pub const MAX_POLL_INTERVAL_SECONDS: u64 = 3600;
/// A Standard execution lives at most a year; these bounds keep one rotation well inside.
pub const MAX_DRAIN_SECONDS: u64 = 30 * 24 * 3600;
pub const MAX_DEPLOY_TIMEOUT_SECONDS: u64 = 24 * 3600;
/// At the drain's end the old key must not have been used for this long (IAM's
/// GetAccessKeyLastUsed): an hour after the default two-hour drain began, Qovery work
/// started before the hand-over has had an hour to stop using it, and anything calling
/// at least hourly is caught.
pub const DEFAULT_KEY_IDLE_SECONDS: u64 = 3600;
/// Between switching the old key off and deleting it: an hour, in which anything that
/// still needs it fails visibly (and a cluster turned INVALID_CREDENTIALS brings it
/// back), while switching it on again is one call.
pub const DEFAULT_QUARANTINE_SECONDS: u64 = 3600;
pub const MAX_QUARANTINE_SECONDS: u64 = 7 * 24 * 3600;
/// After the canary, how many clusters redeploy at once. One at a time is the safest;
/// more shortens a rotation of many clusters.
pub const DEFAULT_DEPLOY_CONCURRENCY: u64 = 1;
pub const MAX_DEPLOY_CONCURRENCY: u64 = 10;
/// The audit's limit on the age of the key Qovery holds. AWS Config's
/// `access-keys-rotated` rule defaults to 90 days; a 30-day rotation schedule that
/// missed one run still passes 45, two missed runs do not.
pub const DEFAULT_MAX_KEY_AGE_DAYS: u64 = 45;
pub const MAX_MAX_KEY_AGE_DAYS: u64 = 365;

/// A Standard execution fails once its history passes 25,000 events. Each status poll
/// of a cluster adds about 9 (Wait, Task, Choice); keep the worst case well below the
/// limit so that retries and the rest of the workflow fit too.
pub const HISTORY_EVENT_BUDGET: u64 = 20_000;
const EVENTS_PER_POLL: u64 = 9;
const EVENTS_PER_CLUSTER: u64 = 30;
/// A wave's own events: its iteration, its inner Map, and the CheckWave task.
const EVENTS_PER_WAVE: u64 = 20;

const FIELDS: [&str; 14] = [
    "iam_user_name",
    "organization_id",
    "credentials_id",
    "drain_seconds",
    "deploy_timeout_seconds",
    "poll_interval_seconds",
    "deploy_concurrency",
    "key_idle_seconds",
    "quarantine_seconds",
    "allow_short_drain",
    "dry_run",
    "audit",
    "max_key_age_days",
    "migrate_to_role",
];

/// The validated, normalized execution input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionInput {
    pub iam_user_name: String,
    pub organization_id: String,
    /// `None`: the credentials are found from the key the IAM user has. Either way,
    /// every AWS static credentials entry holding that key is rotated.
    pub credentials_id: Option<String>,
    pub drain_seconds: u64,
    pub deploy_timeout_seconds: u64,
    pub poll_interval_seconds: u64,
    /// After the canary (the first cluster, alone), at most this many clusters
    /// redeploy at once.
    pub deploy_concurrency: u64,
    /// The old key must have been idle this long when the drain ends (0: not checked).
    pub key_idle_seconds: u64,
    /// The old key stays switched off this long before it is deleted (0: deleted at
    /// once, never switched off).
    pub quarantine_seconds: u64,
    pub allow_short_drain: bool,
    /// Changes nothing. Also true for an audit.
    pub dry_run: bool,
    /// A read-only check: fails with `KeyTooOld` when the key Qovery holds is older
    /// than `max_key_age_days`, and with `RotationUnfinished` when an ended run left a
    /// rotation for the next one.
    pub audit: bool,
    pub max_key_age_days: u64,
    /// `{"migrate_to_role": {"role_arn": …}}`: move Qovery from the key to this IAM
    /// role instead of rotating the key (a validated role ARN).
    pub migrate_to_role: Option<String>,
}

impl ExecutionInput {
    pub fn parse(value: &Value) -> Result<Self, RotationError> {
        let object = value.as_object().ok_or_else(|| {
            invalid(format!(
                "the execution input must be a JSON object with at least iam_user_name and organization_id; got {}",
                kind(value)
            ))
        })?;
        if object.contains_key("cluster_ids") {
            return Err(invalid(
                "field `cluster_ids` is no longer accepted: a rotation redeploys every running cluster that uses the \
                 key, because deleting the old key would break a running cluster left out. Remove the field"
                    .to_string(),
            ));
        }
        if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown field `{unknown}`; the allowed fields are {}",
                FIELDS.join(", ")
            )));
        }

        let iam_user_name = required_string(object, "iam_user_name")?;
        if !is_iam_user_name(&iam_user_name) {
            return Err(invalid(format!(
                "field `iam_user_name` must be an IAM user name (1 to 64 letters, digits or +=,.@_-); got {iam_user_name:?}"
            )));
        }
        let organization_id = uuid_field(object, "organization_id")?;
        let credentials_id = match object.get("credentials_id") {
            None | Some(Value::Null) => None,
            Some(_) => Some(uuid_field(object, "credentials_id")?),
        };

        let allow_short_drain = optional_bool(object, "allow_short_drain")?.unwrap_or(false);
        let audit = optional_bool(object, "audit")?.unwrap_or(false);
        // An audit never changes anything: it is a dry run that also judges the key's age.
        let dry_run = optional_bool(object, "dry_run")?.unwrap_or(false) || audit;
        let max_key_age_days =
            optional_u64(object, "max_key_age_days")?.unwrap_or(DEFAULT_MAX_KEY_AGE_DAYS);
        if !(1..=MAX_MAX_KEY_AGE_DAYS).contains(&max_key_age_days) {
            return Err(invalid(format!(
                "field `max_key_age_days` must be between 1 and {MAX_MAX_KEY_AGE_DAYS} (days); got {max_key_age_days}"
            )));
        }
        let key_idle_seconds =
            optional_u64(object, "key_idle_seconds")?.unwrap_or(DEFAULT_KEY_IDLE_SECONDS);
        if key_idle_seconds > MAX_DRAIN_SECONDS {
            return Err(invalid(format!(
                "field `key_idle_seconds` must be at most {MAX_DRAIN_SECONDS} (30 days); got {key_idle_seconds}"
            )));
        }
        let quarantine_seconds =
            optional_u64(object, "quarantine_seconds")?.unwrap_or(DEFAULT_QUARANTINE_SECONDS);
        if quarantine_seconds > MAX_QUARANTINE_SECONDS {
            return Err(invalid(format!(
                "field `quarantine_seconds` must be at most {MAX_QUARANTINE_SECONDS} (7 days); got {quarantine_seconds}"
            )));
        }
        let deploy_concurrency =
            optional_u64(object, "deploy_concurrency")?.unwrap_or(DEFAULT_DEPLOY_CONCURRENCY);
        if !(1..=MAX_DEPLOY_CONCURRENCY).contains(&deploy_concurrency) {
            return Err(invalid(format!(
                "field `deploy_concurrency` must be between 1 and {MAX_DEPLOY_CONCURRENCY} (clusters redeploying at \
                 once after the canary); got {deploy_concurrency}"
            )));
        }
        let drain_seconds = optional_u64(object, "drain_seconds")?.unwrap_or(DEFAULT_DRAIN_SECONDS);
        if drain_seconds > MAX_DRAIN_SECONDS {
            return Err(invalid(format!(
                "field `drain_seconds` must be at most {MAX_DRAIN_SECONDS} (30 days); got {drain_seconds}"
            )));
        }
        if drain_seconds < MIN_SAFE_DRAIN_SECONDS && !allow_short_drain {
            return Err(invalid(format!(
                "field `drain_seconds` is {drain_seconds}, below the safe minimum of {MIN_SAFE_DRAIN_SECONDS}: \
                 deployments already under way keep using the old key for up to two hours, and deleting it \
                 sooner can make them fail. Use at least {MIN_SAFE_DRAIN_SECONDS}, or set `allow_short_drain` \
                 to true if you know no deployment is running."
            )));
        }
        let deploy_timeout_seconds = optional_u64(object, "deploy_timeout_seconds")?
            .unwrap_or(DEFAULT_DEPLOY_TIMEOUT_SECONDS);
        if deploy_timeout_seconds == 0 || deploy_timeout_seconds > MAX_DEPLOY_TIMEOUT_SECONDS {
            return Err(invalid(format!(
                "field `deploy_timeout_seconds` must be greater than 0 and at most {MAX_DEPLOY_TIMEOUT_SECONDS}; got {deploy_timeout_seconds}"
            )));
        }
        let poll_interval_seconds =
            optional_u64(object, "poll_interval_seconds")?.unwrap_or(DEFAULT_POLL_INTERVAL_SECONDS);
        if !(MIN_POLL_INTERVAL_SECONDS..=MAX_POLL_INTERVAL_SECONDS).contains(&poll_interval_seconds)
        {
            return Err(invalid(format!(
                "field `poll_interval_seconds` must be between {MIN_POLL_INTERVAL_SECONDS} and {MAX_POLL_INTERVAL_SECONDS}; got {poll_interval_seconds}"
            )));
        }

        if key_idle_seconds > drain_seconds {
            return Err(invalid(format!(
                "field `key_idle_seconds` ({key_idle_seconds}) is longer than `drain_seconds` ({drain_seconds}): Qovery \
                 itself uses the old key until it takes the new one, so at the drain's end the key would always \
                 look used within the window and the rotation would stop with KeyStillInUse. Use at most \
                 `drain_seconds` (the default, 3600, is half the default drain), or 0 to turn the check off"
            )));
        }
        let migrate_to_role = match object.get("migrate_to_role") {
            None | Some(Value::Null) => None,
            Some(value) => Some(role_target(value)?),
        };
        if migrate_to_role.is_some() && audit {
            return Err(invalid(
                "fields `audit` and `migrate_to_role` exclude each other: an audit judges the key Qovery holds, a \
                 migration retires it. Plan the migration with `dry_run: true` instead"
                    .to_string(),
            ));
        }
        Ok(Self {
            iam_user_name,
            organization_id,
            credentials_id,
            drain_seconds,
            deploy_timeout_seconds,
            poll_interval_seconds,
            deploy_concurrency,
            key_idle_seconds,
            quarantine_seconds,
            allow_short_drain,
            dry_run,
            audit,
            max_key_age_days,
            migrate_to_role,
        })
    }

    /// The most history events redeploying `clusters` clusters can take: each may poll
    /// until its deadline, in waves of `deploy_concurrency` after the canary (waves run
    /// at the same time as each other's clusters, but every cluster's events count).
    /// Refused when over the budget, before anything changes.
    pub fn check_history_budget(&self, clusters: usize) -> Result<(), RotationError> {
        self.check_budget(clusters, 1, "")
    }

    /// The same for a migration, whose clusters may each deploy twice: on the role, and
    /// back on the key after a failure.
    pub fn check_migration_history_budget(&self, clusters: usize) -> Result<(), RotationError> {
        self.check_budget(
            clusters,
            2,
            ", each deployed up to twice (on the role, and back on the key after a failure)",
        )
    }

    fn check_budget(&self, clusters: usize, deploys: u64, why: &str) -> Result<(), RotationError> {
        let polls = self.deploy_timeout_seconds / self.poll_interval_seconds + 2;
        let waves = crate::clusters::wave_count(clusters, self.deploy_concurrency) as u64;
        let worst = deploys * clusters as u64 * (polls * EVENTS_PER_POLL + EVENTS_PER_CLUSTER)
            + deploys * waves * EVENTS_PER_WAVE;
        if worst <= HISTORY_EVENT_BUDGET {
            return Ok(());
        }
        Err(invalid(format!(
            "with {clusters} cluster(s){why}, deploy_timeout_seconds {} and poll_interval_seconds {} allow up to \
             {polls} status polls per deploy, about {worst} execution history events, and Step Functions fails an \
             execution past 25,000. Raise `poll_interval_seconds` or lower `deploy_timeout_seconds`",
            self.deploy_timeout_seconds, self.poll_interval_seconds
        )))
    }
}

/// `migrate_to_role`: exactly `{"role_arn": "<role ARN>"}`.
fn role_target(value: &Value) -> Result<String, RotationError> {
    let shape = r#"{"role_arn": "arn:aws:iam::<account id>:role/<name>"}"#;
    let object = value.as_object().ok_or_else(|| {
        invalid(format!(
            "field `migrate_to_role` must be an object {shape}; got {}",
            kind(value)
        ))
    })?;
    if let Some(unknown) = object.keys().find(|k| k.as_str() != "role_arn") {
        return Err(invalid(format!(
            "field `migrate_to_role` has unknown field `{unknown}`; it takes only `role_arn`: {shape}"
        )));
    }
    let arn = object
        .get("role_arn")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            invalid(format!(
                "field `migrate_to_role.role_arn` must be a string: {shape}"
            ))
        })?;
    crate::iam_role::parse_role_arn(arn)
        .map_err(|why| invalid(format!("field `migrate_to_role.role_arn`: {why}")))?;
    Ok(arn.to_string())
}

fn invalid(message: String) -> RotationError {
    RotationError::InvalidInput(format!(
        "Invalid execution input: {message}. Nothing was changed."
    ))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_string(object: &Map<String, Value>, field: &str) -> Result<String, RotationError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(invalid(format!("field `{field}` is required"))),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(invalid(format!(
            "field `{field}` must be a string; got {}",
            kind(other)
        ))),
    }
}

fn uuid_field(object: &Map<String, Value>, field: &str) -> Result<String, RotationError> {
    let value = required_string(object, field)?;
    normalize_uuid(&value).ok_or_else(|| {
        invalid(format!(
            "field `{field}` must be a UUID like 3fa85f64-5717-4562-b3fc-2c963f66afa6; got {value:?}"
        ))
    })
}

fn optional_bool(object: &Map<String, Value>, field: &str) -> Result<Option<bool>, RotationError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid(format!(
            "field `{field}` must be true or false; got {}",
            kind(other)
        ))),
    }
}

fn optional_u64(object: &Map<String, Value>, field: &str) -> Result<Option<u64>, RotationError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            invalid(format!(
                "field `{field}` must be a whole number of seconds, 0 or more; got {n}"
            ))
        }),
        Some(other) => Err(invalid(format!(
            "field `{field}` must be a whole number of seconds; got {}",
            kind(other)
        ))),
    }
}

/// Lower-case canonical form of a hyphenated UUID, or `None`.
pub fn normalize_uuid(text: &str) -> Option<String> {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    let well_formed = groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    well_formed.then(|| text.to_ascii_lowercase())
}

/// IAM's user-name rule: `[\w+=,.@-]{1,64}`.
pub fn is_iam_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORG: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    const CREDS: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

    fn minimal() -> Value {
        json!({"iam_user_name": "qovery", "organization_id": ORG})
    }

    fn error_of(value: Value) -> String {
        match ExecutionInput::parse(&value) {
            Err(RotationError::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn minimal_input_gets_the_defaults() {
        let input = ExecutionInput::parse(&minimal()).unwrap();
        assert_eq!(input.drain_seconds, 7200);
        assert_eq!(input.deploy_timeout_seconds, 7200);
        assert_eq!(input.poll_interval_seconds, 60);
        assert_eq!(input.credentials_id, None);
        assert_eq!(input.deploy_concurrency, 1);
        assert_eq!(
            (input.key_idle_seconds, input.quarantine_seconds),
            (3600, 3600)
        );
        assert_eq!(input.max_key_age_days, 45);
        assert!(!input.dry_run && !input.allow_short_drain && !input.audit);
    }

    #[test]
    fn an_audit_is_always_a_dry_run() {
        let mut value = minimal();
        value["audit"] = json!(true);
        value["dry_run"] = json!(false);
        let input = ExecutionInput::parse(&value).unwrap();
        assert!(input.audit && input.dry_run);
    }

    #[test]
    fn a_migration_names_one_role_and_is_never_an_audit() {
        let arn = "arn:aws:iam::123456789012:role/qovery/qovery-engine";
        let mut value = minimal();
        value["migrate_to_role"] = json!({"role_arn": arn});
        value["dry_run"] = json!(true);
        let input = ExecutionInput::parse(&value).unwrap();
        assert_eq!(input.migrate_to_role.as_deref(), Some(arn));
        assert_eq!(
            ExecutionInput::parse(&minimal()).unwrap().migrate_to_role,
            None
        );

        let refused = |change: &dyn Fn(&mut Value), says: &str| {
            let mut value = minimal();
            value["migrate_to_role"] = json!({"role_arn": arn});
            value["dry_run"] = json!(true);
            change(&mut value);
            match ExecutionInput::parse(&value) {
                Err(RotationError::InvalidInput(m)) => {
                    assert!(
                        m.contains(says) && m.ends_with("Nothing was changed."),
                        "{m}"
                    )
                }
                other => panic!("{says}: {other:?}"),
            }
        };
        refused(
            &|v| v["audit"] = json!(true),
            "`audit` and `migrate_to_role` exclude each other",
        );
        refused(&|v| v["migrate_to_role"] = json!(arn), "must be an object");
        refused(
            &|v| v["migrate_to_role"] = json!({"role_arn": arn, "external_id": "x"}),
            "unknown field `external_id`",
        );
        refused(
            &|v| v["migrate_to_role"] = json!({}),
            "`migrate_to_role.role_arn` must be a string",
        );
        refused(
            &|v| {
                v["migrate_to_role"] = json!({"role_arn": "arn:aws:iam::123456789012:user/qovery"})
            },
            "field `migrate_to_role.role_arn`: role ARN",
        );
    }

    #[test]
    fn uuids_are_normalized() {
        let mut value = minimal();
        value["organization_id"] = json!(ORG.to_uppercase());
        value["credentials_id"] = json!(CREDS.to_uppercase());
        let input = ExecutionInput::parse(&value).unwrap();
        assert_eq!(input.organization_id, ORG);
        assert_eq!(input.credentials_id.as_deref(), Some(CREDS));
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            ("drain_seconds", json!(60), "two hours"),
            ("unexpected", json!(1), "unknown field `unexpected`"),
            (
                "organization_id",
                json!("not-a-uuid"),
                "field `organization_id` must be a UUID",
            ),
            (
                "credentials_id",
                json!(42),
                "field `credentials_id` must be a string",
            ),
            (
                "cluster_ids",
                json!([CREDS]),
                "`cluster_ids` is no longer accepted",
            ),
            (
                "poll_interval_seconds",
                json!(5),
                "field `poll_interval_seconds`",
            ),
            (
                "deploy_timeout_seconds",
                json!(0),
                "field `deploy_timeout_seconds`",
            ),
            ("drain_seconds", json!(-1), "field `drain_seconds`"),
            ("drain_seconds", json!("7200"), "field `drain_seconds`"),
            ("dry_run", json!("yes"), "field `dry_run`"),
            ("audit", json!(1), "field `audit`"),
            ("deploy_concurrency", json!(0), "field `deploy_concurrency`"),
            (
                "deploy_concurrency",
                json!(11),
                "field `deploy_concurrency`",
            ),
            ("max_key_age_days", json!(0), "field `max_key_age_days`"),
            (
                "key_idle_seconds",
                json!(2592001),
                "field `key_idle_seconds`",
            ),
            (
                "quarantine_seconds",
                json!(604801),
                "field `quarantine_seconds`",
            ),
            (
                "quarantine_seconds",
                json!(-1),
                "field `quarantine_seconds`",
            ),
            ("max_key_age_days", json!(366), "field `max_key_age_days`"),
            ("iam_user_name", json!("bad name!"), "field `iam_user_name`"),
        ];
        for (field, bad, expected) in cases {
            let mut value = minimal();
            value[field] = bad;
            let message = error_of(value);
            assert!(message.contains(expected), "{field}: {message}");
            assert!(message.contains("Nothing was changed"), "{message}");
        }
        assert!(error_of(json!({"organization_id": ORG})).contains("`iam_user_name` is required"));
        assert!(error_of(json!([1])).contains("JSON object"));
    }

    #[test]
    fn the_worst_case_history_must_fit() {
        let input = ExecutionInput::parse(&minimal()).unwrap();
        // The defaults (2 h, every 60 s) leave room for a dozen clusters.
        assert!(input.check_history_budget(12).is_ok());
        let message = match input.check_history_budget(40) {
            Err(RotationError::InvalidInput(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(
            message.contains("poll_interval_seconds") && message.contains("25,000"),
            "{message}"
        );
        let mut value = minimal();
        value["deploy_timeout_seconds"] = json!(86400);
        value["poll_interval_seconds"] = json!(10);
        assert!(ExecutionInput::parse(&value)
            .unwrap()
            .check_history_budget(1)
            .is_err());
    }

    /// template.yaml's bounds (PollIntervalSeconds 60..3600, DeployTimeoutSeconds up to
    /// 86400) always leave room for one cluster; docs/parameters.md's table gives the rest.
    #[test]
    fn the_template_bounds_always_fit_one_cluster() {
        let with = |timeout: u64, interval: u64| {
            let mut value = minimal();
            value["deploy_timeout_seconds"] = json!(timeout);
            value["poll_interval_seconds"] = json!(interval);
            ExecutionInput::parse(&value).unwrap()
        };
        assert!(with(86400, 60).check_history_budget(1).is_ok());
        assert!(with(86400, 60).check_history_budget(2).is_err());
        assert!(with(7200, 60).check_history_budget(17).is_ok());
        assert!(with(7200, 60).check_history_budget(18).is_err());
        assert!(with(1800, 600).check_history_budget(210).is_ok());
        assert!(with(1800, 600).check_history_budget(211).is_err());
        // A migration's cluster may deploy twice: half as many fit.
        assert!(with(7200, 60).check_migration_history_budget(8).is_ok());
        let message = match with(7200, 60).check_migration_history_budget(9) {
            Err(RotationError::InvalidInput(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(
            message.contains("with 9 cluster(s), each deployed up to twice"),
            "{message}"
        );
    }

    /// Waves cost events of their own: more clusters at once leaves room for more.
    #[test]
    fn the_budget_counts_each_wave() {
        let mut value = minimal();
        value["deploy_timeout_seconds"] = json!(1800);
        value["poll_interval_seconds"] = json!(600);
        let one = ExecutionInput::parse(&value).unwrap();
        value["deploy_concurrency"] = json!(10);
        let ten = ExecutionInput::parse(&value).unwrap();
        assert!(one.check_history_budget(250).is_err());
        assert!(ten.check_history_budget(250).is_ok());
    }

    #[test]
    fn the_idle_window_fits_in_the_drain() {
        let mut value = minimal();
        value["drain_seconds"] = json!(60);
        value["allow_short_drain"] = json!(true);
        let message = error_of(value.clone());
        assert!(
            message.contains("`key_idle_seconds` (3600) is longer than `drain_seconds` (60)"),
            "{message}"
        );
        value["key_idle_seconds"] = json!(60);
        assert_eq!(ExecutionInput::parse(&value).unwrap().key_idle_seconds, 60);
        value["key_idle_seconds"] = json!(0);
        assert!(ExecutionInput::parse(&value).is_ok());
    }

    #[test]
    fn short_drain_needs_the_flag() {
        let mut value = minimal();
        value["drain_seconds"] = json!(60);
        value["allow_short_drain"] = json!(true);
        value["key_idle_seconds"] = json!(60);
        assert_eq!(ExecutionInput::parse(&value).unwrap().drain_seconds, 60);
    }
}
