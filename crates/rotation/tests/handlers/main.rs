//! The rotation crate's integration tests, in one binary: each step's handler against
//! moto and the fake Qovery, and the state machine's contract. One binary links once
//! and runs every test in one pool: `make mutants` rebuilds and runs it per mutant.
//! (tests/tls.rs and tests/no_leaks.rs stay alone: each sets something for its whole
//! process, SSL_CERT_FILE and a tracing subscriber.)

mod asl_contract;
mod asl_pins;
mod holders;
mod migration;
mod move_to_role;
mod nothing_to_rotate;
mod operations;
mod quarantine;
mod recovery;
mod redirects;
mod role_calls;
mod steps;
#[allow(dead_code)]
mod support;
