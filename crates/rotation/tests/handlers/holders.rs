//! Every place Qovery keeps the key: container registries (mirroring registries among
//! them), helm repositories, secret manager accesses and DNS providers, beside the
//! credentials entries. Each step handler against moto and the fake Qovery, called with
//! the input the ASL gives it. Every test checks what every holder holds afterwards.

use crate::support::*;
use qovery_fake::{
    Fault, SeedCluster, SeedCredentials, SeedDnsProvider, SeedRegistry, SeedSecretManagerAccess,
};
use rotation::qovery::HolderKind;
use rotation::state::{QoveryHolds, RotationState};
use rotation::steps::preflight;
use serde_json::json;

const OTHER_KEY: &str = "AKIAOTHERKEY00000001";
const ROLE: &str = "arn:aws:iam::123456789012:role/qovery-ecr";

/// The default world (credentials "aws-prod", clusters production and staging), with
/// production's mirroring registry and an `OCI_ECR` helm repository holding the user's
/// key, a registry of another key and a role-based helm repository.
fn with_registries() -> WorldOptions {
    WorldOptions {
        container_registries: vec![
            SeedRegistry::ecr(
                REGISTRY_A,
                "registry-production",
                "eu-west-3",
                USER_KEY,
                USER_KEY,
            )
            .mirroring(CLUSTER_A)
            .with_description("mirroring registry of production"),
            SeedRegistry::ecr(REGISTRY_B, "shared-ecr", "us-east-1", OTHER_KEY, "other"),
        ],
        helm_repositories: vec![
            SeedRegistry::oci_ecr(HELM, "charts", "eu-west-3", USER_KEY, USER_KEY),
            SeedRegistry::oci_ecr_role(ACCESS, "charts-by-role", "eu-west-3", ROLE),
        ],
        ..Default::default()
    }
}

fn kinds(state: &RotationState) -> Vec<(HolderKind, String)> {
    state
        .holders
        .iter()
        .map(|h| (h.kind, h.id.clone()))
        .collect()
}

/// Qovery's answer for every registry and helm repository, as JSON: what a PUT must
/// not change besides the key.
fn registries_as_seen(world: &World) -> Vec<(String, String, Option<String>, Option<String>)> {
    let snapshot = world.fake.snapshot();
    snapshot
        .container_registries
        .into_iter()
        .chain(snapshot.helm_repositories)
        .map(|r| (r.id, r.name, r.url, r.description))
        .collect()
}

#[tokio::test]
async fn preflight_finds_every_holder_of_the_key_and_names_the_others() {
    // GIVEN the key held by credentials, a mirroring registry, a helm repository and
    // staging's Route53 DNS provider; a registry of another key and a helm repository
    // by role
    let mut options = with_registries();
    options.clusters[1] = SeedCluster::new(CLUSTER_B, "staging", CREDS).with_dns_provider(
        SeedDnsProvider::route53("staging.example.com", "eu-west-3", USER_KEY, USER_KEY),
    );
    let world = World::with(options).await;

    // WHEN preflight runs, as a dry run
    let mut input = world.input();
    input["dry_run"] = json!(true);
    let state = preflight::handle(&world.deps, world.preflight_event(input))
        .await
        .unwrap();

    // THEN every holder of the key is in the plan, by kind and id, holding the old key
    assert_eq!(
        kinds(&state),
        vec![
            (HolderKind::Credentials, CREDS.to_string()),
            (HolderKind::ContainerRegistry, REGISTRY_A.to_string()),
            (HolderKind::HelmRepository, HELM.to_string()),
            (HolderKind::DnsProvider, CLUSTER_B.to_string()),
        ]
    );
    assert!(state
        .holders
        .iter()
        .all(|h| h.access_key_id.as_deref() == Some(world.old_key.as_str())));
    let registry = &state.holders[1];
    assert_eq!(registry.name, "registry-production");
    assert_eq!(registry.cluster_id.as_deref(), Some(CLUSTER_A));
    // The others are named and left alone.
    let left: Vec<(&str, &str)> = state
        .report
        .left_alone
        .iter()
        .map(|l| (l.holder.id.as_str(), l.reason.as_str()))
        .collect();
    assert_eq!(
        left,
        vec![
            (REGISTRY_B, format!("holds {OTHER_KEY}").as_str()),
            (ACCESS, format!("uses role {ROLE}").as_str()),
        ]
    );
    let summary = &state.report.summary;
    for needle in [
        "container registry registry-production",
        "helm repository charts",
        "DNS provider staging.example.com",
        "Left alone",
        "shared-ecr",
        OTHER_KEY,
    ] {
        assert!(summary.contains(needle), "{needle}: {summary}");
    }
    // Both clusters are redeployed: production for its credentials, staging also for
    // its DNS provider.
    assert_eq!(state.clusters.len(), 2);
    // AND nothing changed
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert!(world
        .fake
        .snapshot()
        .requests
        .iter()
        .all(|r| r.method == "GET"));
}

