//! Claims about the web UI as people use it, in a real headless Chromium:
//! the request list pages, sorts, fills its pickers from the data, filters
//! by a time preset and opens any arrived trace ID; the trace page marks
//! findings on their rows, searches within the trace, shows a span's chat
//! messages as a conversation and long values cut with "show all", selects
//! an agent's spans from the graph, and works from the keyboard alone
//! (Tab reaches every control, arrow keys walk the waterfall); sessions
//! are listed with their totals; errors say what happened; the pages do not
//! overflow at 900 px; and axe-core (the accessibility checker, from npm,
//! run in the page) finds no serious or critical violation, in the light
//! theme and the dark one. Screenshots of each screen go to
//! `target/ui-screenshots/`.

use crate::support;

use std::time::Duration;

use agentrace_collector::config::ContentAction;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Status;
use serde_json::json;
use support::webdriver::Browser;

const WAIT: Duration = Duration::from_secs(30);
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";
const LEFT: &str = "\u{E012}";
const RIGHT: &str = "\u{E014}";
const DOWN: &str = "\u{E015}";

fn hex(bytes: &[u8]) -> String {
    agentrace_model::ids::to_hex(bytes)
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// A 3,000-character value, as a tool's raw output can be.
fn long_value() -> String {
    "0123456789".repeat(300)
}

/// The broken queue hand-off; the worker's LLM call failing, with its
/// messages recorded as the GenAI conventions say and a long value.
/// Returns the request, the planner's trace ID and the worker's.
fn broken_flow() -> (ExportTraceServiceRequest, String, String) {
    let mut request = support::doctor_fixture("broken_queue_message_id.json");
    let (mut planner, mut worker) = (String::new(), String::new());
    for span in support::spans_mut(&mut request) {
        match span.name.as_str() {
            "POST /chat" => planner = hex(&span.trace_id),
            "process tasks" => worker = hex(&span.trace_id),
            "chat gpt-4o-mini" => {
                span.status = Some(Status { code: 2, message: "rate limited".into() });
                span.attributes.push(string(
                    "gen_ai.input.messages",
                    r#"[{"role":"user","parts":[{"type":"text","content":"Find the refund policy"}]}]"#,
                ));
                span.attributes.push(string(
                    "gen_ai.output.messages",
                    r#"[{"role":"assistant","parts":[{"type":"text","content":"Refunds within 30 days."}]}]"#,
                ));
                span.attributes.push(string("app.raw_output", &long_value()));
            }
            _ => {}
        }
    }
    (request, planner, worker)
}

/// `n` healthy requests of their own, a second apart, the k-th root
/// running 10·k ms longer than the fixture's.
fn healthy_requests(n: u64) -> ExportTraceServiceRequest {
    let template = support::doctor_fixture("healthy_request.json");
    let mut out = ExportTraceServiceRequest::default();
    for k in 0..n {
        let mut copy = template.clone();
        for span in support::spans_mut(&mut copy) {
            span.trace_id[0] = 0xb0;
            span.trace_id[1] = k as u8;
            span.start_time_unix_nano += (k + 1) * 1_000_000_000;
            span.end_time_unix_nano += (k + 1) * 1_000_000_000;
            if span.parent_span_id.is_empty() {
                span.end_time_unix_nano += k * 10_000_000;
            }
        }
        out.resource_spans.extend(copy.resource_spans);
    }
    out
}

fn axe() -> String {
    let path = support::node_project().join("node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_accessible(browser: &Browser, axe: &str, page: &str) {
    let found = browser.serious_accessibility_violations(axe);
    assert!(found.is_empty(), "{page}: axe-core finds serious violations:\n{}", found.join("\n"));
}

/// No horizontal scrolling of the page itself (a wide table scrolls in its own box).
fn assert_no_overflow(browser: &Browser, page: &str) {
    let (scroll, client) = (
        browser.execute("return document.documentElement.scrollWidth", json!([])).as_u64().unwrap(),
        browser.execute("return document.documentElement.clientWidth", json!([])).as_u64().unwrap(),
    );
    assert!(scroll <= client, "{page}: the page is {scroll} px wide in a {client} px window");
}

fn wait_ready(browser: &Browser, what: &str, ready: &str) {
    browser.wait_for(what, &format!("return document.body.dataset.ready === '{ready}'"), WAIT);
}

/// Every request is diagnosed and stored (the pipeline says so).
fn settled(collector: &support::Running) {
    support::wait_for(60, "every request answered", || {
        support::metric(&collector.api(), "agentrace_pipeline_requests_behind") == 0.0
            && support::metric(&collector.api(), "agentrace_pipeline_open_traces") == 0.0
    });
}

/// Presses the Duration header; returns the durations of the page once sorted `order`.
fn sort_by_duration(browser: &Browser, order: &str) -> Vec<String> {
    browser.click("button.sort[data-sort=duration]");
    browser.wait_for(
        &format!("sorted by duration, {order}"),
        &format!(
            "return document.body.dataset.ready === 'list' && document.querySelector('th[aria-sort={order}] [data-sort=duration]') !== null"
        ),
        WAIT,
    );
    browser
        .execute(
            "return [...document.querySelectorAll('tbody tr[data-trace] td:nth-child(4)')].map(td => td.textContent)",
            json!([]),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_request_list_pages_sorts_filters_and_opens_any_trace_id() {
    let collector = support::start(|c| c.pipeline.trace_timeout = Duration::from_millis(300));
    let (broken, planner, worker) = broken_flow();
    support::send_otlp(&collector, &broken);
    support::send_otlp(&collector, &healthy_requests(55));
    settled(&collector);
    let axe = axe();
    let browser = Browser::start();

    browser.goto(&format!("{}/#/", collector.api()));
    wait_ready(&browser, "the request list", "list");
    // 56 requests: a page of 50, newest first, then the rest.
    assert_eq!(browser.count("tbody tr[data-trace]"), 50);
    assert_eq!(browser.text("[data-test=page-label]"), "rows 1–50");
    assert_accessible(&browser, &axe, "request list");
    browser.click("[data-test=next-page]");
    browser.wait_for("the second page", "return document.querySelectorAll('tbody tr[data-trace]').length === 6", WAIT);
    assert_eq!(browser.text("[data-test=page-label]"), "rows 51–56");
    assert!(
        browser.execute("return document.querySelector('[data-test=next-page]').disabled", json!([])) == json!(true)
    );
    browser.click("[data-test=prev-page]");
    browser.wait_for(
        "the first page again",
        "return document.querySelectorAll('tbody tr[data-trace]').length === 50",
        WAIT,
    );

    // Sorted by duration: longest first, then (a second press) shortest first.
    let longest = sort_by_duration(&browser, "descending");
    assert_eq!(longest[0], "1.44 s", "the longest healthy request (900 ms + 54 × 10 ms) first: {longest:?}");
    let shortest = sort_by_duration(&browser, "ascending");
    assert_eq!(shortest[0], "900 ms", "{shortest:?}");
    browser.screenshot("request-list-sorted");

    // The pickers hold the data's services, agents and models.
    let models = browser
        .execute("return [...document.querySelectorAll('select[name=model] option')].map(o => o.value)", json!([]));
    assert!(models.as_array().unwrap().iter().any(|s| s == "gpt-4o-mini"), "{models}");
    let services = browser
        .execute("return [...document.querySelectorAll('select[name=service] option')].map(o => o.value)", json!([]));
    assert!(services.as_array().unwrap().iter().any(|s| s == "gateway"), "{services}");
    let agents = browser
        .execute("return [...document.querySelectorAll('select[name=agent] option')].map(o => o.value)", json!([]));
    assert!(agents.as_array().unwrap().iter().any(|s| s == "executor"), "{agents}");
    browser.click("select[name=agent] option[value=executor]");
    browser.click("form.filters button[type=submit]");
    browser.wait_for(
        "only the executor's request",
        "return document.querySelectorAll('tbody tr[data-trace]').length === 1",
        WAIT,
    );
    assert_eq!(browser.count(&format!("tr[data-trace='{planner}']")), 1);

    // A time preset: the fixtures ran long ago, so the last hour holds none.
    browser.goto(&format!("{}/#/", collector.api()));
    wait_ready(&browser, "the request list", "list");
    browser.click("select[name=range] option[value='1h']");
    browser.click("form.filters button[type=submit]");
    browser.wait_for(
        "no request in the last hour",
        "return document.querySelector('tbody td.muted') && document.querySelector('tbody td.muted').textContent.includes('No request matches')",
        WAIT,
    );

    // A trace ID that is no 32 hex digits is refused with a hint; the
    // orphan's own trace ID opens the request it belongs to.
    browser.type_text("form.open-trace input", "not-an-id");
    browser.click("form.open-trace button");
    assert!(browser.text("#open-hint").contains("32 hex digits"));
    browser.execute("document.querySelector('form.open-trace input').value = ''", json!([]));
    browser.type_text("form.open-trace input", &worker);
    browser.click("form.open-trace button");
    wait_ready(&browser, "the orphan's request", "trace");
    assert!(browser.text("[data-test=joined]").contains("2 traces joined"));
    assert!(browser.text("h1").contains("POST /chat"), "the request's root, not the orphan: {}", browser.text("h1"));

    // An unknown trace says what happened and what to do.
    browser.goto(&format!("{}/#/trace/{}", collector.api(), "f".repeat(32)));
    wait_ready(&browser, "the error page", "error");
    let error = browser.text("[data-test=error]");
    assert!(
        error.contains("Could not load trace") && error.contains("404") && error.contains("Check the ID"),
        "{error}"
    );
    assert!(browser.text("#status").contains("could not load"), "the status no longer says loading");
    assert_eq!(browser.count("[data-test=error][role=alert]"), 1);
    browser.screenshot("error-unknown-trace");

    // Narrow windows: nothing overflows the page.
    browser.resize(900, 900);
    browser.goto(&format!("{}/#/", collector.api()));
    wait_ready(&browser, "the request list", "list");
    assert_no_overflow(&browser, "request list at 900 px");
    browser.screenshot("request-list-900px");
}

#[test]
fn the_trace_page_works_by_keyboard_and_passes_axe_in_both_themes() {
    let collector = support::start(|c| {
        c.pipeline.trace_timeout = Duration::from_millis(300);
        // The messages are content: kept here so that the page can show them.
        c.redaction.store_content = ContentAction::Keep;
    });
    let (broken, _planner, worker) = broken_flow();
    support::send_otlp(&collector, &broken);
    settled(&collector);
    let axe = axe();
    let browser = Browser::start();
    browser.goto(&format!("{}/#/trace/{worker}", collector.api()));
    wait_ready(&browser, "the trace page", "trace");
    assert_accessible(&browser, &axe, "trace page");

    // Findings are marked on their rows, not only told in the pane.
    let marked = browser.execute(
        "return [...document.querySelectorAll('.wf-row')].filter(r => r.querySelector('[data-test=finding-mark]')).map(r => r.querySelector('.name').textContent)",
        json!([]),
    );
    assert!(marked.as_array().unwrap().iter().any(|n| n == "process tasks"), "{marked}");

    // Tab alone reaches the controls: the waterfall, the tabs, the
    // findings' and the failure chain's buttons, the agent graph's nodes.
    let mut reached = Vec::new();
    for _ in 0..60 {
        browser.press(&[TAB]);
        let what = browser.execute(
            "const a = document.activeElement; return a.getAttribute('role') === 'tree' ? 'tree'
               : a.getAttribute('role') === 'tab' ? 'tab ' + a.textContent
               : a.dataset.agent ? 'agent ' + a.dataset.agent
               : a.classList.contains('jump') ? 'jump ' + a.textContent
               : a.id === 'theme' ? 'theme' : a.tagName.toLowerCase()",
            json!([]),
        );
        reached.push(what.as_str().unwrap().to_owned());
    }
    for wanted in ["theme", "tree", "tab Diagnosis", "jump worker: process tasks", "agent executor"] {
        assert!(reached.iter().any(|r| r == wanted), "Tab never reaches {wanted}: {reached:?}");
    }

    // Arrow keys walk the waterfall; Left collapses, Right expands; the
    // span under the selection shows in the side pane (its attributes once
    // the spans' OTLP JSON, fetched after the first paint, is in).
    browser.wait_for("the spans' details", "return document.body.dataset.spans === 'loaded'", WAIT);
    browser.execute("document.querySelector('[role=tree]').focus()", json!([]));
    browser.press(&[DOWN, DOWN, DOWN, DOWN, DOWN, DOWN]);
    assert_eq!(browser.text(".wf-row[aria-selected=true] .name"), "process tasks");
    assert_eq!(browser.text("[role=tab][aria-selected=true]"), "Span");
    assert!(browser.text("[data-test=span-detail]").contains("messaging.message.id"));
    let rows = browser.count(".wf-row");
    browser.press(&[LEFT]);
    assert_eq!(browser.count(".wf-row"), rows - 2, "its two descendants are hidden");
    assert_eq!(browser.count(".wf-row[aria-expanded=false]"), 1);
    browser.press(&[RIGHT]);
    assert_eq!(browser.count(".wf-row"), rows);
    browser.press(&[DOWN, DOWN, ENTER]);
    assert_eq!(browser.text(".wf-row[aria-selected=true] .name"), "chat gpt-4o-mini");

    // The LLM call's messages as a conversation; a long value cut, in full on demand.
    let chat = browser
        .execute("return [...document.querySelectorAll('[data-test=chat] li')].map(li => li.textContent)", json!([]));
    let chat: Vec<&str> = chat.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(chat.len(), 2, "{chat:?}");
    assert!(chat[0].starts_with("user") && chat[0].contains("Find the refund policy"), "{chat:?}");
    assert!(chat[1].starts_with("assistant") && chat[1].contains("Refunds within 30 days."), "{chat:?}");
    assert!(browser.count("[data-test=span-detail] pre.json") >= 2, "JSON values pretty-printed");
    let long = "return [...document.querySelectorAll('[data-test=span-detail] tr')].find(tr => tr.textContent.startsWith('app.raw_output')).querySelector('.value > span').textContent.length";
    let cut = browser.execute(long, json!([])).as_u64().unwrap();
    assert!(cut < 400, "a 3,000-character value is cut: {cut}");
    browser.execute(
        "[...document.querySelectorAll('[data-test=span-detail] tr')].find(tr => tr.textContent.startsWith('app.raw_output')).querySelector('button').click()",
        json!([]),
    );
    assert_eq!(browser.execute(long, json!([])).as_u64().unwrap(), 3000, "and shown in full on demand");
    browser.screenshot("span-detail-conversation");

    // Search within the trace, next and next.
    browser.type_text(".wf-search", "chat");
    assert_eq!(browser.text("[data-test=search-count]"), "4 found");
    browser.click("[data-test=search-next]");
    assert_eq!(browser.text("[data-test=search-count]"), "1 of 4");
    browser.click("[data-test=search-next]");
    assert_eq!(browser.text("[data-test=search-count]"), "2 of 4");
    assert!(browser.text(".wf-row[aria-selected=true] .name").contains("chat"));

    // An agent of the graph selects its spans.
    browser.click("[role=tab][data-tab=diagnosis]");
    browser.click("svg.agent-graph g.node[data-agent=executor]");
    assert_eq!(browser.execute("return document.querySelector('.wf-search').value", json!([])), json!("executor"));
    assert_eq!(browser.text(".wf-row[aria-selected=true] .svc"), "worker");
    assert!(browser.text("[data-test=span-detail]").contains("executor"));
    browser.screenshot("trace-light");

    // Dark: the switch, and the checker again.
    browser.click("#theme");
    assert_eq!(browser.text("#theme"), "Theme: dark");
    let background = browser.execute("return getComputedStyle(document.documentElement).backgroundColor", json!([]));
    let channels: Vec<u32> = background
        .as_str()
        .unwrap()
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();
    assert!(channels.iter().sum::<u32>() < 150, "a dark background: {background}");
    assert_accessible(&browser, &axe, "trace page, dark");
    browser.screenshot("trace-dark");
    browser.click("#theme");
    browser.click("#theme");
    assert_eq!(browser.text("#theme"), "Theme: auto");
    // On auto, the system's preference decides, and a change of it applies at once.
    let theme = "return document.documentElement.dataset.theme";
    browser.prefer_dark(true);
    browser.wait_for("the dark theme from the system", &format!("{theme} === 'dark'"), WAIT);
    browser.prefer_dark(false);
    browser.wait_for("the light theme from the system", &format!("{theme} === 'light'"), WAIT);

    // The sessions list adds up each session's requests.
    browser.goto(&format!("{}/#/sessions", collector.api()));
    wait_ready(&browser, "the session list", "sessions");
    let row = browser.text("tr[data-session=sess-q]");
    for wanted in ["3300 / 480", "$0.00553", "1 failed request", "finding"] {
        assert!(row.contains(wanted), "the session's row says {wanted}: {row}");
    }
    assert_accessible(&browser, &axe, "session list");
    browser.screenshot("session-list");
    browser.goto(&format!("{}/#/session/sess-q", collector.api()));
    wait_ready(&browser, "the session page", "trace");
    assert_eq!(browser.count("[data-test=turns] tbody tr"), 1);
    assert_accessible(&browser, &axe, "session page");

    // Narrow: the pane goes under the waterfall; nothing overflows.
    browser.resize(900, 900);
    browser.goto(&format!("{}/#/trace/{worker}", collector.api()));
    wait_ready(&browser, "the trace page", "trace");
    assert_no_overflow(&browser, "trace page at 900 px");
    browser.screenshot("trace-900px");
}

/// A crawler whose three `tool loop` spans each sat 278 ms with no child
/// at work: one card with a count (each press selects the next), and the
/// idle stretch shaded on each row's time axis.
#[test]
fn identical_findings_are_one_card_and_gaps_are_shaded_on_the_axis() {
    let collector = support::start(|c| c.pipeline.trace_timeout = Duration::from_millis(300));
    let span = |id: u8, parent: Option<u8>, name: &str, start_ms: u64, end_ms: u64| {
        let at = |ms: u64| (1_767_225_600_000_000_000u64 + ms * 1_000_000).to_string();
        let mut s = json!({"traceId": "c0".repeat(16), "spanId": format!("{id:02x}").repeat(8), "name": name, "kind": 1,
                           "startTimeUnixNano": at(start_ms), "endTimeUnixNano": at(end_ms)});
        if let Some(p) = parent {
            s["parentSpanId"] = json!(format!("{p:02x}").repeat(8));
        }
        s
    };
    let mut spans = vec![span(1, None, "POST /run", 0, 1000)];
    for i in 0..3u8 {
        let at = u64::from(i) * 320;
        spans.push(span(2 + i, Some(1), "tool loop", at + 10, at + 310));
        spans.push(span(0x10 + i, Some(2 + i), "fetch page", at + 12, at + 32));
    }
    let body = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "crawler"}}]},
                                         "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]}]});
    let request = agentrace_model::otlp::decode_json(body.to_string().as_bytes(), &Default::default()).unwrap().request;
    support::send_otlp(&collector, &request);
    settled(&collector);

    let browser = Browser::start();
    browser.goto(&format!("{}/#/trace/{}", collector.api(), "c0".repeat(16)));
    wait_ready(&browser, "the trace page", "trace");
    assert_eq!(
        browser.count("[data-test=findings] .finding[data-kind=timing_gap]"),
        1,
        "three identical findings, one card"
    );
    assert_eq!(browser.text("[data-test=findings] .finding .badge"), "×3");
    let selected = "return document.querySelector('.wf-row[aria-selected=true]').dataset.span";
    let mut seen = Vec::new();
    for _ in 0..3 {
        browser.click("[data-test=findings] .finding button.jump");
        seen.push(browser.execute(selected, json!([])).as_str().unwrap().to_owned());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "each press selects the next of the three: {seen:?}");
    assert_eq!(
        browser.text("[role=tab][aria-selected=true]"),
        "Diagnosis",
        "choosing from the diagnosis keeps it in view"
    );
    // Each loop's idle stretch (278 of its 300 ms) is shaded on its row.
    assert_eq!(browser.count(".wf-row .wf-gap"), 3);
    let width = browser.execute("return parseFloat(document.querySelector('.wf-row .wf-gap').style.width)", json!([]));
    assert!((width.as_f64().unwrap() - 27.8).abs() < 0.5, "278 ms of the request's 1 s: {width}");
    // The message says what happened; how to fix it is one click away.
    assert_eq!(browser.count("[data-test=findings] details.fix"), 1);
    browser.screenshot("grouped-findings-and-gaps");
}
