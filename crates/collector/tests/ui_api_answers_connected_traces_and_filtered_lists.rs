//! Claims about the UI's JSON API (`/api/agentrace/*`): a trace ID of any
//! piece of a broken flow answers the connected request with the doctor's
//! diagnosis and the repaired spans as OTLP JSON; a session answers all of
//! its traces, the stitched ones joined; the trace list answers one row per
//! trace as received, newest first, and every filter narrows it.

use crate::support;

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

    // api_v3 search: as many attribute filters as allowed is a query like
    // any other (it was a 500 past SQLite's join limit); one more is a 400
    // that says the limit.
    let filters = |n: usize| (0..n).map(|_| "query.attributes%5Bsession.id%5D=sess-q").collect::<Vec<_>>().join("&");
    let url = |n: usize| {
        format!("{}/api/v3/traces?query.start_time_min=2025-01-01T00:00:00Z&{}", collector.api(), filters(n))
    };
    let (status, body) = support::get_json(&url(16));
    assert_eq!(status, 200, "{body}");
    let (status, body) = support::get_json(&url(17));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 16"), "{body}");
}

fn requests(collector: &support::Running, query: &str) -> Vec<Value> {
    let (status, body) = support::get_json(&format!("{}/api/agentrace/requests?{query}", collector.api()));
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(body["live"], true);
    body["requests"].as_array().unwrap().clone()
}

fn request_ids(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["request_id"].as_str().unwrap()).collect()
}

#[test]
fn the_request_list_has_one_row_per_connected_request_and_every_filter_narrows_it() {
    let collector = support::start(|c| c.pipeline.trace_timeout = std::time::Duration::from_millis(200));
    let flow = load(&collector);
    // Rows are written once the traces close (the trace timeout after their last span).
    support::wait_for(20, "the two requests", || requests(&collector, "").len() == 2);
    let all = requests(&collector, "answers=true");
    assert_eq!(request_ids(&all), [flow.healthy.as_str(), flow.planner.as_str()], "newest first");

    // The broken flow is one request, joined from the planner's and the worker's traces.
    let broken = &all[1];
    let mut traces: Vec<&str> = broken["trace_ids"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    traces.sort();
    let mut want = vec![flow.planner.as_str(), flow.worker.as_str()];
    want.sort();
    assert_eq!(traces, want);
    assert_eq!(broken["root_name"], "POST /chat");
    assert!(broken["findings"].as_i64().unwrap() >= 1 && broken["broken"].as_i64().unwrap() >= 1);
    assert_eq!(broken["failed"], true, "the worker's LLM call failed");
    assert!(broken["agents"].as_array().unwrap().iter().any(|a| a == "executor"), "{broken}");
    assert_eq!((broken["input_tokens"].as_i64(), broken["output_tokens"].as_i64()), (Some(3300), Some(480)));
    let answer = &broken["answer"];
    assert!(answer["repairs"].as_array().unwrap().iter().any(|r| r["applied"] == true));
    assert_eq!(all[0]["findings"], 0, "the healthy request has none");

    // The request holding any piece, by route and by search.
    for piece in [&flow.planner, &flow.worker] {
        let (status, row) = support::get_json(&format!("{}/api/agentrace/requests/{piece}", collector.api()));
        assert_eq!(status, 200);
        assert_eq!(row["request_id"], flow.planner.as_str(), "{piece}");
        assert_eq!(request_ids(&requests(&collector, &format!("q={piece}"))), [flow.planner.as_str()]);
    }
    assert_eq!(request_ids(&requests(&collector, "agent=executor")), [flow.planner.as_str()]);
    assert_eq!(request_ids(&requests(&collector, "findings=true")), [flow.planner.as_str()]);
    assert_eq!(request_ids(&requests(&collector, "broken=true")), [flow.planner.as_str()]);
    assert_eq!(request_ids(&requests(&collector, "errors=true")), [flow.planner.as_str()]);
    assert_eq!(request_ids(&requests(&collector, "session=sess-q")), [flow.planner.as_str()]);
    assert_eq!(
        request_ids(&requests(&collector, "min_tokens=5000")),
        [flow.healthy.as_str()],
        "6,830 tokens, not 3,780"
    );
    assert_eq!(
        request_ids(&requests(&collector, "q=chat")),
        [flow.healthy.as_str(), flow.planner.as_str()],
        "root name"
    );
    assert!(requests(&collector, "q=nothing-is-named-so").is_empty());
    assert!(requests(&collector, "service=nobody").is_empty());
    // Paging: the page after the first row holds the second.
    let first = &requests(&collector, "limit=1")[0];
    let next = format!(
        "limit=1&before={}:{}:{}",
        first["start_unix_nano"],
        first["request_id"].as_str().unwrap(),
        first["root_span_id"].as_str().unwrap()
    );
    assert_eq!(request_ids(&requests(&collector, &next)), [flow.planner.as_str()]);

    let (status, body) = support::get_json(&format!("{}/api/agentrace/requests?before=yesterday", collector.api()));
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("before"), "{body}");
    let (status, _) =
        support::get_json(&format!("{}/api/agentrace/requests/{}", collector.api(), "0".repeat(31) + "1"));
    assert_eq!(status, 404);
}

