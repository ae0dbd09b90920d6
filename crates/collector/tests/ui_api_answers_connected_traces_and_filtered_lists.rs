//! Claims about the UI's JSON API (`/api/agentrace/*`): a trace ID of any
//! piece of a broken flow answers the connected request with the doctor's
//! diagnosis and the repaired spans as OTLP JSON; a session answers all of
//! its traces, the stitched ones joined; the trace list answers one row per
//! trace as received, newest first, and every filter narrows it.

mod support;

use opentelemetry_proto::tonic::trace::v1::Status;
use serde_json::Value;

fn hex(bytes: &[u8]) -> String {
    agentrace_model::ids::to_hex(bytes)
}

struct Flow {
    planner: String,
    worker: String,
    healthy: String,
}

/// The broken queue hand-off (its worker's LLM call failing) and, later
/// in time, a healthy request of another session.
fn load(collector: &support::Running) -> Flow {
    let mut broken = support::doctor_fixture("broken_queue_message_id.json");
    let (mut planner, mut worker) = (String::new(), String::new());
    for span in support::spans_mut(&mut broken) {
        match span.name.as_str() {
            "POST /chat" => planner = hex(&span.trace_id),
            "process tasks" => worker = hex(&span.trace_id),
            "chat gpt-4o-mini" => span.status = Some(Status { code: 2, message: "rate limited".into() }),
            _ => {}
        }
    }
    let mut healthy = support::doctor_fixture("healthy_request.json");
    for span in support::spans_mut(&mut healthy) {
        span.start_time_unix_nano += 60_000_000_000;
        span.end_time_unix_nano += 60_000_000_000;
    }
    let healthy_id = hex(&support::spans_mut(&mut healthy).next().unwrap().trace_id);
    support::send_otlp(collector, &broken);
    support::send_otlp(collector, &healthy);
    Flow { planner, worker, healthy: healthy_id }
}

fn list(collector: &support::Running, query: &str) -> Vec<Value> {
    let (status, body) = support::get_json(&format!("{}/api/agentrace/traces?{query}", collector.api()));
    assert_eq!(status, 200, "{query}: {body}");
    body["traces"].as_array().unwrap().clone()
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|r| r["trace_id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_orphan_answers_the_connected_request() {
    let collector = support::start(|_| {});
    let flow = load(&collector);
    let (status, body) = support::get_json(&format!("{}/api/agentrace/traces/{}", collector.api(), flow.worker));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["trace_id"], flow.worker.as_str());
    let d = &body["diagnosis"];
    let request = d["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["original_traces"].as_array().unwrap().iter().any(|t| t == flow.worker.as_str()))
        .expect("a request holding the orphan's trace");
    assert_eq!(request["trace_id"], flow.planner.as_str(), "the orphan lives in its producer's request");
    assert!(d["findings"].as_array().unwrap().iter().any(|f| f["kind"] == "orphan_root"));
    assert_eq!(d["failure"]["category"], "llm");
    // The spans: the connected view as OTLP JSON, repaired and marked.
    let decoded = agentrace_model::otlp::decode_json(body["spans"].to_string().as_bytes(), &Default::default())
        .expect("spans are OTLP JSON");
    let spans = agentrace_model::Span::from_request(&decoded.request);
    let consumer = spans.iter().find(|s| s.name == "process tasks").unwrap();
    assert_eq!(consumer.trace_id.to_string(), flow.planner, "reparented into the producer's trace");
    assert_eq!(consumer.attributes.str("agentrace.repair.evidence"), Some("messaging.message.id"));
    assert_eq!(consumer.attributes.str("agentrace.repair.original_trace_id"), Some(flow.worker.as_str()));
    assert!(spans.iter().any(|s| s.attributes.get("agentrace.synthetic").is_some()));

    let (status, body) = support::get_json(&format!("{}/api/agentrace/traces/{}", collector.api(), "ab".repeat(16)));
    assert_eq!((status, body["error"]["httpCode"].as_u64()), (404, Some(404)));
    let (status, _) = support::get_json(&format!("{}/api/agentrace/traces/not-hex", collector.api()));
    assert_eq!(status, 400);
}

#[test]
fn a_session_answers_all_its_traces_joined() {
    let collector = support::start(|_| {});
    load(&collector);
    let (status, body) = support::get_json(&format!("{}/api/agentrace/sessions/sess-q", collector.api()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["diagnosis"]["summary"]["traces"], 2,
        "the worker's trace, which lost the session, is found by key"
    );
    assert_eq!(body["diagnosis"]["summary"]["requests"], 1);
    let (status, _) = support::get_json(&format!("{}/api/agentrace/sessions/no-such-session", collector.api()));
    assert_eq!(status, 404);
    let (_, sessions) = support::get_json(&format!("{}/api/agentrace/sessions", collector.api()));
    let names: Vec<&str> = sessions["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(names, ["sess-healthy", "sess-q"], "most recently active first");
}

#[test]
fn the_list_is_newest_first_and_every_filter_narrows_it() {
    let collector = support::start(|_| {});
    let flow = load(&collector);
    let all = list(&collector, "");
    assert_eq!(ids(&all), [flow.healthy.as_str(), flow.worker.as_str(), flow.planner.as_str()]);

    let worker = &all[1];
    assert_eq!(worker["root_name"], "process tasks");
    assert_eq!(worker["root_service"], "worker");
    assert_eq!(worker["spans"], 3);
    assert_eq!(worker["agents"], serde_json::json!(["worker", "executor"]));
    assert_eq!((worker["input_tokens"].as_u64(), worker["output_tokens"].as_u64()), (Some(2000), Some(300)));
    assert!(worker["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(worker["errors"], 1);
    assert!(worker["findings"].as_u64().unwrap() >= 1, "the orphan is seen with its producer on the page");
    assert_eq!(worker["duration_ms"], 640.0);
    assert_eq!(all[0]["findings"], 0, "the healthy request has none");
    assert_eq!(all[2]["session"], "sess-q");

    assert_eq!(ids(&list(&collector, "limit=1")), [flow.healthy.as_str()]);
    assert_eq!(ids(&list(&collector, "service=worker")), [flow.worker.as_str()]);
    assert_eq!(ids(&list(&collector, "errors=true")), [flow.worker.as_str()]);
    assert_eq!(ids(&list(&collector, "q=PROCESS%20tas")), [flow.worker.as_str()], "case-folded text on span names");
    assert_eq!(ids(&list(&collector, "q=50%25")), Vec::<&str>::new(), "LIKE wildcards are literal");
    assert_eq!(ids(&list(&collector, "agent=executor")), [flow.worker.as_str()]);
    assert_eq!(ids(&list(&collector, "findings=true")), [flow.worker.as_str(), flow.planner.as_str()]);
    assert_eq!(ids(&list(&collector, "min_duration=950ms")), [flow.planner.as_str()]);
    assert_eq!(ids(&list(&collector, "session=sess-q")), [flow.worker.as_str(), flow.planner.as_str()]);
    assert_eq!(ids(&list(&collector, "start=2026-01-01T00:00:30Z")), [flow.healthy.as_str()]);
    assert_eq!(ids(&list(&collector, "end=2026-01-01T00:00:30Z")), [flow.worker.as_str(), flow.planner.as_str()]);

    let (status, body) = support::get_json(&format!("{}/api/agentrace/traces?min_duration=soon", collector.api()));
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("min_duration"));
}
