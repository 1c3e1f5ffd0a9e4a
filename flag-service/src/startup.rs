//! [`Application`]: binds the listener first (so tests can use port 0 and read the address),
//! migrates the database, then serves until told to stop.

use crate::api::{ACCESS, FlagApi};
use crate::config::Config;
use crate::flagging::{Flagging, FlaggingSettings};
use crate::metrics::Metrics;
use crate::mirror::{FlagSessionMirror, MirrorSettings};
use crate::store::{MIGRATIONS, SCHEMA, Store};
use signins_common::auth::{AuthLayer, KeyError};
use signins_common::clock::{Clock, SystemClock};
use signins_common::rpc_telemetry::RpcTelemetryLayer;
use signins_common::serve::{ServeError, ServeOptions, serve};
use signins_common::tls::TlsError;
use signins_proto::flag::v1::flag_service_server::FlagServiceServer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::ServerTlsConfig;

/// No flag-service statement should take long; one that does is cut off rather than queued behind.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request flag-service decodes. A full CheckFlags batch of 10,000 checks whose
/// device and browser ids use all 256 characters allowed, each up to 4 bytes of UTF-8, takes
/// about 2,160 bytes a check, 21.6 MB in all. tonic's default of 4 MiB would refuse a full
/// batch whose two ids together pass about 300 ASCII characters, though each is valid.
const MAX_REQUEST_BYTES: usize = 24 * 1024 * 1024;

/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(600);

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
    #[error(transparent)]
    Serve(#[from] ServeError),
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: Config,
    flagging: Flagging,
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

    /// As [`Application::build`], with a clock of the caller's (tests move time by hand).
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        // Key material and certificates first: a service that cannot authenticate callers or
        // present its certificate must not touch the database or take a port.
        let verifier = config.auth.verifier()?;
        let tls = config.tls.server_config()?;
        let pool = signins_common::db::pool(
            &config.database_url,
            config.database_pool_size,
            Some(STATEMENT_TIMEOUT),
            &[],
        )?;
        signins_common::db::migrate(&pool, SCHEMA, MIGRATIONS).await?;
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
        let store = Store::new(pool);
        let metrics = Metrics::new(&store, clock.clone());
        let mut flagging = Flagging::new(
            store.clone(),
            clock.clone(),
            FlaggingSettings {
                flag_ttl: config.flag_ttl,
                max_enables_per_hour: config.max_enables_per_hour,
            },
        )
        .with_check_counters(metrics.checks.clone());
        if let Some(settings) = MirrorSettings::new(
            config.flag_mirror_horizon,
            config.flag_mirror_max_sessions,
            config.retention,
        ) {
            flagging = flagging.with_mirror(FlagSessionMirror::new(store.clone(), clock, settings));
        }
        Ok(Self {
            listener,
            local_addr,
            auth: AuthLayer::new(verifier, ACCESS),
            tls,
            config,
            flagging,
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
        tracing::info!(address = %self.local_addr, tls = self.tls.is_some(), flag_ttl = ?self.config.flag_ttl, "flag-service listening");
        let retention = tokio::spawn(run_retention(self.flagging.clone(), self.config.retention));
        let flagging = self.flagging.clone();
        let mirror = tokio::spawn(async move {
            if let Err(error) = flagging.load_mirror().await {
                tracing::warn!(%error, "cannot load the flag session mirror yet; the first CheckFlags will");
            }
        });
        let metrics = self.metrics_listener.map(|listener| {
            tokio::spawn(signins_common::metrics::serve(
                listener,
                self.metrics.endpoint.clone(),
            ))
        });
        let service = FlagServiceServer::new(FlagApi::new(self.flagging))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
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
        retention.abort();
        mirror.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        Ok(result?)
    }
}

async fn run_retention(flagging: Flagging, retention: Duration) {
    let mut interval = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        interval.tick().await;
        match flagging.apply_retention(retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "retention deleted old flag sessions"),
            Err(error) => tracing::warn!(%error, "retention failed; will retry"),
        }
    }
}
