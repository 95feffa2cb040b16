//! The Lambda runtime loop shared by the six binaries.

use std::future::Future;

use lambda_runtime::{service_fn, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

use crate::config::Deps;
use crate::error::RotationError;

/// Libraries that would print requests, responses or headers (so the token or a secret
/// key) at debug or trace level are capped at `warn`, whatever `RUST_LOG` says.
const QUIET_LIBRARIES: &str =
    "aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,aws_smithy_http_client=warn,\
aws_sigv4=warn,aws_config=warn,hyper=warn,hyper_util=warn,h2=warn,reqwest=warn,rustls=warn";

/// The log filter for `level` (a `RUST_LOG` value), with the libraries that could
/// print secrets capped.
pub fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(format!("{level},{QUIET_LIBRARIES}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{QUIET_LIBRARIES}")))
}

/// JSON log lines, level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let filter = log_filter(&level);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_current_span(false)
        .try_init();
}

/// Runs `handler` for every invocation. Takes the raw JSON so that a bad input becomes
/// `InvalidInput` with a message, not the runtime's own deserialization error.
pub async fn serve<F, Fut, O>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(&'static Deps, Value) -> Fut,
    Fut: Future<Output = Result<O, RotationError>>,
    O: Serialize,
{
    init_tracing();
    // Built once per sandbox and alive until it ends.
    let deps: &'static Deps = Box::leak(Box::new(Deps::from_env().await?));
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = crate::deadline::from_epoch_millis(event.context.deadline);
        let result = crate::deadline::with_deadline(deadline, handler(deps, event.payload)).await;
        if let Err(error) = &result {
            tracing::error!(
                error_type = error.name(),
                message = error.message(),
                "step failed"
            );
        }
        result
    }))
    .await
}
