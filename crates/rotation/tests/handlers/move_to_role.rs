//! The move to an IAM role (issue 14, `migrate_to_role`), step by step against moto and
//! the fake Qovery: CreateRoleEntry, PointCluster and the redeploys on the role,
//! HandOverToRole, the quarantine and DeleteOldKey of a migration, UndoMigration and
//! AbandonMigration, and what the next run's preflight makes of a migration an ended
//! run left. Each step gets the input the ASL builds for it (`task_input`), and
//! DeployClusters runs as the ASL runs it (`deploy_clusters`).

use crate::support::*;
use qovery_fake::{
    Fault, RoleDeploys, SeedCluster, SeedCredentials, SeedRegistry, SeedSecretManagerAccess,
};
use rotation::ledger::{LedgerPhase, Record};
use rotation::qovery::holders::{self, CredentialsRef};
use rotation::secret::Secret;
use rotation::state::{Mode, Phase, Recovery, RotationState};
use rotation::steps::update_qovery;
use rotation::steps::{check_wave, delete_key, deploy_cluster, move_to_role, preflight};
use rotation::{timefmt, RotationError};
use serde_json::{json, Value};

const OTHER_ROLE: &str = "arn:aws:iam::123456789012:role/something-else";
/// The name CreateRoleEntry gives the role credentials.
const ROLE_ENTRY_NAME: &str = "qovery-engine (role)";
/// A key that is not the user's, in "aws-other".
const OTHER_KEY: &str = "AKIAOTHERKEY00000001";

// ---- the world and each step, as the ASL calls it ----

/// production and staging running on "aws-prod", `idle` stopped on it; production's
/// mirroring registry and a helm repository hold the key too. Deploys on the role
/// succeed unless a test says otherwise.
fn options() -> WorldOptions {
    let mut idle = SeedCluster::new(CLUSTER_C, "idle", CREDS);
    idle.status = "STOPPED".to_string();
    WorldOptions {
        clusters: vec![
            SeedCluster::new(CLUSTER_A, "production", CREDS),
            SeedCluster::new(CLUSTER_B, "staging", CREDS),
            idle,
        ],
        container_registries: vec![SeedRegistry::ecr(
            REGISTRY_A,
            "registry-production",
            "eu-west-3",
            USER_KEY,
            USER_KEY,
        )
        .mirroring(CLUSTER_A)],
        helm_repositories: vec![SeedRegistry::oci_ecr(
            HELM,
            "charts",
            "eu-west-3",
            USER_KEY,
            USER_KEY,
        )],
        ..Default::default()
    }
}

async fn world_with(options: WorldOptions) -> World {
    let world = World::with(options).await;
    // The handler tests' moto has no Qovery principal to assume the role with.
    world.fake.set_role_deploys(RoleDeploys::Succeed);
    create_role(&world, "/", &trusting(QOVERY_ACCOUNT, None)).await;
    world
}

async fn world() -> World {
    world_with(options()).await
}

fn migration_input(world: &World, role_arn: &str) -> Value {
    let mut input = world.input();
    input["migrate_to_role"] = json!({"role_arn": role_arn});
    input
}

/// Preflight of a migration to ROLE_ARN: the lock taken with the plan.
async fn planned(world: &World) -> RotationState {
    let state = preflight::handle(
        &world.deps,
        world.preflight_event(migration_input(world, ROLE_ARN)),
    )
    .await
    .unwrap();
    assert_eq!(state.mode, Mode::Migrate);
    state
}

/// An update-qovery task state (CreateRoleEntry, HandOverToRole, UndoMigration) with
/// the input the ASL gives it.
async fn step(world: &World, task: &str, input: &Value) -> Result<RotationState, RotationError> {
    update_qovery::handle(&world.deps, task_input(task, input, &no_context()))
        .await
        .map(|output| serde_json::from_value(output).unwrap())
}

async fn create_role_entry(world: &World, state: &RotationState) -> RotationState {
    step(world, "CreateRoleEntry", &value(state)).await.unwrap()
}

/// A Lambda's error as a Catch (or the Map's failure) carries it.
fn lambda_error(e: &RotationError) -> Value {
    json!({"Error": e.name(),
           "Cause": json!({"errorType": e.name(), "errorMessage": e.message()}).to_string()})
}

/// One iteration of DeployWave: HasTarget → PointCluster, then DeployCluster and the
/// polling; a failure is caught into the result (ClusterFailed).
async fn iteration(world: &World, item: Value) -> Value {
    let mut current = item;
    if !current["target_credentials"].is_null() {
        match deploy_cluster::handle(&world.deps, current.clone()).await {
            Ok(pointed) => current = value(&pointed),
            Err(e) => {
                current["failure"] = lambda_error(&e);
                return current;
            }
        }
    }
    match run_iteration(world, current.clone()).await {
        Ok(done) => value(&done),
        Err(e) => {
            current["failure"] = lambda_error(&e);
            current
        }
    }
}

