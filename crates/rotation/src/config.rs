//! Settings from the environment, and the clients each step uses, built once per
//! Lambda sandbox.

use aws_config::SdkConfig;

use crate::error::RotationError;
use crate::ledger::Ledger;
use crate::qovery::QoveryApi;

pub const DEFAULT_QOVERY_API_URL: &str = "https://api.qovery.com";
pub const DEFAULT_KEY_SECRET_PREFIX: &str = "qovery-key-rotator";
/// The longest Lambda timeout of the template (update-qovery, 300 s), and a minute.
pub const DEFAULT_TAKEOVER_GRACE_SECONDS: u64 = 360;

/// The environment variables the functions read. These names are the contract with
/// template.yaml and the local tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `QOVERY_API_URL`
    pub qovery_api_url: String,
    /// `QOVERY_TOKEN_SECRET_ID`: the secret (name or ARN) that holds the API token.
    pub qovery_token_secret_id: String,
    /// `KEY_SECRET_PREFIX`: each execution keeps its new key in the secret
    /// `<prefix>/<iam_user_name>/<execution name>`, only until Qovery holds it.
    pub key_secret_prefix: String,
    /// `LEDGER_TABLE`: the DynamoDB table of the per-user locks and rotation records,
    /// shared by every stack of the account and region.
    pub ledger_table: String,
    /// `TAKEOVER_GRACE_SECONDS` (default 360): how long after an execution ended its
    /// lock stays. Stopping an execution does not stop the Lambda it is running, which
    /// may go on for its timeout (at most 300 s) and must not race the next run.
    pub takeover_grace_seconds: u64,
}

impl Settings {
    pub fn from_env() -> Result<Self, RotationError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let qovery_token_secret_id = var("QOVERY_TOKEN_SECRET_ID").ok_or_else(|| {
            RotationError::InvalidInput(
                "The environment variable QOVERY_TOKEN_SECRET_ID is not set: it must name the Secrets Manager \
                 secret that holds the Qovery API token. Nothing was changed."
                    .to_string(),
            )
        })?;
        let ledger_table = var("LEDGER_TABLE").ok_or_else(|| {
            RotationError::InvalidInput(
                "The environment variable LEDGER_TABLE is not set: it must name the DynamoDB table that holds the \
                 per-user rotation locks and records. Nothing was changed."
                    .to_string(),
            )
        })?;
        let takeover_grace_seconds = match var("TAKEOVER_GRACE_SECONDS") {
            None => DEFAULT_TAKEOVER_GRACE_SECONDS,
            Some(v) => v.trim().parse().map_err(|_| {
                RotationError::InvalidInput(format!(
                    "The environment variable TAKEOVER_GRACE_SECONDS must be a number of seconds, not {v:?}. \
                     Nothing was changed."
                ))
            })?,
        };
        let qovery_api_url =
            var("QOVERY_API_URL").unwrap_or_else(|| DEFAULT_QOVERY_API_URL.to_string());
        check_qovery_api_url(&qovery_api_url)?;
        Ok(Self {
            ledger_table,
            takeover_grace_seconds,
            qovery_api_url,
            qovery_token_secret_id,
            key_secret_prefix: var("KEY_SECRET_PREFIX")
                .unwrap_or_else(|| DEFAULT_KEY_SECRET_PREFIX.to_string()),
        })
    }

    /// The secret that holds the new key of `iam_user_name` during one execution. One
    /// secret per execution: a deleted secret's name stays taken while Secrets Manager
    /// forgets it, and two executions never share a key's secret.
    pub fn key_secret_name(&self, iam_user_name: &str, execution_id: &str) -> String {
        let execution_name = execution_id.rsplit(':').next().unwrap_or(execution_id);
        // Secret names allow letters, digits and /_+=.@-; execution names may hold more.
        let execution_name: String = execution_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_+=.@-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!(
            "{}/{}/{}",
            self.key_secret_prefix.trim_end_matches('/'),
            iam_user_name,
            execution_name
        )
    }
}

