//! Claim: `kill -9` of `agentrace serve` at any moment loses nothing it
//! acknowledged, neither from its store nor from its export queue. Senders
//! stream OTLP/HTTP requests from several threads; the server, exporting to
//! a backend that is down, is killed mid-stream, restarted on the same data
//! directory, and every trace that got a 200 must come back whole. Three
//! rounds, each killed at a different moment. Then the backend (a second
//! agentrace) comes up, and every acknowledged trace must reach it whole.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support;

const SPANS_PER_REQUEST: usize = 50;

fn start(data_dir: &std::path::Path, backend: &str) -> support::Server {
    support::start([
        std::ffi::OsStr::new("--data-dir"),
        data_dir.as_os_str(),
        "--export-otlp-endpoint".as_ref(),
        backend.as_ref(),
        "--export-otlp-protocol".as_ref(),
        "grpc".as_ref(),
        "--trace-timeout".as_ref(),
        "200ms".as_ref(),
    ])
}

#[test]
fn kill_9_mid_stream_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // The backend's port is held from here until the backend starts: bound but not listening, so
    // the exporter is refused as by a backend that is down, and no other test's server (ports
    // picked by the kernel, in parallel) can take it in the minute the rounds last.
    let hold = tokio::net::TcpSocket::new_v4().unwrap();
    hold.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let backend_addr = hold.local_addr().unwrap();
    let backend_url = format!("http://{backend_addr}");
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(1));
    for (round, kill_after_ms) in [(0, 300), (1, 900), (2, 50)] {
        let mut server = start(dir.path(), &backend_url);
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let (url, stop, next, acked) =
                    (format!("{}/v1/traces", server.http), stop.clone(), next.clone(), acked.clone());
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        let trace = next.fetch_add(1, Ordering::Relaxed);
                        let sent = client
                            .post(&url)
                            .header("content-type", "application/x-protobuf")
                            .body(support::crash_request(trace, 1, SPANS_PER_REQUEST))
                            .send();
                        match sent {
                            Ok(r) if r.status() == 200 => acked.lock().unwrap().push(trace),
                            Ok(r) => panic!("unexpected status {} before the kill", r.status()),
                            Err(_) => break, // the server is gone
                        }
                    }
                })
            })
            .collect();
        // Enough acknowledged to prove something (a busy machine starts
        // slowly), then a kill at a different moment each round.
        support::wait_until_acknowledged(&acked, 10 * (round + 1) + 1);
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        drop(server);
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
        let acknowledged = acked.lock().unwrap().clone();
        assert!(acknowledged.len() > 10 * (round + 1), "round {round}: too few requests went through to prove much");

        // Restart on the same data and check every acknowledged trace.
        let server = start(dir.path(), &backend_url);
        support::assert_whole(&server.api, &acknowledged, 1, SPANS_PER_REQUEST, &format!("round {round}"));
    }

    // The backend comes up; the queue drains into it.
    let backend_dir = tempfile::tempdir().unwrap();
    drop(hold);
    let backend = support::start([
        "--data-dir".as_ref(),
        backend_dir.path().as_os_str(),
        "--otlp-grpc-addr".as_ref(),
        std::ffi::OsStr::new(&backend_addr.to_string()),
    ]);
    let server = start(dir.path(), &backend_url);
    let acknowledged = acked.lock().unwrap().clone();
    let last = support::crash_trace_hex(*acknowledged.iter().max().unwrap(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let client = reqwest::blocking::Client::new();
    while client.get(format!("{}/api/v3/traces/{last}", backend.api)).send().unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "the export queue did not drain into the backend");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Wait for the queue to empty, then every trace must be whole at the backend.
    let queued = |api: &str| -> f64 {
        let text = client.get(format!("{api}/metrics")).send().unwrap().text().unwrap();
        text.lines()
            .filter(|l| l.starts_with("agentrace_exporter_queue_spans{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    while queued(&server.api) > 0.0 {
        assert!(std::time::Instant::now() < deadline, "the export queue did not drain into the backend");
        std::thread::sleep(Duration::from_millis(200));
    }
    support::assert_whole(&backend.api, &acknowledged, 1, SPANS_PER_REQUEST, "backend");
}
