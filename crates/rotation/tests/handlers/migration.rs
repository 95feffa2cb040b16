//! A migration's dry run (`migrate_to_role`): preflight reads the role with GetRole,
//! judges its trust policy, routes every holder of the static key and plans the
//! clusters, canary first. Nothing changes; anything that cannot move is refused.

use crate::support::*;
use qovery_fake::{SeedDnsProvider, SeedRegistry, SeedSecretManagerAccess};
use rotation::qovery::holders::RoleRoute;
use rotation::qovery::HolderKind;
use rotation::state::{Mode, RotationState};
use rotation::steps::preflight;
use rotation::RotationError;
use serde_json::{json, Value};

/// Both clusters on "aws-prod"; production's mirroring registry and a helm repository
/// hold the key too.
async fn world_with_registries() -> World {
    World::with(WorldOptions {
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
    })
    .await
}

fn migration_input(world: &World, role_arn: &str) -> Value {
    let mut input = world.input();
    input["dry_run"] = json!(true);
    input["migrate_to_role"] = json!({"role_arn": role_arn});
    input
}

async fn dry_run(world: &World, role_arn: &str) -> Result<RotationState, RotationError> {
    preflight::handle(
        &world.deps,
        world.preflight_event(migration_input(world, role_arn)),
    )
    .await
}

async fn assert_nothing_changed(world: &World) {
    assert!(world.deps.ledger.read(USER).await.unwrap().is_none());
    let writes: Vec<String> = world
        .fake
        .snapshot()
        .requests
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert!(world.holders().iter().all(|(_, key)| key == &world.old_key));
}

fn refusal(result: Result<RotationState, RotationError>) -> String {
    match result {
        Err(RotationError::PreconditionFailed(message)) => message,
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn the_dry_run_routes_every_holder_reports_the_trust_and_changes_nothing_twice_alike() {
    let world = world_with_registries().await;
    create_role(&world, "/", &trusting(QOVERY_ACCOUNT, None)).await;

    let first = dry_run(&world, ROLE_ARN).await.unwrap();
    assert_eq!(first.mode, Mode::Migrate);
    assert!(first.dry_run);
    assert_eq!(first.old_access_key_id, world.old_key);
    let plan = first.report.migration.clone().unwrap();
    assert_eq!(plan.role_arn, ROLE_ARN);
    assert_eq!(plan.static_access_key_id, world.old_key);
    assert_eq!(
        plan.trust.outside_principals,
        vec![QOVERY_ACCOUNT.to_string()]
    );
    assert_eq!(plan.trust.external_id, None);
    assert!(
        plan.trust_lines
            .iter()
            .any(|l| l.starts_with("No external id:")),
        "{:?}",
        plan.trust_lines
    );
    let routes: Vec<(HolderKind, String, RoleRoute)> = plan
        .holders
        .iter()
        .map(|h| (h.holder.kind, h.holder.id.clone(), h.route.clone()))
        .collect();
    assert_eq!(
        routes,
        vec![
            (
                HolderKind::Credentials,
                CREDS.to_string(),
                RoleRoute::MoveClusters
            ),
            (
                HolderKind::ContainerRegistry,
                REGISTRY_A.to_string(),
                RoleRoute::SwitchToRole
            ),
            (
                HolderKind::HelmRepository,
                HELM.to_string(),
                RoleRoute::SwitchToRole
            ),
        ]
    );
    assert!(plan.role_credentials_before.is_empty() && plan.other_user_keys.is_empty());
    // The canary first: production, then staging.
    let clusters: Vec<&str> = first.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(clusters, ["production", "staging"]);
    let summary = &first.report.summary;
    for part in [
        "Dry run, nothing was changed. Move of Qovery from IAM user qovery's key",
        "to role arn:aws:iam::123456789012:role/qovery-engine",
        "create AWS_ROLE credentials for it",
        "canary cluster production",
        "switch to it: container registry registry-production",
        "delete the static credentials credentials aws-prod",
        "IAM user qovery then has no access key; this tool never deletes users",
        "No external id:",
    ] {
        assert!(summary.contains(part), "{part:?} not in {summary}");
    }
    // The report carries key ids only.
    assert!(!value(&first).to_string().contains(&world.old_secret));
    assert_nothing_changed(&world).await;

    // Run again (a lost answer): the same plan.
    let mut second = dry_run(&world, ROLE_ARN).await.unwrap();
    second.preflight_at = first.preflight_at.clone();
    assert_eq!(second, first);
    assert_nothing_changed(&world).await;
}

#[tokio::test]
async fn an_external_id_condition_is_reported_and_named_when_it_is_the_organization_id() {
    let world = World::new().await;
    let condition = json!({"StringEquals": {"sts:ExternalId": ORG}});
    create_role(&world, "/", &trusting(QOVERY_ACCOUNT, Some(condition))).await;
    let state = dry_run(&world, ROLE_ARN).await.unwrap();
    let plan = state.report.migration.unwrap();
    assert_eq!(plan.trust.external_id, Some(vec![ORG.to_string()]));
    let lines = plan.trust_lines.join("\n");
    assert!(
        lines.contains(&format!("requires external id {ORG}"))
            && lines.contains("this equals your Qovery organization id")
            && !lines.contains("No external id"),
        "{lines}"
    );
}

#[tokio::test]
async fn a_role_that_does_not_exist_or_trusts_only_this_account_is_refused() {
    let world = World::new().await;
    let missing = refusal(dry_run(&world, ROLE_ARN).await);
    assert!(
        missing.contains("does not exist in account 123456789012")
            && missing.contains("CloudFormation template")
            && missing.ends_with("Nothing was changed."),
        "{missing}"
    );

    create_role(
        &world,
        "/",
        &trusting("arn:aws:iam::123456789012:root", None),
    )
    .await;
    let inside = refusal(dry_run(&world, ROLE_ARN).await);
    assert!(
        inside.contains("Qovery could not assume role")
            && inside.contains("lets no principal outside account 123456789012"),
        "{inside}"
    );
    assert_nothing_changed(&world).await;
}

#[tokio::test]
async fn a_role_arn_with_another_path_than_the_role_is_refused() {
    let world = World::new().await;
    create_role(&world, "/qovery/", &trusting(QOVERY_ACCOUNT, None)).await;
    let message = refusal(dry_run(&world, ROLE_ARN).await);
    assert!(
        message.contains("arn:aws:iam::123456789012:role/qovery/qovery-engine"),
        "{message}"
    );
    let state = dry_run(
        &world,
        "arn:aws:iam::123456789012:role/qovery/qovery-engine",
    )
    .await
    .unwrap();
    assert_eq!(state.mode, Mode::Migrate);
}

#[tokio::test]
async fn holders_a_role_cannot_reach_are_all_named_in_one_refusal() {
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
        production.dns_provider = Some(SeedDnsProvider::route53(
            "example.com",
            "eu-west-3",
            USER_KEY,
            USER_KEY,
        ));
    })
    .await;
    create_role(&world, "/", &trusting(QOVERY_ACCOUNT, None)).await;
    let message = refusal(dry_run(&world, ROLE_ARN).await);
    assert!(
        message.contains("secret manager access app-secrets")
            && message.contains("switch it to AWS_ROLE_ARN")
            && message.contains("DNS provider example.com")
            && message.contains("takes only static credentials"),
        "{message}"
    );
    assert_nothing_changed(&world).await;
}

