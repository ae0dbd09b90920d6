//! Claims about the store behind the receivers: a client retry does not
//! duplicate spans; when too much is pending the receivers refuse with a
//! retryable answer and a delay instead of growing memory; a live pipeline
//! that falls behind does not make them refuse (what it cannot take waits
//! in the store and is diagnosed later); retention deletes by age and by
//! size and nothing else.

use crate::support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use reqwest::blocking::Client;

fn post_protobuf(url: &str, body: Vec<u8>) -> reqwest::blocking::Response {
    Client::new().post(url).header("content-type", "application/x-protobuf").body(body).send().unwrap()
}

fn span_count(api: &str, trace_id: &str) -> usize {
    support::by_span_id(&support::fetch_trace(api, trace_id)).len()
}

#[test]
fn a_client_retry_does_not_duplicate_spans() {
    let collector = support::start(|_| {});
    let sent = support::python_send(&["--protocol", "grpc", "--endpoint", &collector.grpc()]);
    let before: Vec<usize> = sent.trace_ids.iter().map(|t| span_count(&collector.api(), t)).collect();
    // The same request again, as a client whose acknowledgement was lost would resend it.
    let again = post_protobuf(&format!("{}/v1/traces", collector.http()), sent.request.encode_to_vec());
    assert_eq!(again.status(), 200);
    let after: Vec<usize> = sent.trace_ids.iter().map(|t| span_count(&collector.api(), t)).collect();
    assert_eq!(before, after);
    assert_eq!(before.iter().sum::<usize>(), sent.spans);
    assert_eq!(support::metric(&collector.api(), "agentrace_receiver_spans_duplicate_total"), sent.spans as f64);
}

fn request_of(n: usize, trace_byte: u8, start_ns: u64) -> Vec<u8> {
    use opentelemetry_proto::tonic::trace::v1::Span;
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![trace_byte; 16],
            span_id: ((i as u64) + 1).to_be_bytes().to_vec(),
            name: format!("span {i}"),
            start_time_unix_nano: start_ns + i as u64,
            end_time_unix_nano: start_ns + i as u64 + 1000,
            ..Default::default()
        })
        .collect();
    support::one_scope(spans).encode_to_vec()
}

/// A request of one span, with a prompt recorded (which the default policy
/// drops) or not.
fn one_span(trace_byte: u8, prompt: bool) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    let mut request = ExportTraceServiceRequest::decode(request_of(1, trace_byte, now_ns()).as_slice()).unwrap();
    if prompt {
        request.resource_spans[0].scope_spans[0].spans[0].attributes.push(KeyValue {
            key: "gen_ai.input.messages".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue("[\"hi\"]".into())) }),
            ..Default::default()
        });
    }
    request.encode_to_vec()
}

// Every request is first checked at the byte level, and one that redaction
// would leave as it is is stored and diagnosed from its bytes, undecoded.
// Traffic that is never clean (every request records a prompt the store
// drops) is not checked on every request once 16 in a row were not clean:
// one in 16 is, and the first clean one checked opens the lane again.
// Every span is kept whichever road it took.
#[test]
fn the_byte_level_check_is_sampled_while_no_request_passes_it() {
    let collector = support::start(|_| {});
    let url = format!("{}/v1/traces", collector.http());
    let undecoded = || support::metric(&collector.api(), "agentrace_receiver_requests_forwarded_undecoded_total");
    let mut trace = 0u8;
    let mut send = |prompt: bool| {
        trace += 1;
        assert_eq!(post_protobuf(&url, one_span(trace, prompt)).status(), 200);
        trace
    };
    send(false);
    assert_eq!(undecoded(), 1.0, "a clean request takes the lane");
    // 20 misses: the first 17 are checked (16 in a row, then one in 16).
    for _ in 0..20 {
        send(true);
    }
    // Clean again, but the next 12 fall between the samples: decoded.
    for _ in 0..12 {
        send(false);
    }
    assert_eq!(undecoded(), 1.0, "between samples every request is decoded");
    // After 32 misses in a row the next request is a sample; it is clean,
    // and the lane is open again.
    let last = (0..4).map(|_| send(false)).last().unwrap();
    assert_eq!(undecoded(), 5.0);
    for t in 1..=last {
        assert_eq!(span_count(&collector.api(), &agentrace_model::ids::to_hex(&[t; 16])), 1, "trace {t}");
    }
}

