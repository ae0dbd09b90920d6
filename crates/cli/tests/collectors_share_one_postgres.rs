//! Claim: several `agentrace serve` processes over one PostgreSQL database
//! (`--postgres-url`) are one collector to their users. A hand-off whose
//! producer reached one collector and whose orphaned consumer reached
//! another is connected exactly as one collector that got both connects it:
//! the same row in the request list (written by the live pipelines) and the
//! same connected trace (diagnosed on read); every collector answers every
//! read alike; `kill -9` of one mid-stream loses nothing it acknowledged;
//! and their exporters send each queued batch once, those of a collector
//! that died included.
//!
//! Needs the PostgreSQL server of `scripts/services.sh start`
//! (`AGENTRACE_POSTGRES_URL`); the README's test command starts it and runs
//! this test, which plain `cargo test` leaves out (ignored).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use serde_json::Value;

use crate::support;

/// A database of its own on the test server, dropped afterwards.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    fn create(tag: &str) -> Database {
        let server = std::env::var("AGENTRACE_POSTGRES_URL").unwrap_or_else(|_| {
            panic!("AGENTRACE_POSTGRES_URL is not set: run `scripts/services.sh start && eval \"$(scripts/services.sh env)\"` first")
        });
        let name = format!("{tag}_{}", std::process::id());
        let mut client =
            postgres::Client::connect(&server, postgres::NoTls).expect("the test PostgreSQL server answers");
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = server.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
        Database { url: format!("{base}/{name}"), server, name }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn on_postgres(db: &Database) -> support::Server {
    on_postgres_with(db, &[])
}

/// A collector on the shared database (its data directory holds nothing).
fn on_postgres_with(db: &Database, extra: &[&str]) -> support::Server {
    let dir = tempfile::tempdir().unwrap();
    let mut args =
        vec!["--postgres-url", &db.url, "--data-dir", dir.path().to_str().unwrap(), "--trace-timeout", "200ms"];
    args.extend_from_slice(extra);
    support::start(args)
}

/// A counter or gauge of a collector's `/metrics`, summed over its labels.
fn metric(api: &str, name: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{api}/metrics")).unwrap().text().unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn get(url: &str) -> (u16, Value) {
    let r = reqwest::blocking::get(url).unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fixture of the doctor's corpus, made with the real OpenTelemetry Python SDK.
fn fixture(name: &str) -> ExportTraceServiceRequest {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../doctor/tests/fixtures").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    agentrace_model::otlp::decode_json(&bytes, &Default::default()).unwrap().request
}

/// The fixture cut by trace, in the order of each trace's first start: the
/// producer's side of the hand-off first.
fn by_trace(request: &ExportTraceServiceRequest) -> Vec<(String, ExportTraceServiceRequest)> {
    let mut traces: BTreeMap<Vec<u8>, (u64, ExportTraceServiceRequest)> = BTreeMap::new();
    for rs in &request.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let (first, part) = traces.entry(span.trace_id.clone()).or_insert((u64::MAX, Default::default()));
                *first = (*first).min(span.start_time_unix_nano);
                let shell = ResourceSpans { scope_spans: vec![], ..rs.clone() };
                let ri = match part.resource_spans.iter().position(|r| r.resource == shell.resource) {
                    Some(i) => i,
                    None => {
                        part.resource_spans.push(shell);
                        part.resource_spans.len() - 1
                    }
                };
                let scope = ScopeSpans { spans: vec![], ..ss.clone() };
                let list = &mut part.resource_spans[ri].scope_spans;
                let si = match list.iter().position(|s| s.scope == scope.scope) {
                    Some(i) => i,
                    None => {
                        list.push(scope);
                        list.len() - 1
                    }
                };
                list[si].spans.push(span.clone());
            }
        }
    }
    let mut out: Vec<(u64, String, ExportTraceServiceRequest)> =
        traces.into_iter().map(|(id, (first, part))| (first, hex(&id), part)).collect();
    out.sort_by_key(|(first, id, _)| (*first, id.clone()));
    out.into_iter().map(|(_, id, part)| (id, part)).collect()
}

fn send(server: &support::Server, request: &ExportTraceServiceRequest) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", server.http))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "OTLP export refused: {:?}", r.text());
}

/// The hand-offs of the doctor's corpus whose two sides are two traces.
const HAND_OFFS: [&str; 4] =
    ["broken_queue_message_id.json", "broken_tool_call_id.json", "broken_mcp_tool_root.json", "broken_queue_link.json"];

