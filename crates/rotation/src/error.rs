//! The error names Step Functions sees. They are the workflow's interface: the ASL's
//! `Retry` and `Catch` match them, and docs/errors.md tells the operator what to do for
//! each one. Never rename one without changing `statemachine/rotation.asl.json`.

use lambda_runtime::Diagnostic;

/// Every failure a step can report. The message says what happened, which keys are
/// live, and what the operator should do next. It never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    /// The execution input or a step's input is malformed. Nothing was changed.
    #[error("{0}")]
    InvalidInput(String),
    /// The world is not in the state a safe rotation needs (keys, credentials, clusters).
    #[error("{0}")]
    PreconditionFailed(String),
    /// Another running execution already rotates the same IAM user.
    #[error("{0}")]
    RotationInProgress(String),
    /// Qovery rejected the API token (401 or 403).
    #[error("{0}")]
    QoveryUnauthorized(String),
    /// Qovery failed in a way worth retrying: 5xx, 429 or a network error.
    #[error("{0}")]
    QoveryUnavailable(String),
    /// Qovery refused the request with another 4xx, or answered something unexpected.
    #[error("{0}")]
    QoveryRejected(String),
    /// STS does not accept the new key yet. IAM is eventually consistent; retryable.
    #[error("{0}")]
    NewKeyNotValid(String),
    /// A cluster ended in a failure state after the redeploy.
    #[error("{0}")]
    ClusterDeployFailed(String),
    /// A cluster did not reach DEPLOYED before the deadline.
    #[error("{0}")]
    ClusterDeployTimedOut(String),
    /// A delete was refused because it could break Qovery or the rotation.
    #[error("{0}")]
    UnsafeDelete(String),
    /// An AWS API failed in a way worth retrying: throttling, 5xx, timeout, network.
    #[error("{0}")]
    AwsUnavailable(String),
    /// An AWS API refused the call (access denied, missing resource, bad request).
    #[error("{0}")]
    AwsRejected(String),
    /// The hand-over had started (a holder was sent the new key, or already holds it)
    /// and could not finish. Never rolled back: the state machine reconciles and goes
    /// forward, and both keys stay active until every holder has the new one.
    #[error("{0}")]
    HandOverIncomplete(String),
    /// The audit: the key Qovery holds is older than `max_key_age_days`. Nothing changed.
    #[error("{0}")]
    KeyTooOld(String),
    /// The audit: an ended run left a rotation half done (the next run finishes or
    /// undoes it). Nothing changed.
    #[error("{0}")]
    RotationUnfinished(String),
    /// Something outside Qovery still uses the old key: IAM saw it used within
    /// `key_idle_seconds`, or a cluster failed while it was switched off. Both keys are
    /// active; nothing was deleted.
    #[error("{0}")]
    KeyStillInUse(String),
    /// A migration: a cluster could not deploy on the role (INVALID_CREDENTIALS: Qovery
    /// could not assume it; or another failure). The migration is undone: every cluster
    /// back on its static credentials, whose key was never touched.
    #[error("{0}")]
    RoleNotProven(String),
    /// A migration's undo: a cluster moved back to its static credentials failed its
    /// redeploy there. The lock and the record stay; the static key is untouched.
    #[error("{0}")]
    FallbackFailed(String),
}

impl RotationError {
    /// Every name `error_type` can take. The ASL may match only these (and the
    /// platform's own `States.*` and `Lambda.*` names).
    pub const NAMES: [&'static str; 18] = [
        "InvalidInput",
        "PreconditionFailed",
        "RotationInProgress",
        "QoveryUnauthorized",
        "QoveryUnavailable",
        "QoveryRejected",
        "NewKeyNotValid",
        "ClusterDeployFailed",
        "ClusterDeployTimedOut",
        "UnsafeDelete",
        "AwsUnavailable",
        "AwsRejected",
        "HandOverIncomplete",
        "KeyTooOld",
        "RotationUnfinished",
        "KeyStillInUse",
        "RoleNotProven",
        "FallbackFailed",
    ];