/// DeployClusters as the ASL runs it: wave after wave (the outer ItemSelector), each
/// cluster's iteration (the inner one), then CheckWave with its Parameters. Ok: the state
/// with `deployments`; Err: the Map's error, as its Catch passes it on.
async fn deploy_clusters(world: &World, state: &Value) -> Result<Value, Value> {
    let map = asl_state("DeployClusters");
    let inner = &map["ItemProcessor"]["States"];
    let waves = state["deploy_waves"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut outcomes = Vec::new();
    for (index, wave) in waves.iter().enumerate() {
        let context = json!({"Map": {"Item": {"Index": index, "Value": wave}}});
        let mut wave_input = apply_template(&map["ItemSelector"], state, &context);
        let mut results = Vec::new();
        for (i, cluster) in wave.as_array().unwrap().iter().enumerate() {
            let context = json!({"Map": {"Item": {"Index": i, "Value": cluster}}});
            let item = apply_template(&inner["DeployWave"]["ItemSelector"], &wave_input, &context);
            results.push(iteration(world, item).await);
        }
        wave_input["results"] = Value::Array(results);
        let check = apply_template(&inner["CheckWave"]["Parameters"], &wave_input, &json!({}));
        match check_wave::handle(check) {
            Ok(outcome) => outcomes.push(value(&outcome)),
            Err(e) => return Err(lambda_error(&e)),
        }
    }
    Ok(with_result("DeployClusters", state, Value::Array(outcomes)))
}

/// Preflight, CreateRoleEntry and DeployClusters: every running cluster DEPLOYED on
/// the role. The state HandOverToRole gets.
async fn deployed_on_role(world: &World) -> Value {
    let state = planned(world).await;
    let created = create_role_entry(world, &state).await;
    deploy_clusters(world, &value(&created)).await.unwrap()
}

async fn handed_over_to_role(world: &World) -> RotationState {
    let state = deployed_on_role(world).await;
    step(world, "HandOverToRole", &state).await.unwrap()
}

/// AbandonMigration, with the input the ASL gives it.
async fn abandon(world: &World, state: &Value) -> Result<move_to_role::Abandoned, RotationError> {
    let execution = state["execution_id"].as_str().unwrap();
    let context = json!({"Execution": {"Id": execution}});
    delete_key::serve_either(&world.deps, task_input("AbandonMigration", state, &context))
        .await
        .map(|output| serde_json::from_value(output).unwrap())
}

fn token() -> Secret {
    Secret::new(TOKEN)
}

/// Points a cluster at an entry behind the run's back, as someone in the console would.
async fn point(world: &World, cluster: &str, id: &str, name: &str) {
    let to = CredentialsRef {
        id: id.to_string(),
        name: name.to_string(),
    };
    holders::point_cluster(&world.deps.qovery, &token(), ORG, cluster, &to)
        .await
        .unwrap();
}

/// The AWS_ROLE entries for ROLE_ARN in the fake: `(id, name)`.
fn role_entries(world: &World) -> Vec<(String, String)> {
    world
        .fake
        .snapshot()
        .credentials
        .into_iter()
        .filter(|c| c.object_type == "AWS_ROLE" && c.role_arn.as_deref() == Some(ROLE_ARN))
        .map(|c| (c.id, c.name))
        .collect()
}

/// The one entry the migration made.
fn role_entry(world: &World) -> CredentialsRef {
    let made: Vec<(String, String)> = role_entries(world)
        .into_iter()
        .filter(|(_, name)| name == ROLE_ENTRY_NAME)
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    CredentialsRef {
        id: made[0].0.clone(),
        name: made[0].1.clone(),
    }
}

fn on(world: &World, cluster: &str) -> String {
    world.cluster(cluster).credentials_id
}

async fn record(world: &World) -> Option<Record> {
    world.deps.ledger.read(USER).await.unwrap()
}

fn registry(world: &World, id: &str) -> qovery_fake::RegistrySnapshot {
    let snapshot = world.fake.snapshot();
    snapshot
        .container_registries
        .into_iter()
        .chain(snapshot.helm_repositories)
        .find(|r| r.id == id)
        .unwrap()
}

/// `(operation, status)` of every call the fake answered that is not a read.
fn writes(world: &World) -> Vec<(String, u16)> {
    world
        .fake
        .snapshot()
        .requests
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.operation, r.status))
        .collect()
}

// ---- CreateRoleEntry ----

#[tokio::test]
async fn create_role_entry_records_the_migration_before_the_post_and_creates_the_entry_once() {
    // GIVEN a planned migration, and Qovery's create held on its way in
    let world = world().await;
    let state = planned(&world).await;
    let mut post = world.fake.hold("createAWSCredentials", 0);

    // WHEN CreateRoleEntry runs
    let at_the_post = async {
        tokio::time::timeout(std::time::Duration::from_secs(60), post.reached())
            .await
            .expect("CreateRoleEntry asked Qovery to create the entry");
        let seen = record(&world).await.unwrap();
        post.release();
        seen
    };
    let input = value(&state);
    let (created, seen) = tokio::join!(step(&world, "CreateRoleEntry", &input), at_the_post);
    let created = created.unwrap();

    // THEN when the POST went out, the ledger already said moving_clusters, with the
    // migration (the next run undoes from it)
    assert_eq!(seen.phase, LedgerPhase::MovingClusters);
    assert_eq!(seen.execution_id, EXECUTION);
    assert_eq!(seen.migration, state.migration);

    // and the entry was made, this run's, and is every running cluster's target, canary
    // first; nothing points at it yet
    let entry = role_entry(&world);
    assert_eq!(entry.name, ROLE_ENTRY_NAME);
    let run = created.migration.clone().unwrap();
    assert_eq!(run.role_credentials, Some(entry.clone()));
    assert!(run.role_credentials_created);
    let targets: Vec<(&str, Option<&CredentialsRef>)> = created
        .clusters
        .iter()
        .map(|c| (c.id.as_str(), c.target_credentials.as_ref()))
        .collect();
    assert_eq!(
        targets,
        [(CLUSTER_A, Some(&entry)), (CLUSTER_B, Some(&entry))]
    );
    let waves: Vec<Vec<(&str, Option<&CredentialsRef>)>> = created
        .deploy_waves
        .iter()
        .map(|w| {
            w.iter()
                .map(|c| (c.id.as_str(), c.target_credentials.as_ref()))
                .collect()
        })
        .collect();
    assert_eq!(
        waves,
        [
            vec![(CLUSTER_A, Some(&entry))],
            vec![(CLUSTER_B, Some(&entry))]
        ]
    );
    let after = record(&world).await.unwrap();
    assert_eq!(after.phase, LedgerPhase::MovingClusters);
    assert_eq!(after.migration, created.migration);
    for cluster in [CLUSTER_A, CLUSTER_B, CLUSTER_C] {
        assert_eq!(on(&world, cluster), CREDS);
    }

    // WHEN it runs again with the same input (a retry after a lost answer)
    let again = step(&world, "CreateRoleEntry", &value(&state))
        .await
        .unwrap();

    // THEN the entry is adopted as this run's: one create, the same output
    assert_eq!(again, created);
    assert_eq!(world.calls("createAWSCredentials"), 1);
    assert_eq!(role_entries(&world).len(), 1);
    assert_eq!(world.calls("specifyClusterCloudProviderInfo"), 0);
}

