//! What a new run does about the record an ended run left: rotate from the start,
//! undo the new key no holder took, or finish the hand-over. Decided from the record
//! and from what IAM and Qovery show now; anything the record cannot explain is
//! refused, and nothing changes.

use std::collections::BTreeSet;

use crate::ledger::{LedgerPhase, Record};
use crate::qovery::holders::{self, Holder};
use crate::state::{describe_keys, KeySummary, Recovery};

/// The decision, and why, in words for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub recovery: Recovery,
    pub why: String,
}

/// Decides what to do about `record`, left by an ended execution. `Err` says what
/// the record cannot explain.
pub fn decide(
    record: &Record,
    organization_id: &str,
    keys: &[KeySummary],
    all: &[Holder],
) -> Result<Decision, String> {
    let run = format!("the rotation started by execution {}", record.started_by());
    let old = record.old_access_key_id.as_str();
    // Its holders live in another organization: this run cannot see them.
    if !record.organization_id.eq_ignore_ascii_case(organization_id) {
        return Err(format!(
            "{run} rotated IAM user {}'s key for Qovery organization {}, not {organization_id}: finish or undo it \
             from a run for that organization",
            record.iam_user_name, record.organization_id
        ));
    }
    let ids: BTreeSet<&str> = keys.iter().map(|k| k.access_key_id.as_str()).collect();
    let unreadable = holders::unreadable(all);
    if !unreadable.is_empty() {
        return Err(format!(
            "{run} ended, and Qovery does not show which key these hold: {}; the record cannot tell whether they \
             need the new key",
            holders::describe_all(unreadable)
        ));
    }
    let Some(new) = record.new_access_key_id.as_deref() else {
        if record.phase == LedgerPhase::CreatingKey && keys.len() > 1 {
            return Err(format!(
                "{run} was creating a key when it ended, and IAM user {} now has {}: the key that is not {old} may \
                 be the one it created (its answer lost) or someone else's, and the record cannot prove which",
                record.iam_user_name,
                describe_keys(keys)
            ));
        }
        return Ok(Decision {
            recovery: Recovery::Fresh,
            why: format!("{run} ended before it created a key: nothing to finish or undo"),
        });
    };

    let third: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|k| *k != old && *k != new)
        .collect();
    if !third.is_empty() {
        return Err(format!(
            "{run} ended with keys {old} (old) and {new} (new), but IAM user {} now has {}: {} is neither",
            record.iam_user_name,
            describe_keys(keys),
            third.join(", ")
        ));
    }
    let strays: Vec<&Holder> = record
        .holders
        .iter()
        .filter_map(|r| all.iter().find(|h| h.is(r)))
        .filter(|h| !h.holds(old) && !h.holds(new))
        .collect();
    if !strays.is_empty() {
        return Err(format!(
            "{run} ended, and holders it recorded now hold neither {old} nor {new}: {}",
            holders::describe_all(strays)
        ));
    }
    let holding_new = holders::holding(all, new);
    match (ids.contains(new), holding_new.is_empty(), ids.contains(old)) {
        (true, true, true) => Ok(Decision {
            recovery: Recovery::Undo,
            why: format!(
                "{run} ended after it created key {new}, which no holder took: delete it and its secret, then rotate \
                 {old} from the start"
            ),
        }),
        (true, false, _) if !keys.iter().any(|k| k.access_key_id == new && k.status == "Active") => Err(format!(
            "{run} gave key {new} to {}, but that key is not Active: switch it on first (`aws iam update-access-key \
             --user-name {} --access-key-id {new} --status Active`)",
            holders::describe_all(holding_new),
            record.iam_user_name
        )),
        (true, false, _) => Ok(Decision {
            recovery: Recovery::Finish,
            why: format!(
                "{run} ended after it gave key {new} to {}: give it to the holders still on {old}, redeploy the \
                 clusters that did not deploy since, drain from the hand-over, and delete {old}",
                holders::describe_all(holding_new)
            ),
        }),
        (false, true, true) => Ok(Decision {
            recovery: Recovery::Undo,
            why: format!(
                "{run} ended, and its key {new} is already gone: remove what is left of it (its secret), then rotate \
                 {old} from the start"
            ),
        }),
        (false, false, _) => Err(format!(
            "{run} ended, and these hold its key {new}, which IAM user {} no longer has: {}",
            record.iam_user_name,
            holders::describe_all(holding_new)
        )),
        (true, true, false) | (false, true, false) => Err(format!(
            "{run} ended, and IAM user {} has {} while no holder holds the new key {new} and the old key {old} is \
             gone",
            record.iam_user_name,
            describe_keys(keys)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(new: Option<&str>) -> Record {
        Record {
            iam_user_name: "qovery".into(),
            execution_id: "arn:aws:states:us-east-1:1:execution:m:one".into(),
            organization_id: "3fa85f64-5717-4562-b3fc-2c963f66afa6".into(),
            phase: LedgerPhase::KeyCreated,
            old_access_key_id: "AKIAOLDKEY0000000001".into(),
            new_access_key_id: new.map(str::to_string),
            key_secret_id: None,
            new_key_version_id: None,
            holders: Vec::new(),
            clusters: Vec::new(),
            handover_at: None,
            migration: None,
            took_over_from: None,
            updated_at: "2026-11-29T00:00:00Z".into(),
        }
    }

    fn key(id: &str, status: &str) -> KeySummary {
        KeySummary {
            access_key_id: id.into(),
            status: status.into(),
            create_date: "2026-11-29T00:00:00Z".into(),
        }
    }

    const ORG: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";

    #[test]
    fn a_record_of_another_organization_is_never_finished_or_undone_here() {
        let keys = [
            key("AKIAOLDKEY0000000001", "Active"),
            key("AKIANEWKEY0000000001", "Active"),
        ];
        let ended = record(Some("AKIANEWKEY0000000001"));
        assert_eq!(
            decide(&ended, ORG, &keys, &[]).unwrap().recovery,
            Recovery::Undo
        );
        let elsewhere = decide(&ended, "11111111-2222-4333-8444-555555555555", &keys, &[]);
        assert!(elsewhere.unwrap_err().contains("not 11111111"));
    }

    #[test]
    fn a_key_that_may_be_the_ended_runs_lost_creation_is_unexplained() {
        let mut creating = record(None);
        creating.phase = LedgerPhase::CreatingKey;
        let keys = [
            key("AKIAOLDKEY0000000001", "Active"),
            key("AKIAWHOSEKEY00000001", "Active"),
        ];
        let why = decide(&creating, ORG, &keys, &[]).unwrap_err();
        assert!(why.contains("cannot prove"), "{why}");
        let third = decide(&record(Some("AKIANEWKEY0000000001")), ORG, &keys, &[]).unwrap_err();
        assert!(third.contains("AKIAWHOSEKEY00000001 is neither"), "{third}");
    }

    #[test]
    fn a_run_that_ended_while_creating_with_no_second_key_created_nothing() {
        let mut creating = record(None);
        creating.phase = LedgerPhase::CreatingKey;
        let only_old = [key("AKIAOLDKEY0000000001", "Active")];
        let decision = decide(&creating, ORG, &only_old, &[]).unwrap();
        assert_eq!(decision.recovery, Recovery::Fresh);
        // Before the creation started, a second key is not the ended run's to explain:
        // the new run's own checks refuse it.
        let mut planned = record(None);
        planned.phase = LedgerPhase::Planned;
        let keys = [
            key("AKIAOLDKEY0000000001", "Active"),
            key("AKIAWHOSEKEY00000001", "Active"),
        ];
        assert_eq!(
            decide(&planned, ORG, &keys, &[]).unwrap().recovery,
            Recovery::Fresh
        );
    }
}
