//! OTLP export for the demo's agents and its tool server: one tracer provider per service, each
//! with the SDK's baggage span processor (so `session.id`, set once at the edge, lands on every
//! span) and a batch exporter speaking OTLP/HTTP protobuf to `ENDPOINT/v1/traces`.
//!
//! The batch processor runs on its own thread and the exporter uses the blocking HTTP client: an
//! async client there has no reactor and panics (opentelemetry-rust #3125). For the same reason
//! providers are built and shut down outside the tokio runtime. Shutdown flushes: the demo never
//! exits with spans still queued.

use std::time::Duration;

use agentrace::baggage::BaggageSpanProcessor;
use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

/// How often each service's batch of spans is sent.
pub const EXPORT_EVERY: Duration = Duration::from_millis(100);

/// `service.namespace` of every demo service, so they are easy to filter in a shared backend.
pub const NAMESPACE: &str = "agentrace-demo";

/// The URL spans are posted to, for an OTLP/HTTP base endpoint.
pub fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim_end_matches('/'))
}

/// A tracer provider for `service` that exports to `endpoint` (the OTLP/HTTP base URL).
///
/// The resource names the service but no instance (`service.instance.id`), as most agent
/// services do not: the doctor then treats a timing-only join inside the service as a guess.
pub fn provider(endpoint: &str, service: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(Duration::from_secs(5))
        .build()
        .with_context(|| format!("cannot build the OTLP exporter for {endpoint}"))?;
    // Export every 100 ms, not every 5 s: the agents' spans then reach the collector about when
    // the tool server's do (it flushes as it exits), and a live collector that closes traces
    // after a short timeout sees an orphan and the span that names its caller together.
    let batch = BatchConfigBuilder::default().with_scheduled_delay(EXPORT_EVERY).build();
    let resource = Resource::builder_empty()
        .with_service_name(service.to_owned())
        .with_attribute(KeyValue::new("service.namespace", NAMESPACE))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(BaggageSpanProcessor::allow(["session.id"]))
        .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batch).build())
        .build())
}

/// Flushes and stops `provider`; a failure is reported, never fatal (the work is done).
pub fn shutdown(provider: &SdkTracerProvider, service: &str) {
    if let Err(err) = provider.force_flush() {
        tracing::warn!("demo: flushing the spans of {service} failed: {err}");
    }
    let _ = provider.shutdown();
}
