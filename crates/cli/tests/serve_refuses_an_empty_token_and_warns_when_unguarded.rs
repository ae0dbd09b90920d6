//! Claim: an operator's auth mistakes are said out loud. An empty bearer
//! token (in the config or the environment) stops `agentrace serve` with a
//! configuration error instead of quietly turning authentication off, and a
//! listener reachable beyond this machine with neither a token nor TLS is
//! warned about at start-up. Those warnings reach a log file as plain text
//! (no terminal colour codes), or as JSON lines with `--log-format json`,
//! and `RUST_LOG` filters them when `AGENTRACE_LOG` is not set. With no
//! exporter configured, `OTEL_EXPORTER_OTLP_*` names the backend to forward
//! to, as for any OTLP client, but never the collector's own receiver. Its
//! own spans go where `telemetry.traces.endpoint` says, and not into its own
//! pipeline unless asked; its own metrics, what `/metrics` says, go over OTLP
//! to a metrics backend (a receiver built on the official OpenTelemetry
//! Python protobuf package).

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentrace"));
    cmd.arg("serve")
        .args(["--data-dir", dir.join("data").to_str().unwrap()])
        .args(["--otlp-grpc-addr", "127.0.0.1:0", "--ui-addr", "127.0.0.1:0"])
        .args(extra)
        .env_remove("AGENTRACE_BEARER_TOKEN")
        .env_remove("AGENTRACE_LOG")
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .envs(env.iter().copied());
    cmd
}

#[test]
fn an_empty_token_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentrace.yaml");
    std::fs::write(&config, "auth:\n  bearer_token: ''\n").unwrap();
    let out = serve(dir.path(), &["--config", config.to_str().unwrap(), "--otlp-http-addr", "127.0.0.1:0"], &[])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served with an empty token: {stderr}");
    assert!(stderr.contains("auth.bearer_token is empty"), "{stderr}");

    let out =
        serve(dir.path(), &["--otlp-http-addr", "127.0.0.1:0"], &[("AGENTRACE_BEARER_TOKEN", " ")]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served with an empty token: {stderr}");
    assert!(stderr.contains("AGENTRACE_BEARER_TOKEN is set but empty"), "{stderr}");
}

/// What `serve` wrote to stderr (a pipe, as a log file or a shipper sees
/// it) until it said it was running.
fn start_up_lines(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut args = vec!["--otlp-http-addr", "0.0.0.0:0"];
    args.extend_from_slice(extra);
    let mut child = serve(dir, &args, env).stderr(Stdio::piped()).spawn().unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let started = line.contains("agentrace collector running");
        seen.push(line);
        if started || Instant::now() > deadline {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

#[test]
fn a_listener_open_to_the_network_without_token_or_tls_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let seen = start_up_lines(dir.path(), &[], &[]);
    let warnings: Vec<&String> = seen.iter().filter(|l| l.contains("listening beyond this machine")).collect();
    assert_eq!(warnings.len(), 1, "one warning, for the OTLP/HTTP listener only:\n{}", seen.join("\n"));
    assert!(warnings[0].contains("OTLP/HTTP"), "{}", warnings[0]);
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(!seen.iter().any(|l| l.contains('\x1b')), "colour codes in a pipe:\n{}", seen.join("\n"));
}

#[test]
fn logs_are_json_lines_when_asked_and_rust_log_filters_them() {
    let dir = tempfile::tempdir().unwrap();
    let seen = start_up_lines(dir.path(), &["--log-format", "json"], &[]);
    let logs: Vec<serde_json::Value> = seen
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let warning = logs
        .iter()
        .find(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("listening beyond this machine")))
        .unwrap_or_else(|| panic!("no JSON warning:\n{}", seen.join("\n")));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["fields"]["what"], "OTLP/HTTP");
    assert!(warning["timestamp"].is_string(), "{warning}");

    // RUST_LOG, when AGENTRACE_LOG is not set, decides what is written.
    let quiet = start_up_lines(dir.path(), &[], &[("RUST_LOG", "error")]);
    assert!(!quiet.iter().any(|l| l.contains("listening beyond")), "{}", quiet.join("\n"));
    // AGENTRACE_LOG wins over RUST_LOG.
    let loud = start_up_lines(dir.path(), &[], &[("RUST_LOG", "error"), ("AGENTRACE_LOG", "warn")]);
    assert!(loud.iter().any(|l| l.contains("listening beyond")), "{}", loud.join("\n"));
}

