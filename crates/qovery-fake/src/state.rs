//! The organization the fake holds, and how a cluster moves when deployed and polled.
//!
//! The objects that keep other copies of an AWS key have modules of their own
//! (`registry`, `cluster_keys`); this one holds them together and looks them up.

use serde::Serialize;
use serde_json::{json, Value};
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::cluster_keys::{
    check_dns_provider, check_dns_replacement, dns_json, dns_snapshot, SecretManagerAccess,
};
use crate::registry::{Registry, RegistryList};
use crate::replace::Fields;
use crate::role_check::{RoleCheck, RoleDeploys};
use crate::routes::{ApiError, OPERATIONS};
use crate::{
    ClusterSnapshot, CredentialsSnapshot, Fault, Outcome, PendingHold, RequestRecord, Seed,
    SeedDnsProvider, SeedRegistry, Snapshot,
};

/// The spec's `ClusterStateEnum`. A status outside it would fail response validation.
const CLUSTER_STATES: [&str; 24] = [
    "BUILDING",
    "BUILD_ERROR",
    "CANCELED",
    "CANCELING",
    "DELETED",
    "DELETE_ERROR",
    "DELETE_QUEUED",
    "DELETING",
    "DEPLOYED",
    "DEPLOYING",
    "DEPLOYMENT_ERROR",
    "DEPLOYMENT_QUEUED",
    "DRY_RUN",
    "QUEUED",
    "READY",
    "STOPPED",
    "STOPPING",
    "STOP_ERROR",
    "STOP_QUEUED",
    "RESTART_QUEUED",
    "RESTARTING",
    "RESTARTED",
    "RESTART_ERROR",
    "INVALID_CREDENTIALS",
];

pub(crate) struct State {
    token: String,
    organization_id: Option<Uuid>,
    credentials: Vec<Credentials>,
    clusters: Vec<Cluster>,
    container_registries: Vec<Registry>,
    helm_repositories: Vec<Registry>,
    faults: Vec<Fault>,
    holds: Vec<PendingHold>,
    requests: Vec<RequestRecord>,
    received_secrets: Vec<String>,
    /// How the fake runs rather than what Qovery holds: kept by `reseed`.
    role_deploys: RoleDeploys,
    role_checks: Vec<RoleCheck>,
}

/// A deploy's attempt to assume its cluster's role: the ARN and what came of it.
pub(crate) type AssumedRole = (String, Result<(), String>);

struct Credentials {
    id: Uuid,
    name: String,
    access_key_id: String,
    secret_access_key: String,
    role_arn: Option<String>,
}

struct Cluster {
    id: Uuid,
    name: String,
    region: String,
    created_at: String,
    credentials_id: Uuid,
    secret_manager_accesses: Vec<SecretManagerAccess>,
    dns_provider: Option<SeedDnsProvider>,
    status: &'static str,
    last_execution_id: Option<String>,
    last_deployment_date: Option<String>,
    outcome: Outcome,
    /// Where the current deployment ends instead of `outcome`: `INVALID_CREDENTIALS`
    /// when Qovery could not assume the cluster's role.
    deployment_outcome: Option<Outcome>,
    stale_polls: u32,
    busy_polls: u32,
    /// What Qovery still reports right after our deploy, and for how many more polls.
    stale: Option<(ClusterStatus, u32)>,
    deploy_count: u32,
    status_polls: u32,
}

/// The spec's `ClusterStatus`.
#[derive(Clone, Serialize)]
pub(crate) struct ClusterStatus {
    cluster_id: Uuid,
    status: &'static str,
    is_deployed: bool,
    last_execution_id: Option<String>,
    last_deployment_date: Option<String>,
    reason: &'static str,
}