#[tokio::test]
async fn preflight_refuses_a_secret_manager_access_holding_the_key_and_changes_nothing() {
    // GIVEN production's secret manager access holds the user's key
    let world = World::with_production(|production| {
        production
            .secret_manager_accesses
            .push(SeedSecretManagerAccess::aws_static(
                ACCESS,
                "app-secrets",
                "eu-west-3",
                USER_KEY,
                USER_KEY,
            ));
    })
    .await;

    // WHEN preflight runs
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(world.input())).await);

    // THEN it refuses, naming the access and its cluster, and says what to do
    assert_eq!(name, "PreconditionFailed");
    for needle in [
        "secret manager access app-secrets",
        ACCESS,
        "of cluster production",
        CLUSTER_A,
        "editCluster",
        "Nothing was changed",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);

    // AND an access by role is left alone: the rotation goes ahead
    world.reseed(|seed| {
        seed.clusters[0].secret_manager_accesses[0] =
            SeedSecretManagerAccess::role(ACCESS, "app-secrets", "eu-west-3", ROLE);
    });
    let state = preflighted(&world).await;
    assert_eq!(state.report.left_alone.len(), 1, "{:?}", state.report);
}

#[tokio::test]
async fn update_qovery_gives_every_holder_the_new_key_and_sends_every_field_back() {
    // GIVEN the key held by credentials, a mirroring registry and a helm repository
    let world = World::with(with_registries()).await;
    let before = registries_as_seen(&world);
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let new_secret = world.stored_secret(&state).await;

    // WHEN update-qovery runs
    let state = update(&world, &state).await.unwrap();

    // THEN each holder of the old key holds the new one, and it works with STS
    for id in [REGISTRY_A, HELM] {
        let (key, secret) = world.registry_key(id);
        assert_eq!(key, new_key, "{id}");
        assert_eq!(secret, new_secret, "{id}");
        assert!(world.moto.caller(&key, &secret).await.is_ok());
    }
    assert_eq!(world.held_by(CREDS).0, new_key);
    // The others were not touched, and no field but the key changed (the fake refuses
    // a PUT that drops or changes one).
    assert_eq!(world.registry_key(REGISTRY_B).0, OTHER_KEY);
    assert_eq!(registries_as_seen(&world), before);
    assert_eq!(world.calls("editContainerRegistry"), 1);
    assert_eq!(world.calls("editHelmRepository"), 1);
    assert!(state
        .holders
        .iter()
        .all(|h| h.access_key_id.as_deref() == Some(new_key.as_str())));
    assert_eq!(state.holders.len(), 3);
    // The secret now lives only in Qovery.
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);

    // WHEN it runs again with the same input (the first answer lost)
    let again = update(&world, &created_state_of(&state)).await.unwrap();

    // THEN no holder is sent the key twice
    assert_eq!(world.calls("editContainerRegistry"), 1);
    assert_eq!(world.calls("editHelmRepository"), 1);
    assert_eq!(world.calls("editAWSCredentials"), 1);
    assert_eq!(again.holders, state.holders);
}

