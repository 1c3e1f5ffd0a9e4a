//! The tower layer that gives every gRPC call a server span and counts it.
//!
//! The span follows OpenTelemetry's RPC conventions (`rpc.system` = `grpc`, `rpc.service`,
//! `rpc.method`, `rpc.grpc.status_code`, kind server) and continues the caller's trace from
//! the W3C `traceparent` in the request metadata. It stays open until the response body has
//! been sent, so streaming calls are timed whole, and takes its status code from the
//! `grpc-status` trailer (or from the headers of a trailers-only answer, which is how tonic
//! sends an error). The same end feeds [`RpcMetrics`].
//!
//! The client side of the same conventions, for query-service's call to flag-service, is in
//! [`client`].
//!
//! # Layout
//! - this file: [`RpcTelemetryLayer`] and its service.
//! - `body`: the response body that notices the end of the call.
//! - `propagation`: `traceparent` in and out of headers and metadata.
//! - `client`: the client span and context injection.

mod body;
pub mod client;
pub mod propagation;

use crate::metrics::RpcMetrics;
use body::CallEnd;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::body::Body;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Health is probed every few seconds by load balancers; a trace per probe would bury the
/// traces worth reading. Health calls are still counted.
const UNTRACED_PREFIX: &str = "/grpc.health.v1.Health/";

/// Adds a server span and RPC metrics to every call.
#[derive(Debug, Clone, Default)]
pub struct RpcTelemetryLayer {
    metrics: Option<RpcMetrics>,
}

impl RpcTelemetryLayer {
    /// Spans and metrics.
    pub fn new(metrics: RpcMetrics) -> Self {
        Self {
            metrics: Some(metrics),
        }
    }
}

impl<S> tower::Layer<S> for RpcTelemetryLayer {
    type Service = RpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTelemetry {
            metrics: self.metrics.clone(),
            inner,
        }
    }
}

/// The service [`RpcTelemetryLayer`] wraps around the rest of the stack.
#[derive(Debug, Clone)]
pub struct RpcTelemetry<S> {
    metrics: Option<RpcMetrics>,
    inner: S,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for RpcTelemetry<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let span = server_span(path);
        if !span.is_disabled() {
            let parent = propagation::extract(request.headers());
            // Fails only when no OpenTelemetry layer is installed (tests without one): then
            // there is no trace to continue.
            let _ = span.set_parent(parent);
        }
        let end = CallEnd {
            span: span.clone(),
            started: Instant::now(),
            metrics: self
                .metrics
                .as_ref()
                .map(|metrics| (metrics.clone(), metrics.names(path))),
        };
        // Take the service that was polled ready, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let response = span.in_scope(|| inner.call(request)).instrument(span);
        Box::pin(async move {
            let response = response.await?;
            Ok(end.watch(response))
        })
    }
}

/// The server span of a call to `path` (`/package.Service/Method`).
fn server_span(path: &str) -> tracing::Span {
    if path.starts_with(UNTRACED_PREFIX) {
        return tracing::Span::none();
    }
    let name = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    tracing::info_span!(
        "grpc.server",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
    )
}

/// The gRPC status in `grpc-status`, if the headers or trailers carry one.
fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(tonic::Code::from_i32)
}

/// Codes that mean the server failed, as OpenTelemetry's gRPC conventions list them for
/// server spans; the others are the caller's doing and leave the span's status unset.
fn is_server_error(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

#[cfg(test)]
mod tests;
