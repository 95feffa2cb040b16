//! The invocation's deadline. Lambda kills a function at its timeout, even in the
//! middle of a call: a PUT to Qovery could then apply with nobody left to see it. So a
//! step checks, before each outside call, that the call can finish in the time left,
//! and otherwise fails with a retryable error (`AwsUnavailable` or `QoveryUnavailable`)
//! without starting it. Every step is idempotent, so the state machine's retry
//! carries on where this one stopped.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::aws::AwsError;

/// The longest one AWS SDK call may take: the SDK's operation timeout (see
/// `config::aws_timeouts`) plus a margin.
pub const AWS_CALL_BUDGET: Duration = Duration::from_secs(22);
/// The longest one Qovery request may take: the client's request timeout
/// (`qovery::client`, 20 s) plus a margin.
pub const QOVERY_CALL_BUDGET: Duration = Duration::from_secs(22);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `future` (one invocation) with `deadline` in force.
pub async fn with_deadline<F: Future>(deadline: Instant, future: F) -> F::Output {
    DEADLINE.scope(deadline, future).await
}

/// The `Instant` of a deadline Lambda gives in milliseconds since the epoch.
/// A runtime that sends no deadline (0) sets none. `cargo lambda watch`, which the
/// local stack uses, sends the timeout itself (600000) rather than a point in time:
/// any value before 2001 is taken as such a duration from now.
pub fn from_epoch_millis(deadline_ms: u64) -> Instant {
    const YEAR_2001_MS: u64 = 978_307_200_000;
    if deadline_ms == 0 {
        return Instant::now() + Duration::from_secs(24 * 3600);
    }
    if deadline_ms < YEAR_2001_MS {
        return Instant::now() + Duration::from_millis(deadline_ms);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// The time left in this invocation; `None` outside Lambda (tests, tools).
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Whether `needed` still fits before the deadline.
pub fn fits(needed: Duration) -> bool {
    remaining().is_none_or(|left| left >= needed)
}

/// Why a call that may take `budget` must not start now, or `None` if it fits.
pub fn shortfall(budget: Duration) -> Option<String> {
    (!fits(budget)).then(|| {
        format!(
            "{} ms are left in this Lambda invocation and the call may take {} s",
            remaining().unwrap_or_default().as_millis(),
            budget.as_secs()
        )
    })
}

/// `Ok` if an AWS call named `operation` can still finish in this invocation.
pub fn ensure_time_for(operation: &'static str) -> Result<(), AwsError> {
    match shortfall(AWS_CALL_BUDGET) {
        None => Ok(()),
        Some(why) => Err(AwsError {
            operation,
            code: Some("InvocationDeadline".to_string()),
            message: format!("not started: {why}"),
            transient: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_cannot_finish_is_not_started() {
        assert!(
            ensure_time_for("iam:ListAccessKeys").is_ok(),
            "no deadline outside Lambda"
        );
        let soon = Instant::now() + Duration::from_secs(5);
        let error = with_deadline(soon, async { ensure_time_for("iam:DeleteAccessKey") })
            .await
            .unwrap_err();
        assert!(error.transient);
        assert_eq!(error.into_rotation_error("").name(), "AwsUnavailable");
        let later = Instant::now() + Duration::from_secs(60);
        assert!(
            with_deadline(later, async { ensure_time_for("iam:DeleteAccessKey") })
                .await
                .is_ok()
        );
    }

    #[test]
    fn lambda_deadlines_are_epoch_millis_and_the_emulator_sends_a_duration() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = |d: Instant| d.saturating_duration_since(Instant::now()).as_secs();
        assert!((58..=60).contains(&left(from_epoch_millis(now_ms + 60_000))));
        assert_eq!(left(from_epoch_millis(now_ms - 1_000)), 0);
        assert!((598..=600).contains(&left(from_epoch_millis(600_000))));
        assert!(
            left(from_epoch_millis(0)) > 3600,
            "no deadline: none enforced"
        );
    }
}
