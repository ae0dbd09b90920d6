//! Claim: a broken multi-agent flow sent by the official OpenTelemetry
//! Python SDK (a queue hand-off and an MCP call without propagation,
//! prompts in sensitive events) reaches a real OTLP backend through
//! agentrace as one connected trace, with the `agentrace.repair.*`
//! attributes on what was repaired, the agents' rollups, and no sensitive
//! content: no sensitive event, no content attribute, no leaked key.
//! In link mode the IDs stay and the orphans gain `inferred_parent` links.

use crate::support;

use std::process::Command;

use agentrace_collector::config::{ExportProtocol, ExportRepair, ExporterConfig};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use support::{Backend, spans_of, wait_for};

struct Sent {
    orchestrator: String,
    researcher: String,
    mcp: String,
    secrets: Vec<String>,
    spans: usize,
}

fn send_broken_flow(endpoint: &str) -> Sent {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/broken_flow.py");
    let out = Command::new(support::python()).arg(script).args(["--endpoint", endpoint]).output().unwrap();
    assert!(out.status.success(), "sender failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    Sent {
        orchestrator: s("orchestrator"),
        researcher: s("researcher"),
        mcp: s("mcp"),
        secrets: v["secrets"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
        spans: v["spans"].as_u64().unwrap() as usize,
    }
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    agentrace_model::ids::to_hex(bytes)
}

fn run(repair: ExportRepair) -> (Sent, Vec<(String, Span)>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.hex");
    let backend = Backend::start(0, &out, 0);
    let mut exporter = ExporterConfig::new(backend.endpoint(), ExportProtocol::Grpc);
    exporter.repair = repair;
    let agentrace = support::start(|c| {
        // The sender exports span by span, each waiting for its acknowledgement (durable, over
        // PostgreSQL a commit): the timeout must outlast the gap between two of them, which on
        // a busy 2-core machine was once more than 300 ms, so a trace closed (and was exported
        // unrepaired) before the span that joins it arrived.
        c.pipeline.trace_timeout = std::time::Duration::from_secs(2);
        c.exporters = vec![exporter];
    });
    let sent = send_broken_flow(&agentrace.grpc());
    wait_for(30, "every span at the backend", || spans_of(&backend.received()).len() >= sent.spans);
    let requests = backend.received();
    let bytes: Vec<u8> = requests.iter().flat_map(prost::Message::encode_to_vec).collect();
    (sent, spans_of(&requests), bytes)
}

fn by_name<'a>(spans: &'a [(String, Span)], service: &str, name: &str) -> &'a Span {
    &spans.iter().find(|(s, sp)| s == service && sp.name == name).unwrap_or_else(|| panic!("{service}: {name}")).1
}

fn assert_nothing_sensitive(sent: &Sent, spans: &[(String, Span)], bytes: &[u8]) {
    for secret in &sent.secrets {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret:?} reached the backend");
    }
    for (_, span) in spans {
        assert!(span.events.iter().all(|e| e.attributes.iter().all(|kv| kv.key != "sensitive")), "{}", span.name);
        assert!(attr(span, "gen_ai.input.messages").is_none());
    }
    let chat = by_name(spans, "researcher", "chat gpt-4o");
    assert_eq!(attr(chat, "agentrace.redaction.events_dropped"), Some(&Value::IntValue(2)));
    assert_eq!(attr(chat, "agentrace.redaction.attributes_dropped"), Some(&Value::IntValue(1)));
    assert_eq!(
        attr(chat, "http.request.header.authorization"),
        Some(&Value::StringValue("<redacted:bearer_token>".into()))
    );
}

