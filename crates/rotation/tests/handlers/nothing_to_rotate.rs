//! After a move to an IAM role: Qovery uses role credentials and holds no key of the
//! user. Preflight ends the run a success (`mode: nothing_to_rotate`), takes no lock
//! and changes nothing; without a role entry, the same worlds stay errors.

use crate::support::*;
use qovery_fake::{SeedCluster, SeedRegistry};
use rotation::state::{Mode, RotationState};
use rotation::steps::preflight;
use rotation::RotationError;
use serde_json::{json, Value};

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/qovery";

/// Both clusters and the mirroring registry on the role; the user still has its key,
/// which nothing in Qovery holds now.
async fn moved_to_role() -> World {
    World::with(WorldOptions {
        credentials: vec![Entry::new(CREDS, "aws-role", Holds::Role)],
        clusters: vec![
            SeedCluster::new(CLUSTER_A, "production", CREDS),
            SeedCluster::new(CLUSTER_B, "staging", CREDS),
        ],
        container_registries: vec![SeedRegistry::ecr_role(
            REGISTRY_A,
            "mirror",
            "eu-west-3",
            ROLE_ARN,
        )],
        ..Default::default()
    })
    .await
}

async fn delete_user_key(world: &World) {
    world
        .moto
        .iam()
        .delete_access_key()
        .user_name(USER)
        .access_key_id(&world.old_key)
        .send()
        .await
        .unwrap();
}

/// Deletes the (keyless) user, as the operator does after a move to a role.
async fn delete_user(world: &World) {
    let iam = world.moto.iam();
    iam.delete_user_policy()
        .user_name(USER)
        .policy_name("allow-all")
        .send()
        .await
        .unwrap();
    iam.delete_user().user_name(USER).send().await.unwrap();
}

async fn preflight_of(world: &World, input: Value) -> Result<RotationState, RotationError> {
    preflight::handle(&world.deps, world.preflight_event(input)).await
}

/// Nothing changed: no lock, no write to Qovery, the user's keys as they were.
async fn assert_nothing_changed(world: &World, keys_before: &[String]) {
    assert!(world.deps.ledger.read(USER).await.unwrap().is_none());
    let writes = world
        .fake
        .snapshot()
        .requests
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect::<Vec<_>>();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(world.key_ids().await, keys_before);
}

#[tokio::test]
async fn a_keyless_user_on_a_role_has_nothing_to_rotate_twice_alike() {
    let world = moved_to_role().await;
    delete_user_key(&world).await;

    let first = preflight_of(&world, world.input()).await.unwrap();
    assert_eq!(first.mode, Mode::NothingToRotate);
    let summary = &first.report.summary;
    for part in [
        "Qovery uses role arn:aws:iam::123456789012:role/qovery",
        "credentials aws-role",
        "production",
        "staging",
        "IAM user qovery has no access key",
        "aws iam delete-user --user-name qovery",
        "Nothing to rotate",
        "ScheduleEnabled",
    ] {
        assert!(summary.contains(part), "{part:?} not in {summary}");
    }
    assert!(first.holders.is_empty() && first.clusters.is_empty());
    assert!(!first.dry_run && first.report.audit.is_none());
    assert_nothing_changed(&world, &[]).await;

    // Run again (a lost answer): the same outcome.
    let mut second = preflight_of(&world, world.input()).await.unwrap();
    second.preflight_at = first.preflight_at.clone();
    assert_eq!(second, first);
    assert_nothing_changed(&world, &[]).await;
}

#[tokio::test]
async fn a_key_nothing_in_qovery_holds_is_named_and_left_alone() {
    let world = moved_to_role().await;
    let state = preflight_of(&world, world.input()).await.unwrap();
    assert_eq!(state.mode, Mode::NothingToRotate);
    let summary = &state.report.summary;
    assert!(
        summary.contains(&format!("IAM user qovery has {} (Active", world.old_key))
            && summary.contains("which nothing in Qovery holds"),
        "{summary}"
    );
    assert_eq!(state.report.keys.len(), 1);
    assert_nothing_changed(&world, std::slice::from_ref(&world.old_key)).await;
}

#[tokio::test]
async fn a_deleted_user_on_a_role_has_nothing_to_rotate() {
    let world = moved_to_role().await;
    delete_user_key(&world).await;
    delete_user(&world).await;

    let state = preflight_of(&world, world.input()).await.unwrap();
    assert_eq!(state.mode, Mode::NothingToRotate);
    assert!(
        state
            .report
            .summary
            .contains("IAM user qovery no longer exists"),
        "{}",
        state.report.summary
    );
    assert!(world.deps.ledger.read(USER).await.unwrap().is_none());
}

