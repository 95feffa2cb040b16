//! The fake over real HTTP, the way the rotator's steps and the demo talk to it.

mod support;

use qovery_fake::{Fault, Outcome, Seed, SeedCluster, SeedCredentials};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn every_api_call_needs_the_seeded_token() {
    let api = Api::start(seed(cluster())).await;
    let url = api.url(&credentials_path());

    let no_header = api.http.get(&url).send().await.unwrap();
    error_message(no_header, StatusCode::UNAUTHORIZED).await;
    for header in [
        format!("Bearer {TOKEN}"),
        "Token wrong".into(),
        TOKEN.into(),
    ] {
        let response = api
            .http
            .get(&url)
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        error_message(response, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(api.get(&credentials_path()).await.status(), StatusCode::OK);

    let requests = api.fake.snapshot().requests;
    assert_eq!(requests.len(), 5);
    assert!(requests[..4]
        .iter()
        .all(|r| r.status == 401 && r.operation == "getAWSCredentials"));
    assert_eq!(
        (requests[4].method.as_str(), requests[4].path.as_str()),
        ("GET", credentials_path().as_str())
    );
}

#[tokio::test]
async fn an_unseeded_fake_authorizes_nothing() {
    let api = Api::start(Seed::default()).await;
    let response = api
        .http
        .get(api.url(&status_path()))
        .header("Authorization", "Token ")
        .send()
        .await
        .unwrap();
    error_message(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn credentials_come_back_without_the_secret() {
    let api = Api::start(seed(cluster())).await;

    let response = api.get(&credentials_path()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"id": CREDS, "name": "prod-aws", "access_key_id": "AKIAOLD", "object_type": "AWS"})
    );

    let list: Value = api
        .get(&format!("/organization/{ORG}/credentials"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        json!({"results": [{
            "credential": body,
            "clusters": [{"id": CLUSTER, "name": "prod", "cloud_provider": "AWS"}],
        }]})
    );
}

#[tokio::test]
async fn role_credentials_are_listed_without_a_key() {
    let mut seed = seed(cluster());
    seed.credentials.push(SeedCredentials::role(
        OTHER,
        "prod-role",
        "arn:aws:iam::123456789012:role/qovery",
    ));
    let api = Api::start(seed).await;
    let list: Value = api
        .get(&format!("/organization/{ORG}/credentials"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["results"][1],
        json!({"credential": {"id": OTHER, "name": "prod-role", "object_type": "AWS_ROLE",
                              "role_arn": "arn:aws:iam::123456789012:role/qovery"},
               "clusters": []})
    );

    // The snapshot tells the two kinds apart, and where each cluster points.
    let snapshot = api.fake.snapshot();
    let kinds: Vec<(&str, &str, Option<&str>)> = snapshot
        .credentials
        .iter()
        .map(|c| (c.id.as_str(), c.object_type.as_str(), c.role_arn.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (CREDS, "AWS", None),
            (
                OTHER,
                "AWS_ROLE",
                Some("arn:aws:iam::123456789012:role/qovery")
            )
        ]
    );
    assert_eq!(snapshot.clusters[0].credentials_id, CREDS);
}

#[tokio::test]
async fn edit_rejects_anything_but_a_complete_static_request() {
    let api = Api::start(seed(cluster())).await;
    let valid = json!({"type": "AWS_STATIC", "name": "prod-aws", "access_key_id": "AKIANEW", "secret_access_key": "new-secret"});
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let cases = [
        (without("type"), "`type`"),
        (with("type", json!("AWS_ROLE")), "`type`"),
        (with("type", json!("aws_static")), "`type`"),
        (without("name"), "`name`"),
        (with("access_key_id", json!("")), "`access_key_id`"),
        (without("secret_access_key"), "`secret_access_key`"),
        (with("secret_access_key", json!(42)), "`secret_access_key`"),
        // The old shell snippet's field names.
        (with("secret_key", json!("new-secret")), "`secret_key`"),
        (json!(["AWS_STATIC"]), "JSON object"),
    ];
    for (body, named) in cases {
        let message = error_message(
            api.put(&credentials_path(), body.clone()).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains(named), "{body} gave {message:?}");
        assert!(
            !message.contains("new-secret"),
            "the secret leaked into {message:?}"
        );
    }
    assert_eq!(
        api.fake.snapshot().credentials[0].secret_access_key,
        "old-secret"
    );

    let response = api.put(&credentials_path(), valid).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"id": CREDS, "name": "prod-aws", "access_key_id": "AKIANEW", "object_type": "AWS"})
    );
    let stored = &api.fake.snapshot().credentials[0];
    assert_eq!(
        (
            stored.access_key_id.as_str(),
            stored.secret_access_key.as_str()
        ),
        ("AKIANEW", "new-secret")
    );
}

#[tokio::test]
async fn unknown_ids_are_404_and_malformed_ids_are_400() {
    let api = Api::start(seed(cluster())).await;
    for path in [
        format!("/organization/{OTHER}/aws/credentials/{CREDS}"),
        format!("/organization/{ORG}/aws/credentials/{OTHER}"),
        format!("/organization/{OTHER}/credentials"),
        format!("/organization/{ORG}/cluster/{OTHER}/status"),
    ] {
        error_message(api.get(&path).await, StatusCode::NOT_FOUND).await;
    }
    let message = error_message(
        api.get(&format!("/organization/{ORG}/cluster/prod/status"))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("clusterId"), "{message}");
}

#[tokio::test]
async fn a_deploy_walks_queued_deploying_then_the_outcome() {
    for (outcome, last) in [
        (Outcome::Deployed, "DEPLOYED"),
        (Outcome::DeploymentError, "DEPLOYMENT_ERROR"),
        (Outcome::InvalidCredentials, "INVALID_CREDENTIALS"),
    ] {
        let api = Api::start(seed(SeedCluster {
            outcome,
            ..cluster()
        }))
        .await;
        let before = api.fake.snapshot().clusters[0].clone();

        let response = api.deploy().await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let queued: Value = response.json().await.unwrap();
        assert_eq!(queued["status"], "DEPLOYMENT_QUEUED");
        assert_eq!(queued["cluster_id"], CLUSTER);
        assert_eq!(queued["reason"], "UNSPECIFIED");
        assert_ne!(queued["last_execution_id"], json!(before.last_execution_id));

        assert_eq!(api.poll().await["status"], "DEPLOYING");
        let done = api.poll().await;
        assert_eq!(done["status"], last, "{outcome:?}");
        assert_eq!(done["last_execution_id"], queued["last_execution_id"]);
        assert_eq!(done["is_deployed"], true);
        let redeployed = done["last_deployment_date"] != json!(before.last_deployment_date);
        assert_eq!(redeployed, outcome == Outcome::Deployed);
        assert_eq!(api.poll().await["status"], last, "a final state stays");

        let after = &api.fake.snapshot().clusters[0];
        assert_eq!(
            (
                after.status.as_str(),
                after.deploy_count,
                after.status_polls
            ),
            (last, 1, 3)
        );
    }
}

#[tokio::test]
async fn a_stuck_deploy_never_ends() {
    let api = Api::start(seed(SeedCluster {
        outcome: Outcome::Stuck,
        ..cluster()
    }))
    .await;
    assert_eq!(api.deploy().await.status(), StatusCode::CREATED);
    for _ in 0..10 {
        assert_eq!(api.poll().await["status"], "DEPLOYING");
    }
}

#[tokio::test]
async fn a_busy_cluster_refuses_a_deploy() {
    let api = Api::start(seed(cluster())).await;
    assert_eq!(api.deploy().await.status(), StatusCode::CREATED);
    let message = error_message(api.deploy().await, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("busy"), "{message}");
    assert_eq!(api.fake.snapshot().clusters[0].deploy_count, 1);
}

#[tokio::test]
async fn stale_polls_keep_showing_the_previous_deployment() {
    let api = Api::start(seed(SeedCluster {
        stale_polls: 2,
        ..cluster()
    }))
    .await;
    let before = api.fake.snapshot().clusters[0].clone();
    let old = json!({
        "cluster_id": CLUSTER,
        "status": "DEPLOYED",
        "is_deployed": true,
        "last_execution_id": before.last_execution_id,
        "last_deployment_date": before.last_deployment_date,
        "reason": "UNSPECIFIED",
    });

    let response = api.deploy().await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.json::<Value>().await.unwrap(), old);
    assert_eq!(api.fake.snapshot().clusters[0].status, "DEPLOYMENT_QUEUED");
    assert_eq!(api.poll().await, old);
    assert_eq!(api.poll().await, old);

    let deploying = api.poll().await;
    assert_eq!(deploying["status"], "DEPLOYING");
    assert_ne!(deploying["last_execution_id"], old["last_execution_id"]);
    let deployed = api.poll().await;
    assert_eq!(deployed["status"], "DEPLOYED");
    assert_ne!(
        deployed["last_deployment_date"],
        old["last_deployment_date"]
    );
}

