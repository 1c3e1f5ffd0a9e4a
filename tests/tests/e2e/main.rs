//! End-to-end tests: both services in-process on random ports against a fresh database,
//! driven through the generated gRPC clients.

mod flagging;
mod operations;
mod recording;
mod story;
