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

/// The log filter for `level` (a `RUST_LOG` value: a level, or `target=level`
/// directives), with the libraries that could print secrets capped. `Targets`, not
/// `EnvFilter`: the same directives without a regex engine in every bootstrap
/// (about 0.2 MiB).
pub fn log_filter(level: &str) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::LevelFilter;
    // Each directive a level or `target=level`; anything else (a typo) means `info`,
    // rather than a filter that quietly enables nothing.
    let valid = level.split(',').all(|directive| {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        level.trim().parse::<LevelFilter>().is_ok()
    });
    let level = if valid { level } else { "info" };
    format!("{level},{QUIET_LIBRARIES}")
        .parse()
        .unwrap_or_else(|_| {
            format!("info,{QUIET_LIBRARIES}")
                .parse()
                .expect("the fallback directives parse")
        })
}

/// JSON log lines, level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_target(false)
                .with_current_span(false),
        )
        .with(log_filter(&level))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn libraries_that_could_print_a_secret_stay_at_warn_whatever_rust_log_says() {
        let filter = log_filter("trace");
        assert!(filter.would_enable("rotation::steps::preflight", &Level::TRACE));
        for library in ["aws_smithy_runtime", "hyper", "reqwest", "aws_sigv4", "h2"] {
            assert!(!filter.would_enable(library, &Level::DEBUG), "{library}");
            assert!(filter.would_enable(library, &Level::WARN), "{library}");
        }
        // A RUST_LOG that does not parse falls back to info.
        let fallback = log_filter("not a level!");
        assert!(fallback.would_enable("rotation", &Level::INFO));
        assert!(!fallback.would_enable("rotation", &Level::DEBUG));
    }
}
