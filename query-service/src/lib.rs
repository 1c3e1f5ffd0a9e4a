//! query-service: the sign-in log of flagged sign-ins. Auth gateways record every sign-in; on
//! the way in each is enriched (failure reason, browser and OS, and `flaggedForReview` asked of
//! flag-service at the event's own time); admins and help desk find them with Graph's
//! `$filter`, inside their own tenant.
//!
//! # Layout
//! - `config`: flags and environment.
//! - `startup`: [`Application`], bound first, then served until stopped.
//! - `api`: the tonic service and the access table; transport only.
//! - `convert`: wire ↔ domain, validation with index- and field-named errors.
//! - `sign_ins`: the rules (record, re-check pending flags, read inside the caller's scope).
//! - `enrich`: failure reasons and user-agent parsing.
//! - `flag_client`: the CheckFlags client with query-service's own credential.
//! - `metrics`: the Prometheus metrics of the sign-in log.
//! - `page_token`: opaque, tamper-evident keyset page tokens.
//! - `domain`: sign-ins, the `$filter` language, the error catalogue, user agents.
//! - `store`: the SQL, and the migrations this service owns (schema `query`).
//! - `error`: the error type and its one mapping to gRPC status.

pub mod api;
pub mod config;
pub mod convert;
pub mod domain;
pub mod enrich;
pub mod error;
pub mod flag_client;
pub mod metrics;
pub mod page_token;
pub mod sign_ins;
pub mod startup;
pub mod store;

pub use config::Config;
pub use startup::{Application, StartupError};