#[tokio::test]
async fn an_audit_after_a_move_to_a_role_passes_with_the_same_words() {
    let world = moved_to_role().await;
    delete_user_key(&world).await;
    let mut input = world.input();
    input["audit"] = json!(true);
    let state = preflight_of(&world, input).await.unwrap();
    assert_eq!(state.mode, Mode::NothingToRotate);
    assert!(state.dry_run && state.audit);
    let verdict = state.report.audit.clone().unwrap();
    assert_eq!(verdict, format!("Audit passed: {}", state.report.summary));
    assert!(state
        .report
        .summary
        .starts_with("Dry run. Qovery uses role"));
    assert_eq!(state.report.key_age_days, None);
}

#[tokio::test]
async fn a_credentials_id_of_the_role_or_of_a_deleted_entry_is_mentioned_not_refused() {
    let world = moved_to_role().await;
    delete_user_key(&world).await;
    for (id, says) in [
        (CREDS, "names role credentials, which need no rotation"),
        (CREDS_OTHER, "names no credentials of the organization"),
    ] {
        let mut input = world.input();
        input["credentials_id"] = json!(id);
        let state = preflight_of(&world, input).await.unwrap();
        assert_eq!(state.mode, Mode::NothingToRotate, "{id}");
        let summary = &state.report.summary;
        assert!(
            summary.contains(&format!("credentials_id {id} {says}"))
                && summary.contains("set QoveryCredentialsId to empty"),
            "{summary}"
        );
    }
}

#[tokio::test]
async fn without_role_credentials_a_keyless_or_deleted_user_is_still_an_error() {
    // Static credentials holding another key: a wrong user, not a finished move.
    let world = World::with(WorldOptions {
        credentials: vec![Entry::new(
            CREDS,
            "aws-prod",
            Holds::Key("AKIAOTHERUSERKEY0001"),
        )],
        ..Default::default()
    })
    .await;
    delete_user_key(&world).await;
    let error = preflight_of(&world, world.input()).await.unwrap_err();
    assert!(
        matches!(&error, RotationError::PreconditionFailed(m) if m.contains("has 0")),
        "{error:?}"
    );
    delete_user(&world).await;
    let error = preflight_of(&world, world.input()).await.unwrap_err();
    assert!(
        format!("{error:?}").contains("IAM user qovery does not exist"),
        "{error:?}"
    );
}

#[tokio::test]
async fn named_static_credentials_are_judged_as_a_rotation_even_beside_a_role() {
    let world = World::with(WorldOptions {
        credentials: vec![
            Entry::new(CREDS, "aws-role", Holds::Role),
            Entry::new(CREDS_OTHER, "aws-other", Holds::Key("AKIAOTHERUSERKEY0001")),
        ],
        clusters: vec![SeedCluster::new(CLUSTER_A, "production", CREDS)],
        ..Default::default()
    })
    .await;
    delete_user_key(&world).await;
    let mut input = world.input();
    input["credentials_id"] = json!(CREDS_OTHER);
    let error = preflight_of(&world, input).await.unwrap_err();
    assert!(
        matches!(&error, RotationError::PreconditionFailed(m) if m.contains("AKIAOTHERUSERKEY0001")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_rotation_beside_role_credentials_still_rotates() {
    // The user's key is held by static credentials, another entry uses a role.
    let world = World::with(WorldOptions {
        credentials: vec![
            Entry::new(CREDS, "aws-prod", Holds::UserKey),
            Entry::new(CREDS_OTHER, "aws-role", Holds::Role),
        ],
        ..Default::default()
    })
    .await;
    let state = preflight_of(&world, world.input()).await.unwrap();
    assert_eq!(state.mode, Mode::Rotate);
    // Written even when it is the default: WhichWork's Choice on a missing field fails.
    assert_eq!(value(&state)["mode"], "rotate");
    assert_eq!(state.old_access_key_id, world.old_key);
    assert_eq!(world.lock_holder().await, EXECUTION);
}

#[test]
fn which_work_ends_nothing_to_rotate_in_a_success_and_rotates_otherwise() {
    assert_eq!(asl_state("IsDryRun")["Default"], "WhichWork");
    let which = asl_state("WhichWork");
    assert_eq!(
        which["Choices"][0],
        json!({"Variable": "$.mode", "StringEquals": Mode::NothingToRotate,
                "Next": "NothingToRotate"})
    );
    assert_eq!(which["Default"], "WhatToDo");
    assert_eq!(asl_state("NothingToRotate")["Type"], "Succeed");
}
