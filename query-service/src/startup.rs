//! [`Application`]: binds the listener first (so tests can use port 0 and read the address),
//! migrates the database, then serves until told to stop, with the background re-check of
//! pending flag checks beside it.

use crate::api::{ACCESS, SignInApi};
use crate::config::Config;
use crate::flag_client::FlagChecker;
use crate::metrics::Metrics;
use crate::page_token::PageTokenKey;
use crate::sign_ins::{SignInLog, SignInLogSettings};
use crate::store::{MIGRATIONS, SCHEMA, Store, TIME_ORDERED_READ_SETTINGS};
use signins_common::auth::{AuthLayer, KeyError, Role, ServiceCredential};
use signins_common::clock::{Clock, SystemClock};
use signins_common::rpc_telemetry::RpcTelemetryLayer;
use signins_common::serve::{ServeError, ServeOptions, serve};
use signins_common::tls::TlsError;
use signins_proto::encoded::query::v1::sign_in_service_server::SignInServiceServer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::ServerTlsConfig;

/// How often partitions are created ahead and old ones dropped.
const PARTITION_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3600);

/// Lifetime of query-service's own token towards flag-service; renewed well before expiry.
const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] signins_common::db::DbError),
    #[error("cannot prepare sign-in partitions: {0}")]
    Partitions(String),
    #[error("flag-service client: {0}")]
    FlagService(#[from] crate::flag_client::FlagCheckError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: Config,
    log: SignInLog,
    auth: AuthLayer,
    tls: Option<ServerTlsConfig>,
    store: Store,
    metrics: Metrics,
    /// Bound only when `--metrics-listen` is set.
    metrics_listener: Option<TcpListener>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], with a clock of the caller's.
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        // Key material and certificates first: a service that cannot authenticate callers,
        // sign its own credential or present its certificate must not touch the database.
        let verifier = config.auth.verifier()?;
        let minter = config.service_key.minter(&config.auth)?;
        let page_token_key = page_token_key(&config)?;
        let tls = config.tls.server_config()?;
        let flag_service_tls = config
            .flag_service_tls
            .client_config(&config.flag_service_url)?;
        let pool = signins_common::db::pool(
            &config.database_url,
            config.database_pool_size,
            Some(config.query_timeout),
            &[],
        )?;
        // A quarter as many again, for the reads that walk an index in time order (store.rs).
        let time_ordered_reads = signins_common::db::pool(
            &config.database_url,
            config.database_pool_size.div_ceil(4),
            Some(config.query_timeout),
            TIME_ORDERED_READ_SETTINGS,
        )?;
        signins_common::db::migrate(&pool, SCHEMA, MIGRATIONS).await?;
        crate::domain::user_agent::compile_rules();
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    address: config.listen.clone(),
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartupError::Bind {
            address: config.listen.clone(),
            source,
        })?;
        let credential = ServiceCredential::new(
            minter,
            "query-service",
            vec![Role::FlaggingCheck],
            SERVICE_TOKEN_TTL,
        );
        let checker = FlagChecker::new(
            &config.flag_service_url,
            credential,
            config.flag_check_timeout,
            flag_service_tls,
        )?;
        let max_clock_skew = chrono::Duration::from_std(config.max_clock_skew)
            .map_err(|_| StartupError::Config("--max-clock-skew is out of range".into()))?;
        let retention = chrono::Duration::from_std(config.retention)
            .map_err(|_| StartupError::Config("--retention is out of range".into()))?;
        let metrics_listener = match &config.metrics_listen {
            Some(address) => {
                Some(
                    TcpListener::bind(address)
                        .await
                        .map_err(|source| StartupError::Bind {
                            address: address.clone(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let store = Store::new(pool, time_ordered_reads);
        let metrics = Metrics::new(&store);
        let log = SignInLog::new(
            store.clone(),
            checker,
            clock,
            page_token_key,
            SignInLogSettings {
                max_clock_skew,
                retention,
            },
            metrics.log.clone(),
        );
        // Today's partitions exist before the first call is served.
        log.maintain_partitions()
            .await
            .map_err(|error| StartupError::Partitions(error.to_string()))?;
        Ok(Self {
            listener,
            local_addr,
            auth: AuthLayer::new(verifier, ACCESS),
            tls,
            config,
            log,
            store,
            metrics,
            metrics_listener,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where metrics are served, when `--metrics-listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    pub async fn run_until_stopped<F>(self, shutdown: F) -> Result<(), StartupError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tracing::info!(address = %self.local_addr, tls = self.tls.is_some(), flag_service = %self.config.flag_service_url, "query-service listening");
        let rechecks = tokio::spawn(self.log.clone().run_rechecks());
        let partitions = tokio::spawn(maintain_partitions(self.log.clone()));
        let metrics = self.metrics_listener.map(|listener| {
            tokio::spawn(signins_common::metrics::serve(
                listener,
                self.metrics.endpoint.clone(),
            ))
        });
        let service = SignInServiceServer::new(SignInApi::new(self.log));
        let result = serve(
            self.listener,
            service,
            self.auth,
            self.store.pool().clone(),
            ServeOptions {
                grace_period: self.config.shutdown_grace,
                tls: self.tls,
                telemetry: RpcTelemetryLayer::new(self.metrics.rpc.clone()),
            },
            shutdown,
        )
        .await;
        rechecks.abort();
        partitions.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        Ok(result?)
    }
}

/// The page-token key: from --page-token-secret, else from the JWT secret. Replicas must share
/// it (a token from one is opened by another), so a random per-process key is no fallback.
fn page_token_key(config: &Config) -> Result<PageTokenKey, StartupError> {
    config
        .page_token_secret
        .as_deref()
        .filter(|secret| !secret.is_empty())
        .or(config.auth.secret())
        .map(|secret| PageTokenKey::derive(secret.as_bytes()))
        .ok_or_else(|| {
            StartupError::Config(
                "no key for page tokens: set --page-token-secret or PAGE_TOKEN_SECRET (the same on every replica)".into(),
            )
        })
}

/// Keeps partitions ready ahead and drops those past retention, hourly.
async fn maintain_partitions(log: SignInLog) {
    let mut interval = tokio::time::interval(PARTITION_MAINTENANCE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match log.maintain_partitions().await {
            Ok(dropped) if dropped.is_empty() => {}
            Ok(dropped) => tracing::info!(?dropped, "retention dropped sign-in partitions"),
            Err(error) => tracing::warn!(%error, "partition maintenance failed; will retry"),
        }
    }
}
