//! `qovery-fake [--port N] [--seed path.json] [--role-deploys succeed|fail]`: serves the fake on 127.0.0.1 until
//! SIGTERM or SIGINT. The one line on stdout tells a script where it listens; logs go
//! to stderr so that they never get in its way.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use qovery_fake::{FakeQovery, RoleDeploys, Seed};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: qovery-fake [--port N] [--seed path.json] [--role-deploys succeed|fail]
  --port N          port to bind on 127.0.0.1 (default 0: any free port)
  --seed FILE       JSON Seed to start with (default: empty; seed it with PUT /_fake/state)
  --role-deploys W  whether a deploy on AWS_ROLE credentials can assume its role (default
                    succeed; fail ends it INVALID_CREDENTIALS); kept across seeds";

struct Args {
    port: u16,
    seed: Option<String>,
    role_deploys: RoleDeploys,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        port: 0,
        seed: None,
        role_deploys: RoleDeploys::default(),
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
                parsed.role_deploys = match value.as_str() {
                    "succeed" => RoleDeploys::Succeed,
                    "fail" => RoleDeploys::Fail,
                    _ => {
                        return Err(format!(
                            "--role-deploys: {value:?} is neither succeed nor fail"
                        ))
                    }
                };
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(parsed))
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
    let fake = match FakeQovery::try_new(seed) {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("qovery-fake: invalid seed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match fake
        .with_role_deploys(args.role_deploys)
        .spawn(args.port)
        .await
    {
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
