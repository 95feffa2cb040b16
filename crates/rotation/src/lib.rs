//! qovery-key-rotator: rotate, with no downtime, the AWS IAM access key that Qovery
//! holds for an organization.
//!
//! One module per outside system (`qovery`, `iam`, `sts`, `secrets_manager`,
//! `step_functions`, `ledger` over DynamoDB), the domain types (`input`, `state`, `secret`; `iam_role`, the role a migration hands Qovery), the errors, and
//! one module per step under `steps`. The Lambda binaries only call `lambda::serve`.
//!
//! Three invariants hold at every step, including every failure:
//! - Qovery always holds a key that works;
//! - the key Qovery holds is never deleted;
//! - a secret never appears in a step's input or output, in a log line or in an error.

pub mod aws;
pub mod clusters;
pub mod config;
pub mod deadline;
pub mod error;
pub mod http;
pub mod iam;
pub mod iam_role;
pub mod input;
pub mod lambda;
pub mod ledger;
pub mod qovery;
pub mod report;
pub mod secret;
pub mod secrets_manager;
pub mod state;
pub mod step_functions;
pub mod steps;
pub mod sts;
pub mod timefmt;

pub use config::{Deps, Settings};
pub use error::RotationError;
