//! Plumbing that flag-service and query-service share, so each service crate holds only its
//! own domain: bearer-token authentication and the per-RPC access table ([`auth`]), the
//! PostgreSQL pool and versioned migrations ([`db`]), the clock ([`clock`]), logs and traces
//! ([`telemetry`], [`rpc_telemetry`], [`sql_trace`]), metrics ([`metrics`]), serving with
//! health, reflection and bounded graceful shutdown ([`serve`]), TLS settings ([`tls`]), and
//! duration settings ([`duration`]).
//!
//! # Layout
//! - `auth`: JWT verification (HS256 secret, RS256/ES256 from a JWKS file), roles, the tower
//!   layer that enforces the access table, and the minter used for service-to-service tokens
//!   and development tokens; `auth::keys` loads JWKS files and PEM private keys.
//! - `db`: pool construction, the migration runner, database-error classification.
//! - `serve`: the server assembly both services use; health follows the database.
//! - `tls`: server certificates, mutual TLS, and query-service's TLS client settings.
//! - `clock`: the time source, injectable so tests control it.
//! - `telemetry`: the subscriber (log lines with trace ids, OpenTelemetry, OTLP export).
//! - `rpc_telemetry`: the server span and RPC metrics of every call; the client span.
//! - `sql_trace`: the span of one SQL statement.
//! - `metrics`: the Prometheus registry, shared metrics and the `/metrics` endpoint.

pub mod auth;
pub mod clock;
pub mod db;
pub mod duration;
pub mod metrics;
pub mod rpc_telemetry;
pub mod serve;
pub mod sql_trace;
pub mod telemetry;
pub mod tls;
