//! query-service's settings: command-line flags, each with an environment variable.

use clap::Parser;
use signins_common::auth::{AuthArgs, ServiceKeyArgs};
use signins_common::duration::parse_duration;
use signins_common::telemetry::LogFormat;
use signins_common::tls::{FlagServiceTlsArgs, TlsArgs};
use std::time::Duration;

/// The sign-in log of flagged sign-ins: record and enrich sign-ins, and find them with $filter.
#[derive(Debug, Clone, Parser)]
#[command(name = "query-service", version, about)]
pub struct Config {
    /// Address to listen on for gRPC.
    #[arg(long, env = "QUERY_SERVICE_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: String,
    /// PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/signins. query-service keeps its
    /// tables in the schema `query`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// flag-service, asked whether each sign-in was flagged at its own time; https:// for TLS.
    #[arg(
        long,
        env = "FLAG_SERVICE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub flag_service_url: String,
    /// How far in the future a sign-in's createdDateTime may be.
    #[arg(long, env = "MAX_CLOCK_SKEW", default_value = "5m", value_parser = parse_duration)]
    pub max_clock_skew: Duration,
    /// Sign-ins older than this are deleted.
    #[arg(long, env = "SIGN_IN_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: Duration,
    /// How long a batch waits for flag-service before it is stored as "flag check pending".
    #[arg(long, env = "FLAG_CHECK_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub flag_check_timeout: Duration,
    /// The longest any one database statement may run.
    #[arg(long, env = "QUERY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub query_timeout: Duration,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub service_key: ServiceKeyArgs,
    /// Key for ListSignIns page tokens; every replica needs the same. Default: derived from
    /// --jwt-secret; required when tokens are verified by JWKS only.
    #[arg(long, env = "PAGE_TOKEN_SECRET", hide_env_values = true)]
    pub page_token_secret: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub flag_service_tls: FlagServiceTlsArgs,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// Address to serve Prometheus metrics on (`GET /metrics`), e.g. 127.0.0.1:9464; off
    /// unless set.
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Most database connections; a quarter as many again serve time-ordered reads.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,
    /// How long in-flight calls may take to finish after SIGTERM.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl Config {
    /// Defaults for a given database, flag-service and secret (tests, embedding).
    pub fn new(database_url: &str, flag_service_url: &str, jwt_secret: &str) -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            database_url: database_url.into(),
            flag_service_url: flag_service_url.into(),
            max_clock_skew: Duration::from_secs(300),
            retention: Duration::from_secs(30 * 86_400),
            flag_check_timeout: Duration::from_millis(500),
            query_timeout: Duration::from_secs(5),
            auth: AuthArgs::with_secret(jwt_secret),
            service_key: ServiceKeyArgs::default(),
            page_token_secret: None,
            tls: TlsArgs::default(),
            flag_service_tls: FlagServiceTlsArgs::default(),
            log_format: LogFormat::Pretty,
            metrics_listen: None,
            database_pool_size: 16,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