#[tokio::test]
async fn a_create_role_entry_whose_post_fails_leaves_the_migration_recorded_and_nothing_made() {
    // GIVEN a planned migration, and Qovery failing the create
    let world = world().await;
    let state = planned(&world).await;
    world
        .fake
        .inject_fault(Fault::new("createAWSCredentials", 500, 1));

    // WHEN CreateRoleEntry runs
    let (name, message) = failure(step(&world, "CreateRoleEntry", &value(&state)).await);

    // THEN it fails, having recorded the migration (the next run undoes it), with
    // nothing made nor moved
    assert_eq!(name, "QoveryUnavailable", "{message}");
    assert!(message.contains("No cluster was moved"), "{message}");
    let record = record(&world).await.unwrap();
    assert_eq!(record.phase, LedgerPhase::MovingClusters);
    assert_eq!(record.migration, state.migration);
    assert!(role_entries(&world).is_empty());
    assert_eq!(writes(&world), [("createAWSCredentials".to_string(), 500)]);

    // WHEN the ASL retries it
    let created = step(&world, "CreateRoleEntry", &value(&state))
        .await
        .unwrap();

    // THEN the entry is made once
    assert_eq!(
        created.migration.unwrap().role_credentials,
        Some(role_entry(&world))
    );
    assert_eq!(world.calls("createAWSCredentials"), 2);
}

// ---- PointCluster and the redeploys on the role ----

#[tokio::test]
async fn point_cluster_points_once_takes_the_baseline_then_the_cluster_deploys_on_the_role() {
    // GIVEN the role entry made, and the canary's Map item
    let world = world().await;
    let created = create_role_entry(&world, &planned(&world).await).await;
    let entry = role_entry(&world);
    let items = map_items(&created);
    assert_eq!(items.len(), 2);
    let canary = items[0].clone();
    assert_eq!(canary["cluster_id"], CLUSTER_A);
    assert_eq!(canary["target_credentials"], value(&entry));

    // WHEN PointCluster runs, twice (a retry after a lost answer)
    let pointed = deploy_cluster::handle(&world.deps, canary.clone())
        .await
        .unwrap();
    let again = deploy_cluster::handle(&world.deps, canary).await.unwrap();

    // THEN production points at the role entry (staging not yet), with one POST; its
    // baseline is its deployment as of then, and nothing was deployed
    assert_eq!(on(&world, CLUSTER_A), entry.id);
    assert_eq!(on(&world, CLUSTER_B), CREDS);
    assert_eq!(world.calls("specifyClusterCloudProviderInfo"), 1);
    let now = world.cluster(CLUSTER_A);
    assert!(pointed.pointed);
    assert_eq!(pointed.phase, None);
    assert_eq!(
        pointed.baseline_status.as_deref(),
        Some(now.status.as_str())
    );
    assert_eq!(pointed.baseline_execution_id, now.last_execution_id);
    assert_eq!(pointed.baseline_deployment_date, now.last_deployment_date);
    assert_eq!(again, pointed);
    assert_eq!(world.calls("deployCluster"), 0);

    // WHEN DeployCluster and the polling follow
    let deployed = run_iteration(&world, value(&pointed)).await.unwrap();

    // THEN production was deployed once, on the role
    assert_eq!(deployed.phase, Some(Phase::Deployed));
    assert_eq!(world.cluster(CLUSTER_A).deploy_count, 1);
    let checks: Vec<(String, String, bool)> = world
        .fake
        .snapshot()
        .role_checks
        .into_iter()
        .map(|c| (c.cluster_id, c.role_arn, c.ok))
        .collect();
    assert_eq!(
        checks,
        [(CLUSTER_A.to_string(), ROLE_ARN.to_string(), true)]
    );
}

#[tokio::test]
async fn a_canary_that_cannot_deploy_on_the_role_fails_the_migration_before_the_next_wave() {
    // GIVEN the role entry made, and a role Qovery cannot assume
    let world = world().await;
    let created = create_role_entry(&world, &planned(&world).await).await;
    world.fake.set_role_deploys(RoleDeploys::Fail);

    // WHEN DeployClusters runs
    let error = deploy_clusters(&world, &value(&created)).await.unwrap_err();

    // THEN the canary's wave fails with RoleNotProven; staging was never pointed
    assert_eq!(error["Error"], "RoleNotProven", "{error}");
    assert_eq!(on(&world, CLUSTER_A), role_entry(&world).id);
    assert_eq!(on(&world, CLUSTER_B), CREDS);
    let checks = world.fake.snapshot().role_checks;
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].ok && checks[0].cluster_id == CLUSTER_A);
    assert_eq!(world.cluster(CLUSTER_B).deploy_count, 0);
}

// ---- HandOverToRole ----

