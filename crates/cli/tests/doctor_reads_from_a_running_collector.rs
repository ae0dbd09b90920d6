//! Claim: `agentrace doctor --server` reads what the real collector stored
//! and reports exactly what `agentrace doctor FILE` reports for the same
//! spans: the same findings and the same repairs, by session and by trace
//! (a trace ID names the connected request that holds it).
//!
//! The real binary serves on ephemeral ports; two of the doctor's committed
//! fixtures are sent to it over OTLP/HTTP JSON, unchanged: a broken
//! multi-agent flow whose callee started a new trace (joined back by the
//! session heuristic), and a trace whose parent span never arrived.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;

use support::Server;

/// Both traces of this fixture carry `session.id = sess-h`, so the
/// session endpoint returns all of its spans.
const SESSION_FIXTURE: &str = "broken_http_heuristic.json";
const SESSION: &str = "sess-h";
/// One trace, whose spans name a parent that never arrived.
const TRACE_FIXTURE: &str = "broken_missing_parent.json";

fn start(data_dir: &Path) -> Server {
    // The fixtures' spans are from January 2026: the default retention
    // (7 days) could delete them before the doctor reads them.
    let config = data_dir.join("agentrace.yaml");
    std::fs::write(&config, "storage:\n  retention:\n    max_age: null\n").unwrap();
    support::start([
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--data-dir"),
        data_dir.join("data").as_os_str(),
    ])
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../doctor/tests/fixtures").join(name)
}

/// The spans of an OTLP JSON document (`{"resourceSpans": …}`, or the
/// API's `{"result": {"resourceSpans": …}}`).
fn span_count(doc: &Value) -> usize {
    let doc = doc.get("result").unwrap_or(doc);
    doc["resourceSpans"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rs| rs["scopeSpans"].as_array().into_iter().flatten())
        .map(|ss| ss["spans"].as_array().map_or(0, Vec::len))
        .sum()
}

fn post(server: &Server, name: &str) -> usize {
    let body = std::fs::read(fixture(name)).unwrap();
    let spans = span_count(&serde_json::from_slice(&body).unwrap());
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", server.http))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert!(response.status().is_success(), "POST {name}: {}", response.status());
    spans
}

/// Waits until the API returns all `expected` spans: an acknowledged
/// request is durable, but may reach the query side a moment later.
fn wait_for(server: &Server, path: &str, expected: usize) {
    let url = format!("{}{path}", server.api);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = reqwest::blocking::get(&url)
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.json::<Value>().ok())
            .map_or(0, |doc| span_count(&doc));
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "GET {url}: {got} of {expected} spans after 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `agentrace doctor ARGS --format json` and parses its report. Exit
/// status 3 means findings, which these broken flows must have.
fn doctor(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_agentrace"))
        .arg("doctor")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "doctor {args:?} reports findings; stderr: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("doctor {args:?} prints JSON: {e}; {stderr}"))
}

fn kinds(report: &Value) -> Vec<&str> {
    report["findings"].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap()).collect()
}