#[test]
#[ignore = "needs PostgreSQL (scripts/services.sh start); the README's test command runs it"]
fn a_hand_off_split_across_collectors_is_connected_as_on_one() {
    let db = Database::create("split");
    let collectors = [on_postgres(&db), on_postgres(&db), on_postgres(&db)];
    let one_dir = tempfile::tempdir().unwrap();
    let one = support::start(["--data-dir", one_dir.path().to_str().unwrap(), "--trace-timeout", "200ms"]);

    let mut joined = 0;
    for (n, name) in HAND_OFFS.iter().enumerate() {
        // Each hand-off in an hour of its own, as separate requests are: the
        // corpus's fixtures all ran at the same instant, with the same
        // services and span names, which would make each a rival of the others.
        let mut request = fixture(name);
        for span in
            request.resource_spans.iter_mut().flat_map(|r| r.scope_spans.iter_mut()).flat_map(|s| s.spans.iter_mut())
        {
            span.start_time_unix_nano += n as u64 * 3_600_000_000_000;
            span.end_time_unix_nano += n as u64 * 3_600_000_000_000;
        }
        let traces = by_trace(&request);
        assert!(traces.len() >= 2, "{name}: the hand-off is broken into several traces");
        // One collector gets it all; the shared ones each get a trace in
        // turn, so no two sides of a hop reach the same one.
        for (i, (trace, part)) in traces.iter().enumerate() {
            send(&one, part);
            let to = &collectors[(n + i) % 3];
            send(to, part);
            for server in [&one, to] {
                wait_for(&format!("{name}: trace {trace} to be diagnosed"), || {
                    get(&format!("{}/api/agentrace/requests/{trace}", server.api)).0 == 200
                });
            }
        }
        let first = &traces[0].0;
        for (trace, _) in &traces {
            let want = get(&format!("{}/api/traces/{trace}?connected=true", one.api));
            assert_eq!(want.0, 200, "{name}: {want:?}");
            let ids: Vec<&str> =
                want.1["data"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap()).collect();
            if trace != first && ids == [first.as_str()] {
                joined += 1;
            }
            // The request list's row of the request the trace is in, as the
            // live pipelines stored it.
            let row = get(&format!("{}/api/agentrace/requests/{trace}", one.api));
            for (i, c) in collectors.iter().enumerate() {
                let got = get(&format!("{}/api/agentrace/requests/{trace}", c.api));
                assert_eq!(
                    got, row,
                    "{name}: collector {i} lists the request of trace {trace} otherwise than one collector with every side"
                );
            }
            for (i, c) in collectors.iter().enumerate() {
                let got = get(&format!("{}/api/traces/{trace}?connected=true", c.api));
                assert_eq!(
                    got, want,
                    "{name}: collector {i} answers trace {trace} otherwise than one collector with every side"
                );
            }
        }
    }
    // On this corpus one collector joins five of the seven later traces to
    // the first; the others it joins elsewhere or only suggests.
    assert!(joined >= 4, "the test proves little unless one collector joins some of these hand-offs ({joined} joined)");

    // Every read is the same from every collector, and the same as from
    // the one that got everything.
    for path in [
        "/api/services",
        "/api/agentrace/requests?limit=50",
        "/api/agentrace/sessions?limit=50",
        "/api/dependencies?endTs=1767240000000&lookback=86400000",
    ] {
        let want = get(&format!("{}{path}", one.api));
        assert_eq!(want.0, 200, "{path}: {want:?}");
        for (i, c) in collectors.iter().enumerate() {
            assert_eq!(get(&format!("{}{path}", c.api)), want, "{path} from collector {i}");
        }
    }
}

const SPANS_PER_REQUEST: usize = 50;

/// Senders streaming requests of their own traces (IDs tagged `tag`, numbered
/// from `next`) to collectors' OTLP/HTTP base URLs, one thread each, until
/// stopped or their collector is gone, recording what was acknowledged.
struct Stream {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    acked: Arc<Mutex<Vec<u64>>>,
}

impl Stream {
    fn start(http: &[&str], tag: u8, next: &Arc<AtomicU64>, acked: &Arc<Mutex<Vec<u64>>>) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = http
            .iter()
            .map(|http| {
                let (url, stop, next, acked) = (format!("{http}/v1/traces"), stop.clone(), next.clone(), acked.clone());
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        let trace = next.fetch_add(1, Ordering::Relaxed);
                        let body = support::crash_request(trace, tag, SPANS_PER_REQUEST);
                        match client.post(&url).header("content-type", "application/x-protobuf").body(body).send() {
                            Ok(r) if r.status() == 200 => acked.lock().unwrap().push(trace),
                            Ok(r) => panic!("unexpected status {} before the kill", r.status()),
                            Err(_) => break, // the collector is gone
                        }
                    }
                })
            })
            .collect();
        Stream { stop, threads, acked: Arc::clone(acked) }
    }

    /// Stops the senders; every request acknowledged so far.
    fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

#[test]
#[ignore = "needs PostgreSQL (scripts/services.sh start); the README's test command runs it"]
fn kill_9_of_one_collector_loses_nothing_it_acknowledged() {
    let db = Database::create("kill");
    let survivor = on_postgres(&db);
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(1));
    for (round, kill_after_ms) in [(0, 300), (1, 50)] {
        let mut victim = on_postgres(&db);
        // Half the senders go to the collector that dies, half to the one that stays.
        let stream = Stream::start(&[&victim.http, &survivor.http, &victim.http, &survivor.http], 2, &next, &acked);
        // Enough acknowledged to prove something (a busy machine starts
        // slowly), then a kill at a different moment each round.
        support::wait_until_acknowledged(&acked, 10 * (round + 1) + 1);
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        victim.child.kill().unwrap(); // SIGKILL
        victim.child.wait().unwrap();
        drop(victim);
        std::thread::sleep(Duration::from_millis(200));
        let acknowledged = stream.stop();
        assert!(acknowledged.len() > 10 * (round + 1), "round {round}: too few requests went through to prove much");
        // The other collector reads every acknowledged trace whole.
        support::assert_whole(&survivor.api, &acknowledged, 2, SPANS_PER_REQUEST, &format!("round {round}"));
    }
}