#[tokio::test]
async fn hand_over_to_role_switches_registries_points_stopped_clusters_and_records_the_hand_over() {
    // GIVEN every running cluster DEPLOYED on the role
    let world = world().await;
    let input = deployed_on_role(&world).await;
    let entry = role_entry(&world);
    assert_eq!(world.fake.snapshot().role_checks.len(), 2);
    let before = writes(&world).len();

    // WHEN HandOverToRole runs
    let state = step(&world, "HandOverToRole", &input).await.unwrap();

    // THEN the registry and the helm repository are on the role, with no key left
    for id in [REGISTRY_A, HELM] {
        let now = registry(&world, id);
        assert_eq!(
            (
                now.role_arn.as_deref(),
                now.access_key_id,
                now.secret_access_key
            ),
            (Some(ROLE_ARN), None, None),
            "{id}"
        );
    }
    // the stopped cluster points at the role, not started; every cluster is on it
    for cluster in [CLUSTER_A, CLUSTER_B, CLUSTER_C] {
        assert_eq!(on(&world, cluster), entry.id, "{cluster}");
    }
    let idle = world.cluster(CLUSTER_C);
    assert_eq!((idle.status.as_str(), idle.deploy_count), ("STOPPED", 0));
    // the static credentials still hold the key, used by no cluster: the quarantine
    // deletes them
    assert_eq!(world.held_by(CREDS).0, world.old_key);
    // the hand-over is recorded, and the drain counts from it
    let record = record(&world).await.unwrap();
    assert_eq!(record.phase, LedgerPhase::HandedOver);
    let handover_at = record.handover_at.clone().unwrap();
    assert_eq!(
        state.qovery_updated_at.as_deref(),
        Some(handover_at.as_str())
    );
    assert_eq!(
        state.drain_until,
        Some(timefmt::after(
            timefmt::parse(&handover_at).unwrap(),
            state.drain_seconds
        ))
    );
    assert_eq!(record.holders, state.holders);
    let switched: Vec<(String, u16)> = writes(&world).split_off(before);
    assert_eq!(
        switched,
        [
            ("specifyClusterCloudProviderInfo".to_string(), 201),
            ("editContainerRegistry".to_string(), 200),
            ("editHelmRepository".to_string(), 200)
        ]
    );

    // WHEN it runs again with the same input, a second later (a retry)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = step(&world, "HandOverToRole", &input).await.unwrap();

    // THEN nothing more is sent, and the hand-over keeps its time
    assert_eq!(writes(&world).len(), before + 3);
    assert_eq!(again, state);
    let record = self::record(&world).await.unwrap();
    assert_eq!(record.handover_at.as_deref(), Some(handover_at.as_str()));
    assert_eq!(record.phase, LedgerPhase::HandedOver);
}

#[tokio::test]
async fn a_holder_that_cannot_move_to_the_role_stops_the_hand_over_and_the_lock_is_kept() {
    // GIVEN a planned migration; then production's secret manager access is given the
    // static key (after preflight, which would have refused it)
    let world = world().await;
    let state = planned(&world).await;
    let (key, secret) = (world.old_key.clone(), world.old_secret.clone());
    world.reseed(|seed| {
        let production = seed
            .clusters
            .iter_mut()
            .find(|c| c.id == CLUSTER_A)
            .unwrap();
        production
            .secret_manager_accesses
            .push(SeedSecretManagerAccess::aws_static(
                ACCESS,
                "app-secrets",
                "eu-west-3",
                &key,
                &secret,
            ));
    });
    let created = create_role_entry(&world, &state).await;
    let input = deploy_clusters(&world, &value(&created)).await.unwrap();

    // WHEN HandOverToRole runs
    let (name, message) = failure(step(&world, "HandOverToRole", &input).await);

    // THEN the hand-over is incomplete, naming the holder; the lock stays with the run,
    // at the switch (the next run finishes it), with no hand-over time
    assert_eq!(name, "HandOverIncomplete", "{message}");
    assert!(message.contains("app-secrets"), "{message}");
    let record = record(&world).await.unwrap();
    assert_eq!(record.execution_id, EXECUTION);
    assert_eq!(record.phase, LedgerPhase::SwitchingHolders);
    assert_eq!(record.handover_at, None);
    assert_eq!(
        world.key_status(&world.old_key).await.as_deref(),
        Some("Active")
    );
}

#[tokio::test]
async fn a_registry_qovery_refuses_to_switch_stops_the_hand_over_which_only_goes_forward() {
    // GIVEN every running cluster DEPLOYED on the role; Qovery refuses the registry's PUT
    let world = world().await;
    let state = planned(&world).await;
    let created = create_role_entry(&world, &state).await;
    let input = deploy_clusters(&world, &value(&created)).await.unwrap();
    world
        .fake
        .inject_fault(Fault::new("editContainerRegistry", 400, 1));

    // WHEN HandOverToRole runs
    let (name, message) = failure(step(&world, "HandOverToRole", &input).await);

    // THEN the refusal is HandOverIncomplete (never retried, never undone: the next run
    // finishes), naming the registry; the key stays
    assert_eq!(name, "HandOverIncomplete", "{message}");
    assert!(message.contains("containerRegistry"), "{message}");
    let record = record(&world).await.unwrap();
    assert_eq!(record.phase, LedgerPhase::SwitchingHolders);
    assert_eq!(record.handover_at, None);
    assert_eq!(
        world.key_status(&world.old_key).await.as_deref(),
        Some("Active")
    );
    // ... and from the switch on, even before a hand-over time, it is never undone
    let (name, message) = failure(step(&world, "UndoMigration", &input).await);
    assert_eq!(name, "PreconditionFailed", "{message}");
    assert!(message.contains("never undone"), "{message}");
}