/// Takes SQLite's write lock from outside (a stand-in for a slow disk),
/// sends one request of `spans` spans in the background, and waits until
/// the collector holds it as pending. Commit the returned connection to
/// let the writer go on; the handle yields the first request's status.
fn stall_writer_with_one_request(
    collector: &support::Running,
    spans: usize,
    trace_byte: u8,
) -> (rusqlite::Connection, std::thread::JoinHandle<u16>) {
    stall_writer_with(collector, request_of(spans, trace_byte, 1), spans)
}

/// [`stall_writer_with_one_request`] with a request of one's own (`body`, of `spans` spans).
fn stall_writer_with(
    collector: &support::Running,
    body: Vec<u8>,
    spans: usize,
) -> (rusqlite::Connection, std::thread::JoinHandle<u16>) {
    let db = collector.collector.as_ref().unwrap().store.path().to_owned();
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let url = format!("{}/v1/traces", collector.http());
    let first = std::thread::spawn(move || post_protobuf(&url, body).status().as_u16());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, health) = support::get_json(&format!("{}/health", collector.api()));
        if health["pendingSpans"] == spans {
            break;
        }
        assert!(Instant::now() < deadline, "the first request never became pending: {health}");
        std::thread::sleep(Duration::from_millis(10));
    }
    (blocker, first)
}

#[test]
fn past_the_pending_budget_senders_are_told_to_retry_later() {
    let collector = support::start(|c| c.receivers.otlp.max_pending_spans = 150);
    let (blocker, first) = stall_writer_with_one_request(&collector, 100, 0x11);
    let url = format!("{}/v1/traces", collector.http());

    let refused = post_protobuf(&url, request_of(100, 0x22, 1));
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let err = support::grpc_raw(&collector, request_of(100, 0x33, 1)).unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(!err.details().is_empty(), "RESOURCE_EXHAUSTED carries RetryInfo so OTLP clients retry");

    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(first.join().unwrap(), 200, "the pending request completes once the disk is back");
    assert_eq!(span_count(&collector.api(), &"11".repeat(16)), 100);
    let (status, _) = support::get_json(&format!("{}/api/v3/traces/{}", collector.api(), "22".repeat(16)));
    assert_eq!(status, 404, "a refused request stores nothing");
    assert_eq!(
        support::metric(&collector.api(), "agentrace_receiver_requests_refused_total{reason=\"backpressure\"}"),
        2.0
    );
}

/// A span of `service` in trace `[trace; 16]`, ID `[id; 8]`, times in ms
/// after a minute ago.
fn agent_span(
    service: &str,
    (trace, id, parent): (u8, u8, Option<u8>),
    name: &str,
    kind: i32,
    ms: (u64, u64),
    attributes: &[(&str, &str)],
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    };
    let start = now_ns() - 60_000_000_000;
    let span = Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind,
        start_time_unix_nano: start + ms.0 * 1_000_000,
        end_time_unix_nano: start + ms.1 * 1_000_000,
        attributes: attributes.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// The spans of several one-span requests in one request.
fn merged(
    parts: Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let mut out = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::default();
    for p in parts {
        out.resource_spans.extend(p.resource_spans);
    }
    out
}

