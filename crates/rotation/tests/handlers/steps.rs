//! Each step handler against a real moto server (key checks on) and the fake Qovery,
//! called with the input the ASL builds for it (read from statemachine/rotation.asl.json).
//! Every test checks what exists afterwards: the user's keys and their status, the
//! secrets (every version), the key each Qovery credentials entry holds, and how often
//! each cluster was deployed.

use crate::support::*;
use qovery_fake::{Fault, Outcome, SeedCluster, SeedCredentials, SeedSecretManagerAccess};
use rotation::qovery::HolderKind;
use rotation::state::{ClusterDeployment, DeleteKeyResult, Phase, QoveryHolds, RotationState};
use rotation::steps::{
    check_status, create_key, delete_key, deploy_cluster, preflight, update_qovery,
};
use rotation::RotationError;
use serde_json::{json, Value};

/// `(id, name)` of each credentials holder the state names.
fn creds_of(state: &RotationState) -> Vec<(String, String)> {
    state
        .holders
        .iter()
        .filter(|h| h.kind == HolderKind::Credentials)
        .map(|h| (h.id.clone(), h.name.clone()))
        .collect()
}

/// The id in a holder's label: `credentials aws-prod (<id>)`.
fn held_id(label: &str) -> &str {
    let start = label.find('(').map_or(0, |i| i + 1);
    let end = label[start..].find(')').map_or(label.len(), |i| start + i);
    &label[start..end]
}

fn creds(id: &str, name: &str) -> (String, String) {
    (id.to_string(), name.to_string())
}

fn all_hold(world: &World, key: &str) -> bool {
    world.holders().iter().all(|(_, held)| held == key)
}

// ---- preflight ----------------------------------------------------------------

#[tokio::test]
async fn preflight_reports_the_plan_and_changes_nothing() {
    // GIVEN one credentials entry holding the user's only key, used by two deployed clusters
    let world = World::new().await;

    // WHEN preflight runs, for real and as a dry run
    let state = preflighted(&world).await;
    let mut input = world.input();
    input["dry_run"] = json!(true);
    let dry = preflight::handle(&world.deps, world.preflight_event(input))
        .await
        .unwrap();

    // THEN it plans the rotation of that key, for that entry and both clusters
    assert_eq!(state.old_access_key_id, world.old_key);
    assert_eq!(state.report.qovery_access_key_id, world.old_key);
    assert_eq!(creds_of(&state), vec![creds(CREDS, "aws-prod")]);
    let planned: Vec<(&str, &str, &str)> = state
        .clusters
        .iter()
        .map(|c| (c.id.as_str(), held_id(&c.held_by), c.status.as_str()))
        .collect();
    assert_eq!(
        planned,
        [
            (CLUSTER_A, CREDS, "DEPLOYED"),
            (CLUSTER_B, CREDS, "DEPLOYED")
        ]
    );
    assert!(state.clusters.iter().all(|c| c.handover_status.is_none()));
    assert!(state.skipped_clusters.is_empty());
    assert_eq!(state.drain_seconds, 60);
    assert_eq!(state.execution_id, EXECUTION);
    assert!(state.new_access_key_id.is_none() && state.key_secret_id.is_none());
    let at = time::OffsetDateTime::parse(
        &state.preflight_at,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!((time::OffsetDateTime::now_utc() - at).whole_seconds().abs() < 30);
    for needle in [world.old_key.as_str(), "aws-prod", "production", "staging"] {
        assert!(
            state.report.summary.contains(needle),
            "{needle}: {}",
            state.report.summary
        );
    }
    assert!(dry.dry_run);
    assert!(
        dry.report
            .summary
            .starts_with("Dry run, nothing was changed."),
        "{}",
        dry.report.summary
    );
    // ... and nothing changed anywhere.
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert!(all_hold(&world, &world.old_key));
    assert_eq!(world.calls("editAWSCredentials"), 0);
    assert_eq!(world.calls("deployCluster"), 0);
    assert!(world.deploy_counts().iter().all(|(_, n)| *n == 0));
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
}

#[tokio::test]
async fn preflight_takes_every_entry_holding_the_key_and_their_clusters() {
    // GIVEN "aws-prod" and "aws-us", both set up with the user's only key
    let world = World::shared_key().await;

    // WHEN preflight runs without credentials_id
    let state = preflighted(&world).await;

    // THEN both entries, and the clusters of both, are in the plan
    assert_eq!(
        creds_of(&state),
        vec![creds(CREDS, "aws-prod"), creds(CREDS_US, "aws-us")]
    );
    let planned: Vec<(&str, &str)> = state
        .clusters
        .iter()
        .map(|c| (c.id.as_str(), held_id(&c.held_by)))
        .collect();
    assert_eq!(
        planned,
        [
            (CLUSTER_A, CREDS),
            (CLUSTER_B, CREDS),
            (CLUSTER_C, CREDS_US)
        ]
    );
    let summary = &state.report.summary;
    for needle in ["2 Qovery holder(s)", "aws-prod", "aws-us", "us-production"] {
        assert!(summary.contains(needle), "{needle}: {summary}");
    }
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert!(all_hold(&world, &world.old_key));
}

#[tokio::test]
async fn preflight_with_credentials_id_still_takes_the_other_entries_holding_the_key() {
    // GIVEN two entries sharing the key
    let world = World::shared_key().await;

    // WHEN the input names only "aws-us" (in upper case)
    let mut input = world.input();
    input["credentials_id"] = json!(CREDS_US.to_uppercase());
    let state = preflight::handle(&world.deps, world.preflight_event(input))
        .await
        .unwrap();

    // THEN "aws-prod" is included and named in the summary, with its clusters
    assert_eq!(
        creds_of(&state),
        vec![creds(CREDS, "aws-prod"), creds(CREDS_US, "aws-us")]
    );
    assert_eq!(state.clusters.len(), 3);
    assert!(
        state
            .report
            .summary
            .contains(&format!("aws-prod ({CREDS})")),
        "{}",
        state.report.summary
    );

    // WHEN the input names credentials the organization does not have
    let mut input = world.input();
    input["credentials_id"] = json!("99999999-9999-4999-8999-999999999999");
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(input)).await);

    // THEN it is refused, naming the entries there are
    assert_eq!(name, "PreconditionFailed");
    for needle in [
        "99999999-9999-4999-8999-999999999999",
        CREDS,
        CREDS_US,
        "Nothing was changed",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert!(all_hold(&world, &world.old_key));
}

#[tokio::test]
async fn preflight_skips_stopped_never_installed_and_deleted_clusters() {
    // GIVEN a deployed cluster, a stopped one, one created but never installed (READY,
    // no deployment ever) and a deleted one, all on the key's credentials
    let mut never_installed = SeedCluster::new(CLUSTER_C, "sandbox", CREDS);
    never_installed.status = "READY".into();
    never_installed.last_deployment_date = None;
    never_installed.last_execution_id = None;
    let mut stopped = SeedCluster::new(CLUSTER_B, "staging", CREDS);
    stopped.status = "STOPPED".into();
    let mut deleted = SeedCluster::new(CLUSTER_D, "old", CREDS);
    deleted.status = "DELETED".into();
    let world = World::with(WorldOptions {
        clusters: vec![
            SeedCluster::new(CLUSTER_A, "production", CREDS),
            stopped,
            never_installed,
            deleted,
        ],
        ..Default::default()
    })
    .await;

    // WHEN preflight runs
    let state = preflighted(&world).await;

    // THEN only the running cluster is planned; the others are listed with their status
    let planned: Vec<&str> = state.clusters.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(planned, [CLUSTER_A]);
    let skipped: Vec<(&str, &str)> = state
        .skipped_clusters
        .iter()
        .map(|c| (c.id.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            (CLUSTER_B, "STOPPED"),
            (CLUSTER_C, "READY"),
            (CLUSTER_D, "DELETED")
        ]
    );
    assert!(state.skipped_clusters[0].reason.contains("start"));
    assert!(state.skipped_clusters[1].reason.contains("install"));
    let summary = &state.report.summary;
    for needle in ["Not redeployed", "staging", "STOPPED", "sandbox", "READY"] {
        assert!(summary.contains(needle), "{needle}: {summary}");
    }
    assert!(world.deploy_counts().iter().all(|(_, n)| *n == 0));
    assert_eq!(world.cluster(CLUSTER_C).status, "READY");
}

#[tokio::test]
async fn preflight_refuses_cluster_ids() {
    let world = World::new().await;
    let mut input = world.input();
    input["cluster_ids"] = json!([CLUSTER_B]);
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(input)).await);
    assert_eq!(name, "InvalidInput");
    assert!(
        message.contains("`cluster_ids` is no longer accepted")
            && message.contains("Nothing was changed"),
        "{message}"
    );
    assert!(world.fake.snapshot().requests.is_empty());
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
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
    // GIVEN the only entry holds a key that is not the user's
    let world = World::with(WorldOptions {
        credentials: vec![Entry::new(
            CREDS,
            "aws-prod",
            Holds::Key("AKIAFOREIGNKEY000000"),
        )],
        ..Default::default()
    })
    .await;

    // WHEN the entries are found from the user's key: none holds it
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(world.input())).await);
    assert_eq!(name, "PreconditionFailed");
    assert!(
        message.contains("Nothing in the Qovery organization holds key")
            && message.contains(&world.old_key)
            && message.contains("AKIAFOREIGNKEY000000"),
        "{message}"
    );

    // WHEN the entry is named: it holds a key that is not the user's
    let mut input = world.input();
    input["credentials_id"] = json!(CREDS);
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(input)).await);
    assert_eq!(name, "PreconditionFailed");
    assert!(
        message.contains("AKIAFOREIGNKEY000000")
            && message.contains(&world.old_key)
            && message.contains("not a key of this user"),
        "{message}"
    );
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(world.held_by(CREDS).0, "AKIAFOREIGNKEY000000");
}

