//! Claim: agentrace forwards to backends over OTLP/gRPC, OTLP/HTTP with
//! protobuf and OTLP/HTTP with JSON, several at once, each receiving every
//! span. The backends here are three more agentrace collectors, real OTLP
//! receivers with their own redaction, which does not hide anything this
//! test checks.

use crate::support;

use std::time::Duration;

use agentrace_collector::config::{ExportCompression, ExportProtocol, ExportRepair, ExporterConfig};
use support::{python_send, wait_for};

fn span_count(api: &str, trace_id: &str) -> usize {
    let (status, _) = support::get_json(&format!("{api}/api/v3/traces/{trace_id}"));
    if status != 200 {
        return 0;
    }
    support::spans_of(&[support::fetch_trace(api, trace_id)]).len()
}

#[test]
fn every_protocol_delivers_every_span() {
    every_protocol_delivers_every_span_compressed(ExportCompression::None);
}

#[test]
fn every_protocol_delivers_every_span_gzip_compressed() {
    every_protocol_delivers_every_span_compressed(ExportCompression::Gzip);
}

fn every_protocol_delivers_every_span_compressed(compression: ExportCompression) {
    let grpc = support::start(|_| {});
    let proto = support::start(|_| {});
    let json = support::start(|_| {});
    let exporter = |endpoint: String, protocol, repair| {
        let mut e = ExporterConfig::new(endpoint, protocol);
        e.repair = repair;
        e.compression = compression;
        e
    };
    let agentrace = support::start(|c| {
        c.pipeline.trace_timeout = Duration::from_millis(200);
        c.exporters = vec![
            exporter(grpc.grpc(), ExportProtocol::Grpc, ExportRepair::Off),
            exporter(proto.http(), ExportProtocol::HttpProtobuf, ExportRepair::Reparent),
            exporter(json.http(), ExportProtocol::HttpJson, ExportRepair::Link),
        ];
    });
    let sent = python_send(&["--protocol", "grpc", "--endpoint", &agentrace.grpc(), "--requests", "2"]);
    for backend in [&grpc, &proto, &json] {
        wait_for(30, "every span at every backend", || {
            sent.trace_ids.iter().map(|t| span_count(&backend.api(), t)).sum::<usize>() == sent.spans
        });
    }
    let accepted_json =
        support::metric(&json.api(), "agentrace_receiver_spans_accepted_total{transport=\"http_json\"}");
    assert_eq!(accepted_json, sent.spans as f64, "the JSON backend got JSON");
    let accepted_proto =
        support::metric(&proto.api(), "agentrace_receiver_spans_accepted_total{transport=\"http_protobuf\"}");
    assert_eq!(accepted_proto, sent.spans as f64);
}

#[test]
fn an_exporter_aimed_at_the_wrong_port_keeps_its_spans_queued_instead_of_counting_them_sent() {
    // OTLP/HTTP spoken to a gRPC port: the server answers HTTP 200 with
    // grpc-status 12, which used to count as delivered. Nothing arrived.
    let backend = support::start(|_| {});
    let agentrace = support::start(|c| {
        c.pipeline.trace_timeout = Duration::from_millis(200);
        let mut e = ExporterConfig::new(backend.grpc(), ExportProtocol::HttpProtobuf);
        e.repair = ExportRepair::Off;
        e.max_backoff = Duration::from_millis(200);
        c.exporters = vec![e];
    });
    let name = format!("{} http/protobuf", backend.grpc());
    let metric = |m: &str| support::metric(&agentrace.api(), &format!("{m}{{exporter=\"{name}\"}}"));
    let sent = python_send(&["--protocol", "grpc", "--endpoint", &agentrace.grpc(), "--requests", "2"]);
    wait_for(30, "the misaimed exporter to try a few times", || {
        metric("agentrace_exporter_failed_attempts_total") >= 3.0
    });
    assert_eq!(metric("agentrace_exporter_sent_spans_total"), 0.0, "nothing was delivered");
    assert_eq!(metric("agentrace_exporter_dropped_spans_total"), 0.0, "nor thrown away");
    assert_eq!(metric("agentrace_exporter_queue_spans"), sent.spans as f64, "every span waits in the queue");
    // The same, under the OpenTelemetry Collector's names.
    assert_eq!(metric("otelcol_exporter_sent_spans"), 0.0);
    assert_eq!(metric("otelcol_exporter_send_failed_spans"), 0.0);
    assert_eq!(metric("otelcol_exporter_queue_size"), sent.spans as f64);
    let accepted =
        support::metric(&agentrace.api(), "otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"}");
    assert_eq!(accepted, sent.spans as f64);
    assert_eq!(sent.trace_ids.iter().map(|t| span_count(&backend.api(), t)).sum::<usize>(), 0);
}

