//! Deploys on role credentials that really assume the role ([`RoleDeploys::AssumeWithSts`]):
//! `sts:AssumeRole` as the Qovery principal against a real moto server, whose trust
//! policies `tests/workflow/moto_trust.py` evaluates across accounts.
//!
//! moto runs as the rotation crate's handler tests run it: one fork server per test
//! binary (`tests/workflow/moto_forkserver.py` under the project's `.venv`, or
//! `MOTO_SERVER`), one forked server per test, its first three calls unsigned (they
//! seed the admin that creates the roles in account 123456789012). The fork server
//! creates the Qovery principal (`QKR_MOTO_QOVERY_PRINCIPAL`). Without moto these tests
//! fail, saying so: none is skipped.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
use qovery_fake::{
    FakeQovery, RoleCheck, RoleDeploys, Seed, SeedCluster, SeedCredentials, StsConfig,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;

/// Qovery's account, where moto_trust.py creates its principal.
const QOVERY_ROOT: &str = "arn:aws:iam::999999999999:root";
const CUSTOMER: &str = "123456789012";
/// The calls moto serves unsigned: the admin's user, policy and key.
const SEED_REQUESTS: usize = 3;

struct ForkServer {
    _process: Child,
    port: u16,
    /// (access key id, secret) of the Qovery principal.
    principal: (String, String),
}

static FORK_SERVER: OnceLock<ForkServer> = OnceLock::new();

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// MOTO_SERVER (a fork server script, or a `.py` run with the project's `.venv`), else
/// `tests/workflow/moto_forkserver.py`: as `crates/rotation/tests/handlers/support.rs`.
fn moto_command() -> Command {
    let root = repo_root();
    let path = std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/workflow/moto_forkserver.py"));
    assert!(
        path.exists(),
        "moto's fork server not found at {}: these tests need moto; run `make tools` first",
        path.display()
    );
    if path.extension().is_some_and(|e| e == "py") {
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} not found: these tests need the project's virtualenv with moto; run `make tools` first",
            python.display()
        );
        let mut command = Command::new(python);
        command.arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn fork_server() -> &'static ForkServer {
    FORK_SERVER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("qovery-fake-sts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let principal_path = dir.join("qovery-principal.json");
        let log_path = dir.join("moto.log");
        let mut process = moto_command()
            .env("QKR_MOTO_QOVERY_PRINCIPAL", &principal_path)
            // It would put every request in one account: Qovery's must be its own.
            .env_remove("MOTO_ACCOUNT_ID")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start moto's fork server");
        let mut port = String::new();
        BufReader::new(process.stdout.take().unwrap())
            .read_line(&mut port)
            .expect("read the fork server's port");
        let port = port.trim().parse().unwrap_or_else(|_| {
            panic!(
                "moto's fork server did not start (is moto installed in .venv? run `make tools`): {port:?}\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )
        });
        let principal: Value = serde_json::from_str(
            &std::fs::read_to_string(&principal_path)
                .expect("moto_trust.py wrote no Qovery principal"),
        )
        .expect("the Qovery principal is JSON");
        // The secret stays in memory only; moto keeps writing to its unlinked log.
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(principal["user_name"], "qovery-engine");
        ForkServer {
            _process: process,
            port,
            principal: (
                principal["access_key_id"].as_str().unwrap().to_owned(),
                principal["secret_access_key"].as_str().unwrap().to_owned(),
            ),
        }
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn iam_client(endpoint: &str, key: &str, secret: &str) -> aws_sdk_iam::Client {
    let config = aws_sdk_iam::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_iam::Client::from_conf(config)
}

/// A moto server of this test's own; it ends when this is dropped.
struct Moto {
    _fork: TcpStream,
    endpoint: String,
    /// Signed by an admin of the customer's account (123456789012).
    iam: aws_sdk_iam::Client,
}

impl Moto {
    async fn start() -> Self {
        let port = free_port();
        let mut fork = TcpStream::connect(("127.0.0.1", fork_server().port))
            .expect("reach moto's fork server");
        writeln!(fork, "{port} {SEED_REQUESTS}").unwrap();
        let mut ready = String::new();
        BufReader::new(fork.try_clone().unwrap())
            .read_line(&mut ready)
            .expect("moto's fork answers");
        assert_eq!(ready.trim(), "ok", "moto did not start on port {port}");
        let endpoint = format!("http://127.0.0.1:{port}");
        // As stack.py seeds its admin: the only unsigned calls.
        let unsigned = iam_client(&endpoint, "AKIASEEDSEEDSEEDSEED", "seed");
        unsigned
            .create_user()
            .user_name("qkr-admin")
            .send()
            .await
            .unwrap();
        unsigned
            .put_user_policy()
            .user_name("qkr-admin")
            .policy_name("admin")
            .policy_document(
                json!({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        let key = unsigned
            .create_access_key()
            .user_name("qkr-admin")
            .send()
            .await
            .unwrap();
        let key = key.access_key().unwrap();
        let iam = iam_client(&endpoint, key.access_key_id(), key.secret_access_key());
        Self {
            _fork: fork,
            endpoint,
            iam,
        }
    }

    /// STS at this server, as the Qovery principal.
    fn sts(&self) -> StsConfig {
        let (key, secret) = &fork_server().principal;
        StsConfig::new(&self.endpoint, key, secret)
    }

    /// Creates role `name` in the customer's account, trusting `principal` (an
    /// `AWS` principal); returns its ARN.
    async fn role(&self, name: &str, principal: &str) -> String {
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]
        });
        let created = self
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .unwrap();
        created.role().unwrap().arn().to_owned()
    }
}

fn secret() -> &'static str {
    &fork_server().principal.1
}

/// The cluster deploys with role credentials (`role_arn`) from the start.
fn on_role(role_arn: &str) -> Seed {
    let mut seed = seed(SeedCluster {
        credentials_id: OTHER.into(),
        ..cluster()
    });
    seed.credentials
        .push(SeedCredentials::role(OTHER, "prod-role", role_arn));
    seed
}

async fn start_fake(seed: Seed, sts: StsConfig) -> Api {
    let fake = FakeQovery::new(seed)
        .with_sts(sts)
        .spawn(0)
        .await
        .expect("fake starts");
    let _ = rustls::crypto::ring::default_provider().install_default();
    Api {
        fake,
        http: reqwest::Client::new(),
    }
}

/// Deploys the cluster and polls until it settles; returns its last status.
async fn deploy_to_the_end(api: &Api) -> String {
    let response = api.deploy().await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let queued: Value = response.json().await.unwrap();
    assert_eq!(queued["status"], "DEPLOYMENT_QUEUED");
    assert_eq!(api.poll().await["status"], "DEPLOYING");
    api.poll().await["status"].as_str().unwrap().to_owned()
}

/// The one role check of the snapshot, which must not hold the principal's secret.
fn only_role_check(api: &Api) -> RoleCheck {
    let snapshot = api.fake.snapshot();
    let json = serde_json::to_string(&snapshot).unwrap();
    assert!(
        !json.contains(secret()),
        "the snapshot holds the principal's secret"
    );
    assert_eq!(snapshot.role_checks.len(), 1, "{:?}", snapshot.role_checks);
    snapshot.role_checks[0].clone()
}

fn denied(role_arn: &str) -> String {
    format!(
        "AccessDenied: User: arn:aws:iam::999999999999:user/qovery-engine is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
    )
}

#[tokio::test]
async fn a_role_that_trusts_qoverys_account_is_assumed() {
    let moto = Moto::start().await;
    let role = moto.role("qovery", QOVERY_ROOT).await;
    assert_eq!(role, format!("arn:aws:iam::{CUSTOMER}:role/qovery"));
    let api = start_fake(on_role(&role), moto.sts()).await;
    assert_eq!(deploy_to_the_end(&api).await, "DEPLOYED");
    assert_eq!(
        only_role_check(&api),
        RoleCheck {
            cluster_id: CLUSTER.into(),
            role_arn: role,
            ok: true,
            error: None
        }
    );
}

#[tokio::test]
async fn a_role_that_trusts_another_account_ends_the_deployment_invalid_credentials() {
    let moto = Moto::start().await;
    let role = moto
        .role("someone-else", "arn:aws:iam::111111111111:root")
        .await;
    // Whatever the seeded outcome.
    let mut seed = on_role(&role);
    seed.clusters[0].outcome = qovery_fake::Outcome::DeploymentError;
    let api = start_fake(seed, moto.sts()).await;
    assert_eq!(deploy_to_the_end(&api).await, "INVALID_CREDENTIALS");
    let check = only_role_check(&api);
    assert!(!check.ok);
    assert_eq!(check.error.as_deref(), Some(denied(&role).as_str()));
}

#[tokio::test]
async fn a_role_that_does_not_exist_ends_the_deployment_invalid_credentials() {
    let moto = Moto::start().await;
    let role = format!("arn:aws:iam::{CUSTOMER}:role/never-created");
    let api = start_fake(on_role(&role), moto.sts()).await;
    assert_eq!(deploy_to_the_end(&api).await, "INVALID_CREDENTIALS");
    let check = only_role_check(&api);
    assert_eq!(check.error.as_deref(), Some(denied(&role).as_str()));

    // Once the role exists and trusts Qovery, the next deployment is judged afresh.
    moto.role("never-created", QOVERY_ROOT).await;
    assert_eq!(deploy_to_the_end(&api).await, "DEPLOYED");
    let oks: Vec<bool> = api
        .fake
        .snapshot()
        .role_checks
        .iter()
        .map(|c| c.ok)
        .collect();
    assert_eq!(oks, [false, true]);
}

#[tokio::test]
async fn a_deploy_on_static_credentials_calls_no_sts() {
    // STS stands for a listener that counts connections: none may come.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let sts = StsConfig::new(
        format!("http://{}", listener.local_addr().unwrap()),
        "AKIAQOVERYQOVERYQOVE",
        "not-used",
    );
    let api = start_fake(seed(cluster()), sts).await;
    assert_eq!(deploy_to_the_end(&api).await, "DEPLOYED");
    assert!(api.fake.snapshot().role_checks.is_empty());
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the fake called STS: {accepted:?}"
    );
}

