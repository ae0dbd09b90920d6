//! Claim: every value that comes from a span reaches the web UI as text.
//! Span names, service names, agent names, attribute values, event names
//! and session IDs holding markup and scripts show literally, in a real
//! headless Chromium, on the trace list, the trace page, the span details,
//! the diagnosis and the agent graph, and no script of theirs runs.
//!
//! Each payload sets a `window.__xss` flag if it ever runs; the page must
//! not gain a single element from them either (no `<img>`, no extra
//! `<script>`, no `<b>`).

use crate::support;

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::Event;
use serde_json::json;
use support::webdriver::Browser;

const WAIT: Duration = Duration::from_secs(20);

const NAME: &str = "<img src=x onerror=\"window.__xss='name'\">";
const ATTRIBUTE: &str = "<script>window.__xss='attribute'</script>";
const SERVICE: &str = "<b onmouseover=\"window.__xss='service'\">svc</b>";
const AGENT: &str = "<svg onload=\"window.__xss='agent'\"></svg>";
const EVENT: &str = "<iframe src=\"javascript:window.__xss='event'\"></iframe>";
const SESSION: &str = "<a href=\"javascript:window.__xss='session'\">s</a>";

fn text_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(s.to_owned())) })
}

fn set(attributes: &mut Vec<KeyValue>, key: &str, value: &str) {
    attributes.retain(|kv| kv.key != key);
    attributes.push(KeyValue { key: key.to_owned(), value: text_value(value), ..Default::default() });
}

/// The broken queue hand-off, with markup wherever a sender controls text.
fn hostile_flow() -> (opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest, String) {
    let mut request = support::doctor_fixture("broken_queue_message_id.json");
    for rs in &mut request.resource_spans {
        let resource = rs.resource.as_mut().unwrap();
        let is_worker = resource.attributes.iter().any(|kv| kv.value == text_value("worker"));
        if is_worker {
            set(&mut resource.attributes, "service.name", SERVICE);
        }
    }
    let mut orphan_trace = String::new();
    for span in support::spans_mut(&mut request) {
        set(&mut span.attributes, "session.id", SESSION);
        match span.name.as_str() {
            "process tasks" => {
                orphan_trace = agentrace_model::ids::to_hex(&span.trace_id);
                span.name = NAME.to_owned();
                set(&mut span.attributes, "note", ATTRIBUTE);
                span.events.push(Event {
                    time_unix_nano: span.start_time_unix_nano + 1_000_000,
                    name: EVENT.to_owned(),
                    attributes: vec![KeyValue {
                        key: "detail".into(),
                        value: text_value(ATTRIBUTE),
                        ..Default::default()
                    }],
                    dropped_attributes_count: 0,
                });
            }
            "invoke_agent executor" => set(&mut span.attributes, "gen_ai.agent.name", AGENT),
            _ => {}
        }
    }
    (request, orphan_trace)
}

/// Nothing ran, nothing was parsed into elements, and `expected` shows literally.
fn assert_inert(browser: &Browser, page: &str, expected: &[&str]) {
    let flag = browser.execute("return window.__xss === undefined ? null : String(window.__xss)", json!([]));
    assert_eq!(flag, json!(null), "{page}: a payload ran");
    let elements = browser.execute(
        "return {img: document.querySelectorAll('img').length, script: document.scripts.length,
                 iframe: document.querySelectorAll('iframe').length, b: document.querySelectorAll('b[onmouseover]').length,
                 inlineSvg: document.querySelectorAll('svg[onload]').length,
                 jsLinks: document.querySelectorAll('a[href^=javascript]').length}",
        json!([]),
    );
    assert_eq!(
        elements,
        json!({"img": 0, "script": 1, "iframe": 0, "b": 0, "inlineSvg": 0, "jsLinks": 0}),
        "{page}: markup from spans became elements"
    );
    let text = browser.execute("return document.body.textContent", json!([])).as_str().unwrap().to_owned();
    for payload in expected {
        assert!(text.contains(payload), "{page}: {payload:?} does not show literally");
    }
}

#[test]
fn markup_and_scripts_in_spans_show_as_text_and_never_run() {
    let collector = support::start(|_| {});
    let (request, orphan_trace) = hostile_flow();
    support::send_otlp(&collector, &request);
    let browser = Browser::start();

    browser.goto(&format!("{}/#/", collector.api()));
    browser.wait_for("the request list", "return document.body.dataset.ready === 'list'", WAIT);
    // The request is listed once its traces closed; the orphan named with
    // markup is part of the planner's request, whose row names its agents
    // and session.
    browser.wait_for("the request's row", "return document.querySelectorAll('tr[data-trace]').length === 1", WAIT);
    assert_inert(&browser, "request list", &[AGENT, SESSION]);

    browser.goto(&format!("{}/#/trace/{orphan_trace}", collector.api()));
    browser.wait_for("the trace page", "return document.body.dataset.ready === 'trace'", WAIT);
    // The hostile span's details: a real click on its row.
    browser.click(".wf-row:has([data-test=repaired-edge]) .wf-label");
    browser.wait_for(
        "the span details",
        "return document.querySelector('[data-test=span-detail]').textContent.includes('Attributes')",
        WAIT,
    );
    assert_inert(&browser, "trace page", &[NAME, SERVICE, AGENT, ATTRIBUTE, EVENT, SESSION]);
    let graph = browser.execute("return document.querySelector('svg.agent-graph').textContent", json!([]));
    assert!(graph.as_str().unwrap().contains(AGENT), "the agent graph names the agent literally");
    // Hover text is text too.
    let title = browser.execute("return document.querySelector('[data-test=repaired-edge]').title", json!([]));
    assert!(title.as_str().unwrap().contains(&orphan_trace));
    browser.screenshot("hostile-span-values");

    // Session IDs travel through the URL as well.
    browser.click("a[href^='#/session/']");
    browser.wait_for("the session page", "return document.body.dataset.ready === 'trace'", WAIT);
    assert_inert(&browser, "session page", &[NAME, SESSION]);
}

#[test]
fn every_ui_answer_forbids_inline_script() {
    let collector = support::start(|_| {});
    for path in ["/", "/ui/app.js", "/ui/app.css"] {
        let response = reqwest::blocking::get(format!("{}{path}", collector.api())).unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
}