/// `agentrace_pipeline_requests_behind` reads 0 only once every accepted
/// request's traces are closed, diagnosed and their answers stored: a
/// dashboard or script that waits for it reads the final answers at once.
#[test]
fn no_request_behind_means_every_answer_can_be_read() {
    let collector = support::start(|c| c.pipeline.trace_timeout = std::time::Duration::from_millis(300));
    let api = collector.api();
    let flow = load(&collector);
    support::wait_for(30, "no request behind", || {
        support::metric(&api, "agentrace_pipeline_requests_behind") == 0.0
            && support::metric(&api, "agentrace_pipeline_open_traces") == 0.0
    });
    // Read once, without waiting: both requests are there, the broken flow joined.
    let all = requests(&collector, "");
    assert_eq!(request_ids(&all), [flow.healthy.as_str(), flow.planner.as_str()], "{all:?}");
    assert_eq!(all[1]["trace_ids"].as_array().unwrap().len(), 2, "{}", all[1]);
}

/// The list sorts by any of its numbers and pages by offset; each row names
/// its findings by kind (with the first message), and says what failed; the
/// pickers' names (services, agents, models) and a session's totals come
/// from the stored requests, and a model picks the requests that used it.
#[test]
fn the_request_list_sorts_pages_and_names_what_broke() {
    let collector = support::start(|c| c.pipeline.trace_timeout = std::time::Duration::from_millis(200));
    let flow = load(&collector);
    support::wait_for(20, "the two requests", || requests(&collector, "").len() == 2);

    // The broken flow ran 1.00 s and the healthy one 900 ms.
    assert_eq!(request_ids(&requests(&collector, "sort=duration")), [flow.planner.as_str(), flow.healthy.as_str()]);
    assert_eq!(
        request_ids(&requests(&collector, "sort=duration&order=asc")),
        [flow.healthy.as_str(), flow.planner.as_str()]
    );
    assert_eq!(request_ids(&requests(&collector, "sort=duration&limit=1&offset=1")), [flow.healthy.as_str()]);
    assert_eq!(request_ids(&requests(&collector, "sort=tokens&order=asc&limit=1")), [flow.planner.as_str()]);
    for bad in ["sort=colour", "order=up", "offset=10001"] {
        let (status, body) = support::get_json(&format!("{}/api/agentrace/requests?{bad}", collector.api()));
        assert_eq!(status, 400, "{bad}: {body}");
        let said = body["error"]["message"].as_str().unwrap();
        assert!(said.contains(bad.split('=').next().unwrap()), "{bad}: the error names the parameter: {said}");
    }

    let broken = &requests(&collector, &format!("q={}", flow.planner))[0];
    let kinds = broken["finding_kinds"].as_array().unwrap();
    let orphan = kinds.iter().find(|k| k["kind"] == "orphan_root").expect("an orphan_root finding");
    assert_eq!(orphan["broken"], true);
    assert_eq!(orphan["count"], 1);
    assert!(orphan["message"].as_str().unwrap().contains("process tasks"), "{orphan}");
    assert!(broken["failure"].as_str().unwrap().contains("rate limited"), "{broken}");
    let healthy = &requests(&collector, &format!("q={}", flow.healthy))[0];
    assert_eq!(healthy["finding_kinds"], serde_json::json!([]));
    assert_eq!(healthy["failure"], Value::Null);

    let (status, facets) = support::get_json(&format!("{}/api/agentrace/facets", collector.api()));
    assert_eq!(status, 200);
    assert_eq!(facets["services"], serde_json::json!(["gateway"]));
    for agent in ["executor", "planner", "orchestrator"] {
        assert!(facets["agents"].as_array().unwrap().iter().any(|a| a == agent), "{agent}: {facets}");
    }
    assert_eq!(facets["models"], serde_json::json!(["claude-3-5-sonnet-20241022", "gpt-4o", "gpt-4o-mini"]));
    // By model: the worker's gpt-4o-mini ran only in the broken flow, gpt-4o in both.
    assert_eq!(request_ids(&requests(&collector, "model=gpt-4o-mini")), [flow.planner.as_str()]);
    assert_eq!(request_ids(&requests(&collector, "model=claude-3-5-sonnet-20241022")), [flow.healthy.as_str()]);
    assert_eq!(requests(&collector, "model=gpt-4o").len(), 2);

    let (_, sessions) = support::get_json(&format!("{}/api/agentrace/sessions", collector.api()));
    let q = sessions["sessions"].as_array().unwrap().iter().find(|s| s["id"] == "sess-q").expect("sess-q listed");
    assert_eq!((q["requests"].as_i64(), q["errors"].as_i64()), (Some(1), Some(1)), "{q}");
    assert_eq!((q["input_tokens"].as_i64(), q["output_tokens"].as_i64()), (Some(3300), Some(480)), "{q}");
    assert!(q["findings"].as_i64().unwrap() >= 1 && q["broken"].as_i64().unwrap() >= 1, "{q}");
    assert_eq!(q["duration_ms"], 1000.0, "{q}");
}

/// `spans=false` answers the diagnosis and the connected tree without the
/// repaired spans' OTLP JSON (the UI's first piece of a big trace).
#[test]
fn a_trace_or_session_answers_without_its_spans_when_asked() {
    let collector = support::start(|_| {});
    let flow = load(&collector);
    for path in [format!("traces/{}", flow.worker), "sessions/sess-q".to_owned()] {
        let (status, full) = support::get_json(&format!("{}/api/agentrace/{path}", collector.api()));
        assert_eq!(status, 200, "{path}: {full}");
        let (status, lean) = support::get_json(&format!("{}/api/agentrace/{path}?spans=false", collector.api()));
        assert_eq!(status, 200, "{path}: {lean}");
        assert!(full["spans"]["resourceSpans"].is_array() && lean.get("spans").is_none(), "{path}");
        assert_eq!(full["diagnosis"], lean["diagnosis"], "{path}: the same diagnosis");
        assert!(lean.to_string().len() < full.to_string().len(), "{path}: smaller");
    }
}
