//! Claim: opening any piece of a broken multi-agent flow in the web UI, in a
//! real headless Chromium, shows one connected trace with the repaired edge
//! marked and explained, and beside it what broke, what failed (the chain),
//! where the time went and the agent graph; the trace list shows the traces
//! with their findings and picks up new traces without a reload; the
//! session page joins the stitched traces on one timeline, and puts every
//! request of a session on one time axis.
//!
//! The flow is the doctor's `broken_queue_message_id` fixture (made with the
//! OpenTelemetry Python SDK): a planner hands a task to a worker through a
//! Redis stream, and the worker starts a new trace. Here the worker's LLM
//! call also fails, so that there is a failure to find.
//!
//! Screenshots land in `target/ui-screenshots/`.

use crate::support;

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::Status;
use serde_json::json;
use support::webdriver::Browser;

const WAIT: Duration = Duration::from_secs(20);

fn hex(bytes: &[u8]) -> String {
    agentrace_model::ids::to_hex(bytes)
}

/// The broken flow, with the worker's LLM call failing.
fn broken_flow() -> (opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest, String, String) {
    let mut request = support::doctor_fixture("broken_queue_message_id.json");
    let mut planner_trace = String::new();
    let mut worker_trace = String::new();
    for span in support::spans_mut(&mut request) {
        match span.name.as_str() {
            "POST /chat" => planner_trace = hex(&span.trace_id),
            "process tasks" => worker_trace = hex(&span.trace_id),
            "chat gpt-4o-mini" => {
                span.status = Some(Status { code: 2, message: "429 Too Many Requests: rate limited".into() });
            }
            _ => {}
        }
    }
    assert!(!planner_trace.is_empty() && !worker_trace.is_empty() && planner_trace != worker_trace);
    (request, planner_trace, worker_trace)
}

fn count(browser: &Browser, css: &str) -> u64 {
    browser.execute("return document.querySelectorAll(arguments[0]).length", json!([css])).as_u64().unwrap()
}

fn text(browser: &Browser, css: &str) -> String {
    let script = "const n = document.querySelector(arguments[0]); return n ? n.textContent : null";
    browser.execute(script, json!([css])).as_str().unwrap_or_else(|| panic!("nothing matches {css}")).to_owned()
}

