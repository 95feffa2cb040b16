//! Each step handler against a real moto server (key checks on) and the fake Qovery.
//! Every test checks what exists afterwards: the user's keys, the secret's stages, and
//! the key Qovery holds.

mod support;

use qovery_fake::{Fault, Outcome};
use rotation::state::{ClusterDeployment, Phase, RotationState};
use rotation::steps::{
    check_status, create_key, delete_key, deploy_cluster, preflight, update_qovery,
};
use serde_json::{json, Value};
use support::*;

async fn preflighted(world: &World) -> RotationState {
    preflight::handle(&world.deps, world.preflight_event(world.input()))
        .await
        .unwrap()
}

async fn created(world: &World) -> RotationState {
    let state = preflighted(world).await;
    create_key::handle(&world.deps, serde_json::to_value(state).unwrap())
        .await
        .unwrap()
}

async fn handed_over(world: &World) -> RotationState {
    let state = created(world).await;
    update_qovery::handle(&world.deps, serde_json::to_value(state).unwrap())
        .await
        .unwrap()
}

fn cluster_item(state: &RotationState, cluster: &str, timeout: u64) -> Value {
    json!({"organization_id": state.organization_id, "cluster_id": cluster,
           "poll_interval_seconds": 10, "deploy_timeout_seconds": timeout,
           "iam_user_name": state.iam_user_name, "old_access_key_id": state.old_access_key_id,
           "new_access_key_id": state.new_access_key_id})
}

fn delete_request(state: &RotationState, mode: &str) -> Value {
    json!({"mode": mode, "iam_user_name": state.iam_user_name, "organization_id": state.organization_id,
           "credentials_id": state.credentials_id, "old_access_key_id": state.old_access_key_id,
           "new_access_key_id": state.new_access_key_id, "key_secret_id": state.key_secret_id})
}

async fn stages_of(world: &World, version: &str) -> Vec<String> {
    world
        .key_secret_stages()
        .await
        .into_iter()
        .find(|(v, _)| v == version)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

async fn current_version_count(world: &World) -> usize {
    world
        .key_secret_stages()
        .await
        .iter()
        .filter(|(_, s)| s.iter().any(|s| s == "AWSCURRENT"))
        .count()
}

// ---- preflight ----------------------------------------------------------------

#[tokio::test]
async fn preflight_reports_the_plan_and_changes_nothing() {
    let world = World::new().await;
    let state = preflighted(&world).await;
    assert_eq!(state.old_access_key_id, world.old_key);
    assert_eq!(state.credentials_name, "aws-prod");
    let mut clusters = state.cluster_ids.clone();
    clusters.sort();
    assert_eq!(clusters, vec![CLUSTER_A.to_string(), CLUSTER_B.to_string()]);
    assert_eq!(state.drain_seconds, 60);
    assert!(state.report.summary.contains(&world.old_key));
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(world.qovery_holds().0, world.old_key);
    assert_eq!(
        world
            .fake
            .snapshot()
            .clusters
            .iter()
            .map(|c| c.deploy_count)
            .sum::<u32>(),
        0
    );
}

#[tokio::test]
async fn preflight_uses_only_the_requested_clusters_and_reports_the_rest() {
    let world = World::new().await;
    let mut input = world.input();
    input["cluster_ids"] = json!([CLUSTER_B.to_uppercase()]);
    let state = preflight::handle(&world.deps, world.preflight_event(input))
        .await
        .unwrap();
    assert_eq!(state.cluster_ids, vec![CLUSTER_B.to_string()]);
    assert_eq!(state.report.clusters_not_redeployed[0].id, CLUSTER_A);
    assert!(state.report.summary.contains("Not redeployed"));
}

#[tokio::test]
async fn preflight_refuses_a_cluster_that_does_not_use_the_credentials() {
    let world = World::new().await;
    let mut input = world.input();
    input["cluster_ids"] = json!(["99999999-9999-4999-8999-999999999999"]);
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(input)).await);
    assert_eq!(name, "PreconditionFailed");
    assert!(
        message.contains("99999999-9999-4999-8999-999999999999") && message.contains("production"),
        "{message}"
    );
}

