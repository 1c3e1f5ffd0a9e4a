//! flag-service: flag sessions for flagged sign-ins. A user who hit a sign-in error enables
//! flagging on the error page; for the flag TTL (20 minutes by default) their sign-ins from the
//! same browser and device are flagged for review. query-service asks, per sign-in, whether its
//! flag key was flagged at the event's own time.
//!
//! # Layout
//! - `config`: flags and environment.
//! - `startup`: [`Application`], bound first, then served until stopped.
//! - `api`: the tonic service and the access table; transport only.
//! - `convert`: wire ↔ domain, validation with field-named errors.
//! - `flagging`: the rules (idempotent enable, rate limit, tenant checks, retention).
//! - `metrics`: the Prometheus metrics, and the active-session gauge.
//! - `mirror`: each replica's in-memory copy of the recent sessions' windows, caught up with
//!   the table before each CheckFlags answer (read-your-writes across replicas).
//! - `domain`: flag keys, flag sessions and their state at a time.
//! - `store`: the SQL, and the migrations this service owns (schema `flag`).
//! - `error`: the error type and its one mapping to gRPC status.

pub mod api;
pub mod config;
pub mod convert;
pub mod domain;
pub mod error;
pub mod flagging;
pub mod metrics;
pub mod mirror;
pub mod startup;
pub mod store;

pub use config::Config;
pub use startup::{Application, StartupError};
