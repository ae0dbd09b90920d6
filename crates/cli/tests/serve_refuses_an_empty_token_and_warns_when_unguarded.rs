//! Claim: an operator's auth mistakes are said out loud. An empty bearer
//! token (in the config or the environment) stops `agentrace serve` with a
//! configuration error instead of quietly turning authentication off, and a
//! listener reachable beyond this machine with neither a token nor TLS is
//! warned about at start-up.

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

#[test]
fn a_listener_open_to_the_network_without_token_or_tls_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve(dir.path(), &["--otlp-http-addr", "0.0.0.0:0"], &[]).stderr(Stdio::piped()).spawn().unwrap();
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
    let warnings: Vec<&String> = seen.iter().filter(|l| l.contains("listening beyond this machine")).collect();
    assert_eq!(warnings.len(), 1, "one warning, for the OTLP/HTTP listener only:\n{}", seen.join("\n"));
    assert!(warnings[0].contains("OTLP/HTTP"), "{}", warnings[0]);
}
