//! Shared set-up for the collector's integration tests: a collector on
//! ephemeral ports over a temporary store, the Python virtualenv that holds
//! the official OpenTelemetry SDK, and a field-by-field comparison of what a
//! client sent with what the API returns.

#![allow(dead_code)]

pub mod webdriver;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use agentrace_collector::config::Config;
use agentrace_collector::server::Collector;
use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// A collector running on its own runtime, with its data in a temp dir
/// (or a database of its own, under `AGENTRACE_TEST_STORE=postgres`).
pub struct Running {
    pub runtime: tokio::runtime::Runtime,
    pub collector: Option<Collector>,
    pub dir: tempfile::TempDir,
    pub database: Option<TestDatabase>,
}

impl Running {
    pub fn grpc(&self) -> String {
        format!("http://{}", self.collector.as_ref().unwrap().grpc_addr.unwrap())
    }
    pub fn http(&self) -> String {
        format!("http://{}", self.collector.as_ref().unwrap().http_addr.unwrap())
    }
    pub fn api(&self) -> String {
        format!("http://{}", self.collector.as_ref().unwrap().api_addr.unwrap())
    }
    /// The Zipkin receiver's base URL, when it listens.
    pub fn zipkin(&self) -> Option<String> {
        self.collector.as_ref().unwrap().zipkin_addr.map(|a| format!("http://{a}"))
    }
    pub fn stop(&mut self) {
        if let Some(c) = self.collector.take() {
            self.runtime.block_on(c.shutdown());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
        self.database.take();
    }
}

/// A PostgreSQL database made for one test on the server of
/// `scripts/services.sh` (`AGENTRACE_POSTGRES_URL`), dropped with it.
pub struct TestDatabase {
    /// The server's URL, to its maintenance database.
    server: String,
    /// This database's name.
    pub name: String,
    /// The URL a collector connects to.
    pub url: String,
}

impl TestDatabase {
    /// A new, empty database.
    pub fn create() -> TestDatabase {
        let server = std::env::var("AGENTRACE_POSTGRES_URL").unwrap_or_else(|_| {
            panic!("AGENTRACE_POSTGRES_URL is not set: run `scripts/services.sh start && eval \"$(scripts/services.sh env)\"` first")
        });
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!("t_{}_{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let base = server.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or_else(|| server.clone());
        let url = format!("{base}/{name}");
        let (s, n) = (server.clone(), name.clone());
        std::thread::spawn(move || {
            let mut client =
                postgres::Client::connect(&s, postgres::NoTls).expect("the test PostgreSQL server answers");
            client.batch_execute(&format!("DROP DATABASE IF EXISTS {n}")).unwrap();
            client.batch_execute(&format!("CREATE DATABASE {n}")).unwrap();
        })
        .join()
        .unwrap();
        TestDatabase { server, name, url }
    }

    /// A client to the database (on the calling thread: not inside a runtime).
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut client) = postgres::Client::connect(&server, postgres::NoTls) {
                let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}

/// Whether the tests' collectors keep their store in PostgreSQL
/// (`AGENTRACE_TEST_STORE=postgres`) rather than the SQLite default: the
/// test command runs the API's tests once each way.
pub fn on_postgres() -> bool {
    std::env::var("AGENTRACE_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// Starts a collector on 127.0.0.1 with ephemeral ports; `tweak` adjusts the config.
pub fn start(tweak: impl FnOnce(&mut Config)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = dir.path().join("data");
    let any = "127.0.0.1:0".parse().unwrap();
    config.receivers.otlp.grpc_endpoint = Some(any);
    config.receivers.otlp.http_endpoint = Some(any);
    config.api.endpoint = Some(any);
    tweak(&mut config);
    start_with(config, dir)
}

pub fn start_with(mut config: Config, dir: tempfile::TempDir) -> Running {
    let database = on_postgres().then(|| {
        let database = TestDatabase::create();
        config.storage.backend = agentrace_collector::config::StorageBackend::Postgres;
        config.storage.postgres.url = Some(database.url.clone());
        database
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let collector = runtime.block_on(Collector::start(config)).expect("collector starts");
    Running { runtime, collector: Some(collector), dir, database }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The virtualenv's Python, which `scripts/test.sh` creates with the
/// official OpenTelemetry SDK from PyPI. Missing it is a failure, not a skip.
pub fn python() -> PathBuf {
    let path = std::env::var_os("AGENTRACE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} not found: run scripts/test.sh (or `python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt`)",
        path.display()
    );
    path
}

/// What the Python sender printed.
pub struct PythonSent {
    pub request: ExportTraceServiceRequest,
    pub trace_ids: Vec<String>,
    pub spans: usize,
}

/// Runs `tests/python/send_spans.py` with `args`; panics with its stderr if it failed.
pub fn python_send(args: &[&str]) -> PythonSent {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_spans.py");
    let out = Command::new(python()).arg(script).args(args).output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python sender failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("sender prints JSON");
    let bytes = hex_decode(v["sent_hex"].as_str().unwrap());
    let request = <ExportTraceServiceRequest as prost::Message>::decode(bytes.as_slice()).unwrap();
    PythonSent {
        request,
        trace_ids: v["trace_ids"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect(),
        spans: v["spans"].as_u64().unwrap() as usize,
    }
}

pub fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// GET a JSON document from the API.
pub fn get_json(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::blocking::get(url).unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(serde_json::Value::Null))
}

/// Fetches a trace from `/api/v3/traces/{id}` and decodes its OTLP JSON.
pub fn fetch_trace(api: &str, trace_id: &str) -> ExportTraceServiceRequest {
    let (status, body) = get_json(&format!("{api}/api/v3/traces/{trace_id}"));
    assert_eq!(status, 200, "trace {trace_id}: {body}");
    let result = serde_json::to_vec(&body["result"]).unwrap();
    agentrace_model::otlp::decode_json(&result, &Default::default()).unwrap().request
}

/// One span with its resource and scope shells, for comparison.
#[derive(Debug, PartialEq)]
pub struct Placed {
    pub resource: ResourceSpans,
    pub scope: ScopeSpans,
    pub span: Span,
}

/// Flattens a request into span id -> (resource, scope, span).
pub fn by_span_id(request: &ExportTraceServiceRequest) -> BTreeMap<Vec<u8>, Placed> {
    let mut out = BTreeMap::new();
    for rs in &request.resource_spans {
        let resource = ResourceSpans { scope_spans: vec![], ..rs.clone() };
        for ss in &rs.scope_spans {
            let scope = ScopeSpans { spans: vec![], ..ss.clone() };
            for span in &ss.spans {
                out.insert(
                    span.span_id.clone(),
                    Placed { resource: resource.clone(), scope: scope.clone(), span: span.clone() },
                );
            }
        }
    }
    out
}

/// Asserts that every span in `sent` came back in `got` equal in every
/// field, with its resource and scope, and that nothing else came back.
pub fn assert_same_spans(sent: &ExportTraceServiceRequest, got: &ExportTraceServiceRequest) {
    let sent = by_span_id(sent);
    let got = by_span_id(got);
    assert_eq!(
        sent.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "the API returned a different set of spans than was sent"
    );
    for (id, expected) in &sent {
        let actual = &got[id];
        assert_eq!(expected.span, actual.span, "span {} differs", agentrace_model::ids::to_hex(id));
        assert_eq!(expected.resource, actual.resource, "resource of span {} differs", agentrace_model::ids::to_hex(id));
        assert_eq!(expected.scope, actual.scope, "scope of span {} differs", agentrace_model::ids::to_hex(id));
    }
}

/// What the collector keeps of `sent` under the default redaction policy,
/// written out by hand for these tests: span events tagged
/// `sensitive = true` are gone, and their count is on the span.
pub fn without_sensitive_events(sent: &ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    let mut out = sent.clone();
    for span in out.resource_spans.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans) {
        let before = span.events.len();
        span.events.retain(|e| {
            !e.attributes.iter().any(|kv| {
                kv.key == "sensitive"
                    && kv.value.as_ref().and_then(|v| v.value.as_ref()) == Some(&Value::BoolValue(true))
            })
        });
        let dropped = (before - span.events.len()) as i64;
        if dropped > 0 {
            span.attributes.push(KeyValue {
                key: "agentrace.redaction.events_dropped".into(),
                value: Some(AnyValue { value: Some(Value::IntValue(dropped)) }),
                ..Default::default()
            });
        }
    }
    out
}

/// Spans of `request` whose trace id is `trace_id` (hex), as a request.
pub fn only_trace(request: &ExportTraceServiceRequest, trace_id: &str) -> ExportTraceServiceRequest {
    let mut out = request.clone();
    for rs in &mut out.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| agentrace_model::ids::to_hex(&s.trace_id) == trace_id);
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    out.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    out
}

/// The value of a Prometheus sample line, e.g. `name{label="x"}`.
pub fn metric(api: &str, sample: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{api}/metrics")).unwrap().text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("metric {sample} not found in:\n{text}"))
        .parse()
        .unwrap()
}

/// Sends raw bytes as a gRPC Export call, as a broken client would.
pub fn grpc_raw(collector: &Running, body: Vec<u8>) -> Result<ExportTraceServiceResponse, tonic::Status> {
    #[derive(Clone, Default)]
    struct RawCodec;
    struct Enc;
    struct Dec;
    impl tonic::codec::Encoder for Enc {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }
    impl tonic::codec::Decoder for Dec {
        type Item = ExportTraceServiceResponse;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
            let bytes: Bytes = src.copy_to_bytes(src.remaining());
            Ok(Some(ExportTraceServiceResponse::decode(bytes).map_err(|e| tonic::Status::internal(e.to_string()))?))
        }
    }
    impl tonic::codec::Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = ExportTraceServiceResponse;
        type Encoder = Enc;
        type Decoder = Dec;
        fn encoder(&mut self) -> Enc {
            Enc
        }
        fn decoder(&mut self) -> Dec {
            Dec
        }
    }
    let url = collector.grpc();
    collector.runtime.block_on(async move {
        let channel = tonic::transport::Channel::from_shared(url).unwrap().connect().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
        grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(|r| r.into_inner())
    })
}

/// A fixture of the doctor's corpus (`crates/doctor/tests/fixtures`), made
/// with the real OpenTelemetry Python SDK, decoded from OTLP JSON.
pub fn doctor_fixture(name: &str) -> ExportTraceServiceRequest {
    let path = workspace_root().join("crates/doctor/tests/fixtures").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    agentrace_model::otlp::decode_json(&bytes, &Default::default()).unwrap().request
}

/// Sends `request` to the collector over OTLP/HTTP protobuf and checks it was accepted.
pub fn send_otlp(collector: &Running, request: &ExportTraceServiceRequest) {
    // One client per test thread, as an exporter keeps one: a blocking
    // client runs a thread and a runtime of its own, and making one per
    // batch cost the live-answer tests' senders more than the collector's
    // answer on a busy machine (a case's batches then arrived further apart
    // than the test allows).
    // Idle connections are let go before the collector's own idle limit
    // (`read_header_timeout`, 10 s) closes them under a request.
    thread_local! {
        static CLIENT: reqwest::blocking::Client = reqwest::blocking::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
    }
    let response = CLIENT
        .with(|c| c.clone())
        .post(format!("{}/v1/traces", collector.http()))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "OTLP export refused: {:?}", response.text());
}

/// Every span of a request.
/// A request of `spans` under one resource and one scope, both empty.
pub fn one_scope(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

pub fn spans(request: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    request.resource_spans.iter().flat_map(|rs| rs.scope_spans.iter()).flat_map(|ss| ss.spans.iter())
}

/// Every span of a request, mutable, for a test to bend a fixture.
pub fn spans_mut(request: &mut ExportTraceServiceRequest) -> impl Iterator<Item = &mut Span> {
    request.resource_spans.iter_mut().flat_map(|rs| rs.scope_spans.iter_mut()).flat_map(|ss| ss.spans.iter_mut())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real OTLP/gRPC backend: `tests/python/otlp_backend.py`, built on the
/// official OpenTelemetry Python packages' gRPC service.
pub struct Backend {
    child: std::process::Child,
    out: PathBuf,
    pub port: u16,
}

impl Backend {
    /// Starts it on `port` (0: a free port it binds itself, so no other
    /// process can take it between choosing and binding), appending what it
    /// receives to `out`; the first `refuse` requests are answered UNAVAILABLE.
    pub fn start(port: u16, out: &Path, refuse: u32) -> Backend {
        Backend::start_with(port, out, &["--refuse", &refuse.to_string()])
    }

    /// Starts it with the script's own flags (`--refuse N`, `--reject N`).
    pub fn start_with(port: u16, out: &Path, flags: &[&str]) -> Backend {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/otlp_backend.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--port", &port.to_string(), "--out", out.to_str().unwrap()])
            .args(flags)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python backend starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = match line.trim().strip_prefix("ready ").map(str::parse::<u16>) {
            Some(Ok(bound)) if bound != 0 && (port == 0 || bound == port) => bound,
            _ => panic!("backend did not start on port {port}: it said {line:?}"),
        };
        Backend { child, out: out.to_owned(), port }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request it received so far.
    pub fn received(&self) -> Vec<ExportTraceServiceRequest> {
        received_at(&self.out)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The requests a backend appended to `out` (empty if none yet).
pub fn received_at(out: &Path) -> Vec<ExportTraceServiceRequest> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| <ExportTraceServiceRequest as prost::Message>::decode(hex_decode(l).as_slice()).unwrap())
        .collect()
}

/// Every span in `requests`, with its service.
pub fn spans_of(requests: &[ExportTraceServiceRequest]) -> Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)> {
    let mut out = Vec::new();
    for r in requests {
        for rs in &r.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push((service.clone(), s.clone()));
                }
            }
        }
    }
    out
}

/// Waits up to `secs` for `ready` to hold, polling.
pub fn wait_for(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The tests' Node project (`crates/collector/tests/node`), its packages
/// installed from npm (pinned by its lock file) if missing.
#[allow(dead_code)]
pub fn node_project() -> PathBuf {
    let dir = workspace_root().join("crates/collector/tests/node");
    // Tests in other processes (cargo-nextest runs each in its own) may ask at
    // the same time, and `npm ci` starts by deleting node_modules: one at a time.
    let lock = std::fs::File::create(std::env::temp_dir().join("agentrace-tests-npm.lock")).unwrap();
    lock.lock().unwrap();
    let installed = ["@perses-dev/tempo-plugin", "axe-core"].iter().all(|p| dir.join("node_modules").join(p).is_dir());
    if !installed {
        let out = std::process::Command::new("npm")
            .args(["ci", "--legacy-peer-deps", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("npm runs (Node.js and npm are on this machine)");
        assert!(out.status.success(), "npm ci failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    dir
}
