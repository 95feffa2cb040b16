//! Qovery's REST API: the calls a rotation needs, typed as
//! `../shared/qovery-openapi.yaml` specifies them.
//!
//! - `client`: [`QoveryApi`], one method per call;
//! - `credentials` and `status`: the payloads, and how a rotation reads a cluster state;
//! - `error`: why a call failed, and what of Qovery's answer an error may quote.

mod client;
mod credentials;
mod error;
mod status;

pub use client::QoveryApi;
pub use credentials::{AwsCredentials, CredentialCluster, CredentialsHeader, CredentialsUsage};
pub use error::{QoveryError, QoveryErrorKind};
pub use status::{ClusterState, ClusterStatus, StateClass};
