//! The state machine's safety fields, pinned one by one. cargo-mutants changes only
//! the Rust code, and the local engine runs every Wait at once and ignores a Map's
//! tolerated failures: a change to these fields would pass every other test. So each
//! is written down here exactly as the ASL has it; changing one means changing this
//! file too, on purpose.

use std::collections::BTreeMap;

use serde_json::Value;

fn asl() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../statemachine/rotation.asl.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every state at any depth (inside Maps and Parallels too), by name.
fn all_states(asl: &Value) -> BTreeMap<String, Value> {
    fn walk(states: &Value, out: &mut BTreeMap<String, Value>) {
        for (name, state) in states.as_object().expect("States is an object") {
            let previous = out.insert(name.clone(), state.clone());
            assert!(previous.is_none(), "two states are called {name}");
            for inner in ["ItemProcessor", "Iterator"] {
                if let Some(processor) = state.get(inner) {
                    walk(&processor["States"], out);
                }
            }
            for branch in state["Branches"].as_array().into_iter().flatten() {
                walk(&branch["States"], out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&asl["States"], &mut out);
    assert!(out.len() > 30, "the walk found the nested states: {out:?}");
    out
}

fn of_type(asl: &Value, kind: &str) -> BTreeMap<String, Value> {
    all_states(asl)
        .into_iter()
        .filter(|(_, state)| state["Type"] == kind)
        .collect()
}

/// Every field of a Wait that sets how long it waits.
const WAIT_TIMINGS: [&str; 4] = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"];

#[test]
fn every_wait_waits_exactly_as_long_as_its_pinned_timing_field_says() {
    // The drain lets what Qovery started with the old key finish; the quarantine keeps
    // the old key off before the delete. A Wait of 0 seconds there would delete a key
    // in use, and the local engine, which runs every Wait at once, cannot notice.
    let pinned: BTreeMap<&str, (&str, Value)> = BTreeMap::from([
        ("Drain", ("TimestampPath", "$.drain_until".into())),
        ("Quarantine", ("TimestampPath", "$.quarantine.until".into())),
        ("WaitBeforeReconcile", ("Seconds", 300.into())),
        (
            "WaitForDeploy",
            ("SecondsPath", "$.poll_interval_seconds".into()),
        ),
        (
            "WaitForIdle",
            ("SecondsPath", "$.poll_interval_seconds".into()),
        ),
    ]);
    let waits = of_type(&asl(), "Wait");
    assert_eq!(
        waits.keys().map(String::as_str).collect::<Vec<_>>(),
        pinned.keys().copied().collect::<Vec<_>>(),
        "every Wait of the ASL is pinned here, and no other"
    );
    for (name, (field, value)) in &pinned {
        let wait = &waits[*name];
        let timings: Vec<(&str, &Value)> = WAIT_TIMINGS
            .iter()
            .filter_map(|f| wait.get(*f).map(|v| (*f, v)))
            .collect();
        assert_eq!(
            timings,
            vec![(*field, value)],
            "{name} waits by its one pinned timing field"
        );
    }
}

#[test]
fn no_map_tolerates_a_failed_cluster() {
    // A Map that tolerates failures goes on past a failed cluster: the next wave
    // starts, the drain runs and the old key is deleted. The local engine ignores the
    // field, so only this test can see it. Looked for at any depth, in every form.
    fn tolerated(value: &Value, at: &str, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if key.starts_with("ToleratedFailure") {
                        found.push(format!("{at}.{key}"));
                    }
                    tolerated(child, &format!("{at}.{key}"), found);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    tolerated(item, &format!("{at}[{i}]"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    tolerated(&asl(), "$", &mut found);
    assert_eq!(found, Vec::<String>::new(), "no ToleratedFailure* field");
    // The named forms too, in case the ASL ever quotes them in another way.
    let text = asl().to_string();
    for field in [
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
        "ToleratedFailureCount",
        "ToleratedFailureCountPath",
    ] {
        assert!(!text.contains(field), "{field} is in the ASL");
    }
    // The Maps a failure must stop: the waves one after the other, the clusters of one.
    let maps = of_type(&asl(), "Map");
    assert_eq!(
        maps.keys().map(String::as_str).collect::<Vec<_>>(),
        ["DeployClusters", "DeployWave"]
    );
}

/// One Catch rule: (ErrorEquals, ResultPath, Next).
type Catch = (Vec<&'static str>, &'static str, &'static str);

#[test]
fn every_catch_of_every_state_sends_its_errors_where_pinned() {
    // Which failure is rolled back (deleting the new key) and which only goes forward
    // (both keys stay) is decided here. A Catch retargeted is a rollback after a
    // hand-over that started, or a failed cluster that does not stop the rotation.
    let pinned: BTreeMap<&str, Vec<Catch>> = BTreeMap::from([
        (
            "UpdateQovery",
            vec![
                (
                    vec![
                        "InvalidInput",
                        "PreconditionFailed",
                        "QoveryUnauthorized",
                        "QoveryRejected",
                        "NewKeyNotValid",
                        "AwsRejected",
                    ],
                    "$.error",
                    "RollbackNewKey",
                ),
                (vec!["HandOverIncomplete"], "$.error", "WaitBeforeReconcile"),
                (vec!["States.ALL"], "$.error", "WaitBeforeReconcile"),
            ],
        ),
        (
            "ReconcileHandOver",
            vec![(vec!["States.ALL"], "$.reconcile_error", "HandOverUnknown")],
        ),
        (
            "FinishHandOver",
            vec![(vec!["States.ALL"], "$.error", "HandOverUnfinished")],
        ),
        (
            "DeployCluster",
            vec![(vec!["States.ALL"], "$.failure", "ClusterFailed")],
        ),
        (
            "CheckStatus",
            vec![(vec!["States.ALL"], "$.failure", "ClusterFailed")],
        ),
        (
            "PointCluster",
            vec![(vec!["States.ALL"], "$.failure", "ClusterFailed")],
        ),
        // A migration that fails before its point of no return is undone.
        (
            "CreateRoleEntry",
            vec![(vec!["States.ALL"], "$.migration_error", "UndoMigration")],
        ),
        (
            "DeployClusters",
            vec![(vec!["RoleNotProven"], "$.migration_error", "UndoMigration")],
        ),
        (
            "ReportSuccess",
            vec![(vec!["States.ALL"], "$.report_error", "Rotated")],
        ),
    ]);
    let found: BTreeMap<String, Vec<(Vec<String>, String, String)>> = all_states(&asl())
        .into_iter()
        .filter_map(|(name, state)| {
            let catches = state.get("Catch")?.as_array().expect("Catch is a list");
            let rules = catches
                .iter()
                .map(|rule| {
                    assert_eq!(
                        fields_of(rule),
                        ["ErrorEquals", "Next", "ResultPath"],
                        "{name}: a Catch rule has exactly these fields"
                    );
                    (
                        strings(&rule["ErrorEquals"]),
                        rule["ResultPath"].as_str().unwrap().to_string(),
                        rule["Next"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            Some((name, rules))
        })
        .collect();
    let pinned: BTreeMap<String, Vec<(Vec<String>, String, String)>> = pinned
        .into_iter()
        .map(|(name, rules)| {
            let rules = rules
                .into_iter()
                .map(|(errors, path, next)| {
                    (
                        errors.into_iter().map(String::from).collect(),
                        path.to_string(),
                        next.to_string(),
                    )
                })
                .collect();
            (name.to_string(), rules)
        })
        .collect();
    assert_eq!(found, pinned, "every state's Catch list, exactly");
}

/// One Retry rule: (ErrorEquals, IntervalSeconds, MaxAttempts, BackoffRate).
type Retry = (Vec<&'static str>, u64, u64, f64);

/// What every Lambda task retries: the platform's lost answers and timeouts, every error
/// Step Functions raises for a Lambda task but the catch-all (asl_contract's list).
fn platform_retry_errors() -> Vec<&'static str> {
    crate::asl_contract::PLATFORM_ERRORS
        .into_iter()
        .filter(|e| *e != "States.ALL")
        .collect()
}

fn lambda_errors() -> Retry {
    (platform_retry_errors(), 2, 6, 2.0)
}

/// The Retry list of a step that calls AWS and Qovery.
fn step_retries() -> Vec<Retry> {
    vec![
        lambda_errors(),
        (vec!["QoveryUnavailable"], 10, 5, 2.0),
        (vec!["AwsUnavailable"], 5, 4, 2.0),
    ]
}

/// The hand-over's: IAM can take a while to accept a new key everywhere.
fn hand_over_retries() -> Vec<Retry> {
    let mut rules = step_retries();
    rules.push((vec!["NewKeyNotValid"], 5, 8, 1.5));
    rules
}

#[test]
fn every_task_retries_exactly_what_is_pinned() {
    // Every Task that changes something (a key, a holder, a deployment, the topic) is
    // idempotent and retried on lost answers; a retry dropped turns a lost answer into
    // a failed rotation, a retry added to CheckWave or ReportSuccess repeats what must
    // not be repeated. The read-only tasks are pinned too: the table names every Task.
    let changing: [(&str, Vec<Retry>); 14] = [
        ("CreateKey", step_retries()),
        ("CreateRoleEntry", step_retries()),
        ("PointCluster", step_retries()),
        ("HandOverToRole", step_retries()),
        ("UndoMigration", step_retries()),
        ("AbandonMigration", step_retries()),
        ("QuarantineOldKey", step_retries()),
        ("UpdateQovery", hand_over_retries()),
        ("FinishHandOver", hand_over_retries()),
        ("RollbackNewKey", step_retries()),
        ("UndoPrevious", step_retries()),
        ("DeployCluster", step_retries()),
        ("DeleteOldKey", step_retries()),
        ("ReportSuccess", vec![(vec!["States.ALL"], 5, 3, 2.0)]),
    ];
    let reading: [(&str, Vec<Retry>); 4] = [
        ("Preflight", step_retries()),
        ("ReconcileHandOver", step_retries()),
        ("CheckStatus", step_retries()),
        // The same results always get the same verdict: only the platform's errors.
        ("CheckWave", vec![lambda_errors()]),
    ];
    let pinned: BTreeMap<&str, Vec<Retry>> = changing.into_iter().chain(reading).collect();
    let tasks = of_type(&asl(), "Task");
    assert_eq!(
        tasks.keys().map(String::as_str).collect::<Vec<_>>(),
        pinned.keys().copied().collect::<Vec<_>>(),
        "every Task of the ASL is pinned here, and no other"
    );
    for (name, rules) in &pinned {
        let found: Vec<(Vec<String>, u64, u64, f64)> = tasks[*name]["Retry"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no Retry"))
            .iter()
            .map(|rule| {
                assert_eq!(
                    fields_of(rule),
                    [
                        "BackoffRate",
                        "ErrorEquals",
                        "IntervalSeconds",
                        "MaxAttempts"
                    ],
                    "{name}: a Retry rule has exactly these fields (no MaxDelaySeconds, no \
                     JitterStrategy)"
                );
                (
                    strings(&rule["ErrorEquals"]),
                    rule["IntervalSeconds"].as_u64().unwrap(),
                    rule["MaxAttempts"].as_u64().unwrap(),
                    rule["BackoffRate"].as_f64().unwrap(),
                )
            })
            .collect();
        let rules: Vec<(Vec<String>, u64, u64, f64)> = rules
            .iter()
            .map(|(errors, interval, attempts, backoff)| {
                (
                    errors.iter().map(|e| e.to_string()).collect(),
                    *interval,
                    *attempts,
                    *backoff,
                )
            })
            .collect();
        assert_eq!(found, rules, "{name}'s Retry list, exactly");
    }
}

fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// A rule's field names, sorted.
fn fields_of(rule: &Value) -> Vec<&str> {
    let mut fields: Vec<&str> = rule
        .as_object()
        .expect("a rule is an object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    fields
}