/// The state as create-key left it: what a retried UpdateQovery gets again.
fn created_state_of(state: &RotationState) -> RotationState {
    RotationState {
        qovery_updated_at: None,
        drain_until: None,
        ..state.clone()
    }
}

#[tokio::test]
async fn a_registry_put_refused_after_the_credentials_moved_only_goes_forward() {
    // GIVEN credentials and a mirroring registry holding the key; Qovery refuses the
    // registry's PUT
    let world = World::with(with_registries()).await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let new_secret = world.stored_secret(&state).await;
    world
        .fake
        .inject_fault(Fault::new("editContainerRegistry", 400, 100));

    // WHEN update-qovery runs
    let (name, message) = failure(update(&world, &state).await);

    // THEN it is HandOverIncomplete (never rolled back), naming each holder and its key
    assert_eq!(name, "HandOverIncomplete", "{message}");
    for needle in [
        format!("Holders on the new key {new_key}: credentials aws-prod ({CREDS})"),
        format!(
            "Holders still on the old key {}: container registry registry-production ({REGISTRY_A})",
            world.old_key
        ),
        "helm repository charts".to_string(),
    ] {
        assert!(message.contains(&needle), "{needle}: {message}");
    }
    assert!(!message.contains("after two hours"), "{message}");
    assert_eq!(world.held_by(CREDS).0, new_key);
    assert_eq!(world.registry_key(REGISTRY_A).0, world.old_key);
    // The secret is kept: the registry still needs it.
    assert_eq!(world.stored_secret(&state).await, new_secret);

    // WHEN the state machine reconciles: mixed, so it goes forward
    let result = reconcile(&world, &state).await;
    assert_eq!(result.qovery_holds, QoveryHolds::Mixed);

    // AND a rollback, were it ever run, refuses and leaves the new key on
    let (name, message) = failure(delete(&world, "RollbackNewKey", &state).await);
    assert_eq!(name, "UnsafeDelete");
    assert!(
        message.contains(&format!("Holders of {new_key}: credentials aws-prod")),
        "{message}"
    );
    assert_eq!(world.key_status(&new_key).await.as_deref(), Some("Active"));

    // WHEN Qovery accepts the PUT again, FinishHandOver completes the hand-over
    world.reseed(|_| {});
    let finished = update(&world, &state).await.unwrap();
    assert_eq!(world.registry_key(REGISTRY_A).0, new_key);
    assert_eq!(
        world.calls("editAWSCredentials"),
        0,
        "the credentials already hold it"
    );
    assert_eq!(finished.holders.len(), 3);
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
}

#[tokio::test]
async fn a_holder_that_takes_the_old_key_after_preflight_gets_the_new_one_and_its_clusters_are_redeployed(
) {
    // GIVEN preflight ran; then a registry starts holding the old key, and a new
    // credentials entry holding it with a running cluster appears
    let world = World::with(WorldOptions {
        clusters: vec![SeedCluster::new(CLUSTER_A, "production", CREDS)],
        ..Default::default()
    })
    .await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    world.reseed(|seed| {
        seed.credentials.push(SeedCredentials::new(
            CREDS_OTHER,
            "aws-late",
            &world.old_key,
            &world.old_secret,
        ));
        seed.clusters
            .push(SeedCluster::new(CLUSTER_D, "late", CREDS_OTHER));
    });
    world.fake.put_container_registry(SeedRegistry::ecr(
        REGISTRY_A,
        "registry-late",
        "eu-west-3",
        &world.old_key,
        &world.old_secret,
    ));

    // WHEN update-qovery runs
    let state = update(&world, &state).await.unwrap();

    // THEN both hold the new key, and the new entry's cluster joins the redeploys
    assert_eq!(world.registry_key(REGISTRY_A).0, new_key);
    assert_eq!(world.held_by(CREDS_OTHER).0, new_key);
    let planned: Vec<&str> = state.clusters.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(planned, [CLUSTER_A, CLUSTER_D]);
    assert!(state.clusters[1].handover_status.is_some());
    assert!(state.clusters[1].held_by.contains(CREDS_OTHER));
    // The ledger names them among the rotation's holders: a run that ends now is
    // finished by one that checks them too.
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    for late in [CREDS_OTHER, REGISTRY_A] {
        assert!(
            record.holders.iter().any(|h| h.id == late),
            "{late}: {:?}",
            record.holders
        );
    }
}

