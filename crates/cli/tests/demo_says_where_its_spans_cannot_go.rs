//! Claim: `agentrace demo` sends where the standard OpenTelemetry variables
//! say, and never reports success for spans that went nowhere: aimed at an
//! OTLP/gRPC port, or told to speak a protocol it does not, it fails with a
//! message that says what to give instead; spans the collector refuses
//! mid-run make it fail too. Its closing text names the session that shows
//! each fault.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support;

use support::demo;

fn demo_cmd(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentrace"));
    cmd.arg("demo").args(args);
    for var in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_HEADERS"] {
        cmd.env_remove(var);
    }
    let out = cmd.envs(env.iter().copied()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_follows_otel_variables_and_refuses_an_endpoint_that_would_lose_its_spans() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start([std::ffi::OsStr::new("--data-dir"), dir.path().as_os_str()]);

    // The gRPC port: refused before any request runs, with what to give instead.
    let grpc = format!("http://{}", server.grpc);
    let (ok, _, stderr) = demo_cmd(&["--endpoint", &grpc, "--requests", "1"], &[]);
    assert!(!ok, "the demo claimed success against the gRPC port");
    assert!(stderr.contains("OTLP/HTTP address (port 4318 by default)"), "{stderr}");

    // A protocol it does not speak.
    let (ok, _, stderr) = demo_cmd(
        &["--requests", "1"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &server.http), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
    assert!(!ok);
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), "{stderr}");

    // The endpoint from OTEL_EXPORTER_OTLP_ENDPOINT alone: the spans arrive.
    let prefix = demo::prefix("env");
    let (ok, stdout, stderr) = demo_cmd(
        &["--requests", "3", "--session-prefix", &prefix, "--ui", &server.api],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &server.http), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    );
    assert!(ok, "{stdout}\n{stderr}");
    // Each fault is pointed at the session that shows it.
    for (n, fault) in [(1, "could not parse `search_hotels`"), (2, "waited"), (3, "rate-limited")] {
        assert!(stdout.contains(&format!("in session {prefix}-{n}, the")), "{n}: {stdout}");
        assert!(stdout.contains(fault), "{fault}: {stdout}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while demo::session_spans(&server, &format!("{prefix}-1")).is_empty() {
        assert!(Instant::now() < deadline, "no span of {prefix}-1 reached the collector named by the variable");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The signal's own variable, the whole URL, winning over a generic one that leads nowhere,
    // with gzip-compressed bodies: the spans arrive.
    let prefix = demo::prefix("traces-env");
    let traces = format!("{}/v1/traces", server.http);
    let (ok, stdout, stderr) = demo_cmd(
        &["--requests", "1", "--session-prefix", &prefix, "--ui", &server.api],
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "20000"),
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while demo::session_spans(&server, &format!("{prefix}-1")).is_empty() {
        assert!(Instant::now() < deadline, "no span of {prefix}-1 reached the collector named by the variable");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn spans_the_collector_refuses_make_the_demo_fail() {
    // A real collector that takes an empty export (the demo's check) but
    // refuses every real batch as too large (413).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentrace.yaml");
    std::fs::write(&config, "receivers:\n  otlp:\n    max_request_bytes: 64\n").unwrap();
    let server = support::start([
        std::ffi::OsStr::new("--config"),
        config.as_os_str(),
        std::ffi::OsStr::new("--data-dir"),
        dir.path().join("data").as_os_str(),
    ]);
    let (ok, stdout, stderr) = demo_cmd(&["--endpoint", &server.http, "--requests", "1"], &[]);
    assert!(!ok, "the demo claimed success though every batch was refused:\n{stdout}");
    assert!(stderr.contains("did not reach") && stderr.contains("incomplete picture"), "{stderr}");
}
