//! End-to-end tests: both services in-process on random ports against a fresh database,
//! driven through the generated gRPC clients.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]

mod access;
mod flag_sessions;
mod flagging;
mod jwks;
mod metrics;
mod operations;
mod pki;
mod recording;
mod story;
mod tls;