#[tokio::test]
async fn preflight_refuses_two_keys_and_names_both() {
    let world = World::with(WorldOptions {
        extra_keys: 1,
        ..Default::default()
    })
    .await;
    let before = world.key_ids().await;
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(world.input())).await);
    assert_eq!(name, "PreconditionFailed");
    for key in world.keys().await {
        assert!(
            message.contains(&format!(
                "{} (Active, created {}",
                key.access_key_id, key.create_date
            )),
            "{message}"
        );
    }
    assert!(message.contains("Nothing was changed"), "{message}");
    assert_eq!(world.key_ids().await, before);
}

#[tokio::test]
async fn preflight_refuses_when_qovery_holds_a_key_the_user_does_not_have() {
    let world = World::with(WorldOptions {
        qovery_key: Some("AKIAFOREIGNKEY000000".into()),
        ..Default::default()
    })
    .await;
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(world.input())).await);
    assert_eq!(name, "PreconditionFailed");
    assert!(
        message.contains("AKIAFOREIGNKEY000000") && message.contains(&world.old_key),
        "{message}"
    );
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
}

#[tokio::test]
async fn preflight_maps_a_rejected_token_to_qovery_unauthorized() {
    let world = World::new().await;
    world
        .fake
        .inject_fault(Fault::new("getAWSCredentials", 401, 1));
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(world.input())).await);
    assert_eq!(name, "QoveryUnauthorized");
    assert!(
        message.contains("401") && message.contains("Nothing was changed"),
        "{message}"
    );
    assert!(!message.contains(TOKEN));
}

#[tokio::test]
async fn preflight_rejects_bad_input_by_field() {
    let world = World::new().await;
    for (field, value, expected) in [
        ("drain_seconds", json!(60), "drain_seconds"),
        ("surprise", json!(true), "unknown field `surprise`"),
        (
            "credentials_id",
            json!("7c9e6679"),
            "field `credentials_id` must be a UUID",
        ),
    ] {
        let mut input = world.input();
        if field == "drain_seconds" {
            input.as_object_mut().unwrap().remove("allow_short_drain");
        }
        input[field] = value;
        let (name, message) =
            failure(preflight::handle(&world.deps, world.preflight_event(input)).await);
        assert_eq!(name, "InvalidInput");
        assert!(message.contains(expected), "{message}");
    }
    // Nothing was even asked of Qovery.
    assert!(world.fake.snapshot().requests.is_empty());
}

#[tokio::test]
async fn preflight_refuses_a_second_rotation_of_the_same_user() {
    let world = World::new().await;
    let sfn = world.moto.sfn();
    let machine = world.state_machine_arn.as_str();
    let other_user =
        json!({"iam_user_name": "someone-else", "organization_id": ORG, "credentials_id": CREDS});
    sfn.start_execution()
        .state_machine_arn(machine)
        .input(other_user.to_string())
        .send()
        .await
        .unwrap();
    let event = |input: Value| world.preflight_event(input);

    // A running rotation of another user does not block this one.
    preflight::handle(&world.deps, event(world.input()))
        .await
        .unwrap();

    let running = sfn
        .start_execution()
        .state_machine_arn(machine)
        .input(world.input().to_string())
        .send()
        .await
        .unwrap();
    let (name, message) = failure(preflight::handle(&world.deps, event(world.input())).await);
    assert_eq!(name, "RotationInProgress");
    assert!(message.contains(running.execution_arn()), "{message}");
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
}