#[test]
fn the_orphan_opens_as_one_connected_trace_with_its_diagnosis() {
    let collector = support::start(|_| {});
    let (request, planner_trace, worker_trace) = broken_flow();
    support::send_otlp(&collector, &request);
    let api_spans = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum::<usize>();

    let browser = Browser::start();
    // The orphan's own trace ID, as Jaeger would show it: the UI answers with
    // the request it belongs to.
    browser.goto(&format!("{}/#/trace/{worker_trace}", collector.api()));
    browser.wait_for("the trace page", "return document.body.dataset.ready === 'trace'", WAIT);

    // One waterfall holding both traces, plus the synthetic queue transit.
    let rows = count(&browser, ".wf-row");
    assert_eq!(rows as usize, api_spans + 1, "every span of both traces and one synthetic span");
    assert_eq!(count(&browser, "[data-test=synthetic-span]"), 1);
    assert!(text(&browser, "[data-test=joined]").contains("2 traces joined"));

    // The repaired edge is marked, and its hover text explains it.
    let title = browser
        .execute("return document.querySelector('[data-test=repaired-edge]').title", json!([]))
        .as_str()
        .unwrap()
        .to_owned();
    assert!(title.contains("messaging.message.id"), "hover explains the evidence: {title}");
    assert!(title.contains(&worker_trace), "and names the trace it arrived in: {title}");
    let repaired_row = text(&browser, ".wf-row:has([data-test=repaired-edge]) .name");
    assert_eq!(repaired_row, "process tasks");

    // The critical path is highlighted.
    assert!(count(&browser, ".wf-bar.crit") >= 3);

    // What broke, with the evidence.
    let finding = text(&browser, "[data-test=findings] .finding[data-kind=orphan_root]");
    assert!(finding.contains("process tasks"), "{finding}");
    assert!(text(&browser, "[data-test=repairs]").contains("messaging.message.id"));

    // What failed: the chain from the request's root to the LLM call.
    let chain: Vec<String> = browser
        .execute(
            "return [...document.querySelectorAll('[data-test=failure-chain] li')].map(li => li.textContent)",
            json!([]),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(chain.len() >= 3, "a chain, not a lone span: {chain:?}");
    assert!(chain.first().unwrap().contains("POST /chat"), "{chain:?}");
    assert!(chain.last().unwrap().contains("chat gpt-4o-mini"), "{chain:?}");
    assert!(text(&browser, "[data-test=failure]").contains("llm"));

    // Where the time went: bars by category and by agent.
    let bars = text(&browser, "[data-test=time-breakdown]");
    for label in ["llm", "planner", "executor"] {
        assert!(bars.contains(label), "time breakdown names {label}: {bars}");
    }
    assert!(count(&browser, "[data-test=time-bar]") >= 4);

    // The agent graph: the planner hands work to the worker through the
    // queue (the edge the broken propagation hid), the worker runs the executor.
    for agent in ["gateway", "planner", "worker", "executor"] {
        assert_eq!(count(&browser, &format!("svg.agent-graph g.node[data-agent={agent}]")), 1, "{agent}");
    }
    assert_eq!(count(&browser, "svg.agent-graph path.edge[data-from=planner][data-to=worker]"), 1);
    assert_eq!(count(&browser, "svg.agent-graph path.edge[data-from=worker][data-to=executor]"), 1);
    assert!(text(&browser, "svg.agent-graph").contains("queue"));
    let executor = text(&browser, "svg.agent-graph g.node[data-agent=executor]");
    assert!(executor.contains("2000 in / 300 out"), "tokens on the node: {executor}");
    assert!(executor.contains("1 error"), "errors on the node: {executor}");
    // Cost as the CLI prints it (gpt-4o-mini: 2000 × $0.15 + 300 × $0.60 per million),
    // not rounded to four decimals.
    assert!(executor.contains("$0.00048 "), "cost on the node: {executor}");

    // Span details: a real click on the repaired span shows its repair
    // attributes (the spans' OTLP JSON comes after the first paint).
    browser.wait_for("the spans' details", "return document.body.dataset.spans === 'loaded'", WAIT);
    browser.click(".wf-row:has([data-test=repaired-edge]) .wf-label");
    let detail = text(&browser, "[data-test=span-detail]");
    for expected in
        ["agentrace.repair.evidence", "agentrace.repair.original_trace_id", "messaging.message.id", "worker"]
    {
        assert!(detail.contains(expected), "span detail shows {expected}: {detail}");
    }
    let shot = browser.screenshot("repaired-trace");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real screenshot at {}", shot.display());
    // The span's detail opened in the side pane's Span tab; the diagnosis is the other tab.
    assert_eq!(text(&browser, "[role=tab][aria-selected=true]"), "Span");
    browser.click("[role=tab][data-tab=diagnosis]");
    browser.execute("document.querySelector('[data-test=time-breakdown]').scrollIntoView()", json!([]));
    browser.screenshot("diagnosis-and-agent-graph");
    browser.execute("window.scrollTo(0, 0)", json!([]));

    // Collapsing the root hides everything under it.
    browser.click(".wf-row .toggle");
    assert_eq!(count(&browser, ".wf-row"), 1);
    browser.click(".wf-row .toggle");
    assert_eq!(count(&browser, ".wf-row") as usize, api_spans + 1);

    // Zoom: a drag over the second half of the time axis shows only that
    // stretch; the planner's first LLM call (10–200 ms of 1 s) leaves the view.
    let bars_in_view = "return [...document.querySelectorAll('.wf-bar')].length";
    let before = browser.execute(bars_in_view, json!([])).as_u64().unwrap();
    browser.drag_across(".wf-ruler", 0.5, 0.98);
    let label = text(&browser, ".wf-tools");
    assert!(
        label.contains("zoomed to 49") || label.contains("zoomed to 50"),
        "the zoom says where it is, to the pixel: {label}"
    );
    let after = browser.execute(bars_in_view, json!([])).as_u64().unwrap();
    assert!(after < before, "bars outside the range leave the view ({before} -> {after})");
    browser.screenshot("zoomed-trace");
    browser.click(".wf-tools button");
    assert_eq!(browser.execute(bars_in_view, json!([])).as_u64().unwrap(), before, "reset zoom");

    // The list: one row per request. The orphan's trace is no row of its
    // own: it is part of the planner's request, whose row has the finding,
    // the executor among its agents, and says two traces were joined.
    browser.goto(&format!("{}/#/", collector.api()));
    browser.wait_for("the request list", "return document.body.dataset.ready === 'list'", WAIT);
    let request_row = format!("tr[data-trace='{planner_trace}']");
    browser.wait_for(
        "the planner's request, joined",
        &format!("return document.querySelectorAll(\"{request_row} .badge.join\").length === 1"),
        WAIT,
    );
    assert_eq!(count(&browser, &format!("tr[data-trace='{worker_trace}']")), 0, "the orphan is no request of its own");
    assert_eq!(count(&browser, &format!("tr[data-traces~='{worker_trace}']")), 1, "the orphan's trace is in one row");
    let row = text(&browser, &request_row);
    // Its badges say what broke, each kind apart, with the finding's message on hover.
    let badge = text(&browser, &format!("{request_row} .badge.broken[data-kind=orphan_root]"));
    assert_eq!(badge, "orphaned hop", "the request's row names the kind of break: {row}");
    let hover = browser
        .execute(
            &format!("return document.querySelector(\"{request_row} .badge.broken[data-kind=orphan_root]\").title"),
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_owned();
    assert!(hover.contains("process tasks"), "the badge's tooltip is the finding's message: {hover}");
    assert!(row.contains("executor"), "and the orphan's agent: {row}");
    assert!(row.contains("2 traces joined"), "{row}");

    // A new trace shows up without a reload.
    let mut late = support::doctor_fixture("healthy_request.json");
    let late_trace = hex(&support::spans_mut(&mut late).next().unwrap().trace_id);
    support::send_otlp(&collector, &late);
    browser.wait_for(
        "the new trace in the list",
        &format!("return document.querySelectorAll(\"tr[data-trace='{late_trace}']\").length === 1"),
        WAIT,
    );
    browser.screenshot("trace-list");

    // The session page puts the session's traces on one timeline, joined.
    browser.goto(&format!("{}/#/session/sess-q", collector.api()));
    browser.wait_for("the session page", "return document.body.dataset.ready === 'trace'", WAIT);
    assert!(text(&browser, "[data-test=joined]").contains("2 traces joined"));
    assert_eq!(count(&browser, ".wf-row") as usize, api_spans + 1);
    browser.screenshot("session");

    // The session list names it.
    browser.goto(&format!("{}/#/sessions", collector.api()));
    browser.wait_for("the session list", "return document.body.dataset.ready === 'sessions'", WAIT);
    assert!(text(&browser, "table.list").contains("sess-q"));
}

#[test]
fn a_session_shows_all_its_requests_on_one_timeline() {
    let collector = support::start(|_| {});
    // Three requests of one session, the third starting while the second's
    // background work still runs (JSON lines, as the Collector's file exporter writes).
    let path = support::workspace_root().join("crates/doctor/tests/fixtures/healthy_session_three_requests.jsonl");
    let read = agentrace_doctor::input::spans_from_bytes(&std::fs::read(path).unwrap(), &Default::default()).unwrap();
    let request = agentrace_model::Span::to_request(&read.spans);
    support::send_otlp(&collector, &request);

    let browser = Browser::start();
    browser.goto(&format!("{}/#/session/sess-many", collector.api()));
    browser.wait_for("the session page", "return document.body.dataset.ready === 'trace'", WAIT);
    assert_eq!(
        count(&browser, "[data-test=turns] tbody tr"),
        4,
        "three requests and the background summary, turn by turn"
    );
    // The waterfall draws only the rows in view; collapsed to the roots, all show.
    assert!(count(&browser, ".wf-row") < read.spans.len() as u64, "virtualised");
    browser.screenshot("session-three-requests");
    browser.click(".wf-tools button:nth-child(2)");
    assert_eq!(count(&browser, ".wf-row"), 4, "collapse all: one row per request");
    assert_eq!(count(&browser, ".wf-row.request-start"), 3, "each request after the first starts a group");
    // One time axis: each root starts later than the one before.
    let lefts = browser.execute(
        "return [...document.querySelectorAll('.wf-row .wf-bar')].map(b => parseFloat(b.style.left))",
        json!([]),
    );
    let lefts: Vec<f64> = lefts.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(lefts.len(), 4, "{lefts:?}");
    assert_eq!(lefts[0], 0.0);
    assert!(lefts.windows(2).all(|w| w[0] < w[1]), "roots later and later on one axis: {lefts:?}");
    assert!(text(&browser, "[data-test=findings]").contains("propagation intact"));
}
