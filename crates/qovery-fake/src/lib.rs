//! A stateful fake of the Qovery API, for the handler tests and the local demo.
//!
//! It serves the few endpoints the rotator calls, with the paths, status codes and
//! bodies of Qovery's published OpenAPI spec, so that a spec-validating proxy in front
//! of it finds nothing to complain about. The control API under `/_fake/` (and the
//! matching methods on [`RunningFake`]) lets a test seed the state, inject faults and
//! read back what happened, including the secret key Qovery was given.
//!
//! Qovery keeps the same AWS access key in several objects, each with its own copy of
//! the secret: credentials entries, container registries and helm repositories
//! ([`SeedRegistry`]), a cluster's secret manager accesses and Route53 DNS provider
//! ([`SeedSecretManagerAccess`], [`SeedDnsProvider`]). The PUTs that replace a
//! registry or a DNS provider are strict: a body that does not send back every field
//! unchanged is refused, so that a client which would damage an object fails in tests.

mod cluster_keys;
mod registry;
mod replace;
mod role_check;
mod routes;
mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::registry::RegistryList;
use crate::state::State;

pub use crate::cluster_keys::{
    DnsProviderSnapshot, SecretManagerAccessSnapshot, SeedDnsProvider, SeedSecretManagerAccess,
};
pub use crate::registry::{RegistrySnapshot, SeedRegistry};
pub use crate::role_check::{RoleCheck, RoleDeploys, StsConfig};

/// The whole state of the fake: one organization, its AWS credentials, clusters,
/// container registries and helm repositories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// The only API token accepted, sent as `Authorization: Token <token>`.
    /// Empty means that no request is authorized.
    #[serde(default)]
    pub token: String,
    /// A UUID; empty means there is no organization, so every API call gets 404.
    #[serde(default)]
    pub organization_id: String,
    #[serde(default)]
    pub credentials: Vec<SeedCredentials>,
    #[serde(default)]
    pub clusters: Vec<SeedCluster>,
    /// Kinds from `ContainerRegistryKindEnum`.
    #[serde(default)]
    pub container_registries: Vec<SeedRegistry>,
    /// Kinds from `HelmRepositoryKindEnum`.
    #[serde(default)]
    pub helm_repositories: Vec<SeedRegistry>,
}

/// A set of static AWS credentials (`object_type: "AWS"` in the spec), or role
/// credentials (`AWS_ROLE`) when `role_arn` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCredentials {
    /// A UUID.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub access_key_id: String,
    #[serde(default)]
    pub secret_access_key: String,
    /// Role credentials hold no key: listed as `AwsRoleClusterCredentials`. A PUT of
    /// static keys turns them into static credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

impl SeedCredentials {
    pub fn new(id: &str, name: &str, access_key_id: &str, secret_access_key: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            role_arn: None,
        }
    }

    /// Role credentials (`object_type: "AWS_ROLE"`).
    pub fn role(id: &str, name: &str, role_arn: &str) -> Self {
        Self {
            role_arn: Some(role_arn.to_owned()),
            ..Self::new(id, name, "", "")
        }
    }
}

/// A cluster and how it behaves when deployed and polled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCluster {
    /// A UUID.
    pub id: String,
    pub name: String,
    /// The id of one of the seeded credentials: the entry it starts on, which
    /// `specifyClusterCloudProviderInfo` can change (see `ClusterSnapshot`).
    pub credentials_id: String,
    /// The AWS region it runs in, as the cluster list shows it.
    #[serde(default = "default_region")]
    pub region: String,
    /// A `ClusterStateEnum` value.
    #[serde(default = "default_status")]
    pub status: String,
    /// `null` in JSON gives `None`; leaving it out gives a random past execution.
    #[serde(default = "state::past_execution_id")]
    pub last_execution_id: Option<String>,
    /// RFC 3339. `null` in JSON gives `None`; leaving it out gives a date a week ago.
    #[serde(default = "state::past_deployment_date")]
    pub last_deployment_date: Option<String>,
    /// Where a deployment ends, unless its credentials are a role that Qovery cannot
    /// assume (see [`RoleDeploys`]): then `INVALID_CREDENTIALS`.
    #[serde(default)]
    pub outcome: Outcome,
    /// How many status polls after each deploy still show the previous deployment.
    #[serde(default)]
    pub stale_polls: u32,
    /// For a cluster seeded busy: after this many status polls it settles to `DEPLOYED`.
    #[serde(default)]
    pub busy_polls: u32,
    /// Listed with the cluster (`listOrganizationCluster`); read-only in the fake.
    #[serde(default)]
    pub secret_manager_accesses: Vec<SeedSecretManagerAccess>,
    /// `None`: the cluster uses Qovery's own DNS.
    #[serde(default)]
    pub dns_provider: Option<SeedDnsProvider>,
}

