//! Shared test setup: an SDK tracer provider that exports to memory, with the baggage processor.
#![allow(dead_code)]

pub mod otlp_receiver;

use agentrace::baggage::BaggageSpanProcessor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracer, SdkTracerProvider, SpanData};

/// Where the broker of `scripts/services.sh start` listens: its `env` command exports the URL
/// under `var` (the test command does this); a clear failure otherwise, never a skip.
pub fn broker_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `scripts/services.sh start && eval \"$(scripts/services.sh env)\"` before `cargo test`")
    })
}

pub struct Telemetry {
    pub provider: SdkTracerProvider,
    pub exporter: InMemorySpanExporter,
}

impl Telemetry {
    pub fn new() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BaggageSpanProcessor::allow(["session.id", "user.id"]))
            .with_simple_exporter(exporter.clone())
            .build();
        Telemetry { provider, exporter }
    }

    pub fn tracer(&self, name: &'static str) -> SdkTracer {
        self.provider.tracer(name)
    }

    pub fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap()
    }

    pub fn span(&self, name: &str) -> SpanData {
        let spans = self.spans();
        spans.iter().find(|s| s.name == name).cloned().unwrap_or_else(|| {
            panic!("no span named {name:?}; got {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>())
        })
    }
}

pub fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

/// Fails (never skips) with the fix when a broker is not running.
pub fn broker_missing(what: &str, err: impl std::fmt::Display) -> ! {
    panic!("{what} is not reachable ({err}); run `scripts/services.sh start` before `cargo test`")
}