#[test]
fn reparent_mode_delivers_one_connected_trace_without_sensitive_content() {
    let (sent, spans, bytes) = run(ExportRepair::Reparent);
    assert_eq!(spans.len(), sent.spans, "each span once");
    let traces: std::collections::BTreeSet<String> = spans.iter().map(|(_, s)| hex(&s.trace_id)).collect();
    assert_eq!(traces.into_iter().collect::<Vec<_>>(), vec![sent.orchestrator.clone()], "one connected trace");

    let producer = by_name(&spans, "orchestrator", "send tasks");
    let consumer = by_name(&spans, "researcher", "process tasks");
    assert_eq!(consumer.parent_span_id, producer.span_id, "the consumer hangs under its producer");
    assert_eq!(attr(consumer, "agentrace.repair.evidence"), Some(&Value::StringValue("messaging.message.id".into())));
    assert!(matches!(attr(consumer, "agentrace.repair.confidence"), Some(Value::DoubleValue(c)) if *c >= 0.8));
    assert_eq!(
        attr(consumer, "agentrace.repair.original_trace_id"),
        Some(&Value::StringValue(sent.researcher.clone()))
    );

    let client = spans.iter().find(|(s, sp)| s == "orchestrator" && sp.name == "tools/call search").unwrap();
    let server = by_name(&spans, "mcp-search", "tools/call search");
    assert_eq!(server.parent_span_id, client.1.span_id, "the MCP server hangs under its client");
    assert_eq!(attr(server, "agentrace.repair.original_trace_id"), Some(&Value::StringValue(sent.mcp.clone())));
    assert!(attr(server, "agentrace.repair.evidence").is_some());

    // Tokens and cost rolled up onto the agent that spent them.
    let researcher = by_name(&spans, "researcher", "invoke_agent researcher");
    assert_eq!(attr(researcher, "app.agent.subtree.input_tokens"), Some(&Value::IntValue(1500)));
    assert_eq!(attr(researcher, "app.agent.subtree.llm_calls"), Some(&Value::IntValue(1)));
    assert!(matches!(attr(researcher, "app.agent.subtree.cost_usd"), Some(Value::DoubleValue(c)) if *c > 0.0));
    assert_nothing_sensitive(&sent, &spans, &bytes);
}

#[test]
fn link_mode_keeps_ids_and_links_orphans_to_their_parents() {
    let (sent, spans, bytes) = run(ExportRepair::Link);
    let consumer = by_name(&spans, "researcher", "process tasks");
    assert_eq!(hex(&consumer.trace_id), sent.researcher, "IDs are kept");
    assert!(consumer.parent_span_id.is_empty());
    let producer = by_name(&spans, "orchestrator", "send tasks");
    let link = consumer.links.iter().find(|l| l.span_id == producer.span_id).expect("inferred link");
    assert_eq!(hex(&link.trace_id), sent.orchestrator);
    assert!(link.attributes.iter().any(|kv| kv.key == "agentrace.link.kind"
        && kv.value.as_ref().and_then(|v| v.value.as_ref()) == Some(&Value::StringValue("inferred_parent".into()))));
    assert_nothing_sensitive(&sent, &spans, &bytes);
}

/// A collector that keeps nothing and forwards to a backend writing what it
/// receives to `received.hex` in the directory returned.
fn pass_through() -> (tempfile::TempDir, Backend, support::Running) {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start(0, &dir.path().join("received.hex"), 0);
    let mut exporter = ExporterConfig::new(backend.endpoint(), ExportProtocol::Grpc);
    exporter.repair = ExportRepair::Off;
    let agentrace = support::start(|c| {
        c.pipeline.enabled = false;
        c.storage.keep_spans = false;
        c.exporters = vec![exporter];
    });
    (dir, backend, agentrace)
}

