//! Benchmark of the web UI in headless Chromium: how long a 10,000-span
//! trace takes to become interactive, and how the trace list answers with
//! 100,000 traces in the store.
//!
//! Starts a collector in-process on ephemeral ports over a fresh store,
//! sends it spans over OTLP/HTTP, and drives Debian's Chromium through
//! chromedriver (the tests' WebDriver client). "Interactive" is the page's
//! own `agentrace:interactive` performance mark: set two animation frames
//! after the waterfall, the diagnosis and the agent graph are drawn, so it
//! counts navigation, the API call (the doctor's analysis on read), JSON
//! parsing, drawing and the first paint.
//!
//! ```sh
//! scripts/ui-bench.sh        # builds in release and runs this
//! ```
//!
//! ```sh
//! UI_BENCH_TRACE_ONLY=1 taskset -c 0 target/release/examples/ui_bench   # the 10k-span trace on one core, and its goal
//! ```
//!
//! Figures of 2026-12-01, the 10k-span trace on ONE core (`taskset -c 0`:
//! collector, chromedriver and every Chromium process on core 0 of this
//! 2-vCPU Debian VM, the other core idle; release; Chromium 156 headless;
//! `UI_BENCH_RUNS=5`), this UI beside the one before it (219dbbc) run the
//! same way just before. The goal: interactive within 1 s on one core.
//!
//! | 10k-span trace, one core | before (219dbbc) | now | ratio |
//! |---|---|---|---|
//! | `GET /api/agentrace/traces/{id}` (8.2 MiB) | 452 ms | 135 ms (3 runs: 96–140) | 0.30 |
//! | the first piece, `…?spans=false` (3.1 MiB) | — | 90 ms (74–100) | — |
//! | navigation to data parsed (`agentrace:data`) | 804 ms | 538 ms | 0.67 |
//! | navigation to interactive, median of 5 | 934 ms (871–1600) | 791 ms (561–1142; two other runs 618 and 728) | 0.85 |
//! | navigation to span details ready (`agentrace:spans`) | (with the page) | 1209 ms | — |
//! | scroll to the middle and redraw / collapse the root | 8.0 / 19.0 ms | 18.5 / 7.2 ms | 2.3 / 0.38 |
//!
//! The API's 3.3× comes from serializing the answer straight from the
//! diagnosis (it went through a `serde_json::Value` tree); the page's from
//! drawing from the diagnosis and the tree first and fetching the spans'
//! OTLP JSON once it is interactive. The scroll redraw is slower: each row
//! now carries ARIA attributes, finding marks and the overview is redrawn.
//!
//! Earlier figures (2026-11-25, two cores shared with two other builds,
//! load average 5–7; `UI_BENCH_RUNS=7`):
//!
//! | what | median |
//! |---|---|
//! | 10k-span trace: `GET /api/agentrace/traces/{id}` (load, doctor, 8.2 MiB of JSON) | 149 ms |
//! | 10k-span trace: navigation to the data parsed (`agentrace:data`) | 296 ms |
//! | 10k-span trace: navigation to interactive (`agentrace:interactive`), 7 runs 310–492 ms | 344 ms |
//! | 10k-span trace: scroll to the middle and redraw / collapse the root | 1.8 ms / 2.9 ms |
//! | 100k traces (500k spans) stored: list page of 50, no filter | 18 ms |
//! | … `service=planner` / `errors=true` / `q=lookup` / `session=…` | 17 / 20 / 9 / 1 ms |
//! | … `agent=planner` / `findings=true` (none match: 500 candidates analysed, the bound) | 11 / 109 ms |
//! | 100k traces: a 5-span trace's page / a 4-trace session's page (API) | 1 / 1 ms |
//! | 100k traces: trace list drawn in Chromium from navigation | 136 ms |

#![allow(clippy::print_stdout, clippy::print_stderr, missing_docs)]

