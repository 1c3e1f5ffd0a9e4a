//! End-to-end tests: both services in-process on random ports against a fresh database,
//! driven through the generated gRPC clients.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]

mod flagging;
mod metrics;
mod operations;
mod recording;
mod story;