    /// The stable name Step Functions matches in `ErrorEquals`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::PreconditionFailed(_) => "PreconditionFailed",
            Self::RotationInProgress(_) => "RotationInProgress",
            Self::QoveryUnauthorized(_) => "QoveryUnauthorized",
            Self::QoveryUnavailable(_) => "QoveryUnavailable",
            Self::QoveryRejected(_) => "QoveryRejected",
            Self::NewKeyNotValid(_) => "NewKeyNotValid",
            Self::ClusterDeployFailed(_) => "ClusterDeployFailed",
            Self::ClusterDeployTimedOut(_) => "ClusterDeployTimedOut",
            Self::UnsafeDelete(_) => "UnsafeDelete",
            Self::AwsUnavailable(_) => "AwsUnavailable",
            Self::AwsRejected(_) => "AwsRejected",
            Self::HandOverIncomplete(_) => "HandOverIncomplete",
            Self::KeyTooOld(_) => "KeyTooOld",
            Self::RotationUnfinished(_) => "RotationUnfinished",
            Self::KeyStillInUse(_) => "KeyStillInUse",
            Self::RoleNotProven(_) => "RoleNotProven",
            Self::FallbackFailed(_) => "FallbackFailed",
        }
    }

    /// The message, whatever the variant.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(m)
            | Self::PreconditionFailed(m)
            | Self::RotationInProgress(m)
            | Self::QoveryUnauthorized(m)
            | Self::QoveryUnavailable(m)
            | Self::QoveryRejected(m)
            | Self::NewKeyNotValid(m)
            | Self::ClusterDeployFailed(m)
            | Self::ClusterDeployTimedOut(m)
            | Self::UnsafeDelete(m)
            | Self::AwsUnavailable(m)
            | Self::AwsRejected(m)
            | Self::HandOverIncomplete(m)
            | Self::KeyTooOld(m)
            | Self::RotationUnfinished(m)
            | Self::KeyStillInUse(m)
            | Self::RoleNotProven(m)
            | Self::FallbackFailed(m) => m,
        }
    }

    /// The same error with `context` appended to its message: typically which keys are
    /// live and what to do next, which only the calling step knows.
    pub fn with_context(self, context: &str) -> Self {
        if context.is_empty() {
            return self;
        }
        let message = format!("{} {}", self.message(), context);
        match self {
            Self::InvalidInput(_) => Self::InvalidInput(message),
            Self::PreconditionFailed(_) => Self::PreconditionFailed(message),
            Self::RotationInProgress(_) => Self::RotationInProgress(message),
            Self::QoveryUnauthorized(_) => Self::QoveryUnauthorized(message),
            Self::QoveryUnavailable(_) => Self::QoveryUnavailable(message),
            Self::QoveryRejected(_) => Self::QoveryRejected(message),
            Self::NewKeyNotValid(_) => Self::NewKeyNotValid(message),
            Self::ClusterDeployFailed(_) => Self::ClusterDeployFailed(message),
            Self::ClusterDeployTimedOut(_) => Self::ClusterDeployTimedOut(message),
            Self::UnsafeDelete(_) => Self::UnsafeDelete(message),
            Self::AwsUnavailable(_) => Self::AwsUnavailable(message),
            Self::AwsRejected(_) => Self::AwsRejected(message),
            Self::HandOverIncomplete(_) => Self::HandOverIncomplete(message),
            Self::KeyTooOld(_) => Self::KeyTooOld(message),
            Self::RotationUnfinished(_) => Self::RotationUnfinished(message),
            Self::KeyStillInUse(_) => Self::KeyStillInUse(message),
            Self::RoleNotProven(_) => Self::RoleNotProven(message),
            Self::FallbackFailed(_) => Self::FallbackFailed(message),
        }
    }
}

impl From<RotationError> for Diagnostic {
    fn from(error: RotationError) -> Diagnostic {
        Diagnostic {
            error_type: error.name().to_string(),
            error_message: error.message().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_reports_a_listed_name() {
        let all = [
            RotationError::InvalidInput(String::new()),
            RotationError::PreconditionFailed(String::new()),
            RotationError::RotationInProgress(String::new()),
            RotationError::QoveryUnauthorized(String::new()),
            RotationError::QoveryUnavailable(String::new()),
            RotationError::QoveryRejected(String::new()),
            RotationError::NewKeyNotValid(String::new()),
            RotationError::ClusterDeployFailed(String::new()),
            RotationError::ClusterDeployTimedOut(String::new()),
            RotationError::UnsafeDelete(String::new()),
            RotationError::AwsUnavailable(String::new()),
            RotationError::AwsRejected(String::new()),
            RotationError::HandOverIncomplete(String::new()),
            RotationError::KeyTooOld(String::new()),
            RotationError::RotationUnfinished(String::new()),
            RotationError::KeyStillInUse(String::new()),
            RotationError::RoleNotProven(String::new()),
            RotationError::FallbackFailed(String::new()),
        ];
        let names: Vec<_> = all.iter().map(|e| e.name()).collect();
        assert_eq!(names, RotationError::NAMES);
    }

    #[test]
    fn diagnostic_carries_the_stable_name_and_the_message() {
        let diagnostic: Diagnostic = RotationError::UnsafeDelete("refused".into())
            .with_context("Next: nothing.")
            .into();
        assert_eq!(diagnostic.error_type, "UnsafeDelete");
        assert_eq!(diagnostic.error_message, "refused Next: nothing.");
    }
}