impl State {
    pub(crate) fn from_seed(seed: Seed) -> Result<Self, String> {
        let empty = seed.credentials.is_empty()
            && seed.clusters.is_empty()
            && seed.container_registries.is_empty()
            && seed.helm_repositories.is_empty();
        let organization_id = match seed.organization_id.as_str() {
            "" if empty => None,
            "" => return Err("organization_id is required when anything else is seeded".into()),
            id => Some(parse_seed_uuid("organization_id", id)?),
        };
        let mut credentials: Vec<Credentials> = Vec::new();
        for c in seed.credentials {
            let id = parse_seed_uuid("credentials id", &c.id)?;
            if credentials.iter().any(|other| other.id == id) {
                return Err(format!("credentials id {id} appears twice"));
            }
            credentials.push(Credentials {
                id,
                name: c.name,
                access_key_id: c.access_key_id,
                secret_access_key: c.secret_access_key,
                role_arn: c.role_arn,
            });
        }
        let mut clusters: Vec<Cluster> = Vec::new();
        for c in seed.clusters {
            let id = parse_seed_uuid("cluster id", &c.id)?;
            if clusters.iter().any(|other| other.id == id) {
                return Err(format!("cluster id {id} appears twice"));
            }
            let credentials_id = parse_seed_uuid("cluster credentials_id", &c.credentials_id)?;
            if !credentials.iter().any(|cr| cr.id == credentials_id) {
                return Err(format!(
                    "cluster {id} uses credentials {credentials_id}, which are not seeded"
                ));
            }
            let status = CLUSTER_STATES
                .into_iter()
                .find(|s| *s == c.status)
                .ok_or_else(|| {
                    format!(
                        "cluster {id}: status {:?} is not a ClusterStateEnum value",
                        c.status
                    )
                })?;
            if let Some(date) = &c.last_deployment_date {
                OffsetDateTime::parse(date, &Rfc3339).map_err(|e| {
                    format!("cluster {id}: last_deployment_date {date:?} is not RFC 3339: {e}")
                })?;
            }
            let mut secret_manager_accesses: Vec<SecretManagerAccess> = Vec::new();
            for access in c.secret_manager_accesses {
                let access = SecretManagerAccess::from_seed(id, access)?;
                let seen = clusters
                    .iter()
                    .flat_map(|other| &other.secret_manager_accesses)
                    .chain(&secret_manager_accesses)
                    .any(|other| other.id == access.id);
                if seen {
                    return Err(format!(
                        "secret manager access id {} appears twice",
                        access.id
                    ));
                }
                secret_manager_accesses.push(access);
            }
            if let Some(dns_provider) = &c.dns_provider {
                check_dns_provider(id, dns_provider)?;
            }
            if c.region.is_empty() {
                return Err(format!("cluster {id}: region is empty"));
            }
            clusters.push(Cluster {
                id,
                name: c.name,
                region: c.region,
                created_at: seeded_at(),
                credentials_id,
                secret_manager_accesses,
                dns_provider: c.dns_provider,
                status,
                last_execution_id: c.last_execution_id,
                last_deployment_date: c.last_deployment_date,
                outcome: c.outcome,
                deployment_outcome: None,
                stale_polls: c.stale_polls,
                busy_polls: c.busy_polls,
                stale: None,
                deploy_count: 0,
                status_polls: 0,
            });
        }
        let mut state = Self {
            token: seed.token,
            organization_id,
            credentials,
            clusters,
            container_registries: Vec::new(),
            helm_repositories: Vec::new(),
            faults: Vec::new(),
            holds: Vec::new(),
            requests: Vec::new(),
            received_secrets: Vec::new(),
            role_deploys: RoleDeploys::default(),
            role_checks: Vec::new(),
        };
        for registry in seed.container_registries {
            state.admit_registry(RegistryList::Container, registry, false)?;
        }
        for repository in seed.helm_repositories {
            state.admit_registry(RegistryList::Helm, repository, false)?;
        }
        Ok(state)
    }

    /// Replaces everything with what `seed` says (faults, holds and the request log
    /// start over too), but keeps how role deploys end: the binary's `--role-deploys`
    /// must outlive the `PUT /_fake/state` that seeds it.
    pub(crate) fn reseed(&mut self, seed: Seed) -> Result<(), String> {
        let mut state = Self::from_seed(seed)?;
        state.role_deploys = std::mem::take(&mut self.role_deploys);
        *self = state;
        Ok(())
    }

