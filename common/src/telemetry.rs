//! Telemetry through `tracing`: log lines (JSON for production, pretty for a terminal, filtered
//! by `RUST_LOG`, default `info`), each carrying the `trace_id` and `span_id` of the span it
//! was written in, and OpenTelemetry traces exported over OTLP/gRPC when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! The OpenTelemetry layer is installed whether or not an endpoint is set: spans then get
//! trace and span ids (so logs correlate with the caller's `traceparent`, and the context
//! still flows to flag-service), but nothing is exported and no collector is needed.
//!
//! The standard variables are honoured: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
//! for the resource, `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` for sampling (read by
//! the SDK), `OTEL_EXPORTER_OTLP_*` for the exporter (timeout, headers, read by the
//! exporter), and `OTEL_SDK_DISABLED=true` turns export off.
//!
//! Which spans reach OpenTelemetry does not follow `RUST_LOG`: turning logs down to `warn`
//! must not hollow out traces. Our crates' spans go to OpenTelemetry down to `debug` (the
//! per-statement SQL spans are `debug`, so they stay out of `info` logs); other crates' only
//! from `info`, which keeps h2's and hyper's internals out.

mod log_line;

use clap::ValueEnum;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// The crates whose spans OpenTelemetry takes down to `debug`.
const OWN_CRATES: &[&str] = &["signins_common", "flag_service", "query_service"];

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from the `OTEL_EXPORTER_OTLP_*` settings.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// What [`install`] sets up.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` says.
    pub default_service_name: String,
    pub log_format: LogFormat,
    /// The OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; `None` exports nothing.
    pub otlp_endpoint: Option<String>,
}

impl TelemetrySettings {
    /// Settings from the environment: the endpoint from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT`; none when `OTEL_SDK_DISABLED=true`.
    pub fn from_env(default_service_name: &str, log_format: LogFormat) -> Self {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let disabled = non_empty("OTEL_SDK_DISABLED").is_some_and(|value| value == "true");
        let otlp_endpoint = if disabled {
            None
        } else {
            non_empty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|| non_empty("OTEL_EXPORTER_OTLP_ENDPOINT"))
        };
        Self {
            default_service_name: default_service_name.to_owned(),
            log_format,
            otlp_endpoint,
        }
    }
}

/// Keeps the tracer provider; dropping it flushes the spans not yet exported and stops the
/// exporter. Hold it in `main` until the service has stopped.
#[derive(Debug)]
#[must_use = "dropping the guard at once flushes and stops trace export"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Exports the spans ended so far, waiting for the collector. Blocks the calling thread.
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "flushing traces failed");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Blocks until the batch processor has exported what it holds (bounded by the
        // exporter's timeout). The services' runtimes are multi-threaded, so the exporter's
        // connection task keeps running while this thread waits.
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry: flushing traces at shutdown failed: {error}");
        }
    }
}

/// Installs logging and tracing for a service from the environment ([`TelemetrySettings::from_env`]).
pub fn init(
    default_service_name: &str,
    log_format: LogFormat,
) -> Result<TelemetryGuard, TelemetryError> {
    install(TelemetrySettings::from_env(
        default_service_name,
        log_format,
    ))
}

/// Installs the global subscriber once; later calls (tests start many apps) leave the first
/// one in place and return a guard over a provider that exports nothing.
///
/// The exporter is built on the caller's Tokio runtime (its connection lives there); call this
/// from inside the runtime.
pub fn install(settings: TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    let mut provider = SdkTracerProvider::builder().with_resource(resource(&settings));
    if let Some(endpoint) = &settings.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();

    let otel_filter = OWN_CRATES
        .iter()
        .fold(Targets::new().with_default(Level::INFO), |targets, name| {
            targets.with_target(*name, Level::DEBUG)
        });
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("flagged-sign-ins"))
        // The level and target are tracing's bookkeeping, not the operation's; the RPC and
        // SQL conventions carry what a trace reader needs.
        .with_level(false)
        .with_target(false)
        .with_filter(otel_filter)
        .boxed();

    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let log_layer = log_line::layer(settings.log_format, std::io::stderr, ansi)
        .with_filter(log_filter)
        .boxed();

    let layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![otel_layer, log_layer];
    let installed = tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok();
    if installed {
        if let Some(endpoint) = &settings.otlp_endpoint {
            tracing::info!(%endpoint, "exporting traces over OTLP/gRPC");
        }
    }
    Ok(TelemetryGuard { provider })
}

/// Runs `future` without producing spans (nor exporting any its callees open): for polls
/// that run every few seconds and would otherwise each be a trace of their own.
pub fn untraced<F: std::future::Future>(future: F) -> impl std::future::Future<Output = F::Output> {
    use opentelemetry::context::FutureExt as _;
    future.with_context(opentelemetry::Context::current().with_telemetry_suppressed())
}

/// The resource: `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own attributes, and `service.name`
/// from `OTEL_SERVICE_NAME`, else from `OTEL_RESOURCE_ATTRIBUTES`, else the default.
fn resource(settings: &TelemetrySettings) -> Resource {
    let detectors: [Box<dyn ResourceDetector>; 2] = [
        Box::new(TelemetryResourceDetector),
        Box::new(EnvResourceDetector::new()),
    ];
    let detected = Resource::builder_empty().with_detectors(&detectors).build();
    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            detected
                .get(&opentelemetry::Key::from_static_str("service.name"))
                .map(|name| name.to_string())
        })
        .unwrap_or_else(|| settings.default_service_name.clone());
    Resource::builder_empty()
        .with_detectors(&detectors)
        .with_service_name(service_name)
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use tracing::Instrument;

    #[tokio::test]
    async fn spans_opened_inside_untraced_are_not_exported_and_others_are() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _default = tracing::subscriber::set_default(subscriber);

        untraced(async { tracing::info_span!("idle_poll").in_scope(|| ()) }).await;
        async {}.instrument(tracing::info_span!("work")).await;

        let names: Vec<String> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .map(|span| span.name.into_owned())
            .collect();
        assert_eq!(names, ["work"]);
    }
}