#[tokio::test]
async fn an_sts_that_cannot_be_reached_fails_the_deployment() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let sts = StsConfig::new(&endpoint, "AKIAQOVERYQOVERYQOVE", "s3cret-of-the-principal");
    let api = start_fake(on_role("arn:aws:iam::123456789012:role/qovery"), sts).await;
    assert_eq!(deploy_to_the_end(&api).await, "INVALID_CREDENTIALS");
    let check = api.fake.snapshot().role_checks[0].clone();
    assert!(!check.ok);
    let error = check.error.unwrap();
    assert!(
        error.starts_with(&format!("STS at {endpoint} gave no answer: ")),
        "{error}"
    );
    assert!(!error.contains("s3cret"), "{error}");
}

#[test]
fn the_sts_setting_never_shows_its_secret() {
    let sts = StsConfig::new(
        "http://127.0.0.1:1",
        "AKIAQOVERY",
        "s3cret-of-the-principal",
    );
    let shown = format!("{:?}", RoleDeploys::AssumeWithSts(sts.clone()));
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("AKIAQOVERY"), "{shown}");
    assert_eq!(
        (sts.endpoint_url(), sts.access_key_id(), sts.region()),
        ("http://127.0.0.1:1", "AKIAQOVERY", "us-east-1")
    );
}

