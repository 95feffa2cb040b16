//! The lock and the ledger: a run that ended (stopped, failed) is finished or undone by
//! the next one; keys are deleted only with the record's proof; a retried rollback and
//! the old key's delete are safe. Each step handler against moto (DynamoDB included)
//! and the fake Qovery. `EXECUTION` never exists in moto's Step Functions, so once a
//! second execution looks, the first has ended.

use crate::support::*;
use qovery_fake::{Fault, SeedRegistry};
use rotation::ledger::LedgerPhase;
use rotation::state::{Recovery, RotationState};
use rotation::steps::preflight;

async fn preflight_of_the_next_run(world: &World) -> RotationState {
    preflight::handle(
        &world.deps,
        world.preflight_event_for(EXECUTION_2, world.input()),
    )
    .await
    .unwrap()
}

async fn phase(world: &World) -> Option<LedgerPhase> {
    world.deps.ledger.read(USER).await.unwrap().map(|r| r.phase)
}

#[tokio::test]
async fn a_run_stopped_after_create_key_is_undone_by_the_next_which_then_rotates() {
    // GIVEN a run that ended right after CreateKey: two keys, no holder has the new one
    let world = World::new().await;
    let ended = created(&world).await;
    let abandoned = ended.new_access_key_id.clone().unwrap();
    assert_eq!(phase(&world).await, Some(LedgerPhase::KeyCreated));

    // WHEN the next run preflights (a dry run first: it says, and changes nothing)
    let mut dry = world.input();
    dry["dry_run"] = serde_json::json!(true);
    let report = preflight::handle(&world.deps, world.preflight_event_for(EXECUTION_2, dry))
        .await
        .unwrap();
    assert_eq!(report.recovery, Recovery::Undo);
    assert!(
        report.report.recovery.contains(&abandoned),
        "{:?}",
        report.report
    );
    assert_eq!(world.lock_holder().await, EXECUTION);
    let state = preflight_of_the_next_run(&world).await;

    // THEN it plans an undo of that key, and holds the lock
    assert_eq!(state.recovery, Recovery::Undo);
    assert_eq!(state.old_access_key_id, world.old_key);
    assert_eq!(
        state.undo.as_ref().unwrap().new_access_key_id,
        abandoned.clone()
    );
    assert_eq!(phase(&world).await, Some(LedgerPhase::Undoing));
    // A retry of this preflight (its answer lost) decides the same.
    let retried = preflight_of_the_next_run(&world).await;
    assert_eq!(
        (retried.recovery, &retried.undo),
        (state.recovery, &state.undo)
    );
    assert_eq!(retried.report.recovery, state.report.recovery);

    // WHEN UndoPrevious runs (twice: the first answer lost)
    delete(&world, "UndoPrevious", &state).await.unwrap();
    let again = delete(&world, "UndoPrevious", &state).await.unwrap();
    assert!(again.already_deleted);

    // THEN the abandoned key and its secret are gone; the lock stays with this run
    assert_eq!(world.key_ids().await, vec![world.old_key.clone()]);
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    assert_eq!(record.execution_id, EXECUTION_2);
    assert_eq!(record.phase, LedgerPhase::Planned);
    // Nothing of the ended run is left in it: its key, its secret, the take-over.
    assert_eq!(record.new_access_key_id, None);
    assert_eq!(record.key_secret_id, None);
    assert_eq!(record.new_key_version_id, None);
    assert_eq!(record.took_over_from, None);

    // AND the rotation goes on from the start, to the end, and releases the lock
    let state = create(&world, &state).await.unwrap();
    let state = update(&world, &state).await.unwrap();
    let new_key = state.new_access_key_id.clone().unwrap();
    delete(&world, "DeleteOldKey", &state).await.unwrap();
    assert_eq!(world.key_ids().await, vec![new_key.clone()]);
    assert!(world
        .every_holder()
        .iter()
        .all(|(_, _, key)| *key == new_key));
    assert_eq!(world.deps.ledger.read(USER).await.unwrap(), None);
}

