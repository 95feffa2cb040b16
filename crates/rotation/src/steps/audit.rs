//! The daily audit: preflight's read-only checks, plus a verdict on what a person should
//! look at. It fails, so that the failure notification fires, when
//! - the key Qovery holds is older than `max_key_age_days` (`KeyTooOld`): the schedule
//!   is off, or rotations keep failing;
//! - an ended run left a rotation half done (`RotationUnfinished`): the next run would
//!   finish or undo it, but nobody may start one;
//! - anything preflight refuses (a second key, a holder it cannot change, an unexplained
//!   record): the same errors as a dry run.
//!
//! It never changes anything: no lock, no key, no PUT.

use time::OffsetDateTime;

use crate::error::RotationError;
use crate::input::ExecutionInput;
use crate::ledger::Record;
use crate::state::{KeySummary, Recovery};
use crate::timefmt;

const SECONDS_PER_DAY: i64 = 86_400;

/// Whole days since `key_id` was created, from IAM's CreateDate.
pub fn key_age_days(keys: &[KeySummary], key_id: &str, now: OffsetDateTime) -> Option<u64> {
    let key = keys.iter().find(|k| k.access_key_id == key_id)?;
    let created = timefmt::parse(&key.create_date)?;
    Some(((now - created).whole_seconds().max(0) / SECONDS_PER_DAY) as u64)
}

/// The audit's verdict on a state preflight found rotatable: the report's words, or
/// the error a person must read.
pub fn judge(
    input: &ExecutionInput,
    keys: &[KeySummary],
    key_id: &str,
    recovery: Recovery,
    previous: Option<&Record>,
    now: OffsetDateTime,
) -> Result<String, RotationError> {
    let user = &input.iam_user_name;
    let live = keys
        .iter()
        .map(|k| {
            format!(
                "{} ({}, created {})",
                k.access_key_id, k.status, k.create_date
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if let (Recovery::Finish | Recovery::Undo, Some(record)) = (recovery, previous) {
        let next = if recovery == Recovery::Finish {
            "finish it (give the new key to the holders still on the old one, redeploy, drain, delete the old key)"
        } else {
            "undo it (delete the key it created, which no holder took) and rotate afresh"
        };
        return Err(RotationError::RotationUnfinished(format!(
            "Audit of IAM user {user}: the last rotation, {}, ended without finishing. Qovery holds a working key, \
             but the user's keys are {live}. The next run would {next}. Read why that run failed (its failure \
             notification, or the execution in the Step Functions console), fix the cause, and start a rotation \
             (or let the schedule start one). The audit changed nothing.",
            record.describe()
        )));
    }
    let created = keys
        .iter()
        .find(|k| k.access_key_id == key_id)
        .map(|k| k.create_date.clone())
        .unwrap_or_default();
    let Some(created_at) = timefmt::parse(&created) else {
        return Err(RotationError::AwsRejected(format!(
            "Audit of IAM user {user}: the age of the key {key_id} that Qovery holds cannot be told: IAM gives it \
             no readable creation date ({created:?}). The user's keys: {live}. The audit changed nothing."
        )));
    };
    let age = (now - created_at).whole_seconds().max(0) / SECONDS_PER_DAY;
    let limit = input.max_key_age_days;
    let too_old = now - created_at > time::Duration::days(limit as i64);
    if too_old {
        return Err(RotationError::KeyTooOld(format!(
            "Audit of IAM user {user}: the key {key_id} that Qovery holds was created {created}, {age} day(s) ago, \
             more than max_key_age_days ({limit}). Scheduled rotations should have replaced it: check that the \
             stack's rotation schedule is enabled (ScheduleEnabled) and read the failures of the last rotations \
             in the Step Functions console, then start a rotation (a dry run first shows what it would do). The \
             user's keys: {live}. The audit changed nothing."
        )));
    }
    Ok(format!(
        "Audit passed: the key {key_id} that Qovery holds is {age} day(s) old (created {created}), within \
         max_key_age_days ({limit}), and a rotation could start now. Nothing was changed."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn input(max_days: u64) -> ExecutionInput {
        ExecutionInput::parse(&json!({
            "iam_user_name": "qovery",
            "organization_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "audit": true,
            "max_key_age_days": max_days,
        }))
        .unwrap()
    }

    fn key(created: &str) -> Vec<KeySummary> {
        vec![KeySummary {
            access_key_id: "AKIAOLD".into(),
            status: "Active".into(),
            create_date: created.into(),
        }]
    }

    const NOW: OffsetDateTime = datetime!(2026-11-30 08:00:00 UTC);

    #[test]
    fn a_key_older_than_the_limit_is_too_old_and_its_age_is_stated() {
        let keys = key("2026-10-15T07:59:59Z"); // 46 days and a second
        let error = judge(&input(45), &keys, "AKIAOLD", Recovery::Fresh, None, NOW).unwrap_err();
        assert_eq!(error.name(), "KeyTooOld");
        assert!(
            error.message().contains("46 day(s) ago"),
            "{}",
            error.message()
        );
        assert!(error.message().contains("ScheduleEnabled"));
        assert!(error.message().contains("changed nothing"));
    }

    #[test]
    fn a_key_exactly_at_the_limit_passes_one_second_more_does_not() {
        let at_limit = key("2026-10-16T08:00:00Z"); // 45 days exactly
        let verdict = judge(&input(45), &at_limit, "AKIAOLD", Recovery::Fresh, None, NOW).unwrap();
        assert!(verdict.contains("45 day(s) old"), "{verdict}");
        let over = key("2026-10-16T07:59:59Z");
        assert!(judge(&input(45), &over, "AKIAOLD", Recovery::Fresh, None, NOW).is_err());
    }

    #[test]
    fn an_unfinished_rotation_needs_a_person_whatever_the_key_age() {
        let record: Record = serde_json::from_value(json!({
            "iam_user_name": "qovery",
            "execution_id": "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
            "organization_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "phase": "handing_over",
            "old_access_key_id": "AKIAOLD",
            "new_access_key_id": "AKIANEW",
            "updated_at": "2026-11-29T09:00:00Z",
        }))
        .unwrap();
        let keys = key("2026-11-29T08:00:00Z");
        for recovery in [Recovery::Finish, Recovery::Undo] {
            let error =
                judge(&input(45), &keys, "AKIAOLD", recovery, Some(&record), NOW).unwrap_err();
            assert_eq!(error.name(), "RotationUnfinished");
            assert!(error.message().contains("run-1"), "{}", error.message());
        }
        assert!(judge(
            &input(45),
            &keys,
            "AKIAOLD",
            Recovery::Fresh,
            Some(&record),
            NOW
        )
        .is_ok());
    }
}
