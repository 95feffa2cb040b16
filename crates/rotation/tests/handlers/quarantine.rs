//! A holder nobody told us about never loses its key: at the drain's end the old key
//! must be idle per IAM (moto records a key's last use on every signed call), then it
//! is switched off for a quarantine, and deleted only if no cluster of the rotation
//! failed meanwhile. Each step handler against moto and the fake Qovery.

use crate::support::*;
use rotation::state::RotationState;

async fn use_old_key(world: &World) {
    world
        .moto
        .caller(&world.old_key, &world.old_secret)
        .await
        .expect("the old key still works");
}

async fn both_keys_active(world: &World, new_key: &str) {
    assert_eq!(
        world.key_status(&world.old_key).await.as_deref(),
        Some("Active")
    );
    assert_eq!(world.key_status(new_key).await.as_deref(), Some("Active"));
}

fn new_key(state: &RotationState) -> String {
    state.new_access_key_id.clone().unwrap()
}

#[tokio::test]
async fn an_old_key_used_within_the_idle_window_is_kept_active_with_key_still_in_use() {
    // GIVEN every holder on the new key, and something still calling AWS with the old one
    let world = World::new().await;
    let state = handed_over(&world).await;
    use_old_key(&world).await;
    let record = world.deps.ledger.read(USER).await.unwrap();

    // WHEN the drain ends (twice: a repeat decides the same)
    for _ in 0..2 {
        let (name, message) = failure(quarantine(&world, &state).await);

        // THEN the run stops, says when and where the key was used and what to do
        assert_eq!(name, "KeyStillInUse");
        for needle in [
            "sts",
            "us-east-1",
            "another Qovery organization",
            "start a new run",
            &world.old_key,
        ] {
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }
    // AND nothing changed: both keys active, the record as it was
    both_keys_active(&world, &new_key(&state)).await;
    assert_eq!(world.deps.ledger.read(USER).await.unwrap(), record);
    // DeleteOldKey, reached some other way, refuses the same
    let (name, _) = failure(
        delete(
            &world,
            "DeleteOldKey",
            &RotationState {
                quarantine: Some(rotation::state::QuarantineResult {
                    old_access_key_id: world.old_key.clone(),
                    last_used: None,
                    switched_off: false,
                    already_off: false,
                    already_deleted: false,
                    until: state.preflight_at.clone(),
                    summary: String::new(),
                }),
                ..state.clone()
            },
        )
        .await,
    );
    assert_eq!(name, "KeyStillInUse");
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn an_idle_window_of_zero_does_not_check_the_last_use() {
    let world = World::new().await;
    let mut state = handed_over(&world).await;
    use_old_key(&world).await;
    state.key_idle_seconds = 0;
    let deleted = delete(&world, "DeleteOldKey", &state).await.unwrap();
    assert_eq!(deleted.deleted_access_key_id, world.old_key);
}

#[tokio::test]
async fn the_old_key_is_switched_off_for_the_quarantine_then_deleted_and_a_repeat_is_safe() {
    // GIVEN a rotation at the drain's end, the old key idle
    let world = World::new().await;
    let state = handed_over(&world).await;

    // WHEN QuarantineOldKey runs (twice: the first answer lost)
    let first = quarantine(&world, &state).await.unwrap();
    let again = quarantine(&world, &state).await.unwrap();

    // THEN the old key is off, the record says so, and the repeat found it off
    assert!(first.switched_off && !first.already_off, "{first:?}");
    assert!(again.already_off && !again.switched_off, "{again:?}");
    assert_eq!(
        world.key_status(&world.old_key).await.as_deref(),
        Some("Inactive")
    );
    assert_eq!(
        world.deps.ledger.read(USER).await.unwrap().unwrap().phase,
        rotation::ledger::LedgerPhase::Quarantined
    );
    assert!(first.until > state.preflight_at, "{first:?}");

    // WHEN the quarantine ends with every cluster healthy
    let state = RotationState {
        quarantine: Some(first),
        ..state
    };
    let deleted = delete(&world, "DeleteOldKey", &state).await.unwrap();

    // THEN the old key is gone, and the report gives its last use, before and after
    assert_eq!(world.key_ids().await, vec![new_key(&state)]);
    let report = deleted.report.unwrap();
    assert_eq!(report.quarantine_seconds, state.quarantine_seconds);
    assert_eq!(
        report.old_key_last_used.at_drain_end,
        report.old_key_last_used.before_delete
    );
}

#[tokio::test]
async fn a_cluster_failing_during_the_quarantine_switches_the_old_key_back_on_and_fails() {
    // GIVEN the old key switched off for the quarantine
    let world = World::new().await;
    let state = handed_over(&world).await;
    let quarantined = quarantine(&world, &state).await.unwrap();
    assert!(quarantined.switched_off);
    let state = RotationState {
        quarantine: Some(quarantined),
        ..state
    };

    // WHEN a cluster of the rotation falls into INVALID_CREDENTIALS meanwhile
    world.reseed(|seed| {
        let production = seed
            .clusters
            .iter_mut()
            .find(|c| c.id == CLUSTER_A)
            .unwrap();
        production.status = "INVALID_CREDENTIALS".into();
    });
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);

    // THEN the old key is on again, nothing is deleted, and the message says why
    assert_eq!(name, "KeyStillInUse");
    assert!(
        message.contains("INVALID_CREDENTIALS") && message.contains("switched back on"),
        "{message}"
    );
    // It names the cluster that failed, and only that one.
    let failed = format!("production ({CLUSTER_A}) is INVALID_CREDENTIALS");
    assert!(message.contains(&failed), "{message}");
    assert!(!message.contains("staging"), "{message}");
    both_keys_active(&world, &new_key(&state)).await;
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn a_quarantine_of_zero_switches_nothing_off_and_deletes_at_once() {
    let world = World::new().await;
    let state = drained(&world, handed_over(&world).await, 0).await;
    let result = state.quarantine.clone().unwrap();
    assert!(!result.switched_off && !result.already_off, "{result:?}");
    assert_eq!(
        world.key_status(&world.old_key).await.as_deref(),
        Some("Active")
    );
    delete(&world, "DeleteOldKey", &state).await.unwrap();
    assert_eq!(world.key_ids().await, vec![new_key(&state)]);
}

#[tokio::test]
async fn the_dry_run_reports_the_keys_last_use() {
    let world = World::new().await;
    use_old_key(&world).await;
    let mut input = world.input();
    input["dry_run"] = serde_json::json!(true);
    let state = rotation::steps::preflight::handle(&world.deps, world.preflight_event(input))
        .await
        .unwrap();
    let used = state
        .report
        .key_last_used
        .expect("the last use is reported");
    assert_eq!(
        (used.service.as_str(), used.region.as_str()),
        ("sts", "us-east-1")
    );
}
