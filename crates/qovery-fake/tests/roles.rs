//! Moving Qovery to an IAM role over real HTTP: role credentials created and deleted,
//! clusters pointed at other credentials (`cloudProviderInfo`), and what a deploy on
//! role credentials does.

mod support;

use qovery_fake::{
    FakeQovery, Outcome, RoleCheck, RoleDeploys, Seed, SeedCluster, SeedCredentials,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/qovery";

fn create_path() -> String {
    format!("/organization/{ORG}/aws/credentials")
}

fn entry_path(id: &str) -> String {
    format!("/organization/{ORG}/aws/credentials/{id}")
}

fn list_path() -> String {
    format!("/organization/{ORG}/credentials")
}

/// What the console's role form sends.
fn role_request(name: &str) -> Value {
    json!({"type": "AWS_ROLE", "name": name, "role_arn": ROLE_ARN})
}

async fn json_of(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Creates a role entry; returns its id.
async fn create_role(api: &Api, name: &str) -> String {
    let response = api
        .call(Method::POST, &create_path(), Some(role_request(name)))
        .await;
    let created = json_of(response, StatusCode::CREATED).await;
    created["id"].as_str().unwrap().to_owned()
}

async fn list(api: &Api) -> Value {
    json_of(api.get(&list_path()).await, StatusCode::OK).await
}

fn operations(api: &Api) -> Vec<(String, u16)> {
    api.fake
        .snapshot()
        .requests
        .into_iter()
        .map(|r| (r.operation, r.status))
        .collect()
}

#[tokio::test]
async fn a_created_role_entry_is_listed_with_no_cluster() {
    let api = Api::start(seed(cluster())).await;
    let response = api
        .call(
            Method::POST,
            &create_path(),
            Some(role_request("prod-role")),
        )
        .await;
    let created = json_of(response, StatusCode::CREATED).await;
    let id = created["id"].as_str().unwrap().to_owned();
    Uuid::parse_str(&id).unwrap();
    assert_eq!(
        created,
        json!({"id": id, "name": "prod-role", "role_arn": ROLE_ARN, "object_type": "AWS_ROLE"})
    );
    assert_eq!(
        json_of(api.get(&entry_path(&id)).await, StatusCode::OK).await,
        created
    );

    let list = list(&api).await;
    assert_eq!(
        list["results"][1],
        json!({"credential": created, "clusters": []})
    );
    assert_eq!(
        list["results"][0]["clusters"],
        json!([{"id": CLUSTER, "name": "prod", "cloud_provider": "AWS"}]),
        "the cluster stays on its static entry"
    );

    let snapshot = api.fake.snapshot();
    let held = &snapshot.credentials[1];
    assert_eq!(
        (
            held.object_type.as_str(),
            held.role_arn.as_deref(),
            held.access_key_id.as_str(),
            held.secret_access_key.as_str()
        ),
        ("AWS_ROLE", Some(ROLE_ARN), "", "")
    );
    assert!(snapshot.received_secrets.is_empty());
    assert_eq!(
        operations(&api),
        [
            ("createAWSCredentials".into(), 201),
            ("getAWSCredentials".into(), 200),
            ("listOrganizationCredentials".into(), 200)
        ]
    );

    // A second create, a retry whose answer was lost say, makes a second entry.
    let again = create_role(&api, "prod-role").await;
    assert_ne!(again, id);
    assert_eq!(api.fake.snapshot().credentials.len(), 3);
}

#[tokio::test]
async fn create_refuses_anything_but_a_role_request() {
    let api = Api::start(seed(cluster())).await;
    let with = |field: &str, value: Value| {
        let mut body = role_request("prod-role");
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = role_request("prod-role");
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases = [
        (
            json!({"type": "AWS_STATIC", "name": "prod-aws", "access_key_id": "AKIANEW",
                   "secret_access_key": "static-secret"}),
            "this fake creates only AWS_ROLE credentials",
        ),
        (
            without("type"),
            "this fake creates only AWS_ROLE credentials",
        ),
        (with("type", json!("aws_role")), "only AWS_ROLE"),
        // Terraform's provider leaves `type` out and sends the rest.
        (json!({"name": "prod-role", "role_arn": ROLE_ARN}), "`type`"),
        (with("external_id", json!("x")), "`external_id`"),
        (without("name"), "`name`"),
        (with("role_arn", json!("")), "`role_arn`"),
        (with("role_arn", json!(7)), "`role_arn`"),
        (json!([role_request("prod-role")]), "JSON object"),
    ];
    for (body, named) in cases {
        let response = api
            .call(Method::POST, &create_path(), Some(body.clone()))
            .await;
        let message = error_message(response, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(named), "{body} gave {message:?}");
        assert!(!message.contains("static-secret"), "{message}");
    }
    let snapshot = api.fake.snapshot();
    assert_eq!(snapshot.credentials.len(), 1, "nothing was created");
    assert_eq!(
        snapshot.received_secrets,
        ["static-secret"],
        "a refused static body's secret is on record, for leak checks"
    );

    let elsewhere = format!("/organization/{OTHER}/aws/credentials");
    let response = api
        .call(Method::POST, &elsewhere, Some(role_request("prod-role")))
        .await;
    error_message(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn delete_removes_an_unused_entry_and_refuses_one_in_use() {
    let api = Api::start(seed(cluster())).await;
    let role = create_role(&api, "prod-role").await;

    let response = api.call(Method::DELETE, &entry_path(&role), None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(list(&api).await["results"].as_array().unwrap().len(), 1);
    error_message(api.get(&entry_path(&role)).await, StatusCode::NOT_FOUND).await;
    let again = api.call(Method::DELETE, &entry_path(&role), None).await;
    assert!(error_message(again, StatusCode::NOT_FOUND)
        .await
        .contains(&role));

    // The static entry is the cluster's: Qovery refuses, and so does the fake.
    let response = api.call(Method::DELETE, &entry_path(CREDS), None).await;
    let message = error_message(response, StatusCode::BAD_REQUEST).await;
    assert!(
        message.contains(CLUSTER) && message.contains("prod"),
        "{message}"
    );
    assert_eq!(api.fake.snapshot().credentials[0].id, CREDS);

    let malformed = api
        .call(Method::DELETE, &entry_path("prod-aws"), None)
        .await;
    assert!(error_message(malformed, StatusCode::BAD_REQUEST)
        .await
        .contains("credentialsId"));
    let deletes: Vec<u16> = operations(&api)
        .into_iter()
        .filter(|(op, _)| op == "deleteAWSCredentials")
        .map(|(_, status)| status)
        .collect();
    assert_eq!(deletes, [204, 404, 400, 400]);
}

#[tokio::test]
async fn an_unseeded_organization_has_no_credentials_to_create_or_delete() {
    let api = Api::start(Seed {
        token: TOKEN.into(),
        ..Seed::default()
    })
    .await;
    let response = api
        .call(
            Method::POST,
            &create_path(),
            Some(role_request("prod-role")),
        )
        .await;
    error_message(response, StatusCode::NOT_FOUND).await;
    let response = api.call(Method::DELETE, &entry_path(CREDS), None).await;
    error_message(response, StatusCode::NOT_FOUND).await;
}

const STAGING: &str = "4dab8c23-5e6f-4a71-9b82-c3d4e5f60718";

fn info_path(cluster_id: &str) -> String {
    format!("/organization/{ORG}/cluster/{cluster_id}/cloudProviderInfo")
}

/// What the console sends to point a cluster at an entry.
fn info_request(credentials_id: &str, name: &str) -> Value {
    json!({"cloud_provider": "AWS", "credentials": {"id": credentials_id, "name": name},
           "region": "us-east-1"})
}

async fn point(api: &Api, cluster_id: &str, body: Value) -> reqwest::Response {
    api.call(Method::POST, &info_path(cluster_id), Some(body))
        .await
}

/// Each entry's id with the ids of the clusters the list shows under it.
async fn users(api: &Api) -> Vec<(String, Vec<String>)> {
    let list = list(api).await;
    list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let clusters = r["clusters"].as_array().unwrap();
            (
                r["credential"]["id"].as_str().unwrap().to_owned(),
                clusters
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

fn two_clusters() -> Seed {
    let mut seed = seed(cluster());
    seed.clusters
        .push(SeedCluster::new(STAGING, "staging", CREDS));
    seed
}

#[tokio::test]
async fn cloud_provider_info_shows_the_entry_a_cluster_deploys_with() {
    let api = Api::start(seed(cluster())).await;
    assert_eq!(
        json_of(api.get(&info_path(CLUSTER)).await, StatusCode::OK).await,
        json!({"cloud_provider": "AWS", "credentials": {"id": CREDS, "name": "prod-aws"},
               "region": "us-east-1"})
    );
    for path in [
        info_path(OTHER),
        format!("/organization/{OTHER}/cluster/{CLUSTER}/cloudProviderInfo"),
    ] {
        error_message(api.get(&path).await, StatusCode::NOT_FOUND).await;
        let response = api
            .call(Method::POST, &path, Some(info_request(CREDS, "prod-aws")))
            .await;
        error_message(response, StatusCode::NOT_FOUND).await;
    }
    assert_eq!(
        operations(&api)[0],
        ("getOrganizationCloudProviderInfo".into(), 200)
    );
}

#[tokio::test]
async fn pointing_a_cluster_at_another_entry_moves_it_in_the_list() {
    let api = Api::start(two_clusters()).await;
    let role = create_role(&api, "prod-role").await;

    let response = point(&api, CLUSTER, info_request(&role, "prod-role")).await;
    let moved = json_of(response, StatusCode::CREATED).await;
    let expected = json!({"cloud_provider": "AWS", "credentials": {"id": role, "name": "prod-role"},
                          "region": "us-east-1"});
    assert_eq!(moved, expected);
    assert_eq!(
        json_of(api.get(&info_path(CLUSTER)).await, StatusCode::OK).await,
        expected
    );
    assert_eq!(
        users(&api).await,
        [
            (CREDS.to_owned(), vec![STAGING.to_owned()]),
            (role.clone(), vec![CLUSTER.to_owned()])
        ]
    );
    let before = api.fake.snapshot();
    let pointing: Vec<(&str, &str)> = before
        .clusters
        .iter()
        .map(|c| (c.id.as_str(), c.credentials_id.as_str()))
        .collect();
    assert_eq!(pointing, [(CLUSTER, role.as_str()), (STAGING, CREDS)]);
    // Nothing else changed: no deploy, no key.
    assert_eq!(before.clusters[0].deploy_count, 0);
    assert_eq!(before.credentials[0].access_key_id, "AKIAOLD");

    // The same call again (a retry) answers the same and changes nothing.
    let response = point(&api, CLUSTER, info_request(&role, "prod-role")).await;
    assert_eq!(json_of(response, StatusCode::CREATED).await, expected);
    let after = api.fake.snapshot();
    assert_eq!(
        (&after.credentials, &after.clusters),
        (&before.credentials, &before.clusters)
    );

    // The role entry is in use now; back on the static entry, it can go.
    let refused = api.call(Method::DELETE, &entry_path(&role), None).await;
    error_message(refused, StatusCode::BAD_REQUEST).await;
    let response = point(&api, CLUSTER, info_request(CREDS, "prod-aws")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        users(&api).await,
        [
            (
                CREDS.to_owned(),
                vec![CLUSTER.to_owned(), STAGING.to_owned()]
            ),
            (role.clone(), vec![])
        ]
    );
    let deleted = api.call(Method::DELETE, &entry_path(&role), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        users(&api).await,
        [(
            CREDS.to_owned(),
            vec![CLUSTER.to_owned(), STAGING.to_owned()]
        )]
    );

    let specified: Vec<u16> = operations(&api)
        .into_iter()
        .filter(|(op, _)| op == "specifyClusterCloudProviderInfo")
        .map(|(_, status)| status)
        .collect();
    assert_eq!(specified, [201, 201, 201]);
}

#[tokio::test]
async fn pointing_a_cluster_refuses_a_body_the_console_would_not_send() {
    let api = Api::start(two_clusters()).await;
    let role = create_role(&api, "prod-role").await;
    let valid = info_request(&role, "prod-role");
    let edited = |change: &dyn Fn(&mut Value)| {
        let mut body = valid.clone();
        change(&mut body);
        body
    };
    let cases = [
        // Terraform's provider names the entry after the cluster.
        (
            edited(&|b| b["credentials"]["name"] = json!("prod")),
            "the cluster's name",
        ),
        (
            edited(&|b| b["credentials"]["name"] = json!("prod-aws")),
            "`credentials.name`",
        ),
        (
            edited(&|b| {
                b["credentials"].as_object_mut().unwrap().remove("name");
            }),
            "`credentials.name`",
        ),
        (edited(&|b| b["credentials"]["id"] = json!(OTHER)), OTHER),
        (
            edited(&|b| b["credentials"]["id"] = json!("prod-role")),
            "`credentials.id` is not a UUID",
        ),
        (
            edited(&|b| b["credentials"]["role_arn"] = json!(ROLE_ARN)),
            "`credentials.role_arn`",
        ),
        (
            edited(&|b| {
                b.as_object_mut().unwrap().remove("credentials");
            }),
            "`credentials`",
        ),
        (edited(&|b| b["region"] = json!("eu-west-3")), "`region`"),
        (
            edited(&|b| {
                b.as_object_mut().unwrap().remove("region");
            }),
            "`region`",
        ),
        (
            edited(&|b| b["cloud_provider"] = json!("SCW")),
            "`cloud_provider`",
        ),
        (
            edited(&|b| {
                b.as_object_mut().unwrap().remove("cloud_provider");
            }),
            "`cloud_provider`",
        ),
        (edited(&|b| b["id"] = json!(CLUSTER)), "`id`"),
        (json!([valid.clone()]), "JSON object"),
    ];
    for (body, named) in cases {
        let message = error_message(
            point(&api, CLUSTER, body.clone()).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains(named), "{body} gave {message:?}");
    }
    let tf_style = edited(&|b| b["credentials"]["name"] = json!("prod"));
    let message = error_message(
        point(&api, CLUSTER, tf_style).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("Terraform"), "{message}");
    let malformed = api.call(Method::POST, &info_path(CLUSTER), None).await;
    error_message(malformed, StatusCode::BAD_REQUEST).await;

    let snapshot = api.fake.snapshot();
    assert!(
        snapshot.clusters.iter().all(|c| c.credentials_id == CREDS),
        "no refused call moved a cluster"
    );
}

#[tokio::test]
async fn an_entry_is_never_edited_into_a_role() {
    let api = Api::start(seed(cluster())).await;
    // What the console's edit form sends to turn a static entry into a role.
    let response = api.put(&entry_path(CREDS), role_request("prod-aws")).await;
    let message = error_message(response, StatusCode::BAD_REQUEST).await;
    assert!(
        message.contains("`type`") && message.contains("AWS_ROLE"),
        "{message}"
    );
    let held = &api.fake.snapshot().credentials[0];
    assert_eq!(
        (
            held.object_type.as_str(),
            held.access_key_id.as_str(),
            held.secret_access_key.as_str(),
            held.role_arn.as_deref()
        ),
        ("AWS", "AKIAOLD", "old-secret", None)
    );
    assert_eq!(operations(&api), [("editAWSCredentials".into(), 400)]);
}

/// The cluster deploys with role credentials from the start.
fn on_role(cluster: SeedCluster) -> Seed {
    let mut seed = seed(SeedCluster {
        credentials_id: OTHER.into(),
        ..cluster
    });
    seed.credentials
        .push(SeedCredentials::role(OTHER, "prod-role", ROLE_ARN));
    seed
}

/// Deploys the cluster and polls until it settles; returns its last status.
async fn deploy_to_the_end(api: &Api) -> String {
    let queued = json_of(api.deploy().await, StatusCode::CREATED).await;
    assert_eq!(queued["status"], "DEPLOYMENT_QUEUED");
    assert_eq!(api.poll().await["status"], "DEPLOYING");
    let last = api.poll().await["status"].as_str().unwrap().to_owned();
    assert_eq!(
        api.poll().await["status"],
        last.as_str(),
        "a final state stays"
    );
    last
}

fn role_check(ok: bool, error: Option<String>) -> RoleCheck {
    RoleCheck {
        cluster_id: CLUSTER.into(),
        role_arn: ROLE_ARN.into(),
        ok,
        error,
    }
}

#[tokio::test]
async fn a_deploy_on_a_role_ends_as_role_deploys_says() {
    let api = Api::start(on_role(cluster())).await;
    assert_eq!(deploy_to_the_end(&api).await, "DEPLOYED");
    assert_eq!(api.fake.snapshot().role_checks, [role_check(true, None)]);

    api.fake.set_role_deploys(RoleDeploys::Fail);
    let before = api.fake.snapshot().clusters[0].clone();
    assert_eq!(deploy_to_the_end(&api).await, "INVALID_CREDENTIALS");
    let snapshot = api.fake.snapshot();
    let after = &snapshot.clusters[0];
    assert_eq!(after.deploy_count, 2);
    assert_eq!(
        after.last_deployment_date, before.last_deployment_date,
        "a failed deployment is not a deployment date"
    );
    let failed = &snapshot.role_checks[1];
    assert!(!failed.ok);
    let error = failed.error.as_deref().unwrap();
    assert!(
        error.contains(ROLE_ARN) && error.contains(CLUSTER),
        "{error}"
    );

    // The next deployment is judged afresh.
    api.fake.set_role_deploys(RoleDeploys::Succeed);
    assert_eq!(deploy_to_the_end(&api).await, "DEPLOYED");
    let oks: Vec<bool> = api
        .fake
        .snapshot()
        .role_checks
        .iter()
        .map(|c| c.ok)
        .collect();
    assert_eq!(oks, [true, false, true]);
}

#[tokio::test]
async fn a_failed_role_overrides_the_seeded_outcome_and_a_good_one_keeps_it() {
    for (outcome, role_deploys, last) in [
        (
            Outcome::DeploymentError,
            RoleDeploys::Succeed,
            "DEPLOYMENT_ERROR",
        ),
        (
            Outcome::DeploymentError,
            RoleDeploys::Fail,
            "INVALID_CREDENTIALS",
        ),
        (Outcome::Stuck, RoleDeploys::Fail, "INVALID_CREDENTIALS"),
    ] {
        let api = Api::start(on_role(SeedCluster {
            outcome,
            ..cluster()
        }))
        .await;
        api.fake.set_role_deploys(role_deploys.clone());
        assert_eq!(
            deploy_to_the_end(&api).await,
            last,
            "{outcome:?} {role_deploys:?}"
        );
    }
}

#[tokio::test]
async fn only_real_deploys_on_role_credentials_try_the_role() {
    let mut seed = on_role(cluster());
    seed.clusters
        .push(SeedCluster::new(STAGING, "staging", CREDS));
    let api = Api::start(seed).await;
    api.fake.set_role_deploys(RoleDeploys::Fail);

    // A cluster on static keys deploys as before.
    let staging = format!("/organization/{ORG}/cluster/{STAGING}");
    let response = api
        .call(Method::POST, &format!("{staging}/deploy"), None)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    for expected in ["DEPLOYING", "DEPLOYED"] {
        let status = json_of(api.get(&format!("{staging}/status")).await, StatusCode::OK).await;
        assert_eq!(status["status"], expected);
    }
    // A dry run, and a deploy refused because the cluster is busy, try nothing.
    let dry_run = api
        .call(
            Method::POST,
            &format!("{}?dry_run=true", deploy_path()),
            None,
        )
        .await;
    assert_eq!(dry_run.status(), StatusCode::CREATED);
    assert!(api.fake.snapshot().role_checks.is_empty());
    assert_eq!(api.deploy().await.status(), StatusCode::CREATED);
    error_message(api.deploy().await, StatusCode::BAD_REQUEST).await;
    assert_eq!(api.fake.snapshot().role_checks.len(), 1);
}

#[tokio::test]
async fn a_cluster_moved_to_a_role_deploys_with_it() {
    let api = Api::start(seed(cluster())).await;
    api.fake.set_role_deploys(RoleDeploys::Fail);
    assert_eq!(deploy_to_the_end(&api).await, "DEPLOYED");
    let role = create_role(&api, "prod-role").await;
    let response = point(&api, CLUSTER, info_request(&role, "prod-role")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(deploy_to_the_end(&api).await, "INVALID_CREDENTIALS");
    // Back on its static entry, it deploys again.
    let response = point(&api, CLUSTER, info_request(CREDS, "prod-aws")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(deploy_to_the_end(&api).await, "DEPLOYED");
    assert_eq!(api.fake.snapshot().role_checks.len(), 1);
}

#[tokio::test]
async fn role_deploys_is_set_by_the_control_api_and_outlives_a_new_seed() {
    let api = Api::start(Seed::default()).await;
    let post = |body: Value| {
        api.http
            .post(api.url("/_fake/role_deploys"))
            .json(&body)
            .send()
    };
    let response = post(json!({"role_deploys": "fail"})).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for body in [
        json!({"role_deploys": "maybe"}),
        json!({"role_deploys": "fail", "role_arn": ROLE_ARN}),
        json!("fail"),
    ] {
        let response = post(body.clone()).await.unwrap();
        error_message(response, StatusCode::BAD_REQUEST).await;
    }
    let response = api
        .http
        .put(api.url("/_fake/state"))
        .json(&on_role(cluster()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(deploy_to_the_end(&api).await, "INVALID_CREDENTIALS");

    let state: Value = api
        .http
        .get(api.url("/_fake/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let check = &state["role_checks"][0];
    assert_eq!(
        (&check["cluster_id"], &check["role_arn"], &check["ok"]),
        (&json!(CLUSTER), &json!(ROLE_ARN), &json!(false))
    );
    assert!(check["error"].is_string(), "{check}");
    assert_eq!(
        state["clusters"][0]["credentials_id"], OTHER,
        "the snapshot says where the cluster points"
    );
    assert_eq!(state["credentials"][1]["object_type"], "AWS_ROLE");
    assert_eq!(state["credentials"][1]["role_arn"], ROLE_ARN);

    // In process, a seed given at the start is judged the same way, and set_state
    // keeps the setting too.
    let fake = FakeQovery::new(on_role(cluster()))
        .with_role_deploys(RoleDeploys::Fail)
        .spawn(0)
        .await
        .unwrap();
    fake.set_state(on_role(cluster()));
    let api = Api {
        fake,
        http: reqwest::Client::new(),
    };
    assert_eq!(deploy_to_the_end(&api).await, "INVALID_CREDENTIALS");
}
