//! The Qovery calls a migration to an IAM role makes (issue 14), against the fake
//! Qovery, which accepts only the bodies Qovery's console sends: create or adopt the
//! role's credentials entry, point clusters at it and back (`cloudProviderInfo`), delete
//! an entry once no cluster uses it, switch registries and helm repositories to the
//! role. No step calls them yet. Only the fake is needed: no AWS call is made.

use crate::support::{
    CLUSTER_A, CLUSTER_B, CREDS, CREDS_OTHER, CREDS_US, HELM, ORG, REGISTRY_A, TOKEN,
};
use qovery_fake::{
    FakeQovery, Fault, RegistrySnapshot, RunningFake, Seed, SeedCluster, SeedCredentials,
    SeedRegistry,
};
use rotation::qovery::holders::{self, CredentialsRef, Deleted, Moved, RoleEntry, RoleRoute};
use rotation::qovery::{Holder, HolderKind, Holding, QoveryApi, QoveryErrorKind};
use rotation::secret::Secret;

const ROLE: &str = "arn:aws:iam::123456789012:role/qovery-engine";
const OTHER_ROLE: &str = "arn:aws:iam::123456789012:role/something-else";
const KEY: &str = "AKIAPRODKEY000000001";
const SECRET: &str = "prod-secret-that-stays-in-qovery";
const DOCKER: &str = "8d0f7eaf-9fa1-4ad2-8e4f-506172839405";

/// One organization in the fake: "aws-prod" holds a static key and both clusters use
/// it (production in us-east-1, staging in eu-west-3); production's mirroring registry
/// and a helm repository hold the key too; a Docker Hub registry holds none.
struct Org {
    fake: RunningFake,
    api: QoveryApi,
    token: Secret,
}

fn seed() -> Seed {
    let mut staging = SeedCluster::new(CLUSTER_B, "staging", CREDS);
    staging.region = "eu-west-3".to_string();
    Seed {
        token: TOKEN.to_string(),
        organization_id: ORG.to_string(),
        credentials: vec![SeedCredentials::new(CREDS, "aws-prod", KEY, SECRET)],
        clusters: vec![SeedCluster::new(CLUSTER_A, "production", CREDS), staging],
        container_registries: vec![
            SeedRegistry::ecr(REGISTRY_A, "registry-production", "eu-west-3", KEY, SECRET)
                .mirroring(CLUSTER_A)
                .with_description("mirroring registry of production"),
            SeedRegistry::other(DOCKER, "hub", "DOCKER_HUB", "https://docker.io"),
        ],
        helm_repositories: vec![SeedRegistry::oci_ecr(
            HELM,
            "charts",
            "us-east-1",
            KEY,
            SECRET,
        )],
    }
}

impl Org {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(change: impl FnOnce(&mut Seed)) -> Self {
        let mut seed = seed();
        change(&mut seed);
        let fake = FakeQovery::new(seed).spawn(0).await.unwrap();
        let api = QoveryApi::new(&fake.base_url);
        Self {
            fake,
            api,
            token: Secret::new(TOKEN),
        }
    }

