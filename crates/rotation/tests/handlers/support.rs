//! The harness for the handler tests: a real moto server (IAM, STS, Secrets Manager,
//! Step Functions) with key checks on, and the fake Qovery, both on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use std::sync::Mutex;

use qovery_fake::{
    ClusterSnapshot, FakeQovery, RunningFake, Seed, SeedCluster, SeedCredentials, SeedRegistry,
};
use rotation::state::{
    ClusterDeployment, DeleteKeyResult, KeySummary, Phase, QuarantineResult, ReconcileResult,
    RotationState,
};
use rotation::steps::{
    check_status, create_key, delete_key, deploy_cluster, preflight, quarantine, update_qovery,
};
use rotation::RotationError;
use rotation::{Deps, Settings};
use serde::Serialize;
use serde_json::{json, Value};

pub const ORG: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
/// "aws-prod": holds the user's key in every world.
pub const CREDS: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
/// "aws-us": a second entry set up with the same user (and so the same key) in
/// `World::shared_key`.
pub const CREDS_US: &str = "5f0c8e51-7a3b-4c2d-9e1f-2a3b4c5d6e7f";
/// Another entry of the organization, holding something else (a role, another key).
pub const CREDS_OTHER: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
pub const CLUSTER_A: &str = "0b7a9c2e-1d2f-4e5a-8b6c-7d8e9f0a1b2c";
pub const CLUSTER_B: &str = "1c8b0d3f-2e3a-4f6b-9c7d-8e9f0a1b2c3d";
pub const CLUSTER_C: &str = "2d9c1e4a-3f4b-4a7c-8d8e-9f0a1b2c3d4e";
pub const CLUSTER_D: &str = "3eac2f5b-4a5c-4b8d-9e9f-0a1b2c3d4e5f";
pub const TOKEN: &str = "qov_t0ken-that-must-never-leak-8c1f";
pub const TOKEN_SECRET: &str = "test/qovery-api-token";
pub const USER: &str = "qovery";
pub const KEY_SECRET_PREFIX: &str = "qovery-key-rotator";
pub const LEDGER_TABLE: &str = "qovery-key-rotator-ledger";
/// A container registry, a helm repository and a secret manager access.
pub const REGISTRY_A: &str = "4fbd3a6c-5b6d-4c9e-8fa0-1b2c3d4e5f60";
pub const REGISTRY_B: &str = "5acd4b7d-6c7e-4daf-a9b1-2c3d4e5f6071";
pub const HELM: &str = "6bde5c8e-7d8f-4eb0-8c2d-3e4f50617283";
pub const ACCESS: &str = "7cef6d9f-8e90-4fc1-9d3e-4f5061728394";
/// Stands for the user's key (or its secret) in a holder seeded before the key exists:
/// `World::with` puts the real one in its place.
pub const USER_KEY: &str = "USER-KEY";
pub const EXECUTION: &str = "arn:aws:states:us-east-1:123456789012:execution:rotation:run-1";
pub const EXECUTION_2: &str = "arn:aws:states:us-east-1:123456789012:execution:rotation:run-2";

/// Requests moto serves before it starts checking signatures: exactly the ones that
/// seed the admin user and its key.
const SEED_REQUESTS: usize = 3;

/// A moto server of its own for one test, forked by the test binary's fork server
/// (`tests/workflow/moto_forkserver.py`): it ends when this is dropped (also when a test
/// panics), as the fork ends when its connection closes.
pub struct Moto {
    _fork: TcpStream,
    pub endpoint: String,
    /// Signed with the admin key: for seeding and for checking what exists afterwards.
    pub admin: SdkConfig,
}

/// The fork server, started once per test binary: it has imported moto (about a second
/// of CPU), so each test's server is a fork ready in milliseconds. It ends when its
/// stdin closes, which the end of the test binary does.
struct ForkServer {
    _process: Child,
    port: u16,
}

static FORK_SERVER: OnceLock<ForkServer> = OnceLock::new();

fn fork_server() -> &'static ForkServer {
    FORK_SERVER.get_or_init(|| {
        stop_at_the_first_failure_if_asked();
        let mut process = moto_command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto's fork server");
        let mut port = String::new();
        BufReader::new(process.stdout.take().unwrap())
            .read_line(&mut port)
            .expect("read the fork server's port");
        let port = port
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("moto's fork server did not start: {port:?}"));
        ForkServer {
            _process: process,
            port,
        }
    })
}

/// With TESTS_FAIL_FAST set (`make mutants` sets it), the first failing test ends the
/// whole binary: libtest would run every other test first, and a mutant is caught as
/// soon as one test fails. Its message is printed as usual before the exit.
fn stop_at_the_first_failure_if_asked() {
    if std::env::var_os("TESTS_FAIL_FAST").is_none() {
        return;
    }
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        report(panic);
        std::process::exit(101);
    }));
}