#[tokio::test]
async fn a_holder_changed_to_a_third_key_during_the_rotation_stops_the_hand_over() {
    // GIVEN a created key, and the entry preflight recorded now holding a key that is
    // neither the old nor the new one (someone edited it by hand)
    let world = World::new().await;
    let state = created(&world).await;
    world.reseed(|seed| {
        seed.credentials[0].access_key_id = "AKIAELSEWHERE0000001".into();
    });

    // WHEN update-qovery runs
    let (name, message) = failure(update(&world, &state).await);

    // THEN it refuses before any PUT: whoever changed it must be asked first
    assert_eq!(name, "PreconditionFailed");
    assert!(
        message.contains("neither the old key") && message.contains("AKIAELSEWHERE0000001"),
        "{message}"
    );
    assert_eq!(world.calls("editAWSCredentials"), 0);
}

#[tokio::test]
async fn delete_key_asks_every_kind_of_holder_again_before_deleting() {
    // GIVEN the hand-over is done
    let world = World::with(with_registries()).await;
    let state = handed_over(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();

    // WHEN a registry (or a secret manager access) starts holding the old key
    world.fake.put_container_registry(SeedRegistry::ecr(
        REGISTRY_B,
        "shared-ecr",
        "us-east-1",
        &world.old_key,
        &world.old_secret,
    ));
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);

    // THEN the delete is refused, naming it and the holders of each key
    assert_eq!(name, "UnsafeDelete");
    assert!(
        message.contains(&format!(
            "container registry shared-ecr ({REGISTRY_B}) holds {}",
            world.old_key
        )) && message.contains(&format!("Holders of {new_key}: credentials aws-prod")),
        "{message}"
    );
    assert_eq!(world.key_ids().await.len(), 2);

    world.fake.put_container_registry(SeedRegistry::ecr(
        REGISTRY_B,
        "shared-ecr",
        "us-east-1",
        OTHER_KEY,
        "other",
    ));
    world.reseed(|seed| {
        seed.clusters[1]
            .secret_manager_accesses
            .push(SeedSecretManagerAccess::aws_static(
                ACCESS,
                "app-secrets",
                "eu-west-3",
                &world.old_key,
                &world.old_secret,
            ));
    });
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);
    assert_eq!(name, "UnsafeDelete");
    assert!(
        message.contains("secret manager access app-secrets"),
        "{message}"
    );
    assert_eq!(world.key_ids().await.len(), 2);

    // WHEN nothing holds it any more, it is deleted
    world.reseed(|seed| seed.clusters[1].secret_manager_accesses.clear());
    let result = delete(&world, "DeleteOldKey", &state).await.unwrap();
    assert_eq!(result.deleted_access_key_id, world.old_key);
    assert_eq!(result.kept_by.len(), 3, "{:?}", result.kept_by);
    assert_eq!(world.key_ids().await, vec![new_key]);
}

