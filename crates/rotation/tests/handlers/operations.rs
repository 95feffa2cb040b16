//! Operating it: the daily audit (read-only, fails when a person must look), the
//! redeploy waves update-qovery plans, and the success report of a finished rotation.
//! Each step handler against moto and the fake Qovery. `EXECUTION` never exists in
//! moto's Step Functions, so once a second execution looks, the first has ended.

use crate::support::*;
use rotation::state::RotationState;
use rotation::steps::preflight;
use serde_json::json;

async fn audit(
    world: &World,
    execution: &str,
    max_days: u64,
) -> Result<RotationState, rotation::RotationError> {
    let mut input = world.input();
    input["audit"] = json!(true);
    input["max_key_age_days"] = json!(max_days);
    preflight::handle(&world.deps, world.preflight_event_for(execution, input)).await
}

#[tokio::test]
async fn an_audit_of_a_fresh_key_passes_states_its_age_and_takes_no_lock() {
    let world = World::new().await;
    let keys_before = world.keys().await;

    let state = audit(&world, EXECUTION, 45).await.unwrap();

    assert!(state.audit && state.dry_run);
    assert_eq!(state.report.key_age_days, Some(0));
    let verdict = state.report.audit.clone().unwrap();
    assert!(
        verdict.contains("Audit passed") && verdict.contains("0 day(s) old"),
        "{verdict}"
    );
    // Read-only: no lock, no PUT, no deploy, the same keys.
    assert_eq!(world.deps.ledger.read(USER).await.unwrap(), None);
    assert_eq!(world.keys().await, keys_before);
    assert!(world.deploy_counts().iter().all(|(_, n)| *n == 0));
}

#[tokio::test]
async fn an_audit_fails_with_rotation_unfinished_when_an_ended_run_left_one_and_changes_nothing() {
    // GIVEN a run that ended right after CreateKey
    let world = World::new().await;
    created(&world).await;
    let record = world.deps.ledger.read(USER).await.unwrap();
    let keys = world.keys().await;

    // WHEN the audit looks (twice: a repeated invocation decides the same)
    for _ in 0..2 {
        let (name, message) = failure(audit(&world, EXECUTION_2, 45).await);
        // THEN a person must look, and the audit changed nothing
        assert_eq!(name, "RotationUnfinished");
        assert!(
            message.contains(EXECUTION) && message.contains("changed nothing"),
            "{message}"
        );
    }
    assert_eq!(world.deps.ledger.read(USER).await.unwrap(), record);
    assert_eq!(world.keys().await, keys);
}

#[tokio::test]
async fn an_audit_passes_while_a_rotation_runs() {
    // GIVEN a rotation holding the lock whose execution is running (per moto)
    let world = World::new().await;
    let running = world.running_execution().await;
    preflight::handle(
        &world.deps,
        world.preflight_event_for(&running, world.input()),
    )
    .await
    .unwrap();

    let state = audit(&world, EXECUTION_2, 45).await.unwrap();

    assert!(state.report.audit.unwrap().contains("being rotated"));
    assert_eq!(world.lock_holder().await, running);
}

#[tokio::test]
async fn update_qovery_plans_the_canary_alone_then_waves_of_the_concurrency() {
    let world = World::with(WorldOptions::shared_key()).await;
    let mut input = world.input();
    input["deploy_concurrency"] = json!(2);
    let state = preflight::handle(&world.deps, world.preflight_event(input))
        .await
        .unwrap();
    assert_eq!(state.deploy_concurrency, 2);
    let state = create(&world, &state).await.unwrap();
    let state = update(&world, &state).await.unwrap();

    let planned: Vec<Vec<&str>> = state
        .deploy_waves
        .iter()
        .map(|wave| wave.iter().map(|c| c.id.as_str()).collect())
        .collect();
    let order: Vec<&str> = state.clusters.iter().map(|c| c.id.as_str()).collect();
    assert!(order.len() >= 3, "{order:?}");
    assert_eq!(planned[0], vec![order[0]], "the canary redeploys alone");
    assert_eq!(planned.concat(), order, "every cluster once, in order");
    assert!(planned[1..].iter().all(|w| w.len() <= 2), "{planned:?}");
    // What the Map iterations get: every cluster, with its hand-over baseline.
    let items = map_items(&state);
    assert_eq!(items.len(), order.len());
    assert!(
        items.iter().all(|i| !i["baseline_status"].is_null()),
        "{items:?}"
    );
}

#[tokio::test]
async fn retiring_the_old_key_reports_the_rotation_and_a_retry_reports_the_same() {
    let world = World::new().await;
    let state = handed_over(&world).await;
    let old = world.old_key.clone();
    let new = state.new_access_key_id.clone().unwrap();

    let first = delete(&world, "DeleteOldKey", &state).await.unwrap();
    let again = delete(&world, "DeleteOldKey", &state).await.unwrap();

    for result in [&first, &again] {
        let report = result.report.as_ref().expect("a success report");
        assert_eq!(
            report.subject,
            format!("Qovery key rotated: IAM user {USER}")
        );
        assert_eq!(
            (
                report.old_access_key_id.as_str(),
                report.new_access_key_id.as_str()
            ),
            (old.as_str(), new.as_str())
        );
        assert_eq!(report.holders_changed.len(), state.holders.len());
        assert_eq!(report.drain.seconds, state.drain_seconds);
        assert_eq!(report.drain.from, state.qovery_updated_at);
        assert!(
            report.summary.contains(&new) && report.summary.contains("deleted"),
            "{}",
            report.summary
        );
        let text = serde_json::to_string(report).unwrap();
        assert!(leaked_piece(&world.old_secret, &text).is_none());
    }
    assert!(again.already_deleted);
    // A rollback reports nothing: only a finished rotation does.
    assert!(first.mode == rotation::state::DeleteMode::RetireOldKey);
}