#[tokio::test]
async fn preflight_leaves_role_credentials_alone_and_refuses_to_rotate_them() {
    // GIVEN static credentials holding the key, and role credentials, each with a cluster
    let world = World::with(WorldOptions {
        credentials: vec![
            Entry::new(CREDS, "aws-prod", Holds::UserKey),
            Entry::new(CREDS_OTHER, "aws-role", Holds::Role),
        ],
        clusters: vec![
            SeedCluster::new(CLUSTER_A, "production", CREDS),
            SeedCluster::new(CLUSTER_B, "role-cluster", CREDS_OTHER),
        ],
        ..Default::default()
    })
    .await;

    // WHEN the entries are found from the key: the role credentials are not touched
    let state = preflighted(&world).await;
    assert_eq!(creds_of(&state), vec![creds(CREDS, "aws-prod")]);
    let planned: Vec<&str> = state.clusters.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(planned, [CLUSTER_A]);

    // WHEN the role credentials are named
    let mut input = world.input();
    input["credentials_id"] = json!(CREDS_OTHER);
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(input)).await);
    assert_eq!(name, "PreconditionFailed");
    assert!(
        message.contains("AWS_ROLE") && message.contains("need no rotation"),
        "{message}"
    );
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
}

#[tokio::test]
async fn preflight_maps_a_rejected_token_to_qovery_unauthorized() {
    let world = World::new().await;
    let secrets = world.moto.secrets();
    for (token, expected) in [("qov_wrong-token-4f2a", "401"), ("", "is empty")] {
        // GIVEN the token secret holds a token Qovery refuses (or nothing)
        secrets
            .put_secret_value()
            .secret_id(TOKEN_SECRET)
            .secret_string(if token.is_empty() { " " } else { token })
            .send()
            .await
            .unwrap();
        // WHEN preflight runs
        let (name, message) =
            failure(preflight::handle(&world.deps, world.preflight_event(world.input())).await);
        // THEN
        assert_eq!(name, "QoveryUnauthorized");
        assert!(
            message.contains(expected) && message.contains("Nothing was changed"),
            "{message}"
        );
        assert!(!message.contains(TOKEN));
        assert!(token.is_empty() || !message.contains(token), "{message}");
    }
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
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
        ("organization_id", json!(42), "field `organization_id`"),
        ("iam_user_name", json!("bad name!"), "field `iam_user_name`"),
        (
            "poll_interval_seconds",
            json!(1),
            "field `poll_interval_seconds`",
        ),
    ] {
        let mut input = world.input();
        if field == "drain_seconds" {
            input.as_object_mut().unwrap().remove("allow_short_drain");
        }
        input[field] = value;
        let (name, message) =
            failure(preflight::handle(&world.deps, world.preflight_event(input)).await);
        assert_eq!(name, "InvalidInput", "{field}");
        assert!(message.contains(expected), "{field}: {message}");
    }
    // An event the ASL would never build.
    let (name, message) =
        failure(preflight::handle(&world.deps, json!({"input": world.input()})).await);
    assert_eq!(name, "InvalidInput");
    assert!(message.contains("execution_id"), "{message}");
    // Nothing was even asked of Qovery.
    assert!(world.fake.snapshot().requests.is_empty());

    // A poll budget the execution history cannot hold is refused once the clusters are known.
    let mut input = world.input();
    input["deploy_timeout_seconds"] = json!(86400);
    let (name, message) =
        failure(preflight::handle(&world.deps, world.preflight_event(input)).await);
    assert_eq!(name, "InvalidInput");
    assert!(message.contains("25,000"), "{message}");
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(world.calls("editAWSCredentials"), 0);
}

#[tokio::test]
async fn preflight_takes_the_users_lock_and_a_second_execution_meets_rotation_in_progress() {
    // GIVEN a running execution that passed preflight: it holds the user's lock
    let world = World::new().await;
    let first = world.running_execution().await;
    preflight::handle(
        &world.deps,
        world.preflight_event_for(&first, world.input()),
    )
    .await
    .unwrap();
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    assert_eq!(record.execution_id, first);
    assert_eq!(record.old_access_key_id, world.old_key);

    // WHEN a second execution (of this stack or any other) preflights, dry run or not
    let second = world.running_execution().await;
    for dry_run in [false, true] {
        let mut input = world.input();
        input["dry_run"] = json!(dry_run);
        let (name, message) = failure(
            preflight::handle(&world.deps, world.preflight_event_for(&second, input)).await,
        );
        // THEN it is refused, naming the holder of the lock, and nothing changes
        assert_eq!(name, "RotationInProgress");
        assert!(
            message.contains(&first) && message.contains(LEDGER_TABLE),
            "{message}"
        );
    }
    assert_eq!(world.lock_holder().await, first);
    // A retry of the holder's own preflight passes.
    preflight::handle(
        &world.deps,
        world.preflight_event_for(&first, world.input()),
    )
    .await
    .unwrap();

    // WHEN the first execution ends (stopped before it created a key)
    world
        .moto
        .sfn()
        .stop_execution()
        .execution_arn(&first)
        .send()
        .await
        .unwrap();

    // THEN, while the stopped execution's last Lambda may still be at work, not yet
    let mut patient = world.deps.clone();
    patient.settings.takeover_grace_seconds = 360;
    let (name, message) = failure(
        preflight::handle(&patient, world.preflight_event_for(&second, world.input())).await,
    );
    assert_eq!(name, "RotationInProgress");
    assert!(message.contains("may still be at work until"), "{message}");

    // AND past that grace the second takes the lock over and rotates from the start
    let state = preflight::handle(
        &world.deps,
        world.preflight_event_for(&second, world.input()),
    )
    .await
    .unwrap();
    assert_eq!(state.recovery, rotation::state::Recovery::Fresh);
    assert_eq!(world.lock_holder().await, second);
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
}

#[tokio::test]
async fn two_executions_preflighting_at_the_same_moment_take_the_lock_once() {
    let world = World::new().await;
    let (a, b) = (
        world.running_execution().await,
        world.running_execution().await,
    );
    let (first, second) = tokio::join!(
        preflight::handle(&world.deps, world.preflight_event_for(&a, world.input())),
        preflight::handle(&world.deps, world.preflight_event_for(&b, world.input())),
    );
    let outcomes = [first.map(|_| ()), second.map(|_| ())];
    let refused: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err().map(RotationError::name))
        .collect();
    assert_eq!(refused, ["RotationInProgress"], "{outcomes:?}");
    let holder = world.deps.ledger.read(USER).await.unwrap().unwrap();
    let winner = if outcomes[0].is_ok() { &a } else { &b };
    assert_eq!(&holder.execution_id, winner);
}

#[tokio::test]
async fn a_run_that_finds_the_winners_new_key_says_rotation_in_progress_not_two_keys() {
    // GIVEN two runs started together: this one saw no lock, and while it asked Qovery,
    // the other took the lock and created its new key
    let world = World::new().await;
    let (winner, loser) = (
        world.running_execution().await,
        world.running_execution().await,
    );
    let mut survey = world.fake.hold("listOrganizationCredentials", 0);
    let meanwhile = async {
        tokio::time::timeout(std::time::Duration::from_secs(60), survey.reached())
            .await
            .expect("preflight asked Qovery");
        preflight::handle(
            &world.deps,
            world.preflight_event_for(&winner, world.input()),
        )
        .await
        .expect("the winner takes the lock");
        world.key_made_by_someone_else().await;
        survey.release();
    };
    // WHEN the loser goes on
    let (result, ()) = tokio::join!(
        preflight::handle(
            &world.deps,
            world.preflight_event_for(&loser, world.input())
        ),
        meanwhile
    );
    // THEN it names the winner, not the user's two keys, and changed nothing
    let (name, message) = failure(result);
    assert_eq!(name, "RotationInProgress", "{message}");
    assert!(
        message.contains(&winner) && message.contains("while this run was"),
        "{message}"
    );
    assert_eq!(world.lock_holder().await, winner);
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
    assert!(world.fake.snapshot().requests.is_empty());
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
    let (name, message) =
        failure(preflight::handle(&deps, world.preflight_event(world.input())).await);
    assert_eq!(name, "AwsUnavailable", "{message}");
    assert!(message.contains("Nothing was changed"), "{message}");
}

// ---- create-key ---------------------------------------------------------------

#[tokio::test]
async fn create_key_stores_the_new_key_in_the_execution_secret_and_returns_only_ids() {
    // GIVEN a preflighted rotation
    let world = World::new().await;
    let state = preflighted(&world).await;

    // WHEN create-key runs
    let state = create(&world, &state).await.unwrap();

    // THEN the user has a second key, stored in this execution's own secret
    let new_key = state.new_access_key_id.clone().unwrap();
    assert_ne!(new_key, world.old_key);
    assert_eq!(world.key_ids().await.len(), 2);
    assert_eq!(world.key_status(&new_key).await.as_deref(), Some("Active"));
    let name = world.key_secret_name(EXECUTION);
    assert_eq!(name, "qovery-key-rotator/qovery/run-1");
    assert!(
        state.key_secret_id.as_deref().unwrap().contains(&name),
        "{:?}",
        state.key_secret_id
    );
    assert_eq!(
        world.secret_names().await,
        vec![name.clone(), TOKEN_SECRET.to_string()]
    );
    let versions: Vec<StoredVersion> = world
        .stored_secrets()
        .await
        .into_iter()
        .filter(|v| v.name == name)
        .collect();
    assert_eq!(versions.len(), 1);
    assert_eq!(
        Some(&versions[0].version_id),
        state.new_key_version_id.as_ref()
    );
    // The stored secret is the real one: STS accepts the pair as the user.
    let secret = world.stored_secret(&state).await;
    assert!(world
        .moto
        .caller(&new_key, &secret)
        .await
        .unwrap()
        .ends_with(":user/qovery"));
    // Only ids leave the step.
    let output = serde_json::to_string(&state).unwrap();
    assert!(!output.contains(&secret) && !output.contains("secret_access_key"));
    // Qovery still holds the old key.
    assert!(all_hold(&world, &world.old_key));
}