/// The fork server to run: MOTO_SERVER, a script that runs it (`tools/mutants/moto-server`
/// for `make mutants`), or `tests/workflow/moto_forkserver.py` with the project's
/// virtualenv.
fn moto_command() -> Command {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/workflow/moto_forkserver.py"));
    assert!(
        path.exists(),
        "moto's fork server not found at {}; run `make tools` first",
        path.display()
    );
    if path.extension().is_some_and(|e| e == "py") {
        let mut command = Command::new(root.join(".venv/bin/python"));
        command.arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn sdk_config(endpoint: &str, key: &str, secret: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(rotation::http::aws_http_client())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        // As the functions have it (config::aws_timeouts).
        .timeout_config(rotation::config::aws_timeouts())
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                key, secret, None, None, "test",
            )),
        )
        .build()
}

impl Moto {
    pub async fn start() -> Self {
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
        // The first SEED_REQUESTS calls go unchecked; any signature will do.
        let anonymous = sdk_config(&endpoint, "AKIASEEDSEEDSEEDSEED", "seed");
        let (key, secret) =
            user_with_key(&aws_sdk_iam::Client::new(&anonymous), "rotator-admin").await;
        let admin = sdk_config(&endpoint, &key, &secret);
        // From here on, moto checks every signature.
        Self {
            _fork: fork,
            endpoint,
            admin,
        }
    }

    /// The next DynamoDB PutItem whose request body contains `text` fails (a
    /// ValidationException, not retried): a ledger write that fails between others.
    pub async fn fail_next_dynamodb_write_containing(&self, text: &str) {
        use std::io::Read;
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST /_test/fail_dynamodb_writes_containing HTTP/1.1\r\nHost: {address}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.admin)
    }

    pub fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.admin)
    }

    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.admin)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.admin)
    }

    /// The ledger table, as template.yaml creates it: one item per IAM user.
    pub async fn create_ledger_table(&self, name: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        self.dynamodb()
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("iam_user_name")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("iam_user_name")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Whether STS accepts this key pair, and as whom.
    pub async fn caller(&self, key: &str, secret: &str) -> Result<String, String> {
        let config = sdk_config(&self.endpoint, key, secret);
        aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .map(|o| o.arn().unwrap_or_default().to_string())
            .map_err(|e| {
                format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(e)
                )
            })
    }
}

/// Creates an IAM user allowed everything, with one access key: (id, secret).
pub async fn user_with_key(iam: &aws_sdk_iam::Client, name: &str) -> (String, String) {
    iam.create_user().user_name(name).send().await.unwrap();
    iam.put_user_policy()
        .user_name(name)
        .policy_name("allow-all")
        .policy_document(allow_all())
        .send()
        .await
        .unwrap();
    let output = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap();
    let key = output.access_key().unwrap();
    (
        key.access_key_id().to_string(),
        key.secret_access_key().to_string(),
    )
}

pub fn allow_all() -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}).to_string()
}

/// What a Qovery credentials entry of the seeded organization holds.
#[derive(Debug, Clone)]
pub enum Holds {
    /// The IAM user's key (with its real secret).
    UserKey,
    /// A key that is not the user's.
    Key(&'static str),
    /// Role credentials: no key at all.
    Role,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: &'static str,
    pub name: &'static str,
    pub holds: Holds,
}

impl Entry {
    pub fn new(id: &'static str, name: &'static str, holds: Holds) -> Self {
        Self { id, name, holds }
    }
}

/// A whole world to rotate in: the IAM user with one key that Qovery holds, the token
/// secret, and a fake Qovery organization with clusters using the credentials.
pub struct World {
    pub moto: Moto,
    pub fake: RunningFake,
    pub deps: Deps,
    pub old_key: String,
    pub old_secret: String,
    /// A state machine in moto, for preflight's guard against concurrent rotations.
    pub state_machine_arn: String,
    /// The seed the fake started from: `reseed` keeps the clusters' behaviour from it.
    seed: Mutex<Seed>,
}

pub struct WorldOptions {
    pub credentials: Vec<Entry>,
    pub clusters: Vec<SeedCluster>,
    /// Holders of other kinds; `USER_KEY` as a key id (or secret) stands for the
    /// user's key (or its secret), in these and in the clusters' accesses and DNS.
    pub container_registries: Vec<SeedRegistry>,
    pub helm_repositories: Vec<SeedRegistry>,
    /// Keys of the user besides the one Qovery holds, created before anything runs.
    pub extra_keys: usize,
}

impl Default for WorldOptions {
    /// "aws-prod" holds the user's key; `production` and `staging` use it.
    fn default() -> Self {
        Self {
            credentials: vec![Entry::new(CREDS, "aws-prod", Holds::UserKey)],
            clusters: vec![
                SeedCluster::new(CLUSTER_A, "production", CREDS),
                SeedCluster::new(CLUSTER_B, "staging", CREDS),
            ],
            container_registries: Vec::new(),
            helm_repositories: Vec::new(),
            extra_keys: 0,
        }
    }
}

impl WorldOptions {
    /// Two entries set up with the same user: "aws-prod" (production, staging) and
    /// "aws-us" (us-production).
    pub fn shared_key() -> Self {
        let mut options = Self::default();
        options
            .credentials
            .push(Entry::new(CREDS_US, "aws-us", Holds::UserKey));
        options
            .clusters
            .push(SeedCluster::new(CLUSTER_C, "us-production", CREDS_US));
        options
    }
}

impl World {
    pub async fn new() -> Self {
        Self::with(WorldOptions::default()).await
    }

