//! The state machine and the code agree: every error the ASL matches is one the code
//! can produce, every retryable error is retried, and the Choice states compare the
//! strings the code writes.

use std::collections::BTreeSet;

use rotation::state::Phase;
use rotation::RotationError;
use serde_json::Value;

/// Errors Step Functions itself raises for a Lambda task.
pub(crate) const PLATFORM_ERRORS: [&str; 8] = [
    "States.ALL",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
    "Sandbox.Timedout",
    "States.Timeout",
];

/// Every Task state that calls AWS or Qovery, with the function (template.yaml
/// resource) it invokes. (CheckWave calls nothing; ReportSuccess is SNS.)
const TASKS: [(&str, &str); 16] = [
    ("Preflight", "PreflightFunction"),
    ("CreateKey", "CreateKeyFunction"),
    ("UpdateQovery", "UpdateQoveryFunction"),
    ("ReconcileHandOver", "UpdateQoveryFunction"),
    ("FinishHandOver", "UpdateQoveryFunction"),
    ("RollbackNewKey", "DeleteKeyFunction"),
    ("UndoPrevious", "DeleteKeyFunction"),
    ("DeployCluster", "DeployClusterFunction"),
    ("CheckStatus", "CheckStatusFunction"),
    ("QuarantineOldKey", "DeleteKeyFunction"),
    ("DeleteOldKey", "DeleteKeyFunction"),
    ("CreateRoleEntry", "UpdateQoveryFunction"),
    ("PointCluster", "DeployClusterFunction"),
    ("HandOverToRole", "UpdateQoveryFunction"),
    ("UndoMigration", "UpdateQoveryFunction"),
    ("AbandonMigration", "DeleteKeyFunction"),
];

/// A state by name, at any depth.
fn state<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => {
            if let Some(found) = map.get("States").and_then(|s| s.get(name)) {
                return Some(found);
            }
            map.values().find_map(|child| state(child, name))
        }
        _ => None,
    }
}

/// The `Timeout:` of a function in template.yaml.
fn lambda_timeout(function: &str) -> u64 {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text
        .find(&format!("\n  {function}:\n"))
        .unwrap_or_else(|| panic!("{function} is not in template.yaml"));
    // The resource's lines: up to the next line indented two spaces or less.
    let line = text[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("   "))
        .find(|l| l.trim_start().starts_with("Timeout:"))
        .unwrap_or_else(|| panic!("{function} has no Timeout"));
    line.split(':').nth(1).unwrap().trim().parse().unwrap()
}

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
    for (state, _) in TASKS {
        for name in [
            "AwsUnavailable",
            "QoveryUnavailable",
            "Lambda.ServiceException",
            "Lambda.Unknown",
            "Sandbox.Timedout",
            "States.Timeout",
        ] {
            // Every step is idempotent, so a lost answer or a timeout is simply retried.
            assert!(retried(state, name), "{state} does not retry {name}");
        }
    }
    assert!(retried("UpdateQovery", "NewKeyNotValid"));
    assert!(retried("FinishHandOver", "NewKeyNotValid"));
    // Only the hand-over is caught; after it, a failure deletes nothing.
    let catches: BTreeSet<_> = found
        .iter()
        .filter(|(_, f, _)| f == "Catch")
        .map(|(s, _, _)| s.as_str())
        .collect();
    // Besides, each cluster's tasks catch into the cluster's result (the wave is then
    // judged by CheckWave), and a success report that cannot be published still ends
    // the rotation as done.
    assert_eq!(
        catches,
        BTreeSet::from([
            "UpdateQovery",
            "ReconcileHandOver",
            "FinishHandOver",
            "DeployCluster",
            "CheckStatus",
            "ReportSuccess",
            // A migration before its point of no return: a failure undoes it.
            "CreateRoleEntry",
            "PointCluster",
            "DeployClusters",
        ])
    );
    let asl = asl();
    for name in ["DeployCluster", "CheckStatus", "PointCluster"] {
        let catch = &state(&asl, name).unwrap()["Catch"];
        assert_eq!(catch.as_array().unwrap().len(), 1, "{name}");
        assert_eq!(catch[0]["ErrorEquals"][0], "States.ALL", "{name}");
        assert_eq!(catch[0]["ResultPath"], "$.failure", "{name}");
        assert_eq!(catch[0]["Next"], "ClusterFailed", "{name}");
    }
    let failed = state(&asl, "ClusterFailed").unwrap();
    assert_eq!(failed["Type"], "Pass");
    assert_eq!(failed["End"], true);
    assert_eq!(
        state(&asl, "ReportSuccess").unwrap()["Catch"][0]["Next"],
        "Rotated"
    );
    // CheckWave judges the same results each time: only the platform's errors are
    // worth a retry, and the cluster errors it raises must fail the execution.
    let wave = state(&asl, "CheckWave").unwrap();
    assert!(wave.get("Catch").is_none());
    for rule in wave["Retry"].as_array().unwrap() {
        for name in rule["ErrorEquals"].as_array().unwrap() {
            assert!(
                PLATFORM_ERRORS.contains(&name.as_str().unwrap()) && name != "States.ALL",
                "CheckWave retries {name}"
            );
        }
    }
    assert!(retried("CheckWave", "Lambda.ServiceException"));
}