    pub(crate) fn set_role_deploys(&mut self, role_deploys: RoleDeploys) {
        self.role_deploys = role_deploys;
    }

    /// Adds a seeded registry or helm repository; with `replace`, one with the same id
    /// is replaced (it keeps its creation date: it is the same object, edited).
    fn admit_registry(
        &mut self,
        list: RegistryList,
        seed: SeedRegistry,
        replace: bool,
    ) -> Result<(), String> {
        let cluster_ids: Vec<Uuid> = self.clusters.iter().map(|c| c.id).collect();
        let mut registry = Registry::from_seed(list, seed, &cluster_ids)?;
        let registries = self.registries_mut(list);
        if let Some(cluster_id) = registry.cluster_id {
            if let Some(other) = registries
                .iter()
                .find(|r| r.id != registry.id && r.cluster_id == Some(cluster_id))
            {
                return Err(format!(
                    "cluster {cluster_id} already has a mirroring registry, {}",
                    other.id
                ));
            }
        }
        match registries.iter().position(|r| r.id == registry.id) {
            Some(_) if !replace => Err(format!("{} id {} appears twice", list.what(), registry.id)),
            Some(i) => {
                registry.created_at = registries[i].created_at.clone();
                registry.updated_at = now();
                registries[i] = registry;
                Ok(())
            }
            None => {
                registries.push(registry);
                Ok(())
            }
        }
    }

    /// The control API's add-or-replace of one registry or helm repository, which
    /// leaves everything else (request log and faults included) as it is.
    pub(crate) fn put_registry(
        &mut self,
        list: RegistryList,
        seed: SeedRegistry,
    ) -> Result<(), String> {
        if self.organization_id.is_none() {
            return Err(format!(
                "no organization is seeded, so there is nowhere to put a {}",
                list.what()
            ));
        }
        self.admit_registry(list, seed, true)
    }

