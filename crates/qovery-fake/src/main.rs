//! `qovery-fake [--port N] [--seed path.json] [--role-deploys succeed|fail |
//! --aws-endpoint URL --qovery-principal FILE]`: serves the fake on 127.0.0.1 until
//! SIGTERM or SIGINT. The one line on stdout tells a script where it listens; logs go
//! to stderr so that they never get in its way.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use qovery_fake::{FakeQovery, RoleDeploys, Seed, StsConfig};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: qovery-fake [--port N] [--seed path.json]
                   [--role-deploys succeed|fail | --aws-endpoint URL --qovery-principal FILE]
  --port N          port to bind on 127.0.0.1 (default 0: any free port)
  --seed FILE       JSON Seed to start with (default: empty; seed it with PUT /_fake/state)
  --role-deploys W  whether a deploy on AWS_ROLE credentials can assume its role (default
                    succeed; fail ends it INVALID_CREDENTIALS); kept across seeds
  --aws-endpoint URL, --qovery-principal FILE
                    instead, a deploy on AWS_ROLE credentials calls sts:AssumeRole at URL
                    (moto) with the key of the Qovery principal in FILE (JSON with
                    access_key_id and secret_access_key, as tests/workflow/moto_trust.py
                    writes it): refused or unreachable, it ends INVALID_CREDENTIALS";

struct Args {
    port: u16,
    seed: Option<String>,
    role_deploys: Option<RoleDeploys>,
    aws_endpoint: Option<String>,
    qovery_principal: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        port: 0,
        seed: None,
        role_deploys: None,
        aws_endpoint: None,
        qovery_principal: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a value")?;
                parsed.port = value
                    .parse()
                    .map_err(|_| format!("--port: {value:?} is not a port number"))?;
            }
            "--seed" => parsed.seed = Some(args.next().ok_or("--seed needs a path")?),
            "--role-deploys" => {
                let value = args.next().ok_or("--role-deploys needs a value")?;
                parsed.role_deploys = Some(match value.as_str() {
                    "succeed" => RoleDeploys::Succeed,
                    "fail" => RoleDeploys::Fail,
                    _ => {
                        return Err(format!(
                            "--role-deploys: {value:?} is neither succeed nor fail"
                        ))
                    }
                });
            }
            "--aws-endpoint" => {
                let value = args.next().ok_or("--aws-endpoint needs a URL")?;
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    return Err(format!("--aws-endpoint: {value:?} is not an http(s) URL"));
                }
                parsed.aws_endpoint = Some(value);
            }
            "--qovery-principal" => {
                parsed.qovery_principal =
                    Some(args.next().ok_or("--qovery-principal needs a path")?);
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (&parsed.aws_endpoint, &parsed.qovery_principal) {
        (Some(_), None) => return Err("--aws-endpoint needs --qovery-principal".into()),
        (None, Some(_)) => return Err("--qovery-principal needs --aws-endpoint".into()),
        (Some(_), Some(_)) if parsed.role_deploys.is_some() => {
            return Err(
                "--role-deploys cannot be given with --aws-endpoint and --qovery-principal".into(),
            )
        }
        _ => {}
    }
    Ok(Some(parsed))
}

/// What `--role-deploys`, or `--aws-endpoint` with `--qovery-principal`, asked for.
fn role_deploys(args: &Args) -> Result<RoleDeploys, String> {
    match (&args.aws_endpoint, &args.qovery_principal) {
        (Some(endpoint), Some(principal)) => {
            let sts = StsConfig::from_principal_file(endpoint.as_str(), principal)?;
            tracing::info!(
                endpoint = endpoint.as_str(),
                access_key_id = sts.access_key_id(),
                "role deploys call sts:AssumeRole as the Qovery principal"
            );
            Ok(RoleDeploys::AssumeWithSts(sts))
        }
        _ => Ok(args.role_deploys.clone().unwrap_or_default()),
    }
}

fn read_seed(path: &str) -> Result<Seed, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path} is not a valid seed: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // The demo sends stderr to a log file, where colour codes are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("qovery-fake: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let seed = match args.seed.as_deref().map(read_seed).transpose() {
        Ok(seed) => seed.unwrap_or_default(),
        Err(e) => {
            eprintln!("qovery-fake: {e}");
            return ExitCode::FAILURE;
        }
    };
    let role_deploys = match role_deploys(&args) {
        Ok(role_deploys) => role_deploys,
        Err(e) => {
            eprintln!("qovery-fake: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fake = match FakeQovery::try_new(seed) {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("qovery-fake: invalid seed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match fake.with_role_deploys(role_deploys).spawn(args.port).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("qovery-fake: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };

    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "qovery-fake listening on {}", running.base_url);
    let _ = stdout.flush();

    shutdown_signal().await;
    tracing::info!("qovery-fake stopping");
    running.shutdown().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).expect("cannot listen for SIGTERM");
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