#[tokio::test]
async fn a_cluster_added_to_the_static_credentials_since_preflight_stops_the_hand_over() {
    // GIVEN a planned migration; then a new cluster is set up on the static credentials
    let world = world().await;
    let state = planned(&world).await;
    world.reseed(|seed| {
        seed.clusters
            .push(SeedCluster::new(CLUSTER_D, "late", CREDS));
    });
    let created = create_role_entry(&world, &state).await;
    let input = deploy_clusters(&world, &value(&created)).await.unwrap();

    // WHEN HandOverToRole runs
    let (name, message) = failure(step(&world, "HandOverToRole", &input).await);

    // THEN the static credentials, still used by that cluster, stop it: they would be
    // deleted with the key under a running cluster
    assert_eq!(name, "HandOverIncomplete", "{message}");
    assert!(message.contains("credentials aws-prod"), "{message}");
    assert_eq!(record(&world).await.unwrap().handover_at, None);
}

#[tokio::test]
async fn an_undo_never_moves_a_cluster_someone_pointed_at_other_credentials() {
    // GIVEN a second static entry in the organization; the canary failed on the role,
    // then someone pointed it at that other entry
    let mut options = options();
    options
        .credentials
        .push(Entry::new(CREDS_OTHER, "aws-other", Holds::Key(OTHER_KEY)));
    let world = world_with(options).await;
    let created = create_role_entry(&world, &planned(&world).await).await;
    world.fake.set_role_deploys(RoleDeploys::Fail);
    let error = deploy_clusters(&world, &value(&created)).await.unwrap_err();
    let failed = with_caught_error("DeployClusters", "UndoMigration", &value(&created), error);
    point(&world, CLUSTER_A, CREDS_OTHER, "aws-other").await;

    // WHEN UndoMigration runs
    let (name, message) = failure(step(&world, "UndoMigration", &failed).await);

    // THEN it refuses: it moves back only clusters on this migration's role credentials
    assert_eq!(name, "PreconditionFailed", "{message}");
    assert!(message.contains("someone moved it"), "{message}");
    assert_eq!(on(&world, CLUSTER_A), CREDS_OTHER);
}

#[tokio::test]
async fn a_delete_qovery_refuses_or_cannot_answer_keeps_the_role_credentials_and_the_lock() {
    // GIVEN an undone migration (the canary back on its static credentials)
    let world = world().await;
    let created = create_role_entry(&world, &planned(&world).await).await;
    world.fake.set_role_deploys(RoleDeploys::Fail);
    let error = deploy_clusters(&world, &value(&created)).await.unwrap_err();
    let failed = with_caught_error("DeployClusters", "UndoMigration", &value(&created), error);
    let undone = step(&world, "UndoMigration", &failed).await.unwrap();
    world.fake.set_role_deploys(RoleDeploys::Succeed);
    let redeployed = deploy_clusters(&world, &value(&undone)).await.unwrap();

    // WHEN Qovery cannot answer the DELETE, then refuses it
    world
        .fake
        .inject_fault(Fault::new("deleteAWSCredentials", 503, 1));
    let (unavailable, _) = failure(abandon(&world, &redeployed).await);
    world
        .fake
        .inject_fault(Fault::new("deleteAWSCredentials", 400, 1));
    let (refused, message) = failure(abandon(&world, &redeployed).await);

    // THEN an outage stays retryable, a refusal is UnsafeDelete; the role credentials
    // and the lock stay either way
    assert_eq!(unavailable, "QoveryUnavailable");
    assert_eq!(refused, "UnsafeDelete", "{message}");
    assert_eq!(role_entries(&world).len(), 1);
    assert_eq!(record(&world).await.unwrap().execution_id, EXECUTION);
}

#[tokio::test]
async fn a_quarantine_whose_delete_qovery_cannot_answer_is_retried_and_switches_nothing_off() {
    // GIVEN the hand-over to the role done
    let world = world().await;
    let mut state = handed_over_to_role(&world).await;
    state.quarantine_seconds = 3600;
    world
        .fake
        .inject_fault(Fault::new("deleteAWSCredentials", 503, 1));

    // WHEN QuarantineOldKey runs and Qovery answers 503 to the static credentials' DELETE
    let (name, message) = failure(quarantine(&world, &state).await);

    // THEN it is an outage (the ASL retries it), and the key is still on
    assert_eq!(name, "QoveryUnavailable", "{message}");
    assert_eq!(
        world.key_status(&world.old_key).await.as_deref(),
        Some("Active")
    );
}

// ---- the quarantine and DeleteOldKey of a migration ----

#[tokio::test]
async fn the_quarantine_of_a_migration_deletes_the_static_credentials_then_switches_the_key_off() {
    // GIVEN the hand-over to the role done, and a quarantine to keep
    let world = world().await;
    let mut state = handed_over_to_role(&world).await;
    state.quarantine_seconds = 3600;
    let mut delete = world.fake.hold("deleteAWSCredentials", 0);

    // WHEN QuarantineOldKey runs
    let at_the_delete = async {
        tokio::time::timeout(std::time::Duration::from_secs(60), delete.reached())
            .await
            .expect("the quarantine deleted the static credentials");
        let status = world.key_status(&world.old_key).await;
        delete.release();
        status
    };
    let (result, status_at_the_delete) = tokio::join!(quarantine(&world, &state), at_the_delete);
    let result = result.unwrap();

    // THEN the static credentials went first, while the key was still on; then the key
    // was switched off
    assert_eq!(status_at_the_delete.as_deref(), Some("Active"));
    let deletes: Vec<(String, u16)> = writes(&world)
        .into_iter()
        .filter(|(op, _)| op == "deleteAWSCredentials")
        .collect();
    assert_eq!(deletes, [("deleteAWSCredentials".to_string(), 204)]);
    assert!(world.holders().iter().all(|(id, _)| id != CREDS));
    assert!(result.switched_off, "{result:?}");
    assert_eq!(
        world.key_status(&world.old_key).await.as_deref(),
        Some("Inactive")
    );
    assert_eq!(
        record(&world).await.unwrap().phase,
        LedgerPhase::Quarantined
    );
}