    /// The control API's change of one cluster's status, as if something outside the
    /// rotation moved it (a cluster that turned `INVALID_CREDENTIALS`): the cluster
    /// reports `status` from now on (a stale report it was showing ends), and nothing
    /// else changes, not its deployments, the request log nor the faults.
    pub(crate) fn set_cluster_status(&mut self, id: &str, status: &str) -> Result<(), ApiError> {
        let id = parse_seed_uuid("cluster id", id).map_err(ApiError::bad_request)?;
        let status = CLUSTER_STATES
            .into_iter()
            .find(|s| *s == status)
            .ok_or_else(|| {
                ApiError::bad_request(format!("status {status:?} is not a ClusterStateEnum value"))
            })?;
        let cluster = self.cluster_mut(id)?;
        cluster.status = status;
        cluster.stale = None;
        Ok(())
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            credentials: self
                .credentials
                .iter()
                .map(|c| CredentialsSnapshot {
                    id: c.id.to_string(),
                    name: c.name.clone(),
                    object_type: c.object_type().to_owned(),
                    access_key_id: c.access_key_id.clone(),
                    secret_access_key: c.secret_access_key.clone(),
                    role_arn: c.role_arn.clone(),
                })
                .collect(),
            clusters: self
                .clusters
                .iter()
                .map(|c| ClusterSnapshot {
                    id: c.id.to_string(),
                    name: c.name.clone(),
                    credentials_id: c.credentials_id.to_string(),
                    status: c.status.to_owned(),
                    last_execution_id: c.last_execution_id.clone(),
                    last_deployment_date: c.last_deployment_date.clone(),
                    deploy_count: c.deploy_count,
                    status_polls: c.status_polls,
                    secret_manager_accesses: c
                        .secret_manager_accesses
                        .iter()
                        .map(SecretManagerAccess::snapshot)
                        .collect(),
                    dns_provider: c.dns_provider.as_ref().map(dns_snapshot),
                })
                .collect(),
            container_registries: self
                .container_registries
                .iter()
                .map(Registry::snapshot)
                .collect(),
            helm_repositories: self
                .helm_repositories
                .iter()
                .map(Registry::snapshot)
                .collect(),
            requests: self.requests.clone(),
            received_secrets: self.received_secrets.clone(),
            role_checks: self.role_checks.clone(),
        }
    }

    pub(crate) fn add_fault(&mut self, fault: Fault) -> Result<(), String> {
        let known: Vec<&str> = OPERATIONS.iter().map(|(_, _, op)| *op).collect();
        if fault.operation != "*" && !known.contains(&fault.operation.as_str()) {
            return Err(format!(
                "operation {:?} is not one of {} or \"*\"",
                fault.operation,
                known.join(", ")
            ));
        }
        match (&fault.location, fault.status) {
            (None, 400..=599) => {}
            (None, status) => {
                return Err(format!(
                    "status {status} is not an HTTP error status (400-599); a redirect needs a location"
                ))
            }
            (Some(_), 301 | 302 | 303 | 307 | 308) if !fault.echo_request && !fault.apply => {}
            (Some(_), status) => {
                return Err(format!(
                    "a fault with a location is a redirect: status 301, 302, 303, 307 or 308, without \
                     echo_request or apply; got {status}"
                ))
            }
        }
        if fault.times == 0 {
            return Err("times must be at least 1".into());
        }
        self.faults.push(fault);
        Ok(())
    }

    /// Uses up one call of the oldest fault that targets `operation` and has no more
    /// calls to let through; counts the call for those that still do.
    pub(crate) fn take_fault(&mut self, operation: &str) -> Option<Fault> {
        let targets = |f: &Fault| f.operation == "*" || f.operation == operation;
        let armed = self.faults.iter().position(|f| targets(f) && f.after == 0);
        for waiting in self.faults.iter_mut().filter(|f| targets(f) && f.after > 0) {
            waiting.after -= 1;
        }
        let i = armed?;
        self.faults[i].times -= 1;
        if self.faults[i].times == 0 {
            Some(self.faults.remove(i))
        } else {
            Some(self.faults[i].clone())
        }
    }

    pub(crate) fn add_hold(&mut self, hold: PendingHold) -> Result<(), String> {
        if !OPERATIONS.iter().any(|(_, _, op)| *op == hold.operation) {
            return Err(format!(
                "operation {:?} is not one the fake serves",
                hold.operation
            ));
        }
        self.holds.push(hold);
        Ok(())
    }

    /// The hold armed for this call of `operation`, if any; counts the call for the
    /// others, as `take_fault` does.
    pub(crate) fn take_hold(&mut self, operation: &str) -> Option<PendingHold> {
        let armed = self
            .holds
            .iter()
            .position(|h| h.operation == operation && h.after == 0);
        for waiting in self
            .holds
            .iter_mut()
            .filter(|h| h.operation == operation && h.after > 0)
        {
            waiting.after -= 1;
        }
        armed.map(|i| self.holds.remove(i))
    }

    pub(crate) fn record(&mut self, request: RequestRecord) {
        self.requests.push(request);
    }

    pub(crate) fn receive_secret(&mut self, secret: &str) {
        if !secret.is_empty() && !self.received_secrets.iter().any(|s| s == secret) {
            self.received_secrets.push(secret.to_owned());
        }
    }

    pub(crate) fn is_authorized(&self, authorization: Option<&str>) -> bool {
        // An empty token (the unseeded binary) must not let "Token " in.
        !self.token.is_empty()
            && authorization.and_then(|h| h.strip_prefix("Token ")) == Some(self.token.as_str())
    }

    pub(crate) fn check_organization(&self, organization_id: Uuid) -> Result<(), ApiError> {
        if self.organization_id == Some(organization_id) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "organization {organization_id} not found"
            )))
        }
    }

    fn credentials_mut(&mut self, id: Uuid) -> Result<&mut Credentials, ApiError> {
        self.credentials
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| credentials_not_found(id))
    }

    fn cluster_mut(&mut self, id: Uuid) -> Result<&mut Cluster, ApiError> {
        self.clusters
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| cluster_not_found(id))
    }

    /// The spec's `AwsStaticClusterCredentials`; the secret never leaves the fake.
    pub(crate) fn get_credentials(&self, id: Uuid) -> Result<Value, ApiError> {
        self.credentials
            .iter()
            .find(|c| c.id == id)
            .map(Credentials::to_json)
            .ok_or_else(|| credentials_not_found(id))
    }

    pub(crate) fn edit_credentials(
        &mut self,
        id: Uuid,
        name: String,
        access_key_id: String,
        secret_access_key: String,
    ) -> Result<Value, ApiError> {
        let credentials = self.credentials_mut(id)?;
        credentials.name = name;
        credentials.access_key_id = access_key_id;
        credentials.secret_access_key = secret_access_key;
        credentials.role_arn = None;
        Ok(credentials.to_json())
    }

    /// A new `AWS_ROLE` entry, used by no cluster yet; the spec's `AwsRoleClusterCredentials`.
    /// Qovery does not publish whether names must be unique, so a second entry with
    /// the same name (a retried create whose answer was lost) is accepted.
    pub(crate) fn create_role_credentials(&mut self, name: String, role_arn: String) -> Value {
        let credentials = Credentials {
            id: Uuid::new_v4(),
            name,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            role_arn: Some(role_arn),
        };
        let created = credentials.to_json();
        self.credentials.push(credentials);
        created
    }

    /// Qovery's docs say credentials cannot be deleted while a cluster uses them. The
    /// spec lists no 400 for `deleteAWSCredentials` (only 401, 403 and 404) and Qovery
    /// does not publish which status it answers, so this 400 is a guess, which Prism
    /// would flag: a client must not rely on it, but check the list first.
    pub(crate) fn delete_credentials(&mut self, id: Uuid) -> Result<(), ApiError> {
        let i = self
            .credentials
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| credentials_not_found(id))?;
        let users: Vec<String> = self
            .clusters
            .iter()
            .filter(|c| c.credentials_id == id)
            .map(|c| format!("{} ({})", c.id, c.name))
            .collect();
        if !users.is_empty() {
            return Err(ApiError::bad_request(format!(
                "credentials {id} are used by cluster {}; point every cluster at other \
                 credentials before deleting them",
                users.join(", ")
            )));
        }
        self.credentials.remove(i);
        Ok(())
    }

    /// The spec's `OrganizationCrendentialsResponseList`: each credential with the
    /// clusters that use it.
    pub(crate) fn list_credentials(&self) -> Value {
        let results: Vec<Value> = self
            .credentials
            .iter()
            .map(|cr| {
                let clusters: Vec<Value> = self
                    .clusters
                    .iter()
                    .filter(|cl| cl.credentials_id == cr.id)
                    .map(|cl| json!({"id": cl.id, "name": cl.name, "cloud_provider": "AWS"}))
                    .collect();
                json!({"credential": cr.to_json(), "clusters": clusters})
            })
            .collect();
        json!({ "results": results })
    }

    /// The role a deploy of this cluster must assume, if its credentials entry is one,
    /// and how to judge it; the errors a deploy would answer come first, so that no
    /// role is tried for a deploy that will be refused.
    pub(crate) fn role_to_assume(
        &self,
        id: Uuid,
    ) -> Result<Option<(RoleDeploys, String)>, ApiError> {
        let cluster = self.cluster(id)?;
        cluster.check_deployable()?;
        Ok(self
            .credentials
            .iter()
            .find(|c| c.id == cluster.credentials_id)
            .and_then(|c| c.role_arn.clone())
            .map(|role_arn| (self.role_deploys.clone(), role_arn)))
    }

    /// `role`: what came of assuming the cluster's role (see `role_to_assume`), judged
    /// before this call; a role that failed ends the deployment `INVALID_CREDENTIALS`
    /// at its `DEPLOYING` step, whatever the cluster's seeded outcome.
    pub(crate) fn deploy(
        &mut self,
        id: Uuid,
        dry_run: bool,
        role: Option<AssumedRole>,
    ) -> Result<ClusterStatus, ApiError> {
        let cluster = self.cluster_mut(id)?;
        cluster.check_deployable()?;
        let before = cluster.status();
        // A dry run changes nothing in Qovery, so it changes nothing here either.
        if dry_run {
            return Ok(before);
        }
        let role_failed = matches!(role, Some((_, Err(_))));
        cluster.deployment_outcome = role_failed.then_some(Outcome::InvalidCredentials);
        cluster.status = "DEPLOYMENT_QUEUED";
        cluster.last_execution_id = Some(execution_id_at(OffsetDateTime::now_utc()));
        cluster.deploy_count += 1;
        let reported = if cluster.stale_polls > 0 {
            cluster.stale = Some((before.clone(), cluster.stale_polls));
            before
        } else {
            cluster.stale = None;
            cluster.status()
        };
        if let Some((role_arn, result)) = role {
            self.role_checks.push(RoleCheck {
                cluster_id: id.to_string(),
                role_arn,
                ok: result.is_ok(),
                error: result.err(),
            });
        }
        Ok(reported)
    }

    /// A status poll is the fake's clock: it moves the cluster one step, then reports.
    pub(crate) fn poll_status(&mut self, id: Uuid) -> Result<ClusterStatus, ApiError> {
        let cluster = self.cluster_mut(id)?;
        cluster.status_polls += 1;
        if let Some((old, left)) = &mut cluster.stale {
            let old = old.clone();
            *left -= 1;
            if *left == 0 {
                cluster.stale = None;
            }
            return Ok(old);
        }
        cluster.advance();
        Ok(cluster.status())
    }

    /// The bulk read reports without moving anything, so it cannot disturb a walk.
    pub(crate) fn all_statuses(&self) -> Value {
        let results: Vec<ClusterStatus> = self.clusters.iter().map(Cluster::reported).collect();
        json!({ "results": results })
    }

    /// The spec's `ClusterResponseList`. Like the bulk status, it moves nothing.
    pub(crate) fn list_clusters(&self) -> Value {
        let results: Vec<Value> = self
            .clusters
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "created_at": c.created_at,
                    "updated_at": c.created_at,
                    "organization": {"id": self.organization_id},
                    "name": c.name,
                    "region": c.region,
                    "cloud_provider": "AWS",
                    "status": c.reported().status,
                    "secret_manager_accesses": c
                        .secret_manager_accesses
                        .iter()
                        .map(SecretManagerAccess::to_json)
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "results": results })
    }

    fn cluster(&self, id: Uuid) -> Result<&Cluster, ApiError> {
        self.clusters
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| cluster_not_found(id))
    }

    /// The spec's `ClusterCloudProviderInfo`: the credentials entry the cluster
    /// deploys with, named as the entry is.
    pub(crate) fn get_cloud_provider_info(&self, cluster_id: Uuid) -> Result<Value, ApiError> {
        let cluster = self.cluster(cluster_id)?;
        let credentials = self
            .credentials
            .iter()
            .find(|c| c.id == cluster.credentials_id)
            // Seeds are checked, and an entry in use cannot be deleted.
            .expect("a cluster's credentials entry exists");
        Ok(json!({
            "cloud_provider": "AWS",
            "credentials": {"id": credentials.id, "name": credentials.name},
            "region": cluster.region,
        }))
    }

    /// Points a cluster at another credentials entry, which its next deployment uses.
    ///
    /// The spec's `ClusterCloudProviderInfoRequest` requires nothing, but the console
    /// sends all three fields, `cloud_provider` and `region` as GET gave them and the
    /// chosen entry's `id` and `name`; the fake requires exactly that, so that a client
    /// which would move a cluster's region, or name the entry after the cluster as
    /// Terraform's provider does, fails in tests.
    pub(crate) fn specify_cloud_provider_info(
        &mut self,
        cluster_id: Uuid,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let cluster = self.cluster(cluster_id)?;
        let fields = Fields::body(body, "ClusterCloudProviderInfoRequest")?;
        fields.only(
            &["cloud_provider", "credentials", "region"],
            "it is not part of ClusterCloudProviderInfoRequest",
        )?;
        if fields.text("cloud_provider")? != "AWS" {
            return Err(ApiError::bad_request(format!(
                "field `cloud_provider` must be \"AWS\", the cloud provider of cluster {cluster_id}: \
                 send back what GET …/cloudProviderInfo returned"
            )));
        }
        if fields.text("region")? != cluster.region {
            return Err(ApiError::bad_request(format!(
                "field `region` must be {:?}, the region of cluster {cluster_id}: a cluster does \
                 not change region; send back what GET …/cloudProviderInfo returned",
                cluster.region
            )));
        }
        let sent = fields.object("credentials")?;
        sent.only(
            &["id", "name"],
            "the credentials of ClusterCloudProviderInfoRequest are exactly id and name",
        )?;
        let id = Uuid::parse_str(sent.text("id")?).map_err(|_| {
            ApiError::bad_request("field `credentials.id` is not a UUID".to_owned())
        })?;
        let credentials = self
            .credentials
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "field `credentials.id`: this organization has no credentials {id}"
                ))
            })?;
        let name = sent.text("name")?;
        if name != credentials.name {
            let why = if name == cluster.name {
                "it is the cluster's name (as Terraform's provider sends it); it must be the \
                 credentials entry's name"
            } else {
                "it must be the credentials entry's name"
            };
            return Err(ApiError::bad_request(format!(
                "field `credentials.name` differs from {:?}, the name of credentials {id}: {why}",
                credentials.name
            )));
        }
        self.cluster_mut(cluster_id)?.credentials_id = id;
        self.get_cloud_provider_info(cluster_id)
    }

    pub(crate) fn get_dns_provider(&self, cluster_id: Uuid) -> Result<Value, ApiError> {
        let cluster = self.cluster(cluster_id)?;
        Ok(dns_json(cluster.id, cluster.dns_provider.as_ref()))
    }

    pub(crate) fn edit_dns_provider(
        &mut self,
        cluster_id: Uuid,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let cluster = self.cluster_mut(cluster_id)?;
        let (key, secret) = check_dns_replacement(cluster.id, cluster.dns_provider.as_ref(), body)?;
        let provider = cluster
            .dns_provider
            .as_mut()
            .expect("only a Route53 provider passes the check");
        provider.aws_access_key_id = key.to_owned();
        provider.aws_secret_access_key = secret.to_owned();
        Ok(dns_json(cluster.id, cluster.dns_provider.as_ref()))
    }

    fn registries(&self, list: RegistryList) -> &Vec<Registry> {
        match list {
            RegistryList::Container => &self.container_registries,
            RegistryList::Helm => &self.helm_repositories,
        }
    }

    fn registries_mut(&mut self, list: RegistryList) -> &mut Vec<Registry> {
        match list {
            RegistryList::Container => &mut self.container_registries,
            RegistryList::Helm => &mut self.helm_repositories,
        }
    }

    fn registry_json(&self, list: RegistryList, registry: &Registry) -> Value {
        let cluster_name = registry
            .cluster_id
            .and_then(|id| self.clusters.iter().find(|c| c.id == id))
            .map(|c| c.name.as_str());
        registry.to_json(list, cluster_name)
    }

    /// The spec's `ContainerRegistryResponseList` or `HelmRepositoryResponseList`.
    pub(crate) fn list_registries(&self, list: RegistryList) -> Value {
        let results: Vec<Value> = self
            .registries(list)
            .iter()
            .map(|r| self.registry_json(list, r))
            .collect();
        json!({ "results": results })
    }

    pub(crate) fn get_registry(&self, list: RegistryList, id: Uuid) -> Result<Value, ApiError> {
        let registry = self
            .registries(list)
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| registry_not_found(list, id))?;
        Ok(self.registry_json(list, registry))
    }

    pub(crate) fn edit_registry(
        &mut self,
        list: RegistryList,
        id: Uuid,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let registry = self
            .registries_mut(list)
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| registry_not_found(list, id))?;
        let replacement = registry.check_replacement(list, body)?;
        registry.replace(replacement);
        self.get_registry(list, id)
    }
}