#[test]
fn the_otel_environment_names_a_backend_but_never_the_collector_itself() {
    let backend = support::start([std::ffi::OsStr::new("--data-dir"), tempfile::tempdir().unwrap().path().as_os_str()]);
    let dir = tempfile::tempdir().unwrap();
    let mut child =
        serve(dir.path(), &["--otlp-http-addr", "127.0.0.1:0"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &backend.http)])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut http = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let ["OTLP/HTTP", addr, ..] = line.split_whitespace().collect::<Vec<_>>().as_slice() {
            http = Some(format!("http://{addr}"));
        }
        if line.contains("UI + API") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"env-test"}}}}]}},
        "scopeSpans":[{{"spans":[{{"traceId":"{trace_id}","spanId":"00f067aa0ba902b7","name":"hello","kind":2,
        "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}}]}}]}}]}}"#
    );
    let client = reqwest::blocking::Client::new();
    let sent = client
        .post(format!("{}/v1/traces", http.expect("the OTLP/HTTP address")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(sent.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = client.get(format!("{}/api/v3/traces/{trace_id}", backend.api)).send().unwrap();
        if got.status().as_u16() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the span never reached the backend OTEL_EXPORTER_OTLP_ENDPOINT names");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();

    // Pointed at its own receiver: warned about and not used.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let own = format!("127.0.0.1:{port}");
    let url = format!("http://localhost:{port}");
    let mut child = serve(dir.path(), &["--otlp-http-addr", &own], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &url)])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let started = line.contains("agentrace collector running");
        seen.push(line);
        if started {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|l| l.contains("names this collector's own OTLP/HTTP receiver: not used as an exporter")),
        "{}",
        seen.join("\n")
    );
}

#[test]
fn the_collector_traces_itself_to_another_backend_and_not_into_itself_unless_asked() {
    let backend = support::start([std::ffi::OsStr::new("--data-dir"), tempfile::tempdir().unwrap().path().as_os_str()]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentrace.yaml");
    std::fs::write(&config, format!("telemetry:\n  traces:\n    endpoint: {}\n", backend.http)).unwrap();
    let server = support::start([
        std::ffi::OsStr::new("--data-dir"),
        dir.path().join("data").as_os_str(),
        std::ffi::OsStr::new("--config"),
        config.as_os_str(),
    ]);
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"app"}}]},
        "scopeSpans":[{"spans":[{"traceId":"5bf92f3577b34da6a3ce929d0e0e4736","spanId":"10f067aa0ba902b7","name":"hi",
        "kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}"#;
    let client = reqwest::blocking::Client::new();
    let sent =
        client.post(format!("{}/v1/traces", server.http)).header("content-type", "application/json").body(body).send();
    assert_eq!(sent.unwrap().status().as_u16(), 200);
    // The batch processor sends within its delay (5 s by default).
    let deadline = Instant::now() + Duration::from_secs(60);
    let operations = loop {
        let got: serde_json::Value =
            client.get(format!("{}/api/v3/operations?service=agentrace", backend.api)).send().unwrap().json().unwrap();
        let names: Vec<String> = got["operations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| o["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        if names.iter().any(|n| n == "receive") && names.iter().any(|n| n == "store.commit") {
            break names;
        }
        assert!(Instant::now() < deadline, "the collector's own spans never arrived: {got}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        operations.iter().all(|n| ["receive", "store.commit", "pipeline.close", "export"].contains(&n.as_str())),
        "{operations:?}"
    );
    let services: serde_json::Value =
        client.get(format!("{}/api/v3/services", backend.api)).send().unwrap().json().unwrap();
    assert_eq!(services["services"], serde_json::json!(["agentrace"]), "only its own spans, not the app's");

    // Its own receiver is refused, with what to do instead.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&config, format!("telemetry:\n  traces:\n    endpoint: http://127.0.0.1:{port}\n")).unwrap();
    let out = serve(
        dir.path(),
        &["--config", config.to_str().unwrap(), "--otlp-http-addr", &format!("127.0.0.1:{port}")],
        &[],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("into_own_pipeline"), "{stderr}");
}

#[test]
fn the_collector_sends_its_own_metrics_over_otlp() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(python.exists(), "{} not found: run scripts/test.sh", python.display());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/otlp_metrics_backend.py");
    let mut backend = std::process::Command::new(python).arg(script).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(backend.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    let port = ready.strip_prefix("ready ").expect("the backend says its port").to_owned();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentrace.yaml");
    std::fs::write(
        &config,
        format!("telemetry:\n  metrics:\n    endpoint: http://127.0.0.1:{port}\n    interval: 200ms\n"),
    )
    .unwrap();
    let server = support::start([
        std::ffi::OsStr::new("--data-dir"),
        dir.path().join("data").as_os_str(),
        std::ffi::OsStr::new("--config"),
        config.as_os_str(),
    ]);
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"app"}}]},
        "scopeSpans":[{"spans":[{"traceId":"6bf92f3577b34da6a3ce929d0e0e4736","spanId":"20f067aa0ba902b7","name":"hi",
        "kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}"#;
    let sent = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", server.http))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(sent.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    let point = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let point = rx.recv_timeout(left).expect("the accepted span is counted in the metrics sent");
        if point["metric"] == "otelcol_receiver_accepted_spans"
            && point["attributes"]["transport"] == "http"
            && point["value"].as_f64() == Some(1.0)
        {
            break point;
        }
    };
    let _ = backend.kill();
    let _ = backend.wait();
    assert_eq!(point["service"], "agentrace");
    assert_eq!(point["attributes"]["receiver"], "otlp");
    assert_eq!(point["monotonic"], true, "a counter is a monotonic sum");
}