#[tokio::test]
async fn a_held_new_key_that_is_switched_off_is_not_finished_but_refused() {
    // GIVEN a run that handed the new key over, then ended; someone switched that key off
    let world = World::new().await;
    let ended = handed_over(&world).await;
    let new_key = ended.new_access_key_id.clone().unwrap();
    world
        .moto
        .iam()
        .update_access_key()
        .user_name(USER)
        .access_key_id(&new_key)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();

    // WHEN the next run preflights
    let (name, message) = failure(
        preflight::handle(
            &world.deps,
            world.preflight_event_for(EXECUTION_2, world.input()),
        )
        .await,
    );

    // THEN it refuses to finish on a key Qovery cannot use, says how to switch it on,
    // and changes nothing (the lock stays with the ended run)
    assert_eq!(name, "PreconditionFailed");
    assert!(
        message.contains("is not Active: switch it on first"),
        "{message}"
    );
    assert_eq!(world.lock_holder().await, EXECUTION);
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn a_run_stopped_mid_hand_over_is_finished_by_the_next() {
    // GIVEN a run that gave the credentials the new key, then ended on a refused
    // registry PUT (HandOverUnfinished): the key secret is kept
    let world = World::with(WorldOptions {
        container_registries: vec![SeedRegistry::ecr(
            REGISTRY_A,
            "registry-production",
            "eu-west-3",
            USER_KEY,
            USER_KEY,
        )
        .mirroring(CLUSTER_A)],
        ..Default::default()
    })
    .await;
    let ended = created(&world).await;
    let new_key = ended.new_access_key_id.clone().unwrap();
    world
        .fake
        .inject_fault(Fault::new("editContainerRegistry", 400, 1));
    let (name, _) = failure(update(&world, &ended).await);
    assert_eq!(name, "HandOverIncomplete");
    assert_eq!(phase(&world).await, Some(LedgerPhase::HandingOver));
    assert_eq!(world.held_by(CREDS).0, new_key);
    assert_eq!(world.registry_key(REGISTRY_A).0, world.old_key);

    // WHEN the next run preflights
    let state = preflight_of_the_next_run(&world).await;

    // THEN it finishes: same keys, every holder of either key in the plan
    assert_eq!(state.recovery, Recovery::Finish);
    // The record is this run's now, and still says which run started the rotation.
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    assert_eq!(record.execution_id, EXECUTION_2);
    assert_eq!(record.took_over_from.as_deref(), Some(EXECUTION));
    assert_eq!(state.old_access_key_id, world.old_key);
    assert_eq!(state.new_access_key_id.as_deref(), Some(new_key.as_str()));
    assert_eq!(state.holders.len(), 2);
    assert_eq!(state.clusters.len(), 2);
    let retried = preflight_of_the_next_run(&world).await;
    assert_eq!(
        (retried.recovery, retried.new_access_key_id.clone()),
        (Recovery::Finish, Some(new_key.clone()))
    );

    // WHEN FinishHandOver runs, with the kept secret
    let state = update(&world, &state).await.unwrap();

    // THEN the registry holds the new key, the secret is gone, and the old key goes
    // once the clusters are redeployed
    assert_eq!(world.registry_key(REGISTRY_A).0, new_key);
    assert_eq!(
        world.calls("editAWSCredentials"),
        1,
        "only the first run's PUT"
    );
    assert_eq!(world.secret_names().await, vec![TOKEN_SECRET.to_string()]);
    assert_eq!(phase(&world).await, Some(LedgerPhase::HandedOver));
    for item in map_items(&state) {
        run_iteration(&world, item).await.unwrap();
    }
    let result = delete(&world, "DeleteOldKey", &state).await.unwrap();
    assert_eq!(result.deleted_access_key_id, world.old_key);
    assert_eq!(world.key_ids().await, vec![new_key]);
    assert_eq!(world.deps.ledger.read(USER).await.unwrap(), None);
}

#[tokio::test]
async fn finishing_a_run_whose_clusters_deployed_since_the_hand_over_redeploys_only_the_others() {
    // GIVEN a run that handed over and redeployed production, then its staging canary...
    // here: ended after production deployed, before staging
    let world = World::new().await;
    let ended = handed_over(&world).await;
    run_iteration(&world, map_item(&ended, CLUSTER_A))
        .await
        .unwrap();
    let deploys_before = world.deploy_counts();

    // WHEN the next run preflights, and redeploys what it plans
    let state = preflight_of_the_next_run(&world).await;
    assert_eq!(state.recovery, Recovery::Finish);
    let state = update(&world, &state).await.unwrap();
    // The drain counts from the first run's hand-over.
    assert_eq!(state.qovery_updated_at, ended.qovery_updated_at);
    for item in map_items(&state) {
        run_iteration(&world, item).await.unwrap();
    }

    // THEN production, deployed since the hand-over, is followed, not redeployed;
    // staging is redeployed once
    let after = world.deploy_counts();
    let count =
        |counts: &[(String, u32)], id: &str| counts.iter().find(|(c, _)| c == id).unwrap().1;
    assert_eq!(count(&after, CLUSTER_A), count(&deploys_before, CLUSTER_A));
    assert_eq!(
        count(&after, CLUSTER_B),
        count(&deploys_before, CLUSTER_B) + 1
    );
}

#[tokio::test]
async fn a_third_key_the_record_cannot_explain_is_refused_and_nothing_changes() {
    // GIVEN a run that ended after CreateKey, and then someone made another key
    let world = World::new().await;
    let ended = created(&world).await;
    world
        .moto
        .iam()
        .delete_access_key()
        .user_name(USER)
        .access_key_id(ended.new_access_key_id.clone().unwrap())
        .send()
        .await
        .unwrap();
    let theirs = world.key_made_by_someone_else().await;
    let before = world.key_ids().await;

    // WHEN the next run preflights
    let (name, message) = failure(
        preflight::handle(
            &world.deps,
            world.preflight_event_for(EXECUTION_2, world.input()),
        )
        .await,
    );

    // THEN it refuses, naming the key, and changes nothing (the lock included)
    assert_eq!(name, "PreconditionFailed");
    assert!(
        message.contains(&theirs) && message.contains("Nothing was changed"),
        "{message}"
    );
    assert_eq!(world.key_ids().await, before);
    assert_eq!(world.lock_holder().await, EXECUTION);
}

#[tokio::test]
async fn a_retried_rollback_that_finds_its_key_switched_off_and_held_switches_it_back_on() {
    // GIVEN a rollback's first attempt switched the new key off and then lost its way;
    // meanwhile a late PUT gave Qovery the key
    let world = World::new().await;
    let state = created(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let new_secret = world.stored_secret(&state).await;
    world
        .moto
        .iam()
        .update_access_key()
        .user_name(USER)
        .access_key_id(&new_key)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    world.qovery_takes(CREDS, &new_key, &new_secret);

    // WHEN the rollback is retried
    let (name, message) = failure(delete(&world, "RollbackNewKey", &state).await);

    // THEN it refuses, and the key Qovery holds is Active again
    assert_eq!(name, "UnsafeDelete");
    assert!(message.contains("switched back on"), "{message}");
    assert_eq!(world.key_status(&new_key).await.as_deref(), Some("Active"));
    assert!(world.moto.caller(&new_key, &new_secret).await.is_ok());
}

#[tokio::test]
async fn delete_old_key_refuses_while_the_kept_key_is_inactive_or_a_holder_lacks_it() {
    // GIVEN the hand-over is done
    let world = World::new().await;
    let state = handed_over(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();
    let set = |status: aws_sdk_iam::types::StatusType| {
        let iam = world.moto.iam();
        let key = new_key.clone();
        async move {
            iam.update_access_key()
                .user_name(USER)
                .access_key_id(key)
                .status(status)
                .send()
                .await
                .unwrap();
        }
    };

    // WHEN the kept key is Inactive
    set(aws_sdk_iam::types::StatusType::Inactive).await;
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);
    assert_eq!(name, "UnsafeDelete");
    assert!(message.contains("not Active"), "{message}");
    assert_eq!(world.key_ids().await.len(), 2);
    set(aws_sdk_iam::types::StatusType::Active).await;

    // WHEN a holder of the rotation no longer holds the kept key (it is gone)
    world.reseed(|seed| {
        seed.credentials[0].access_key_id = "AKIAELSEWHERE0000001".into();
    });
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);
    assert_eq!(name, "UnsafeDelete");
    assert!(
        message.contains("lacking: credentials aws-prod"),
        "{message}"
    );
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn delete_old_key_refuses_while_one_holder_of_two_lacks_the_kept_key() {
    // GIVEN the hand-over of a key two credentials entries hold is done
    let world = World::shared_key().await;
    let state = handed_over(&world).await;

    // WHEN one entry holds the kept key and the other another key (edited by hand): not
    // the old key, so only the check that every holder holds the kept key can see it
    world.reseed(|seed| {
        let us = seed.credentials.iter_mut().find(|c| c.id == CREDS_US);
        us.unwrap().access_key_id = "AKIAELSEWHERE0000001".into();
    });
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);

    // THEN it refuses, naming the entry that lacks it, and both keys stay
    assert_eq!(name, "UnsafeDelete");
    assert!(message.contains("lacking: credentials aws-us"), "{message}");
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn a_step_of_an_execution_that_no_longer_holds_the_lock_changes_nothing() {
    // GIVEN the hand-over is done by the execution that holds the lock
    let world = World::new().await;
    let state = handed_over(&world).await;
    let new_key = state.new_access_key_id.clone().unwrap();

    // WHEN a step of another execution (a stopped one's last Lambda, say) runs with
    // that state: delete the old key, or roll the new one back
    for task in ["DeleteOldKey", "RollbackNewKey"] {
        let mut other = state.clone();
        other.execution_id = EXECUTION_2.to_string();
        let (name, message) = failure(delete(&world, task, &other).await);

        // THEN it is refused, naming the holder, and both keys stay
        assert_eq!(name, "RotationInProgress", "{task}: {message}");
        assert!(message.contains(EXECUTION), "{message}");
        let keys = world.key_ids().await;
        assert!(keys.contains(&world.old_key) && keys.contains(&new_key));
    }
}

#[tokio::test]
async fn delete_key_deletes_only_what_the_record_names() {
    // GIVEN the hand-over is done, and the record no longer names the old key as this
    // rotation's (another rotation's record, say)
    let world = World::new().await;
    let state = handed_over(&world).await;
    let record = world.deps.ledger.read(USER).await.unwrap().unwrap();
    world
        .deps
        .ledger
        .write(&rotation::ledger::Record {
            old_access_key_id: "AKIASOMEOTHERKEY0001".into(),
            ..record
        })
        .await
        .unwrap();

    // WHEN DeleteOldKey runs
    let (name, message) = failure(delete(&world, "DeleteOldKey", &state).await);

    // THEN it refuses: no proof
    assert_eq!(name, "UnsafeDelete");
    assert!(message.contains("does not name it"), "{message}");
    assert_eq!(world.key_ids().await.len(), 2);
}

#[tokio::test]
async fn a_holder_that_takes_the_old_key_once_the_secret_is_gone_is_named_with_what_to_do() {
    // GIVEN a run that handed over (the key secret deleted) and ended; then a registry
    // took the old key
    let world = World::new().await;
    let ended = handed_over(&world).await;
    world.fake.put_container_registry(SeedRegistry::ecr(
        REGISTRY_A,
        "registry-late",
        "eu-west-3",
        &world.old_key,
        &world.old_secret,
    ));
    let state = preflight_of_the_next_run(&world).await;
    assert_eq!(state.recovery, Recovery::Finish);

    // WHEN the next run's FinishHandOver runs
    let (name, message) = failure(update(&world, &state).await);

    // THEN it says the secret is gone, which holder lacks the key, and what to do;
    // nothing is deleted
    assert_eq!(name, "HandOverIncomplete");
    for needle in [
        "no longer holds the new key",
        "container registry registry-late",
        "Point that holder at the new key by hand",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert_eq!(world.key_ids().await.len(), 2);
    assert_eq!(
        ended.new_access_key_id.as_deref(),
        state.new_access_key_id.as_deref()
    );
}
