//! The W3C trace context (`traceparent`, `tracestate`) read from incoming HTTP/2 headers and
//! written into outgoing gRPC metadata.
//!
//! The W3C propagator is used directly rather than through OpenTelemetry's global one: it is
//! what the contract with gateways is, and it works the same in tests that install no global
//! state.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

/// The caller's context from `headers`; an empty context when they carry none (or a
/// malformed one, which W3C says to ignore).
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes `context` into `metadata` as `traceparent` (and `tracestate`).
pub fn inject(context: &opentelemetry::Context, metadata: &mut MetadataMap) {
    TraceContextPropagator::new().inject_context(context, &mut MetadataInjector(metadata));
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes only its own lowercase ASCII keys and hex values; anything
        // else would be its bug, and is dropped rather than sent malformed.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}
