//! Qovery's REST API: the calls a rotation needs, typed as
//! `../shared/qovery-openapi.yaml` specifies them.

mod client;

pub use client::*;