#[tokio::test]
async fn create_key_called_twice_with_the_same_input_creates_one_key() {
    // GIVEN a first create-key whose answer was lost
    let world = World::new().await;
    let state = preflighted(&world).await;
    let first = create(&world, &state).await.unwrap();

    // WHEN the state machine calls it again with the same input
    let second = create(&world, &state).await.unwrap();

    // THEN the same key comes back and nothing new exists
    assert_eq!(first, second);
    assert_eq!(
        world.key_ids().await.len(),
        2,
        "a retry must not create a third key"
    );
    let name = world.key_secret_name(EXECUTION);
    let versions = world
        .stored_secrets()
        .await
        .into_iter()
        .filter(|v| v.name == name)
        .count();
    assert_eq!(versions, 1);
    assert!(all_hold(&world, &world.old_key));
}

#[tokio::test]
async fn create_key_never_deletes_a_key_it_cannot_prove_it_made() {
    // GIVEN a key made by someone else (a person, a script, another run) between
    // preflight and create-key
    let world = World::new().await;
    let state = preflighted(&world).await;
    let theirs = world.key_made_by_someone_else().await;
    let before = world.key_ids().await;

    // WHEN create-key runs (twice: a retry sees the same)
    for _ in 0..2 {
        let (name, message) = failure(create(&world, &state).await);

        // THEN it is refused, naming the key, and nothing is created or deleted
        assert_eq!(name, "PreconditionFailed");
        assert!(
            message.contains(&theirs)
                && message.contains("cannot prove it made")
                && message.contains("Nothing was changed"),
            "{message}"
        );
        assert_eq!(world.key_ids().await, before);
        assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
    }
}

/// A key an earlier attempt of this execution created and recorded (the proof), then
/// died before storing its secret.
async fn a_recorded_key_whose_secret_was_lost(world: &World) -> String {
    let lost = world.key_made_by_someone_else().await;
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    world
        .deps
        .ledger
        .write(&rotation::ledger::Record {
            phase: rotation::ledger::LedgerPhase::KeyCreated,
            new_access_key_id: Some(lost.clone()),
            ..record
        })
        .await
        .unwrap();
    lost
}

#[tokio::test]
async fn create_key_deletes_its_own_recorded_key_whose_secret_was_lost_and_creates_another() {
    // GIVEN an earlier attempt created a key and recorded it in the ledger (the proof),
    // then died before storing its secret
    let world = World::new().await;
    let state = preflighted(&world).await;
    let lost = a_recorded_key_whose_secret_was_lost(&world).await;

    // WHEN create-key runs again
    let state = create(&world, &state).await.unwrap();

    // THEN the lost key is gone, a new one is stored and recorded, Qovery's key untouched
    let new_key = state.new_access_key_id.clone().unwrap();
    assert_ne!(new_key, lost);
    let mut expected = vec![world.old_key.clone(), new_key.clone()];
    expected.sort();
    assert_eq!(world.key_ids().await, expected);
    let secret = world.stored_secret(&state).await;
    assert!(world.moto.caller(&new_key, &secret).await.is_ok());
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    assert_eq!(record.new_access_key_id.as_deref(), Some(new_key.as_str()));
    assert!(all_hold(&world, &world.old_key));
}

/// IAM refuses CreateAccessKey to the rotator from now on: create-key stops exactly
/// where a Lambda that died in that call would.
async fn deny_key_creation(world: &World) {
    let deny = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "iam:CreateAccessKey", "Resource": "*"}]});
    world
        .moto
        .iam()
        .put_user_policy()
        .user_name("rotator-admin")
        .policy_name("no-new-keys")
        .policy_document(deny.to_string())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn create_key_records_that_it_is_creating_a_key_and_where_its_secret_goes_before_it_asks_iam()
{
    // GIVEN a preflighted rotation, and IAM that will not answer CreateAccessKey with a key
    let world = World::new().await;
    let state = preflighted(&world).await;
    deny_key_creation(&world).await;

    // WHEN create-key runs
    let (name, message) = failure(create(&world, &state).await);

    // THEN the record already says a key was being created (so that a later run can
    // tell a lost creation from someone else's key) and where its secret goes; no key
    assert_eq!(name, "AwsRejected", "{message}");
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    assert_eq!(record.phase, rotation::ledger::LedgerPhase::CreatingKey);
    assert_eq!(
        record.key_secret_id.as_deref(),
        Some(world.key_secret_name(EXECUTION).as_str())
    );
    assert!(record.new_key_version_id.is_some());
    assert_eq!(record.new_access_key_id, None);
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
}

#[tokio::test]
async fn create_key_forgets_the_lost_key_it_deleted_before_it_creates_another() {
    // GIVEN an earlier attempt's recorded key whose secret was lost, and IAM that will
    // not create the next one
    let world = World::new().await;
    let state = preflighted(&world).await;
    a_recorded_key_whose_secret_was_lost(&world).await;
    deny_key_creation(&world).await;

    // WHEN create-key runs again and fails to create
    failure(create(&world, &state).await);

    // THEN the lost key is deleted and no longer recorded as this rotation's new key
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    assert_eq!(record.new_access_key_id, None, "{record:?}");
    assert_eq!(record.phase, rotation::ledger::LedgerPhase::CreatingKey);
}

#[tokio::test]
async fn create_key_records_the_key_its_secret_and_the_secret_version() {
    // GIVEN a preflighted rotation
    let world = World::new().await;
    let state = preflighted(&world).await;

    // WHEN create-key runs
    let state = create(&world, &state).await.unwrap();

    // THEN the record is the proof of the key, and names the secret version a later run
    // finishes the hand-over with
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    assert_eq!(record.phase, rotation::ledger::LedgerPhase::KeyCreated);
    assert_eq!(record.new_access_key_id, state.new_access_key_id);
    assert_eq!(record.key_secret_id, state.key_secret_id);
    assert_eq!(record.new_key_version_id, state.new_key_version_id);
}

#[tokio::test]
async fn a_new_key_the_ledger_cannot_record_is_deleted_again() {
    // GIVEN a preflighted rotation, and a ledger that will refuse the record of the key
    let world = World::new().await;
    let state = preflighted(&world).await;
    world
        .moto
        .fail_next_dynamodb_write_containing("key_created")
        .await;

    // WHEN create-key runs: IAM creates the key, the write of its proof fails
    let (name, message) = failure(create(&world, &state).await);

    // THEN the key it could not record is deleted (no orphan key), and Qovery's remains
    assert_eq!(name, "AwsRejected", "{message}");
    assert!(message.contains("was deleted again"), "{message}");
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
}

