//! Which clusters a rotation redeploys. Deploying a cluster on Qovery applies its
//! credentials, but it also starts a `STOPPED` cluster and installs a `READY` one: a
//! rotation must not do either. A cluster that is not redeployed picks up the new
//! credentials the next time it is started or deployed, so the old key can still go.
//!
//! The table, for every value of the spec's `ClusterStateEnum` (docs/how-it-works.md,
//! "Which clusters are redeployed"):
//! - stopped, being stopped, or whose stop failed: `STOP_QUEUED`, `STOPPING`,
//!   `STOPPED`, `STOP_ERROR`: skipped (a deploy would start it);
//! - deleted or being deleted: `DELETE_QUEUED`, `DELETING`, `DELETED`, `DELETE_ERROR`:
//!   skipped;
//! - created but never installed: `READY`: skipped (a deploy would install it);
//! - in progress (`QUEUED`, `*_QUEUED`, `*ING`, `DRY_RUN`): redeployed once it settles,
//!   even on a first install, because that install runs with the old key;
//! - anything else (`DEPLOYED`, `DEPLOYMENT_ERROR`, `BUILD_ERROR`, `CANCELED`,
//!   `RESTARTED`, `RESTART_ERROR`, `INVALID_CREDENTIALS`, and values this version does
//!   not know): redeployed if Qovery says it was installed (`is_deployed`), skipped if
//!   it never was.

use crate::qovery::{ClusterStatus, StateClass};

/// What a rotation does with one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Redeploy,
    /// Not redeployed, and why.
    Skip(&'static str),
}

pub fn decide(status: &ClusterStatus) -> Decision {
    let state = status.status.as_str();
    match state {
        "STOP_QUEUED" | "STOPPING" | "STOPPED" | "STOP_ERROR" => {
            Decision::Skip("stopped or being stopped; a deploy would start it")
        }
        "DELETE_QUEUED" | "DELETING" | "DELETED" | "DELETE_ERROR" => {
            Decision::Skip("deleted or being deleted")
        }
        "READY" => Decision::Skip("created but never installed; a deploy would install it"),
        _ if status.status.class() == StateClass::Busy => Decision::Redeploy,
        _ if status.is_deployed => Decision::Redeploy,
        _ => Decision::Skip("never installed (is_deployed is false)"),
    }
}

/// The order clusters redeploy in: the first (the canary) alone, so that a key or a
/// setting that breaks a deployment breaks one cluster only; then the rest, in order,
/// in waves of at most `concurrency`. A wave starts only once every cluster of the one
/// before is deployed.
pub fn waves<T: Clone>(clusters: &[T], concurrency: u64) -> Vec<Vec<T>> {
    let size = concurrency.max(1) as usize;
    match clusters.split_first() {
        None => Vec::new(),
        Some((canary, rest)) => std::iter::once(vec![canary.clone()])
            .chain(rest.chunks(size).map(<[T]>::to_vec))
            .collect(),
    }
}

/// How many waves `waves` makes of `clusters` clusters.
pub fn wave_count(clusters: usize, concurrency: u64) -> usize {
    match clusters {
        0 => 0,
        n => 1 + (n - 1).div_ceil(concurrency.max(1) as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canary_redeploys_alone_then_the_rest_in_waves() {
        let clusters: Vec<u32> = (1..=6).collect();
        assert_eq!(
            waves(&clusters, 1),
            vec![vec![1], vec![2], vec![3], vec![4], vec![5], vec![6]]
        );
        assert_eq!(
            waves(&clusters, 2),
            vec![vec![1], vec![2, 3], vec![4, 5], vec![6]]
        );
        assert_eq!(waves(&clusters, 10), vec![vec![1], vec![2, 3, 4, 5, 6]]);
        assert_eq!(waves(&[7u32], 3), vec![vec![7]]);
        assert!(waves::<u32>(&[], 3).is_empty());
        for n in 0..25 {
            for c in 1..=10 {
                let all: Vec<usize> = (0..n).collect();
                let made = waves(&all, c);
                assert_eq!(made.len(), wave_count(n, c), "{n} clusters, {c} at once");
                assert_eq!(made.concat(), all, "every cluster once, in order");
                assert!(made.iter().skip(1).all(|w| w.len() as u64 <= c));
            }
        }
    }
    use crate::qovery::ClusterState;

    fn status(state: &str, is_deployed: bool) -> ClusterStatus {
        ClusterStatus {
            cluster_id: "c".into(),
            status: ClusterState(state.into()),
            is_deployed,
            last_execution_id: None,
            last_deployment_date: None,
        }
    }

    /// Every value of the spec's `ClusterStateEnum`, installed: redeployed or not.
    #[test]
    fn every_spec_state_of_an_installed_cluster() {
        let redeployed = [
            "BUILDING",
            "BUILD_ERROR",
            "CANCELED",
            "CANCELING",
            "DEPLOYED",
            "DEPLOYING",
            "DEPLOYMENT_ERROR",
            "DEPLOYMENT_QUEUED",
            "DRY_RUN",
            "QUEUED",
            "RESTART_QUEUED",
            "RESTARTING",
            "RESTARTED",
            "RESTART_ERROR",
            "INVALID_CREDENTIALS",
        ];
        let skipped = [
            "DELETED",
            "DELETE_ERROR",
            "DELETE_QUEUED",
            "DELETING",
            "READY",
            "STOPPED",
            "STOPPING",
            "STOP_ERROR",
            "STOP_QUEUED",
        ];
        assert_eq!(redeployed.len() + skipped.len(), 24);
        for state in redeployed {
            assert_eq!(decide(&status(state, true)), Decision::Redeploy, "{state}");
        }
        for state in skipped {
            assert!(
                matches!(decide(&status(state, true)), Decision::Skip(_)),
                "{state}"
            );
        }
    }

    #[test]
    fn a_cluster_never_installed_is_redeployed_only_while_its_install_runs() {
        assert_eq!(decide(&status("DEPLOYING", false)), Decision::Redeploy);
        assert!(matches!(
            decide(&status("DEPLOYMENT_ERROR", false)),
            Decision::Skip(_)
        ));
        assert!(matches!(
            decide(&status("HIBERNATED", false)),
            Decision::Skip(_)
        ));
        assert_eq!(decide(&status("HIBERNATED", true)), Decision::Redeploy);
    }
}