    /// The ids of every credentials entry now: a migration's `before`.
    fn entry_ids(&self) -> Vec<String> {
        self.fake
            .snapshot()
            .credentials
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    async fn role_entry(
        &self,
        before: &[String],
    ) -> Result<RoleEntry, rotation::qovery::QoveryError> {
        holders::role_entry(&self.api, &self.token, ORG, "qovery-role", ROLE, before).await
    }

    async fn point(
        &self,
        cluster: &str,
        to: &CredentialsRef,
    ) -> Result<Moved, rotation::qovery::QoveryError> {
        holders::point_cluster(&self.api, &self.token, ORG, cluster, to).await
    }

    async fn delete(&self, id: &str) -> Result<Deleted, rotation::qovery::QoveryError> {
        holders::delete_entry(&self.api, &self.token, ORG, id).await
    }

    /// How many calls of a Qovery operation the fake answered.
    fn calls(&self, operation: &str) -> usize {
        self.fake
            .snapshot()
            .requests
            .iter()
            .filter(|r| r.operation == operation)
            .count()
    }

    /// `(object_type, name, role_arn)` of every entry, in the fake's order.
    fn entries(&self) -> Vec<(String, String, Option<String>)> {
        self.fake
            .snapshot()
            .credentials
            .into_iter()
            .map(|c| (c.object_type, c.name, c.role_arn))
            .collect()
    }

    /// The entry each cluster deploys with, by cluster id.
    fn clusters_on(&self) -> Vec<(String, String)> {
        self.fake
            .snapshot()
            .clusters
            .into_iter()
            .map(|c| (c.id, c.credentials_id))
            .collect()
    }

    fn registry(&self, id: &str) -> RegistrySnapshot {
        let snapshot = self.fake.snapshot();
        snapshot
            .container_registries
            .into_iter()
            .chain(snapshot.helm_repositories)
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no registry {id} in the fake"))
    }

    async fn holder(&self, kind: HolderKind, id: &str) -> Holder {
        holders::survey(&self.api, &self.token, ORG)
            .await
            .unwrap()
            .into_iter()
            .find(|h| h.kind == kind && h.id == id)
            .unwrap_or_else(|| panic!("no {kind:?} {id} in the survey"))
    }
}

fn static_entry() -> CredentialsRef {
    CredentialsRef {
        id: CREDS.to_string(),
        name: "aws-prod".to_string(),
    }
}

fn as_ref(entry: &RoleEntry) -> CredentialsRef {
    CredentialsRef {
        id: entry.id.clone(),
        name: entry.name.clone(),
    }
}

fn role_row(name: &str, role_arn: &str) -> (String, String, Option<String>) {
    (
        "AWS_ROLE".to_string(),
        name.to_string(),
        Some(role_arn.to_string()),
    )
}

fn static_row() -> (String, String, Option<String>) {
    ("AWS".to_string(), "aws-prod".to_string(), None)
}

#[tokio::test]
async fn a_role_entry_is_created_once_then_adopted() {
    // GIVEN an organization with its static entry only
    let org = Org::new().await;
    let before = org.entry_ids();

    // WHEN the role entry is asked for twice
    let first = org.role_entry(&before).await.unwrap();
    let second = org.role_entry(&before).await.unwrap();

    // THEN one entry was created, with the console's body (the fake takes no other),
    // and the second call adopted it, still this run's
    assert_eq!(org.entries(), [static_row(), role_row("qovery-role", ROLE)]);
    let made = &org.fake.snapshot().credentials[1];
    assert_eq!(
        first,
        RoleEntry {
            id: made.id.clone(),
            name: "qovery-role".into(),
            created: true
        }
    );
    assert_eq!(second, first);
    assert_eq!(org.calls("createAWSCredentials"), 1);
    assert_eq!(org.calls("listOrganizationCredentials"), 2);
    assert!(org.fake.snapshot().received_secrets.is_empty());
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_adopted_as_created() {
    // GIVEN a create that Qovery applies, but whose answer a gateway loses
    let org = Org::new().await;
    let before = org.entry_ids();
    org.fake
        .inject_fault(Fault::new("createAWSCredentials", 504, 1).after_applying());

    // WHEN the run asks for the role entry, fails, and asks again
    let lost = org.role_entry(&before).await.unwrap_err();
    let again = org.role_entry(&before).await.unwrap();

    // THEN the entry the lost call made is the run's, and no second one was made
    assert_eq!(lost.kind, QoveryErrorKind::Unavailable);
    assert_eq!(org.entries(), [static_row(), role_row("qovery-role", ROLE)]);
    let made = org.fake.snapshot().credentials[1].id.clone();
    assert_eq!(
        again,
        RoleEntry {
            id: made,
            name: "qovery-role".into(),
            created: true
        }
    );
    assert_eq!(org.calls("createAWSCredentials"), 1);
}

#[tokio::test]
async fn a_create_is_never_sent_again_in_process_even_on_a_short_retry_after() {
    // GIVEN a create that applies, answered 503 with `Retry-After: 1`, which other calls
    // wait out and send again
    let org = Org::new().await;
    let before = org.entry_ids();
    org.fake.inject_fault(
        Fault::new("createAWSCredentials", 503, 1)
            .with_retry_after(1)
            .after_applying(),
    );

    // WHEN the role entry is asked for
    let error = org.role_entry(&before).await.unwrap_err();

    // THEN the failure goes back to the caller: a second POST would make a second entry
    assert_eq!(error.kind, QoveryErrorKind::Unavailable);
    assert_eq!(error.retry_after_seconds, Some(1));
    assert_eq!(org.calls("createAWSCredentials"), 1);
    assert_eq!(org.entries().len(), 2);
}

#[tokio::test]
async fn an_entry_that_was_there_before_is_adopted_not_created() {
    // GIVEN a role entry for the role made by hand before the run, and one for
    // another role
    let org = Org::with(|seed| {
        seed.credentials
            .push(SeedCredentials::role(CREDS_OTHER, "other-role", OTHER_ROLE));
        seed.credentials
            .push(SeedCredentials::role(CREDS_US, "by-hand", ROLE));
    })
    .await;
    let before = org.entry_ids();

    // WHEN the role entry is asked for
    let entry = org.role_entry(&before).await.unwrap();

    // THEN the one for the role is used, under its own name, and is not the run's
    assert_eq!(
        entry,
        RoleEntry {
            id: CREDS_US.into(),
            name: "by-hand".into(),
            created: false
        }
    );
    assert_eq!(org.calls("createAWSCredentials"), 0);
    assert_eq!(org.entries().len(), 3);
}

#[tokio::test]
async fn an_entry_an_earlier_attempt_made_is_preferred_to_one_that_was_there() {
    // GIVEN a role entry that was there before the run, listed first, and one for the
    // same role that an earlier attempt of the run made
    let org = Org::with(|seed| {
        seed.credentials
            .push(SeedCredentials::role(CREDS_US, "by-hand", ROLE));
        seed.credentials
            .push(SeedCredentials::role(CREDS_OTHER, "qovery-role", ROLE));
    })
    .await;
    let before = vec![CREDS.to_string(), CREDS_US.to_string()];

    // WHEN the role entry is asked for
    let entry = org.role_entry(&before).await.unwrap();

    // THEN the run's own is used: giving up later deletes it, never the other
    assert_eq!(
        entry,
        RoleEntry {
            id: CREDS_OTHER.into(),
            name: "qovery-role".into(),
            created: true
        }
    );
    assert_eq!(org.calls("createAWSCredentials"), 0);
}

#[tokio::test]
async fn delete_is_refused_while_a_cluster_uses_the_entry_and_nothing_is_sent() {
    // GIVEN both clusters on the static entry
    let org = Org::new().await;

    // WHEN it is deleted
    let error = org.delete(CREDS).await.unwrap_err();

    // THEN it is refused before any DELETE, naming the clusters
    assert_eq!(error.kind, QoveryErrorKind::Rejected);
    for needle in [
        format!("production ({CLUSTER_A})"),
        format!("staging ({CLUSTER_B})"),
        format!("aws-prod ({CREDS})"),
    ] {
        assert!(
            error.detail.contains(&needle),
            "{needle} not in {}",
            error.detail
        );
    }
    assert_eq!(org.calls("deleteAWSCredentials"), 0);
    assert_eq!(org.entries(), [static_row()]);
}

#[tokio::test]
async fn an_entry_is_deleted_once_its_clusters_moved_and_a_second_delete_is_already() {
    // GIVEN both clusters moved to the role entry
    let org = Org::new().await;
    let entry = org.role_entry(&org.entry_ids()).await.unwrap();
    for cluster in [CLUSTER_A, CLUSTER_B] {
        org.point(cluster, &as_ref(&entry)).await.unwrap();
    }

    // WHEN the static entry is deleted, twice
    let first = org.delete(CREDS).await.unwrap();
    let second = org.delete(CREDS).await.unwrap();

    // THEN it is gone, and the second call saw it gone without sending anything
    assert_eq!(first, Deleted { already: false });
    assert_eq!(second, Deleted { already: true });
    assert_eq!(org.entries(), [role_row("qovery-role", ROLE)]);
    assert_eq!(org.calls("deleteAWSCredentials"), 1);
}

#[tokio::test]
async fn a_delete_answered_404_after_the_list_is_already() {
    // GIVEN an unused role entry, gone by the time the DELETE arrives (an earlier
    // attempt's DELETE landed late, or someone else's)
    let org = Org::new().await;
    let entry = org.role_entry(&org.entry_ids()).await.unwrap();
    org.fake
        .inject_fault(Fault::new("deleteAWSCredentials", 404, 1));

    // WHEN it is deleted
    let deleted = org.delete(&entry.id).await.unwrap();

    // THEN that counts as deleted; any other refusal does not
    assert_eq!(deleted, Deleted { already: true });
    org.fake
        .inject_fault(Fault::new("deleteAWSCredentials", 403, 1));
    let refused = org.delete(&entry.id).await.unwrap_err();
    assert_eq!(refused.kind, QoveryErrorKind::Unauthorized);
    assert_eq!(org.calls("deleteAWSCredentials"), 2);
}

#[tokio::test]
async fn a_cluster_is_pointed_once_and_back() {
    // GIVEN the role entry
    let org = Org::new().await;
    let entry = org.role_entry(&org.entry_ids()).await.unwrap();
    let role = as_ref(&entry);

    // WHEN staging (eu-west-3) is pointed at it twice
    let first = org.point(CLUSTER_B, &role).await.unwrap();
    let second = org.point(CLUSTER_B, &role).await.unwrap();

    // THEN it moved once, in its own region (the fake takes only the console's body:
    // region and cloud provider as read, the entry's own name), production stayed
    assert_eq!(
        first,
        Moved {
            from: static_entry(),
            already: false
        }
    );
    assert_eq!(
        second,
        Moved {
            from: role.clone(),
            already: true
        }
    );
    assert_eq!(
        org.clusters_on(),
        [
            (CLUSTER_A.into(), CREDS.into()),
            (CLUSTER_B.into(), entry.id.clone())
        ]
    );
    assert_eq!(org.calls("specifyClusterCloudProviderInfo"), 1);
    let info = holders::cloud_provider_info(&org.api, &org.token, ORG, CLUSTER_B)
        .await
        .unwrap();
    assert_eq!(
        (info.cloud_provider.as_str(), info.region.as_str()),
        ("AWS", "eu-west-3")
    );
    assert_eq!(info.credentials, role);

    // WHEN it is pointed back at the static entry
    let back = org.point(CLUSTER_B, &static_entry()).await.unwrap();

    // THEN it is on it again
    assert_eq!(
        back,
        Moved {
            from: role,
            already: false
        }
    );
    assert_eq!(
        org.clusters_on(),
        [
            (CLUSTER_A.into(), CREDS.into()),
            (CLUSTER_B.into(), CREDS.into())
        ]
    );
    assert_eq!(org.calls("specifyClusterCloudProviderInfo"), 2);
}

#[tokio::test]
async fn a_move_that_names_the_entry_wrongly_is_refused_by_qovery_and_moves_nothing() {
    // GIVEN the role entry, named as Terraform's provider would (the cluster's name)
    let org = Org::new().await;
    let entry = org.role_entry(&org.entry_ids()).await.unwrap();
    let misnamed = CredentialsRef {
        id: entry.id.clone(),
        name: "production".to_string(),
    };

    // WHEN production is pointed at it
    let error = org.point(CLUSTER_A, &misnamed).await.unwrap_err();

    // THEN the fake, strict as the console's body, refuses it and the cluster stays
    assert_eq!(
        (error.kind, error.status),
        (QoveryErrorKind::Rejected, Some(400))
    );
    assert!(error.detail.contains("cluster's name"), "{}", error.detail);
    assert_eq!(org.fake.snapshot().clusters[0].credentials_id, CREDS);
}

#[tokio::test]
async fn a_registry_and_a_helm_repository_switch_to_the_role() {
    // GIVEN production's mirroring registry (eu-west-3) and a helm repository
    // (us-east-1) holding the key
    let org = Org::new().await;
    for (kind, id, region) in [
        (HolderKind::ContainerRegistry, REGISTRY_A, "eu-west-3"),
        (HolderKind::HelmRepository, HELM, "us-east-1"),
    ] {
        let holder = org.holder(kind, id).await;
        assert_eq!(holder.role_route(), RoleRoute::SwitchToRole);
        let was = org.registry(id);

        // WHEN it is given the role
        let holding = holders::give_role(&org.api, &org.token, ORG, &holder, ROLE)
            .await
            .unwrap();

        // THEN Qovery answers the role, holds no key nor secret any more, and every
        // other field is as it was (the fake checks the PUT sent them back)
        assert_eq!(holding, Holding::Role(ROLE.into()), "{id}");
        let now = org.registry(id);
        assert_eq!(
            (
                now.role_arn.as_deref(),
                now.access_key_id,
                now.secret_access_key
            ),
            (Some(ROLE), None, None),
            "{id}"
        );
        assert_eq!(now.region.as_deref(), Some(region));
        assert_eq!(
            (now.name, now.url, now.description, now.cluster_id),
            (was.name, was.url, was.description, was.cluster_id)
        );
        let read = org.holder(kind, id).await;
        assert_eq!(read.holding, Holding::Role(ROLE.into()));
        assert!(!read.may_hold(KEY));
    }
    assert_eq!(org.calls("editContainerRegistry"), 1);
    assert_eq!(org.calls("editHelmRepository"), 1);
    assert!(org.fake.snapshot().received_secrets.is_empty());
}

#[tokio::test]
async fn give_role_refuses_every_holder_that_does_not_switch_and_sends_nothing() {
    // GIVEN the static credentials entry (its clusters move instead) and a Docker Hub
    // registry (no AWS key)
    let org = Org::new().await;
    let credentials = org.holder(HolderKind::Credentials, CREDS).await;
    let docker = org.holder(HolderKind::ContainerRegistry, DOCKER).await;

    for (holder, why) in [
        (&credentials, "its clusters are pointed at role credentials"),
        (&docker, "kind DOCKER_HUB"),
    ] {
        // WHEN either is given the role
        let error = holders::give_role(&org.api, &org.token, ORG, holder, ROLE)
            .await
            .unwrap_err();

        // THEN it is refused, with the route's reason
        assert_eq!(error.kind, QoveryErrorKind::Rejected);
        assert!(error.detail.contains(why), "{}", error.detail);
        assert!(error.operation.contains(&holder.id), "{}", error.operation);
    }
    let edits: Vec<String> = org
        .fake
        .snapshot()
        .requests
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.operation)
        .collect();
    assert!(edits.is_empty(), "{edits:?}");
    assert_eq!(org.entries(), [static_row()]);
}