#[test]
#[ignore = "needs PostgreSQL (scripts/services.sh start); the README's test command runs it"]
fn each_queued_batch_is_exported_once_and_a_dead_collectors_by_the_others() {
    let db = Database::create("export");
    // The backend (another agentrace, on SQLite) is down while the
    // collectors take traffic, so every batch waits in the shared queue.
    let backend_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("agentrace.yaml");
    std::fs::write(&config, "storage:\n  postgres:\n    lease: 2s\n").unwrap();
    let endpoint = format!("http://{backend_addr}");
    let exporting = || {
        on_postgres_with(
            &db,
            &[
                "--config",
                config.to_str().unwrap(),
                "--export-otlp-endpoint",
                &endpoint,
                "--export-otlp-protocol",
                "grpc",
            ],
        )
    };
    let (a, b) = (exporting(), exporting());
    let mut victim = exporting();
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(1));
    let stream = Stream::start(&[&a.http, &b.http, &victim.http, &victim.http], 3, &next, &acked);
    support::wait_until_acknowledged(&acked, 60);
    victim.child.kill().unwrap(); // SIGKILL, its queue rows still leased to it
    victim.child.wait().unwrap();
    drop(victim);
    std::thread::sleep(Duration::from_millis(100));
    let acknowledged = stream.stop();

    // The backend comes up: the two live collectors send their own rows,
    // and the dead one's once its lease has lapsed.
    let backend_data = tempfile::tempdir().unwrap();
    let backend = support::start([
        "--data-dir",
        backend_data.path().to_str().unwrap(),
        "--otlp-grpc-addr",
        &backend_addr,
        "--trace-timeout",
        "200ms",
    ]);
    let mut client = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    wait_for("the shared export queue to drain into the backend", || {
        client.query_one("SELECT count(*) FROM export_queue", &[]).unwrap().get::<_, i64>(0) == 0
    });
    support::assert_whole(&backend.api, &acknowledged, 3, SPANS_PER_REQUEST, "the backend");
    // Once each: the backend was never sent a span it already had.
    assert_eq!(metric(&backend.api, "agentrace_receiver_spans_duplicate_total"), 0.0, "a batch was exported twice");
    drop((a, b));
}

#[test]
#[ignore = "needs PostgreSQL (scripts/services.sh start); the README's test command runs it"]
fn the_shared_store_is_reached_over_tls_when_the_url_asks() {
    let db = Database::create("tls");
    let ca = std::env::var("AGENTRACE_POSTGRES_CA").expect("AGENTRACE_POSTGRES_CA names the test server's CA");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}?sslmode=verify-full&sslrootcert={ca}", db.url);
    let collector = support::start(["--postgres-url", &url, "--data-dir", dir.path().to_str().unwrap()]);
    let request = fixture("healthy_request.json");
    send(&collector, &request);
    let trace = by_trace(&request)[0].0.clone();
    wait_for("the trace to be readable", || get(&format!("{}/api/traces/{trace}", collector.api)).0 == 200);
    // Every connection the collector holds to its database is encrypted.
    let mut server = postgres::Client::connect(&db.server, postgres::NoTls).unwrap();
    // The collector's connections: clients of this database (not the
    // server's own workers).
    let mut by_ssl = |ssl: bool| -> i64 {
        server
            .query_one(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.datname = $1 AND a.backend_type = 'client backend' AND s.ssl = $2",
                &[&db.name, &ssl],
            )
            .unwrap()
            .get(0)
    };
    assert!(by_ssl(true) >= 3, "the writer, the heartbeat and a reader connect over TLS");
    assert_eq!(by_ssl(false), 0, "no connection of the collector is in the clear");
    drop(collector);

    // A certificate the collector cannot verify (no CA given, and the
    // test CA is not among the system's) is refused at start, saying why.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agentrace"))
        .args(["serve", "--postgres-url", &format!("{}?sslmode=require", db.url), "--data-dir"])
        .arg(dir.path())
        .args(["--otlp-grpc-addr", "127.0.0.1:0", "--otlp-http-addr", "127.0.0.1:0", "--ui-addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a collector kept running against a server whose certificate it cannot verify");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "started against an unverified server: {stderr}");
    // The system's CAs do not include the test's (or the machine has none): either way it says so.
    assert!(
        stderr.contains("UnknownIssuer")
            || stderr.contains("invalid peer certificate")
            || stderr.contains("no CA certificates"),
        "{stderr}"
    );
}