#[test]
fn a_pipeline_behind_keeps_taking_requests_and_diagnoses_them_from_the_store() {
    // The pipeline takes 100 spans in memory (a quarter of 400). A planner's
    // trace (its producer span sends message m-1) is held pending by a
    // stalled disk, so the pipeline is behind; then the worker's trace,
    // which lost the context (a consumer of m-1, 100 spans), and two other
    // requests arrive. None is refused: each waits in the store.
    let collector = support::start(|c| {
        c.pipeline.max_buffered_spans = 400;
        c.pipeline.trace_timeout = Duration::from_millis(300);
    });
    const PRODUCER: i32 = 4;
    const CONSUMER: i32 = 5;
    let message = [("messaging.system", "rabbitmq"), ("messaging.message.id", "m-1"), ("session.id", "s-1")];
    let planner = merged(vec![
        agent_span("planner", (0xa1, 1, None), "plan", 1, (0, 500), &[("session.id", "s-1")]),
        agent_span("planner", (0xa1, 2, Some(1)), "send tasks", PRODUCER, (10, 20), &message),
    ]);
    let mut worker = vec![agent_span("worker", (0xb1, 3, None), "process tasks", CONSUMER, (50, 300), &message)];
    for i in 0..99u8 {
        worker.push(agent_span("worker", (0xb1, 0x10 + i, Some(3)), "step", 1, (60, 290), &[("session.id", "s-1")]));
    }
    let (blocker, first) = stall_writer_with(&collector, planner.encode_to_vec(), 2);
    let url = format!("{}/v1/traces", collector.http());
    let mut later = vec![merged(worker).encode_to_vec()];
    later.extend((0xc1..0xc3u8).map(|b| tree(b, 100)));
    let senders: Vec<_> = later
        .into_iter()
        .map(|body| {
            let url = url.clone();
            // One after the other, in order: each is numbered while the first is pending.
            let sent = std::thread::spawn(move || post_protobuf(&url, body).status().as_u16());
            std::thread::sleep(Duration::from_millis(20));
            sent
        })
        .collect();
    wait_for("every request to be pending", || {
        let (_, health) = support::get_json(&format!("{}/health", collector.api()));
        health["pendingSpans"] == 302
    });
    let api = collector.api();
    assert_eq!(support::metric(&api, "agentrace_pipeline_requests_to_backlog_total"), 3.0);
    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(first.join().unwrap(), 200);
    for s in senders {
        assert_eq!(s.join().unwrap(), 200, "accepted while the pipeline was behind");
    }
    assert_eq!(support::metric(&api, "agentrace_receiver_requests_refused_total{reason=\"backpressure\"}"), 0.0);

    // Taken back and diagnosed: the worker's trace joins the planner's
    // request by the message ID, as it would have from memory.
    wait_for("the backlog to be diagnosed", || {
        support::metric(&api, "agentrace_pipeline_requests_behind") == 0.0
            && support::metric(&api, "agentrace_pipeline_backlog_spans") == 0.0
    });
    // Within its memory budget all along: nothing closed early or evicted.
    assert_eq!(support::metric(&api, "agentrace_pipeline_traces_closed_early_total"), 0.0);
    assert_eq!(support::metric(&api, "agentrace_pipeline_window_evicted_traces_total"), 0.0);
    let (status, body) = support::get_json(&format!("{api}/api/agentrace/requests?limit=50"));
    assert_eq!(status, 200, "{body}");
    let rows = body["requests"].as_array().unwrap();
    let planner_row = rows.iter().find(|r| r["request_id"] == "a1".repeat(16)).expect("the planner's request");
    assert_eq!(planner_row["trace_ids"], serde_json::json!(["a1".repeat(16), "b1".repeat(16)]), "{planner_row}");
    assert_eq!(planner_row["spans"], 102);
    assert_eq!(planner_row["repairs"], 1);
    for b in 0xc1..0xc3u8 {
        let id = format!("{b:02x}").repeat(16);
        assert!(rows.iter().any(|r| r["request_id"] == id.as_str()), "request {id} is listed: {body}");
    }
    // What was taken back left the store's backlog.
    let db = rusqlite::Connection::open(collector.collector.as_ref().unwrap().store.path()).unwrap();
    let left: i64 = db.query_row("SELECT count(*) FROM export_queue", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0);
}

/// A request of one trace `[trace; 16]` of `spans` spans of service `other`: a root and its children.
fn tree(trace: u8, spans: u8) -> Vec<u8> {
    let root = agent_span("other", (trace, 1, None), "request", 1, (0, 100), &[]);
    merged(
        (2..=spans).map(|i| agent_span("other", (trace, i, Some(1)), "step", 1, (10, 90), &[])).chain([root]).collect(),
    )
    .encode_to_vec()
}