#[path = "../tests/support/webdriver.rs"]
mod webdriver;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentrace_collector::config::Config;
use agentrace_collector::server::Collector;
use agentrace_model::{Attributes, Resource, Span, SpanId, SpanKind, StatusCode, TraceId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::json;
use webdriver::Browser;

const BIG_TRACE_SPANS: usize = 10_000;
const LIST_TRACES: usize = 100_000;
const SPANS_PER_LIST_TRACE: usize = 5;
const MS: u64 = 1_000_000;

/// Spans of one trace, with IDs counted from `next`.
struct Gen {
    trace_id: TraceId,
    next: u64,
    out: Vec<Span>,
}

impl Gen {
    fn new(high: u8, low: u64, first_span: u64) -> Gen {
        let mut id = [high; 16];
        id[8..].copy_from_slice(&low.to_be_bytes());
        Gen { trace_id: TraceId::new(id).expect("non-zero"), next: first_span, out: Vec::new() }
    }

    /// Adds a span of `service` from `start` to `end` (ns) and returns its ID.
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: &str,
        name: &str,
        parent: Option<SpanId>,
        kind: SpanKind,
        start: u64,
        end: u64,
        attributes: &[(&str, &str)],
        tokens: Option<(i64, i64)>,
    ) -> SpanId {
        self.next += 1;
        let id = SpanId::new(self.next.to_be_bytes()).expect("non-zero");
        let mut span = Span::new(self.trace_id, id, parent, name);
        span.kind = kind;
        span.start_unix_nano = start;
        span.end_unix_nano = end;
        span.resource = Arc::new(Resource::for_service(service));
        span.attributes = attributes.iter().copied().collect::<Attributes>();
        if let Some((input, output)) = tokens {
            span.attributes.set("gen_ai.usage.input_tokens", input);
            span.attributes.set("gen_ai.usage.output_tokens", output);
        }
        self.out.push(span);
        id
    }

    fn fail_last(&mut self, message: &str) {
        let span = self.out.last_mut().expect("a span");
        span.status_code = StatusCode::Error;
        span.status_message = message.to_owned();
    }
}

/// A 10,000-span multi-agent request: an orchestrator delegating to 49
/// specialist agents, each making LLM, tool and retrieval calls.
fn big_trace(t0: u64) -> (Vec<Span>, String) {
    let mut g = Gen::new(0xb1, t0, 0x1000);
    let root = g.span(
        "gateway",
        "POST /chat",
        None,
        SpanKind::Server,
        t0,
        t0 + 60_000 * MS,
        &[("session.id", "bench-session")],
        None,
    );
    let orch_attrs = [("gen_ai.operation.name", "invoke_agent"), ("gen_ai.agent.name", "orchestrator")];
    let orch = g.span(
        "orchestrator",
        "invoke_agent orchestrator",
        Some(root),
        SpanKind::Internal,
        t0 + MS,
        t0 + 59_999 * MS,
        &orch_attrs,
        None,
    );
    let agents = 49;
    let per_agent = (BIG_TRACE_SPANS - 2) / agents - 1;
    for a in 0..agents {
        let start = t0 + 10 * MS + a as u64 * 1_200 * MS;
        let name = format!("specialist-{a}");
        let attrs = [("gen_ai.operation.name", "invoke_agent"), ("gen_ai.agent.name", name.as_str())];
        let service = format!("agents-{}", a % 4);
        let agent = g.span(
            &service,
            &format!("invoke_agent {name}"),
            Some(orch),
            SpanKind::Internal,
            start,
            start + 1_150 * MS,
            &attrs,
            None,
        );
        for k in 0..per_agent {
            let at = start + MS + k as u64 * 5 * MS;
            let (name, attrs, tokens): (&str, &[(&str, &str)], _) = match k % 3 {
                0 => (
                    "chat gpt-4o-mini",
                    &[("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o-mini")],
                    Some((800, 120)),
                ),
                1 => (
                    "execute_tool search",
                    &[("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", "search")],
                    None,
                ),
                _ => ("retrieval docs", &[("gen_ai.operation.name", "retrieval")], None),
            };
            g.span(&service, name, Some(agent), SpanKind::Client, at, at + 4 * MS, attrs, tokens);
            if a == 7 && k == 31 {
                g.fail_last("tool returned HTTP 502");
            }
        }
    }
    while g.out.len() < BIG_TRACE_SPANS {
        let at = t0 + 59_000 * MS;
        g.span(
            "orchestrator",
            "chat gpt-4o",
            Some(orch),
            SpanKind::Client,
            at,
            at + 900 * MS,
            &[("gen_ai.operation.name", "chat")],
            None,
        );
    }
    (g.out, g.trace_id.to_string())
}

/// `count` small traces of five spans, one request's worth.
fn small_traces(first: u64, count: usize, t0: u64) -> ExportTraceServiceRequest {
    let mut out = Vec::new();
    for n in first..first + count as u64 {
        let mut g = Gen::new(0x5a, n, n << 8);
        let start = t0 + n * 10 * MS;
        let session = format!("s-{}", n / 4);
        let root = g.span(
            "gateway",
            "POST /chat",
            None,
            SpanKind::Server,
            start,
            start + 800 * MS,
            &[("session.id", &session)],
            None,
        );
        let agent_attrs = [("gen_ai.operation.name", "invoke_agent"), ("gen_ai.agent.name", "planner")];
        let agent = g.span(
            "planner",
            "invoke_agent planner",
            Some(root),
            SpanKind::Internal,
            start + MS,
            start + 790 * MS,
            &agent_attrs,
            None,
        );
        let chat = [("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o")];
        g.span(
            "planner",
            "chat gpt-4o",
            Some(agent),
            SpanKind::Client,
            start + 2 * MS,
            start + 400 * MS,
            &chat,
            Some((900, 100)),
        );
        let tool = [("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", "lookup")];
        g.span(
            "planner",
            "execute_tool lookup",
            Some(agent),
            SpanKind::Internal,
            start + 401 * MS,
            start + 500 * MS,
            &tool,
            None,
        );
        if n % 50 == 0 {
            g.fail_last("lookup failed");
        }
        g.span("planner", "chat gpt-4o", Some(agent), SpanKind::Client, start + 501 * MS, start + 780 * MS, &[], None);
        out.extend(g.out);
    }
    assert_eq!(out.len(), count * SPANS_PER_LIST_TRACE);
    Span::to_request(&out)
}