/// The binary, started as stack.py starts it; returns it and its base URL.
async fn start_binary(args: &[&str]) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_qovery-fake"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let base_url = line
        .trim_end()
        .strip_prefix("qovery-fake listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, base_url)
}

fn write_principal(path: &Path) {
    let (key, secret) = &fork_server().principal;
    let principal = json!({
        "account_id": "999999999999",
        "user_name": "qovery-engine",
        "arn": "arn:aws:iam::999999999999:user/qovery-engine",
        "access_key_id": key,
        "secret_access_key": secret,
    });
    std::fs::write(path, principal.to_string()).unwrap();
}

#[tokio::test]
async fn the_binary_assumes_roles_as_the_principal_in_its_file_and_logs_no_secret() {
    let moto = Moto::start().await;
    let trusted = moto.role("qovery", QOVERY_ROOT).await;
    let refused = moto
        .role("someone-else", "arn:aws:iam::111111111111:root")
        .await;
    let principal = std::env::temp_dir().join(format!(
        "qovery-fake-principal-{}-{}.json",
        std::process::id(),
        free_port()
    ));
    write_principal(&principal);
    let (mut child, base_url) = start_binary(&[
        "--port",
        "0",
        "--aws-endpoint",
        &moto.endpoint,
        "--qovery-principal",
        principal.to_str().unwrap(),
    ])
    .await;
    std::fs::remove_file(&principal).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let http = &http;
    let base_url = base_url.as_str();
    let put_state = |seed: Seed| async move {
        let response = http
            .put(format!("{base_url}/_fake/state"))
            .json(&seed)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    };
    let call = |method: reqwest::Method, path: String| {
        http.request(method, format!("{base_url}{path}"))
            .header("Authorization", format!("Token {TOKEN}"))
            .send()
    };
    let deploy_to_the_end = || async move {
        let response = call(reqwest::Method::POST, deploy_path()).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let mut last = Value::Null;
        for _ in 0..2 {
            last = call(reqwest::Method::GET, status_path())
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        }
        last["status"].as_str().unwrap().to_owned()
    };

    put_state(on_role(&trusted)).await;
    assert_eq!(deploy_to_the_end().await, "DEPLOYED");
    // A new seed keeps the setting.
    put_state(on_role(&refused)).await;
    assert_eq!(deploy_to_the_end().await, "INVALID_CREDENTIALS");
    let state = http
        .get(format!("{base_url}/_fake/state"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let state_json: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        state_json["role_checks"],
        json!([{"cluster_id": CLUSTER, "role_arn": refused, "ok": false, "error": denied(&refused)}])
    );

    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(child.wait().await.unwrap().success());
    // The session Qovery names after the cluster: qovery-<first 8 of its id>.
    let session = format!(
        "arn:aws:sts::{CUSTOMER}:assumed-role/qovery/qovery-{}",
        &CLUSTER[..8]
    );
    assert!(stderr.contains(&session), "{stderr}");
    assert!(stderr.contains("role not assumed"), "{stderr}");
    assert!(stderr.contains(&denied(&refused)), "{stderr}");
    for (what, text) in [("the logs", &stderr), ("the state", &state)] {
        assert!(
            !text.contains(secret()),
            "the principal's secret is in {what}"
        );
    }
}

#[tokio::test]
async fn the_binary_wants_an_endpoint_and_a_principal_together_and_nothing_else() {
    for args in [
        vec!["--aws-endpoint", "http://127.0.0.1:1"],
        vec!["--qovery-principal", "principal.json"],
        vec![
            "--role-deploys",
            "fail",
            "--aws-endpoint",
            "http://127.0.0.1:1",
            "--qovery-principal",
            "principal.json",
        ],
        vec![
            "--aws-endpoint",
            "127.0.0.1:1",
            "--qovery-principal",
            "p.json",
        ],
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_qovery-fake"))
            .args(&args)
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("usage: qovery-fake"), "{stderr}");
    }
    // A principal file that cannot be read, or is not one, stops the fake.
    let dir =
        std::env::temp_dir().join(format!("qovery-fake-bad-principal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_json = dir.join("not-json.json");
    std::fs::write(&not_json, "secret-looking-text").unwrap();
    let no_secret = dir.join("no-secret.json");
    std::fs::write(&no_secret, r#"{"access_key_id": "AKIA"}"#).unwrap();
    for (path, says) in [
        (dir.join("missing.json"), "cannot read"),
        (not_json, "is not a Qovery principal"),
        (no_secret, "secret_access_key"),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_qovery-fake"))
            .args(["--aws-endpoint", "http://127.0.0.1:1", "--qovery-principal"])
            .arg(&path)
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{path:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("secret-looking-text"), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
