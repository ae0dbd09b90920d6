//! Running `agentrace demo` against a test's collector, and reading back what the doctor says.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Server;

/// Runs the real `agentrace demo` against `server` with `args` added, sessions named
/// `PREFIX-1`, `PREFIX-2`, …; returns its standard output. Panics (failing the test) if it fails.
pub fn run(server: &Server, prefix: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agentrace"))
        .args(["demo", "--endpoint", &server.http, "--ui", &server.api, "--session-prefix", prefix])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "agentrace demo {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One span as the API returns it, reduced to what the tests look at.
#[derive(Debug, Clone)]
pub struct SpanRow {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub service: String,
    /// The span's attributes, as OTLP JSON.
    pub attributes: Value,
}

impl SpanRow {
    /// A string attribute.
    pub fn attr(&self, key: &str) -> Option<String> {
        text_attr(&self.attributes, key)
    }
}

fn text_attr(attrs: &Value, key: &str) -> Option<String> {
    attrs.as_array()?.iter().find(|a| a["key"] == key)?["value"]["stringValue"].as_str().map(str::to_owned)
}

/// Every span of `session`, as the collector's session endpoint returns them.
pub fn session_spans(server: &Server, session: &str) -> Vec<SpanRow> {
    let url = format!("{}/api/v3/sessions/{session}/spans", server.api);
    let Ok(response) = reqwest::blocking::get(&url) else { return Vec::new() };
    if !response.status().is_success() {
        return Vec::new();
    }
    let doc: Value = response.json().unwrap_or(Value::Null);
    let doc = doc.get("result").unwrap_or(&doc);
    let mut rows = Vec::new();
    for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
        let service = text_attr(&rs["resource"]["attributes"], "service.name").unwrap_or_default();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                rows.push(SpanRow {
                    trace_id: s["traceId"].as_str().unwrap_or_default().to_owned(),
                    span_id: s["spanId"].as_str().unwrap_or_default().to_owned(),
                    parent_span_id: s["parentSpanId"].as_str().unwrap_or_default().to_owned(),
                    name: s["name"].as_str().unwrap_or_default().to_owned(),
                    service: service.clone(),
                    attributes: s["attributes"].clone(),
                });
            }
        }
    }
    rows
}

/// Waits until the spans of `session` stop arriving (the demo has exited, so everything it sent
/// is acknowledged; the query side may see it a moment later) and returns them.
pub fn settled_spans(server: &Server, session: &str) -> Vec<SpanRow> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut stable) = (0, 0);
    loop {
        let spans = session_spans(server, session);
        if !spans.is_empty() && spans.len() == last {
            stable += 1;
            if stable == 3 {
                return spans;
            }
        } else {
            stable = 0;
        }
        last = spans.len();
        assert!(Instant::now() < deadline, "the spans of {session} never settled (last count {last})");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until the spans of `session` number at least `count` (a backend receives a
/// collector's exports in batches, as its traces close) and returns them.
pub fn at_least(server: &Server, session: &str, count: usize) -> Vec<SpanRow> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = session_spans(server, session);
        if spans.len() >= count {
            return spans;
        }
        assert!(Instant::now() < deadline, "{session}: {} of {count} spans after 30 s", spans.len());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `agentrace doctor --server … --session SESSION --format json`, after the spans settled.
pub fn doctor(server: &Server, session: &str) -> Value {
    settled_spans(server, session);
    let out = Command::new(env!("CARGO_BIN_EXE_agentrace"))
        .args(["doctor", "--server", &server.api, "--session", session, "--format", "json"])
        .output()
        .unwrap();
    // 0: healthy, 3: findings, 4: a request failed; anything else is the doctor failing.
    assert!(
        matches!(out.status.code(), Some(0 | 3 | 4)),
        "doctor failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The findings of `kind`.
pub fn findings<'a>(diagnosis: &'a Value, kind: &str) -> Vec<&'a Value> {
    diagnosis["findings"].as_array().into_iter().flatten().filter(|f| f["kind"] == kind).collect()
}

/// The finding kinds present.
/// The kinds of broken propagation found. `timing_gap` is left out: a
/// gap says where time went, and a loaded machine can stretch any span
/// past the threshold, so no claim about broken hops may depend on it.
pub fn kinds(diagnosis: &Value) -> BTreeSet<String> {
    diagnosis["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["kind"].as_str().map(str::to_owned))
        .filter(|k| k != "timing_gap")
        .collect()
}

/// The repair of the span `span_id`.
pub fn repair_of<'a>(diagnosis: &'a Value, span_id: &str) -> &'a Value {
    diagnosis["repairs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["span_id"] == span_id)
        .unwrap_or_else(|| panic!("no repair for span {span_id}: {:#}", diagnosis["repairs"]))
}

/// The kinds that say propagation broke somewhere.
pub const PROPAGATION_KINDS: [&str; 5] =
    ["orphan_root", "trace_discontinuity", "tool_root", "missing_parent", "lost_context"];

/// A unique session prefix for one test run, so a rerun against a kept data dir cannot mix.
pub fn prefix(tag: &str) -> String {
    format!("{tag}-{}", std::process::id())
}
