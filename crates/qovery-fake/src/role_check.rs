//! What a deploy does with a cluster whose credentials entry is an IAM role: Qovery
//! assumes the role, and a deployment whose role it cannot assume ends
//! `INVALID_CREDENTIALS`.
//!
//! For now a setting decides ([`RoleDeploys`]). [`assume_role`] is the one function
//! that judges a role, async and called outside the state's lock, so that it can become
//! a real `sts:AssumeRole` call (against moto) without touching the deploy flow.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How deploys on role credentials end: set with `--role-deploys`,
/// [`crate::FakeQovery::with_role_deploys`], [`crate::RunningFake::set_role_deploys`]
/// or `POST /_fake/role_deploys`. A new seed keeps it: it is how the fake runs, not
/// what Qovery holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleDeploys {
    /// Qovery assumes the role: the deployment ends as the cluster's `outcome` says.
    #[default]
    Succeed,
    /// Qovery cannot assume the role: the deployment ends `INVALID_CREDENTIALS`.
    Fail,
}

/// One deploy's attempt to assume a role, as the snapshot lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleCheck {
    pub cluster_id: String,
    pub role_arn: String,
    pub ok: bool,
    /// Why the role could not be assumed.
    #[serde(default)]
    pub error: Option<String>,
}

/// Whether Qovery could assume `role_arn` to deploy cluster `cluster_id`; `Err` says why
/// not, as AWS would.
pub(crate) async fn assume_role(
    setting: RoleDeploys,
    cluster_id: Uuid,
    role_arn: &str,
) -> Result<(), String> {
    match setting {
        RoleDeploys::Succeed => Ok(()),
        RoleDeploys::Fail => Err(format!(
            "role deploys are set to fail: Qovery could not assume {role_arn} to deploy cluster {cluster_id}"
        )),
    }
}
