//! Container registries and helm repositories over real HTTP: what GET shows, and the
//! strict PUT that must send back every field to change only the key.

mod support;

use qovery_fake::{Fault, RegistrySnapshot, Seed, SeedRegistry};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

const MIRROR: &str = "5a0e8f7c-1b2d-4e3f-9a8b-7c6d5e4f3a21";
const ROLE_REGISTRY: &str = "6b1f9a8d-2c3e-4f5a-8b9c-8d7e6f5a4b32";
const DOCKER: &str = "7c2a0b9e-3d4f-4a6b-9cad-9e8f7a6b5c43";
const CHARTS: &str = "8d3b1caf-4e5a-4b7c-8dbe-af9a8b7c6d54";
const PUBLIC_CHARTS: &str = "9e4c2d0a-5f6b-4c8d-9ecf-ba0b9c8d7e65";
const SECRET: &str = "mirror-secret-0123456789";
const NEW_SECRET: &str = "new/secret+of-forty-characters-abcdefgh";

fn mirror() -> SeedRegistry {
    SeedRegistry::ecr(MIRROR, "prod-mirror", "us-east-1", "AKIAOLD", SECRET)
        .mirroring(CLUSTER)
        .with_description("images mirrored for prod")
}

fn charts() -> SeedRegistry {
    SeedRegistry::oci_ecr(CHARTS, "charts", "eu-west-3", "AKIAOLD", "charts-secret")
}

fn registries_seed() -> Seed {
    Seed {
        container_registries: vec![
            mirror(),
            SeedRegistry::ecr_role(
                ROLE_REGISTRY,
                "by-role",
                "us-east-1",
                "arn:aws:iam::123456789012:role/ecr",
            ),
            SeedRegistry::other(DOCKER, "hub", "DOCKER_HUB", "https://docker.io"),
        ],
        helm_repositories: vec![
            charts(),
            SeedRegistry {
                skip_tls_verification: true,
                ..SeedRegistry::other(
                    PUBLIC_CHARTS,
                    "bitnami",
                    "HTTPS",
                    "https://charts.bitnami.com/bitnami",
                )
            },
        ],
        ..seed(cluster())
    }
}

fn registry_path(id: &str) -> String {
    format!("/organization/{ORG}/containerRegistry/{id}")
}

fn helm_path(id: &str) -> String {
    format!("/organization/{ORG}/helmRepository/{id}")
}

/// Asserts RFC 3339 `created_at` and `updated_at`, then takes them out of `object`.
fn without_dates(mut object: Value) -> Value {
    for field in ["created_at", "updated_at"] {
        let date = object[field].as_str().unwrap_or_else(|| panic!("{object}"));
        OffsetDateTime::parse(date, &Rfc3339).unwrap_or_else(|e| panic!("{date}: {e}"));
        object.as_object_mut().unwrap().remove(field);
    }
    object
}