#[test]
fn doctor_on_a_running_collector_reports_what_it_reports_on_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let session_spans = post(&server, SESSION_FIXTURE);
    let trace_spans = post(&server, TRACE_FIXTURE);

    // By session: every trace of the session, joined back together.
    wait_for(&server, &format!("/api/v3/sessions/{SESSION}/spans"), session_spans);
    let from_file = doctor(&[fixture(SESSION_FIXTURE).to_str().unwrap()]);
    let from_server = doctor(&["--server", &server.api, "--session", SESSION]);
    assert!(kinds(&from_file).contains(&"orphan_root"), "the fixture is broken: {:?}", kinds(&from_file));
    let repairs = from_file["repairs"].as_array().unwrap();
    assert!(repairs.iter().any(|r| r["applied"] == true), "the fixture's orphan is joined back: {repairs:?}");
    assert_eq!(from_server["findings"], from_file["findings"]);
    assert_eq!(from_server["repairs"], from_file["repairs"]);
    assert_eq!(from_server["summary"]["spans"], session_spans);

    // By trace, naming either arrived piece of the broken request (the
    // orchestrator's trace, or the callee's that lost its context): the
    // answer is the joined request's, as the file doctor gives it, not
    // "nothing broke" for the piece.
    let requests = from_file["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "the session fixture is one request, joined: {requests:?}");
    let pieces = requests[0]["original_traces"].as_array().unwrap();
    assert_eq!(pieces.len(), 2);
    for piece in pieces {
        let from_server = doctor(&["--server", &server.api, "--trace", piece.as_str().unwrap()]);
        assert_eq!(from_server["findings"], from_file["findings"], "--trace {piece}");
        assert_eq!(from_server["repairs"], from_file["repairs"], "--trace {piece}");
        assert_eq!(from_server["requests"][0]["original_traces"], requests[0]["original_traces"]);
    }

    // By trace: a trace alone, whose span names a parent that never arrived.
    let file: Value = serde_json::from_slice(&std::fs::read(fixture(TRACE_FIXTURE)).unwrap()).unwrap();
    let trace_id = file["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"].as_str().unwrap().to_owned();
    wait_for(&server, &format!("/api/v3/traces/{trace_id}"), trace_spans);
    let from_file = doctor(&[fixture(TRACE_FIXTURE).to_str().unwrap()]);
    let from_server = doctor(&["--server", &server.api, "--trace", &trace_id]);
    assert!(kinds(&from_file).contains(&"missing_parent"), "the fixture is broken: {:?}", kinds(&from_file));
    assert_eq!(from_server["findings"], from_file["findings"]);
    assert_eq!(from_server["repairs"], from_file["repairs"]);
    assert_eq!(from_server["summary"]["spans"], trace_spans);
}

/// Runs `agentrace doctor ARGS` with `env`; returns its exit code and stderr.
fn doctor_fails(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_agentrace"))
        .arg("doctor")
        .args(args)
        .env_remove("AGENTRACE_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn doctor_on_a_guarded_collector_takes_its_token_and_says_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentrace.yaml");
    std::fs::write(&config, "storage:\n  retention:\n    max_age: null\nauth:\n  bearer_token: t0ken-for-the-doctor\n")
        .unwrap();
    let server = support::start([
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--data-dir"),
        dir.path().join("data").as_os_str(),
    ]);
    let body = std::fs::read(fixture(SESSION_FIXTURE)).unwrap();
    let spans = span_count(&serde_json::from_slice(&body).unwrap());
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", server.http))
        .bearer_auth("t0ken-for-the-doctor")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());

    // No token: exit 1 (the server could not be read), saying how to give it.
    let (code, stderr) = doctor_fails(&["--server", &server.api, "--session", SESSION], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("wants its bearer token (401") && stderr.contains("--token"), "{stderr}");
    // A wrong one is named as refused.
    let (code, stderr) = doctor_fails(&["--server", &server.api, "--session", SESSION, "--token", "nope"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("refused the one given"), "{stderr}");

    // The token from the environment, and the address as a bare host:port.
    let bare = server.api.trim_start_matches("http://");
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let output = Command::new(env!("CARGO_BIN_EXE_agentrace"))
            .args(["doctor", "--server", bare, "--session", SESSION, "--format", "json"])
            .env("AGENTRACE_TOKEN", "t0ken-for-the-doctor")
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if output.status.code() == Some(3) && report["summary"]["spans"] == spans {
            break report;
        }
        assert!(Instant::now() < deadline, "{}: {}", output.status, String::from_utf8_lossy(&output.stderr));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(kinds(&report).contains(&"orphan_root"));

    // Aimed at the OTLP/HTTP receiver instead of the API (the token is the same): said so.
    let (code, stderr) =
        doctor_fails(&["--server", &server.http, "--session", SESSION], &[("AGENTRACE_TOKEN", "t0ken-for-the-doctor")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no agentrace API"), "{stderr}");
}