#[tokio::test]
async fn the_quarantine_of_a_migration_is_refused_while_a_cluster_uses_the_static_credentials() {
    // GIVEN the hand-over to the role done; then someone points staging back at the
    // static credentials
    let world = world().await;
    let mut state = handed_over_to_role(&world).await;
    state.quarantine_seconds = 3600;
    point(&world, CLUSTER_B, CREDS, "aws-prod").await;

    // WHEN QuarantineOldKey runs
    let (name, message) = failure(quarantine(&world, &state).await);

    // THEN it is refused: nothing deleted, the key still on
    assert_eq!(name, "UnsafeDelete", "{message}");
    assert!(
        message.contains(&format!(
            "The static credentials aws-prod ({CREDS}) hold the old key and cannot be deleted yet"
        )) && message.contains("staging"),
        "{message}"
    );
    assert_eq!(world.calls("deleteAWSCredentials"), 0);
    assert_eq!(world.held_by(CREDS).0, world.old_key);
    assert_eq!(
        world.key_status(&world.old_key).await.as_deref(),
        Some("Active")
    );
}

#[tokio::test]
async fn delete_old_key_of_a_migration_deletes_the_key_once_and_releases_the_lock() {
    // GIVEN the hand-over done and the quarantine passed (none kept: the key is on)
    let world = world().await;
    let state = drained(&world, handed_over_to_role(&world).await, 0).await;

    // WHEN DeleteOldKey runs, twice (a retry after a lost answer)
    let first = delete(&world, "DeleteOldKey", &state).await.unwrap();
    let second = delete(&world, "DeleteOldKey", &state).await.unwrap();

    // THEN the key is gone, the role kept, the lock released; the retry saw it gone
    assert_eq!(first.deleted_access_key_id, world.old_key);
    assert_eq!(first.kept_access_key_id, ROLE_ARN);
    assert!(!first.already_deleted);
    assert!(second.already_deleted);
    assert!(world.key_ids().await.is_empty());
    assert!(record(&world).await.is_none());
}

#[tokio::test]
async fn delete_old_key_of_a_migration_is_refused_while_a_cluster_or_a_registry_is_off_the_role() {
    // GIVEN another entry, with a key that is not the user's; the hand-over done and the
    // quarantine passed
    let mut options = options();
    options
        .credentials
        .push(Entry::new(CREDS_OTHER, "aws-other", Holds::Key(OTHER_KEY)));
    let world = world_with(options).await;
    let state = drained(&world, handed_over_to_role(&world).await, 0).await;
    let entry = role_entry(&world);

    // WHEN staging is moved to the other entry, and DeleteOldKey runs
    point(&world, CLUSTER_B, CREDS_OTHER, "aws-other").await;
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);

    // THEN it is refused, naming staging; the key stays
    assert_eq!(name, "UnsafeDelete", "{message}");
    assert!(message.contains("staging"), "{message}");
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);

    // WHEN staging is back on the role, but the registry is given another key
    point(&world, CLUSTER_B, &entry.id, &entry.name).await;
    world.fake.put_container_registry(
        SeedRegistry::ecr(
            REGISTRY_A,
            "registry-production",
            "eu-west-3",
            OTHER_KEY,
            "a-secret-of-another-key",
        )
        .mirroring(CLUSTER_A),
    );
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);

    // THEN it is refused too, naming the registry
    assert_eq!(name, "UnsafeDelete", "{message}");
    assert!(message.contains("registry-production"), "{message}");
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(record(&world).await.unwrap().execution_id, EXECUTION);

    // WHEN the registry is on the role again
    world.fake.put_container_registry(
        SeedRegistry::ecr_role(REGISTRY_A, "registry-production", "eu-west-3", ROLE_ARN)
            .mirroring(CLUSTER_A),
    );

    // THEN the key goes
    delete(&world, "DeleteOldKey", &state).await.unwrap();
    assert!(world.key_ids().await.is_empty());
}

// ---- UndoMigration and AbandonMigration ----

