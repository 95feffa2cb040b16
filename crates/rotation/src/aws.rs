//! What every AWS SDK call has in common: turning an `SdkError` into a named,
//! retryable-or-not failure whose message says which call failed.

use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::error::RotationError;

/// A failed AWS call, already classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// `service:Action`, as IAM policies spell it.
    pub operation: &'static str,
    /// The service's error code, e.g. `NoSuchEntity` or `AccessDenied`.
    pub code: Option<String>,
    pub message: String,
    /// Throttling, 5xx, timeouts and network failures: worth retrying.
    pub transient: bool,
}

const THROTTLING_CODES: [&str; 7] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalFailure",
];

impl AwsError {
    pub fn from_sdk<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = error.code().map(str::to_owned);
        let status = error.raw_response().map(|r| r.status().as_u16());
        let transient = match &error {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            _ => {
                status.is_some_and(|s| s >= 500 || s == 429)
                    || code
                        .as_deref()
                        .is_some_and(|c| THROTTLING_CODES.contains(&c))
            }
        };
        let message = match (error.message(), &error) {
            (Some(m), _) => m.to_owned(),
            // These fail before any response: their description holds no body.
            (
                None,
                SdkError::DispatchFailure(_)
                | SdkError::TimeoutError(_)
                | SdkError::ConstructionFailure(_),
            ) => DisplayErrorContext(&error).to_string(),
            // Never quote a response the SDK could not read: it may be a secret's value.
            (None, _) => format!(
                "a response the SDK could not read (HTTP {})",
                status.map_or("status unknown".to_string(), |s| s.to_string())
            ),
        };
        Self {
            operation,
            code,
            message,
            transient,
        }
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// `AwsUnavailable` if worth retrying, else `AwsRejected`, with the step's
    /// `context` (which keys are live, what to do next) appended.
    pub fn into_rotation_error(self, context: &str) -> RotationError {
        let what = format!(
            "AWS call {} failed{}: {}.",
            self.operation,
            self.code
                .as_deref()
                .map(|c| format!(" with {c}"))
                .unwrap_or_default(),
            self.message
        );
        let error = if self.transient {
            RotationError::AwsUnavailable(format!(
                "{what} This is usually temporary and the state machine retries it."
            ))
        } else {
            RotationError::AwsRejected(format!(
                "{what} Check that the function's role allows {} on the resource and that the resource exists.",
                self.operation
            ))
        };
        error.with_context(context)
    }
}