fn send(http: &reqwest::blocking::Client, endpoint: &str, request: &ExportTraceServiceRequest) {
    let response = http
        .post(format!("{endpoint}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .expect("collector answers");
    assert_eq!(response.status().as_u16(), 200, "export refused: {:?}", response.text());
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn time_get(http: &reqwest::blocking::Client, url: &str, runs: usize) -> (f64, usize) {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let response = http.get(url).send().unwrap();
        assert!(response.status().is_success(), "{url}: {}", response.status());
        bytes = response.bytes().unwrap().len();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    (median(times), bytes)
}

fn mark(browser: &Browser, name: &str) -> f64 {
    let script = "const m = performance.getEntriesByName(arguments[0]); return m.length ? m[0].startTime : null";
    browser.execute(script, json!([name])).as_f64().unwrap_or_else(|| panic!("no performance mark {name}"))
}

/// Opens `url` in a fresh page load, waits until the page says it is
/// `ready`, and returns the time from navigation to the performance `mark`.
fn open_page(browser: &Browser, url: &str, ready: &str, performance_mark: &str) -> f64 {
    browser.goto("about:blank");
    browser.goto(url);
    let script = format!("return document.body.dataset.ready === '{ready}'");
    browser.wait_for(url, &script, Duration::from_secs(120));
    mark(browser, performance_mark)
}

fn main() {
    let runs: usize = std::env::var("UI_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = dir.path().join("data");
    let any = "127.0.0.1:0".parse().unwrap();
    config.receivers.otlp.grpc_endpoint = None;
    config.receivers.otlp.http_endpoint = Some(any);
    config.api.endpoint = Some(any);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let collector = runtime.block_on(Collector::start(config)).expect("collector starts");
    let otlp = format!("http://{}", collector.http_addr.unwrap());
    let api = format!("http://{}", collector.api_addr.unwrap());
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;

    // 1. A 10,000-span trace.
    let (spans, big_id) = big_trace(now - 3 * 3_600_000_000_000);
    assert_eq!(spans.len(), BIG_TRACE_SPANS);
    for chunk in spans.chunks(2_000) {
        send(&http, &otlp, &Span::to_request(chunk));
    }
    let (api_ms, api_bytes) = time_get(&http, &format!("{api}/api/agentrace/traces/{big_id}"), runs);
    println!("10k-span trace: GET /api/agentrace/traces/{{id}} median {api_ms:.0} ms, {} KiB", api_bytes / 1024);
    let (lean_ms, lean_bytes) = time_get(&http, &format!("{api}/api/agentrace/traces/{big_id}?spans=false"), runs);
    println!("10k-span trace: the first piece, GET …?spans=false, median {lean_ms:.0} ms, {} KiB", lean_bytes / 1024);

    let browser = Browser::start();
    let mut interactive = Vec::new();
    let mut data = Vec::new();
    let mut scroll = Vec::new();
    let mut collapse = Vec::new();
    let mut details = Vec::new();
    for _ in 0..runs {
        interactive.push(open_page(&browser, &format!("{api}/#/trace/{big_id}"), "trace", "agentrace:interactive"));
        data.push(mark(&browser, "agentrace:data"));
        if std::env::var_os("UI_BENCH_VERBOSE").is_some() {
            let timing = browser.execute(
                "const r = performance.getEntriesByType('resource').find(e => e.name.includes('spans=false'));
                 const n = performance.getEntriesByType('navigation')[0];
                 return {domInteractive: n.domInteractive, fetchStart: r.fetchStart, requestStart: r.requestStart, responseStart: r.responseStart, responseEnd: r.responseEnd}",
                json!([]),
            );
            println!("  timing: {timing}");
        }
        browser.wait_for(
            "the spans' details",
            "return document.body.dataset.spans === 'loaded'",
            Duration::from_secs(120),
        );
        details.push(mark(&browser, "agentrace:spans"));
        if interactive.len() == 1 {
            browser.screenshot("bench-10k-trace");
        }
        let rows = browser.execute("return document.querySelectorAll('.wf-row').length", json!([])).as_u64().unwrap();
        assert!(rows < 200, "the waterfall is virtualised: {rows} rows in the DOM");
        // Scroll to the middle, then collapse the root: both redraw synchronously.
        let s = browser.execute(
            "const b = document.querySelector('.wf-body'); const t = performance.now();
             b.scrollTop = b.scrollHeight / 2; b.dispatchEvent(new Event('scroll')); return performance.now() - t",
            json!([]),
        );
        scroll.push(s.as_f64().unwrap());
        let c = browser.execute(
            "const b = document.querySelector('.wf-body'); b.scrollTop = 0; b.dispatchEvent(new Event('scroll'));
             const t = performance.now(); document.querySelector('.wf-row .toggle').click(); return performance.now() - t",
            json!([]),
        );
        collapse.push(c.as_f64().unwrap());
    }
    let interactive_ms = median(interactive.clone());
    println!(
        "10k-span trace in Chromium: interactive median {:.0} ms (runs {:?}); data in {:.0} ms; span details ready {:.0} ms; scroll redraw {:.1} ms; collapse {:.1} ms",
        interactive_ms,
        interactive.iter().map(|v| v.round()).collect::<Vec<_>>(),
        median(data),
        median(details),
        median(scroll),
        median(collapse)
    );
    // The goal (issue: the web UI people would rather live in): interactive
    // within a second. Run under `taskset -c 0` for "on one core".
    let goal_ms = 1_000.0;
    println!("goal: interactive within {goal_ms:.0} ms: {}", if interactive_ms <= goal_ms { "met" } else { "MISSED" });
    if std::env::var_os("UI_BENCH_TRACE_ONLY").is_some() {
        drop(browser);
        runtime.block_on(collector.shutdown());
        assert!(interactive_ms <= goal_ms, "a 10,000-span trace took {interactive_ms:.0} ms to become interactive");
        return;
    }

    // 2. 100,000 traces in the store.
    let started = Instant::now();
    let per_request = 1_000;
    for first in (0..LIST_TRACES as u64).step_by(per_request) {
        send(&http, &otlp, &small_traces(first, per_request, now - 7_200_000_000_000));
    }
    println!(
        "stored {LIST_TRACES} traces ({} spans) in {:.1} s",
        LIST_TRACES * SPANS_PER_LIST_TRACE,
        started.elapsed().as_secs_f64()
    );
    // Check the store really holds them before timing anything.
    let metrics = http.get(format!("{api}/metrics")).send().unwrap().text().unwrap();
    let accepted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("agentrace_receiver_spans_accepted_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(accepted as usize, BIG_TRACE_SPANS + LIST_TRACES * SPANS_PER_LIST_TRACE, "spans accepted");
    let first: serde_json::Value =
        http.get(format!("{api}/api/agentrace/traces?limit=1")).send().unwrap().json().unwrap();
    let newest = format!("{:016x}", LIST_TRACES - 1);
    assert!(first["traces"][0]["trace_id"].as_str().unwrap().ends_with(&newest), "newest first: {first}");
    let last_session: serde_json::Value =
        http.get(format!("{api}/api/v3/sessions/s-0/traces")).send().unwrap().json().unwrap();
    assert_eq!(last_session["traces"].as_array().unwrap().len(), 4, "the oldest traces are still stored");
    for query in ["", "service=planner", "errors=true", "q=lookup", "session=s-12345", "findings=true", "agent=planner"]
    {
        let (ms, _) = time_get(&http, &format!("{api}/api/agentrace/traces?limit=50&{query}"), runs);
        println!("100k traces: GET /api/agentrace/traces?limit=50&{query} median {ms:.0} ms");
    }
    let small = format!("{}{:016x}", "5a".repeat(8), LIST_TRACES / 2);
    let (ms, _) = time_get(&http, &format!("{api}/api/agentrace/traces/{small}"), runs);
    println!("100k traces: GET /api/agentrace/traces/{{id}} of a 5-span trace (session of 4) median {ms:.0} ms");
    let (ms, _) = time_get(&http, &format!("{api}/api/agentrace/sessions/s-12345"), runs);
    println!("100k traces: GET /api/agentrace/sessions/{{id}} (4 traces) median {ms:.0} ms");
    let list: Vec<f64> =
        (0..runs).map(|_| open_page(&browser, &format!("{api}/#/"), "list", "agentrace:list")).collect();
    browser.screenshot("bench-100k-list");
    println!("100k traces: trace list drawn in Chromium, median {:.0} ms", median(list));
    drop(browser);
    runtime.block_on(collector.shutdown());
}