#[tokio::test]
async fn create_key_refuses_a_second_key_from_before_preflight() {
    // GIVEN a second key that predates preflight (preflight is dated after it)
    let world = World::new().await;
    let mut state = preflighted(&world).await;
    let other = world.key_made_by_someone_else().await;
    state.preflight_at = rotation::timefmt::after(rotation::timefmt::now(), 3600);
    let before = world.key_ids().await;

    // WHEN create-key runs
    let (name, message) = failure(create(&world, &state).await);

    // THEN it is refused, listing the keys, and nothing is created or deleted
    assert_eq!(name, "PreconditionFailed");
    for needle in [
        other.as_str(),
        world.old_key.as_str(),
        "Nothing was changed",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // The key it cannot prove it made is the other one, not Qovery's.
    let unproven = format!("cannot prove it made {other}, so it does not delete it");
    assert!(message.contains(&unproven), "{message}");
    assert_eq!(world.key_ids().await, before);
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
}

#[tokio::test]
async fn create_key_never_deletes_a_new_key_that_qovery_holds() {
    // GIVEN a key created after preflight, which another credentials entry took
    let world = World::with(WorldOptions {
        credentials: vec![
            Entry::new(CREDS, "aws-prod", Holds::UserKey),
            Entry::new(CREDS_OTHER, "aws-other", Holds::Key("AKIAANOTHERKEY000000")),
        ],
        ..Default::default()
    })
    .await;
    let state = preflighted(&world).await;
    let created = world
        .moto
        .iam()
        .create_access_key()
        .user_name(USER)
        .send()
        .await
        .unwrap();
    let held = created.access_key().unwrap();
    world.qovery_takes(CREDS_OTHER, held.access_key_id(), held.secret_access_key());
    let before = world.key_ids().await;

    // WHEN create-key runs
    let (name, message) = failure(create(&world, &state).await);

    // THEN it is refused; the key Qovery holds is still there
    assert_eq!(name, "PreconditionFailed");
    assert!(
        message.contains(held.access_key_id()) && message.contains("Nothing was changed"),
        "{message}"
    );
    assert_eq!(world.key_ids().await, before);
    assert_eq!(world.held_by(CREDS_OTHER).0, held.access_key_id());
    assert_eq!(world.held_by(CREDS).0, world.old_key);
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
}

#[tokio::test]
async fn create_key_rejects_a_malformed_state() {
    let world = World::new().await;
    let state = value(&preflighted(&world).await);
    let mut dry = state.clone();
    dry["dry_run"] = json!(true);
    let with = |path: &[&str], bad: Value| {
        let mut changed = state.clone();
        let mut target = &mut changed;
        for part in &path[..path.len() - 1] {
            target = match part.parse::<usize>() {
                Ok(i) => &mut target[i],
                Err(_) => &mut target[*part],
            };
        }
        target[path[path.len() - 1]] = bad;
        changed
    };
    for (input, expected) in [
        (json!({"iam_user_name": USER}), "missing field"),
        (
            with(&["organization_id"], json!("not-a-uuid")),
            "organization_id",
        ),
        (with(&["iam_user_name"], json!("../admin")), "iam_user_name"),
        (
            with(&["old_access_key_id"], json!("AKIA../../etc/passwd")),
            "old_access_key_id",
        ),
        (with(&["holders"], json!([])), "`holders` is empty"),
        (
            with(&["holders", "0", "id"], json!("aws-prod")),
            "holders[].id",
        ),
        (
            with(&["clusters", "0", "id"], json!(CLUSTER_A.to_uppercase())),
            "clusters[].id",
        ),
        (with(&["preflight_at"], json!("yesterday")), "preflight_at"),
        (dry, "dry run"),
    ] {
        let (name, message) = failure(create_key::handle(&world.deps, input).await);
        assert_eq!(name, "InvalidInput", "{expected}: {message}");
        assert!(message.contains(expected), "{expected}: {message}");
        assert!(message.contains("Nothing was changed"), "{message}");
    }
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
}

// ---- update-qovery ------------------------------------------------------------

#[tokio::test]
async fn update_qovery_hands_the_new_key_to_every_entry_and_deletes_its_secret() {
    // GIVEN two entries sharing the key, and the new key created
    let world = World::shared_key().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let new_secret = world.stored_secret(&state).await;

    // WHEN update-qovery runs
    let state = update(&world, &state).await.unwrap();

    // THEN both entries hold the new key, with a secret STS accepts
    for id in [CREDS, CREDS_US] {
        let (held, secret) = world.held_by(id);
        assert_eq!(held, new_key, "{id}");
        assert_eq!(secret, new_secret, "{id}");
    }
    assert!(world
        .moto
        .caller(&new_key, &new_secret)
        .await
        .unwrap()
        .ends_with(":user/qovery"));
    assert_eq!(
        creds_of(&state),
        vec![creds(CREDS, "aws-prod"), creds(CREDS_US, "aws-us")]
    );
    // One PUT per entry, each accepted by the fake's check of the spec's body, names kept.
    let puts: Vec<u16> = world
        .fake
        .snapshot()
        .requests
        .into_iter()
        .filter(|r| r.operation == "editAWSCredentials")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts, [200, 200]);
    let names: Vec<String> = world
        .fake
        .snapshot()
        .credentials
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["aws-prod", "aws-us"]);
    // The drain counts from the hand-over.
    let parse = |t: &Option<String>| {
        time::OffsetDateTime::parse(
            t.as_deref().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let taken = parse(&state.qovery_updated_at);
    assert_eq!((parse(&state.drain_until) - taken).whole_seconds(), 60);
    assert!(state.drain_until.as_deref().unwrap().ends_with('Z'));
    // Both keys still exist: the old one is deleted only after the drain.
    assert_eq!(world.key_ids().await.len(), 2);
    assert_eq!(
        world.key_status(&world.old_key).await.as_deref(),
        Some("Active")
    );
    // The key's secret now lives only in Qovery.
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
    world.assert_no_secret_holds_a_key(&[&new_secret]).await;
}

#[tokio::test]
async fn update_qovery_records_each_cluster_as_qovery_reports_it_after_the_hand_over() {
    // GIVEN a deployed cluster, and one whose deployment (begun before) still runs
    let mut busy = SeedCluster::new(CLUSTER_B, "staging", CREDS);
    busy.status = "DEPLOYING".into();
    busy.busy_polls = 5;
    let world = World::with(WorldOptions {
        clusters: vec![SeedCluster::new(CLUSTER_A, "production", CREDS), busy],
        ..Default::default()
    })
    .await;

    // WHEN the new key is handed over
    let state = handed_over(&world).await;

    // THEN each plan carries what Qovery reported for it then
    for plan in &state.clusters {
        let now = world.cluster(&plan.id);
        assert_eq!(plan.handover_status.as_deref(), Some(now.status.as_str()));
        assert_eq!(plan.handover_execution_id, now.last_execution_id);
        assert_eq!(plan.handover_deployment_date, now.last_deployment_date);
        assert!(plan.handover_execution_id.is_some());
    }
    let statuses: Vec<Option<&str>> = state
        .clusters
        .iter()
        .map(|c| c.handover_status.as_deref())
        .collect();
    assert_eq!(statuses, [Some("DEPLOYED"), Some("DEPLOYING")]);
    // ... and the Map hands that to each iteration as its baseline.
    let item = map_item(&state, CLUSTER_B);
    assert_eq!(item["baseline_status"], "DEPLOYING");
    assert_eq!(
        item["baseline_execution_id"].as_str(),
        state.clusters[1].handover_execution_id.as_deref()
    );
    assert!(world.deploy_counts().iter().all(|(_, n)| *n == 0));
}

#[tokio::test]
async fn update_qovery_called_twice_puts_once_and_succeeds_without_the_secret() {
    // GIVEN a hand-over whose answer was lost (the key secret is already deleted)
    let world = World::shared_key().await;
    let state = created(&world).await;
    let first = update(&world, &state).await.unwrap();
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);

    // WHEN the state machine calls it again with the same input
    let second = update(&world, &state).await.unwrap();

    // THEN no second PUT; the same outcome
    assert_eq!(
        world.calls("editAWSCredentials"),
        2,
        "one PUT per entry, once"
    );
    assert_eq!(second.holders, first.holders);
    assert_eq!(second.new_access_key_id, first.new_access_key_id);
    assert_eq!(
        second
            .clusters
            .iter()
            .map(|c| &c.handover_execution_id)
            .collect::<Vec<_>>(),
        first
            .clusters
            .iter()
            .map(|c| &c.handover_execution_id)
            .collect::<Vec<_>>()
    );
    assert!(all_hold(
        &world,
        state.new_access_key_id.as_deref().unwrap()
    ));
    assert_eq!(world.key_ids().await.len(), 2);
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
}

#[tokio::test]
async fn update_qovery_gives_the_new_key_to_an_entry_added_since_preflight() {
    // GIVEN, after preflight, someone set up a third entry with the same key
    let world = World::new().await;
    let state = created(&world).await;
    let old_key = world.old_key.clone();
    let old_secret = world.old_secret.clone();
    world.reseed(|seed| {
        seed.credentials.push(SeedCredentials::new(
            CREDS_OTHER,
            "aws-late",
            &old_key,
            &old_secret,
        ))
    });

    // WHEN update-qovery runs
    let state = update(&world, &state).await.unwrap();

    // THEN it holds the new key too, and the state says so (delete-key relies on Qovery anyway)
    let new_key = state.new_access_key_id.clone().unwrap();
    assert!(all_hold(&world, &new_key), "{:?}", world.holders());
    assert_eq!(
        creds_of(&state),
        vec![creds(CREDS, "aws-prod"), creds(CREDS_OTHER, "aws-late")]
    );
}

#[tokio::test]
async fn update_qovery_refuses_a_key_sts_does_not_accept() {
    // GIVEN the new key no longer works (deleted here; a key still propagating looks the same)
    let world = World::shared_key().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    world
        .moto
        .iam()
        .delete_access_key()
        .user_name(USER)
        .access_key_id(&new_key)
        .send()
        .await
        .unwrap();

    // WHEN update-qovery runs
    let (name, message) = failure(update(&world, &state).await);

    // THEN nothing is handed over
    assert_eq!(name, "NewKeyNotValid");
    assert!(
        message.contains(&new_key) && message.contains(&world.old_key),
        "{message}"
    );
    assert!(
        all_hold(&world, &world.old_key),
        "Qovery must never get a key that does not work"
    );
    assert_eq!(world.calls("editAWSCredentials"), 0);
    // The secret stays until the rollback removes it with the key.
    assert!(world
        .secret_names()
        .await
        .contains(&world.key_secret_name(EXECUTION)));
}