#[tokio::test]
async fn preflight_names_a_missing_token_secret_as_an_aws_rejection() {
    let mut world = World::new().await;
    world.deps.settings.qovery_token_secret_id = "does/not/exist".into();
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(world.input())).await);
    assert_eq!(name, "AwsRejected");
    assert!(
        message.contains("secretsmanager:GetSecretValue") && message.contains("does/not/exist"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unreachable_aws_endpoint_is_aws_unavailable() {
    let world = World::new().await;
    let closed = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let deps = rotation::Deps::new(
        sdk_config(&closed, "AKIAX", "x"),
        world.deps.settings.clone(),
    );
    let (name, _) = failure(preflight::handle(&deps, world.preflight_event(world.input())).await);
    assert_eq!(name, "AwsUnavailable");
}

// ---- create-key ---------------------------------------------------------------

#[tokio::test]
async fn create_key_stores_the_new_key_pending_and_returns_only_its_id() {
    let world = World::new().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let version = state.new_key_version_id.clone().unwrap();
    assert_ne!(new_key, world.old_key);
    assert_eq!(world.key_ids().await.len(), 2);
    assert_eq!(stages_of(&world, &version).await, vec!["AWSPENDING"]);
    assert_eq!(
        current_version_count(&world).await,
        1,
        "AWSCURRENT still names the old key"
    );
    let secret = world.stored_secret(&version).await;
    assert!(!serde_json::to_string(&state).unwrap().contains(&secret));
    // The stored secret is the real one: STS accepts the pair as the user.
    assert!(world
        .moto
        .caller(&new_key, &secret)
        .await
        .unwrap()
        .ends_with(":user/qovery"));
    // Qovery still holds the old key.
    assert_eq!(world.qovery_holds().0, world.old_key);
}

#[tokio::test]
async fn create_key_is_idempotent_within_an_execution() {
    let world = World::new().await;
    let state = preflighted(&world).await;
    let input = serde_json::to_value(&state).unwrap();
    let first = create_key::handle(&world.deps, input.clone())
        .await
        .unwrap();
    let second = create_key::handle(&world.deps, input).await.unwrap();
    assert_eq!(first.new_access_key_id, second.new_access_key_id);
    assert_eq!(first.new_key_version_id, second.new_key_version_id);
    assert_eq!(
        world.key_ids().await.len(),
        2,
        "a retry must not create a third key"
    );
    assert_eq!(
        world.key_secret_stages().await.len(),
        2,
        "the old key's record and one new version"
    );
}

#[tokio::test]
async fn create_key_refuses_when_an_unknown_second_key_appeared() {
    let world = World::new().await;
    let state = preflighted(&world).await;
    world
        .moto
        .iam()
        .create_access_key()
        .user_name(USER)
        .send()
        .await
        .unwrap();
    let before = world.key_ids().await;
    let (name, message) =
        failure(create_key::handle(&world.deps, serde_json::to_value(state).unwrap()).await);
    assert_eq!(name, "PreconditionFailed");
    assert!(message.contains("No key was created"), "{message}");
    assert_eq!(world.key_ids().await, before);
}

#[tokio::test]
async fn create_key_rejects_a_malformed_state() {
    let world = World::new().await;
    let (name, message) =
        failure(create_key::handle(&world.deps, json!({"iam_user_name": USER})).await);
    assert_eq!(name, "InvalidInput");
    assert!(
        message.contains("create-key") && message.contains("missing field"),
        "{message}"
    );
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
}

// ---- update-qovery ------------------------------------------------------------

#[tokio::test]
async fn update_qovery_hands_over_the_new_key_and_marks_it_current() {
    let world = World::new().await;
    let state = handed_over(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let version = state.new_key_version_id.clone().unwrap();
    let (held, held_secret) = world.qovery_holds();
    assert_eq!(held, new_key);
    assert_eq!(held_secret, world.stored_secret(&version).await);
    assert!(world.moto.caller(&held, &held_secret).await.is_ok());
    assert_eq!(stages_of(&world, &version).await, vec!["AWSCURRENT"]);
    assert_eq!(current_version_count(&world).await, 1);
    let taken = time::OffsetDateTime::parse(
        state.qovery_updated_at.as_deref().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let until = time::OffsetDateTime::parse(
        state.drain_until.as_deref().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((until - taken).whole_seconds(), 60);
    assert!(state.drain_until.unwrap().ends_with('Z'));
    // Both keys still exist: the old one is deleted only after the drain.
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn update_qovery_sends_the_spec_body() {
    let world = World::new().await;
    handed_over(&world).await;
    let puts: Vec<_> = world
        .fake
        .snapshot()
        .requests
        .into_iter()
        .filter(|r| r.operation == "editAWSCredentials")
        .collect();
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].status, 200,
        "the fake rejects any body that is not AWS_STATIC with name, key and secret"
    );
    assert_eq!(
        world.fake.snapshot().credentials[0].name,
        "aws-prod",
        "the current name is kept"
    );
}

#[tokio::test]
async fn update_qovery_retried_after_success_does_not_put_again() {
    let world = World::new().await;
    let state = created(&world).await;
    let input = serde_json::to_value(&state).unwrap();
    update_qovery::handle(&world.deps, input.clone())
        .await
        .unwrap();
    update_qovery::handle(&world.deps, input).await.unwrap();
    let puts = world
        .fake
        .snapshot()
        .requests
        .iter()
        .filter(|r| r.operation == "editAWSCredentials")
        .count();
    assert_eq!(puts, 1);
    assert_eq!(world.qovery_holds().0, state.new_access_key_id.unwrap());
}

#[tokio::test]
async fn update_qovery_refuses_a_key_sts_does_not_accept() {
    let world = World::new().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    // A deleted key is what STS rejects here; an IAM key still propagating looks the same.
    world
        .moto
        .iam()
        .delete_access_key()
        .user_name(USER)
        .access_key_id(&new_key)
        .send()
        .await
        .unwrap();
    let (name, message) =
        failure(update_qovery::handle(&world.deps, serde_json::to_value(&state).unwrap()).await);
    assert_eq!(name, "NewKeyNotValid");
    assert!(
        message.contains(&new_key) && message.contains(&world.old_key),
        "{message}"
    );
    assert_eq!(
        world.qovery_holds().0,
        world.old_key,
        "Qovery must never get a key that does not work"
    );
}

#[tokio::test]
async fn update_qovery_maps_qovery_failures_and_leaves_the_old_key_held() {
    for (status, expected) in [
        (503, "QoveryUnavailable"),
        (429, "QoveryUnavailable"),
        (500, "QoveryUnavailable"),
        (400, "QoveryRejected"),
        (403, "QoveryUnauthorized"),
    ] {
        let world = World::new().await;
        let state = created(&world).await;
        world
            .fake
            .inject_fault(Fault::new("editAWSCredentials", status, 1));
        let (name, message) = failure(
            update_qovery::handle(&world.deps, serde_json::to_value(&state).unwrap()).await,
        );
        assert_eq!(name, expected, "{status}: {message}");
        assert!(message.contains(&status.to_string()), "{message}");
        assert_eq!(world.qovery_holds().0, world.old_key);
        let secret = world
            .stored_secret(state.new_key_version_id.as_deref().unwrap())
            .await;
        assert!(!message.contains(&secret) && !message.contains(TOKEN));
    }
}

#[tokio::test]
async fn update_qovery_never_quotes_an_error_page_that_quotes_the_request() {
    let world = World::new().await;
    let state = created(&world).await;
    world
        .fake
        .inject_fault(Fault::new("editAWSCredentials", 400, 1).echoing_request());
    let (name, message) =
        failure(update_qovery::handle(&world.deps, serde_json::to_value(&state).unwrap()).await);
    assert_eq!(name, "QoveryRejected", "{message}");
    let new_secret = world
        .stored_secret(state.new_key_version_id.as_deref().unwrap())
        .await;
    assert_eq!(
        world.fake.snapshot().received_secrets,
        std::slice::from_ref(&new_secret),
        "the page quoted a PUT that carried the new secret"
    );
    assert_no_piece(&new_secret, &message, "new secret key, in the error");
    assert_no_piece(TOKEN, &message, "token, in the error");
    assert!(
        message.contains("Qovery answered 400")
            && message.contains("(a non-JSON body, not quoted)"),
        "{message}"
    );
    assert_eq!(world.qovery_holds().0, world.old_key);
}

#[tokio::test]
async fn update_qovery_honours_a_short_retry_after() {
    let world = World::new().await;
    let state = created(&world).await;
    world
        .fake
        .inject_fault(Fault::new("editAWSCredentials", 503, 1).with_retry_after(1));
    let started = std::time::Instant::now();
    update_qovery::handle(&world.deps, serde_json::to_value(&state).unwrap())
        .await
        .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(world.qovery_holds().0, state.new_access_key_id.unwrap());
}

// ---- deploy-cluster and check-status -------------------------------------------

async fn poll_until_done(
    world: &World,
    mut cluster: ClusterDeployment,
) -> Result<ClusterDeployment, rotation::RotationError> {
    for _ in 0..20 {
        cluster =
            check_status::handle(&world.deps, serde_json::to_value(&cluster).unwrap()).await?;
        if cluster.phase == Some(Phase::Deployed) {
            return Ok(cluster);
        }
    }
    panic!("still {:?} after 20 polls", cluster.status)
}

#[tokio::test]
async fn a_cluster_redeploys_and_reaches_deployed() {
    let world = World::new().await;
    let state = handed_over(&world).await;
    let cluster = deploy_cluster::handle(&world.deps, cluster_item(&state, CLUSTER_A, 600))
        .await
        .unwrap();
    assert_eq!(cluster.phase, Some(Phase::InProgress));
    assert_eq!(cluster.status.as_deref(), Some("DEPLOYMENT_QUEUED"));
    assert!(cluster.baseline_execution_id.is_some() && cluster.deadline.is_some());
    let done = poll_until_done(&world, cluster).await.unwrap();
    assert_eq!(done.polls, 2);
    assert_eq!(world.cluster_status(CLUSTER_A), "DEPLOYED");
    assert_eq!(
        world
            .fake
            .snapshot()
            .clusters
            .iter()
            .find(|c| c.id == CLUSTER_A)
            .unwrap()
            .deploy_count,
        1
    );
}

#[tokio::test]
async fn a_stale_deployed_right_after_the_post_does_not_count() {
    let world = World::with_production(|c| {
        c.stale_polls = 2;
    })
    .await;
    let state = handed_over(&world).await;
    let cluster = deploy_cluster::handle(&world.deps, cluster_item(&state, CLUSTER_A, 600))
        .await
        .unwrap();
    assert_eq!(
        cluster.status.as_deref(),
        Some("DEPLOYED"),
        "the fake answers the POST with the old status"
    );
    let first = check_status::handle(&world.deps, serde_json::to_value(&cluster).unwrap())
        .await
        .unwrap();
    assert_eq!(first.status.as_deref(), Some("DEPLOYED"));
    assert_eq!(
        first.phase,
        Some(Phase::InProgress),
        "a DEPLOYED from before the POST is stale"
    );
    let done = poll_until_done(&world, first).await.unwrap();
    assert_eq!(
        done.polls, 4,
        "2 stale polls, then DEPLOYING, then DEPLOYED"
    );
}

#[tokio::test]
async fn failure_states_stop_the_rotation_and_name_the_live_keys() {
    for (outcome, status) in [
        (Outcome::DeploymentError, "DEPLOYMENT_ERROR"),
        (Outcome::InvalidCredentials, "INVALID_CREDENTIALS"),
    ] {
        let world = World::with_production(|c| {
            c.outcome = outcome;
        })
        .await;
        let state = handed_over(&world).await;
        let cluster = deploy_cluster::handle(&world.deps, cluster_item(&state, CLUSTER_A, 600))
            .await
            .unwrap();
        let (name, message) = failure(poll_until_done(&world, cluster).await);
        assert_eq!(name, "ClusterDeployFailed");
        let new_key = state.new_access_key_id.as_deref().unwrap();
        for needle in [
            CLUSTER_A,
            status,
            new_key,
            world.old_key.as_str(),
            "still active",
        ] {
            assert!(message.contains(needle), "{needle} missing: {message}");
        }
        assert_eq!(world.key_ids().await.len(), 2, "nothing is deleted");
    }
}

#[tokio::test]
async fn a_cluster_stuck_deploying_times_out() {
    let world = World::with_production(|c| {
        c.outcome = Outcome::Stuck;
    })
    .await;
    let state = handed_over(&world).await;
    // Deadlines have whole seconds, so 2 s leaves at least one for the first poll.
    let mut cluster = deploy_cluster::handle(&world.deps, cluster_item(&state, CLUSTER_A, 2))
        .await
        .unwrap();
    cluster = check_status::handle(&world.deps, serde_json::to_value(&cluster).unwrap())
        .await
        .unwrap();
    assert_eq!(cluster.phase, Some(Phase::InProgress));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (name, message) =
        failure(check_status::handle(&world.deps, serde_json::to_value(&cluster).unwrap()).await);
    assert_eq!(name, "ClusterDeployTimedOut");
    assert!(
        message.contains("DEPLOYING") && message.contains(CLUSTER_A),
        "{message}"
    );
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn a_busy_cluster_is_deployed_once_it_settles() {
    let world = World::with_production(|c| {
        c.status = "DEPLOYING".into();
        c.busy_polls = 2;
    })
    .await;
    let state = handed_over(&world).await;
    let mut cluster = deploy_cluster::handle(&world.deps, cluster_item(&state, CLUSTER_A, 600))
        .await
        .unwrap();
    assert_eq!(cluster.phase, Some(Phase::AwaitingIdle));
    let deadline = cluster.deadline.clone();
    while cluster.phase == Some(Phase::AwaitingIdle) {
        cluster = deploy_cluster::handle(&world.deps, serde_json::to_value(&cluster).unwrap())
            .await
            .unwrap();
    }
    assert_eq!(
        cluster.deadline, deadline,
        "the deadline counts from the first attempt"
    );
    assert_eq!(world.fake.snapshot().clusters[0].deploy_count, 1);
    poll_until_done(&world, cluster).await.unwrap();
}

#[tokio::test]
async fn cluster_polling_maps_qovery_outages() {
    let world = World::new().await;
    let state = handed_over(&world).await;
    let cluster = deploy_cluster::handle(&world.deps, cluster_item(&state, CLUSTER_A, 600))
        .await
        .unwrap();
    world
        .fake
        .inject_fault(Fault::new("getClusterStatus", 500, 1));
    let (name, _) =
        failure(check_status::handle(&world.deps, serde_json::to_value(&cluster).unwrap()).await);
    assert_eq!(name, "QoveryUnavailable");
    world.fake.inject_fault(Fault::new("deployCluster", 404, 1));
    let (name, message) =
        failure(deploy_cluster::handle(&world.deps, cluster_item(&state, CLUSTER_B, 600)).await);
    assert_eq!(name, "QoveryRejected");
    assert!(message.contains("404"), "{message}");
}

// ---- delete-key ---------------------------------------------------------------

#[tokio::test]
async fn delete_key_retires_the_old_key_after_the_hand_over() {
    let world = World::new().await;
    let state = handed_over(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let result = delete_key::handle(&world.deps, delete_request(&state, "retire_old_key"))
        .await
        .unwrap();
    assert_eq!(result.deleted_access_key_id, world.old_key);
    assert_eq!(result.qovery_access_key_id, new_key);
    assert_eq!(world.key_ids().await, vec![new_key.clone()]);
    assert!(
        world
            .moto
            .caller(&world.old_key, &world.old_secret)
            .await
            .is_err(),
        "moto must reject the deleted key"
    );
    let (held, secret) = world.qovery_holds();
    assert!(world.moto.caller(&held, &secret).await.is_ok());
}

#[tokio::test]
async fn delete_key_refuses_the_key_qovery_holds() {
    let world = World::new().await;
    let state = created(&world).await; // Qovery still holds the old key.
    let (name, message) =
        failure(delete_key::handle(&world.deps, delete_request(&state, "retire_old_key")).await);
    assert_eq!(name, "UnsafeDelete");
    assert!(
        message.contains("hold it right now") && message.contains(&world.old_key),
        "{message}"
    );
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn rollback_deletes_the_new_key_qovery_never_took() {
    let world = World::new().await;
    let state = created(&world).await;
    let result = delete_key::handle(&world.deps, delete_request(&state, "rollback_new_key"))
        .await
        .unwrap();
    assert_eq!(Some(result.deleted_access_key_id), state.new_access_key_id);
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(world.qovery_holds().0, world.old_key);
    let version = state.new_key_version_id.unwrap();
    assert!(
        stages_of(&world, &version).await.is_empty(),
        "the rolled-back version is unstaged"
    );
    assert_eq!(current_version_count(&world).await, 1);
}

#[tokio::test]
async fn rollback_refuses_once_qovery_holds_the_new_key() {
    let world = World::new().await;
    let state = handed_over(&world).await;
    let (name, message) =
        failure(delete_key::handle(&world.deps, delete_request(&state, "rollback_new_key")).await);
    assert_eq!(name, "UnsafeDelete");
    assert!(message.contains("cannot be rolled back"), "{message}");
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn delete_key_refuses_keys_outside_the_rotation() {
    let world = World::new().await;
    let state = handed_over(&world).await;
    // Not a key of the user.
    let mut request = delete_request(&state, "retire_old_key");
    request["old_access_key_id"] = json!("AKIANOTTHEUSERSKEY00");
    let (name, message) = failure(delete_key::handle(&world.deps, request).await);
    assert_eq!(name, "UnsafeDelete");
    assert!(message.contains("not a key of IAM user"), "{message}");
    // The key created by this run is never retired as "old".
    let mut request = delete_request(&state, "retire_old_key");
    request["old_access_key_id"] = json!(state.new_access_key_id);
    let (name, _) = failure(delete_key::handle(&world.deps, request).await);
    assert_eq!(name, "UnsafeDelete");
    assert_eq!(world.key_ids().await.len(), 2);
}
