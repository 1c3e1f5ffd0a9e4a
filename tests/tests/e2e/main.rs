//! End-to-end tests: both services in-process on random ports against a fresh database,
//! driven through the generated gRPC clients.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]

mod filter_differential;
mod filters;
mod flagging;
mod operations;
mod paging;
mod recording;
mod story;