#[tokio::test]
async fn a_cluster_seeded_busy_settles_after_busy_polls() {
    let api = Api::start(seed(SeedCluster {
        status: "DEPLOYING".into(),
        busy_polls: 2,
        ..cluster()
    }))
    .await;
    error_message(api.deploy().await, StatusCode::BAD_REQUEST).await;
    assert_eq!(api.poll().await["status"], "DEPLOYING");
    assert_eq!(api.poll().await["status"], "DEPLOYED");
    assert_eq!(api.deploy().await.status(), StatusCode::CREATED);
    assert_eq!(api.fake.snapshot().clusters[0].deploy_count, 1);
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let api = Api::start(seed(cluster())).await;
    let response = api
        .call(
            reqwest::Method::POST,
            &format!("{}?dry_run=true", deploy_path()),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "DEPLOYED"
    );
    assert_eq!(api.fake.snapshot().clusters[0].deploy_count, 0);

    let response = api
        .call(
            reqwest::Method::POST,
            &format!("{}?dry_run=yes", deploy_path()),
            None,
        )
        .await;
    assert!(error_message(response, StatusCode::BAD_REQUEST)
        .await
        .contains("dry_run"));
}

#[tokio::test]
async fn the_bulk_status_does_not_advance_a_deploy() {
    let api = Api::start(seed(cluster())).await;
    api.deploy().await;
    for _ in 0..3 {
        let list: Value = api
            .get(&format!("/organization/{ORG}/cluster/status"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(list["results"][0]["status"], "DEPLOYMENT_QUEUED");
    }
    assert_eq!(api.poll().await["status"], "DEPLOYING");
}

#[tokio::test]
async fn an_injected_fault_fails_the_next_calls_then_clears() {
    let api = Api::start(seed(cluster())).await;
    api.fake
        .inject_fault(Fault::new("deployCluster", 503, 2).with_retry_after(7));

    // Other operations are untouched.
    assert_eq!(api.poll().await["status"], "DEPLOYED");
    for _ in 0..2 {
        let response = api.deploy().await;
        assert_eq!(response.headers()["retry-after"], "7");
        assert_eq!(
            error_message(response, StatusCode::SERVICE_UNAVAILABLE).await,
            "injected fault"
        );
    }
    assert_eq!(
        api.fake.snapshot().clusters[0].deploy_count,
        0,
        "a failed call changed nothing"
    );
    assert_eq!(api.deploy().await.status(), StatusCode::CREATED);

    // The control API does the same; "*" hits whichever call comes next.
    let response = api
        .http
        .post(api.url("/_fake/faults"))
        .json(&json!({"operation": "*", "status": 429, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = api.get(&credentials_path()).await;
    assert!(response.headers().get("retry-after").is_none());
    error_message(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(api.get(&credentials_path()).await.status(), StatusCode::OK);

    let statuses: Vec<u16> = api
        .fake
        .snapshot()
        .requests
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 503, 503, 201, 429, 200]);
}

fn static_request(key: &str, secret: &str) -> Value {
    json!({"type": "AWS_STATIC", "name": "prod-aws", "access_key_id": key, "secret_access_key": secret})
}

#[tokio::test]
async fn an_echo_fault_answers_a_page_quoting_the_request() {
    let api = Api::start(seed(cluster())).await;
    api.fake
        .inject_fault(Fault::new("editAWSCredentials", 400, 1).echoing_request());
    let secret = "new/secret+key-of-forty-characters-0123";
    let body = static_request("AKIA0123456789ABCDEF", secret);

    let page = gateway_page(
        api.put(&credentials_path(), body.clone()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    // Quoted as it came, the way a misbehaving gateway would: secrets and all.
    for quoted in [
        format!("PUT {} HTTP/1.1", credentials_path()),
        format!("authorization: Token {TOKEN}"),
        "content-type: application/json".to_string(),
        body.to_string(),
    ] {
        assert!(page.contains(&quoted), "{quoted:?} not in {page}");
    }
    // Across character 300, where the rotator used to cut error bodies (see `injected`).
    assert_eq!(page.find(secret), Some(278), "{page}");
    let held = &api.fake.snapshot().credentials[0];
    assert_eq!(
        (held.access_key_id.as_str(), held.secret_access_key.as_str()),
        ("AKIAOLD", "old-secret"),
        "the refused PUT changed nothing"
    );
    assert_eq!(
        api.fake.snapshot().received_secrets,
        [secret],
        "a refused PUT's secret is still on record, for leak checks"
    );

    // A GET is quoted too, with no body; the fault is then used up.
    api.fake
        .inject_fault(Fault::new("getAWSCredentials", 502, 1).echoing_request());
    let page = gateway_page(api.get(&credentials_path()).await, StatusCode::BAD_GATEWAY).await;
    assert!(
        page.contains(&format!("GET {} HTTP/1.1", credentials_path())),
        "{page}"
    );
    assert!(page.contains(TOKEN), "{page}");
    assert_eq!(api.get(&credentials_path()).await.status(), StatusCode::OK);
    let statuses: Vec<u16> = api
        .fake
        .snapshot()
        .requests
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [400, 502, 200]);
}

#[tokio::test]
async fn an_applied_fault_serves_the_call_then_answers_the_fault() {
    let api = Api::start(seed(cluster())).await;
    api.fake.inject_fault(
        Fault::new("editAWSCredentials", 504, 1)
            .after_applying()
            .with_retry_after(3),
    );
    let response = api
        .put(&credentials_path(), static_request("AKIANEW", "new-secret"))
        .await;
    assert_eq!(response.headers()["retry-after"], "3");
    let page = gateway_page(response, StatusCode::GATEWAY_TIMEOUT).await;
    assert!(page.contains("did not answer in time"), "{page}");
    assert!(
        !page.contains("new-secret"),
        "only an echo fault quotes the request: {page}"
    );
    let held = &api.fake.snapshot().credentials[0];
    assert_eq!(
        (held.access_key_id.as_str(), held.secret_access_key.as_str()),
        ("AKIANEW", "new-secret"),
        "the PUT took effect although its answer was a 504"
    );

    // A deploy that applied: the cluster is deploying, the caller saw a 502.
    api.fake
        .inject_fault(Fault::new("deployCluster", 502, 1).after_applying());
    gateway_page(api.deploy().await, StatusCode::BAD_GATEWAY).await;
    let cluster = &api.fake.snapshot().clusters[0];
    assert_eq!(
        (cluster.status.as_str(), cluster.deploy_count),
        ("DEPLOYMENT_QUEUED", 1)
    );

    // Authentication still applies: a wrong token changes nothing, whatever the answer.
    api.fake
        .inject_fault(Fault::new("editAWSCredentials", 504, 1).after_applying());
    let response = api
        .http
        .put(api.url(&credentials_path()))
        .header("Authorization", "Token wrong")
        .json(&static_request("AKIAEVIL", "evil"))
        .send()
        .await
        .unwrap();
    gateway_page(response, StatusCode::GATEWAY_TIMEOUT).await;
    assert_eq!(api.fake.snapshot().credentials[0].access_key_id, "AKIANEW");

    // Both modes at once, through the control API as the workflow tests set them.
    let response = api
        .http
        .post(api.url("/_fake/faults"))
        .json(&json!({"operation": "editAWSCredentials", "status": 504, "apply": true, "echo_request": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let page = gateway_page(
        api.put(
            &credentials_path(),
            static_request("AKIALAST", "last-secret"),
        )
        .await,
        StatusCode::GATEWAY_TIMEOUT,
    )
    .await;
    assert!(page.contains("last-secret"), "{page}");
    let snapshot = api.fake.snapshot();
    assert_eq!(snapshot.credentials[0].access_key_id, "AKIALAST");
    let statuses: Vec<u16> = snapshot.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [504, 502, 504, 504]);
    assert_eq!(
        snapshot.received_secrets,
        ["new-secret", "evil", "last-secret"]
    );
}

#[tokio::test]
async fn a_redirect_fault_answers_its_location_and_applies_nothing() {
    let api = Api::start(seed(cluster())).await;
    let elsewhere = "http://127.0.0.1:9/organization/elsewhere";
    api.fake
        .inject_fault(Fault::new("editAWSCredentials", 307, 1).redirecting_to(elsewhere));
    // A client that follows no redirect sees it as the fake sent it.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http
        .put(api.url(&credentials_path()))
        .header("Authorization", format!("Token {TOKEN}"))
        .json(&static_request("AKIANEW", "new-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(response.headers()["location"], elsewhere);
    let snapshot = api.fake.snapshot();
    let held = &snapshot.credentials[0];
    assert_eq!(
        (held.access_key_id.as_str(), held.secret_access_key.as_str()),
        ("AKIAOLD", "old-secret"),
        "a redirected PUT changed nothing"
    );
    assert_eq!(
        snapshot.received_secrets,
        ["new-secret"],
        "its secret is on record, for leak checks"
    );

    // Used up: the next PUT applies. Through the control API, each redirect status is
    // accepted with a location; a location with another status, with apply or with
    // echo_request, and a redirect status without a location, are refused.
    assert_eq!(
        api.put(&credentials_path(), static_request("AKIANEW", "new-secret"))
            .await
            .status(),
        StatusCode::OK
    );
    let fault = |body: Value| api.http.post(api.url("/_fake/faults")).json(&body).send();
    for status in [301, 302, 303, 307, 308] {
        let body = json!({"operation": "deployCluster", "status": status, "location": elsewhere});
        assert_eq!(
            fault(body).await.unwrap().status(),
            StatusCode::NO_CONTENT,
            "{status}"
        );
    }
    for body in [
        json!({"operation": "deployCluster", "status": 400, "location": elsewhere}),
        json!({"operation": "deployCluster", "status": 304, "location": elsewhere}),
        json!({"operation": "deployCluster", "status": 307, "location": elsewhere, "apply": true}),
        json!({"operation": "deployCluster", "status": 307, "location": elsewhere, "echo_request": true}),
        json!({"operation": "deployCluster", "status": 307}),
    ] {
        let response = fault(body.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    // The five accepted redirects answer the next five deploys, each with its status.
    for status in [301, 302, 303, 307, 308] {
        let response = http
            .post(api.url(&deploy_path()))
            .header("Authorization", format!("Token {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()["location"], elsewhere);
    }
    let snapshot = api.fake.snapshot();
    assert_eq!(
        snapshot.clusters[0].deploy_count, 0,
        "no redirected deploy started"
    );
    let statuses: Vec<u16> = snapshot.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [307, 200, 301, 302, 303, 307, 308]);
}

#[tokio::test]
async fn a_fault_with_after_lets_that_many_calls_through_first() {
    let api = Api::start(seed(cluster())).await;
    api.fake
        .inject_fault(Fault::new("getClusterStatus", 503, 2).after_calls(2));
    // Through the control API too, on another operation: its calls do not count here.
    let response = api
        .http
        .post(api.url("/_fake/faults"))
        .json(&json!({"operation": "getAWSCredentials", "status": 500, "after": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for expected in [200, 500] {
        assert_eq!(
            api.get(&credentials_path()).await.status().as_u16(),
            expected
        );
    }
    for expected in [200, 200, 503, 503, 200] {
        assert_eq!(api.get(&status_path()).await.status().as_u16(), expected);
    }
    let statuses: Vec<u16> = api
        .fake
        .snapshot()
        .requests
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 500, 200, 200, 503, 503, 200]);
}

#[tokio::test]
async fn a_held_call_waits_unserved_until_released() {
    let api = Api::start(seed(cluster())).await;
    // The second status call is held; calls of other operations do not count.
    let mut hold = api.fake.hold("getClusterStatus", 1);
    assert_eq!(api.get(&credentials_path()).await.status(), StatusCode::OK);
    assert_eq!(api.get(&status_path()).await.status(), StatusCode::OK);
    let path = status_path();
    let held = api.get(&path);
    let look = async {
        tokio::time::timeout(std::time::Duration::from_secs(10), hold.reached())
            .await
            .expect("the second status call came in and was held");
        // While it waits, nothing of it happened yet, and other calls go through.
        let logged = api.fake.snapshot().requests.len();
        assert_eq!(api.get(&credentials_path()).await.status(), StatusCode::OK);
        hold.release();
        logged
    };
    let (response, logged) = tokio::join!(held, look);
    assert_eq!(logged, 2, "the held call was not served before the release");
    assert_eq!(response.status(), StatusCode::OK);
    let operations: Vec<String> = api
        .fake
        .snapshot()
        .requests
        .into_iter()
        .map(|r| r.operation)
        .collect();
    assert_eq!(
        operations,
        [
            "getAWSCredentials",
            "getClusterStatus",
            "getAWSCredentials",
            "getClusterStatus"
        ]
    );
    // A hold is used once; a dropped one lets its call through.
    assert_eq!(api.get(&status_path()).await.status(), StatusCode::OK);
    drop(api.fake.hold("getClusterStatus", 0));
    assert_eq!(api.get(&status_path()).await.status(), StatusCode::OK);
}

#[test]
#[should_panic(expected = "invalid hold")]
fn a_hold_names_an_operation_the_fake_serves() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = runtime.block_on(Api::start(seed(cluster())));
    api.fake.hold("*", 0);
}

#[tokio::test]
async fn the_control_api_replaces_state_and_rejects_malformed_bodies() {
    let api = Api::start(Seed::default()).await;
    let put = |body: Value| api.http.put(api.url("/_fake/state")).json(&body).send();

    let seed = json!({
        "token": TOKEN,
        "organization_id": ORG,
        "credentials": [{"id": CREDS, "name": "prod-aws", "access_key_id": "AKIAOLD"}],
        "clusters": [{"id": CLUSTER, "name": "prod", "credentials_id": CREDS, "status": "DEPLOYING", "busy_polls": 1}],
    });
    assert_eq!(put(seed).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(api.poll().await["status"], "DEPLOYED");

    let state: Value = api
        .http
        .get(api.url("/_fake/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["credentials"][0]["secret_access_key"], "");
    assert_eq!(state["clusters"][0]["status_polls"], 1);
    assert_eq!(state["requests"][0]["operation"], "getClusterStatus");

    let bad_seeds = [
        (json!({"token": TOKEN, "tokne": TOKEN}), "tokne"),
        (
            json!({"organization_id": "acme", "credentials": []}),
            "organization_id",
        ),
        (
            json!({"organization_id": ORG, "credentials": [], "clusters": [{"id": CLUSTER, "name": "prod", "credentials_id": CREDS}]}),
            CREDS,
        ),
        (
            json!({"organization_id": ORG, "credentials": [{"id": CREDS, "name": "a", "access_key_id": "b"}],
                   "clusters": [{"id": CLUSTER, "name": "prod", "credentials_id": CREDS, "status": "RUNNING"}]}),
            "RUNNING",
        ),
    ];
    for (body, named) in bad_seeds {
        let message =
            error_message(put(body.clone()).await.unwrap(), StatusCode::BAD_REQUEST).await;
        assert!(message.contains(named), "{body} gave {message:?}");
    }

    let fault = |body: Value| api.http.post(api.url("/_fake/faults")).json(&body).send();
    for body in [
        json!({"operation": "deployClusters", "status": 500, "times": 1}),
        json!({"operation": "deployCluster", "status": 200, "times": 1}),
        json!({"operation": "deployCluster", "status": 500, "retry": 1}),
    ] {
        error_message(fault(body).await.unwrap(), StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn the_control_api_sets_one_clusters_status_and_nothing_else() {
    let api = Api::start(seed(SeedCluster {
        stale_polls: 2,
        ..cluster()
    }))
    .await;
    api.deploy().await;
    let before = api.fake.snapshot();
    let post = |body: Value| {
        api.http
            .post(api.url("/_fake/cluster_status"))
            .json(&body)
            .send()
    };
    let change = json!({"cluster_id": CLUSTER, "status": "INVALID_CREDENTIALS"});
    assert_eq!(post(change).await.unwrap().status(), StatusCode::NO_CONTENT);
    // Every read reports it at once, the stale report of the previous deployment ends.
    let bulk: Value = api
        .get(&format!("/organization/{ORG}/cluster/status"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["results"][0]["status"], "INVALID_CREDENTIALS");
    assert_eq!(api.poll().await["status"], "INVALID_CREDENTIALS");
    let after = api.fake.snapshot();
    let (b, a) = (&before.clusters[0], &after.clusters[0]);
    assert_eq!(a.status, "INVALID_CREDENTIALS");
    assert_eq!(
        (
            a.deploy_count,
            &a.last_execution_id,
            &a.last_deployment_date
        ),
        (
            b.deploy_count,
            &b.last_execution_id,
            &b.last_deployment_date
        )
    );
    // The control call is not in the request log: only the deploy and the two reads.
    let operations: Vec<&str> = after
        .requests
        .iter()
        .map(|r| r.operation.as_str())
        .collect();
    assert_eq!(
        operations,
        [
            "deployCluster",
            "getOrganizationClusterStatus",
            "getClusterStatus"
        ]
    );

    api.fake.set_cluster_status(CLUSTER, "DEPLOYED");
    assert_eq!(api.poll().await["status"], "DEPLOYED");
    for (body, status, named) in [
        (
            json!({"cluster_id": CLUSTER, "status": "BROKEN"}),
            StatusCode::BAD_REQUEST,
            "BROKEN",
        ),
        (
            json!({"cluster_id": "prod", "status": "DEPLOYED"}),
            StatusCode::BAD_REQUEST,
            "prod",
        ),
        (
            json!({"cluster_id": OTHER, "status": "DEPLOYED"}),
            StatusCode::NOT_FOUND,
            OTHER,
        ),
        (
            json!({"cluster": CLUSTER, "status": "DEPLOYED"}),
            StatusCode::BAD_REQUEST,
            "cluster",
        ),
    ] {
        let message = error_message(post(body.clone()).await.unwrap(), status).await;
        assert!(message.contains(named), "{body} gave {message:?}");
    }
    assert_eq!(api.fake.snapshot().clusters[0].status, "DEPLOYED");
}

#[tokio::test]
async fn the_binary_prints_its_url_serves_and_stops_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::Command;

    let mut child = Command::new(env!("CARGO_BIN_EXE_qovery-fake"))
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let base_url = line
        .trim_end()
        .strip_prefix("qovery-fake listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url}");

    let state: Value = reqwest::get(format!("{base_url}/_fake/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state,
        json!({"credentials": [], "clusters": [], "container_registries": [],
               "helm_repositories": [], "requests": [], "received_secrets": [],
               "role_checks": []})
    );

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn the_binary_rejects_bad_arguments_with_exit_2() {
    for args in [["--port", "http"], ["--role-deploys", "maybe"]] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_qovery-fake"))
            .args(args)
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("usage: qovery-fake"), "{stderr}");
        assert!(stderr.contains(args[0]), "{stderr}");
    }
}

#[tokio::test]
async fn the_binary_fails_role_deploys_when_told_even_after_a_new_seed() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::Command;

    let mut child = Command::new(env!("CARGO_BIN_EXE_qovery-fake"))
        .args(["--port", "0", "--role-deploys", "fail"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let base_url = line
        .trim_end()
        .strip_prefix("qovery-fake listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let mut seed = seed(SeedCluster::new(CLUSTER, "prod", OTHER));
    seed.credentials.push(SeedCredentials::role(
        OTHER,
        "prod-role",
        "arn:aws:iam::123456789012:role/qovery",
    ));
    let response = http
        .put(format!("{base_url}/_fake/state"))
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let call = |method: reqwest::Method, path: String| {
        http.request(method, format!("{base_url}{path}"))
            .header("Authorization", format!("Token {TOKEN}"))
            .send()
    };
    let response = call(reqwest::Method::POST, deploy_path()).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let mut last = Value::Null;
    for _ in 0..2 {
        last = call(reqwest::Method::GET, status_path())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
    assert_eq!(last["status"], "INVALID_CREDENTIALS");
}
