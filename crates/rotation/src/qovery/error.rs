//! Why a Qovery call failed, and what of Qovery's answer an error may quote.

use reqwest::StatusCode;
use serde_json::Value;

use crate::error::RotationError;

/// Why a Qovery call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QoveryErrorKind {
    /// 401 or 403: the token is wrong, expired, or lacks the permission.
    Unauthorized,
    /// 5xx, 429 or a network failure: worth retrying.
    Unavailable,
    /// Another 4xx, or a body that does not match the spec.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QoveryError {
    pub kind: QoveryErrorKind,
    /// e.g. `PUT /organization/{id}/aws/credentials/{id}`.
    pub operation: String,
    pub status: Option<u16>,
    /// Qovery's `detail` or `message`, or the raw body; scrubbed of secrets.
    pub detail: String,
    pub retry_after_seconds: Option<u64>,
}

impl QoveryError {
    /// The named error, with the step's `context` (which keys are live, what to do next).
    pub fn into_rotation_error(self, context: &str) -> RotationError {
        let status = self.status.map(|s| format!(" {s}")).unwrap_or_default();
        let what = format!(
            "Qovery answered{status} to {}: {}.",
            self.operation, self.detail
        );
        let error = match self.kind {
            QoveryErrorKind::Unauthorized => RotationError::QoveryUnauthorized(format!(
                "{what} The Qovery API token was refused: check that the token secret holds a valid organization API token with admin rights on this organization."
            )),
            QoveryErrorKind::Unavailable => {
                let retry = self
                    .retry_after_seconds
                    .map(|s| format!(" Qovery asked to retry after {s} s."))
                    .unwrap_or_default();
                RotationError::QoveryUnavailable(format!(
                    "{what}{retry} This is usually temporary and the state machine retries it."
                ))
            }
            QoveryErrorKind::Rejected => RotationError::QoveryRejected(format!(
                "{what} Check the organization, credentials and cluster ids in the execution input."
            )),
        };
        error.with_context(context)
    }
}

pub(super) fn classify(status: StatusCode) -> QoveryErrorKind {
    match status.as_u16() {
        401 | 403 => QoveryErrorKind::Unauthorized,
        429 => QoveryErrorKind::Unavailable,
        s if s >= 500 => QoveryErrorKind::Unavailable,
        _ => QoveryErrorKind::Rejected,
    }
}

/// Qovery's clients read `detail` or `message` from an error body; keep the raw body
/// (shortened) when it has neither.
pub(super) fn error_detail(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    field("detail")
        .or_else(|| field("message"))
        .or_else(|| field("error"))
        .unwrap_or_else(|| {
            let trimmed = body.trim();
            if trimmed.is_empty() {
                "(empty body)".to_string()
            } else {
                trimmed.chars().take(300).collect()
            }
        })
}

pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_detail_prefers_detail_then_message() {
        assert_eq!(
            error_detail(r#"{"status":400,"detail":"bad name"}"#),
            "bad name"
        );
        assert_eq!(error_detail(r#"{"message":"nope","error":"x"}"#), "nope");
        assert_eq!(error_detail("plain"), "plain");
        assert_eq!(error_detail(""), "(empty body)");
    }
}