#[tokio::test]
async fn without_a_running_cluster_nothing_could_prove_the_role() {
    let world = World::with_production(|production| production.status = "STOPPED".into()).await;
    create_role(&world, "/", &trusting(QOVERY_ACCOUNT, None)).await;
    let message = refusal(dry_run(&world, ROLE_ARN).await);
    assert!(
        message.contains("No running cluster uses key")
            && message.contains("production")
            && message.contains("STOPPED"),
        "{message}"
    );
}

#[tokio::test]
async fn a_migration_takes_the_lock_and_records_the_plan_and_each_clusters_way_back() {
    let world = world_with_registries().await;
    create_role(&world, "/", &trusting(QOVERY_ACCOUNT, None)).await;
    let mut input = migration_input(&world, ROLE_ARN);
    input["dry_run"] = json!(false);
    let state = preflight::handle(&world.deps, world.preflight_event(input))
        .await
        .unwrap();
    assert_eq!(state.mode, Mode::Migrate);
    assert!(!state.report.summary.starts_with("Dry run"));
    let run = state.migration.clone().unwrap();
    assert_eq!(run.role_arn, ROLE_ARN);
    assert_eq!(run.role_credentials, None);
    assert_eq!(run.credentials_before, vec![CREDS.to_string()]);
    let origins: Vec<(&str, &str)> = run
        .cluster_origins
        .iter()
        .map(|o| (o.cluster_id.as_str(), o.credentials.id.as_str()))
        .collect();
    assert_eq!(origins, [(CLUSTER_A, CREDS), (CLUSTER_B, CREDS)]);
    assert_eq!(run.static_credentials.len(), 1);
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    assert_eq!(record.execution_id, EXECUTION);
    assert_eq!(record.migration, Some(run));
    assert_eq!(record.clusters.len(), 2);
    assert_eq!(record.new_access_key_id, None);
    // Nothing in Qovery changed yet.
    let writes = world
        .fake
        .snapshot()
        .requests
        .into_iter()
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(writes, 0);
}

#[tokio::test]
async fn other_keys_of_the_user_are_named_and_kept() {
    let world = World::new().await;
    let other = world.key_made_by_someone_else().await;
    create_role(&world, "/", &trusting(QOVERY_ACCOUNT, None)).await;
    let state = dry_run(&world, ROLE_ARN).await.unwrap();
    let plan = state.report.migration.unwrap();
    assert_eq!(plan.static_access_key_id, world.old_key);
    assert_eq!(plan.other_user_keys, vec![other.clone()]);
    assert!(
        state.report.summary.contains(&format!(
            "keeps its other key(s), which Qovery does not hold: {other}"
        )),
        "{}",
        state.report.summary
    );
}