#[test]
fn only_certain_failures_are_rolled_back_without_asking_qovery() {
    let asl = asl();
    let catches = state(&asl, "UpdateQovery").unwrap()["Catch"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(catches[0]["Next"], "RollbackNewKey");
    let certain: BTreeSet<&str> = catches[0]["ErrorEquals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // A timeout, a 5xx or a lost answer may hide a PUT that applied; a hand-over
    // that started only goes forward.
    for uncertain in [
        "HandOverIncomplete",
        "QoveryUnavailable",
        "AwsUnavailable",
        "States.Timeout",
        "Sandbox.Timedout",
        "Lambda.Unknown",
        "States.ALL",
    ] {
        assert!(
            !certain.contains(uncertain),
            "{uncertain} is rolled back blindly"
        );
    }
    assert_eq!(catches[1]["ErrorEquals"][0], "HandOverIncomplete");
    assert_eq!(catches[1]["Next"], "WaitBeforeReconcile");
    assert_eq!(catches[2]["ErrorEquals"][0], "States.ALL");
    assert_eq!(catches[2]["Next"], "WaitBeforeReconcile");
    assert_eq!(catches.len(), 3);
    let reconcile = state(&asl, "ReconcileHandOver").unwrap();
    assert_eq!(reconcile["Catch"][0]["Next"], "HandOverUnknown");
    assert_eq!(
        state(&asl, "FinishHandOver").unwrap()["Catch"][0]["Next"],
        "HandOverUnfinished"
    );
    // update-qovery is told its mode, never guesses it from the input's shape.
    for (name, mode) in [
        ("UpdateQovery", "hand_over"),
        ("ReconcileHandOver", "reconcile"),
        ("FinishHandOver", "hand_over"),
    ] {
        let parameters = &state(&asl, name).unwrap()["Parameters"];
        assert_eq!(parameters["mode"], mode, "{name}");
        assert_eq!(parameters["state.$"], "$", "{name}");
    }
    let holds = serde_json::to_value(rotation::state::QoveryHolds::OldKey).unwrap();
    assert!(asl
        .to_string()
        .contains(&format!("\"StringEquals\":{holds}")));
}

#[test]
fn a_lambda_times_out_before_its_task() {
    let asl = asl();
    for (name, function) in TASKS {
        let task = state(&asl, name).unwrap_or_else(|| panic!("no state {name}"));
        let task_timeout = task["TimeoutSeconds"].as_u64().unwrap();
        let lambda = lambda_timeout(function);
        assert!(
            task_timeout > lambda,
            "{name}: TimeoutSeconds {task_timeout} must exceed {function}'s Lambda Timeout {lambda}"
        );
        // The deadline guard leaves the last call's budget unused; the Lambda needs
        // room for several calls.
        assert!(lambda >= 60, "{function}: Timeout {lambda} is too short");
    }
}

#[test]
fn clusters_are_redeployed_wave_after_wave_the_canary_first() {
    let asl = asl();
    let waves = state(&asl, "DeployClusters").unwrap();
    assert_eq!(waves["ItemsPath"], "$.deploy_waves");
    assert_eq!(waves["MaxConcurrency"], 1, "one wave at a time");
    assert_eq!(waves["ItemSelector"]["wave.$"], "$$.Map.Item.Value");
    let inner = &waves["ItemProcessor"];
    assert_eq!(inner["StartAt"], "DeployWave");
    let wave = &inner["States"]["DeployWave"];
    assert_eq!(wave["ItemsPath"], "$.wave");
    let bound = wave["MaxConcurrency"].as_u64().unwrap();
    assert!(
        bound >= rotation::input::MAX_DEPLOY_CONCURRENCY,
        "a wave's clusters all start"
    );
    assert_eq!(wave["Next"], "CheckWave");
    assert_eq!(
        inner["States"]["CheckWave"]["Parameters"]["wave.$"],
        "$.results"
    );
    assert_eq!(inner["States"]["CheckWave"]["End"], true);
    for map in [waves, wave] {
        let keys: Vec<&String> = map.as_object().unwrap().keys().collect();
        assert!(
            keys.iter().all(|k| !k.starts_with("ToleratedFailure")),
            "a Map that tolerates failures would go on past a failed cluster"
        );
    }
    // A wave of the plan is what update-qovery writes.
    let plan = rotation::clusters::waves(&[1, 2, 3], 2);
    assert_eq!(plan, vec![vec![1], vec![2, 3]]);
}

#[test]
fn a_finished_rotation_reports_to_the_topic_unless_turned_off() {
    let asl = asl();
    assert_eq!(
        state(&asl, "DeleteOldKey").unwrap()["Parameters"]["report"]["started_at.$"],
        "$$.Execution.StartTime"
    );
    assert_eq!(
        state(&asl, "DeleteOldKey").unwrap()["Next"],
        "NotifyOnSuccessSetting"
    );
    let setting = state(&asl, "NotifyOnSuccessSetting").unwrap();
    assert_eq!(setting["Result"]["enabled"], "${NotifyOnSuccess}");
    let choice = state(&asl, "ShouldReportSuccess").unwrap();
    assert_eq!(choice["Choices"][0]["StringEquals"], "true");
    assert_eq!(choice["Choices"][0]["Next"], "ReportSuccess");
    assert_eq!(choice["Default"], "Rotated");
    let report = state(&asl, "ReportSuccess").unwrap();
    assert_eq!(report["Resource"], "arn:aws:states:::sns:publish");
    assert_eq!(report["Parameters"]["TopicArn"], "${NotificationTopicArn}");
    assert_eq!(
        report["Parameters"]["Message.$"],
        "States.JsonToString($.deleted.report)"
    );
}

#[test]
fn choice_states_compare_the_phases_the_code_writes() {
    let text = asl().to_string();
    for phase in [Phase::AwaitingIdle, Phase::Deployed, Phase::Skipped] {
        let written = serde_json::to_value(phase).unwrap();
        assert!(
            text.contains(&format!("\"StringEquals\":{written}")),
            "no Choice compares {written}"
        );
    }
    use rotation::state::Mode;
    for mode in [Mode::NothingToRotate, Mode::Migrate, Mode::UndoMigration] {
        let written = serde_json::to_value(mode).unwrap();
        assert!(
            text.contains(&format!("\"StringEquals\":{written}")),
            "no Choice compares mode {written}"
        );
    }
}

#[test]
fn every_delete_names_the_execution_that_holds_the_lock_and_recovery_is_routed() {
    let asl = asl();
    for name in ["DeleteOldKey", "RollbackNewKey", "UndoPrevious"] {
        let parameters = &state(&asl, name).unwrap()["Parameters"];
        assert_eq!(parameters["execution_id.$"], "$$.Execution.Id", "{name}");
    }
    assert_eq!(
        state(&asl, "UndoPrevious").unwrap()["Parameters"]["mode"],
        serde_json::to_value(rotation::state::DeleteMode::UndoPrevious).unwrap()
    );
    assert_eq!(
        state(&asl, "DeleteOldKey").unwrap()["Parameters"]["holders.$"],
        "$.holders"
    );
    // WhatToDo compares the values preflight writes, and undo goes on to CreateKey.
    let choices = state(&asl, "WhatToDo").unwrap()["Choices"]
        .as_array()
        .unwrap()
        .clone();
    let routed: Vec<(Value, Value)> = choices
        .iter()
        .map(|c| (c["StringEquals"].clone(), c["Next"].clone()))
        .collect();
    use rotation::state::Recovery;
    assert_eq!(
        routed,
        vec![
            (
                serde_json::to_value(Recovery::Undo).unwrap(),
                "UndoPrevious".into()
            ),
            (
                serde_json::to_value(Recovery::Finish).unwrap(),
                "FinishHandOver".into()
            ),
        ]
    );
    assert_eq!(state(&asl, "WhatToDo").unwrap()["Default"], "CreateKey");
    assert_eq!(state(&asl, "UndoPrevious").unwrap()["Next"], "CreateKey");
    assert!(state(&asl, "UndoPrevious").unwrap().get("Catch").is_none());
}

#[test]
fn the_old_key_is_checked_idle_and_quarantined_before_the_delete() {
    let asl = asl();
    assert_eq!(state(&asl, "Drain").unwrap()["Next"], "QuarantineOldKey");
    let quarantine = state(&asl, "QuarantineOldKey").unwrap();
    assert_eq!(
        quarantine["Parameters"]["mode"],
        serde_json::to_value(rotation::state::DeleteMode::QuarantineOldKey).unwrap()
    );
    assert_eq!(
        quarantine["Parameters"]["execution_id.$"],
        "$$.Execution.Id"
    );
    assert_eq!(
        quarantine["Parameters"]["key_idle_seconds.$"],
        "$.key_idle_seconds"
    );
    assert_eq!(
        quarantine["Parameters"]["quarantine_seconds.$"],
        "$.quarantine_seconds"
    );
    assert_eq!(quarantine["ResultPath"], "$.quarantine");
    assert!(
        quarantine.get("Catch").is_none(),
        "KeyStillInUse must fail the run"
    );
    let wait = state(&asl, "Quarantine").unwrap();
    assert_eq!(wait["Type"], "Wait");
    assert_eq!(wait["TimestampPath"], "$.quarantine.until");
    assert_eq!(wait["Next"], "DeleteOldKey");
    let delete = &state(&asl, "DeleteOldKey").unwrap()["Parameters"];
    assert_eq!(delete["quarantine.$"], "$.quarantine");
    assert_eq!(delete["clusters.$"], "$.clusters");
    assert_eq!(delete["key_idle_seconds.$"], "$.key_idle_seconds");
}