#[tokio::test]
async fn a_role_not_proven_is_undone_and_abandon_removes_the_role_credentials_it_made() {
    // GIVEN a canary that could not deploy on the role: DeployClusters failed with
    // RoleNotProven, caught into migration_error
    let world = world().await;
    let created = create_role_entry(&world, &planned(&world).await).await;
    let entry = role_entry(&world);
    world.fake.set_role_deploys(RoleDeploys::Fail);
    let error = deploy_clusters(&world, &value(&created)).await.unwrap_err();
    assert_eq!(error["Error"], "RoleNotProven");
    let failed = with_caught_error(
        "DeployClusters",
        "UndoMigration",
        &value(&created),
        error.clone(),
    );
    let original: Value = serde_json::from_str(error["Cause"].as_str().unwrap()).unwrap();
    let original = original["errorMessage"].as_str().unwrap().to_string();

    // WHEN AbandonMigration is called before the undo (the canary still on the role)
    let (name, message) = failure(abandon(&world, &failed).await);

    // THEN it is refused: the role credentials stay, and the lock
    assert_eq!(name, "UnsafeDelete", "{message}");
    assert!(message.contains("production"), "{message}");
    assert_eq!(role_entries(&world).len(), 1);
    assert_eq!(record(&world).await.unwrap().execution_id, EXECUTION);

    // WHEN UndoMigration runs, twice (a retry after a lost answer)
    let undone = step(&world, "UndoMigration", &failed).await.unwrap();
    let again = step(&world, "UndoMigration", &failed).await.unwrap();

    // THEN the canary points back at its static credentials (one POST back), and is the
    // only cluster to redeploy, on the key, from its deployment as of now
    assert_eq!(on(&world, CLUSTER_A), CREDS);
    assert_eq!(on(&world, CLUSTER_B), CREDS);
    assert_eq!(world.calls("specifyClusterCloudProviderInfo"), 2);
    assert_eq!(undone.mode, Mode::UndoMigration);
    let now = world.cluster(CLUSTER_A);
    let waves: Vec<Vec<_>> = undone
        .deploy_waves
        .iter()
        .map(|w| {
            w.iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        c.target_credentials.clone(),
                        c.handover_status.clone(),
                        c.handover_execution_id.clone(),
                    )
                })
                .collect()
        })
        .collect();
    assert_eq!(
        waves,
        [vec![(
            CLUSTER_A.to_string(),
            None,
            Some(now.status.clone()),
            now.last_execution_id.clone()
        )]]
    );
    assert_eq!(
        record(&world).await.unwrap().phase,
        LedgerPhase::UndoingMigration
    );
    // and the retry, which finds the canary pointed back already, still redeploys it
    // (it cannot tell the clusters it pointed back from those that never moved: every
    // running one is redeployed on its static credentials)
    assert_eq!(again.deploy_waves.first(), undone.deploy_waves.first());
    assert!(again
        .deploy_waves
        .iter()
        .flatten()
        .all(|c| c.target_credentials.is_none()));
    assert_eq!(world.calls("specifyClusterCloudProviderInfo"), 2);

    // WHEN the undo's DeployClusters runs (after the retry), then AbandonMigration, twice
    let redeployed = deploy_clusters(&world, &value(&again)).await.unwrap();
    assert_eq!(world.cluster(CLUSTER_A).deploy_count, 2);
    assert!(
        world.fake.snapshot().role_checks.len() == 1,
        "no deploy on the role since"
    );
    assert_eq!(world.cluster(CLUSTER_A).status, "DEPLOYED");
    let abandoned = abandon(&world, &redeployed).await.unwrap();
    let repeat = abandon(&world, &redeployed).await.unwrap();

    // THEN the role credentials it made are deleted, the lock released, and the cause
    // is the original error's, then what was undone
    assert!(role_entries(&world).is_empty());
    assert_eq!(
        abandoned.deleted_role_credentials,
        [format!("{ROLE_ENTRY_NAME} ({})", entry.id)]
    );
    assert!(record(&world).await.is_none());
    for cause in [&abandoned.cause, &repeat.cause] {
        assert!(cause.starts_with(&original), "{cause}");
        assert!(
            cause.contains(&format!("The migration to role {ROLE_ARN} was undone")),
            "{cause}"
        );
    }
    assert!(repeat.deleted_role_credentials.is_empty());
    assert_eq!(world.calls("deleteAWSCredentials"), 1);
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(world.held_by(CREDS).0, world.old_key);
}

#[tokio::test]
async fn abandon_never_deletes_role_credentials_that_were_there_before_the_migration() {
    // GIVEN role credentials for the role made by hand before the migration (so in its
    // credentials_before), and one an earlier attempt of this run made (its 201 lost)
    let world = world().await;
    world.reseed(|seed| {
        seed.credentials
            .push(SeedCredentials::role(CREDS_OTHER, "by-hand", ROLE_ARN))
    });
    let state = planned(&world).await;
    assert!(state
        .migration
        .as_ref()
        .unwrap()
        .credentials_before
        .contains(&CREDS_OTHER.to_string()));
    world
        .deps
        .qovery
        .create_aws_role_credentials(&token(), ORG, ROLE_ENTRY_NAME, ROLE_ARN)
        .await
        .unwrap();
    let created = create_role_entry(&world, &state).await;
    let entry = role_entry(&world);
    assert_eq!(
        created.migration.as_ref().unwrap().role_credentials,
        Some(entry.clone())
    );

    // and the canary pointed, then a RoleNotProven
    let canary = map_items(&created)[0].clone();
    deploy_cluster::handle(&world.deps, canary).await.unwrap();
    let cause = json!({"errorType": "RoleNotProven",
                       "errorMessage": "Cluster production could not deploy on the role."});
    let failed = with_caught_error(
        "DeployClusters",
        "UndoMigration",
        &value(&created),
        json!({"Error": "RoleNotProven", "Cause": cause.to_string()}),
    );

    // WHEN the undo runs to its end
    let undone = step(&world, "UndoMigration", &failed).await.unwrap();
    let redeployed = deploy_clusters(&world, &value(&undone)).await.unwrap();
    let abandoned = abandon(&world, &redeployed).await.unwrap();

    // THEN only the run's own entry is deleted; the one made by hand stays
    assert_eq!(
        abandoned.deleted_role_credentials,
        [format!("{ROLE_ENTRY_NAME} ({})", entry.id)]
    );
    assert_eq!(
        role_entries(&world),
        [(CREDS_OTHER.to_string(), "by-hand".to_string())]
    );
    assert!(abandoned
        .cause
        .starts_with("Cluster production could not deploy on the role."));
    assert!(record(&world).await.is_none());
}

#[tokio::test]
async fn a_migration_that_handed_over_is_never_undone() {
    // GIVEN the hand-over to the role done
    let world = world().await;
    let state = handed_over_to_role(&world).await;
    let entry = role_entry(&world);
    let pointings = world.calls("specifyClusterCloudProviderInfo");

    // WHEN UndoMigration is called
    let (name, message) = failure(step(&world, "UndoMigration", &value(&state)).await);

    // THEN it is refused, and every cluster stays on the role
    assert_eq!(name, "PreconditionFailed", "{message}");
    assert!(message.contains("never undone"), "{message}");
    assert_eq!(world.calls("specifyClusterCloudProviderInfo"), pointings);
    for cluster in [CLUSTER_A, CLUSTER_B, CLUSTER_C] {
        assert_eq!(on(&world, cluster), entry.id);
    }
    assert_eq!(record(&world).await.unwrap().phase, LedgerPhase::HandedOver);
}

