//! The harness for the handler tests: a real moto server (IAM, STS, Secrets Manager,
//! Step Functions) with key checks on, and the fake Qovery, both on 127.0.0.1.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use qovery_fake::{FakeQovery, RunningFake, Seed, SeedCluster, SeedCredentials};
use rotation::state::KeySummary;
use rotation::{Deps, Settings};
use serde_json::{json, Value};

pub const ORG: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
pub const CREDS: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
pub const CLUSTER_A: &str = "0b7a9c2e-1d2f-4e5a-8b6c-7d8e9f0a1b2c";
pub const CLUSTER_B: &str = "1c8b0d3f-2e3a-4f6b-9c7d-8e9f0a1b2c3d";
pub const TOKEN: &str = "qov_t0ken-that-must-never-leak-8c1f";
pub const TOKEN_SECRET: &str = "test/qovery-api-token";
pub const USER: &str = "qovery";
pub const EXECUTION: &str = "arn:aws:states:us-east-1:123456789012:execution:rotation:run-1";

/// Requests moto serves before it starts checking signatures: exactly the ones that
/// seed the admin user and its key.
const SEED_REQUESTS: usize = 3;

/// A moto server process, killed when dropped (also when a test panics).
pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// Signed with the admin key: for seeding and for checking what exists afterwards.
    pub admin: SdkConfig,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> PathBuf {
    let path = std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
        });
    assert!(
        path.exists(),
        "moto_server not found at {}; run `make tools` first",
        path.display()
    );
    path
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
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", SEED_REQUESTS.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "moto did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The first SEED_REQUESTS calls go unchecked; any signature will do.
        let anonymous = sdk_config(&endpoint, "AKIASEEDSEEDSEEDSEED", "seed");
        let (key, secret) =
            user_with_key(&aws_sdk_iam::Client::new(&anonymous), "rotator-admin").await;
        let admin = sdk_config(&endpoint, &key, &secret);
        // From here on, moto checks every signature.
        Self {
            child,
            endpoint,
            admin,
        }
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
}

pub struct WorldOptions {
    pub clusters: Vec<SeedCluster>,
    pub extra_keys: usize,
    /// The key id Qovery holds; `None` means the user's key.
    pub qovery_key: Option<String>,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            clusters: vec![
                SeedCluster::new(CLUSTER_A, "production", CREDS),
                SeedCluster::new(CLUSTER_B, "staging", CREDS),
            ],
            extra_keys: 0,
            qovery_key: None,
        }
    }
}

impl World {
    pub async fn new() -> Self {
        Self::with(WorldOptions::default()).await
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

        let held = options.qovery_key.unwrap_or_else(|| old_key.clone());
        let seed = Seed {
            token: TOKEN.to_string(),
            organization_id: ORG.to_string(),
            credentials: vec![SeedCredentials::new(CREDS, "aws-prod", &held, &old_secret)],
            clusters: options.clusters,
        };
        let fake = FakeQovery::new(seed).spawn(0).await.unwrap();
        let settings = Settings {
            qovery_api_url: fake.base_url.clone(),
            qovery_token_secret_id: TOKEN_SECRET.to_string(),
            key_secret_prefix: "qovery-key-rotator".to_string(),
        };
        let deps = Deps::new(moto.admin.clone(), settings);
        Self {
            moto,
            fake,
            deps,
            old_key,
            old_secret,
            state_machine_arn,
        }
    }

    pub fn preflight_event(&self, input: Value) -> Value {
        json!({"input": input, "execution_id": EXECUTION, "state_machine_arn": self.state_machine_arn})
    }

    pub fn input(&self) -> Value {
        json!({"iam_user_name": USER, "organization_id": ORG, "credentials_id": CREDS,
               "drain_seconds": 60, "allow_short_drain": true, "poll_interval_seconds": 10})
    }

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

    /// The key id and secret the fake Qovery holds now.
    pub fn qovery_holds(&self) -> (String, String) {
        let credentials = self.fake.snapshot().credentials.into_iter().next().unwrap();
        (credentials.access_key_id, credentials.secret_access_key)
    }

    pub fn cluster_status(&self, id: &str) -> String {
        self.fake
            .snapshot()
            .clusters
            .into_iter()
            .find(|c| c.id == id)
            .unwrap()
            .status
    }

    /// Every version of the key secret with its stages.
    pub async fn key_secret_stages(&self) -> Vec<(String, Vec<String>)> {
        let name = self.deps.settings.key_secret_name(USER);
        let mut stages = rotation::secrets_manager::version_stages(&self.moto.secrets(), &name)
            .await
            .unwrap();
        stages.sort();
        stages
    }

    /// The secret access key stored for the new key (read by version id, as moto's
    /// stage quirks require).
    pub async fn stored_secret(&self, version_id: &str) -> String {
        let name = self.deps.settings.key_secret_name(USER);
        let value = self
            .moto
            .secrets()
            .get_secret_value()
            .secret_id(name)
            .version_id(version_id)
            .send()
            .await
            .unwrap();
        let parsed: Value = serde_json::from_str(value.secret_string().unwrap()).unwrap();
        parsed["secret_access_key"].as_str().unwrap().to_string()
    }
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
