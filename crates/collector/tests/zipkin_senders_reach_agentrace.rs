//! Claims about the Zipkin v2 receiver: spans sent by the OpenTelemetry
//! Python SDK's Zipkin exporters (`opentelemetry-exporter-zipkin-json` and
//! `…-zipkin-proto-http`, real Zipkin senders of both encodings) are stored
//! and come back from the API as OTLP, as
//! the OpenTelemetry Collector's Zipkin receiver would have made them: the
//! service as the resource, kinds, parents, status, events and the scope;
//! a bad body is a 400 that says what was wrong, and loses nothing stored;
//! the receiver is off unless configured.

use crate::support;

use std::process::Command;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;

/// Sends the script's spans with the Python SDK's Zipkin exporter for `protocol` (`json`, or
/// `proto` from the venv `scripts/test.sh` makes for it); what the SDK recorded.
fn send(endpoint: &str, protocol: &str) -> Vec<Value> {
    let script = support::workspace_root().join("crates/collector/tests/python/send_zipkin.py");
    let python = match protocol {
        "proto" => {
            let path = support::workspace_root().join(".venv-zipkin-proto/bin/python");
            assert!(
                path.exists(),
                "{} not found: run scripts/test.sh (or `python3 -m venv .venv-zipkin-proto && \
                 .venv-zipkin-proto/bin/pip install -r scripts/requirements-zipkin-proto.txt`)",
                path.display()
            );
            path
        }
        _ => support::python(),
    };
    let out = Command::new(python).arg(script).args(["--endpoint", endpoint, "--protocol", protocol]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "zipkin sender failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    v["spans"].as_array().unwrap().clone()
}

fn hex(bytes: &[u8]) -> String {
    agentrace_model::ids::to_hex(bytes)
}

#[test]
fn python_zipkin_spans_come_back_as_otlp() {
    let collector = support::start(|c| c.receivers.zipkin.endpoint = Some("127.0.0.1:0".parse().unwrap()));
    let zipkin = collector.zipkin().expect("the Zipkin receiver listens when configured");
    let (trace_id, stored) = sent_spans_come_back(&collector, &format!("{zipkin}/api/v2/spans"), "json", 4.0);
    rejects_bad_bodies(&collector, &zipkin, &trace_id, &stored);
}

#[test]
fn python_zipkin_protobuf_spans_come_back_as_otlp() {
    let collector = support::start(|c| c.receivers.zipkin.endpoint = Some("127.0.0.1:0".parse().unwrap()));
    let zipkin = collector.zipkin().expect("the Zipkin receiver listens when configured");
    sent_spans_come_back(&collector, &format!("{zipkin}/api/v2/spans"), "proto", 4.0);
}

/// Sends with the `protocol` exporter to `endpoint` and checks each span as the collector
/// stored it against what the SDK recorded; the trace's ID and what was stored.
fn sent_spans_come_back(
    collector: &support::Running,
    endpoint: &str,
    protocol: &str,
    accepted_after: f64,
) -> (String, ExportTraceServiceRequest) {
    let sent = send(endpoint, protocol);
    assert_eq!(sent.len(), 4);
    let trace_id = sent[0]["trace_id"].as_str().unwrap();
    let stored = support::fetch_trace(&collector.api(), trace_id);
    let placed = support::by_span_id(&stored);
    assert_eq!(placed.len(), 4, "every span stored");
    for want in &sent {
        let got = &placed[&support::hex_decode(want["span_id"].as_str().unwrap())];
        let span = &got.span;
        assert_eq!(span.name, want["name"].as_str().unwrap());
        assert_eq!(hex(&span.trace_id), trace_id);
        match want["parent_id"].as_str() {
            Some(parent) => assert_eq!(hex(&span.parent_span_id), parent),
            None => assert!(span.parent_span_id.is_empty()),
        }
        // The exporter writes no kind for an internal span.
        let kind = match want["kind"].as_str().unwrap() {
            "SERVER" => SpanKind::Server,
            "CLIENT" => SpanKind::Client,
            "PRODUCER" => SpanKind::Producer,
            "CONSUMER" => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        };
        assert_eq!(span.kind, kind as i32, "{}", span.name);
        assert_eq!(span.start_time_unix_nano / 1_000, want["start_us"].as_u64().unwrap(), "{}", span.name);
        let events: Vec<&str> = span.events.iter().map(|e| e.name.as_str()).collect();
        let want_events: Vec<&str> = want["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
        assert_eq!(events, want_events);
        let resource = got.resource.resource.as_ref().unwrap();
        let attr = |attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str| {
            attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone()).and_then(|v| v.value)
        };
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        assert_eq!(attr(&resource.attributes, "service.name"), Some(V::StringValue("zipkin-planner".into())));
        assert_eq!(attr(&resource.attributes, "service.instance.id"), Some(V::StringValue("z-1".into())));
        assert_eq!(got.scope.scope.as_ref().unwrap().name, "agentrace.zipkin.tests");
        assert!(attr(&span.attributes, "otel.scope.name").is_none(), "scope tags are the scope, not attributes");
        if span.name == "send tasks" {
            let status = span.status.as_ref().unwrap();
            assert_eq!((status.code, status.message.as_str()), (2, "queue full"));
        }
        if span.name == "chat gpt-4o" {
            // Zipkin's tags are strings.
            assert_eq!(attr(&span.attributes, "gen_ai.usage.input_tokens"), Some(V::StringValue("12".into())));
            let retry = &span.events[0];
            assert_eq!(attr(&retry.attributes, "attempt"), Some(V::IntValue(2)));
        }
    }
    let accepted =
        support::metric(&collector.api(), "otelcol_receiver_accepted_spans{receiver=\"zipkin\",transport=\"http\"}");
    assert_eq!(accepted, accepted_after);
    (trace_id.to_owned(), stored)
}

/// A bad body says what was wrong and loses nothing.
fn rejects_bad_bodies(collector: &support::Running, zipkin: &str, trace_id: &str, stored: &ExportTraceServiceRequest) {
    let client = reqwest::blocking::Client::new();
    let response = client
        .post(format!("{zipkin}/api/v2/spans"))
        .header("content-type", "application/json")
        .body(r#"[{"traceId":"not-hex","id":"aaaaaaaaaaaaaaaa"}]"#)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let text = response.text().unwrap();
    assert!(text.contains(r#"traceId "not-hex" is not 16 or 32 hex digits"#), "{text}");
    let response = client
        .post(format!("{zipkin}/api/v2/spans"))
        .header("content-type", "text/xml")
        .body("<spans/>")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    assert_eq!(&support::fetch_trace(&collector.api(), trace_id), stored);
}

#[test]
fn the_zipkin_receiver_is_off_unless_configured() {
    let collector = support::start(|_| {});
    assert_eq!(collector.zipkin(), None);
}