impl Credentials {
    /// The discriminator of the spec's `ClusterCredentials`.
    fn object_type(&self) -> &'static str {
        match self.role_arn {
            Some(_) => "AWS_ROLE",
            None => "AWS",
        }
    }

    /// `AwsRoleClusterCredentials` or `AwsStaticClusterCredentials`.
    fn to_json(&self) -> Value {
        match &self.role_arn {
            Some(role_arn) => json!({
                "id": self.id,
                "name": self.name,
                "role_arn": role_arn,
                "object_type": self.object_type(),
            }),
            None => json!({
                "id": self.id,
                "name": self.name,
                "access_key_id": self.access_key_id,
                "object_type": self.object_type(),
            }),
        }
    }
}

impl Cluster {
    /// What status reads report: the previous deployment's while it is still stale.
    fn reported(&self) -> ClusterStatus {
        match &self.stale {
            Some((old, _)) => old.clone(),
            None => self.status(),
        }
    }

    /// Qovery refuses to deploy a cluster that is queued or mid-operation.
    fn check_deployable(&self) -> Result<(), ApiError> {
        if self.status.ends_with("QUEUED") || self.status.ends_with("ING") {
            return Err(ApiError::bad_request(format!(
                "cluster {} is busy ({}); wait until it is no longer queued or in progress",
                self.id, self.status
            )));
        }
        Ok(())
    }

