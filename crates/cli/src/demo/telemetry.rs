//! OTLP export for the demo's agents and its tool server: one tracer provider per service, each
//! with the SDK's baggage span processor (so `session.id`, set once at the edge, lands on every
//! span) and a batch exporter speaking OTLP/HTTP protobuf to `ENDPOINT/v1/traces`.
//!
//! The batch processor runs on its own thread and the exporter uses the blocking HTTP client: an
//! async client there has no reactor and panics (opentelemetry-rust #3125). For the same reason
//! providers are built and shut down outside the tokio runtime. Shutdown flushes: the demo never
//! exits with spans still queued.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentrace::baggage::BaggageSpanProcessor;
use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData};

/// Spans of this process whose export failed (refused, unreachable), and why the last one did:
/// the demo reports them and exits non-zero rather than claim it sent what went nowhere.
static LOST: AtomicU64 = AtomicU64::new(0);
static LOST_WHY: Mutex<Option<String>> = Mutex::new(None);

/// Spans whose export failed so far, with the last reason.
pub fn lost() -> (u64, Option<String>) {
    (LOST.load(Ordering::Relaxed), LOST_WHY.lock().map_or(None, |w| w.clone()))
}

/// The OTLP exporter, counting the spans of every batch it fails to deliver.
#[derive(Debug)]
struct Counted<E>(E);

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.0.export(batch).await;
        if let Err(e) = &result {
            LOST.fetch_add(n, Ordering::Relaxed);
            if let Ok(mut why) = LOST_WHY.lock() {
                *why = Some(e.to_string());
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// How often each service's batch of spans is sent.
pub const EXPORT_EVERY: Duration = Duration::from_millis(100);

/// `service.namespace` of every demo service, so they are easy to filter in a shared backend.
pub const NAMESPACE: &str = "agentrace-demo";

/// Where the demo posts its spans, as an OpenTelemetry SDK decides it: the `--endpoint` flag (a
/// base URL), else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the whole URL), else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base), else the collector's default OTLP/HTTP port; read
/// through `var`.
pub fn traces_target(flag: Option<&str>, var: impl Fn(&str) -> Option<String>) -> String {
    let base = |endpoint: &str| format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    if let Some(flag) = flag {
        return base(flag);
    }
    // The collector's own reading of the endpoint variables (the demo speaks OTLP/HTTP only: a
    // protocol set otherwise is its check's to refuse, with advice).
    let env = |name: &str| if name.ends_with("_ENDPOINT") { var(name) } else { None };
    match agentrace_collector::config::ExporterConfig::from_env(env) {
        Ok(Some(exporter)) => exporter.endpoint,
        _ => base("http://127.0.0.1:4318"),
    }
}

/// A tracer provider for `service` that posts to `traces` (the whole OTLP/HTTP URL, see
/// [`traces_target`]); the timeout and compression come from `OTEL_EXPORTER_OTLP_*`, as for
/// any OpenTelemetry SDK.
///
/// The resource names the service but no instance (`service.instance.id`), as most agent
/// services do not: the doctor then treats a timing-only join inside the service as a guess.
pub fn provider(traces: &str, service: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces)
        .build()
        .with_context(|| format!("cannot build the OTLP exporter for {traces}"))?;
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
        .with_span_processor(BatchSpanProcessor::builder(Counted(exporter)).with_batch_config(batch).build())
        .build())
}

/// Flushes and stops `provider`; a failure is reported, never fatal (the work is done).
pub fn shutdown(provider: &SdkTracerProvider, service: &str) {
    if let Err(err) = provider.force_flush() {
        tracing::warn!("demo: flushing the spans of {service} failed: {err}");
    }
    let _ = provider.shutdown();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_then_the_signal_variable_then_the_generic_one_name_where_spans_go() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://tempo:4318/otlp/v1/traces"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318/"),
        ]);
        assert_eq!(traces_target(Some("http://flag:4318"), both), "http://flag:4318/v1/traces");
        assert_eq!(traces_target(None, both), "http://tempo:4318/otlp/v1/traces");
        assert_eq!(
            traces_target(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318/")])),
            "http://base:4318/v1/traces"
        );
        assert_eq!(traces_target(None, env(&[])), "http://127.0.0.1:4318/v1/traces");
    }
}
