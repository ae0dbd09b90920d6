//! Claim: while the backend is down, acknowledged spans wait in agentrace's
//! disk queue; they survive a restart of agentrace during the outage; once
//! the backend is up (and even if it first answers UNAVAILABLE), every span
//! arrives. Delivery is at least once: a batch may arrive twice if agentrace
//! stops between the backend's answer and the queue's delete; this test
//! counts such duplicates and allows them.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use agentrace_collector::config::{Config, ExportProtocol, ExporterConfig};
use support::{Backend, free_port, metric, python_send, spans_of, wait_for};

fn config(data: &std::path::Path, backend: &str) -> Config {
    let mut c = Config::default();
    c.storage.data_dir = data.to_owned();
    let any = "127.0.0.1:0".parse().unwrap();
    c.receivers.otlp.grpc_endpoint = Some(any);
    c.receivers.otlp.http_endpoint = Some(any);
    c.api.endpoint = Some(any);
    c.pipeline.trace_timeout = Duration::from_millis(200);
    let mut e = ExporterConfig::new(backend, ExportProtocol::Grpc);
    e.max_backoff = Duration::from_millis(500);
    e.timeout = Duration::from_secs(2);
    c.exporters = vec![e];
    c
}

fn span_ids(request: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest) -> Vec<Vec<u8>> {
    spans_of(std::slice::from_ref(request)).into_iter().map(|(_, s)| s.span_id).collect()
}

#[test]
fn every_acknowledged_span_arrives_after_the_outage() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let name = format!("{endpoint} grpc");
    let queued = format!("agentrace_exporter_queue_spans{{exporter=\"{name}\"}}");
    let failed = format!("agentrace_exporter_failed_attempts_total{{exporter=\"{name}\"}}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // The backend is down: spans are acknowledged and queued on disk.
    let mut first = support::start_with(config(&data, &endpoint), tempfile::tempdir().unwrap());
    let before = python_send(&["--protocol", "grpc", "--endpoint", &first.grpc(), "--requests", "3"]);
    wait_for(20, "a failed export attempt", || metric(&first.api(), &failed) >= 1.0);
    assert_eq!(metric(&first.api(), &queued), before.spans as f64);

    // agentrace restarts during the outage; the queue is still there.
    first.stop();
    let second = support::start_with(config(&data, &endpoint), tempfile::tempdir().unwrap());
    assert_eq!(metric(&second.api(), &queued), before.spans as f64, "the queue survived the restart");
    let after = python_send(&["--protocol", "grpc", "--endpoint", &second.grpc(), "--requests", "2"]);

    // The backend comes up, refusing its first two requests as it starts.
    let out = dir.path().join("received.hex");
    let backend = Backend::start(port, &out, 2);
    let mut expected: BTreeSet<Vec<u8>> = span_ids(&before.request).into_iter().collect();
    expected.extend(span_ids(&after.request));
    wait_for(60, "every span at the backend", || {
        let got: BTreeSet<Vec<u8>> = spans_of(&backend.received()).into_iter().map(|(_, s)| s.span_id).collect();
        expected.is_subset(&got)
    });
    wait_for(10, "an empty queue", || metric(&second.api(), &queued) == 0.0);
    let received = spans_of(&backend.received()).len();
    let duplicates = received - expected.len();
    eprintln!("{} spans delivered, {duplicates} duplicates (at-least-once)", expected.len());
    assert!(duplicates <= expected.len(), "at most one extra copy per span");
    let sent = metric(&second.api(), &format!("agentrace_exporter_sent_spans_total{{exporter=\"{name}\"}}"));
    assert!(sent >= expected.len() as f64, "sent {sent}");
}