#[test]
fn requests_waiting_in_the_backlog_at_a_stop_are_diagnosed_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = |timeout: Duration| {
        let mut c = agentrace_collector::config::Config::default();
        c.storage.data_dir = data.clone();
        let any = "127.0.0.1:0".parse().unwrap();
        c.receivers.otlp.grpc_endpoint = Some(any);
        c.receivers.otlp.http_endpoint = Some(any);
        c.api.endpoint = Some(any);
        c.pipeline.max_buffered_spans = 40;
        c.pipeline.trace_timeout = timeout;
        c
    };
    // A first trace of 11 spans stays open for a minute; while it is open the
    // pipeline takes nothing back from the backlog (that would hold more
    // than half its memory budget in open traces), so the two requests that
    // arrived while it was pending are still in the store when it stops.
    let mut first = support::start_with(config(Duration::from_secs(60)), tempfile::tempdir().unwrap());
    let (blocker, pending) = stall_writer_with(&first, tree(0xe1, 11), 11);
    let url = format!("{}/v1/traces", first.http());
    let senders: Vec<_> = [0xe2, 0xe3u8]
        .into_iter()
        .map(|b| {
            let url = url.clone();
            std::thread::spawn(move || post_protobuf(&url, tree(b, 10)).status().as_u16())
        })
        .collect();
    wait_for("every request to be pending", || {
        let (_, health) = support::get_json(&format!("{}/health", first.api()));
        health["pendingSpans"] == 31
    });
    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(pending.join().unwrap(), 200);
    for s in senders {
        assert_eq!(s.join().unwrap(), 200);
    }
    assert_eq!(support::metric(&first.api(), "agentrace_pipeline_backlog_spans"), 20.0);
    first.stop();

    let second = support::start_with(config(Duration::from_millis(300)), tempfile::tempdir().unwrap());
    let api = second.api();
    let listed = |id: String| {
        let (_, body) = support::get_json(&format!("{api}/api/agentrace/requests?limit=50&trace={id}"));
        body["requests"].as_array().and_then(|r| r.first()).map(|r| r["spans"].clone())
    };
    wait_for("the backlog's requests to be diagnosed", || {
        listed("e2".repeat(16)) == Some(10.into()) && listed("e3".repeat(16)) == Some(10.into())
    });
    assert_eq!(listed("e1".repeat(16)), Some(11.into()), "the open trace was diagnosed at the stop");
    let db = rusqlite::Connection::open(second.collector.as_ref().unwrap().store.path()).unwrap();
    wait_for("the backlog rows to be deleted", || {
        db.query_row("SELECT count(*) FROM export_queue", [], |r| r.get::<_, i64>(0)).unwrap() == 0
    });
}

#[test]
fn past_the_concurrent_request_limit_senders_are_refused_before_their_body_is_read() {
    let collector = support::start(|c| c.receivers.otlp.max_concurrent_requests = 1);
    let (blocker, first) = stall_writer_with_one_request(&collector, 10, 0x66);
    let url = format!("{}/v1/traces", collector.http());
    // The one place is taken: the next request is refused at once.
    let refused = post_protobuf(&url, request_of(1, 0x77, 1));
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let err = support::grpc_raw(&collector, request_of(1, 0x78, 1)).unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(first.join().unwrap(), 200);
    // The place is free again.
    assert_eq!(post_protobuf(&url, request_of(1, 0x79, 1)).status(), 200);
}