    pub async fn shared_key() -> Self {
        Self::with(WorldOptions::shared_key()).await
    }

    /// A world with one cluster, `production`, shaped by `configure`.
    pub async fn with_production(configure: impl FnOnce(&mut SeedCluster)) -> Self {
        let mut production = SeedCluster::new(CLUSTER_A, "production", CREDS);
        configure(&mut production);
        Self::with(WorldOptions {
            clusters: vec![production],
            ..Default::default()
        })
        .await
    }

    pub async fn with(options: WorldOptions) -> Self {
        let moto = Moto::start().await;
        let iam = moto.iam();
        // Qovery's user needs broad rights in real life; here STS is what matters.
        let (old_key, old_secret) = user_with_key(&iam, USER).await;
        for _ in 0..options.extra_keys {
            iam.create_access_key()
                .user_name(USER)
                .send()
                .await
                .unwrap();
        }
        moto.secrets()
            .create_secret()
            .name(TOKEN_SECRET)
            .secret_string(TOKEN)
            .send()
            .await
            .unwrap();

        let machine = moto
            .sfn()
            .create_state_machine()
            .name("rotation")
            .definition(
                r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":3600,"End":true}}}"#,
            )
            .role_arn("arn:aws:iam::123456789012:role/rotation")
            .send()
            .await
            .unwrap();
        let state_machine_arn = machine.state_machine_arn().to_string();

        let credentials = options
            .credentials
            .iter()
            .map(|entry| match entry.holds {
                Holds::UserKey => SeedCredentials::new(entry.id, entry.name, &old_key, &old_secret),
                Holds::Key(key) => {
                    SeedCredentials::new(entry.id, entry.name, key, "a-secret-of-another-key")
                }
                Holds::Role => SeedCredentials::role(
                    entry.id,
                    entry.name,
                    "arn:aws:iam::123456789012:role/qovery",
                ),
            })
            .collect();
        let mut seed = Seed {
            token: TOKEN.to_string(),
            organization_id: ORG.to_string(),
            credentials,
            clusters: options.clusters,
            container_registries: options.container_registries,
            helm_repositories: options.helm_repositories,
        };
        fill_user_key(&mut seed, &old_key, &old_secret);
        let fake = FakeQovery::new(seed.clone()).spawn(0).await.unwrap();
        moto.create_ledger_table(LEDGER_TABLE).await;
        let settings = Settings {
            qovery_api_url: fake.base_url.clone(),
            qovery_token_secret_id: TOKEN_SECRET.to_string(),
            key_secret_prefix: KEY_SECRET_PREFIX.to_string(),
            ledger_table: LEDGER_TABLE.to_string(),
            // Executions here end and are taken over at once; the grace has its own test.
            takeover_grace_seconds: 0,
        };
        let deps = Deps::new(moto.admin.clone(), settings);
        Self {
            moto,
            fake,
            deps,
            old_key,
            old_secret,
            state_machine_arn,
            seed: Mutex::new(seed),
        }
    }

    /// The execution input: no `credentials_id` (the entries are found from the key).
    pub fn input(&self) -> Value {
        json!({"iam_user_name": USER, "organization_id": ORG,
               "drain_seconds": 60, "allow_short_drain": true, "key_idle_seconds": 60,
               "poll_interval_seconds": 10, "deploy_timeout_seconds": 600})
    }

    /// Preflight's event, built as the ASL's `Preflight` state builds it.
    pub fn preflight_event(&self, input: Value) -> Value {
        self.preflight_event_for(EXECUTION, input)
    }

