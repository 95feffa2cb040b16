//! A secret never appears in a step's output, a log line or an error: run a whole
//! rotation and several failures in-process, with logs at `trace`, and grep everything.

// Its own binary: it installs a tracing subscriber, and tracing caches per process
// whether anyone listens at each call site, which other tests running at the same time
// would decide.
#[allow(dead_code)]
#[path = "handlers/support.rs"]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use qovery_fake::Fault;
use rotation::state::{ClusterDeployment, Phase, RotationState};
use rotation::steps::{
    check_status, create_key, delete_key, deploy_cluster, preflight, update_qovery,
};
use serde_json::{json, Value};
use support::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn no_secret_in_outputs_logs_or_errors() {
    let logs = Captured::default();
    let writer = logs.clone();
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish()
        .with(rotation::lambda::log_filter("trace"));
    let _guard = tracing::subscriber::set_default(subscriber);

    let world = World::new().await;
    let mut recorded: Vec<String> = Vec::new();
    let mut record = |value: &Value| recorded.push(value.to_string());

    // The whole rotation, as the state machine would run it.
    let state = preflight::handle(&world.deps, world.preflight_event(world.input()))
        .await
        .unwrap();
    let state = create_key::handle(&world.deps, serde_json::to_value(state).unwrap())
        .await
        .unwrap();
    record(&serde_json::to_value(&state).unwrap());
    // Read now: update-qovery deletes the key secret once Qovery holds the key.
    let new_secret = world.stored_secret(&state).await;
    // A failed hand-over first, whose error page quotes the request (its error is
    // recorded), then the retry that succeeds.
    world
        .fake
        .inject_fault(Fault::new("editAWSCredentials", 400, 1).echoing_request());
    let hand_over = task_input(
        "UpdateQovery",
        &serde_json::to_value(&state).unwrap(),
        &json!({}),
    );
    let rejected = update_qovery::handle(&world.deps, hand_over.clone())
        .await
        .unwrap_err();
    assert_eq!(rejected.name(), "HandOverIncomplete", "{rejected}");
    record(&json!(rejected.message()));
    let state: RotationState =
        serde_json::from_value(update_qovery::handle(&world.deps, hand_over).await.unwrap())
            .unwrap();
    record(&serde_json::to_value(&state).unwrap());
    for item in map_items(&state) {
        let mut deployment: ClusterDeployment =
            deploy_cluster::handle(&world.deps, item).await.unwrap();
        while deployment.phase != Some(Phase::Deployed) {
            record(&serde_json::to_value(&deployment).unwrap());
            deployment =
                check_status::handle(&world.deps, serde_json::to_value(&deployment).unwrap())
                    .await
                    .unwrap();
        }
    }
    let mut state = state;
    let quarantined = quarantine(&world, &state).await.unwrap();
    record(&serde_json::to_value(&quarantined).unwrap());
    state.quarantine = Some(quarantined);
    let request = task_input(
        "DeleteOldKey",
        &serde_json::to_value(&state).unwrap(),
        &context_of(&state),
    );
    record(
        &serde_json::to_value(
            delete_key::handle(&world.deps, request.clone())
                .await
                .unwrap(),
        )
        .unwrap(),
    );
    // A retry after the fact (already deleted), and a failure: their outputs too.
    record(&serde_json::to_value(delete_key::handle(&world.deps, request).await.unwrap()).unwrap());
    world
        .fake
        .inject_fault(Fault::new("listOrganizationCredentials", 401, 1));
    let unauthorized = preflight::handle(&world.deps, world.preflight_event(world.input()))
        .await
        .unwrap_err();
    assert_eq!(unauthorized.name(), "QoveryUnauthorized");
    record(&json!(unauthorized.message()));

    let (held, held_secret) = world.held_by(CREDS);
    assert_eq!(
        held_secret, new_secret,
        "sanity: Qovery holds the new secret"
    );
    assert_eq!(Some(held), state.new_access_key_id);
    let logs = logs.text();
    assert!(
        logs.contains("created access key"),
        "the logs were captured"
    );
    assert!(recorded.len() > 5);
    assert_eq!(
        world.fake.snapshot().received_secrets,
        std::slice::from_ref(&new_secret),
        "sanity: both PUTs carried the new secret"
    );
    for (what, secret) in [
        ("new secret key", new_secret.as_str()),
        ("old secret key", world.old_secret.as_str()),
        ("token", TOKEN),
    ] {
        for (i, text) in recorded.iter().enumerate() {
            assert_no_piece(secret, text, &format!("{what}, in recorded output #{i}"));
        }
        assert_no_piece(secret, &logs, &format!("{what}, in the logs"));
    }
}