// ---- the next run's preflight ----

async fn preflight_of_the_next_run(
    world: &World,
    input: Value,
) -> Result<RotationState, RotationError> {
    preflight::handle(&world.deps, world.preflight_event_for(EXECUTION_2, input)).await
}

#[tokio::test]
async fn a_migration_an_ended_run_left_moving_clusters_is_undone_by_the_next_run() {
    // GIVEN a run that ended with the canary pointed at the role (EXECUTION is not in
    // moto's Step Functions: it ended)
    let world = world().await;
    let created = create_role_entry(&world, &planned(&world).await).await;
    let canary = map_items(&created)[0].clone();
    deploy_cluster::handle(&world.deps, canary).await.unwrap();

    // WHEN the next run asks for another role
    let (name, message) =
        failure(preflight_of_the_next_run(&world, migration_input(&world, OTHER_ROLE)).await);

    // THEN it is refused, naming both roles, and the lock stays
    assert_eq!(name, "PreconditionFailed", "{message}");
    assert!(
        message.contains(ROLE_ARN) && message.contains(OTHER_ROLE),
        "{message}"
    );
    assert_eq!(world.lock_holder().await, EXECUTION);

    // WHEN the next run starts without migrate_to_role
    let state = preflight_of_the_next_run(&world, world.input())
        .await
        .unwrap();

    // THEN it undoes the migration, and takes the lock over
    assert_eq!(state.mode, Mode::UndoMigration);
    assert_eq!(state.recovery, Recovery::Undo);
    assert_eq!(state.migration, created.migration);
    let record = record(&world).await.unwrap();
    assert_eq!(record.execution_id, EXECUTION_2);
    assert_eq!(record.took_over_from.as_deref(), Some(EXECUTION));
    assert_eq!(record.phase, LedgerPhase::MovingClusters);

    // and its undo (WhichWork → UndoMigration) points the canary back, then abandons
    let undone = step(&world, "UndoMigration", &value(&state)).await.unwrap();
    assert_eq!(on(&world, CLUSTER_A), CREDS);
    let redeployed = deploy_clusters(&world, &value(&undone)).await.unwrap();
    let abandoned = abandon(&world, &redeployed).await.unwrap();
    assert!(
        abandoned
            .cause
            .starts_with("An ended run left the migration unfinished."),
        "{}",
        abandoned.cause
    );
    assert!(role_entries(&world).is_empty());
    assert!(self::record(&world).await.is_none());
}

#[tokio::test]
async fn a_migration_an_ended_run_left_handed_over_is_finished_by_the_next_run() {
    // GIVEN a run that ended after HandOverToRole
    let world = world().await;
    let ended = handed_over_to_role(&world).await;

    // WHEN the next run starts without migrate_to_role
    let state = preflight_of_the_next_run(&world, world.input())
        .await
        .unwrap();

    // THEN it finishes the migration (WhichWork → HandOverToRole), with the lock
    assert_eq!(state.mode, Mode::Migrate);
    assert_eq!(state.recovery, Recovery::Finish);
    assert_eq!(world.lock_holder().await, EXECUTION_2);
    let finished = step(&world, "HandOverToRole", &value(&state))
        .await
        .unwrap();
    assert_eq!(finished.qovery_updated_at, ended.qovery_updated_at);
    assert_eq!(finished.drain_until, ended.drain_until);

    // and asked for another role, a run is refused, naming both
    let (name, message) = failure(
        preflight::handle(
            &world.deps,
            world.preflight_event_for(
                "arn:aws:states:us-east-1:123456789012:execution:rotation:run-3",
                migration_input(&world, OTHER_ROLE),
            ),
        )
        .await,
    );
    assert_eq!(name, "PreconditionFailed", "{message}");
    assert!(
        message.contains(ROLE_ARN) && message.contains(OTHER_ROLE),
        "{message}"
    );
}

#[tokio::test]
async fn an_undo_an_ended_run_left_redeploys_the_clusters_it_pointed_back() {
    // GIVEN a run that ended in its undo: the canary failed on the role, was pointed
    // back, and the run stopped before its redeploy on the key
    let world = world().await;
    let created = create_role_entry(&world, &planned(&world).await).await;
    world.fake.set_role_deploys(RoleDeploys::Fail);
    let error = deploy_clusters(&world, &value(&created)).await.unwrap_err();
    let failed = with_caught_error("DeployClusters", "UndoMigration", &value(&created), error);
    step(&world, "UndoMigration", &failed).await.unwrap();
    assert_eq!(on(&world, CLUSTER_A), CREDS);
    let broken = world.cluster(CLUSTER_A);
    assert_eq!(broken.status, "INVALID_CREDENTIALS");

    // WHEN the next run undoes it
    let state = preflight_of_the_next_run(&world, world.input())
        .await
        .unwrap();
    assert_eq!(
        (state.mode, state.recovery),
        (Mode::UndoMigration, Recovery::Undo)
    );
    let undone = step(&world, "UndoMigration", &value(&state)).await.unwrap();

    // THEN the canary, already back on its static credentials, is still redeployed there
    let planned: Vec<&str> = undone
        .deploy_waves
        .iter()
        .flatten()
        .map(|c| c.id.as_str())
        .collect();
    assert!(planned.contains(&CLUSTER_A), "{planned:?}");
    let redeployed = deploy_clusters(&world, &value(&undone)).await.unwrap();
    assert_eq!(world.cluster(CLUSTER_A).status, "DEPLOYED");
    assert_eq!(world.cluster(CLUSTER_A).deploy_count, 2);
    abandon(&world, &redeployed).await.unwrap();
    assert!(role_entries(&world).is_empty());
    assert!(record(&world).await.is_none());
}
