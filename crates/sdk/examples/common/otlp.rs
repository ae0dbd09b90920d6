//! OTLP export for the examples, configured only by the standard variables:
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, `http/protobuf`,
//! `http/json`) and `OTEL_SERVICE_NAME`.
//!
//! HTTP uses the blocking client on the batch processor's own thread, and gRPC the tokio-runtime
//! batch processor: an async HTTP client on the default batch thread has no reactor and panics
//! (opentelemetry-rust #3125). Call [`Telemetry::shutdown`] before exiting so the last spans go out.

use agentrace::baggage::BaggageSpanProcessor;
use agentrace::propagation::{W3CPropagator, install_global_propagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Sets up export; `default_service` is used when `OTEL_SERVICE_NAME` is not set.
    pub fn init(default_service: &'static str) -> Telemetry {
        install_global_propagator(W3CPropagator::new());
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(default_service);
        }
        let protocol = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|_| "http/protobuf".into());
        let builder = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_span_processor(BaggageSpanProcessor::allow(["session.id", "user.id"]));
        let provider = match protocol.as_str() {
            "grpc" => {
                let exporter = SpanExporter::builder().with_tonic().build().expect("OTLP gRPC exporter");
                let batch = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                    exporter,
                    opentelemetry_sdk::runtime::Tokio,
                )
                .build();
                builder.with_span_processor(batch).build()
            }
            other => {
                let protocol = if other == "http/json" { Protocol::HttpJson } else { Protocol::HttpBinary };
                let exporter =
                    SpanExporter::builder().with_http().with_protocol(protocol).build().expect("OTLP HTTP exporter");
                builder.with_batch_exporter(exporter).build()
            }
        };
        Telemetry { provider }
    }

    pub fn tracer(&self, name: &'static str) -> SdkTracer {
        self.provider.tracer(name)
    }

    pub fn shutdown(self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}
