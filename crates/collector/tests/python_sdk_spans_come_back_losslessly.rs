//! Claim: spans sent by the official OpenTelemetry Python SDK, over gRPC and
//! over HTTP/protobuf, come back from `/api/v3/traces/{id}` equal in every
//! field: resource, scope, attributes of every type, events, links, status,
//! trace state, flags; but for what redaction removes: the prompt the
//! sender recorded as a `sensitive` event is gone, and counted on its span.
//! Requests that redaction leaves as they are take the byte-level lane (no
//! decoding), and still come back equal.

use crate::support;

fn round_trip(protocol: &str) {
    let collector = support::start(|_| {});
    let endpoint = if protocol == "grpc" { collector.grpc() } else { collector.http() };
    let sent = support::python_send(&["--protocol", protocol, "--endpoint", &endpoint, "--requests", "2"]);
    assert_eq!(sent.spans, 12, "the sender made the spans it should");
    assert_eq!(sent.trace_ids.len(), 4, "two requests, each a trace and an orphan consumer");
    for trace_id in &sent.trace_ids {
        let got = support::fetch_trace(&collector.api(), trace_id);
        let expected = support::without_sensitive_events(&support::only_trace(&sent.request, trace_id));
        support::assert_same_spans(&expected, &got);
    }
    let dropped = support::metric(&collector.api(), "agentrace_redaction_total{what=\"sensitive_event_dropped\"}");
    assert_eq!(dropped, 2.0, "one prompt event per request");
    let accepted = support::metric(
        &collector.api(),
        if protocol == "grpc" {
            "agentrace_receiver_spans_accepted_total{transport=\"grpc\"}"
        } else {
            "agentrace_receiver_spans_accepted_total{transport=\"http_protobuf\"}"
        },
    );
    assert_eq!(accepted, 12.0);
    // The SDK's exporter sends one span per call: every call but the two
    // whose span holds a prompt event was stored, indexed and diagnosed from
    // its bytes as received, never decoded, and comes back the same.
    let undecoded = support::metric(&collector.api(), "agentrace_receiver_requests_forwarded_undecoded_total");
    assert_eq!(undecoded, 10.0);
}

#[test]
fn over_grpc() {
    round_trip("grpc");
}

#[test]
fn over_http_protobuf() {
    round_trip("http/protobuf");
}

#[test]
fn sessions_find_the_traces_that_carry_their_id() {
    let collector = support::start(|_| {});
    let sent = support::python_send(&["--protocol", "grpc", "--endpoint", &collector.grpc(), "--requests", "2"]);
    let (status, body) = support::get_json(&format!("{}/api/v3/sessions/session-1/traces", collector.api()));
    assert_eq!(status, 200);
    let traces = body["traces"].as_array().unwrap();
    // The request's own trace, and the consumer that lost its context but
    // shares the producer's messaging.message.id (it carries no session.id).
    assert_eq!(traces.len(), 2, "{body}");
    assert!(sent.trace_ids.contains(&traces[0]["traceId"].as_str().unwrap().to_owned()));
    assert_eq!(traces[0]["spanCount"], 5);
    assert_eq!(traces[0]["errorCount"], 1);
    assert_eq!(traces[1]["spanCount"], 1);
    let consumer = support::fetch_trace(&collector.api(), traces[1]["traceId"].as_str().unwrap());
    assert_eq!(consumer.resource_spans[0].scope_spans[0].spans[0].name, "process tasks");
    // Jaeger-style search: by service and an indexed attribute, newest first.
    let (status, found) = support::get_json(&format!(
        "{}/api/v3/traces?query.service_name=py-orchestrator&query.attributes%5Bsession.id%5D=session-1",
        collector.api()
    ));
    assert_eq!(status, 200);
    let found = agentrace_model::otlp::decode_json(&serde_json::to_vec(&found["result"]).unwrap(), &Default::default())
        .unwrap()
        .request;
    let traces: std::collections::BTreeSet<String> =
        support::by_span_id(&found).values().map(|p| agentrace_model::ids::to_hex(&p.span.trace_id)).collect();
    assert_eq!(traces.into_iter().collect::<Vec<_>>(), vec![traces_of_session_1(&body)]);
    let (_, services) = support::get_json(&format!("{}/api/v3/services", collector.api()));
    assert_eq!(services["services"], serde_json::json!(["py-orchestrator"]));
    let (_, ops) =
        support::get_json(&format!("{}/api/v3/operations?service=py-orchestrator&span_kind=consumer", collector.api()));
    assert_eq!(ops["operations"], serde_json::json!([{"name": "process tasks", "spanKind": "consumer"}]));
}

fn traces_of_session_1(body: &serde_json::Value) -> String {
    body["traces"][0]["traceId"].as_str().unwrap().to_owned()
}