#[tokio::test]
async fn the_sts_proof_refuses_a_key_of_another_user() {
    // GIVEN a state whose new key works, but is a key of another IAM user, stored as
    // create-key stores a key (the state or the secret was tampered with, or mixed up)
    let world = World::new().await;
    let mut state = created(&world).await;
    let (other_key, other_secret) = user_with_key(&world.moto.iam(), "someone-else").await;
    let version = "11111111-2222-4333-8444-555555555555";
    let secret_arn = world
        .moto
        .secrets()
        .create_secret()
        .name("qovery-key-rotator/someone-else")
        .client_request_token(version)
        .secret_string(
            json!({"access_key_id": other_key, "secret_access_key": other_secret}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    state.new_access_key_id = Some(other_key.clone());
    state.key_secret_id = Some(secret_arn);
    state.new_key_version_id = Some(version.to_string());
    assert!(
        world.moto.caller(&other_key, &other_secret).await.is_ok(),
        "sanity: the key works"
    );

    // WHEN update-qovery runs
    let (name, message) = failure(update(&world, &state).await);

    // THEN STS's answer names another user: nothing is handed over
    assert_eq!(name, "NewKeyNotValid", "{message}");
    assert!(
        message.contains("someone-else") && message.contains(&format!("not to IAM user {USER}")),
        "{message}"
    );
    assert_eq!(world.calls("editAWSCredentials"), 0);
    assert!(all_hold(&world, &world.old_key));
}

#[tokio::test]
async fn update_qovery_maps_qovery_failures_and_leaves_the_old_key_held() {
    // GIVEN the new key, and Qovery failing the next PUT
    let world = World::shared_key().await;
    let state = created(&world).await;
    let secret = world.stored_secret(&state).await;
    for (status, expected) in [
        (503, "QoveryUnavailable"),
        (504, "QoveryUnavailable"),
        (429, "QoveryUnavailable"),
        (500, "QoveryUnavailable"),
        // Any other failure after a PUT was sent only goes forward (reconcile).
        (400, "HandOverIncomplete"),
        (404, "HandOverIncomplete"),
        (403, "HandOverIncomplete"),
    ] {
        world
            .fake
            .inject_fault(Fault::new("editAWSCredentials", status, 1));
        // WHEN update-qovery runs
        let (name, message) = failure(update(&world, &state).await);
        // THEN the error is named, nothing is handed over, and no secret is quoted
        assert_eq!(name, expected, "{status}: {message}");
        assert!(message.contains(&status.to_string()), "{message}");
        assert!(all_hold(&world, &world.old_key), "{status}");
        assert!(!message.contains(&secret) && !message.contains(TOKEN));
    }
    assert_eq!(world.key_ids().await.len(), 2);
    // The secret is still there for the retry (or the rollback).
    assert_eq!(world.stored_secret(&state).await, secret);
}

#[tokio::test]
async fn update_qovery_never_quotes_an_error_page_that_quotes_the_request() {
    let world = World::new().await;
    let state = created(&world).await;
    let new_secret = world.stored_secret(&state).await;
    world
        .fake
        .inject_fault(Fault::new("editAWSCredentials", 400, 1).echoing_request());
    let (name, message) = failure(update(&world, &state).await);
    assert_eq!(name, "HandOverIncomplete", "{message}");
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
    assert_eq!(world.held_by(CREDS).0, world.old_key);
}

#[tokio::test]
async fn update_qovery_honours_a_short_retry_after() {
    let world = World::new().await;
    let state = created(&world).await;
    world
        .fake
        .inject_fault(Fault::new("editAWSCredentials", 503, 1).with_retry_after(1));
    let started = std::time::Instant::now();
    update(&world, &state).await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(world.calls("editAWSCredentials"), 2);
    assert!(all_hold(
        &world,
        state.new_access_key_id.as_deref().unwrap()
    ));
}

#[tokio::test]
async fn reconcile_tells_which_key_qovery_holds_and_the_hand_over_finishes() {
    // GIVEN two entries, the new key created, and a PUT that failed with 504
    let world = World::shared_key().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let new_secret = world.stored_secret(&state).await;
    world
        .fake
        .inject_fault(Fault::new("editAWSCredentials", 504, 1));
    let (name, _) = failure(update(&world, &state).await);
    assert_eq!(name, "QoveryUnavailable");

    // WHEN reconcile asks, and the PUT did not apply: old_key
    let result = reconcile(&world, &state).await;
    assert_eq!(result.qovery_holds, QoveryHolds::OldKey);
    assert_eq!(result.holders.len(), 2);
    assert!(result.holders.iter().all(|c| c.ends_with(&world.old_key)));

    // WHEN the PUT did apply to one entry: mixed
    world.qovery_takes(CREDS, &new_key, &new_secret);
    let result = reconcile(&world, &state).await;
    assert_eq!(result.qovery_holds, QoveryHolds::Mixed);
    assert!(
        result.summary.contains(CREDS) && result.summary.contains(CREDS_US),
        "{}",
        result.summary
    );

    // WHEN it applied to both: new_key
    world.qovery_takes(CREDS_US, &new_key, &new_secret);
    assert_eq!(
        reconcile(&world, &state).await.qovery_holds,
        QoveryHolds::NewKey
    );

    // THEN reconcile only read: no PUT, the keys and the key secret are as they were
    assert_eq!(world.calls("editAWSCredentials"), 0);
    assert_eq!(world.key_ids().await.len(), 2);
    assert_eq!(world.stored_secret(&state).await, new_secret);
}

#[tokio::test]
async fn finish_hand_over_takes_the_state_machine_input_after_reconcile() {
    // GIVEN a PUT that applied to one entry but answered 504, and reconcile saying mixed
    let world = World::shared_key().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let new_secret = world.stored_secret(&state).await;
    world.qovery_takes(CREDS, &new_key, &new_secret);
    let error = json!({"Error": "QoveryUnavailable", "Cause": "Qovery answered 504"});
    let input = with_caught_error("UpdateQovery", "WaitBeforeReconcile", &value(&state), error);
    let reconciled = update_qovery::handle(
        &world.deps,
        task_input("ReconcileHandOver", &input, &no_context()),
    )
    .await
    .unwrap();
    assert_eq!(reconciled["qovery_holds"], "mixed");

    // WHEN FinishHandOver runs with what the ASL passes it: the state plus $.error and
    // $.reconcile
    let input = with_result("ReconcileHandOver", &input, reconciled);
    let output = update_qovery::handle(
        &world.deps,
        task_input("FinishHandOver", &input, &no_context()),
    )
    .await
    .unwrap();

    // THEN it is a hand-over, not another reconcile: every entry holds the new key, the
    // clusters are noted, and the secret is gone
    let finished: RotationState = serde_json::from_value(output).unwrap();
    assert!(all_hold(&world, &new_key), "{:?}", world.holders());
    assert_eq!(world.calls("editAWSCredentials"), 1, "only the entry left");
    assert!(finished
        .clusters
        .iter()
        .all(|c| c.handover_status.is_some()));
    assert!(finished.drain_until.is_some());
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
    world.assert_no_secret_holds_a_key(&[&new_secret]).await;
}

// ---- deploy-cluster and check-status -------------------------------------------

#[tokio::test]
async fn a_cluster_redeploys_and_reaches_deployed() {
    // GIVEN the hand-over is done
    let world = World::new().await;
    let state = handed_over(&world).await;

    // WHEN the Map's iteration for production runs
    let cluster = deploy_cluster::handle(&world.deps, map_item(&state, CLUSTER_A))
        .await
        .unwrap();
    assert_eq!(cluster.phase, Some(Phase::InProgress));
    assert_eq!(cluster.status.as_deref(), Some("DEPLOYMENT_QUEUED"));
    assert_eq!(cluster.cluster_name.as_deref(), Some("production"));
    assert!(cluster.deadline.is_some() && cluster.deploy_requested_at.is_some());
    let done = poll_until_done(&world, cluster).await.unwrap();

    // THEN it was deployed once, on a new execution, and reached DEPLOYED
    assert_eq!(done.polls, 2);
    let now = world.cluster(CLUSTER_A);
    assert_eq!(now.status, "DEPLOYED");
    assert_eq!(now.deploy_count, 1);
    assert_ne!(
        now.last_execution_id,
        state.clusters[0].handover_execution_id
    );
    assert_eq!(done.last_execution_id, now.last_execution_id);
    assert_eq!(world.cluster(CLUSTER_B).deploy_count, 0);
}

#[tokio::test]
async fn deploy_cluster_called_twice_with_the_same_input_deploys_once() {
    // GIVEN a first deploy-cluster call whose answer was lost
    let world = World::new().await;
    let state = handed_over(&world).await;
    let item = map_item(&state, CLUSTER_A);
    deploy_cluster::handle(&world.deps, item.clone())
        .await
        .unwrap();

    // WHEN it is called again with the same input
    let second = deploy_cluster::handle(&world.deps, item.clone())
        .await
        .unwrap();

    // THEN it follows the first call's deployment instead of starting another
    assert_eq!(second.phase, Some(Phase::InProgress));
    assert!(second.deploy_requested_at.is_none(), "no POST this time");
    assert_eq!(world.calls("deployCluster"), 1);
    let done = poll_until_done(&world, second).await.unwrap();
    assert_eq!(done.phase, Some(Phase::Deployed));
    assert_eq!(world.cluster(CLUSTER_A).status, "DEPLOYED");

    // ... and even once that deployment is over, a third call only follows it.
    let third = run_iteration(&world, item).await.unwrap();
    assert_eq!(third.phase, Some(Phase::Deployed));
    assert_eq!(world.cluster(CLUSTER_A).deploy_count, 1);
}

#[tokio::test]
async fn a_stale_deployed_right_after_the_post_does_not_count() {
    let world = World::with_production(|c| {
        c.stale_polls = 2;
    })
    .await;
    let state = handed_over(&world).await;
    let cluster = deploy_cluster::handle(&world.deps, map_item(&state, CLUSTER_A))
        .await
        .unwrap();
    assert_eq!(
        cluster.status.as_deref(),
        Some("DEPLOYED"),
        "the fake answers the POST with the old status"
    );
    let first = check_status::handle(&world.deps, value(&cluster))
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
    assert_eq!(world.cluster(CLUSTER_A).deploy_count, 1);
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
        let (name, message) = failure(run_iteration(&world, map_item(&state, CLUSTER_A)).await);
        assert_eq!(name, "ClusterDeployFailed");
        let new_key = state.new_access_key_id.as_deref().unwrap();
        for needle in [
            CLUSTER_A,
            "production",
            status,
            new_key,
            world.old_key.as_str(),
            "still active",
        ] {
            assert!(message.contains(needle), "{needle} missing: {message}");
        }
        assert_eq!(world.key_ids().await.len(), 2, "nothing is deleted");
        assert_eq!(world.cluster(CLUSTER_A).deploy_count, 1);
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
    let mut item = map_item(&state, CLUSTER_A);
    item["deploy_timeout_seconds"] = json!(2);
    let mut cluster = deploy_cluster::handle(&world.deps, item).await.unwrap();
    cluster = check_status::handle(&world.deps, value(&cluster))
        .await
        .unwrap();
    assert_eq!(cluster.phase, Some(Phase::InProgress));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (name, message) = failure(check_status::handle(&world.deps, value(&cluster)).await);
    assert_eq!(name, "ClusterDeployTimedOut");
    assert!(
        message.contains("DEPLOYING") && message.contains(CLUSTER_A),
        "{message}"
    );
    assert_eq!(world.key_ids().await.len(), 2);
    assert_eq!(world.cluster(CLUSTER_A).deploy_count, 1);
}

#[tokio::test]
async fn a_busy_cluster_is_redeployed_once_its_old_deployment_ends() {
    // GIVEN a deployment begun before the hand-over (so with the old key) still runs
    let world = World::with_production(|c| {
        c.status = "DEPLOYING".into();
        c.busy_polls = 2;
    })
    .await;
    let state = handed_over(&world).await;
    let handover_execution = state.clusters[0].handover_execution_id.clone();
    assert_eq!(
        state.clusters[0].handover_status.as_deref(),
        Some("DEPLOYING")
    );

    // WHEN the iteration runs
    let mut cluster = deploy_cluster::handle(&world.deps, map_item(&state, CLUSTER_A))
        .await
        .unwrap();
    assert_eq!(cluster.phase, Some(Phase::AwaitingIdle));
    let deadline = cluster.deadline.clone();
    while cluster.phase == Some(Phase::AwaitingIdle) {
        cluster = deploy_cluster::handle(&world.deps, value(&cluster))
            .await
            .unwrap();
    }
    assert_eq!(
        cluster.deadline, deadline,
        "the deadline counts from the first attempt"
    );
    let done = poll_until_done(&world, cluster).await.unwrap();

    // THEN the old deployment was waited out, and a new one (with the new key) deployed it
    assert_eq!(done.phase, Some(Phase::Deployed));
    let now = world.cluster(CLUSTER_A);
    assert_eq!(now.deploy_count, 1, "the old deployment does not count");
    assert_eq!(now.status, "DEPLOYED");
    assert_ne!(now.last_execution_id, handover_execution);
}

#[tokio::test]
async fn a_cluster_stopped_after_preflight_is_skipped_not_started() {
    // GIVEN two planned clusters, both stopped once the key was handed over; production's
    // stop was an execution of its own, staging's record still shows the old one
    let world = World::new().await;
    let state = handed_over(&world).await;
    world.reseed(|seed| {
        for cluster in &mut seed.clusters {
            cluster.status = "STOPPED".into();
            if cluster.id == CLUSTER_A {
                cluster.last_execution_id = Some(format!("{}-1893456000", uuid::Uuid::new_v4()));
            }
        }
    });

    // WHEN their iterations run
    for id in [CLUSTER_A, CLUSTER_B] {
        let cluster = run_iteration(&world, map_item(&state, id)).await.unwrap();

        // THEN each is skipped, and stays stopped
        assert_eq!(cluster.phase, Some(Phase::Skipped), "{id}");
        assert_eq!(cluster.status.as_deref(), Some("STOPPED"));
        assert_eq!(world.cluster(id).status, "STOPPED");
    }
    assert_eq!(world.calls("deployCluster"), 0);
}

/// Runs deploy-cluster for `cluster` with its POST held on the way in; meanwhile the
/// cluster's status becomes `status_meanwhile` (its execution unchanged: no new
/// deployment), as a deployment queued by a first call whose answer was lost shows up.
async fn deploy_while_the_status_turns(
    world: &World,
    state: &RotationState,
    cluster: &str,
    status_meanwhile: &str,
) -> Result<ClusterDeployment, RotationError> {
    let mut post = world.fake.hold("deployCluster", 0);
    let turn = async {
        tokio::time::timeout(std::time::Duration::from_secs(60), post.reached())
            .await
            .expect("deploy-cluster asked Qovery to deploy");
        world.fake.set_cluster_status(cluster, status_meanwhile);
        post.release();
    };
    let (result, ()) = tokio::join!(
        deploy_cluster::handle(&world.deps, map_item(state, cluster)),
        turn
    );
    result
}

#[tokio::test]
async fn a_deploy_refused_because_one_is_queued_follows_it_and_deploys_nothing_more() {
    // GIVEN the hand-over is done, and Qovery refuses the POST because a deployment is
    // queued that its status did not show yet (a first call's, its answer lost)
    let world = World::new().await;
    let state = handed_over(&world).await;
    world.fake.inject_fault(Fault::new("deployCluster", 400, 1));

    // WHEN deploy-cluster runs and the status, asked again, shows the queued deployment
    let cluster = deploy_while_the_status_turns(&world, &state, CLUSTER_A, "DEPLOYMENT_QUEUED")
        .await
        .unwrap();

    // THEN it waits for the cluster to settle (then deploys if nothing new came of it);
    // the refusal is not a failure of the rotation
    assert_eq!(cluster.phase, Some(Phase::AwaitingIdle));
    // (the fake moves a queued deployment on at each look)
    let status = cluster.status.as_deref();
    assert!(
        matches!(status, Some("DEPLOYMENT_QUEUED" | "DEPLOYING")),
        "{status:?}"
    );
    assert!(
        cluster.deploy_requested_at.is_none(),
        "no deploy was accepted"
    );
    assert_eq!(world.calls("getClusterStatus"), 2, "the status asked again");
}

#[tokio::test]
async fn a_deploy_refused_while_nothing_is_queued_fails_the_rotation() {
    // GIVEN the hand-over is done, and Qovery refuses the POST
    let world = World::new().await;
    let state = handed_over(&world).await;
    world.fake.inject_fault(Fault::new("deployCluster", 400, 1));

    // WHEN deploy-cluster runs and the status, asked again, is still DEPLOYED on the
    // execution the hand-over recorded
    let result = deploy_while_the_status_turns(&world, &state, CLUSTER_A, "DEPLOYED").await;

    // THEN nothing is queued that could carry the new key: the refusal is the answer
    let (name, message) = failure(result);
    assert_eq!(name, "QoveryRejected");
    assert!(message.contains("400"), "{message}");
    assert_eq!(world.cluster(CLUSTER_A).deploy_count, 0);
}

#[tokio::test]
async fn a_deploy_failing_for_another_reason_is_that_failure_even_if_the_cluster_is_busy() {
    // GIVEN the hand-over is done, and the POST fails on the token (401), not a refusal
    let world = World::new().await;
    let state = handed_over(&world).await;
    world.fake.inject_fault(Fault::new("deployCluster", 401, 1));

    // WHEN the cluster meanwhile shows a deployment queued by someone else
    let result =
        deploy_while_the_status_turns(&world, &state, CLUSTER_A, "DEPLOYMENT_QUEUED").await;

    // THEN the failure is reported as it is: only a refusal means "already queued"
    let (name, _) = failure(result);
    assert_eq!(name, "QoveryUnauthorized");
    assert_eq!(world.calls("getClusterStatus"), 1, "no second look");
}

#[tokio::test]
async fn cluster_polling_maps_qovery_outages_and_bad_ids() {
    let world = World::new().await;
    let state = handed_over(&world).await;
    let cluster = deploy_cluster::handle(&world.deps, map_item(&state, CLUSTER_A))
        .await
        .unwrap();
    world
        .fake
        .inject_fault(Fault::new("getClusterStatus", 500, 1));
    let (name, _) = failure(check_status::handle(&world.deps, value(&cluster)).await);
    assert_eq!(name, "QoveryUnavailable");
    world.fake.inject_fault(Fault::new("deployCluster", 404, 1));
    let (name, message) =
        failure(deploy_cluster::handle(&world.deps, map_item(&state, CLUSTER_B)).await);
    assert_eq!(name, "QoveryRejected");
    assert!(message.contains("404"), "{message}");
    assert_eq!(world.cluster(CLUSTER_B).deploy_count, 0);

    let mut item = map_item(&state, CLUSTER_B);
    item["cluster_id"] = json!("../cluster");
    let (name, message) = failure(deploy_cluster::handle(&world.deps, item.clone()).await);
    assert_eq!(name, "InvalidInput");
    assert!(message.contains("cluster_id"), "{message}");
    let (name, _) = failure(check_status::handle(&world.deps, item).await);
    assert_eq!(name, "InvalidInput");
    assert_eq!(world.cluster(CLUSTER_B).deploy_count, 0);
}

// ---- delete-key ---------------------------------------------------------------

#[tokio::test]
async fn delete_key_retires_the_old_key_and_a_second_call_is_already_deleted() {
    // GIVEN two entries handed the new key
    let world = World::shared_key().await;
    let state = created(&world).await;
    let new_secret = world.stored_secret(&state).await;
    let state = update(&world, &state).await.unwrap();
    let new_key = state.new_access_key_id.clone().unwrap();

    // WHEN DeleteOldKey runs
    let result = delete(&world, "DeleteOldKey", &state).await.unwrap();

    // THEN the old key is gone, Qovery's key works, and no secret holds a key
    assert_eq!(result.deleted_access_key_id, world.old_key);
    assert!(!result.already_deleted);
    assert_eq!(result.kept_access_key_id, new_key);
    assert_eq!(
        result.kept_by,
        vec![
            format!("credentials aws-prod ({CREDS})"),
            format!("credentials aws-us ({CREDS_US})")
        ]
    );
    assert_eq!(world.key_ids().await, vec![new_key.clone()]);
    assert!(
        world
            .moto
            .caller(&world.old_key, &world.old_secret)
            .await
            .is_err(),
        "moto must reject the deleted key"
    );
    for id in [CREDS, CREDS_US] {
        let (held, secret) = world.held_by(id);
        assert!(world.moto.caller(&held, &secret).await.is_ok());
    }
    world.assert_no_secret_holds_a_key(&[&new_secret]).await;

    // WHEN it is called again with the same input (the first answer was lost)
    let again = delete(&world, "DeleteOldKey", &state).await.unwrap();

    // THEN success, reported as already deleted, and nothing else changed
    assert!(again.already_deleted);
    assert_eq!(again.deleted_access_key_id, world.old_key);
    assert!(
        again.summary.contains("Already deleted"),
        "{}",
        again.summary
    );
    assert_eq!(world.key_ids().await, vec![new_key.clone()]);
    assert!(all_hold(&world, &new_key));
}

/// Deletes a key of the user behind the rotation's back.
async fn delete_in_iam(world: &World, key: &str) {
    world
        .moto
        .iam()
        .delete_access_key()
        .user_name(USER)
        .access_key_id(key)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_already_deleted_key_that_qovery_still_holds_is_refused() {
    // GIVEN two entries handed the new key and drained; then one entry is given the old
    // key back (a console edit) and the old key is deleted outside the rotation
    let world = World::shared_key().await;
    let state = drained(&world, handed_over(&world).await, 0).await;
    world.qovery_takes(CREDS_US, &world.old_key, &world.old_secret);
    delete_in_iam(&world, &world.old_key).await;

    // WHEN DeleteOldKey finds the key it is to delete gone
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);

    // THEN that is no retry of its own delete: an entry holds a key that no longer exists
    assert_eq!(name, "UnsafeDelete", "{message}");
    assert!(
        message.contains("not a retry of a delete that went through") && message.contains(CREDS_US),
        "{message}"
    );
    assert_eq!(
        world.lock_holder().await,
        state.execution_id,
        "the lock stays"
    );

    // GIVEN a new key one entry took (a PUT whose answer was lost), deleted in IAM
    let world = World::shared_key().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let new_secret = world.stored_secret(&state).await;
    world.qovery_takes(CREDS, &new_key, &new_secret);
    delete_in_iam(&world, &new_key).await;

    // WHEN RollbackNewKey finds the key it is to delete gone
    let (name, message) = failure(delete(&world, "RollbackNewKey", &state).await);

    // THEN the same: refused, naming the entry that holds it
    assert_eq!(name, "UnsafeDelete", "{message}");
    assert!(
        message.contains("not a retry of a delete that went through") && message.contains(CREDS),
        "{message}"
    );
    assert_eq!(
        world.lock_holder().await,
        state.execution_id,
        "the lock stays"
    );
}

#[tokio::test]
async fn delete_key_refuses_while_any_entry_holds_the_old_key() {
    let world = World::new().await;

    // GIVEN Qovery still holds the old key (no hand-over yet)
    let state = created(&world).await;
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);
    assert_eq!(name, "UnsafeDelete");
    assert!(
        message.contains("Qovery holds it right now") && message.contains(&world.old_key),
        "{message}"
    );

    // GIVEN the hand-over is done, but an entry that is not in the rotation holds the old key
    let state = update(&world, &state).await.unwrap();
    let (old_key, old_secret) = (world.old_key.clone(), world.old_secret.clone());
    world.reseed(|seed| {
        seed.credentials.push(SeedCredentials::new(
            CREDS_OTHER,
            "aws-elsewhere",
            &old_key,
            &old_secret,
        ))
    });

    // WHEN DeleteOldKey runs
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);

    // THEN it is refused, naming that entry, and both keys stay active
    assert_eq!(name, "UnsafeDelete");
    assert!(
        message.contains(CREDS_OTHER) && message.contains("aws-elsewhere"),
        "{message}"
    );
    assert_eq!(world.key_ids().await.len(), 2);
    for key in world.keys().await {
        assert_eq!(key.status, "Active");
    }
    assert_eq!(world.held_by(CREDS_OTHER).0, world.old_key);
}