    fn status(&self) -> ClusterStatus {
        ClusterStatus {
            cluster_id: self.id,
            status: self.status,
            // Qovery's flag means "has been deployed at some point", not "is DEPLOYED now".
            is_deployed: self.status == "DEPLOYED" || self.last_deployment_date.is_some(),
            last_execution_id: self.last_execution_id.clone(),
            last_deployment_date: self.last_deployment_date.clone(),
            reason: "UNSPECIFIED",
        }
    }

    fn advance(&mut self) {
        // Seeded busy: someone else's operation, which ends after `busy_polls` polls.
        if self.busy_polls > 0 {
            self.busy_polls -= 1;
            if self.busy_polls == 0 {
                self.finish_deployment();
            }
            return;
        }
        match (self.status, self.deployment_outcome.unwrap_or(self.outcome)) {
            ("DEPLOYMENT_QUEUED", _) => self.status = "DEPLOYING",
            ("DEPLOYING", Outcome::Deployed) => self.finish_deployment(),
            ("DEPLOYING", Outcome::DeploymentError) => self.status = "DEPLOYMENT_ERROR",
            ("DEPLOYING", Outcome::InvalidCredentials) => self.status = "INVALID_CREDENTIALS",
            _ => {} // settled, or stuck in DEPLOYING
        }
    }