#[test]
fn a_batch_the_backend_refuses_for_good_is_kept_and_can_be_replayed() {
    // The backend refuses the first export for good (INVALID_ARGUMENT), as
    // one over its tenant's quota would; the batch is kept, not dropped.
    let dir = tempfile::tempdir().unwrap();
    let backend = support::Backend::start_with(0, &dir.path().join("got.hex"), &["--reject", "1"]);
    let agentrace = support::start(|c| {
        c.pipeline.trace_timeout = Duration::from_millis(200);
        let mut e = ExporterConfig::new(backend.endpoint(), ExportProtocol::Grpc);
        e.repair = ExportRepair::Off;
        c.exporters = vec![e];
    });
    let name = format!("{} grpc", backend.endpoint());
    let metric = |m: &str| support::metric(&agentrace.api(), &format!("{m}{{exporter=\"{name}\"}}"));
    let sent = python_send(&["--protocol", "grpc", "--endpoint", &agentrace.grpc(), "--requests", "1"]);
    // (The SDK exports span by span, so the refused batch holds some of them.)
    // (The queue's gauge follows the dead letter's and the sent spans' on
    // its own update: CI run 49 read it a moment before, over PostgreSQL.)
    wait_for(30, "every span delivered or kept", || {
        metric("agentrace_exporter_dead_letter_spans") > 0.0
            && metric("agentrace_exporter_dead_letter_spans") + metric("agentrace_exporter_sent_spans_total")
                == sent.spans as f64
            && metric("agentrace_exporter_queue_spans") == 0.0
    });
    let dead = metric("agentrace_exporter_dead_letter_spans");
    assert_eq!(metric("otelcol_exporter_send_failed_spans"), dead);
    assert_eq!(metric("agentrace_exporter_queue_spans"), 0.0);
    let delivered: usize = sent.trace_ids.iter().map(|t| span_count_at(&backend, t)).sum();
    assert_eq!(delivered as f64 + dead, sent.spans as f64, "the backend kept nothing it refused");
    let (status, listed) = support::get_json(&format!("{}/api/agentrace/dead-letters", agentrace.api()));
    assert_eq!(status, 200, "{listed}");
    let entry = &listed["exporters"][0];
    assert_eq!(entry["exporter"], name.as_str());
    let requests = entry["requests"].as_u64().unwrap();
    assert!(requests >= 1, "{entry}");
    assert_eq!(entry["spans"].as_f64(), Some(dead));
    assert!(entry["reasons"][0].as_str().unwrap().contains("tenant quota exceeded"), "{entry}");

    // Replayed once the operator has fixed what was refused: sent again, and delivered.
    let client = reqwest::blocking::Client::new();
    let replay = |exporter: &str| {
        client
            .post(format!(
                "{}/api/agentrace/dead-letters/replay?exporter={}",
                agentrace.api(),
                exporter.replace(' ', "%20").replace(':', "%3A").replace('/', "%2F")
            ))
            .send()
            .unwrap()
    };
    let answer: serde_json::Value = replay(&name).json().unwrap();
    assert_eq!(answer["replayed_requests"].as_u64(), Some(requests), "{answer}");
    assert_eq!(answer["replayed_spans"].as_f64(), Some(dead), "{answer}");
    wait_for(30, "the replayed batch to arrive", || {
        sent.trace_ids.iter().map(|t| span_count_at(&backend, t)).sum::<usize>() == sent.spans
    });
    assert_eq!(metric("agentrace_exporter_dead_letter_spans"), 0.0);
    let (_, listed) = support::get_json(&format!("{}/api/agentrace/dead-letters", agentrace.api()));
    assert_eq!(listed["exporters"], serde_json::json!([]));
    let unknown = replay("nowhere grpc");
    assert_eq!(unknown.status().as_u16(), 404);
}

fn span_count_at(backend: &support::Backend, trace_id: &str) -> usize {
    support::spans_of(&backend.received())
        .iter()
        .filter(|(_, s)| agentrace_model::ids::to_hex(&s.trace_id) == trace_id)
        .count()
}
