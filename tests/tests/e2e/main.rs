//! End-to-end tests: both services in-process on random ports against a fresh database,
//! driven through the generated gRPC clients.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]

mod access;
mod filter_differential;
mod filters;
mod flag_sessions;
mod flagging;
mod jwks;
mod metrics;
mod operations;
mod paging;
mod pki;
mod recording;
mod story;
mod tls;
