#![allow(clippy::unwrap_used)]

use super::*;
use crate::metrics::{self, RpcMetrics};
use http_body_util::BodyExt;
use opentelemetry::trace::{SpanKind, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::convert::Infallible;
use tower::{Layer, ServiceExt};
use tracing_subscriber::prelude::*;

const CHECK_FLAGS: &str = "/signins.flag.v1.FlagService/CheckFlags";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// Spans exported by a provider local to one test, and a subscriber that feeds it.
struct Recorder {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

impl Recorder {
    fn new() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        Self { exporter, provider }
    }

    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(self.provider.tracer("test")))
    }

    fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap()
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn request(path: &str, traceparent: Option<&str>) -> http::Request<Body> {
    let mut request = http::Request::builder().uri(format!("http://localhost{path}"));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    request.body(Body::empty()).unwrap()
}

/// A handler that answers with a message and then `grpc-status` in the trailers.
fn answering_ok() -> impl tower::Service<
    http::Request<Body>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|_request: http::Request<Body>| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let body = http_body_util::Full::new(bytes::Bytes::from_static(b"\0\0\0\0\0"))
            .map_err(|never: Infallible| match never {})
            .with_trailers(async move { Some(Ok(trailers)) });
        Ok::<_, Infallible>(http::Response::new(Body::new(body)))
    })
}

/// A handler that refuses, the way tonic and the auth layer do: a trailers-only answer.
fn refusing(
    status: tonic::Status,
) -> impl tower::Service<
    http::Request<Body>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |_request: http::Request<Body>| {
        let status = status.clone();
        async move { Ok::<_, Infallible>(status.into_http()) }
    })
}

fn rpc_metrics() -> (prometheus_client::registry::Registry, RpcMetrics) {
    let mut registry = metrics::registry();
    let rpc = RpcMetrics::register(&mut registry, [CHECK_FLAGS]);
    (registry, rpc)
}

fn encoded(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

#[tokio::test]
async fn a_call_with_a_traceparent_gets_a_server_span_in_that_trace_with_the_rpc_conventions() {
    let recorder = Recorder::new();
    let _default = tracing::subscriber::set_default(recorder.subscriber());
    let service = RpcTelemetryLayer::default().layer(answering_ok());

    let response = service
        .oneshot(request(
            CHECK_FLAGS,
            Some(&format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")),
        ))
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();

    let spans = recorder.spans();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "signins.flag.v1.FlagService/CheckFlags");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap()
    );
    assert_eq!(span.parent_span_id.to_string(), PARENT_SPAN_ID);
    assert_eq!(attribute(span, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attribute(span, "rpc.service").as_deref(),
        Some("signins.flag.v1.FlagService")
    );
    assert_eq!(attribute(span, "rpc.method").as_deref(), Some("CheckFlags"));
    assert_eq!(
        attribute(span, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn a_refused_call_is_traced_and_counted_with_its_code() {
    let recorder = Recorder::new();
    let _default = tracing::subscriber::set_default(recorder.subscriber());
    let (registry, rpc) = rpc_metrics();
    let service = RpcTelemetryLayer::new(rpc).layer(refusing(tonic::Status::unauthenticated(
        "missing bearer token",
    )));

    let response = service.oneshot(request(CHECK_FLAGS, None)).await.unwrap();

    assert_eq!(
        grpc_status(response.headers()),
        Some(tonic::Code::Unauthenticated)
    );
    let spans = recorder.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        attribute(&spans[0], "rpc.grpc.status_code").as_deref(),
        Some("16")
    );
    assert!(encoded(&registry).contains(
        "signins_rpc_requests_total{service=\"signins.flag.v1.FlagService\",method=\"CheckFlags\",code=\"UNAUTHENTICATED\"} 1"
    ));
}

#[tokio::test]
async fn a_call_is_counted_when_its_body_ends_not_when_its_headers_leave() {
    let (registry, rpc) = rpc_metrics();
    let service = RpcTelemetryLayer::new(rpc).layer(answering_ok());
    let counted = "signins_rpc_requests_total{service=\"signins.flag.v1.FlagService\",method=\"CheckFlags\",code=\"OK\"} 1";

    let response = service.oneshot(request(CHECK_FLAGS, None)).await.unwrap();
    let before = encoded(&registry);
    response.into_body().collect().await.unwrap();
    let after = encoded(&registry);

    assert!(!before.contains(counted), "{before}");
    assert!(after.contains(counted), "{after}");
}

#[tokio::test]
async fn a_call_whose_client_goes_away_is_counted_as_cancelled() {
    let (registry, rpc) = rpc_metrics();
    let service = RpcTelemetryLayer::new(rpc).layer(answering_ok());

    let response = service.oneshot(request(CHECK_FLAGS, None)).await.unwrap();
    drop(response);

    assert!(encoded(&registry).contains(
        "signins_rpc_requests_total{service=\"signins.flag.v1.FlagService\",method=\"CheckFlags\",code=\"CANCELLED\"} 1"
    ));
}

#[tokio::test]
async fn health_probes_are_counted_but_not_traced() {
    let recorder = Recorder::new();
    let _default = tracing::subscriber::set_default(recorder.subscriber());
    let (registry, rpc) = rpc_metrics();
    let service = RpcTelemetryLayer::new(rpc).layer(answering_ok());

    let response = service
        .oneshot(request("/grpc.health.v1.Health/Check", None))
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();

    assert!(recorder.spans().is_empty());
    assert!(encoded(&registry).contains(
        "signins_rpc_requests_total{service=\"grpc.health.v1.Health\",method=\"Check\",code=\"OK\"} 1"
    ));
}

#[tokio::test]
async fn a_client_span_writes_its_own_context_into_the_metadata() {
    let recorder = Recorder::new();
    let _default = tracing::subscriber::set_default(recorder.subscriber());
    let mut metadata = tonic::metadata::MetadataMap::new();

    let span = client::span("signins.flag.v1.FlagService", "CheckFlags");
    client::inject(&span, &mut metadata);
    client::record_status(&span, tonic::Code::Ok);
    drop(span);

    let spans = recorder.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].span_kind, SpanKind::Client);
    let traceparent = metadata.get("traceparent").unwrap().to_str().unwrap();
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            spans[0].span_context.trace_id(),
            spans[0].span_context.span_id()
        )
    );
}
