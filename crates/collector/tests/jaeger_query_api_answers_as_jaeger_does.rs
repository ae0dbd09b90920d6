//! Claims about Jaeger's query JSON API (`/api/services`, `/api/operations`,
//! `/api/traces`, `/api/dependencies`), which Grafana's Jaeger data source
//! and Jaeger UI call: spans sent by the official OpenTelemetry Python SDK
//! come back in Jaeger's model as the OpenTelemetry Collector's Jaeger
//! translator makes it, in Jaeger's envelope; searches narrow by service,
//! operation, tags (indexed or not), duration and limit; errors say what was
//! wrong in Jaeger's error shape; a broken hop's orphan is answered as the
//! connected request when asked, and the repaired hop is a dependency.

use crate::support;

use serde_json::Value;

fn hex(bytes: &[u8]) -> String {
    agentrace_model::ids::to_hex(bytes)
}

/// Jaeger's envelope: exactly these keys, `errors` null on success.
fn data(collector: &support::Running, path: &str) -> Value {
    let (status, body) = support::get_json(&format!("{}{path}", collector.api()));
    assert_eq!(status, 200, "{path}: {body}");
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["data", "errors", "limit", "offset", "total"], "{path}: {body}");
    assert_eq!((body["limit"].as_u64(), body["offset"].as_u64()), (Some(0), Some(0)), "{path}: {body}");
    assert!(body["errors"].is_null(), "{path}: {body}");
    body["data"].clone()
}

fn error(collector: &support::Running, path: &str) -> (u16, String) {
    let (status, body) = support::get_json(&format!("{}{path}", collector.api()));
    assert!(body["data"].is_null(), "{path}: {body}");
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("{path}: {body}"));
    assert_eq!(errors[0]["code"].as_u64(), Some(u64::from(status)), "{path}: {body}");
    (status, errors[0]["msg"].as_str().unwrap().to_owned())
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"].as_array().unwrap().iter().find(|t| t["key"] == key)
}

