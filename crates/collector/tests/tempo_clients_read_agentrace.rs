//! Claims about Grafana Tempo's HTTP API (under `/tempo`): the Perses Tempo
//! plugin's own client (`@perses-dev/tempo-plugin`, from npm, run in Node)
//! searches spans sent by the official OpenTelemetry Python SDK with the
//! TraceQL a Tempo UI writes, fetches a trace, and lists tags and values;
//! Grafana's backend gets the trace as protobuf from `/api/v2/traces/{id}`;
//! an unknown trace and a bad query are answered as Tempo answers them.

use crate::support;

use std::process::Command;

use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde_json::Value;

fn trimmed(id: &str) -> &str {
    id.trim_start_matches('0')
}

#[test]
fn the_perses_tempo_client_searches_fetches_and_lists_tags() {
    let collector = support::start(|_| {});
    let sent = support::python_send(&["--protocol", "grpc", "--endpoint", &collector.grpc(), "--requests", "2"]);
    let mut requests: Vec<String> = Vec::new();
    for span in sent.request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
        if span.name == "invoke_agent orchestrator" {
            requests.push(agentrace_model::ids::to_hex(&span.trace_id));
        }
    }
    requests.sort();
    let base = format!("{}/tempo", collector.api());
    let dir = support::node_project();
    let out = Command::new("node").arg(dir.join("tempo_client.mjs")).args([&base, &requests[0]]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    // TraceQL: the service's spans with an error, the tool's in each request.
    let traces = got["search"]["traces"].as_array().unwrap_or_else(|| panic!("{}", got["search"]));
    let mut ids: Vec<&str> = traces.iter().map(|t| t["traceID"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = requests.iter().map(|r| trimmed(r)).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    for t in traces {
        assert_eq!(t["rootServiceName"], "py-orchestrator");
        assert_eq!(t["rootTraceName"], "invoke_agent orchestrator");
        let set = &t["spanSets"][0];
        assert_eq!(set["matched"], 1, "{t}");
        assert_eq!(set["spans"][0]["name"], "execute_tool search");
        let attrs = set["spans"][0]["attributes"].as_array().unwrap();
        assert!(attrs.iter().any(|a| a["key"] == "status" && a["value"]["stringValue"] == "error"), "{t}");
        assert!(attrs.iter().any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "py-orchestrator"));
        assert_eq!(t["serviceStats"]["py-orchestrator"]["errorCount"], 1);
        assert!(t["startTimeUnixNano"].is_string(), "64-bit numbers are strings: {t}");
    }
    // `{}` finds every trace: the two requests and their consumers.
    assert_eq!(got["searchAll"]["traces"].as_array().map(Vec::len), Some(4), "{}", got["searchAll"]);

    // The trace, as `batches` of OTLP with Tempo's enum names.
    let batches = got["query"]["batches"].as_array().unwrap_or_else(|| panic!("{}", got["query"]));
    let spans: Vec<&Value> = batches
        .iter()
        .flat_map(|b| b["scopeSpans"].as_array().unwrap())
        .flat_map(|s| s["spans"].as_array().unwrap())
        .collect();
    let placed = support::by_span_id(&support::only_trace(&sent.request, &requests[0]));
    assert_eq!(spans.len(), placed.len());
    let tool = spans.iter().find(|s| s["name"] == "execute_tool search").unwrap();
    assert_eq!(tool["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(tool["kind"], "SPAN_KIND_INTERNAL");

    // Tags and values, as Tempo's v2 routes give them.
    let scopes = got["tags"]["scopes"].as_array().unwrap_or_else(|| panic!("{}", got["tags"]));
    assert_eq!(scopes.len(), 1);
    assert_eq!(scopes[0]["name"], "resource");
    let tags: Vec<&str> = scopes[0]["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tags.contains(&"service.name") && tags.contains(&"service.instance.id"), "{tags:?}");
    let all: Vec<&str> =
        got["allTags"]["scopes"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(all, ["resource", "span", "intrinsic"]);
    assert_eq!(got["serviceNames"]["tagValues"], serde_json::json!([{"type": "string", "value": "py-orchestrator"}]));
    assert_eq!(got["spanNames"]["tagValues"], serde_json::json!([{"type": "string", "value": "chat gpt-4o"}]));

    // A regex, `||` and duration bounds find the traces whose spans match, as the spans sent say.
    let traces_with = |matches: &dyn Fn(&str) -> bool| -> Vec<String> {
        let mut ids: Vec<String> = sent
            .request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .filter(|s| matches(&s.name))
            .map(|s| trimmed(&agentrace_model::ids::to_hex(&s.trace_id)).to_owned())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let found = |name: &str| -> Vec<String> {
        let traces = got[name]["traces"].as_array().unwrap_or_else(|| panic!("{name}: {}", got[name]));
        let mut ids: Vec<String> = traces.iter().map(|t| t["traceID"].as_str().unwrap().to_owned()).collect();
        ids.sort_unstable();
        ids
    };
    let tools = traces_with(&|n| n.starts_with("execute_tool"));
    assert!(!tools.is_empty());
    assert_eq!(found("regex"), tools);
    let either = traces_with(&|n| n == "execute_tool search" || n.starts_with("chat "));
    assert!(either.len() >= tools.len());
    assert_eq!(found("either"), either);
    assert_eq!(found("shortSpans"), traces_with(&|n| n.starts_with("chat ")));
    assert_eq!(found("longSpans"), Vec::<String>::new());

    // A query it cannot read is a 400 that says where.
    let error = got["badQuery"]["error"].as_str().unwrap_or_else(|| panic!("{}", got["badQuery"]));
    assert!(error.contains("invalid TraceQL at character 6: expected a value"), "{error}");
}

#[test]
fn grafanas_backend_gets_protobuf_and_tempos_answers_for_the_unknown() {
    let collector = support::start(|_| {});
    let sent =
        support::python_send(&["--protocol", "http/protobuf", "--endpoint", &collector.http(), "--requests", "1"]);
    let id = &sent.trace_ids[0];
    let base = format!("{}/tempo", collector.api());
    let client = reqwest::blocking::Client::new();
    let response = client.get(format!("{base}/api/echo")).send().unwrap();
    assert_eq!((response.status().as_u16(), response.text().unwrap().as_str()), (200, "echo\n"));
    let info: Value = client.get(format!("{base}/api/status/buildinfo")).send().unwrap().json().unwrap();
    assert!(info["version"].as_str().unwrap().starts_with("2."), "{info}");

    // As Grafana's Tempo backend asks: protobuf TraceByIDResponse, the trace in field 1.
    let response =
        client.get(format!("{base}/api/v2/traces/{id}")).header("accept", "application/protobuf").send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/protobuf");
    let body = response.bytes().unwrap();
    let mut buf = &body[..];
    let key = prost::encoding::decode_varint(&mut buf).unwrap();
    assert_eq!(key, (1 << 3) | 2, "field 1, length-delimited");
    let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
    let trace = TracesData::decode(&buf[..len]).unwrap();
    let got = support::by_span_id(&opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: trace.resource_spans,
    });
    assert_eq!(got.len(), support::by_span_id(&support::only_trace(&sent.request, id)).len());

    // Unknown: v2 answers an empty trace with 200, v1 a 404 with no body.
    let unknown = "0".repeat(31) + "7";
    let v2: Value = client.get(format!("{base}/api/v2/traces/{unknown}")).send().unwrap().json().unwrap();
    assert_eq!(v2, serde_json::json!({"trace": {}, "metrics": {}}));
    let v1 = client.get(format!("{base}/api/traces/7")).send().unwrap();
    assert_eq!(v1.status().as_u16(), 404);
    assert_eq!(v1.text().unwrap(), "");
    let bad = client.get(format!("{base}/api/traces/xyz")).send().unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    // Jaeger's route of the same path is untouched at the root.
    let (status, body) = support::get_json(&format!("{}/api/traces/{id}", collector.api()));
    assert_eq!(status, 200);
    assert!(body["data"][0]["spans"].is_array(), "{body}");
}
