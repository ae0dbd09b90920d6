//! In a busy system every long call encloses other services' work and every
//! message is followed by some. A tie that rests on time alone (not
//! addressed, no destination, no session, no ID both sides carry) must not
//! turn a healthy agent loop running beside a broken request into a finding,
//! and never into an applied join. These are the shapes the live collector's
//! test under load found (`live_answers_equal_the_file_doctors`), written
//! small: a loop of another service whose every run is an INTERNAL root, a
//! long MCP handshake of a client that reached no instrumented server, an
//! unconsumed publish, and a server span with a bare JSON-RPC request ID.

use std::sync::Arc;

use agentrace_doctor::{Config, Doctor, FindingKind};
use agentrace_model::{Resource, Span, SpanId, SpanKind, TraceId, Value};

const MS: u64 = 1_000_000;
const T0: u64 = 1_800_000_000_000_000_000;

fn span(trace: u64, id: u64, parent: Option<u64>, service: &str, name: &str, kind: SpanKind, at: (u64, u64)) -> Span {
    let mut t = [0u8; 16];
    t[8..].copy_from_slice(&trace.to_be_bytes());
    let mut s = Span::new(
        TraceId::new(t).expect("non-zero"),
        SpanId::new(id.to_be_bytes()).expect("non-zero"),
        parent.map(|p| SpanId::new(p.to_be_bytes()).expect("non-zero")),
        name,
    );
    s.kind = kind;
    s.start_unix_nano = T0 + at.0 * MS;
    s.end_unix_nano = T0 + at.1 * MS;
    s.resource = Arc::new(Resource::for_service(service));
    s
}

fn with(mut s: Span, attrs: &[(&str, Value)]) -> Span {
    for (k, v) in attrs {
        s.attributes.set(*k, v.clone());
    }
    s
}

/// An agent loop of `service`: a run every 20 ms from `from` to `to`, each an
/// INTERNAL root with a session of its own and a model call under it.
fn agent_loop(service: &str, first_trace: u64, from: u64, to: u64) -> Vec<Span> {
    let mut out = Vec::new();
    for (k, at) in (from..to).step_by(20).enumerate() {
        let trace = first_trace + k as u64;
        let root = trace << 8 | 1;
        out.push(with(
            span(trace, root, None, service, "invoke_agent planner", SpanKind::Internal, (at, at + 6)),
            &[("gen_ai.operation.name", "invoke_agent".into()), ("session.id", format!("loop-{trace}").into())],
        ));
        out.push(with(
            span(trace, root + 1, Some(root), service, "chat gpt-4o", SpanKind::Client, (at + 1, at + 5)),
            &[("gen_ai.operation.name", "chat".into()), ("gen_ai.request.model", "gpt-4o".into())],
        ));
    }
    out
}

fn loop_findings(d: &agentrace_doctor::Diagnosis, service: &str) -> Vec<String> {
    d.findings.iter().filter(|f| f.service == service).map(|f| f.message.clone()).collect()
}

#[test]
fn a_long_call_that_reached_no_server_names_no_caller_for_loops_running_beside_it() {
    // A client's MCP handshake that reached no instrumented server, 300 ms long.
    let mut spans = vec![
        span(1, 0x10, None, "report-agent", "POST /report", SpanKind::Server, (0, 400)),
        with(
            span(1, 0x11, Some(0x10), "report-agent", "initialize.mcp", SpanKind::Client, (50, 350)),
            &[("mcp.method.name", "initialize".into())],
        ),
    ];
    // Two other services' loops, running all along.
    spans.extend(agent_loop("planner-loop", 100, 0, 1000));
    spans.extend(agent_loop("writer-loop", 200, 7, 1000));
    let d = Doctor::new(Config::default()).analyse(&spans);
    assert!(loop_findings(&d, "planner-loop").is_empty(), "{:#?}", loop_findings(&d, "planner-loop"));
    assert!(loop_findings(&d, "writer-loop").is_empty(), "{:#?}", loop_findings(&d, "writer-loop"));
    assert!(d.repairs.is_empty(), "{:#?}", d.repairs);
}

#[test]
fn a_loop_of_one_service_inside_a_short_call_is_no_orphan_of_it() {
    // A 4 ms tool call of another service encloses exactly one run of a loop
    // whose other runs start with nothing around them.
    let mut spans = vec![
        span(1, 0x10, None, "agent-script", "run script", SpanKind::Internal, (0, 400)),
        with(
            span(1, 0x11, Some(0x10), "agent-script", "execute_tool search", SpanKind::Client, (99, 108)),
            &[("gen_ai.operation.name", "execute_tool".into()), ("gen_ai.tool.name", "search".into())],
        ),
    ];
    spans.extend(agent_loop("planner-loop", 100, 0, 1000));
    let d = Doctor::new(Config::default()).analyse(&spans);
    assert!(loop_findings(&d, "planner-loop").is_empty(), "{:#?}", loop_findings(&d, "planner-loop"));
}

