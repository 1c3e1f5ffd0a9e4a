//! Serving one gRPC service the way both of ours are served: behind the [`RpcTelemetryLayer`]
//! and the [`AuthLayer`], beside `grpc.health.v1` (which follows the database) and server
//! reflection v1 and v1alpha, over TLS when configured, with a bounded graceful shutdown.

use crate::auth::AuthLayer;
use crate::rpc_telemetry::RpcTelemetryLayer;
use deadpool_postgres::Pool;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often health re-checks the database.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("could not build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("TLS settings are not usable: {0}")]
    Tls(String),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What both reflection protocols describe: the service, health, and both reflection services,
/// so that `grpcurl list` shows the same list whichever protocol the client speaks.
fn reflection_builder(service: &str) -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(signins_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .with_service_name(service)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .with_service_name("grpc.reflection.v1alpha.ServerReflection")
}

/// Knobs of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long in-flight calls may take to finish after the stop signal.
    pub grace_period: Duration,
    /// Serve TLS only, with this certificate (see [`crate::tls::TlsArgs::server_config`]).
    pub tls: Option<ServerTlsConfig>,
    /// Server spans and RPC metrics; the default traces and counts nothing.
    pub telemetry: RpcTelemetryLayer,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(10),
            tls: None,
            telemetry: RpcTelemetryLayer::default(),
        }
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains in-flight calls for
/// at most the grace period. Health answers SERVING only while the database answers.
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    auth: AuthLayer,
    pool: Pool,
    options: ServeOptions,
    shutdown: F,
) -> Result<(), ServeError>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_status(&reporter, S::NAME, ServingStatus::NotServing).await;
    let probe = tokio::spawn(follow_database(reporter.clone(), pool, S::NAME));
    // Rotated token keys are picked up while serving; the task ends with the server.
    let _jwks_reload = auth
        .jwks_reload()
        .map(|reload| AbortOnDrop(tokio::spawn(reload.run())));

    let reflection_v1 = reflection_builder(S::NAME).build_v1()?;
    let reflection_v1alpha = reflection_builder(S::NAME).build_v1alpha()?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_reporter = reporter.clone();
    let grace_period = options.grace_period;
    let signal = async move {
        shutdown.await;
        tracing::info!(
            service = S::NAME,
            "stop requested: draining in-flight calls"
        );
        probe.abort();
        // Load balancers watching health stop sending new calls before the listener closes.
        set_status(&drain_reporter, S::NAME, ServingStatus::NotServing).await;
        let _ = stop_tx.send(());
    };

    // The middleware of every call, outermost first.
    let layers = tower::ServiceBuilder::new()
        // Trace context and RPC metrics: outermost, so that every call, including those auth
        // refuses, gets a server span continuing the caller's trace and is counted with the
        // code it was answered with.
        .layer(options.telemetry)
        // Auth wraps every route; it lets health and reflection through by path.
        .layer(auth);
    let builder = match options.tls {
        // TLS terminates in the server itself: every route, health and reflection included,
        // is reached only through it.
        Some(tls) => Server::builder()
            .tls_config(tls)
            .map_err(|error| ServeError::Tls(crate::tls::error_chain(&error)))?,
        None => Server::builder(),
    };
    let server = builder
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        // tonic ignores its own `tcp_nodelay` for an incoming stream we hand it, so the
        // accepted sockets are set here. Without it Nagle holds back the tail of a response
        // until the client's delayed ACK (up to 40 ms): a 1,000-check CheckFlags answer took
        // ~45 ms instead of ~1 ms.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), signal);

    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = async {
            let _ = stop_rx.await;
            tokio::time::sleep(grace_period).await;
        } => {
            tracing::warn!(service = S::NAME, ?grace_period, "grace period over: abandoning calls still in flight");
        }
    }
    tracing::info!(service = S::NAME, "stopped");
    Ok(())
}

/// Stops a background task when the server it serves returns, however it returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn set_status(reporter: &HealthReporter, service: &str, status: ServingStatus) {
    reporter.set_service_status(service, status).await;
    reporter.set_service_status("", status).await;
}

/// Keeps health in step with the database: NOT_SERVING while it does not answer.
async fn follow_database(reporter: HealthReporter, pool: Pool, service: &'static str) {
    let mut last = None;
    loop {
        let up = crate::db::ping(&pool).await;
        if last != Some(up) {
            let status = if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if up {
                tracing::info!(service, "database reachable: serving");
            } else {
                tracing::warn!(service, "database unreachable: not serving");
            }
            set_status(&reporter, service, status).await;
            last = Some(up);
        }
        tokio::time::sleep(HEALTH_PROBE_INTERVAL).await;
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