#[tokio::test]
async fn a_dns_provider_holding_the_key_gets_the_new_one_and_its_cluster_is_redeployed() {
    // GIVEN only production's Route53 DNS provider and the credentials hold the key;
    // staging uses other credentials
    let world = World::with(WorldOptions {
        credentials: vec![
            Entry::new(CREDS, "aws-prod", Holds::UserKey),
            Entry::new(CREDS_OTHER, "aws-other", Holds::Key(OTHER_KEY)),
        ],
        clusters: vec![
            SeedCluster::new(CLUSTER_A, "production", CREDS_OTHER).with_dns_provider(
                SeedDnsProvider::route53("example.com", "eu-west-3", USER_KEY, USER_KEY)
                    .with_hosted_zone("Z0965488LE74BWDEVQDB"),
            ),
            SeedCluster::new(CLUSTER_B, "staging", CREDS_OTHER),
        ],
        ..Default::default()
    })
    .await;

    // WHEN the rotation's first steps run
    let state = handed_over(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();

    // THEN the DNS provider holds the new key, its zone and domain kept, and production
    // (only) is redeployed
    let dns = world.cluster(CLUSTER_A).dns_provider.unwrap();
    assert_eq!(dns.aws_access_key_id, new_key);
    assert_eq!(dns.hosted_zone_id.as_deref(), Some("Z0965488LE74BWDEVQDB"));
    assert_eq!(dns.domain, "example.com");
    let planned: Vec<&str> = state.clusters.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(planned, [CLUSTER_A]);
    assert!(state.clusters[0].held_by.starts_with("DNS provider"));
    assert_eq!(world.calls("editClusterDnsProvider"), 1);
}

#[tokio::test]
async fn a_hand_over_that_cannot_ask_qovery_who_holds_what_is_never_rolled_back_blindly() {
    // GIVEN the new key, and Qovery refusing to list the registries (an earlier attempt
    // may have sent the key somewhere already: nobody can tell)
    let world = World::new().await;
    let state = created(&world).await;
    world
        .fake
        .inject_fault(Fault::new("listContainerRegistry", 400, 1));

    // WHEN update-qovery runs
    let (name, message) = failure(update(&world, &state).await);

    // THEN it is HandOverIncomplete, which the state machine reconciles before any
    // rollback; nothing was sent
    assert_eq!(name, "HandOverIncomplete", "{message}");
    assert!(message.contains("is unknown"), "{message}");
    assert_eq!(world.calls("editAWSCredentials"), 0);
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn clusters_of_a_holder_an_earlier_attempt_gave_the_key_still_join_the_redeploys() {
    // GIVEN a credentials entry with a running cluster took the old key after preflight
    let world = World::with(WorldOptions {
        clusters: vec![SeedCluster::new(CLUSTER_A, "production", CREDS)],
        ..Default::default()
    })
    .await;
    let state = created(&world).await;
    world.reseed(|seed| {
        seed.credentials.push(SeedCredentials::new(
            CREDS_OTHER,
            "aws-late",
            &world.old_key,
            &world.old_secret,
        ));
        seed.clusters
            .push(SeedCluster::new(CLUSTER_D, "late", CREDS_OTHER));
    });

    // WHEN a first attempt gives it the key and loses its answer, and the retry runs
    update(&world, &state).await.unwrap();
    let retried = update(&world, &state).await.unwrap();

    // THEN the retry sent nothing, and still plans the new entry's cluster
    assert_eq!(world.calls("editAWSCredentials"), 2, "one PUT per entry");
    let planned: Vec<&str> = retried.clusters.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(planned, [CLUSTER_A, CLUSTER_D]);
}

#[tokio::test]
async fn a_delete_waits_for_every_kind_of_holder_to_be_asked() {
    // GIVEN the hand-over is done
    let world = World::new().await;
    let state = handed_over(&world).await;

    // WHEN Qovery cannot list the container registries
    world
        .fake
        .inject_fault(Fault::new("listContainerRegistry", 500, 100));
    let (name, _) = failure(delete(&world, "DeleteOldKey", &state).await);

    // THEN nothing is deleted on an answer that lists nothing
    assert_eq!(name, "QoveryUnavailable");
    assert_eq!(world.key_ids().await.len(), 2);
}