#[test]
fn a_loop_run_after_an_unconsumed_message_is_not_joined_to_it() {
    // A publish whose message no instrumented consumer received, at the end
    // of a request that runs on; a loop of another service with sessions of
    // its own runs after it.
    let mut spans = vec![
        span(1, 0x10, None, "agent-script", "run script", SpanKind::Internal, (0, 400)),
        with(
            span(1, 0x11, Some(0x10), "agent-script", "publish output_topic", SpanKind::Producer, (300, 301)),
            &[("messaging.system", "autogen".into()), ("messaging.destination.name", "output_topic".into())],
        ),
    ];
    spans.extend(agent_loop("planner-loop", 100, 0, 1000));
    let d = Doctor::new(Config::default()).analyse(&spans);
    assert!(d.repairs.iter().all(|r| !r.applied), "{:#?}", d.repairs);
    assert!(loop_findings(&d, "planner-loop").is_empty(), "{:#?}", loop_findings(&d, "planner-loop"));
    assert!(d.requests.iter().all(|r| r.original_traces.len() == 1));
}

#[test]
fn a_bare_json_rpc_request_id_in_time_is_only_suggested() {
    // A tool server's span that records only `jsonrpc.request.id` = 2, inside
    // a tool call of another service with the same request ID in its own MCP
    // session: request IDs restart in every session, so this is one of
    // thousands of such coincidences in a busy system.
    let spans = vec![
        span(1, 0x10, None, "agent", "invoke_agent", SpanKind::Internal, (0, 100)),
        with(
            span(1, 0x11, Some(0x10), "agent", "execute_tool search", SpanKind::Client, (10, 60)),
            &[
                ("gen_ai.operation.name", "execute_tool".into()),
                ("mcp.method.name", "tools/call".into()),
                ("mcp.session.id", "s-1".into()),
                ("jsonrpc.request.id", Value::Int(2)),
            ],
        ),
        with(
            span(2, 0x20, None, "weather-tools", "ResponseStreamWriter", SpanKind::Internal, (20, 40)),
            &[("jsonrpc.request.id", Value::Int(2))],
        ),
    ];
    let d = Doctor::new(Config::default()).analyse(&spans);
    let orphan: Vec<_> = d.findings.iter().filter(|f| f.service == "weather-tools").collect();
    assert_eq!(orphan.len(), 1, "the break is still reported: {:#?}", d.findings);
    assert!(matches!(orphan[0].kind, FindingKind::OrphanRoot | FindingKind::ToolRoot), "{:#?}", orphan);
    assert!(d.repairs.iter().all(|r| !r.applied), "only suggested: {:#?}", d.repairs);
    assert!(!d.repairs.is_empty(), "and suggested: {:#?}", d.findings);
}

#[test]
fn a_candidate_struck_as_ambiguous_leaves_the_rest_suggested_not_applied() {
    // Unconsumed messages of two requests, 10 ms apart; a run of one
    // service starts after both, a run of another after the first only. The
    // first message fits runs of two services, so it names neither; that
    // leaves the second as the first run's only candidate, with no more
    // evidence than before, when two fitted it and neither was applied.
    let producer = |trace: u64, queue: &str, at: u64| {
        let root = trace << 8;
        [
            span(trace, root, None, "agent-script", "run script", SpanKind::Internal, (0, 1000)),
            with(
                span(
                    trace,
                    root + 1,
                    Some(root),
                    "agent-script",
                    &format!("publish {queue}"),
                    SpanKind::Producer,
                    (at, at + 1),
                ),
                &[("messaging.system", "rabbitmq".into()), ("messaging.destination.name", queue.into())],
            ),
        ]
    };
    let mut spans: Vec<Span> = producer(1, "q1", 300).into_iter().chain(producer(4, "q2", 310)).collect();
    spans.push(span(2, 0x20, None, "worker-b", "invoke_agent b", SpanKind::Internal, (305, 309)));
    spans.push(span(3, 0x30, None, "worker-a", "invoke_agent a", SpanKind::Internal, (320, 330)));
    let d = Doctor::new(Config::default()).analyse(&spans);
    assert!(d.repairs.iter().all(|r| !r.applied), "{:#?}", d.repairs);
    assert!(d.requests.iter().all(|r| r.original_traces.len() == 1), "{:#?}", d.requests);
}
