//! The collector's own metrics over OTLP, when `telemetry.metrics.endpoint`
//! is set: every counter and gauge of `/metrics`, under the same names and
//! labels (as attributes), read from the same rendering, so the two never
//! disagree. Sent by the official OpenTelemetry SDK's periodic reader over
//! OTLP/HTTP protobuf; histograms stay on `/metrics` only.

use std::sync::{Arc, OnceLock};

use agentrace_collector::config::SelfMetricsConfig;
use agentrace_collector::metrics::Metrics;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

static PROVIDER: OnceLock<SdkMeterProvider> = OnceLock::new();

/// One sample of the Prometheus text: a name, its labels, its value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// The counters and gauges `/metrics` declares (`# TYPE name kind`).
fn families(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(name, kind)| match kind.trim() {
            "counter" => Some((name.to_owned(), true)),
            "gauge" => Some((name.to_owned(), false)),
            _ => None,
        })
        .collect()
}

/// The samples of the Prometheus text exposition (`name{k="v",…} value`).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (head, ""),
            };
            let mut parsed = Vec::new();
            let mut rest = labels;
            while let Some((key, after)) = rest.split_once("=\"") {
                // Values escape `\` and `"` with a backslash.
                let mut value = String::new();
                let mut chars = after.char_indices();
                let mut end = after.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, next)) = chars.next() {
                                value.push(if next == 'n' { '\n' } else { next });
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                parsed.push((key.trim_start_matches(',').to_owned(), value));
                rest = &after[end..];
            }
            Some(Sample { name: name.to_owned(), labels: parsed, value })
        })
        .collect()
}

/// Starts sending the collector's metrics.
pub(crate) fn start(config: &SelfMetricsConfig, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let Some(endpoint) = config.endpoint.as_deref() else { return Ok(()) };
    let url = agentrace_collector::export::signal_url(endpoint, "/v1/metrics");
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        // Protobuf whatever features the build unified (`http-json` makes
        // JSON the exporter's default).
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .with_headers(config.headers.clone().into_iter().collect())
        .build()?;
    let reader = PeriodicReader::builder(exporter).with_interval(config.interval).build();
    let name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "agentrace".into());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(name).build();
    let provider = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
    let meter = provider.meter("agentrace-collector");
    for (family, counter) in families(&metrics.render()) {
        let m = Arc::clone(&metrics);
        let wanted = family.clone();
        let observe = move |sink: &dyn Fn(f64, &[KeyValue])| {
            for s in samples(&m.render()).into_iter().filter(|s| s.name == wanted) {
                let attrs: Vec<KeyValue> = s.labels.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect();
                sink(s.value, &attrs);
            }
        };
        if counter {
            let _ =
                meter.f64_observable_counter(family).with_callback(move |o| observe(&|v, a| o.observe(v, a))).build();
        } else {
            let _ = meter.f64_observable_gauge(family).with_callback(move |o| observe(&|v, a| o.observe(v, a))).build();
        }
    }
    let _ = PROVIDER.set(provider);
    Ok(())
}

/// Sends a last reading before the process ends.
pub(crate) fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        tracing::warn!(error = %e, "the collector's last own metrics could not be sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_is_read_back_name_labels_and_value() {
        let text = "# HELP a_total What.\n# TYPE a_total counter\na_total{transport=\"grpc\",x=\"q\\\"uote\"} 3\n\
                    # TYPE b gauge\nb 1.5\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 2\n";
        assert_eq!(families(text), [("a_total".to_owned(), true), ("b".to_owned(), false)]);
        let s = samples(text);
        assert_eq!(
            s[0],
            Sample {
                name: "a_total".into(),
                labels: vec![("transport".into(), "grpc".into()), ("x".into(), "q\"uote".into())],
                value: 3.0
            }
        );
        assert_eq!(s[1], Sample { name: "b".into(), labels: vec![], value: 1.5 });
        // And what the collector really renders parses whole.
        let rendered = Metrics::default().render();
        let names: Vec<String> = families(&rendered).into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"otelcol_receiver_accepted_spans".to_owned()), "{names:?}");
        for s in samples(&rendered) {
            assert!(rendered.contains(&s.name), "{s:?}");
        }
    }
}
