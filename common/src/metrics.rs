//! Prometheus metrics: the registry each service fills, the metrics both services share (RPCs
//! by method and code, the database pool), and the text endpoint (`--metrics-listen`) that
//! serves them.
//!
//! Each service's `Application` owns its own registry rather than a process-wide one, so
//! tests that start many services in one process count each service apart. Counting happens
//! whether or not the endpoint is on: it is a few atomic additions per call.
//!
//! Some gauges are facts of the database (sign-ins waiting for a flag check, active flag
//! sessions): those are read at scrape time by a [`Refresh`] hook, so they cost nothing when
//! nobody scrapes and agree across replicas.

use bytes::Bytes;
use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use http_body_util::Full;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The methods every service serves beside its own (health and reflection).
const PUBLIC_METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.health.v1.Health/List",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The prefix of every metric name.
pub const PREFIX: &str = "signins";

/// How long a scrape waits for its database-backed gauges before answering with the last
/// values; a scrape must not hang on a database that is down.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// A fresh registry with the common prefix.
pub fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// Labels of one RPC.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// The fully qualified gRPC service, e.g. `signins.query.v1.SignInService`.
    pub service: &'static str,
    /// The method, e.g. `RecordSignIns`.
    pub method: &'static str,
    /// The gRPC status code name, e.g. `OK`, `INVALID_ARGUMENT`.
    pub code: &'static str,
}

type RpcHistogram = Family<RpcLabels, Histogram, fn() -> Histogram>;

/// RPC count and latency by service, method and code.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    requests: Family<RpcLabels, Counter>,
    duration: RpcHistogram,
    /// The method paths that get their own labels; anything else is counted as `unknown`,
    /// so a caller inventing method names cannot grow the label set without bound.
    known: Arc<HashSet<&'static str>>,
}

fn rpc_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl RpcMetrics {
    /// Registers the RPC metrics; `methods` are the service's own method paths
    /// (`/package.Service/Method`), health and reflection are added.
    pub fn register(
        registry: &mut Registry,
        methods: impl IntoIterator<Item = &'static str>,
    ) -> Self {
        let requests = Family::<RpcLabels, Counter>::default();
        let duration = RpcHistogram::new_with_constructor(rpc_histogram);
        registry.register(
            "rpc_requests",
            "gRPC calls served, by service, method and status code",
            requests.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "Time from a call's arrival to its last response byte, by service, method and status code",
            duration.clone(),
        );
        let known = methods.into_iter().chain(PUBLIC_METHODS.iter().copied());
        Self {
            requests,
            duration,
            known: Arc::new(known.collect()),
        }
    }

    /// The `service` and `method` labels of a request path.
    pub fn names(&self, path: &str) -> (&'static str, &'static str) {
        self.known
            .get(path)
            .and_then(|known| known.strip_prefix('/')?.split_once('/'))
            .unwrap_or(("unknown", "unknown"))
    }

    /// Counts one finished call.
    pub fn observe(
        &self,
        names: (&'static str, &'static str),
        code: tonic::Code,
        elapsed: Duration,
    ) {
        let labels = RpcLabels {
            service: names.0,
            method: names.1,
            code: code_name(code),
        };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// The canonical name of a gRPC status code, as in the gRPC spec.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The database pool's state, read from `pool.status()` at each scrape.
#[derive(Debug)]
pub struct PoolCollector {
    pool: Pool,
}

impl PoolCollector {
    /// Registers the pool gauges.
    pub fn register(registry: &mut Registry, pool: Pool) {
        registry.register_collector(Box::new(PoolCollector { pool }));
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let status = self.pool.status();
        let gauges = [
            (
                "db_pool_connections_in_use",
                "Database connections lent out to a statement now.",
                status.size.saturating_sub(status.available),
            ),
            (
                "db_pool_connections_idle",
                "Database connections open and waiting in the pool.",
                status.available,
            ),
            (
                "db_pool_max_connections",
                "The most database connections the pool opens.",
                status.max_size,
            ),
            (
                "db_pool_waiting",
                "Tasks waiting for a database connection now.",
                status.waiting,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// Brings database-backed gauges up to date before a scrape is answered.
pub type Refresh = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// What the metrics endpoint serves.
#[derive(Clone)]
pub struct MetricsEndpoint {
    registry: Arc<Registry>,
    refresh: Vec<Refresh>,
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint")
            .field("refresh_hooks", &self.refresh.len())
            .finish()
    }
}

impl MetricsEndpoint {
    pub fn new(registry: Registry, refresh: Vec<Refresh>) -> Self {
        Self {
            registry: Arc::new(registry),
            refresh,
        }
    }

    /// The metrics in the OpenMetrics text format, after running the refresh hooks.
    pub async fn render(&self) -> String {
        let refreshes = futures::future::join_all(self.refresh.iter().map(|refresh| refresh()));
        if tokio::time::timeout(REFRESH_TIMEOUT, refreshes)
            .await
            .is_err()
        {
            tracing::warn!(
                "metrics: database-backed gauges not refreshed in time; serving the last values"
            );
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "metrics: encoding failed");
        }
        text
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `listener` over HTTP/1.1 until the task is aborted. Each
/// connection is its own task; a broken connection only ends itself.
pub async fn serve(listener: TcpListener, endpoint: MetricsEndpoint) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: the next accept may succeed.
                tracing::warn!(%error, "metrics: accept failed");
                continue;
            }
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(respond(&endpoint, &request).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "metrics: connection ended with an error");
            }
        });
    }
}

async fn respond<B>(
    endpoint: &MetricsEndpoint,
    request: &http::Request<B>,
) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&http::Method::GET, "/metrics") => {
            (http::StatusCode::OK, OPENMETRICS, endpoint.render().await)
        }
        (_, "/metrics") => (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET\n".to_owned(),
        ),
        _ => (
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_owned(),
        ),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn calls_are_counted_by_method_and_code_and_unknown_methods_share_one_label() {
        let mut registry = registry();
        let rpc = RpcMetrics::register(&mut registry, ["/signins.flag.v1.FlagService/CheckFlags"]);

        let check = rpc.names("/signins.flag.v1.FlagService/CheckFlags");
        rpc.observe(check, tonic::Code::Ok, Duration::from_millis(3));
        rpc.observe(check, tonic::Code::Ok, Duration::from_millis(4));
        rpc.observe(
            rpc.names("/signins.flag.v1.FlagService/Invented"),
            tonic::Code::Unimplemented,
            Duration::from_millis(1),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();

        assert_eq!(check, ("signins.flag.v1.FlagService", "CheckFlags"));
        assert!(text.contains(
            "signins_rpc_requests_total{service=\"signins.flag.v1.FlagService\",method=\"CheckFlags\",code=\"OK\"} 2"
        ), "{text}");
        assert!(text.contains(
            "signins_rpc_requests_total{service=\"unknown\",method=\"unknown\",code=\"UNIMPLEMENTED\"} 1"
        ), "{text}");
        assert!(text.contains(
            "signins_rpc_duration_seconds_count{service=\"signins.flag.v1.FlagService\",method=\"CheckFlags\",code=\"OK\"} 2"
        ), "{text}");
        assert_eq!(
            rpc.names("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
    }
}