fn trace_ids(traces: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        traces.as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn python_sdk_spans_read_back_in_jaegers_model() {
    let collector = support::start(|_| {});
    let sent = support::python_send(&["--protocol", "grpc", "--endpoint", &collector.grpc(), "--requests", "2"]);
    support::wait_for(30, "the spans to be stored", || {
        support::get_json(&format!("{}/api/services", collector.api())).1["data"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    });

    assert_eq!(data(&collector, "/api/services"), serde_json::json!(["py-orchestrator"]));
    let names = data(&collector, "/api/services/py-orchestrator/operations");
    assert!(names.as_array().unwrap().iter().all(Value::is_string), "{names}");
    assert!(names.as_array().unwrap().contains(&Value::from("chat gpt-4o")), "{names}");
    let clients = data(&collector, "/api/operations?service=py-orchestrator&spanKind=client");
    assert_eq!(clients, serde_json::json!([{"name": "chat gpt-4o", "spanKind": "client"}]));

    // Each request's trace (the script's consumers are traces of their own),
    // by the request's session.
    let mut requests: Vec<(String, String)> = Vec::new();
    for span in sent.request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
        if let Some(session) = span.attributes.iter().find(|kv| kv.key == "session.id") {
            let session = match &session.value.as_ref().unwrap().value {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("session.id {other:?}"),
            };
            requests.push((session, hex(&span.trace_id)));
        }
    }
    requests.sort();
    assert_eq!(requests.len(), 2);
    assert_eq!(sent.trace_ids.len(), 4, "two requests and their two consumers");

    // A trace by ID: every span the SDK sent, translated field by field.
    let id = &requests[0].1;
    let traces = data(&collector, &format!("/api/traces/{id}"));
    assert_eq!(traces.as_array().unwrap().len(), 1);
    let trace = &traces[0];
    assert_eq!(trace["traceID"], Value::from(id.as_str()));
    let spans = trace["spans"].as_array().unwrap();
    let placed = support::by_span_id(&support::only_trace(&sent.request, id));
    assert_eq!(spans.len(), placed.len());
    for span in spans {
        let mut keys: Vec<&str> = span.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "duration",
                "logs",
                "operationName",
                "processID",
                "references",
                "spanID",
                "startTime",
                "tags",
                "traceID",
                "warnings"
            ]
        );
        let own = &placed[&support::hex_decode(span["spanID"].as_str().unwrap())];
        assert_eq!(span["operationName"], Value::from(own.span.name.as_str()));
        assert_eq!(span["startTime"].as_u64(), Some(own.span.start_time_unix_nano / 1_000));
        assert_eq!(
            span["duration"].as_u64(),
            Some((own.span.end_time_unix_nano - own.span.start_time_unix_nano) / 1_000)
        );
        let process = &trace["processes"][span["processID"].as_str().unwrap()];
        assert_eq!(process["serviceName"], "py-orchestrator");
        assert!(
            process["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "service.instance.id" && t["type"] == "string" && t["value"] == "instance-1")
        );
        assert!(
            process["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "process.pid" && t["type"] == "int64" && t["value"] == 4242)
        );
        assert_eq!(tag(span, "otel.scope.name").unwrap()["value"], "agentrace.tests");
        assert_eq!(tag(span, "otel.scope.version").unwrap()["value"], "1.2.3");
        match span["references"].as_array().unwrap().iter().find(|r| r["refType"] == "CHILD_OF") {
            Some(parent) => {
                assert_eq!(parent["spanID"], Value::from(hex(&own.span.parent_span_id)));
                assert_eq!(parent["traceID"], Value::from(id.as_str()));
            }
            None => assert!(own.span.parent_span_id.is_empty()),
        }
    }
    let named = |name: &str| spans.iter().find(|s| s["operationName"] == name).unwrap();
    let root = named("invoke_agent orchestrator");
    assert_eq!(tag(root, "span.kind").unwrap()["value"], "server");
    assert_eq!(tag(root, "ratio").unwrap()["type"], "float64");
    assert_eq!(tag(root, "flag").unwrap()["value"], true);
    assert_eq!(tag(root, "tags").unwrap()["value"], r#"["plan","route"]"#);
    assert_eq!(tag(root, "w3c.tracestate"), None, "the root has no trace state");
    let chat = named("chat gpt-4o");
    assert_eq!(tag(chat, "span.kind").unwrap()["value"], "client");
    assert_eq!(tag(chat, "gen_ai.usage.input_tokens").unwrap()["type"], "int64");
    assert_eq!(tag(chat, "gen_ai.usage.input_tokens").unwrap()["value"], 1200);
    let tool = named("execute_tool search");
    assert_eq!(tag(tool, "error").unwrap()["value"], true);
    assert_eq!(tag(tool, "otel.status_code").unwrap()["value"], "ERROR");
    assert_eq!(tag(tool, "otel.status_description").unwrap()["value"], "tool returned malformed JSON");
    let log = &tool["logs"][0];
    assert_eq!(log["fields"][0], serde_json::json!({"key": "event", "type": "string", "value": "exception"}));
    assert!(
        log["fields"].as_array().unwrap().iter().any(|f| f["key"] == "exception.type" && f["value"] == "ValueError")
    );
    let link = tool["references"].as_array().unwrap().iter().find(|r| r["refType"] == "FOLLOWS_FROM").unwrap();
    assert_eq!(link["spanID"], named("send tasks")["spanID"]);

    // Searches.
    let all = data(&collector, "/api/traces?service=py-orchestrator&lookback=1h");
    assert_eq!(trace_ids(&all), {
        let mut ids = sent.trace_ids.clone();
        ids.sort();
        ids
    });
    assert_eq!(data(&collector, "/api/traces?service=py-orchestrator&limit=1").as_array().unwrap().len(), 1);
    // An indexed key, and tags the translation adds or the store does not index.
    let one = data(&collector, "/api/traces?service=py-orchestrator&tags=%7B%22session.id%22%3A%22session-1%22%7D");
    assert_eq!(trace_ids(&one), [requests[1].1.clone()]);
    let errors = data(&collector, "/api/traces?service=py-orchestrator&tag=error:true&tag=span.kind:internal");
    let mut with_errors: Vec<String> = requests.iter().map(|(_, id)| id.clone()).collect();
    with_errors.sort();
    assert_eq!(trace_ids(&errors), with_errors);
    let model = data(
        &collector,
        "/api/traces?service=py-orchestrator&operation=chat%20gpt-4o&tags=%7B%22gen_ai.usage.input_tokens%22%3A%221200%22%7D",
    );
    assert_eq!(trace_ids(&model), with_errors);
    // Every tag must hold on one span: the chat span is no tool.
    let none =
        data(&collector, "/api/traces?service=py-orchestrator&operation=chat%20gpt-4o&tag=gen_ai.tool.name:search");
    assert_eq!(none, serde_json::json!([]));
    assert_eq!(data(&collector, "/api/traces?service=py-orchestrator&minDuration=1h"), serde_json::json!([]));
    let by_ids = data(&collector, &format!("/api/traces?traceID={}&traceID={}", sent.trace_ids[0], sent.trace_ids[1]));
    assert_eq!(by_ids.as_array().unwrap().len(), 2);
    // A missing ID is said in `errors`, beside what was found.
    let unknown = "0".repeat(31) + "2";
    let (status, body) =
        support::get_json(&format!("{}/api/traces?traceID={}&traceID={unknown}", collector.api(), sent.trace_ids[0]));
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["errors"], serde_json::json!([{"msg": "trace not found", "traceID": "0000000000000002"}]));

    // api_v3 as Jaeger UI 2.x calls it: camelCase parameters, trace summaries.
    let (status, body) =
        support::get_json(&format!("{}/api/v3/operations?service=py-orchestrator&spanKind=client", collector.api()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"operations": [{"name": "chat gpt-4o", "spanKind": "client"}]}));
    let window = "query.startTimeMin=2020-01-01T00%3A00%3A00.000Z&query.startTimeMax=2100-01-01T00%3A00%3A00.000Z";
    let (status, body) = support::get_json(&format!(
        "{}/api/v3/trace-summaries?query.serviceName=py-orchestrator&{window}&query.searchDepth=20",
        collector.api()
    ));
    assert_eq!(status, 200, "{body}");
    let summaries = body["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 4, "two requests and two consumers: {body}");
    let request = summaries.iter().find(|s| s["traceId"] == id.as_str()).unwrap();
    assert_eq!(request["rootServiceName"], "py-orchestrator");
    assert_eq!(request["rootOperationName"], "invoke_agent orchestrator");
    assert_eq!(request["spanCount"].as_u64(), Some(placed.len() as u64));
    assert_eq!(request["errorSpanCount"], 1, "the tool's span");
    assert_eq!(
        request["services"],
        serde_json::json!([{"name": "py-orchestrator", "spanCount": placed.len(), "errorSpanCount": 1}])
    );
    assert!(request.get("orphanSpanCount").is_none(), "{request}");
    let start: u64 = request["minStartTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert_eq!(start, placed.values().map(|p| p.span.start_time_unix_nano).min().unwrap());
    let consumer = summaries.iter().find(|s| s["rootOperationName"] == "process tasks").unwrap();
    assert!(consumer.get("errorSpanCount").is_none(), "zero counts are left out: {consumer}");
    let (status, body) =
        support::get_json(&format!("{}/api/v3/trace-summaries?query.serviceName=nobody&{window}", collector.api()));
    assert_eq!((status, body), (200, serde_json::json!({"summaries": []})));
    // Jaeger UI's Tags field, on a key with no index of ours: matched on the spans, as Jaeger's
    // own storage matches it. The two requests have the failing tool's span; no trace has it OK.
    let tagged = |tags: &str| {
        let (status, body) = support::get_json(&format!(
            "{}/api/v3/trace-summaries?query.serviceName=py-orchestrator&{window}&query.attributes={}",
            collector.api(),
            tags.replace('{', "%7B").replace('}', "%7D").replace('"', "%22").replace(':', "%3A").replace(',', "%2C")
        ));
        assert_eq!(status, 200, "{body}");
        let mut ids: Vec<String> =
            body["summaries"].as_array().unwrap().iter().map(|s| s["traceId"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    let mut requests: Vec<String> = summaries
        .iter()
        .filter(|s| s["rootOperationName"] == "invoke_agent orchestrator")
        .map(|s| s["traceId"].as_str().unwrap().to_owned())
        .collect();
    requests.sort();
    assert_eq!(requests.len(), 2);
    assert_eq!(tagged(r#"{"gen_ai.tool.name":"search","otel.status_code":"ERROR"}"#), requests);
    assert_eq!(tagged(r#"{"gen_ai.tool.name":"search","otel.status_code":"OK"}"#), Vec::<String>::new());
    let (status, body) =
        support::get_json(&format!("{}/api/v3/traces?query.serviceName=nobody&{window}", collector.api()));
    assert_eq!(status, 404);
    assert_eq!(body, serde_json::json!({"error": {"httpCode": 404, "message": "No traces found"}}));

    // Errors in Jaeger's shape, saying what was wrong.
    assert_eq!(error(&collector, "/api/traces?operation=x"), (400, "parameter 'service' is required".to_owned()));
    let (status, msg) = error(&collector, "/api/traces?service=py-orchestrator&minDuration=soon");
    assert_eq!(status, 400);
    assert!(msg.contains("minDuration"), "{msg}");
    assert_eq!(
        error(&collector, &format!("/api/traces/{}", "0".repeat(31) + "1")),
        (404, "trace not found".to_owned())
    );
    let (status, msg) = error(&collector, "/api/traces/not-hex");
    assert_eq!(status, 400);
    assert!(msg.contains("not-hex"), "{msg}");
    let (status, msg) = error(&collector, "/api/operations");
    assert_eq!((status, msg.as_str()), (400, "parameter 'service' is required"));
}

#[test]
fn a_broken_hop_is_one_trace_when_asked_and_a_dependency_either_way() {
    let collector = support::start(|c| c.pipeline.trace_timeout = std::time::Duration::from_millis(200));
    let broken = support::doctor_fixture("broken_queue_message_id.json");
    let (mut gateway, mut worker) = (String::new(), String::new());
    for rs in &broken.resource_spans {
        for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            match span.name.as_str() {
                "POST /chat" => gateway = hex(&span.trace_id),
                "process tasks" => worker = hex(&span.trace_id),
                _ => {}
            }
        }
    }
    assert_ne!(gateway, worker, "the fixture's hop is broken");
    support::send_otlp(&collector, &broken);
    let api = collector.api();
    support::wait_for(60, "the request to be diagnosed", || {
        support::get_json(&format!("{api}/api/agentrace/requests/{worker}")).0 == 200
    });

    // As it arrived: the worker's piece alone, its root without a parent.
    let arrived = data(&collector, &format!("/api/traces/{worker}"));
    assert_eq!(trace_ids(&arrived), [worker.clone()]);
    let consumer =
        arrived[0]["spans"].as_array().unwrap().iter().find(|s| s["operationName"] == "process tasks").unwrap();
    assert_eq!(consumer["references"], serde_json::json!([]));

    // Connected: the request, under the gateway's trace ID, the consumer a
    // child of the producer that sent its message.
    let connected = data(&collector, &format!("/api/traces/{worker}?connected=true"));
    assert_eq!(trace_ids(&connected), [gateway.clone()]);
    let spans = connected[0]["spans"].as_array().unwrap();
    // The fixture's nine spans, and the queue transit the doctor adds
    // between the producer's end and the consumer's start.
    assert_eq!(spans.len(), 10);
    let by_id = |id: &Value| spans.iter().find(|s| s["spanID"] == *id).unwrap();
    let parent_of = |span: &Value| {
        let r = &span["references"][0];
        assert_eq!(r["refType"], "CHILD_OF", "{span}");
        assert_eq!(r["traceID"], Value::from(gateway.as_str()), "{span}");
        by_id(&r["spanID"]).clone()
    };
    let consumer = spans.iter().find(|s| s["operationName"] == "process tasks").unwrap();
    assert_eq!(parent_of(consumer)["operationName"], "send tasks");
    let transit = spans.iter().find(|s| tag(s, "agentrace.synthetic").is_some()).unwrap();
    assert_eq!(tag(transit, "agentrace.synthetic").unwrap()["value"], true, "{transit}");
    assert_eq!(parent_of(transit)["operationName"], "send tasks");
    let mut services: Vec<&str> =
        connected[0]["processes"].as_object().unwrap().values().map(|p| p["serviceName"].as_str().unwrap()).collect();
    services.sort_unstable();
    assert_eq!(services, ["agentrace", "gateway", "planner", "worker"], "the transit is the collector's own");
    // A search answers connected requests too when asked.
    let found =
        data(&collector, "/api/traces?service=worker&start=1767225600000000&end=1767225601000000&connected=true");
    assert_eq!(trace_ids(&found), [gateway.clone()]);

    // The fixture ran on 2026-01-01 at 00:00 UTC: its hour, in milliseconds.
    let deps = data(&collector, "/api/dependencies?endTs=1767225601000&lookback=3600000");
    let mut edges: Vec<(String, String, u64)> = deps
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["parent"].as_str().unwrap().to_owned(),
                d["child"].as_str().unwrap().to_owned(),
                d["callCount"].as_u64().unwrap(),
            )
        })
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        [("gateway".to_owned(), "planner".to_owned(), 1), ("planner".to_owned(), "worker".to_owned(), 1)],
        "the arrived call and the repaired queue hop"
    );
    assert_eq!(data(&collector, "/api/dependencies?endTs=1767225601000&lookback=1"), serde_json::json!([]));
    // The agent graph, as the doctor draws it (a service with no agent name
    // is its own agent): the hand-off over the queue is one of its edges.
    let agents = data(&collector, "/api/dependencies?endTs=1767225601000&lookback=3600000&graph=agents");
    assert_eq!(
        agents,
        serde_json::json!([
            {"parent": "gateway", "child": "planner", "callCount": 1},
            {"parent": "planner", "child": "worker", "callCount": 1},
            {"parent": "worker", "child": "executor", "callCount": 1},
        ])
    );
}

#[test]
fn a_collector_set_to_answer_connected_requests_does_so_unless_a_query_asks_otherwise() {
    // `api.jaeger_connected: true`: Grafana and Jaeger UI, which add no parameter of ours, see
    // the repaired request; `connected=false` still gives the trace as it arrived.
    let collector = support::start(|c| {
        c.pipeline.trace_timeout = std::time::Duration::from_millis(200);
        c.api.jaeger_connected = true;
    });
    let broken = support::doctor_fixture("broken_queue_message_id.json");
    let (mut gateway, mut worker) = (String::new(), String::new());
    for span in broken.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
        match span.name.as_str() {
            "POST /chat" => gateway = hex(&span.trace_id),
            "process tasks" => worker = hex(&span.trace_id),
            _ => {}
        }
    }
    support::send_otlp(&collector, &broken);
    let api = collector.api();
    support::wait_for(60, "the request to be diagnosed", || {
        support::get_json(&format!("{api}/api/agentrace/requests/{worker}")).0 == 200
    });
    assert_eq!(trace_ids(&data(&collector, &format!("/api/traces/{worker}"))), [gateway.clone()]);
    assert_eq!(trace_ids(&data(&collector, &format!("/api/traces/{worker}?connected=false"))), [worker.clone()]);
    let found = data(&collector, "/api/traces?service=worker&start=1767225600000000&end=1767225601000000");
    assert_eq!(trace_ids(&found), [gateway]);
}
