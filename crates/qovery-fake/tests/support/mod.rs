//! What the fake's integration tests share: a seeded fake and a client for it.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use qovery_fake::{FakeQovery, RunningFake, Seed, SeedCluster, SeedCredentials};
use reqwest::{Response, StatusCode};
use serde_json::Value;

pub const TOKEN: &str = "qov_test_token";
pub const ORG: &str = "6f1c1f9e-2a4b-4c7d-9e3f-0a1b2c3d4e5f";
pub const CREDS: &str = "0b7e2d54-8c1a-4f6e-a3b9-5d2c7e8f9a01";
pub const CLUSTER: &str = "3c9a7b12-4d5e-4f60-8a71-b2c3d4e5f607";
pub const OTHER: &str = "9d8c7b6a-5f4e-4d3c-8b2a-190817161514";

pub fn seed(cluster: SeedCluster) -> Seed {
    Seed {
        token: TOKEN.into(),
        organization_id: ORG.into(),
        credentials: vec![SeedCredentials::new(
            CREDS,
            "prod-aws",
            "AKIAOLD",
            "old-secret",
        )],
        clusters: vec![cluster],
        ..Seed::default()
    }
}

pub fn cluster() -> SeedCluster {
    SeedCluster::new(CLUSTER, "prod", CREDS)
}

pub struct Api {
    pub fake: RunningFake,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn start(seed: Seed) -> Self {
        let fake = FakeQovery::new(seed).spawn(0).await.expect("fake starts");
        // The workspace builds reqwest without a crypto provider of its own (see Cargo.toml).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            fake,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.fake.base_url)
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header("Authorization", format!("Token {TOKEN}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn deploy(&self) -> Response {
        self.call(reqwest::Method::POST, &deploy_path(), None).await
    }

    /// Polls once and returns the ClusterStatus body.
    pub async fn poll(&self) -> Value {
        let response = self.get(&status_path()).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

pub fn credentials_path() -> String {
    format!("/organization/{ORG}/aws/credentials/{CREDS}")
}

pub fn deploy_path() -> String {
    format!("/organization/{ORG}/cluster/{CLUSTER}/deploy")
}

pub fn status_path() -> String {
    format!("/organization/{ORG}/cluster/{CLUSTER}/status")
}

/// Asserts the status and that the body is `{status, error, message}` JSON; returns the message.
pub async fn error_message(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["error"].is_string(), "{body}");
    body["message"].as_str().expect("a message").to_owned()
}
/// Asserts a gateway's `text/html` page with this status; returns the page.
pub async fn gateway_page(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let page = response.text().await.unwrap();
    let title = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap());
    assert!(page.contains(&format!("<h1>{title}</h1>")), "{page}");
    page
}