fn default_status() -> String {
    "DEPLOYED".to_owned()
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

impl SeedCluster {
    /// A deployed cluster, with a past deployment, whose next deployment succeeds.
    pub fn new(id: &str, name: &str, credentials_id: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            credentials_id: credentials_id.to_owned(),
            region: default_region(),
            status: default_status(),
            last_execution_id: state::past_execution_id(),
            last_deployment_date: state::past_deployment_date(),
            outcome: Outcome::default(),
            stale_polls: 0,
            busy_polls: 0,
            secret_manager_accesses: Vec::new(),
            dns_provider: None,
        }
    }

    pub fn with_secret_manager_access(mut self, access: SeedSecretManagerAccess) -> Self {
        self.secret_manager_accesses.push(access);
        self
    }

    pub fn with_dns_provider(mut self, dns_provider: SeedDnsProvider) -> Self {
        self.dns_provider = Some(dns_provider);
        self
    }
}

/// Where a deployment of a cluster ends up, reached on the second status poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `DEPLOYED`.
    #[default]
    Deployed,
    /// `DEPLOYMENT_ERROR`.
    DeploymentError,
    /// `INVALID_CREDENTIALS`, what Qovery reports when the keys it holds do not work.
    InvalidCredentials,
    /// Stays `DEPLOYING` forever, to exercise the caller's timeout.
    Stuck,
}

/// Makes the next `times` calls of `operation` (a spec operationId, or `*` for any
/// API call) fail with `status`, before authentication is checked; with `after`, only
/// once that many calls of it have gone through.
///
/// By default the answer is Qovery's own `{status, error, message}` JSON and the call
/// changes nothing. Two modes model what sits between a client and Qovery:
/// - `echo_request`: a misbehaving gateway's `text/html` page that quotes the request
///   as it came: the request line, the `Authorization` header and the raw body;
/// - `apply`: the call is served for real (authentication included, so it changes
///   what it would change), then its answer is replaced by a gateway page with
///   `status`: a call that reached Qovery but whose answer was lost, such as a 504.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub operation: String,
    pub status: u16,
    #[serde(default = "one")]
    pub times: u32,
    /// Seconds, sent as a `Retry-After` header.
    #[serde(default)]
    pub retry_after: Option<u32>,
    /// Answer a gateway page quoting the request, secrets and all.
    #[serde(default)]
    pub echo_request: bool,
    /// Serve the call for real, then answer `status` instead.
    #[serde(default)]
    pub apply: bool,
    /// Let this many calls of `operation` through first (each call counts, even one
    /// that another fault fails).
    #[serde(default)]
    pub after: u32,
    /// Answer a redirect (`status` 301, 302, 303, 307 or 308) to this URL, as a proxy
    /// or a moved API might: a client that follows it sends the request there.
    #[serde(default)]
    pub location: Option<String>,
}

fn one() -> u32 {
    1
}

impl Fault {
    pub fn new(operation: &str, status: u16, times: u32) -> Self {
        Self {
            operation: operation.to_owned(),
            status,
            times,
            retry_after: None,
            echo_request: false,
            apply: false,
            after: 0,
            location: None,
        }
    }

    /// A redirect to `location` instead of an error.
    pub fn redirecting_to(mut self, location: &str) -> Self {
        self.location = Some(location.to_owned());
        self
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// See `echo_request`.
    pub fn echoing_request(mut self) -> Self {
        self.echo_request = true;
        self
    }

    /// See `apply`.
    pub fn after_applying(mut self) -> Self {
        self.apply = true;
        self
    }

    /// See `after`.
    pub fn after_calls(mut self, calls: u32) -> Self {
        self.after = calls;
        self
    }
}

/// A call held by [`RunningFake::hold`].
#[derive(Debug)]
pub struct Hold {
    reached: Option<oneshot::Receiver<()>>,
    release: Option<oneshot::Sender<()>>,
}

impl Hold {
    /// Returns once the held call has come in; it then waits until `release`.
    ///
    /// # Panics
    /// If the hold was dropped before the call came (`set_state` replaced it), or is
    /// awaited twice.
    pub async fn reached(&mut self) {
        self.reached
            .take()
            .expect("reached is awaited once")
            .await
            .expect("the fake dropped the hold before the call came");
    }

