//! Qovery's REST API: the calls a rotation needs, typed as
//! `../shared/qovery-openapi.yaml` specifies them.
//!
//! - `client`: [`QoveryApi`], one method per call;
//! - `holders`: every place Qovery keeps an AWS key, behind one interface the steps
//!   share; one file per kind (`credentials`, `registries`, `secret_manager_accesses`,
//!   `dns_providers`); `cloud_provider_info` points a cluster at a credentials entry;
//! - `status`: how a rotation reads a cluster state;
//! - `error`: why a call failed, and what of Qovery's answer an error may quote.

mod client;
mod cloud_provider_info;
mod credentials;
mod dns_providers;
mod error;
pub mod holders;
mod registries;
mod secret_manager_accesses;
mod status;

pub use client::QoveryApi;
pub use cloud_provider_info::{
    cloud_provider_info, point_cluster, CloudProviderInfo, CredentialsRef, Moved,
};
pub use credentials::{
    delete_entry, role_entry, AwsCredentials, CredentialCluster, CredentialsHeader,
    CredentialsUsage, Deleted, RoleEntry,
};
pub use error::{QoveryError, QoveryErrorKind};
pub use holders::{ClusterRef, Holder, HolderKind, HolderRef, Holding};
pub use status::{ClusterState, ClusterStatus, StateClass};
