//! The state machine and the code agree: every error the ASL matches is one the code
//! can produce, every retryable error is retried, and the Choice states compare the
//! strings the code writes.

use std::collections::BTreeSet;

use rotation::state::Phase;
use rotation::RotationError;
use serde_json::Value;

/// Errors Step Functions itself raises for a Lambda task.
const PLATFORM_ERRORS: [&str; 5] = [
    "States.ALL",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

fn asl() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../statemachine/rotation.asl.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every (state name, field, error name) under `Retry` or `Catch`, at any depth.
fn matched_errors(value: &Value, state: &str, out: &mut Vec<(String, String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "Retry" || key == "Catch" {
                    for rule in child.as_array().unwrap() {
                        for name in rule["ErrorEquals"].as_array().unwrap() {
                            out.push((
                                state.to_string(),
                                key.clone(),
                                name.as_str().unwrap().to_string(),
                            ));
                        }
                    }
                } else if let Some(states) = child.as_object().filter(|_| key == "States") {
                    for (name, body) in states {
                        matched_errors(body, name, out);
                    }
                } else {
                    matched_errors(child, state, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| matched_errors(i, state, out)),
        _ => {}
    }
}

#[test]
fn every_error_equals_is_a_name_the_code_produces() {
    let mut found = Vec::new();
    matched_errors(&asl(), "", &mut found);
    assert!(
        found.len() > 10,
        "the walk found the Retry rules: {found:?}"
    );
    for (state, field, name) in &found {
        assert!(
            RotationError::NAMES.contains(&name.as_str())
                || PLATFORM_ERRORS.contains(&name.as_str()),
            "{state}.{field} matches {name}, which no step produces"
        );
    }
}

#[test]
fn transient_errors_are_retried_where_they_can_happen() {
    let mut found = Vec::new();
    matched_errors(&asl(), "", &mut found);
    let retried = |state: &str, name: &str| {
        found
            .iter()
            .any(|(s, f, n)| s == state && f == "Retry" && n == name)
    };
    for state in [
        "Preflight",
        "CreateKey",
        "UpdateQovery",
        "DeployCluster",
        "CheckStatus",
        "DeleteOldKey",
        "RollbackNewKey",
    ] {
        assert!(
            retried(state, "AwsUnavailable"),
            "{state} does not retry AwsUnavailable"
        );
        assert!(
            retried(state, "Lambda.ServiceException"),
            "{state} does not retry Lambda errors"
        );
    }
    for state in [
        "Preflight",
        "UpdateQovery",
        "DeployCluster",
        "CheckStatus",
        "DeleteOldKey",
        "RollbackNewKey",
    ] {
        assert!(
            retried(state, "QoveryUnavailable"),
            "{state} does not retry QoveryUnavailable"
        );
    }
    assert!(retried("UpdateQovery", "NewKeyNotValid"));
    // Only UpdateQovery is caught (into the rollback); after it, a failure deletes nothing.
    let catches: BTreeSet<_> = found
        .iter()
        .filter(|(_, f, _)| f == "Catch")
        .map(|(s, _, _)| s.as_str())
        .collect();
    assert_eq!(catches, BTreeSet::from(["UpdateQovery"]));
}

#[test]
fn choice_states_compare_the_phases_the_code_writes() {
    let text = asl().to_string();
    for phase in [Phase::AwaitingIdle, Phase::Deployed] {
        let written = serde_json::to_value(phase).unwrap();
        assert!(
            text.contains(&format!("\"StringEquals\":{written}")),
            "no Choice compares {written}"
        );
    }
}