    pub fn preflight_event_for(&self, execution: &str, input: Value) -> Value {
        let context = json!({"Execution": {"Id": execution},
                             "StateMachine": {"Id": self.state_machine_arn}});
        task_input("Preflight", &input, &context)
    }

    // ---- what exists in IAM ----

    pub async fn keys(&self) -> Vec<KeySummary> {
        rotation::iam::list_access_keys(&self.moto.iam(), USER)
            .await
            .unwrap()
    }

    pub async fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .keys()
            .await
            .into_iter()
            .map(|k| k.access_key_id)
            .collect();
        ids.sort();
        ids
    }

    /// `Active` or `Inactive`; `None` if the user has no such key.
    /// An execution RUNNING in moto's Step Functions, as preflight sees a live rotation.
    pub async fn running_execution(&self) -> String {
        self.moto
            .sfn()
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .input(self.input().to_string())
            .send()
            .await
            .unwrap()
            .execution_arn()
            .to_string()
    }

    pub async fn key_status(&self, key: &str) -> Option<String> {
        self.keys()
            .await
            .into_iter()
            .find(|k| k.access_key_id == key)
            .map(|k| k.status)
    }

    // ---- what exists in Qovery ----

    /// The execution that holds the user's rotation lock (there must be one).
    pub async fn lock_holder(&self) -> String {
        self.deps
            .ledger
            .read(USER)
            .await
            .unwrap()
            .expect("a ledger record of the user")
            .execution_id
    }

    /// A second key of the user made outside the rotation (a person, a script): its id.
    pub async fn key_made_by_someone_else(&self) -> String {
        self.moto
            .iam()
            .create_access_key()
            .user_name(USER)
            .send()
            .await
            .unwrap()
            .access_key()
            .unwrap()
            .access_key_id()
            .to_string()
    }

    /// The key id and secret that credentials entry `id` holds now.
    pub fn held_by(&self, id: &str) -> (String, String) {
        let entry = self
            .fake
            .snapshot()
            .credentials
            .into_iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no credentials {id} in the fake"));
        (entry.access_key_id, entry.secret_access_key)
    }

    /// The key each credentials entry holds now, by id.
    pub fn holders(&self) -> Vec<(String, String)> {
        self.fake
            .snapshot()
            .credentials
            .into_iter()
            .map(|c| (c.id, c.access_key_id))
            .collect()
    }