#[tokio::test]
async fn rollback_deletes_the_new_key_qovery_never_took_and_a_second_call_is_already_deleted() {
    // GIVEN the new key created, and the hand-over failed for certain before any PUT: a
    // secret manager access, which the rotation cannot change, took the old key
    let world = World::shared_key().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let new_secret = world.stored_secret(&state).await;
    let access = SeedSecretManagerAccess::aws_static(
        ACCESS,
        "app-secrets",
        "eu-west-3",
        &world.old_key,
        &world.old_secret,
    );
    world.reseed(|seed| {
        seed.clusters[0]
            .secret_manager_accesses
            .push(access.clone())
    });
    let (name, message) = failure(update(&world, &state).await);
    assert_eq!(name, "PreconditionFailed", "{message}");
    assert!(
        message.contains("No holder was sent the new key yet"),
        "{message}"
    );
    assert_eq!(world.calls("editAWSCredentials"), 0);
    world.reseed(|seed| seed.clusters[0].secret_manager_accesses.clear());

    // WHEN RollbackNewKey runs
    let result = delete(&world, "RollbackNewKey", &state).await.unwrap();

    // THEN the new key and its secret are gone; Qovery's key is untouched
    assert_eq!(result.deleted_access_key_id, new_key);
    assert!(!result.already_deleted);
    assert_eq!(result.kept_access_key_id, world.old_key);
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(
        world.key_status(&world.old_key).await.as_deref(),
        Some("Active")
    );
    assert!(all_hold(&world, &world.old_key));
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
    world.assert_no_secret_holds_a_key(&[&new_secret]).await;

    // WHEN it is called again with the same input
    let again = delete(&world, "RollbackNewKey", &state).await.unwrap();

    // THEN success, already deleted
    assert!(again.already_deleted);
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert!(all_hold(&world, &world.old_key));
}

