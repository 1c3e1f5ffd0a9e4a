//! The client side of a gRPC call: a span of kind client with the RPC conventions, and its
//! context written into the request's metadata so the server continues the same trace.
//!
//! ```ignore
//! let span = client::span("signins.flag.v1.FlagService", "CheckFlags");
//! client::inject(&span, request.metadata_mut());
//! let result = client.check_flags(request).instrument(span.clone()).await;
//! client::record_status(&span, code_of(&result));
//! ```

use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A client span for `service`/`method`, a child of the current span.
pub fn span(service: &'static str, method: &'static str) -> tracing::Span {
    tracing::info_span!(
        "grpc.client",
        otel.name = format_args!("{service}/{method}"),
        otel.kind = "client",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
    )
}

/// Writes `span`'s trace context into `metadata` (`traceparent`, `tracestate`).
pub fn inject(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    if span.is_disabled() {
        return;
    }
    super::propagation::inject(&span.context(), metadata);
}

/// Records how the call ended. Every code but OK is an error for the client: it did not get
/// what it asked for.
pub fn record_status(span: &tracing::Span, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if code != tonic::Code::Ok {
        span.record("otel.status_code", "ERROR");
    }
}