#[test]
fn over_the_memory_limit_senders_are_told_to_retry_later() {
    // No process runs in one byte: the limiter refuses from its first sample.
    let collector = support::start(|c| c.receivers.otlp.memory_limit = Some(1));
    let url = format!("{}/v1/traces", collector.http());
    wait_for("the limiter to sample", || post_protobuf(&url, request_of(1, 0x81, 1)).status() == 429);
    let refused = post_protobuf(&url, request_of(1, 0x82, 1));
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let err = support::grpc_raw(&collector, request_of(1, 0x83, 1)).unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("memory limit"), "{}", err.message());
    // With room to spare the same request goes through.
    let roomy = support::start(|c| c.receivers.otlp.memory_limit = Some(64 << 30));
    assert_eq!(post_protobuf(&format!("{}/v1/traces", roomy.http()), request_of(1, 0x82, 1)).status(), 200);
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn retention_counts_age_from_receipt_and_keeps_old_dated_spans_it_just_acknowledged() {
    // Spans dated two hours back (a replay, an import, the README's curl
    // example) arrive now; with max_age 3 s they are kept for 3 s by the
    // collector's clock, not deleted on the next pass because of their own
    // timestamps. Then they go, and their request rows with them.
    let max_age = Duration::from_secs(3);
    let collector = support::start(|c| {
        c.storage.retention.max_age = Some(max_age);
        c.storage.retention.max_bytes = None;
        c.storage.retention.interval = Duration::from_millis(100);
    });
    let url = format!("{}/v1/traces", collector.http());
    let two_hours_ago = now_ns() - 2 * 3600 * 1_000_000_000;
    assert_eq!(post_protobuf(&url, request_of(10, 0x44, two_hours_ago)).status(), 200);
    let acknowledged = Instant::now();
    let api = collector.api();
    let gone = || support::get_json(&format!("{api}/api/v3/traces/{}", "44".repeat(16))).0 == 404;
    // Only ever a lower bound on the time that passed: a busy machine can
    // only make it longer, so this cannot fail for being slow.
    let deadline = acknowledged + Duration::from_secs(60);
    while !gone() {
        assert!(Instant::now() < deadline, "timed out waiting for retention");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        acknowledged.elapsed() >= max_age,
        "deleted {:?} after it was acknowledged, before max_age ({max_age:?}) by the collector's clock",
        acknowledged.elapsed()
    );
    // Counted once the pass that deleted them ends (it goes on to the rows
    // of their requests).
    let deleted = || support::metric(&api, "agentrace_store_retention_deleted_spans_total");
    wait_for("the deleted spans to be counted", || deleted() >= 10.0);
    assert_eq!(deleted(), 10.0);
    let requests = |trace: &str| {
        let (status, body) = support::get_json(&format!("{api}/api/agentrace/requests?q={trace}"));
        assert_eq!(status, 200);
        body["requests"].as_array().unwrap().len()
    };
    wait_for("the old request's rows to be deleted", || requests(&"44".repeat(16)) == 0);
}

#[test]
fn retention_keeps_what_is_younger_than_max_age_by_receipt() {
    let collector = support::start(|c| {
        c.storage.retention.max_age = Some(Duration::from_secs(3600));
        c.storage.retention.max_bytes = None;
        c.storage.retention.interval = Duration::from_millis(100);
    });
    let url = format!("{}/v1/traces", collector.http());
    let two_hours_ago = now_ns() - 2 * 3600 * 1_000_000_000;
    assert_eq!(post_protobuf(&url, request_of(10, 0x44, two_hours_ago)).status(), 200);
    assert_eq!(post_protobuf(&url, request_of(10, 0x55, now_ns())).status(), 200);
    let api = collector.api();
    // Retention has run many times by when both requests have their rows.
    let requests = |trace: &str| {
        let (status, body) = support::get_json(&format!("{api}/api/agentrace/requests?q={trace}"));
        assert_eq!(status, 200);
        body["requests"].as_array().unwrap().len()
    };
    wait_for("the requests' rows (each span is a root)", || {
        requests(&"55".repeat(16)) == 10 && requests(&"44".repeat(16)) == 10
    });
    wait_for("a few retention passes", || support::metric(&api, "agentrace_store_retention_runs_total") >= 3.0);
    assert_eq!(span_count(&api, &"44".repeat(16)), 10, "old-dated spans received now are kept");
    assert_eq!(span_count(&api, &"55".repeat(16)), 10);
    assert_eq!(support::metric(&api, "agentrace_store_retention_deleted_spans_total"), 0.0);
}

#[test]
fn retention_deletes_the_oldest_spans_past_max_bytes() {
    let collector = support::start(|c| {
        c.storage.retention.max_age = None;
        c.storage.retention.max_bytes = Some(512 * 1024);
        c.storage.retention.interval = Duration::from_millis(100);
    });
    let url = format!("{}/v1/traces", collector.http());
    let base = now_ns() - 3_600_000_000_000;
    // 40 traces of 200 spans, each newer than the last: a few MiB in all.
    for t in 0..40u8 {
        let status = post_protobuf(&url, request_of(200, t + 1, base + t as u64 * 1_000_000_000)).status();
        assert_eq!(status, 200);
    }
    let api = collector.api();
    wait_for("size retention to run", || support::metric(&api, "agentrace_store_retention_deleted_spans_total") > 0.0);
    assert_eq!(support::get_json(&format!("{api}/api/v3/traces/{}", "01".repeat(16))).0, 404, "the oldest went first");
    assert_eq!(span_count(&api, &"28".repeat(16)), 200, "the newest trace is whole");
}