#[tokio::test]
async fn rollback_refuses_once_any_entry_holds_the_new_key() {
    // GIVEN the PUT applied to one entry only (its answer was lost)
    let world = World::shared_key().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let new_secret = world.stored_secret(&state).await;
    world.qovery_takes(CREDS_US, &new_key, &new_secret);

    // WHEN RollbackNewKey runs
    let (name, message) = failure(delete(&world, "RollbackNewKey", &state).await);

    // THEN it is refused and the new key stays active
    assert_eq!(name, "UnsafeDelete");
    assert!(
        message.contains("cannot be rolled back") && message.contains(CREDS_US),
        "{message}"
    );
    assert_eq!(world.key_status(&new_key).await.as_deref(), Some("Active"));
    assert_eq!(world.key_ids().await.len(), 2);
    assert_eq!(world.held_by(CREDS_US).0, new_key);
}

/// Runs `step` and, the moment the fake has answered `operation` `after` more times,
/// `change` (while the step still runs): Qovery changing under a step's feet.
async fn while_running<T>(
    world: &World,
    operation: &str,
    after: usize,
    change: impl FnOnce(),
    step: impl std::future::Future<Output = T>,
) -> T {
    let target = world.calls(operation) + after;
    let watch = async {
        while world.calls(operation) < target {
            tokio::task::yield_now().await;
        }
        change();
    };
    let (output, ()) = tokio::join!(step, watch);
    output
}

