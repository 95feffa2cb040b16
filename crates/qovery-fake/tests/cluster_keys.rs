//! The AWS keys a cluster holds besides its credentials, over real HTTP: its secret
//! manager accesses, listed with the cluster, and its Route53 DNS provider.

mod support;

use qovery_fake::{
    DnsProviderSnapshot, FakeQovery, Fault, Seed, SeedCluster, SeedDnsProvider,
    SeedSecretManagerAccess,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

const STATIC_ACCESS: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
const ROLE_ACCESS: &str = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e";
const AUTO_ACCESS: &str = "c3d4e5f6-a7b8-4c9d-8e1f-2a3b4c5d6e7f";
const QOVERY_DNS_CLUSTER: &str = "d4e5f6a7-b8c9-4d0e-9f2a-3b4c5d6e7f80";
const ACCESS_SECRET: &str = "secret-manager-secret-0123";
const DNS_SECRET: &str = "route53-secret-0123456789";
const NEW_SECRET: &str = "new/dns+secret-of-forty-characters-abcd";

fn keyed_cluster() -> SeedCluster {
    SeedCluster {
        region: "eu-west-3".into(),
        ..cluster()
    }
    .with_secret_manager_access(SeedSecretManagerAccess::aws_static(
        STATIC_ACCESS,
        "prod-secrets",
        "eu-west-3",
        "AKIAOLD",
        ACCESS_SECRET,
    ))
    .with_secret_manager_access(SeedSecretManagerAccess::role(
        ROLE_ACCESS,
        "by-role",
        "us-east-1",
        "arn:aws:iam::123456789012:role/secrets",
    ))
    .with_secret_manager_access(SeedSecretManagerAccess::automatic(
        AUTO_ACCESS,
        "automatic",
        "eu-west-3",
    ))
    .with_dns_provider(
        SeedDnsProvider::route53("example.com", "eu-west-3", "AKIAOLD", DNS_SECRET)
            .with_hosted_zone("Z0965488LE74BWDEVQDB"),
    )
}

fn keyed_seed() -> Seed {
    let mut seed = seed(keyed_cluster());
    seed.clusters
        .push(SeedCluster::new(QOVERY_DNS_CLUSTER, "staging", CREDS));
    seed
}

fn dns_path(cluster: &str) -> String {
    format!("/cluster/{cluster}/dnsProvider")
}

fn rfc3339(value: &Value) -> OffsetDateTime {
    let text = value.as_str().unwrap_or_else(|| panic!("{value}"));
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[tokio::test]
async fn clusters_are_listed_with_their_secret_manager_accesses() {
    let api = Api::start(keyed_seed()).await;
    // A deploy under way: the list shows it, and does not move it.
    assert_eq!(api.deploy().await.status(), StatusCode::CREATED);

    let response = api.get(&format!("/organization/{ORG}/cluster")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for secret in [ACCESS_SECRET, DNS_SECRET, "old-secret"] {
        assert!(!text.contains(secret), "the list leaked a secret: {text}");
    }
    let mut list: Value = serde_json::from_str(&text).unwrap();
    let clusters = list["results"].as_array_mut().unwrap();
    assert_eq!(clusters.len(), 2);
    for cluster in clusters.iter_mut() {
        rfc3339(&cluster["created_at"]);
        rfc3339(&cluster["updated_at"]);
        let cluster = cluster.as_object_mut().unwrap();
        cluster.remove("created_at");
        cluster.remove("updated_at");
        for access in cluster["secret_manager_accesses"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
        {
            let access = access.as_object_mut().unwrap();
            assert_eq!(
                rfc3339(&access.remove("created_at").unwrap()),
                rfc3339(&access.remove("updated_at").unwrap())
            );
        }
    }
    assert_eq!(
        clusters[0],
        json!({
            "id": CLUSTER,
            "organization": {"id": ORG},
            "name": "prod",
            "region": "eu-west-3",
            "cloud_provider": "AWS",
            "status": "DEPLOYMENT_QUEUED",
            "secret_manager_accesses": [
                {"id": STATIC_ACCESS, "name": "prod-secrets",
                 "endpoint": {"mode": "AWS_SECRET_MANAGER", "region": "eu-west-3"},
                 "authentication": {"mode": "AWS_STATIC_CREDENTIALS", "region": "eu-west-3",
                                    "access_key": "AKIAOLD", "secret_key": null}},
                {"id": ROLE_ACCESS, "name": "by-role",
                 "endpoint": {"mode": "AWS_SECRET_MANAGER", "region": "us-east-1"},
                 "authentication": {"mode": "AWS_ROLE_ARN",
                                    "role_arn": "arn:aws:iam::123456789012:role/secrets"}},
                {"id": AUTO_ACCESS, "name": "automatic",
                 "endpoint": {"mode": "AWS_SECRET_MANAGER", "region": "eu-west-3"},
                 "authentication": {"mode": "AUTOMATICALLY_CONFIGURED"}},
            ],
        })
    );
    assert_eq!(
        clusters[1],
        json!({
            "id": QOVERY_DNS_CLUSTER,
            "organization": {"id": ORG},
            "name": "staging",
            "region": "us-east-1",
            "cloud_provider": "AWS",
            "status": "DEPLOYED",
            "secret_manager_accesses": [],
        })
    );
    assert_eq!(api.poll().await["status"], "DEPLOYING");

    let snapshot = api.fake.snapshot();
    let accesses = &snapshot.clusters[0].secret_manager_accesses;
    assert_eq!(
        (
            accesses[0].mode.as_str(),
            accesses[0].access_key.as_deref(),
            accesses[0].secret_key.as_deref()
        ),
        (
            "AWS_STATIC_CREDENTIALS",
            Some("AKIAOLD"),
            Some(ACCESS_SECRET)
        )
    );
    assert_eq!(accesses[1].mode, "AWS_ROLE_ARN");
    assert_eq!(accesses[2].mode, "AUTOMATICALLY_CONFIGURED");
    assert_eq!(
        error_message(
            api.get(&format!("/organization/{OTHER}/cluster")).await,
            StatusCode::NOT_FOUND
        )
        .await,
        format!("organization {OTHER} not found")
    );
}

#[tokio::test]
async fn a_dns_provider_is_route53_without_its_secret_or_qoverys_own() {
    let api = Api::start(keyed_seed()).await;

    let response = api.get(&dns_path(CLUSTER)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains(DNS_SECRET), "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"dns_provider": {
            "provider": "ROUTE53",
            "domain": "example.com",
            "credentials": {"type": "STATIC", "aws_access_key_id": "AKIAOLD"},
            "aws_region": "eu-west-3",
            "hosted_zone_id": "Z0965488LE74BWDEVQDB",
        }})
    );

    let qovery: Value = api
        .get(&dns_path(QOVERY_DNS_CLUSTER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        qovery,
        json!({"dns_provider": {"provider": "QOVERY", "domain": "zd4e5f6a7.qovery.io"}})
    );

    error_message(api.get(&dns_path(OTHER)).await, StatusCode::NOT_FOUND).await;
    let message = error_message(api.get(&dns_path("prod")).await, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("clusterId"), "{message}");
    let snapshot = api.fake.snapshot();
    let operations: Vec<&str> = snapshot
        .requests
        .iter()
        .map(|r| r.operation.as_str())
        .collect();
    assert_eq!(operations, ["getClusterDnsProvider"; 4]);
}

/// What a client that read the Route53 provider sends back to change its key.
fn dns_put(key: &str, secret: &str) -> Value {
    json!({"dns_provider": {
        "provider": "ROUTE53",
        "domain": "example.com",
        "credentials": {"type": "STATIC", "aws_access_key_id": key, "aws_secret_access_key": secret},
        "aws_region": "eu-west-3",
        "hosted_zone_id": "Z0965488LE74BWDEVQDB",
    }})
}

#[tokio::test]
async fn a_dns_put_sending_back_every_field_changes_only_the_key() {
    let api = Api::start(keyed_seed()).await;
    let response = api
        .put(&dns_path(CLUSTER), dns_put("AKIANEW", NEW_SECRET))
        .await;
    // The spec answers an edit with 200 and the provider.
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains(NEW_SECRET), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let mut expected = dns_put("AKIANEW", NEW_SECRET);
    expected["dns_provider"]["credentials"]
        .as_object_mut()
        .unwrap()
        .remove("aws_secret_access_key");
    assert_eq!(body, expected);
    assert_eq!(
        api.get(&dns_path(CLUSTER))
            .await
            .json::<Value>()
            .await
            .unwrap(),
        body
    );

    let snapshot = api.fake.snapshot();
    assert_eq!(
        snapshot.clusters[0].dns_provider,
        Some(DnsProviderSnapshot {
            domain: "example.com".into(),
            aws_region: "eu-west-3".into(),
            hosted_zone_id: Some("Z0965488LE74BWDEVQDB".into()),
            aws_access_key_id: "AKIANEW".into(),
            aws_secret_access_key: NEW_SECRET.into(),
        })
    );
    assert_eq!(snapshot.clusters[1].dns_provider, None);
    assert_eq!(snapshot.received_secrets, [NEW_SECRET]);
}

#[tokio::test]
async fn a_null_hosted_zone_may_come_back_null_or_absent() {
    let mut seed = keyed_seed();
    seed.clusters[0].dns_provider = Some(SeedDnsProvider::route53(
        "example.com",
        "eu-west-3",
        "AKIAOLD",
        DNS_SECRET,
    ));
    let api = Api::start(seed).await;
    let shown: Value = api.get(&dns_path(CLUSTER)).await.json().await.unwrap();
    assert_eq!(shown["dns_provider"]["hosted_zone_id"], json!(null));
    assert!(shown["dns_provider"]
        .as_object()
        .unwrap()
        .contains_key("hosted_zone_id"));

    let mut body = dns_put("AKIANULL", "null-secret");
    body["dns_provider"]["hosted_zone_id"] = json!(null);
    assert_eq!(
        api.put(&dns_path(CLUSTER), body).await.status(),
        StatusCode::OK
    );
    let mut body = dns_put("AKIAABSENT", "absent-secret");
    body["dns_provider"]
        .as_object_mut()
        .unwrap()
        .remove("hosted_zone_id");
    assert_eq!(
        api.put(&dns_path(CLUSTER), body).await.status(),
        StatusCode::OK
    );
    let held = api.fake.snapshot().clusters[0]
        .dns_provider
        .clone()
        .unwrap();
    assert_eq!(held.aws_access_key_id, "AKIAABSENT");

    let body = dns_put("AKIANEW", NEW_SECRET);
    let message = error_message(
        api.put(&dns_path(CLUSTER), body).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        message.contains("`dns_provider.hosted_zone_id`"),
        "{message}"
    );
}

#[tokio::test]
async fn a_dns_put_must_send_back_the_provider_unchanged() {
    let edited = |change: fn(&mut Value)| {
        let mut body = dns_put("AKIANEW", NEW_SECRET);
        change(&mut body);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            edited(|b| b["dns_provider"]["domain"] = json!("example.org")),
            "`dns_provider.domain`",
        ),
        (
            edited(|b| {
                b["dns_provider"].as_object_mut().unwrap().remove("domain");
            }),
            "`dns_provider.domain`",
        ),
        (
            edited(|b| b["dns_provider"]["aws_region"] = json!("us-east-1")),
            "`dns_provider.aws_region`",
        ),
        (
            edited(|b| {
                b["dns_provider"]
                    .as_object_mut()
                    .unwrap()
                    .remove("hosted_zone_id");
            }),
            "`dns_provider.hosted_zone_id`",
        ),
        (
            edited(|b| b["dns_provider"]["hosted_zone_id"] = json!(null)),
            "`dns_provider.hosted_zone_id`",
        ),
        (
            edited(|b| b["dns_provider"]["provider"] = json!("CLOUDFLARE")),
            "`dns_provider.provider`",
        ),
        (
            edited(|b| b["dns_provider"]["proxied"] = json!(false)),
            "`dns_provider.proxied`",
        ),
        (
            edited(|b| b["dns_provider"]["credentials"]["type"] = json!("ROLE")),
            "`dns_provider.credentials.type`",
        ),
        (
            edited(|b| {
                b["dns_provider"]["credentials"]["role_arn"] =
                    json!("arn:aws:iam::123456789012:role/dns")
            }),
            "`dns_provider.credentials.role_arn`",
        ),
        (
            edited(|b| {
                b["dns_provider"]["credentials"]
                    .as_object_mut()
                    .unwrap()
                    .remove("aws_access_key_id");
            }),
            "`dns_provider.credentials.aws_access_key_id`",
        ),
        (edited(|b| b["cluster_id"] = json!(CLUSTER)), "`cluster_id`"),
        (
            edited(|b| *b = b["dns_provider"].clone()),
            "not part of ClusterDnsProviderRequest",
        ),
        (json!("ROUTE53"), "JSON object"),
    ];
    for (body, field) in cases {
        let api = Api::start(keyed_seed()).await;
        let response = api.put(&dns_path(CLUSTER), body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let text = response.text().await.unwrap();
        assert!(!text.contains(NEW_SECRET), "the secret leaked: {text}");
        let message = serde_json::from_str::<Value>(&text).unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(field), "{body} gave {message:?}");
        let snapshot = api.fake.snapshot();
        assert_eq!(
            snapshot.clusters[0]
                .dns_provider
                .as_ref()
                .unwrap()
                .aws_secret_access_key,
            DNS_SECRET,
            "{body} changed the provider"
        );
        assert_eq!(
            snapshot.received_secrets.iter().any(|s| s == NEW_SECRET),
            body.to_string().contains(NEW_SECRET),
            "{body}: a refused secret stays on record"
        );
    }
}

#[tokio::test]
async fn qoverys_own_dns_is_not_edited_and_unknown_clusters_are_404() {
    let api = Api::start(keyed_seed()).await;
    let message = error_message(
        api.put(
            &dns_path(QOVERY_DNS_CLUSTER),
            dns_put("AKIANEW", NEW_SECRET),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("Qovery's DNS"), "{message}");
    error_message(
        api.put(&dns_path(OTHER), dns_put("AKIANEW", NEW_SECRET))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // editCluster is not served: the rotator never edits a cluster.
    let response = api
        .put(&format!("/organization/{ORG}/cluster/{CLUSTER}"), json!({}))
        .await;
    assert!(response.status().is_client_error());
    assert_eq!(api.fake.snapshot().received_secrets, [NEW_SECRET]);
}

#[tokio::test]
async fn an_applied_fault_on_a_dns_put_changes_the_key_but_loses_the_answer() {
    let api = Api::start(keyed_seed()).await;
    api.fake
        .inject_fault(Fault::new("editClusterDnsProvider", 502, 1).after_applying());
    gateway_page(
        api.put(&dns_path(CLUSTER), dns_put("AKIANEW", NEW_SECRET))
            .await,
        StatusCode::BAD_GATEWAY,
    )
    .await;
    let held = api.fake.snapshot().clusters[0]
        .dns_provider
        .clone()
        .unwrap();
    assert_eq!(held.aws_secret_access_key, NEW_SECRET);

    api.fake
        .inject_fault(Fault::new("listOrganizationCluster", 503, 1));
    api.fake
        .inject_fault(Fault::new("getClusterDnsProvider", 500, 1));
    error_message(
        api.get(&format!("/organization/{ORG}/cluster")).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    error_message(
        api.get(&dns_path(CLUSTER)).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    let statuses: Vec<u16> = api
        .fake
        .snapshot()
        .requests
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [502, 503, 500]);
}

#[tokio::test]
async fn invalid_cluster_key_seeds_are_refused_saying_why() {
    let with = |change: fn(&mut SeedCluster)| {
        let mut cluster = keyed_cluster();
        change(&mut cluster);
        seed(cluster)
    };
    let cases = [
        (
            with(|c| c.secret_manager_accesses[0].id = "secrets".into()),
            "\"secrets\" is not a UUID",
        ),
        (
            with(|c| c.secret_manager_accesses[1].id = STATIC_ACCESS.into()),
            "appears twice",
        ),
        (
            with(|c| c.secret_manager_accesses[0].mode = "AWS_PARAMETER_STORE".into()),
            "AWS_PARAMETER_STORE",
        ),
        (
            with(|c| c.secret_manager_accesses[0].access_key = None),
            "access_key",
        ),
        (
            with(|c| c.secret_manager_accesses[1].access_key = Some("AKIA".into())),
            "AWS_ROLE_ARN",
        ),
        (
            with(|c| c.secret_manager_accesses[2].role_arn = Some("arn".into())),
            "AUTOMATICALLY_CONFIGURED",
        ),
        (
            with(|c| c.secret_manager_accesses[2].region = String::new()),
            "region",
        ),
        (
            with(|c| c.dns_provider.as_mut().unwrap().domain = String::new()),
            "domain",
        ),
        (
            with(|c| c.dns_provider.as_mut().unwrap().aws_access_key_id = String::new()),
            "aws_access_key_id",
        ),
    ];
    for (seed, named) in cases {
        let error = match FakeQovery::try_new(seed.clone()) {
            Ok(_) => panic!("{seed:?} was accepted"),
            Err(e) => e,
        };
        assert!(error.contains(named), "{error:?} does not say {named:?}");
    }

    // Across clusters, a secret manager access id is still unique.
    let mut twice = keyed_seed();
    twice.clusters[1].secret_manager_accesses = vec![SeedSecretManagerAccess::automatic(
        AUTO_ACCESS,
        "again",
        "eu-west-3",
    )];
    let error = FakeQovery::try_new(twice).err().unwrap();
    assert!(error.contains("appears twice"), "{error}");

    // A JSON seed written before these fields existed still loads, with their defaults.
    let old: Seed = serde_json::from_value(json!({
        "token": TOKEN,
        "organization_id": ORG,
        "credentials": [{"id": CREDS, "name": "prod-aws", "access_key_id": "AKIAOLD"}],
        "clusters": [{"id": CLUSTER, "name": "prod", "credentials_id": CREDS}],
    }))
    .unwrap();
    assert_eq!(old.clusters[0].region, "us-east-1");
    assert!(old.clusters[0].secret_manager_accesses.is_empty());
    assert_eq!(old.clusters[0].dns_provider, None);
    assert!(old.container_registries.is_empty() && old.helm_repositories.is_empty());
    FakeQovery::new(old);
}