#[test]
fn a_pass_through_forwards_redacted_spans_as_they_arrived_and_keeps_none() {
    let (_dir, backend, agentrace) = pass_through();
    let sent = send_broken_flow(&agentrace.grpc());
    wait_for(30, "every span at the backend", || spans_of(&backend.received()).len() >= sent.spans);
    let requests = backend.received();
    let bytes: Vec<u8> = requests.iter().flat_map(prost::Message::encode_to_vec).collect();
    let spans = spans_of(&requests);
    assert_eq!(spans.len(), sent.spans);
    let consumer = by_name(&spans, "researcher", "process tasks");
    assert_eq!(hex(&consumer.trace_id), sent.researcher, "no repair in a pass-through");
    assert!(attr(consumer, "agentrace.repair.evidence").is_none());
    assert_nothing_sensitive(&sent, &spans, &bytes);
    let (status, _) = support::get_json(&format!("{}/api/v3/traces/{}", agentrace.api(), sent.orchestrator));
    assert_eq!(status, 404, "nothing is kept");
}

// A pass-through forwards what the official Python SDK sends, over gRPC and
// OTLP/HTTP, without decoding it when nothing in it is to be removed: every
// export call but the root span's (which holds a sensitive event) takes the
// fast lane, and the backend gets every span as the SDK encoded it, the root
// without its sensitive event.
#[test]
fn a_pass_through_forwards_clean_requests_undecoded_and_still_redacts_the_rest() {
    let (_dir, backend, agentrace) = pass_through();
    let undecoded = || support::metric(&agentrace.api(), "agentrace_receiver_requests_forwarded_undecoded_total");
    assert_eq!(undecoded(), 0.0);
    let by_grpc = support::python_send(&["--protocol", "grpc", "--endpoint", &agentrace.grpc(), "--requests", "2"]);
    let by_http =
        support::python_send(&["--protocol", "http/protobuf", "--endpoint", &agentrace.http(), "--requests", "1"]);
    let total = by_grpc.spans + by_http.spans;
    wait_for(30, "every span at the backend", || spans_of(&backend.received()).len() >= total);
    // The SDK's exporter sends one span per call (a simple span processor);
    // each user request has one root, and only the root is redacted.
    let (requests, roots) = (3, 3);
    assert_eq!(total, 6 * requests);
    assert_eq!(undecoded(), (total - roots) as f64, "every call without a sensitive event is forwarded undecoded");
    let mut got = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::default();
    for r in backend.received() {
        got.resource_spans.extend(r.resource_spans);
    }
    let mut sent = support::without_sensitive_events(&by_grpc.request);
    sent.resource_spans.extend(support::without_sensitive_events(&by_http.request).resource_spans);
    support::assert_same_spans(&sent, &got);
}

// The pass-through keeps a request's received bytes when nothing changed it,
// so what the decoder did not read must never ride along: a field unknown to
// it, holding a key, inside a span sent over OTLP/HTTP, does not reach the
// backend (which keeps unknown fields: Python's protobuf), while the span does.
#[test]
fn a_field_the_decoder_does_not_know_never_reaches_a_backend() {
    let (dir, backend, agentrace) = pass_through();
    let out = dir.path().join("received.hex");
    let secret = b"sk-proj-UNKNOWNFIELD0123456789";
    let span = Span { trace_id: vec![7; 16], span_id: vec![8; 8], name: "tool call".into(), ..Default::default() };
    let mut span_bytes = prost::Message::encode_to_vec(&span);
    span_bytes.extend_from_slice(&[0xfa, 0x06, secret.len() as u8]); // field 111, length-delimited
    span_bytes.extend_from_slice(secret);
    let (mut scope, mut resource, mut body) = (Vec::new(), Vec::new(), Vec::new());
    prost::encoding::bytes::encode(2, &span_bytes, &mut scope);
    prost::encoding::bytes::encode(2, &scope, &mut resource);
    prost::encoding::bytes::encode(1, &resource, &mut body);
    let sent = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", agentrace.http()))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    wait_for(30, "the span at the backend", || spans_of(&backend.received()).len() == 1);
    let raw: Vec<u8> = std::fs::read_to_string(&out).unwrap().lines().flat_map(support::hex_decode).collect();
    assert!(raw.windows(8).any(|w| w == [7; 8]), "the span arrived");
    assert!(!raw.windows(secret.len()).any(|w| w == secret), "the unknown field was forwarded");
}