    fn finish_deployment(&mut self) {
        self.status = "DEPLOYED";
        self.last_deployment_date = Some(rfc3339(OffsetDateTime::now_utc()));
    }
}

fn credentials_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("credentials {id} not found"))
}

fn cluster_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("cluster {id} not found"))
}

fn registry_not_found(list: RegistryList, id: Uuid) -> ApiError {
    ApiError::not_found(format!("{} {id} not found", list.what()))
}

pub(crate) fn parse_seed_uuid(what: &str, value: &str) -> Result<Uuid, String> {
    Uuid::parse_str(value).map_err(|_| format!("{what} {value:?} is not a UUID"))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .expect("a UTC time always formats as RFC 3339")
}

pub(crate) fn now() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// When a seeded object was created: a month ago, before any deployment it had.
pub(crate) fn seeded_at() -> String {
    rfc3339(OffsetDateTime::now_utc() - Duration::days(30))
}

/// Qovery's execution ids look like `<uuid>-<unix seconds>`.
fn execution_id_at(at: OffsetDateTime) -> String {
    format!("{}-{}", Uuid::new_v4(), at.unix_timestamp())
}

/// Default for a seeded cluster: it was deployed before, a week ago.
pub(crate) fn past_execution_id() -> Option<String> {
    Some(execution_id_at(
        OffsetDateTime::now_utc() - Duration::days(7),
    ))
}

pub(crate) fn past_deployment_date() -> Option<String> {
    Some(rfc3339(OffsetDateTime::now_utc() - Duration::days(7)))
}