    /// `(kind, id, key id)` of every holder of an AWS key in the fake, of every kind.
    pub fn every_holder(&self) -> Vec<(&'static str, String, String)> {
        let snapshot = self.fake.snapshot();
        let mut all: Vec<(&'static str, String, String)> = Vec::new();
        for c in snapshot.credentials {
            all.push(("credentials", c.id, c.access_key_id));
        }
        for r in snapshot.container_registries {
            all.push((
                "container_registry",
                r.id,
                r.access_key_id.unwrap_or_default(),
            ));
        }
        for r in snapshot.helm_repositories {
            all.push(("helm_repository", r.id, r.access_key_id.unwrap_or_default()));
        }
        for c in snapshot.clusters {
            for a in c.secret_manager_accesses {
                all.push((
                    "secret_manager_access",
                    a.id,
                    a.access_key.unwrap_or_default(),
                ));
            }
            if let Some(dns) = c.dns_provider {
                all.push(("dns_provider", c.id, dns.aws_access_key_id));
            }
        }
        all
    }

    /// The key id and secret a container registry (or helm repository) holds now.
    pub fn registry_key(&self, id: &str) -> (String, String) {
        let snapshot = self.fake.snapshot();
        let registry = snapshot
            .container_registries
            .into_iter()
            .chain(snapshot.helm_repositories)
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no registry {id} in the fake"));
        (
            registry.access_key_id.unwrap_or_default(),
            registry.secret_access_key.unwrap_or_default(),
        )
    }

    pub fn cluster(&self, id: &str) -> ClusterSnapshot {
        self.fake
            .snapshot()
            .clusters
            .into_iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no cluster {id} in the fake"))
    }

    /// `(cluster id, deploy count)` for every cluster.
    pub fn deploy_counts(&self) -> Vec<(String, u32)> {
        let mut counts: Vec<(String, u32)> = self
            .fake
            .snapshot()
            .clusters
            .into_iter()
            .map(|c| (c.id, c.deploy_count))
            .collect();
        counts.sort();
        counts
    }

    /// How many calls of a Qovery operation the fake answered (since the last reseed).
    pub fn calls(&self, operation: &str) -> usize {
        self.fake
            .snapshot()
            .requests
            .iter()
            .filter(|r| r.operation == operation)
            .count()
    }

    /// Changes Qovery's state behind the rotation's back, as someone in the console (or
    /// a PUT whose answer was lost) would. Starts from what the fake holds now: each
    /// entry's key and secret and each cluster's status, execution and date are kept;
    /// `change` edits that. The fake's request log and deploy counts start again.
    pub fn reseed(&self, change: impl FnOnce(&mut Seed)) {
        let snapshot = self.fake.snapshot();
        let mut seed = self.seed.lock().unwrap();
        for credentials in &mut seed.credentials {
            if let Some(now) = snapshot.credentials.iter().find(|c| c.id == credentials.id) {
                credentials.access_key_id = now.access_key_id.clone();
                credentials.secret_access_key = now.secret_access_key.clone();
                if !now.access_key_id.is_empty() {
                    credentials.role_arn = None;
                }
            }
        }
        for cluster in &mut seed.clusters {
            if let Some(now) = snapshot.clusters.iter().find(|c| c.id == cluster.id) {
                cluster.status = now.status.clone();
                cluster.last_execution_id = now.last_execution_id.clone();
                cluster.last_deployment_date = now.last_deployment_date.clone();
                if let (Some(dns), Some(now)) = (&mut cluster.dns_provider, &now.dns_provider) {
                    dns.aws_access_key_id = now.aws_access_key_id.clone();
                    dns.aws_secret_access_key = now.aws_secret_access_key.clone();
                }
            }
        }
        let registries_now: Vec<_> = snapshot
            .container_registries
            .iter()
            .chain(&snapshot.helm_repositories)
            .collect();
        {
            let seed = &mut *seed;
            for registry in seed
                .container_registries
                .iter_mut()
                .chain(seed.helm_repositories.iter_mut())
            {
                if let Some(now) = registries_now.iter().find(|r| r.id == registry.id) {
                    registry.access_key_id = now.access_key_id.clone();
                    registry.secret_access_key = now.secret_access_key.clone();
                }
            }
        }
        change(&mut seed);
        self.fake.set_state(seed.clone());
    }

    /// Makes credentials entry `id` hold `key` (with `secret`), as if Qovery had taken it.
    pub fn qovery_takes(&self, id: &str, key: &str, secret: &str) {
        self.reseed(|seed| {
            let entry = seed
                .credentials
                .iter_mut()
                .find(|c| c.id == id)
                .unwrap_or_else(|| panic!("no credentials {id} in the seed"));
            entry.access_key_id = key.to_string();
            entry.secret_access_key = secret.to_string();
        });
    }

    // ---- what exists in Secrets Manager ----

    /// The secret an execution keeps its new key in.
    pub fn key_secret_name(&self, execution: &str) -> String {
        self.deps.settings.key_secret_name(USER, execution)
    }

    /// Every version of every secret moto has, planned deletions and deprecated
    /// versions included, each read by its VersionId (moto's stages are not reliable).
    pub async fn stored_secrets(&self) -> Vec<StoredVersion> {
        let secrets = self.moto.secrets();
        let mut stored = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = secrets
                .list_secrets()
                .include_planned_deletion(true)
                .set_next_token(next.clone())
                .send()
                .await
                .unwrap();
            for secret in page.secret_list() {
                let arn = secret.arn().unwrap().to_string();
                let versions = secrets
                    .list_secret_version_ids()
                    .secret_id(&arn)
                    .include_deprecated(true)
                    .send()
                    .await
                    .unwrap();
                for version in versions.versions() {
                    let version_id = version.version_id().unwrap().to_string();
                    // A secret scheduled for deletion cannot be read, but can be restored.
                    let text = match secrets
                        .get_secret_value()
                        .secret_id(&arn)
                        .version_id(&version_id)
                        .send()
                        .await
                    {
                        Ok(value) => value.secret_string().unwrap_or_default().to_string(),
                        Err(e) if secret.deleted_date().is_some() => format!(
                            "(unreadable while scheduled for deletion: {})",
                            aws_smithy_types::error::display::DisplayErrorContext(e)
                        ),
                        Err(e) => panic!(
                            "{}",
                            aws_smithy_types::error::display::DisplayErrorContext(e)
                        ),
                    };
                    stored.push(StoredVersion {
                        name: secret.name().unwrap_or_default().to_string(),
                        version_id,
                        stages: version.version_stages().to_vec(),
                        planned_deletion: secret.deleted_date().is_some(),
                        text,
                    });
                }
            }
            next = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        stored
    }

    /// Names of the secrets moto has, planned deletions included.
    pub async fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .stored_secrets()
            .await
            .into_iter()
            .map(|v| v.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Panics if any version of any secret holds a secret access key: the field, the
    /// old key's secret, or any of `also` (the new key's secret, read earlier); or if a
    /// secret other than the token is only scheduled for deletion (it can be restored).
    pub async fn assert_no_secret_holds_a_key(&self, also: &[&str]) {
        let stored = self.stored_secrets().await;
        assert!(
            stored
                .iter()
                .any(|v| v.name == TOKEN_SECRET && v.text == TOKEN),
            "sanity: the listing reads the token secret"
        );
        for version in stored {
            let text = &version.text;
            let leaked = version.planned_deletion
                || text.contains("secret_access_key")
                || text.contains(&self.old_secret)
                || also.iter().any(|s| !s.is_empty() && text.contains(s));
            assert!(
                !leaked,
                "secret {} version {} ({:?}) holds a secret access key",
                version.name, version.version_id, version.stages
            );
        }
    }

    /// The secret access key stored for an execution's new key, read by VersionId.
    pub async fn stored_secret(&self, state: &RotationState) -> String {
        let value = self
            .moto
            .secrets()
            .get_secret_value()
            .secret_id(state.key_secret_id.as_deref().unwrap())
            .version_id(state.new_key_version_id.as_deref().unwrap())
            .send()
            .await
            .unwrap();
        let parsed: Value = serde_json::from_str(value.secret_string().unwrap()).unwrap();
        assert_eq!(
            parsed["access_key_id"].as_str(),
            state.new_access_key_id.as_deref()
        );
        parsed["secret_access_key"].as_str().unwrap().to_string()
    }
}

#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub name: String,
    pub version_id: String,
    pub stages: Vec<String>,
    /// Deleted with a recovery window: restorable, so it still holds its value.
    pub planned_deletion: bool,
    pub text: String,
}

// ---- the state machine's own plumbing, read from statemachine/rotation.asl.json ----

/// The state machine definition the tests build step inputs from, so that a step is
/// called with exactly what the ASL would pass it.
pub fn asl() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../statemachine/rotation.asl.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The state called `name`, at the top level or inside a Map.
pub fn asl_state(name: &str) -> Value {
    fn find(states: &Value, name: &str) -> Option<Value> {
        let states = states.as_object()?;
        if let Some(state) = states.get(name) {
            return Some(state.clone());
        }
        states
            .values()
            .filter_map(|s| s.get("ItemProcessor").or_else(|| s.get("Iterator")))
            .find_map(|inner| find(&inner["States"], name))
    }
    find(&asl()["States"], name).unwrap_or_else(|| panic!("no state {name} in the ASL"))
}

/// A path of the ASL (`$`, `$.a.b`, `$$.Map.Item.Value.id`) read from `input` or, for
/// `$$`, from the context object. A missing field fails, as it does in Step Functions.
fn read_path(path: &str, input: &Value, context: &Value) -> Value {
    let (root, rest) = match path.strip_prefix("$$") {
        Some(rest) => (context, rest),
        None => (input, path.strip_prefix('$').expect("a path starts with $")),
    };
    rest.split('.')
        .filter(|part| !part.is_empty())
        .try_fold(root, |value, part| value.get(part))
        .unwrap_or_else(|| panic!("the ASL path {path} matches nothing"))
        .clone()
}

/// `Parameters` or `ItemSelector` applied to `input`.
pub fn apply_template(template: &Value, input: &Value, context: &Value) -> Value {
    match template {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| match key.strip_suffix(".$") {
                    Some(key) => (
                        key.to_string(),
                        read_path(value.as_str().unwrap(), input, context),
                    ),
                    None => (key.clone(), apply_template(value, input, context)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What the task state `name` passes its Lambda, given the state's input.
pub fn task_input(name: &str, input: &Value, context: &Value) -> Value {
    let state = asl_state(name);
    assert_eq!(state["Type"], "Task", "{name}");
    assert!(
        state.get("InputPath").is_none(),
        "{name}: InputPath is not modelled here"
    );
    match state.get("Parameters") {
        Some(parameters) => apply_template(parameters, input, context),
        None => input.clone(),
    }
}

/// `input` with `result` stored at the `ResultPath` of state `name`.
pub fn with_result(name: &str, input: &Value, result: Value) -> Value {
    let state = asl_state(name);
    let path = state["ResultPath"].as_str().expect("a ResultPath");
    let field = path.strip_prefix("$.").expect("a ResultPath of one field");
    let mut output = input.clone();
    output[field] = result;
    output
}

/// `input` with `error` stored where the `Catch` of state `name` that leads to `next`
/// puts it.
pub fn with_caught_error(name: &str, next: &str, input: &Value, error: Value) -> Value {
    let state = asl_state(name);
    let catch = state["Catch"]
        .as_array()
        .expect("a Catch")
        .iter()
        .find(|c| c["Next"] == next)
        .unwrap_or_else(|| panic!("{name} has no Catch leading to {next}"));
    let path = catch["ResultPath"].as_str().expect("a ResultPath");
    let field = path.strip_prefix("$.").expect("a ResultPath of one field");
    let mut output = input.clone();
    output[field] = error;
    output
}

/// The items of the `DeployWave` Maps for a state, wave after wave: each cluster's,
/// built by the outer Map's ItemSelector (one item per wave), then the inner one's.
pub fn map_items(state: &RotationState) -> Vec<Value> {
    let waves = asl_state("DeployClusters");
    let wave = &waves["ItemProcessor"]["States"]["DeployWave"];
    let input = serde_json::to_value(state).unwrap();
    let selected = |map: &Value, input: &Value| -> Vec<Value> {
        let items = read_path(map["ItemsPath"].as_str().unwrap(), input, &json!({}));
        items
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let context = json!({"Map": {"Item": {"Index": index, "Value": item}}});
                apply_template(&map["ItemSelector"], input, &context)
            })
            .collect()
    };
    selected(&waves, &input)
        .iter()
        .flat_map(|wave_input| selected(wave, wave_input))
        .collect()
}

/// The Map item of one cluster.
pub fn map_item(state: &RotationState, cluster_id: &str) -> Value {
    map_items(state)
        .into_iter()
        .find(|item| item["cluster_id"] == cluster_id)
        .unwrap_or_else(|| panic!("cluster {cluster_id} is not in the plan"))
}

/// The error name and message of a failed step.
pub fn failure<T: std::fmt::Debug>(
    result: Result<T, rotation::RotationError>,
) -> (&'static str, String) {
    match result {
        Ok(value) => panic!("expected a failure, got {value:?}"),
        Err(e) => (e.name(), e.message().to_string()),
    }
}

// ---- each step, called with the input the ASL gives it ----

pub fn value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

/// The context object of the execution a state belongs to (`$$.Execution.Id`).
pub fn context_of(state: &RotationState) -> Value {
    json!({
        "Execution": {"Id": state.execution_id, "StartTime": state.preflight_at},
        "StateMachine": {"Id": state.state_machine_arn}
    })
}

pub fn no_context() -> Value {
    json!({})
}

pub async fn preflighted(world: &World) -> RotationState {
    preflight::handle(&world.deps, world.preflight_event(world.input()))
        .await
        .unwrap()
}

pub async fn create(world: &World, state: &RotationState) -> Result<RotationState, RotationError> {
    let input = task_input("CreateKey", &value(state), &no_context());
    create_key::handle(&world.deps, input).await
}

pub async fn created(world: &World) -> RotationState {
    let state = preflighted(world).await;
    create(world, &state).await.unwrap()
}

pub async fn update(world: &World, state: &RotationState) -> Result<RotationState, RotationError> {
    let input = task_input("UpdateQovery", &value(state), &no_context());
    update_qovery::handle(&world.deps, input)
        .await
        .map(|output| serde_json::from_value(output).unwrap())
}

pub async fn reconcile(world: &World, state: &RotationState) -> ReconcileResult {
    let input = task_input("ReconcileHandOver", &value(state), &no_context());
    let output = update_qovery::handle(&world.deps, input).await.unwrap();
    serde_json::from_value(output).unwrap()
}

pub async fn handed_over(world: &World) -> RotationState {
    let state = created(world).await;
    update(world, &state).await.unwrap()
}

/// `QuarantineOldKey`, with the input the ASL gives it.
pub async fn quarantine(
    world: &World,
    state: &RotationState,
) -> Result<QuarantineResult, RotationError> {
    quarantine::handle(
        &world.deps,
        task_input("QuarantineOldKey", &value(state), &context_of(state)),
    )
    .await
}

/// The state as DeleteOldKey gets it: QuarantineOldKey ran at the drain's end, with
/// `quarantine_seconds` (0: the old key stays on, as with a quarantine of 0).
pub async fn drained(
    world: &World,
    state: RotationState,
    quarantine_seconds: u64,
) -> RotationState {
    let mut state = state;
    state.quarantine_seconds = quarantine_seconds;
    state.quarantine = Some(quarantine(world, &state).await.unwrap());
    state
}

/// `DeleteOldKey` (retire) or `RollbackNewKey`, with the input the ASL gives it. Before
/// DeleteOldKey, QuarantineOldKey runs first as in the state machine, unless the state
/// already went through it.
pub async fn delete(
    world: &World,
    task: &str,
    state: &RotationState,
) -> Result<DeleteKeyResult, RotationError> {
    let mut state = state.clone();
    if task == "DeleteOldKey" && state.quarantine.is_none() {
        state.quarantine = Some(quarantine(world, &state).await?);
    }
    delete_key::handle(
        &world.deps,
        task_input(task, &value(&state), &context_of(&state)),
    )
    .await
}

/// One iteration of the `DeployClusters` Map, run as its Choice states run it:
/// DeployCluster again while `awaiting_idle`, done if `skipped`, else CheckStatus
/// until `deployed` (errors end it).
pub async fn run_iteration(world: &World, item: Value) -> Result<ClusterDeployment, RotationError> {
    let mut cluster = deploy_cluster::handle(&world.deps, item).await?;
    let mut deploy_calls = 1;
    while cluster.phase == Some(Phase::AwaitingIdle) {
        deploy_calls += 1;
        assert!(deploy_calls < 20, "still awaiting idle: {cluster:?}");
        cluster = deploy_cluster::handle(&world.deps, value(&cluster)).await?;
    }
    if cluster.phase == Some(Phase::Skipped) {
        return Ok(cluster);
    }
    poll_until_done(world, cluster).await
}

pub async fn poll_until_done(
    world: &World,
    mut cluster: ClusterDeployment,
) -> Result<ClusterDeployment, RotationError> {
    for _ in 0..20 {
        cluster = check_status::handle(&world.deps, value(&cluster)).await?;
        if cluster.phase == Some(Phase::Deployed) {
            return Ok(cluster);
        }
    }
    panic!("still {:?} after 20 polls", cluster.status)
}

/// Any run of this many characters of a secret counts as a leak: an error page cut in
/// the middle of a secret still gives its first part away.
pub const PIECE: usize = 12;

/// A piece of `secret` of `PIECE` characters (the whole of a shorter one) in `text`.
pub fn leaked_piece<'a>(secret: &'a str, text: &str) -> Option<&'a str> {
    let starts: Vec<usize> = secret
        .char_indices()
        .map(|(i, _)| i)
        .chain([secret.len()])
        .collect();
    let n = PIECE.min(starts.len() - 1);
    starts
        .windows(n + 1)
        .map(|w| &secret[w[0]..w[n]])
        .find(|piece| !piece.is_empty() && text.contains(piece))
}

/// Fails, naming `what` but never the piece, if `text` holds a piece of `secret`.
pub fn assert_no_piece(secret: &str, text: &str, what: &str) {
    if let Some(piece) = leaked_piece(secret, text) {
        panic!(
            "SECRET LEAKED: {} characters of the {what}",
            piece.chars().count()
        );
    }
}

/// Puts the user's key and secret where a seed says `USER_KEY`.
fn fill_user_key(seed: &mut Seed, key: &str, secret: &str) {
    let fill = |value: &mut String, real: &str| {
        if value == USER_KEY {
            *value = real.to_string();
        }
    };
    let fill_opt = |value: &mut Option<String>, real: &str| {
        if value.as_deref() == Some(USER_KEY) {
            *value = Some(real.to_string());
        }
    };
    for registry in seed
        .container_registries
        .iter_mut()
        .chain(seed.helm_repositories.iter_mut())
    {
        fill_opt(&mut registry.access_key_id, key);
        fill_opt(&mut registry.secret_access_key, secret);
    }
    for cluster in &mut seed.clusters {
        for access in &mut cluster.secret_manager_accesses {
            fill_opt(&mut access.access_key, key);
            fill_opt(&mut access.secret_key, secret);
        }
        if let Some(dns) = &mut cluster.dns_provider {
            fill(&mut dns.aws_access_key_id, key);
            fill(&mut dns.aws_secret_access_key, secret);
        }
    }
}

// ---- a role for a move to an IAM role ----

/// The role the migration tests move Qovery to, in moto's account.
pub const ROLE_NAME: &str = "qovery-engine";
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/qovery-engine";
/// Qovery's principal as a role's trust policy names it: another account.
pub const QOVERY_ACCOUNT: &str = "arn:aws:iam::999999999999:root";

/// A trust policy letting `principal` assume the role, under `condition` if any.
pub fn trusting(principal: &str, condition: Option<Value>) -> String {
    let mut statement = json!({"Effect": "Allow", "Principal": {"AWS": principal},
                               "Action": "sts:AssumeRole"});
    if let Some(condition) = condition {
        statement["Condition"] = condition;
    }
    json!({"Version": "2012-10-17", "Statement": [statement]}).to_string()
}

/// Creates ROLE_NAME at `path` with trust policy `trust`.
pub async fn create_role(world: &World, path: &str, trust: &str) {
    world
        .moto
        .iam()
        .create_role()
        .role_name(ROLE_NAME)
        .path(path)
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
}
