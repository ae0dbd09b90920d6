//! The binary's own logs, on stderr: the filter from `AGENTRACE_LOG`, else
//! `RUST_LOG`, else the command's default; colour only when stderr is a
//! terminal (and `NO_COLOR` is unset), so files and log shippers get plain
//! text; `--log-format json` for one JSON object per line.
//!
//! And, when `telemetry.traces.endpoint` is set, the collector's own spans
//! (`receive`, `store.commit`, `pipeline.close`, `export`, of the
//! `agentrace_collector` crate only) over OTLP/HTTP, through the official
//! OpenTelemetry SDK's batch processor; `OTEL_SERVICE_NAME` names the
//! service (default `agentrace`).

use std::io::IsTerminal;
use std::sync::OnceLock;

use agentrace_collector::config::SelfTracesConfig;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();
static OWN_TRACES: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The format every command's logs use (the global `--log-format`).
pub(crate) fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

/// The filter the environment asks for, or `default`.
fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("AGENTRACE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default))
}

/// Installs the subscriber (once; a second call does nothing), with the
/// collector's own spans going to `own_traces` when given.
pub(crate) fn init(default: &str, own_traces: Option<&SelfTracesConfig>) {
    let format = FORMAT.get().copied().unwrap_or_default();
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr).boxed(),
    }
    .with_filter(filter(default));
    let mut failed = None;
    let spans = own_traces.and_then(|config| match provider(config) {
        Ok(provider) => {
            let tracer = provider.tracer("agentrace-collector");
            let _ = OWN_TRACES.set(provider);
            // Only the collector's own spans, whatever the log filter says.
            let targets = Targets::new().with_target("agentrace_collector", LevelFilter::INFO);
            Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(targets))
        }
        Err(e) => {
            failed = Some(e);
            None
        }
    });
    let _ = tracing_subscriber::registry().with(logs).with(spans).try_init();
    if let Some(e) = failed {
        tracing::error!(error = %e, "the collector's own spans cannot be exported; they are off");
    }
}

/// The OpenTelemetry tracer provider for the collector's own spans.
fn provider(config: &SelfTracesConfig) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let endpoint = config.endpoint.as_deref().unwrap_or_default();
    let url = agentrace_collector::export::signal_url(endpoint, "/v1/traces");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        // Protobuf whatever features the build unified (`http-json` makes
        // JSON the exporter's default).
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .with_headers(config.headers.clone().into_iter().collect())
        .build()?;
    let name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "agentrace".into());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(name).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// Sends the collector's own spans still buffered, before the process ends.
pub(crate) fn shutdown() {
    if let Some(provider) = OWN_TRACES.get()
        && let Err(e) = provider.shutdown()
    {
        tracing::warn!(error = %e, "the collector's last own spans could not be sent");
    }
}
