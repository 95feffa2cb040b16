//! Moving Qovery to an IAM role over real HTTP: role credentials created and deleted,
//! clusters pointed at other credentials (`cloudProviderInfo`), and what a deploy on
//! role credentials does.

mod support;

use qovery_fake::Seed;
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