    /// Lets the held call go on. Dropping the hold does too.
    pub fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

/// The fake's half of a [`Hold`].
pub(crate) struct PendingHold {
    pub(crate) operation: String,
    /// Calls of `operation` still to let through before the held one.
    pub(crate) after: u32,
    pub(crate) reached: oneshot::Sender<()>,
    pub(crate) release: oneshot::Receiver<()>,
}

/// What the fake holds now, and every API call it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub credentials: Vec<CredentialsSnapshot>,
    pub clusters: Vec<ClusterSnapshot>,
    #[serde(default)]
    pub container_registries: Vec<RegistrySnapshot>,
    #[serde(default)]
    pub helm_repositories: Vec<RegistrySnapshot>,
    pub requests: Vec<RequestRecord>,
    /// Every secret key a PUT of credentials, a registry, a helm repository or a DNS
    /// provider carried, refused ones included, in order and once each: what a leak
    /// check must look for, even once nothing else holds it.
    #[serde(default)]
    pub received_secrets: Vec<String>,
    /// Every role a deploy tried to assume (dry runs and refused deploys try none), in
    /// order: which cluster, which role, and whether Qovery could.
    #[serde(default)]
    pub role_checks: Vec<RoleCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSnapshot {
    pub id: String,
    pub name: String,
    /// `AWS` (a static key) or `AWS_ROLE`, as the API's `object_type` says.
    pub object_type: String,
    /// Empty for role credentials.
    pub access_key_id: String,
    /// Never returned by the API; exposed here so a test can prove the key Qovery holds works.
    pub secret_access_key: String,
    /// Set for `AWS_ROLE` credentials only.
    #[serde(default)]
    pub role_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSnapshot {
    pub id: String,
    pub name: String,
    /// The credentials entry it deploys with, which `specifyClusterCloudProviderInfo` moves.
    pub credentials_id: String,
    /// The real status, even while status polls still show a stale one.
    pub status: String,
    pub last_execution_id: Option<String>,
    pub last_deployment_date: Option<String>,
    /// Deploys accepted (dry runs excluded).
    pub deploy_count: u32,
    /// `getClusterStatus` calls answered for this cluster.
    pub status_polls: u32,
    #[serde(default)]
    pub secret_manager_accesses: Vec<SecretManagerAccessSnapshot>,
    #[serde(default)]
    pub dns_provider: Option<DnsProviderSnapshot>,
}

/// One API call. Bodies are never kept: a PUT of credentials, a registry or a DNS
/// provider carries a secret key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRecord {
    /// The spec's operationId, or `unknown` for a path or method the fake does not serve.
    pub operation: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

type Shared = Arc<Mutex<State>>;

// A panic while the lock is held leaves the state usable; the test that panicked
// reports the failure.
fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fake Qovery, not yet serving.
pub struct FakeQovery {
    shared: Shared,
}

impl FakeQovery {
    /// # Panics
    /// If the seed is invalid; see [`FakeQovery::try_new`].
    pub fn new(seed: Seed) -> Self {
        Self::try_new(seed).unwrap_or_else(|e| panic!("invalid seed: {e}"))
    }

    /// Fails, saying what is wrong, on ids that are not UUIDs or appear twice, a cluster
    /// whose credentials are not seeded, a status outside `ClusterStateEnum`, a
    /// `last_deployment_date` that is not RFC 3339, a registry kind outside its list's
    /// enum, a mirroring registry of a cluster that is not seeded (or a second one for
    /// the same cluster), or AWS fields that do not fit a kind or a mode.
    pub fn try_new(seed: Seed) -> Result<Self, String> {
        Ok(Self {
            shared: Arc::new(Mutex::new(State::from_seed(seed)?)),
        })
    }

    /// How deploys on role credentials end (by default they succeed); a new seed keeps it.
    pub fn with_role_deploys(self, role_deploys: RoleDeploys) -> Self {
        lock(&self.shared).set_role_deploys(role_deploys);
        self
    }

    /// Deploys on role credentials really assume the role, through `sts`
    /// ([`RoleDeploys::AssumeWithSts`]).
    pub fn with_sts(self, sts: StsConfig) -> Self {
        self.with_role_deploys(RoleDeploys::AssumeWithSts(sts))
    }

    /// Serves on 127.0.0.1:`port` (0 picks a free port) in a tokio task.
    pub async fn spawn(self, port: u16) -> std::io::Result<RunningFake> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let app = routes::router(self.shared.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                // Dropping the sender also stops the server.
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "qovery-fake server failed");
            }
        });
        Ok(RunningFake {
            base_url,
            shared: self.shared,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A fake Qovery serving at `base_url`. Dropping it stops the server.
pub struct RunningFake {
    /// Like `http://127.0.0.1:41234`, with no trailing slash.
    pub base_url: String,
    shared: Shared,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningFake {
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.shared).snapshot()
    }

    /// The same as `POST /_fake/faults`.
    ///
    /// # Panics
    /// If the fault is invalid: an unknown operation, a status outside 400-599, or `times` 0.
    pub fn inject_fault(&self, fault: Fault) {
        let mut state = lock(&self.shared);
        state
            .add_fault(fault)
            .unwrap_or_else(|e| panic!("invalid fault: {e}"));
    }

    /// Holds the call of `operation` that comes after `after` more calls of it: it waits
    /// on its way in (not yet served, faulted or logged) until the returned [`Hold`] is
    /// released or dropped. For a test that must look at the world at the moment a step
    /// makes that call, the step paused. In-process only: the control API has no such call.
    /// `set_state` drops a hold not yet reached.
    ///
    /// # Panics
    /// If the fake does not serve `operation` (`*` is not allowed).
    pub fn hold(&self, operation: &str, after: u32) -> Hold {
        let (reached, reached_rx) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        lock(&self.shared)
            .add_hold(PendingHold {
                operation: operation.to_owned(),
                after,
                reached,
                release: release_rx,
            })
            .unwrap_or_else(|e| panic!("invalid hold: {e}"));
        Hold {
            reached: Some(reached_rx),
            release: Some(release),
        }
    }

    /// Replaces the whole state, as `PUT /_fake/state` does: faults and the request log
    /// too, but not how role deploys end.
    ///
    /// # Panics
    /// If the seed is invalid.
    pub fn set_state(&self, seed: Seed) {
        lock(&self.shared)
            .reseed(seed)
            .unwrap_or_else(|e| panic!("invalid seed: {e}"));
    }

    /// How deploys on role credentials end from now on, as `POST /_fake/role_deploys`
    /// does; a deployment already under way keeps the end it was given.
    pub fn set_role_deploys(&self, role_deploys: RoleDeploys) {
        lock(&self.shared).set_role_deploys(role_deploys);
    }

    /// Adds a container registry, or replaces the one with the same id, as
    /// `POST /_fake/container_registries` does: nothing else changes, not the request
    /// log nor the faults, so a test can do it in the middle of a rotation.
    ///
    /// # Panics
    /// If the registry is invalid (see [`FakeQovery::try_new`]) or no organization is seeded.
    pub fn put_container_registry(&self, registry: SeedRegistry) {
        self.put_registry(RegistryList::Container, registry);
    }

    /// The same for a helm repository, as `POST /_fake/helm_repositories` does.
    ///
    /// # Panics
    /// If the repository is invalid or no organization is seeded.
    pub fn put_helm_repository(&self, repository: SeedRegistry) {
        self.put_registry(RegistryList::Helm, repository);
    }

    /// Sets one cluster's status, as `POST /_fake/cluster_status` does: it reports that
    /// status from now on; nothing else changes (deployments, request log, faults).
    ///
    /// # Panics
    /// If the cluster is unknown or the status is not a `ClusterStateEnum` value.
    pub fn set_cluster_status(&self, cluster_id: &str, status: &str) {
        lock(&self.shared)
            .set_cluster_status(cluster_id, status)
            .unwrap_or_else(|e| panic!("invalid cluster status change: {}", e.message()));
    }

    fn put_registry(&self, list: RegistryList, seed: SeedRegistry) {
        lock(&self.shared)
            .put_registry(list, seed)
            .unwrap_or_else(|e| panic!("invalid {}: {e}", list.what()));
    }

    /// Stops accepting connections and waits for the open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningFake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
