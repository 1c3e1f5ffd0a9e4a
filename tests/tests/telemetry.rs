//! One trace from the gateway to the database: a RecordSignIns call that carries a W3C
//! `traceparent` is traced through query-service, its CheckFlags call to flag-service, and
//! the SQL both run, and the spans reach an OTLP collector (an in-process receiver here) with
//! OpenTelemetry's RPC and database conventions.
//!
//! The tracing subscriber is process-wide, so this binary holds this one test; the services'
//! spans go through the same `telemetry::install` the binaries use, exporting over OTLP/gRPC.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use signins_common::auth::Role;
use signins_common::telemetry::{LogFormat, TelemetrySettings};
use signins_tests::{Key, TestSystem, query};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

/// An OTLP/gRPC collector that keeps every span it is sent.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans);
        self.spans.lock().unwrap().extend(spans);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Starts the collector on a port of its own; returns it and its URL.
    async fn start() -> (Collector, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let collector = Collector::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        (collector, url)
    }

    /// The spans received of one trace.
    fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|span| hex(&span.trace_id) == trace_id)
            .cloned()
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .clone()?;
    match value.value? {
        Value::StringValue(text) => Some(text),
        Value::IntValue(number) => Some(number.to_string()),
        Value::BoolValue(flag) => Some(flag.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// The one span of `spans` that is `kind` with these `rpc.service` and `rpc.method`.
fn rpc_span<'a>(spans: &'a [Span], kind: SpanKind, service: &str, method: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|span| {
            span.kind == kind as i32
                && attribute(span, "rpc.service").as_deref() == Some(service)
                && attribute(span, "rpc.method").as_deref() == Some(method)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {kind:?} span of {service}/{method} expected in {spans:#?}"
    );
    found[0]
}

/// The SQL spans of `spans` whose parent is `parent`.
fn sql_children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|span| {
            span.parent_span_id == parent.span_id
                && attribute(span, "db.system").as_deref() == Some("postgresql")
        })
        .collect()
}

/// A fresh W3C trace id and parent span id, as a gateway would send them.
fn fresh_trace() -> (String, String) {
    let trace_id = Uuid::new_v4().simple().to_string();
    let parent_id = Uuid::new_v4().simple().to_string()[..16].to_owned();
    (trace_id, parent_id)
}

fn with_traceparent<T>(message: T, trace_id: &str, parent_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_batch_is_one_trace_from_the_gateways_traceparent_through_both_services_to_the_sql()
 {
    // Arrange: a collector, telemetry exporting to it, both services, a flagged key.
    let (collector, url) = Collector::start().await;
    let telemetry = signins_common::telemetry::install(TelemetrySettings {
        default_service_name: "signins-tests".into(),
        log_format: LogFormat::Json,
        otlp_endpoint: Some(url),
    })
    .unwrap();
    let system = TestSystem::start().await;
    let key = Key::random();
    let mut flagging = system.flag_client(&system.gateway_token()).await;
    flagging.enable_flagging(key.enable()).await.unwrap();
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let stranger = system.query_client("").await;
    let sign_in = key.sign_in_at(chrono::Utc::now(), "user@contoso.com", 50126);
    let (trace_id, parent_id) = fresh_trace();
    let (refused_trace_id, refused_parent_id) = fresh_trace();

    // Act: one batch recorded, one call refused for want of a token; then the telemetry
    // guard is dropped, as at shutdown, which flushes every span to the collector.
    let recorded = gateway
        .record_sign_ins(with_traceparent(
            query::RecordSignInsRequest {
                sign_ins: vec![sign_in.clone()],
            },
            &trace_id,
            &parent_id,
        ))
        .await
        .unwrap()
        .into_inner();
    let refused = stranger
        .clone()
        .get_sign_in(with_traceparent(
            query::GetSignInRequest {
                id: sign_in.id.clone(),
            },
            &refused_trace_id,
            &refused_parent_id,
        ))
        .await
        .unwrap_err();
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .unwrap();

    // Assert: the call worked, and was flagged (so flag-service's SQL found the session).
    assert_eq!(recorded.recorded, 1);
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut reader = system
        .query_client(&system.token("admin", Some(key.tenant), &[Role::GlobalReader]))
        .await;
    let stored = reader
        .get_sign_in(query::GetSignInRequest { id: sign_in.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.flagged_for_review, Some(true));

    // query-service's server span continues the gateway's trace, with the RPC conventions.
    let spans = collector.trace(&trace_id);
    let record = rpc_span(
        &spans,
        SpanKind::Server,
        "signins.query.v1.SignInService",
        "RecordSignIns",
    );
    assert_eq!(hex(&record.parent_span_id), parent_id);
    assert_eq!(record.name, "signins.query.v1.SignInService/RecordSignIns");
    assert_eq!(attribute(record, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attribute(record, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );

    // Its CheckFlags call is a client span under it, and flag-service's server span is under
    // that: the context crossed the wire in `traceparent`.
    let check_client = rpc_span(
        &spans,
        SpanKind::Client,
        "signins.flag.v1.FlagService",
        "CheckFlags",
    );
    assert_eq!(check_client.parent_span_id, record.span_id);
    assert_eq!(
        attribute(check_client, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    let check_server = rpc_span(
        &spans,
        SpanKind::Server,
        "signins.flag.v1.FlagService",
        "CheckFlags",
    );
    assert_eq!(check_server.parent_span_id, check_client.span_id);
    assert_eq!(
        attribute(check_server, "rpc.system").as_deref(),
        Some("grpc")
    );
    assert_eq!(
        attribute(check_server, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );

    // Each service's SQL is a span under its server span, with the statement and never a
    // parameter's value.
    let flag_sql = sql_children(&spans, check_server);
    assert_eq!(flag_sql.len(), 1, "{spans:#?}");
    assert_eq!(
        attribute(flag_sql[0], "db.operation").as_deref(),
        Some("SELECT")
    );
    assert_eq!(flag_sql[0].kind, SpanKind::Client as i32);
    let query_sql = sql_children(&spans, record);
    let insert = query_sql
        .iter()
        .find(|span| attribute(span, "db.operation").as_deref() == Some("INSERT"))
        .unwrap_or_else(|| panic!("an INSERT span under RecordSignIns in {spans:#?}"));
    assert!(
        attribute(insert, "db.statement")
            .unwrap()
            .contains("INSERT INTO query.sign_ins")
    );
    for span in flag_sql.iter().chain(&query_sql) {
        let statement = attribute(span, "db.statement").unwrap();
        for value in [
            key.tenant.to_string(),
            key.user.to_string(),
            key.browser.clone(),
            "user@contoso.com".to_owned(),
        ] {
            assert!(
                !statement.contains(&value),
                "{value} in the statement {statement}"
            );
        }
    }

    // A call refused by auth is traced too, with its code.
    let refused_spans = collector.trace(&refused_trace_id);
    let refused_span = rpc_span(
        &refused_spans,
        SpanKind::Server,
        "signins.query.v1.SignInService",
        "GetSignIn",
    );
    assert_eq!(hex(&refused_span.parent_span_id), refused_parent_id);
    assert_eq!(
        attribute(refused_span, "rpc.grpc.status_code").as_deref(),
        Some("16")
    );
}