async fn body_of(api: &Api, path: &str) -> Value {
    let response = api.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn registries_are_listed_and_read_without_their_secret() {
    let api = Api::start(registries_seed()).await;

    let list = body_of(&api, &format!("/organization/{ORG}/containerRegistry")).await;
    let results = list["results"].as_array().unwrap();
    let shown: Vec<Value> = results.iter().cloned().map(without_dates).collect();
    assert_eq!(
        shown,
        [
            json!({"id": MIRROR, "name": "prod-mirror", "kind": "ECR",
                   "url": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
                   "description": "images mirrored for prod",
                   "cluster": {"id": CLUSTER, "name": "prod"},
                   "associated_services_count": 0,
                   "config": {"region": "us-east-1", "access_key_id": "AKIAOLD"}}),
            json!({"id": ROLE_REGISTRY, "name": "by-role", "kind": "ECR",
                   "url": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
                   "associated_services_count": 0,
                   "config": {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/ecr"}}),
            json!({"id": DOCKER, "name": "hub", "kind": "DOCKER_HUB", "url": "https://docker.io",
                   "associated_services_count": 0, "config": {}}),
        ]
    );
    for registry in results {
        let id = registry["id"].as_str().unwrap();
        assert_eq!(&body_of(&api, &registry_path(id)).await, registry);
    }

    let list = body_of(&api, &format!("/organization/{ORG}/helmRepository")).await;
    let results = list["results"].as_array().unwrap();
    let shown: Vec<Value> = results.iter().cloned().map(without_dates).collect();
    assert_eq!(
        shown,
        [
            json!({"id": CHARTS, "name": "charts", "kind": "OCI_ECR",
                   "url": "oci://123456789012.dkr.ecr.eu-west-3.amazonaws.com",
                   "skip_tls_verification": false, "associated_services_count": 0,
                   "config": {"region": "eu-west-3", "access_key_id": "AKIAOLD"}}),
            json!({"id": PUBLIC_CHARTS, "name": "bitnami", "kind": "HTTPS",
                   "url": "https://charts.bitnami.com/bitnami",
                   "skip_tls_verification": true, "associated_services_count": 0, "config": {}}),
        ]
    );
    assert_eq!(&body_of(&api, &helm_path(CHARTS)).await, &results[0]);

    for path in [
        format!("/organization/{ORG}/containerRegistry"),
        registry_path(MIRROR),
        format!("/organization/{ORG}/helmRepository"),
        helm_path(CHARTS),
    ] {
        let text = api.get(&path).await.text().await.unwrap();
        for secret in [SECRET, "charts-secret"] {
            assert!(!text.contains(secret), "GET {path} leaked a secret: {text}");
        }
    }
}

#[tokio::test]
async fn unknown_registries_are_404_and_malformed_ids_are_400() {
    let api = Api::start(registries_seed()).await;
    for path in [
        registry_path(OTHER),
        helm_path(OTHER),
        // The lists are apart: a container registry is not a helm repository.
        helm_path(MIRROR),
        format!("/organization/{OTHER}/containerRegistry/{MIRROR}"),
        format!("/organization/{OTHER}/helmRepository"),
    ] {
        error_message(api.get(&path).await, StatusCode::NOT_FOUND).await;
    }
    let message = error_message(
        api.get(&registry_path("mirror")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("containerRegistryId"), "{message}");
    let message = error_message(
        api.put(&helm_path(OTHER), helm_put("AKIANEW", NEW_SECRET))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(message.contains(OTHER), "{message}");
}

/// What a client that read the mirror registry sends back to change its key.
fn mirror_put(key: &str, secret: &str) -> Value {
    json!({
        "name": "prod-mirror",
        "kind": "ECR",
        "url": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "description": "images mirrored for prod",
        "config": {"region": "us-east-1", "access_key_id": key, "secret_access_key": secret},
    })
}

fn helm_put(key: &str, secret: &str) -> Value {
    json!({
        "name": "charts",
        "kind": "OCI_ECR",
        "url": "oci://123456789012.dkr.ecr.eu-west-3.amazonaws.com",
        "skip_tls_verification": false,
        "config": {"region": "eu-west-3", "access_key_id": key, "secret_access_key": secret},
    })
}

#[tokio::test]
async fn a_put_sending_back_every_field_changes_only_the_key() {
    let api = Api::start(registries_seed()).await;
    for (path, body) in [
        (registry_path(MIRROR), mirror_put("AKIANEW", NEW_SECRET)),
        (helm_path(CHARTS), helm_put("AKIANEW", NEW_SECRET)),
    ] {
        let before = body_of(&api, &path).await;
        let response = api.put(&path, body).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        assert!(!text.contains(NEW_SECRET), "{text}");
        let after: Value = serde_json::from_str(&text).unwrap();

        let mut expected = before.clone();
        expected["config"]["access_key_id"] = json!("AKIANEW");
        expected["updated_at"] = after["updated_at"].clone();
        assert_eq!(after, expected);
        assert_ne!(after["updated_at"], before["updated_at"]);
        assert_eq!(after["created_at"], before["created_at"]);
        assert_eq!(body_of(&api, &path).await, after);
    }

    let snapshot = api.fake.snapshot();
    for held in [
        &snapshot.container_registries[0],
        &snapshot.helm_repositories[0],
    ] {
        assert_eq!(
            (
                held.access_key_id.as_deref(),
                held.secret_access_key.as_deref()
            ),
            (Some("AKIANEW"), Some(NEW_SECRET))
        );
    }
    assert_eq!(
        snapshot.container_registries[0],
        RegistrySnapshot {
            access_key_id: Some("AKIANEW".into()),
            secret_access_key: Some(NEW_SECRET.into()),
            ..registry_snapshot_of(mirror())
        }
    );
    assert_eq!(snapshot.received_secrets, [NEW_SECRET]);
    let operations: Vec<&str> = snapshot
        .requests
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.operation.as_str())
        .collect();
    assert_eq!(operations, ["editContainerRegistry", "editHelmRepository"]);
}

fn registry_snapshot_of(seed: SeedRegistry) -> RegistrySnapshot {
    RegistrySnapshot {
        id: seed.id,
        name: seed.name,
        kind: seed.kind,
        url: seed.url,
        description: seed.description,
        skip_tls_verification: seed.skip_tls_verification,
        cluster_id: seed.cluster_id,
        region: seed.region,
        access_key_id: seed.access_key_id,
        secret_access_key: seed.secret_access_key,
        role_arn: seed.role_arn,
    }
}

/// Sends `body` to `path`, expects a 400 naming `field` and not the secret, and
/// checks that nothing changed but the secret's being on record (if it was sent).
async fn assert_refused(path: &str, body: Value, field: &str) {
    let api = Api::start(registries_seed()).await;
    let before = api.fake.snapshot();
    let response = api.put(path, body.clone()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    let text = response.text().await.unwrap();
    assert!(!text.contains(NEW_SECRET), "the secret leaked: {text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["status"], 400);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(field), "{body} gave {message:?}");

    let after = api.fake.snapshot();
    assert_eq!(after.container_registries, before.container_registries);
    assert_eq!(after.helm_repositories, before.helm_repositories);
    let sent = body.to_string().contains(NEW_SECRET);
    assert_eq!(
        after.received_secrets.iter().any(|s| s == NEW_SECRET),
        sent,
        "{body}: a refused secret stays on record"
    );
}

fn edited(mut body: Value, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    change(body.as_object_mut().unwrap());
    body
}

fn mirror_edited(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    edited(mirror_put("AKIANEW", NEW_SECRET), change)
}

fn helm_edited(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    edited(helm_put("AKIANEW", NEW_SECRET), change)
}

#[tokio::test]
async fn a_put_that_drops_the_url_is_refused() {
    let body = mirror_edited(|b| {
        b.remove("url");
    });
    assert_refused(&registry_path(MIRROR), body, "`url`").await;
}

#[tokio::test]
async fn a_put_that_changes_the_name_is_refused() {
    let body = mirror_edited(|b| {
        b.insert("name".into(), json!("prod-mirror-2"));
    });
    assert_refused(&registry_path(MIRROR), body, "`name`").await;
}

#[tokio::test]
async fn a_put_that_changes_the_description_is_refused() {
    let body = mirror_edited(|b| {
        b.insert("description".into(), json!("rotated"));
    });
    assert_refused(&registry_path(MIRROR), body, "`description`").await;
}

#[tokio::test]
async fn a_put_that_drops_the_description_is_refused() {
    let body = mirror_edited(|b| {
        b.remove("description");
    });
    assert_refused(&registry_path(MIRROR), body, "`description`").await;
}

#[tokio::test]
async fn a_put_that_adds_a_description_is_refused() {
    // The helm repository has none: sending one (even empty) would add it.
    let body = helm_edited(|b| {
        b.insert("description".into(), json!(""));
    });
    assert_refused(&helm_path(CHARTS), body, "`description`").await;
}

#[tokio::test]
async fn a_put_with_a_role_arn_in_the_config_is_refused() {
    let body = mirror_edited(|b| {
        b["config"]["role_arn"] = json!("arn:aws:iam::123456789012:role/ecr");
    });
    assert_refused(&registry_path(MIRROR), body, "`config.role_arn`").await;
}

#[tokio::test]
async fn a_put_that_changes_the_region_is_refused() {
    let body = helm_edited(|b| {
        b["config"]["region"] = json!("us-east-1");
    });
    assert_refused(&helm_path(CHARTS), body, "`config.region`").await;
}

#[tokio::test]
async fn a_helm_put_without_skip_tls_verification_is_refused() {
    let body = helm_edited(|b| {
        b.remove("skip_tls_verification");
    });
    assert_refused(&helm_path(CHARTS), body, "`skip_tls_verification`").await;
}

#[tokio::test]
async fn a_put_with_an_unknown_top_level_field_is_refused() {
    let body = mirror_edited(|b| {
        b.insert("cluster".into(), json!({"id": CLUSTER, "name": "prod"}));
    });
    assert_refused(&registry_path(MIRROR), body, "`cluster`").await;
}

#[tokio::test]
async fn other_malformed_puts_are_refused() {
    let cases = [
        (
            mirror_edited(|b| {
                b.remove("kind");
            }),
            "`kind`",
        ),
        (
            mirror_edited(|b| {
                b.insert("kind".into(), json!("PUBLIC_ECR"));
            }),
            "`kind`",
        ),
        (
            mirror_edited(|b| {
                b.insert("url".into(), json!(null));
            }),
            "`url`",
        ),
        (
            mirror_edited(|b| {
                b.remove("config");
            }),
            "`config`",
        ),
        (
            mirror_edited(|b| {
                b["config"].as_object_mut().unwrap().remove("region");
            }),
            "`config.region`",
        ),
        (
            mirror_edited(|b| {
                b["config"]["access_key_id"] = json!("");
            }),
            "`config.access_key_id`",
        ),
        (
            mirror_edited(|b| {
                b["config"]["secret_key"] = json!("x");
            }),
            "`config.secret_key`",
        ),
        (
            mirror_edited(|b| {
                b.insert("secret_access_key".into(), json!("x"));
            }),
            "`secret_access_key`",
        ),
    ];
    for (body, field) in cases {
        assert_refused(&registry_path(MIRROR), body, field).await;
    }
    assert_refused(
        &helm_path(CHARTS),
        helm_edited(|b| {
            b.insert("skip_tls_verification".into(), json!("false"));
        }),
        "`skip_tls_verification`",
    )
    .await;
    assert_refused(
        &registry_path(MIRROR),
        json!([mirror_put("AKIANEW", NEW_SECRET)]),
        "JSON object",
    )
    .await;
}

#[tokio::test]
async fn only_static_ecr_keys_can_be_edited() {
    let role_body = json!({
        "name": "by-role", "kind": "ECR",
        "url": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "config": {"region": "us-east-1", "access_key_id": "AKIANEW", "secret_access_key": NEW_SECRET},
    });
    assert_refused(&registry_path(ROLE_REGISTRY), role_body, "static ECR keys").await;
    let docker_body = json!({
        "name": "hub", "kind": "DOCKER_HUB", "url": "https://docker.io",
        "config": {"username": "me", "password": NEW_SECRET, "secret_access_key": NEW_SECRET},
    });
    assert_refused(&registry_path(DOCKER), docker_body, "static ECR keys").await;
}

const ROLE: &str = "arn:aws:iam::123456789012:role/qovery";

/// What the console's role form sends back: the key's fields replaced by the role.
fn with_role(mut body: Value, role_arn: &str) -> Value {
    let region = body["config"]["region"].clone();
    body["config"] = json!({"region": region, "role_arn": role_arn});
    body
}

#[tokio::test]
async fn a_role_put_switches_an_ecr_object_to_the_role_and_drops_its_key() {
    let api = Api::start(registries_seed()).await;
    for (path, body) in [
        (
            registry_path(MIRROR),
            with_role(mirror_put("AKIANEW", NEW_SECRET), ROLE),
        ),
        (
            helm_path(CHARTS),
            with_role(helm_put("AKIANEW", NEW_SECRET), ROLE),
        ),
    ] {
        let before = body_of(&api, &path).await;
        let response = api.put(&path, body.clone()).await;
        assert_eq!(response.status(), StatusCode::OK, "{body}");
        let after: Value = response.json().await.unwrap();
        let mut expected = before.clone();
        expected["config"] = json!({"region": before["config"]["region"], "role_arn": ROLE});
        expected["updated_at"] = after["updated_at"].clone();
        assert_eq!(after, expected);
        assert_eq!(body_of(&api, &path).await, after);

        // Sent again (a retry), it answers the same.
        let again: Value = api.put(&path, body).await.json().await.unwrap();
        assert_eq!(again["config"], after["config"]);
    }

    let snapshot = api.fake.snapshot();
    assert_eq!(
        snapshot.container_registries[0],
        RegistrySnapshot {
            access_key_id: None,
            secret_access_key: None,
            role_arn: Some(ROLE.into()),
            ..registry_snapshot_of(mirror())
        }
    );
    assert_eq!(
        snapshot.helm_repositories[0],
        RegistrySnapshot {
            access_key_id: None,
            secret_access_key: None,
            role_arn: Some(ROLE.into()),
            ..registry_snapshot_of(charts())
        }
    );
    assert!(snapshot.received_secrets.is_empty());

    // A registry already on a role takes another one.
    let other_role = "arn:aws:iam::123456789012:role/other";
    let body = json!({
        "name": "by-role", "kind": "ECR",
        "url": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "config": {"region": "us-east-1", "role_arn": other_role},
    });
    let response = api.put(&registry_path(ROLE_REGISTRY), body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        api.fake.snapshot().container_registries[1]
            .role_arn
            .as_deref(),
        Some(other_role)
    );

    // Once on the role, a static key is refused, as for any role registry.
    let response = api
        .put(&registry_path(MIRROR), mirror_put("AKIANEW", NEW_SECRET))
        .await;
    let message = error_message(response, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("static ECR keys"), "{message}");
}

#[tokio::test]
async fn a_role_put_is_as_strict_as_a_key_put() {
    let role_put = |change: &dyn Fn(&mut Value)| {
        let mut body = with_role(mirror_put("AKIANEW", NEW_SECRET), ROLE);
        change(&mut body);
        body
    };
    let cases = [
        (
            role_put(&|b| b["config"]["region"] = json!("eu-west-3")),
            "`config.region`",
        ),
        (
            role_put(&|b| {
                b["config"].as_object_mut().unwrap().remove("region");
            }),
            "`config.region`",
        ),
        (
            role_put(&|b| b["config"]["role_arn"] = json!("")),
            "`config.role_arn`",
        ),
        (
            role_put(&|b| b["config"]["external_id"] = json!("x")),
            "`config.external_id`",
        ),
        (role_put(&|b| b["name"] = json!("renamed")), "`name`"),
        (
            role_put(&|b| {
                b.as_object_mut().unwrap().remove("description");
            }),
            "`description`",
        ),
    ];
    for (body, field) in cases {
        assert_refused(&registry_path(MIRROR), body, field).await;
    }
    let helm = with_role(helm_put("AKIANEW", NEW_SECRET), ROLE);
    let mut without_tls = helm.clone();
    without_tls
        .as_object_mut()
        .unwrap()
        .remove("skip_tls_verification");
    assert_refused(&helm_path(CHARTS), without_tls, "`skip_tls_verification`").await;
}

#[tokio::test]
async fn a_role_is_for_ecr_kinds_only() {
    let docker = json!({
        "name": "hub", "kind": "DOCKER_HUB", "url": "https://docker.io",
        "config": {"region": "us-east-1", "role_arn": ROLE},
    });
    assert_refused(&registry_path(DOCKER), docker, "for kind ECR only").await;
    let https = json!({
        "name": "bitnami", "kind": "HTTPS", "url": "https://charts.bitnami.com/bitnami",
        "skip_tls_verification": true,
        "config": {"role_arn": ROLE},
    });
    assert_refused(&helm_path(PUBLIC_CHARTS), https, "for kind OCI_ECR only").await;
}

#[tokio::test]
async fn an_applied_fault_on_a_registry_put_changes_the_key_but_loses_the_answer() {
    let api = Api::start(registries_seed()).await;
    api.fake
        .inject_fault(Fault::new("editContainerRegistry", 504, 1).after_applying());
    let page = gateway_page(
        api.put(&registry_path(MIRROR), mirror_put("AKIANEW", NEW_SECRET))
            .await,
        StatusCode::GATEWAY_TIMEOUT,
    )
    .await;
    assert!(!page.contains(NEW_SECRET), "{page}");
    let held = &api.fake.snapshot().container_registries[0];
    assert_eq!(
        (
            held.access_key_id.as_deref(),
            held.secret_access_key.as_deref()
        ),
        (Some("AKIANEW"), Some(NEW_SECRET))
    );

    // A plain fault changes nothing, but the secret did reach Qovery's door.
    api.fake
        .inject_fault(Fault::new("editHelmRepository", 503, 1));
    let response = api
        .put(&helm_path(CHARTS), helm_put("AKIANEW", "other-secret"))
        .await;
    assert_eq!(
        error_message(response, StatusCode::SERVICE_UNAVAILABLE).await,
        "injected fault"
    );
    api.fake
        .inject_fault(Fault::new("listHelmRepository", 500, 1));
    let response = api
        .get(&format!("/organization/{ORG}/helmRepository"))
        .await;
    error_message(response, StatusCode::INTERNAL_SERVER_ERROR).await;

    let snapshot = api.fake.snapshot();
    assert_eq!(
        snapshot.helm_repositories[0].secret_access_key.as_deref(),
        Some("charts-secret")
    );
    assert_eq!(snapshot.received_secrets, [NEW_SECRET, "other-secret"]);
    let calls: Vec<(&str, u16)> = snapshot
        .requests
        .iter()
        .map(|r| (r.operation.as_str(), r.status))
        .collect();
    assert_eq!(
        calls,
        [
            ("editContainerRegistry", 504),
            ("editHelmRepository", 503),
            ("listHelmRepository", 500)
        ]
    );
}

#[tokio::test]
async fn the_control_api_adds_and_replaces_a_registry_without_a_reset() {
    let api = Api::start(seed(cluster())).await;
    api.fake
        .inject_fault(Fault::new("getContainerRegistry", 500, 1).after_calls(1));
    assert_eq!(
        body_of(&api, &format!("/organization/{ORG}/containerRegistry")).await,
        json!({"results": []})
    );

    let post = |path: &'static str, body: Value| api.http.post(api.url(path)).json(&body).send();
    let added = serde_json::to_value(mirror()).unwrap();
    let response = post("/_fake/container_registries", added).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let first = body_of(&api, &registry_path(MIRROR)).await;
    assert_eq!(first["config"]["access_key_id"], "AKIAOLD");
    assert_eq!(first["cluster"]["name"], "prod");

    // Replaced in the middle of a rotation: it now holds another key.
    let replaced = SeedRegistry::ecr(MIRROR, "prod-mirror", "us-east-1", "AKIAOTHER", "x")
        .mirroring(CLUSTER)
        .with_description("images mirrored for prod");
    api.fake.put_container_registry(replaced);
    api.fake.put_helm_repository(charts());
    // The fault set before is still armed, and its call count kept.
    error_message(
        api.get(&registry_path(MIRROR)).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    let second = body_of(&api, &registry_path(MIRROR)).await;
    assert_eq!(second["config"]["access_key_id"], "AKIAOTHER");
    assert_eq!(second["created_at"], first["created_at"]);

    let snapshot = api.fake.snapshot();
    assert_eq!(snapshot.container_registries.len(), 1);
    assert_eq!(snapshot.helm_repositories.len(), 1);
    assert_eq!(snapshot.clusters.len(), 1);
    let operations: Vec<&str> = snapshot
        .requests
        .iter()
        .map(|r| r.operation.as_str())
        .collect();
    assert_eq!(
        operations,
        [
            "listContainerRegistry",
            "getContainerRegistry",
            "getContainerRegistry",
            "getContainerRegistry"
        ],
        "the request log was kept"
    );

    for (path, body, named) in [
        (
            "/_fake/container_registries",
            json!({"id": OTHER, "name": "x", "kind": "OCI_ECR"}),
            "OCI_ECR",
        ),
        (
            "/_fake/helm_repositories",
            json!({"id": OTHER, "name": "x", "kind": "OCI_ECR", "regoin": "us-east-1"}),
            "regoin",
        ),
        (
            "/_fake/container_registries",
            serde_json::to_value(
                SeedRegistry::ecr(OTHER, "x", "us-east-1", "k", "s").mirroring(CLUSTER),
            )
            .unwrap(),
            "mirroring registry",
        ),
    ] {
        let response = post(path, body.clone()).await.unwrap();
        let message = error_message(response, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(named), "{body} gave {message:?}");
    }

    let unseeded = Api::start(Seed::default()).await;
    let response = unseeded
        .http
        .post(unseeded.url("/_fake/helm_repositories"))
        .json(&charts())
        .send()
        .await
        .unwrap();
    let message = error_message(response, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("organization"), "{message}");
}

#[tokio::test]
async fn invalid_registry_seeds_are_refused_saying_why() {
    let with = |change: fn(&mut Seed)| {
        let mut seed = registries_seed();
        change(&mut seed);
        seed
    };
    let cases: [(Seed, &str); 12] = [
        (
            with(|s| s.container_registries[0].id = "mirror".into()),
            "\"mirror\" is not a UUID",
        ),
        (
            with(|s| s.container_registries[1].id = MIRROR.into()),
            "appears twice",
        ),
        (
            with(|s| s.container_registries[0].kind = "OCI_ECR".into()),
            "ContainerRegistryKindEnum",
        ),
        (
            with(|s| s.helm_repositories[0].kind = "ECR".into()),
            "HelmRepositoryKindEnum",
        ),
        (
            with(|s| s.container_registries[0].cluster_id = Some(OTHER.into())),
            OTHER,
        ),
        (
            with(|s| s.container_registries[1].cluster_id = Some(CLUSTER.into())),
            "already has a mirroring registry",
        ),
        (
            with(|s| s.helm_repositories[0].cluster_id = Some(CLUSTER.into())),
            "cluster_id",
        ),
        (
            with(|s| s.container_registries[0].skip_tls_verification = true),
            "skip_tls_verification",
        ),
        (with(|s| s.container_registries[0].region = None), "region"),
        (
            with(|s| s.container_registries[0].role_arn = Some("arn:aws:iam::1:role/r".into())),
            "not both",
        ),
        (
            with(|s| s.container_registries[2].access_key_id = Some("AKIA".into())),
            "DOCKER_HUB holds no AWS key",
        ),
        (
            with(|s| s.organization_id = String::new()),
            "organization_id",
        ),
    ];
    for (seed, named) in cases {
        let error = match qovery_fake::FakeQovery::try_new(seed.clone()) {
            Ok(_) => panic!("{seed:?} was accepted"),
            Err(e) => e,
        };
        assert!(error.contains(named), "{error:?} does not say {named:?}");
    }

    // As JSON through the control API, an unknown field is named too.
    let api = Api::start(Seed::default()).await;
    let mut body = serde_json::to_value(registries_seed()).unwrap();
    body["container_registries"][0]["secret"] = json!("x");
    let response = api
        .http
        .put(api.url("/_fake/state"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let message = error_message(response, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("`secret`"), "{message}");
}