#[tokio::test]
async fn rollback_turns_the_new_key_back_on_if_qovery_takes_it_meanwhile() {
    // GIVEN the new key, which Qovery does not hold yet
    let world = World::new().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let new_secret = world.stored_secret(&state).await;

    // WHEN a late PUT applies right after the rollback's first look at Qovery
    let result = while_running(
        &world,
        "listOrganizationCredentials",
        1,
        || world.qovery_takes(CREDS, &new_key, &new_secret),
        delete(&world, "RollbackNewKey", &state),
    )
    .await;

    // THEN the rollback stops and the key Qovery now holds is active again
    let (name, message) = failure(result);
    assert_eq!(name, "UnsafeDelete");
    assert!(
        message.contains("while the rollback ran") && message.contains("switched back on"),
        "{message}"
    );
    assert_eq!(world.key_status(&new_key).await.as_deref(), Some("Active"));
    assert_eq!(world.held_by(CREDS).0, new_key);
    assert!(world.moto.caller(&new_key, &new_secret).await.is_ok());

    // WHEN Qovery, back on the old key, cannot be asked after the key was switched off
    world.qovery_takes(CREDS, &world.old_key, &world.old_secret);
    let result = while_running(
        &world,
        "listOrganizationCredentials",
        1,
        || {
            world
                .fake
                .inject_fault(Fault::new("listOrganizationCredentials", 503, 1))
        },
        delete(&world, "RollbackNewKey", &state),
    )
    .await;

    // THEN nothing is deleted and the key is switched back on
    let (name, message) = failure(result);
    assert_eq!(name, "QoveryUnavailable", "{message}");
    assert!(message.contains("switched back on"), "{message}");
    assert_eq!(
        world.calls("listOrganizationCredentials"),
        2,
        "asked before and after switching the key off"
    );
    assert_eq!(world.key_status(&new_key).await.as_deref(), Some("Active"));
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn a_rollback_switches_the_new_key_off_before_asking_qovery_again() {
    // GIVEN the new key, which Qovery does not hold
    let world = World::new().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();

    // WHEN RollbackNewKey runs, held at its last look at Qovery (the second survey's
    // first call; the first survey comes before the key is touched)
    let before = world.calls("listOrganizationCredentials");
    let mut last_look = world.fake.hold("listOrganizationCredentials", 1);
    let look = async {
        tokio::time::timeout(std::time::Duration::from_secs(60), last_look.reached())
            .await
            .expect("the rollback asked Qovery a second time");
        let status = world.key_status(&new_key).await;
        last_look.release();
        status
    };
    let (result, status_at_last_look) =
        tokio::join!(delete(&world, "RollbackNewKey", &state), look);

    // THEN the key was already off when Qovery was asked: a hand-over still under way
    // cannot be answered with a key that works, so the last answer can be trusted
    assert_eq!(
        status_at_last_look.as_deref(),
        Some("Inactive"),
        "the new key was still on at the rollback's last look at Qovery"
    );
    let result = result.unwrap();
    assert_eq!(result.deleted_access_key_id, new_key);
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(world.calls("listOrganizationCredentials"), before + 2);
}

#[tokio::test]
async fn delete_key_refuses_keys_outside_the_rotation() {
    let world = World::new().await;
    let state = drained(&world, handed_over(&world).await, 0).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let request = task_input("DeleteOldKey", &value(&state), &context_of(&state));

    // The key created by this run is never retired as "old".
    let mut bad = request.clone();
    bad["old_access_key_id"] = json!(new_key);
    let (name, message) = failure(delete_key::handle(&world.deps, bad).await);
    assert_eq!(name, "UnsafeDelete");
    assert!(message.contains("Nothing was deleted"), "{message}");

    // Neither key is the user's, and Qovery holds neither: not a retry of a delete.
    let mut bad = request.clone();
    bad["old_access_key_id"] = json!("AKIANOTTHEUSERSKEY00");
    bad["new_access_key_id"] = json!("AKIANOTTHEUSERSKEY01");
    let (name, message) = failure(delete_key::handle(&world.deps, bad).await);
    assert_eq!(name, "UnsafeDelete");
    assert!(message.contains("not a key of IAM user"), "{message}");

    // Without the key to keep, nothing can be checked.
    let mut bad = request.clone();
    bad.as_object_mut().unwrap().remove("new_access_key_id");
    let (name, _) = failure(delete_key::handle(&world.deps, bad).await);
    assert_eq!(name, "InvalidInput");

    // A key IAM does not know while Qovery holds the key to keep: IAM cannot tell it from
    // a key an earlier attempt deleted, so it is reported as such, and nothing is deleted.
    let mut unknown = request.clone();
    unknown["old_access_key_id"] = json!("AKIANOTTHEUSERSKEY00");
    let result = delete_key::handle(&world.deps, unknown).await.unwrap();
    assert!(result.already_deleted);

    let mut expected = vec![world.old_key.clone(), new_key.clone()];
    expected.sort();
    assert_eq!(world.key_ids().await, expected);
    for key in world.keys().await {
        assert_eq!(key.status, "Active");
    }
    assert!(all_hold(&world, &new_key));
}

#[tokio::test]
async fn delete_key_rejects_bad_ids() {
    let world = World::new().await;
    let state = drained(&world, handed_over(&world).await, 0).await;
    let request = task_input("DeleteOldKey", &value(&state), &context_of(&state));
    for (field, bad, expected) in [
        ("mode", json!("delete_everything"), "unknown variant"),
        ("iam_user_name", json!("qovery/../admin"), "iam_user_name"),
        ("organization_id", json!("org"), "organization_id"),
        (
            "old_access_key_id",
            json!("akia-lower"),
            "old_access_key_id",
        ),
        ("new_access_key_id", json!("*"), "new_access_key_id"),
        ("credentials_id", json!(CREDS), "unknown field"),
    ] {
        let mut input = request.clone();
        input[field] = bad;
        let (name, message) = failure(delete_key::handle(&world.deps, input).await);
        assert_eq!(name, "InvalidInput", "{field}");
        assert!(message.contains(expected), "{field}: {message}");
    }
    assert_eq!(world.key_ids().await.len(), 2);
}

// ---- a whole rotation, in-process ------------------------------------------------

/// Runs every step as the state machine's happy path does, with its inputs built from
/// the ASL, and returns the final state and DeleteOldKey's result.
async fn rotate(world: &World, execution: &str) -> (RotationState, DeleteKeyResult) {
    // The test itself proves each key with STS between rotations, seconds before the
    // next one's drain ends: no idle window fits that (quarantine.rs has its own).
    let mut input = world.input();
    input["key_idle_seconds"] = json!(0);
    let state = preflight::handle(&world.deps, world.preflight_event_for(execution, input))
        .await
        .unwrap();
    let state = create(world, &state).await.unwrap();
    let state = update(world, &state).await.unwrap();
    for item in map_items(&state) {
        let done = run_iteration(world, item).await.unwrap();
        assert_eq!(done.phase, Some(Phase::Deployed), "{}", done.cluster_id);
    }
    let deleted = delete(world, "DeleteOldKey", &state).await.unwrap();
    (state, deleted)
}

#[tokio::test]
async fn a_whole_rotation_of_a_key_shared_by_two_entries_and_then_another() {
    // GIVEN "aws-prod" (production, staging) and "aws-us" (us-production, and a stopped
    // cluster) all on the user's only key
    let mut options = WorldOptions::shared_key();
    let mut stopped = SeedCluster::new(CLUSTER_D, "us-sleeping", CREDS_US);
    stopped.status = "STOPPED".into();
    options.clusters.push(stopped);
    let world = World::with(options).await;

    // WHEN a whole rotation runs
    let (state, deleted) = rotate(&world, EXECUTION).await;

    // THEN the user has only the new key, both entries hold it, and it works
    let new_key = state.new_access_key_id.clone().unwrap();
    assert_eq!(world.key_ids().await, vec![new_key.clone()]);
    assert!(all_hold(&world, &new_key));
    let (_, held_secret) = world.held_by(CREDS_US);
    assert!(world.moto.caller(&new_key, &held_secret).await.is_ok());
    assert_eq!(world.held_by(CREDS).1, held_secret);
    assert!(world
        .moto
        .caller(&world.old_key, &world.old_secret)
        .await
        .is_err());
    assert_eq!(deleted.deleted_access_key_id, world.old_key);
    // Every running cluster was redeployed once; the stopped one was left alone.
    assert_eq!(
        world.deploy_counts(),
        vec![
            (CLUSTER_A.to_string(), 1),
            (CLUSTER_B.to_string(), 1),
            (CLUSTER_C.to_string(), 1),
            (CLUSTER_D.to_string(), 0),
        ]
    );
    assert_eq!(world.cluster(CLUSTER_D).status, "STOPPED");
    assert_eq!(state.skipped_clusters.len(), 1);
    assert_eq!(state.skipped_clusters[0].id, CLUSTER_D);
    // No secret of any kind holds a secret access key.
    world.assert_no_secret_holds_a_key(&[&held_secret]).await;

    // WHEN the next rotation (another execution) runs on the new key
    let (second, deleted) = rotate(&world, EXECUTION_2).await;

    // THEN it rotates the new key away, with no clash on the key secret's name
    let newest = second.new_access_key_id.clone().unwrap();
    assert_eq!(second.old_access_key_id, new_key);
    assert_eq!(deleted.deleted_access_key_id, new_key);
    assert_eq!(world.key_ids().await, vec![newest.clone()]);
    assert!(all_hold(&world, &newest));
    assert!(second
        .key_secret_id
        .as_deref()
        .unwrap()
        .contains(&world.key_secret_name(EXECUTION_2)));
    let (_, newest_secret) = world.held_by(CREDS);
    assert!(world.moto.caller(&newest, &newest_secret).await.is_ok());
    world
        .assert_no_secret_holds_a_key(&[&held_secret, &newest_secret])
        .await;
}

// ---- the invocation deadline ---------------------------------------------------

/// Issue 6 §4: a step never starts a call it cannot finish before Lambda's deadline.
/// With 5 s left, update-qovery stops before its first call, with a retryable error,
/// and neither Qovery nor the keys change; the same input with time left then works.
#[tokio::test]
async fn update_qovery_starts_no_call_it_cannot_finish() {
    let world = World::new().await;
    let state = created(&world).await;
    let requests_before = world.fake.snapshot().requests.len();
    let soon = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let result = rotation::deadline::with_deadline(soon, update(&world, &state)).await;
    let (name, message) = failure(result);
    assert_eq!(name, "AwsUnavailable", "{message}");
    assert!(message.contains("not started"), "{message}");
    assert_eq!(
        world.fake.snapshot().requests.len(),
        requests_before,
        "Qovery was called"
    );
    assert!(
        all_hold(&world, &world.old_key),
        "the hand-over happened anyway"
    );

    // Qovery's client refuses on its own, too: a request it cannot finish is not sent.
    let token = rotation::secret::Secret::new(TOKEN);
    let error = rotation::deadline::with_deadline(
        soon,
        world.deps.qovery.list_organization_credentials(&token, ORG),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind, rotation::qovery::QoveryErrorKind::Unavailable);
    assert!(error.detail.contains("not sent"), "{}", error.detail);
    assert_eq!(
        world.fake.snapshot().requests.len(),
        requests_before,
        "Qovery was called"
    );

    let later = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let state = rotation::deadline::with_deadline(later, update(&world, &state))
        .await
        .unwrap();
    assert!(all_hold(
        &world,
        state.new_access_key_id.as_deref().unwrap()
    ));
}
