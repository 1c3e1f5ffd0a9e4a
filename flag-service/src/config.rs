//! flag-service's settings: command-line flags, each with an environment variable.

use clap::Parser;
use signins_common::auth::AuthArgs;
use signins_common::duration::parse_duration;
use signins_common::telemetry::LogFormat;
use signins_common::tls::TlsArgs;
use std::time::Duration;

/// Flag sessions for flagged sign-ins: enable, disable and expire flagging per user and client.
#[derive(Debug, Clone, Parser)]
#[command(name = "flag-service", version, about)]
pub struct Config {
    /// Address to listen on for gRPC.
    #[arg(long, env = "FLAG_SERVICE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/signins. flag-service keeps its
    /// tables in the schema `flag`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// How long a flag session lasts.
    #[arg(long, env = "FLAG_TTL", default_value = "20m", value_parser = parse_duration)]
    pub flag_ttl: Duration,
    /// New flag sessions a user may start per rolling hour.
    #[arg(long, env = "FLAG_MAX_ENABLES_PER_HOUR", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_enables_per_hour: u32,
    /// Flag sessions that ended longer ago than this are deleted.
    #[arg(long, env = "FLAG_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: Duration,
    /// How far back CheckFlags answers from this replica's in-memory mirror of the recent flag
    /// sessions (caught up with the database before every answer, so replicas still read each
    /// other's writes at once); older checks query the database. At most half the retention;
    /// 0 turns the mirror off.
    #[arg(long, env = "FLAG_MIRROR_HORIZON", default_value = "1h", value_parser = parse_duration)]
    pub flag_mirror_horizon: Duration,
    /// The most flag sessions the mirror holds; past it, the mirror keeps those that end last
    /// and checks before them query the database.
    #[arg(long, env = "FLAG_MIRROR_MAX_SESSIONS", default_value_t = 100_000)]
    pub flag_mirror_max_sessions: usize,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// Address to serve Prometheus metrics on (`GET /metrics`), e.g. 127.0.0.1:9464; off
    /// unless set.
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Most database connections.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,
    /// How long in-flight calls may take to finish after SIGTERM.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl Config {
    /// Defaults for a given database and secret (tests, embedding).
    pub fn new(database_url: &str, jwt_secret: &str) -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            database_url: database_url.into(),
            flag_ttl: Duration::from_secs(20 * 60),
            max_enables_per_hour: 10,
            retention: Duration::from_secs(30 * 86_400),
            flag_mirror_horizon: Duration::from_secs(3600),
            flag_mirror_max_sessions: 100_000,
            auth: AuthArgs::with_secret(jwt_secret),
            tls: TlsArgs::default(),
            log_format: LogFormat::Pretty,
            metrics_listen: None,
            database_pool_size: 16,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