/// The Qovery API is reached over HTTPS only: requests carry the token, and the PUTs a
/// new secret key. Plain HTTP only to this machine (the local stack's fake Qovery),
/// which never leaves the host. The refusal quotes the URL only when it parsed and
/// holds no credentials: whatever else was put there may be a secret.
pub fn check_qovery_api_url(url: &str) -> Result<(), RotationError> {
    let parsed = reqwest::Url::parse(url);
    let shown = match &parsed {
        Ok(u) if u.username().is_empty() && u.password().is_none() => format!("{url:?}"),
        _ => "(not shown)".to_string(),
    };
    let refuse = |why: &str| {
        Err(RotationError::InvalidInput(format!(
            "QOVERY_API_URL {shown} {why}. Requests to Qovery carry the API token and new secret keys, so the \
             base URL must be https://<host> (plain http only for a loopback address: the local stack). Fix the \
             QoveryApiUrl parameter. Nothing was changed."
        )))
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return refuse(&format!("is not a URL ({e})")),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return refuse("carries credentials in the URL");
    }
    let loopback = match parsed.host_str() {
        None | Some("") => return refuse("has no host"),
        Some(host) => {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => refuse("uses plain http to a host other than this machine"),
        other => refuse(&format!("uses the scheme {other:?}")),
    }
}

/// Every AWS SDK call is bounded, retries included, so that a step knows how long a call
/// can take (`deadline::AWS_CALL_BUDGET`) and never starts one Lambda would cut off.
pub fn aws_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(std::time::Duration::from_secs(8))
        .operation_timeout(std::time::Duration::from_secs(20))
        .build()
}

/// The clients a step needs, passed by reference into every handler.
#[derive(Debug, Clone)]
pub struct Deps {
    pub settings: Settings,
    /// Kept to build an STS client signed with the new key.
    pub sdk_config: SdkConfig,
    pub iam: aws_sdk_iam::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub ledger: Ledger,
    pub qovery: QoveryApi,
}

impl Deps {
    pub fn new(sdk_config: SdkConfig, settings: Settings) -> Self {
        Self {
            iam: aws_sdk_iam::Client::new(&sdk_config),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk_config),
            sfn: aws_sdk_sfn::Client::new(&sdk_config),
            ledger: Ledger::new(
                aws_sdk_dynamodb::Client::new(&sdk_config),
                &settings.ledger_table,
            ),
            qovery: QoveryApi::new(&settings.qovery_api_url),
            settings,
            sdk_config,
        }
    }

    /// Reads `AWS_*` (including `AWS_ENDPOINT_URL`) through aws-config. Every SDK client
    /// built from the config shares its HTTP client (`http::aws_http_client`).
    pub async fn from_env() -> Result<Self, RotationError> {
        let settings = Settings::from_env()?;
        let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(crate::http::aws_http_client())
            .timeout_config(aws_timeouts())
            .load()
            .await;
        Ok(Self::new(sdk_config, settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qovery_api_is_reached_over_https_or_on_this_machine_only() {
        for allowed in [
            "https://api.qovery.com",
            "https://qovery.example.internal:8443/api",
            "http://127.0.0.1:4010",
            "http://localhost:8080",
            "http://[::1]:9000",
        ] {
            assert!(check_qovery_api_url(allowed).is_ok(), "{allowed}");
        }
        for refused in [
            "http://api.qovery.com",
            "http://10.0.0.1:4010",
            "http://127.0.0.1.example.com",
            "ftp://api.qovery.com",
            "https://user:pass@api.qovery.com",
            "api.qovery.com",
            "",
        ] {
            let error = check_qovery_api_url(refused).unwrap_err();
            assert_eq!(error.name(), "InvalidInput", "{refused}");
            assert!(error.message().contains("QOVERY_API_URL"), "{refused}");
        }
        // Credentials in the URL, or a value that is not a URL at all, are never quoted.
        for secretive in [
            "https://user:hunter2@api.qovery.com",
            "qov_t0ken-pasted-here",
        ] {
            let message = check_qovery_api_url(secretive)
                .unwrap_err()
                .message()
                .to_string();
            assert!(
                !message.contains("hunter2") && !message.contains("t0ken"),
                "{message}"
            );
        }
    }

    #[test]
    fn an_aws_call_ends_within_the_budget_a_step_keeps_for_it() {
        let timeouts = aws_timeouts();
        let operation = timeouts.operation_timeout().expect("an operation timeout");
        assert!(timeouts
            .operation_attempt_timeout()
            .is_some_and(|a| a < operation));
        assert!(operation < crate::deadline::AWS_CALL_BUDGET);
    }
}
