use std::sync::Arc;
use std::time::{Duration, Instant};

use agentrace_doctor::{Config as DoctorConfig, Doctor};
use agentrace_model::{Resource, Span, SpanId, SpanKind, TraceId};

use super::*;
use crate::export::patch::SpanPatch;

const MS: u64 = 1_000_000;

fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, service: &str, start_ms: u64, end_ms: u64) -> Span {
    let mut s = Span::new(
        TraceId::new([trace; 16]).unwrap(),
        SpanId::new([id; 8]).unwrap(),
        parent.map(|p| SpanId::new([p; 8]).unwrap()),
        name,
    );
    s.start_unix_nano = 1_700_000_000_000 * MS + start_ms * MS;
    s.end_unix_nano = 1_700_000_000_000 * MS + end_ms * MS;
    s.resource = Arc::new(Resource::for_service(service));
    s
}

/// A planner that sends a task, and a worker that handled it in a trace of its own.
fn packed(spans: &[Span]) -> Vec<Packed> {
    let request = Span::to_request(spans);
    pack(&crate::wire::Encoded::new(&request))
}

fn broken_handoff() -> (Vec<Packed>, Vec<Packed>) {
    let root = span(1, 1, None, "plan", "planner", 0, 500);
    let mut send = span(1, 2, Some(1), "send tasks", "planner", 10, 20);
    send.kind = SpanKind::Producer;
    send.attributes.set("messaging.message.id", "m-1");
    send.attributes.set("messaging.system", "rabbitmq");
    send.attributes.set("session.id", "s-1");
    let mut process = span(2, 3, None, "process tasks", "worker", 50, 300);
    process.kind = SpanKind::Consumer;
    process.attributes.set("messaging.message.id", "m-1");
    process.attributes.set("messaging.system", "rabbitmq");
    process.attributes.set("session.id", "s-1");
    let mut chat = span(2, 4, Some(3), "chat gpt-4o", "worker", 60, 290);
    chat.attributes.set("gen_ai.operation.name", "chat");
    chat.attributes.set("gen_ai.request.model", "gpt-4o");
    chat.attributes.set("gen_ai.usage.input_tokens", 1000i64);
    chat.attributes.set("gen_ai.usage.output_tokens", 100i64);
    (packed(&[root, send]), packed(&[process, chat]))
}

fn assembler(config: PipelineConfig) -> (Assembler, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    (Assembler::new(config, Doctor::new(DoctorConfig::default()), Arc::clone(&metrics)), metrics)
}

fn config() -> PipelineConfig {
    PipelineConfig { trace_timeout: Duration::from_millis(100), ..PipelineConfig::default() }
}

#[test]
fn a_trace_closes_after_its_timeout_and_an_orphan_is_joined_across_the_window() {
    let (mut a, metrics) = assembler(config());
    let t0 = Instant::now();
    let (producer, consumer) = broken_handoff();
    a.add(1, producer, t0);
    assert!(a.close_due(t0 + Duration::from_millis(50), false).rows.is_empty(), "still open");
    assert_eq!(a.watermark(1), 0, "nothing of request 1 is diagnosed yet");
    let first = a.close_due(t0 + Duration::from_millis(150), false);
    assert_eq!(first.rows.len(), 1);
    assert_eq!(a.watermark(1), 1);

    // The consumer arrives after its producer's trace was closed: the
    // window still holds the producer, so it is joined.
    let t1 = t0 + Duration::from_millis(200);
    a.add(2, consumer, t1);
    assert_eq!(a.watermark(2), 1);
    let second = a.close_due(t1 + Duration::from_millis(150), false);
    assert_eq!(a.watermark(2), 2);
    let row = second.rows.iter().find(|r| r.trace_id == vec![2; 16]).expect("a row for the closing trace");
    assert_eq!(row.connected_trace_id, vec![1; 16], "the consumer's trace now belongs to the producer's");
    assert_eq!((row.input_tokens, row.output_tokens), (1000, 100));
    assert!(row.cost_usd > 0.0);
    assert_eq!(row.repairs, 1);
    assert!(row.findings >= 1);
    let patch_of = |id: u8| -> SpanPatch {
        let p = second.patches.iter().find(|p| p.span_id == vec![id; 8]).expect("patched");
        serde_json::from_str(&p.patch).unwrap()
    };
    let process = patch_of(3);
    assert_eq!(process.trace_id, Some(TraceId::new([1; 16]).unwrap()));
    assert_eq!(process.parent_span_id, Some(SpanId::new([2; 8]).unwrap()));
    assert_eq!(process.link.as_ref().map(|l| l.evidence.as_str()), Some("messaging.message.id"));
    let chat = patch_of(4);
    assert_eq!(chat.trace_id, Some(TraceId::new([1; 16]).unwrap()), "the subtree moves with its root");
    assert_eq!(chat.parent_span_id, None, "its own parent is unchanged");
    // One request now: the producer's, holding both traces; the consumer's
    // trace alone is no request.
    assert_eq!(second.requests.len(), 1);
    let request = &second.requests[0];
    assert_eq!(request.request_id, vec![1; 16]);
    assert_eq!(request.trace_ids, vec![vec![1; 16], vec![2; 16]]);
    assert_eq!((request.input_tokens, request.output_tokens, request.repairs), (1000, 100, 1));
    assert!(request.broken >= 1 && request.answer.contains("orphan_root"), "{}", request.answer);
    assert!(second.rows.iter().any(|r| r.trace_id == vec![1; 16]), "the producer's trace row is rewritten too");
    assert_eq!(metrics.pipeline.traces_closed.load(Ordering::Relaxed), 2);
    assert_eq!(metrics.pipeline.repairs_applied.load(Ordering::Relaxed), 1);
}

#[test]
fn a_request_answered_whole_is_not_answered_again_without_a_trace_the_window_dropped() {
    // Room for the hand-off's two traces and a rival beside them; a fourth
    // trace makes the window drop the oldest, the producer's.
    let (mut a, metrics) = assembler(PipelineConfig { max_buffered_spans: 8, ..config() });
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let (producer, consumer) = broken_handoff();
    // A rival in the same session, at the same time, still receiving spans.
    let rival = |id: u8| {
        let mut s = span(3, id, if id == 5 { None } else { Some(5) }, "plan", "planner", 100, 400);
        s.attributes.set("session.id", "s-1");
        packed(&[s])
    };
    a.add(1, producer, t0);
    a.add(2, rival(5), t0);
    a.add(3, rival(6), at(80));
    assert_eq!(a.close_due(at(120), false).requests.len(), 1, "the producer's trace closes alone");
    a.add(4, consumer, at(130));
    a.add(5, rival(7), at(200));
    let joined = a.close_due(at(250), false);
    let request = joined.requests.iter().find(|r| r.trace_ids.contains(&vec![2; 16])).expect("the consumer's request");
    assert_eq!(request.request_id, vec![1; 16], "joined to the producer's request");
    // Answered beside the open rival, the request would be looked at again
    // once the rival closes; meanwhile the window drops the producer's trace.
    let filler = packed(&[span(4, 8, None, "other", "other", 0, 10), span(4, 9, Some(8), "step", "other", 1, 9)]);
    a.add(6, filler, at(260));
    let mut later = a.close_due(at(270), false).requests;
    assert_eq!(metrics.pipeline.window_evicted_traces.load(Ordering::Relaxed), 1);
    assert!(a.held(TraceId::new([1; 16]).unwrap()).is_none(), "the producer's trace was dropped");
    later.extend(a.close_due(at(500), false).requests);
    later.extend(a.close_due(at(700), false).requests);
    // The consumer's trace is not answered again on its own: the stored
    // answer, with both traces, stands.
    assert!(
        later.iter().all(|r| !r.trace_ids.contains(&vec![2; 16])),
        "the join came undone: {:?}",
        later.iter().map(|r| (&r.request_id, &r.trace_ids)).collect::<Vec<_>>()
    );
}

#[test]
fn memory_stays_within_budget_and_evictions_are_counted() {
    let (mut a, metrics) = assembler(PipelineConfig { max_buffered_spans: 3, ..config() });
    let t0 = Instant::now();
    let (producer, consumer) = broken_handoff();
    a.add(1, producer, t0);
    a.close_due(t0 + Duration::from_millis(150), false);
    a.add(2, consumer, t0 + Duration::from_millis(160));
    // Four spans held, budget three: the window's trace goes first.
    a.close_due(t0 + Duration::from_millis(170), false);
    assert!(a.buffered <= 3, "{}", a.buffered);
    assert_eq!(metrics.pipeline.window_evicted_traces.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.pipeline.buffered_spans.load(Ordering::Relaxed), a.buffered as u64);
}

#[test]
fn closing_everything_on_shutdown_diagnoses_what_is_open() {
    let (mut a, _) = assembler(config());
    let (producer, consumer) = broken_handoff();
    let t0 = Instant::now();
    a.add(1, producer, t0);
    a.add(2, consumer, t0);
    let closed = a.close_due(t0, true);
    assert_eq!(closed.rows.len(), 2);
    assert_eq!(closed.requests.len(), 1, "one request, written once: {:?}", closed.requests);
    assert_eq!(a.watermark(2), 2);
}

#[test]
fn open_traces_close_early_until_memory_is_within_budget() {
    let (mut a, metrics) = assembler(PipelineConfig { max_buffered_spans: 3, ..config() });
    let t0 = Instant::now();
    let (producer, consumer) = broken_handoff();
    a.add(1, producer, t0);
    a.add(2, consumer, t0 + Duration::from_millis(10));
    // Nothing is due yet, but four spans are held for a budget of three:
    // the oldest trace closes early, and is then dropped from the window.
    let closed = a.close_due(t0 + Duration::from_millis(20), false);
    assert_eq!(closed.requests.len(), 1);
    assert_eq!(closed.requests[0].request_id, vec![1; 16]);
    assert_eq!(metrics.pipeline.traces_closed.load(Ordering::Relaxed), 1, "only the oldest closed");
    assert!(a.buffered <= 3, "{}", a.buffered);
    assert_eq!(metrics.pipeline.traces_closed_early.load(Ordering::Relaxed), 1);
}

/// Cases of the doctor's real-library corpus whose answers depend on
/// joins across traces: a Celery worker that lost the task's context, a
/// thread pool, an MCP gateway, an OpenAI Agents SDK hand-off.
const ORDER_CASES: [&str; 4] = [
    "celery/cases/celery_worker_loses_context_in_task_thread",
    "inprocess/cases/inprocess_thread_pool_loses_context",
    "mcp2/cases/mcp2_http_gateway_raw_client_broken",
    "http/cases/http_server_does_not_extract_concurrent",
];

fn corpus_batches(case: &str) -> Vec<Vec<Packed>> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../doctor/tests/corpus").join(case).join("spans.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let request = agentrace_model::otlp::decode_json(l.as_bytes(), &Default::default()).unwrap().request;
            pack(&crate::wire::Encoded::new(&request))
        })
        .collect()
}

/// The file doctor's answers for `spans` (as `assembler()` configures the
/// pipeline's doctor), keyed as [`stored`] keys the live ones.
fn file_answers(spans: &[Span]) -> std::collections::BTreeMap<(Vec<u8>, Vec<u8>), agentrace_doctor::RequestAnswer> {
    Doctor::new(DoctorConfig::default())
        .analyse(spans)
        .request_answers()
        .into_iter()
        .map(|a| ((a.request.trace_id.as_bytes().to_vec(), a.request.span_id.as_bytes().to_vec()), a))
        .collect()
}

/// The request rows the store would hold after applying every round's
/// output in order, keyed by (request, root), as answers.
fn stored(rounds: &[Closed]) -> std::collections::BTreeMap<(Vec<u8>, Vec<u8>), agentrace_doctor::RequestAnswer> {
    let mut rows = std::collections::BTreeMap::new();
    for round in rounds {
        rows.retain(|(id, _): &(Vec<u8>, Vec<u8>), _| !round.retired_requests.contains(id));
        for r in &round.requests {
            let answer: agentrace_doctor::RequestAnswer = serde_json::from_str(&r.answer).unwrap();
            rows.insert((r.request_id.clone(), r.root_span_id.clone()), answer);
        }
    }
    rows
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// In any arrival order, with batches arriving so late that some traces
    /// close, are stored, and reopen, the requests the pipeline finally
    /// stores are the file doctor's, answer for answer.
    #[test]
    fn any_arrival_order_gives_the_file_doctors_requests(
        case in 0..ORDER_CASES.len(),
        order in proptest::collection::vec(proptest::prelude::any::<u64>(), 64),
        gaps in proptest::collection::vec(0u64..250, 64),
    ) {
        let batches = corpus_batches(ORDER_CASES[case]);
        let spans: Vec<Span> = batches
            .iter()
            .flatten()
            .flat_map(|p| p.span.unpack())
            .collect();
        let file = file_answers(&spans);

        let mut indexed: Vec<(u64, Vec<Packed>)> =
            batches.into_iter().enumerate().map(|(i, b)| (order[i % order.len()] ^ i as u64, b)).collect();
        indexed.sort_by_key(|(k, _)| *k);
        let (mut a, _) = assembler(config());
        let mut now = Instant::now();
        let mut rounds = Vec::new();
        for (i, (_, batch)) in indexed.into_iter().enumerate() {
            a.add(i as u64 + 1, batch, now);
            // Up to 2.5 trace timeouts between batches: some traces close
            // before a late relative arrives.
            now += Duration::from_millis(gaps[i % gaps.len()]);
            rounds.push(a.close_due(now, false));
        }
        rounds.push(a.close_due(now + Duration::from_secs(1), false));
        let live = stored(&rounds);
        let show = |m: &std::collections::BTreeMap<(Vec<u8>, Vec<u8>), agentrace_doctor::RequestAnswer>, other: &std::collections::BTreeMap<(Vec<u8>, Vec<u8>), agentrace_doctor::RequestAnswer>| {
            m.iter()
                .filter(|(k, _)| !other.contains_key(*k))
                .map(|(_, a)| format!("{} {} / {} traces {:?} repairs {:?}", a.request.trace_id, a.request.service, a.request.name, a.request.original_traces, a.repairs.iter().map(|r| (r.trace_id, r.parent_trace_id, r.applied, r.evidence)).collect::<Vec<_>>()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        proptest::prop_assert!(
            live.keys().eq(file.keys()),
            "live only:\n{}\nfile only:\n{}",
            show(&live, &file),
            show(&file, &live)
        );
        for (key, want) in &file {
            let (got, want) = (serde_json::to_string_pretty(&live[key]).unwrap(), serde_json::to_string_pretty(want).unwrap());
            let diff: Vec<String> = got
                .lines()
                .zip(want.lines())
                .filter(|(g, w)| g != w)
                .map(|(g, w)| format!("live: {g}\nfile: {w}"))
                .collect();
            proptest::prop_assert!(diff.is_empty(), "request {:?} differs from the file doctor's:\n{}", key, diff.join("\n"));
        }
    }
}

/// A thread-pool job that lost its context, and the request it ran in.
fn pool_job() -> (Vec<Packed>, Vec<Packed>) {
    let resource = Arc::new({
        let mut r = Resource::for_service("worker");
        r.attributes.set("service.instance.id", "worker-1");
        r
    });
    let mut root = span(1, 1, None, "POST /run", "worker", 0, 1000);
    root.kind = SpanKind::Server;
    let step = span(1, 2, Some(1), "plan step", "worker", 20, 950);
    let job = span(2, 3, None, "fetch sources", "worker", 100, 300);
    let (mut parent, mut orphan) = (vec![root, step], vec![job]);
    for s in parent.iter_mut().chain(orphan.iter_mut()) {
        s.resource = Arc::clone(&resource);
    }
    (packed(&parent), packed(&orphan))
}

#[test]
fn an_orphan_joined_by_time_alone_waits_for_its_parents_trace_to_close() {
    let (mut a, metrics) = assembler(config());
    let t0 = Instant::now();
    let (parent, orphan) = pool_job();
    // The request's root has not ended when the job's trace goes quiet:
    // the parent's trace keeps receiving spans.
    a.add(1, parent, t0);
    a.add(2, orphan, t0);
    let keep_open = |a: &mut Assembler, at: Instant| {
        let late = span(1, 9, Some(1), "heartbeat", "worker", 960, 970);
        a.add(3, packed(&[late]), at);
    };
    keep_open(&mut a, t0 + Duration::from_millis(80));
    // The job's trace is quiet, its parent's is not: the job's close is
    // put off, nothing of it is stored, and its request number holds the
    // exporters back.
    let first = a.close_due(t0 + Duration::from_millis(150), false);
    assert!(first.requests.is_empty(), "{:?}", first.requests);
    assert_eq!(metrics.pipeline.traces_deferred.load(Ordering::Relaxed), 1);
    assert_eq!(a.watermark(3), 0, "nothing may be exported yet");
    // The parent's trace closes: the request is decided with both in it,
    // and the job that waited closes in the same round (not a tick later,
    // when a caller that reads the store after each round would have seen
    // a half-decided request), so everything may be exported.
    let second = a.close_due(t0 + Duration::from_millis(300), false);
    assert_eq!(second.requests.len(), 1, "{:?}", second.requests);
    assert_eq!(second.requests[0].trace_ids.len(), 2, "parent and job, joined by time: {:?}", second.requests);
    assert!(second.requests[0].answer.contains("heuristic.same_instance"), "{}", second.requests[0].answer);
    assert_eq!(a.watermark(3), 3);
    assert_eq!(metrics.pipeline.traces_closed.load(Ordering::Relaxed), 2);
}

#[test]
fn an_orphan_joined_by_time_alone_waits_for_a_parents_root_for_a_few_timeouts() {
    for root_comes in [true, false] {
        let (mut a, metrics) = assembler(config());
        let t0 = Instant::now();
        let (parent, job) = pool_job();
        let (root, step): (Vec<Packed>, Vec<Packed>) = parent
            .into_iter()
            .map(|p| {
                // Split the request's batch: the root span ends last and comes later.
                let spans = p.span.unpack();
                let (r, s): (Vec<Span>, Vec<Span>) = spans.into_iter().partition(|s| s.parent_span_id.is_none());
                (packed(&r), packed(&s))
            })
            .fold((Vec::new(), Vec::new()), |(mut r, mut s), (a, b)| {
                r.extend(a);
                s.extend(b);
                (r, s)
            });
        a.add(1, step, t0);
        a.add(2, job, t0);
        // Both quiet: the request's trace closes without its root, and the
        // job, which only time joins to it, waits.
        a.close_due(t0 + Duration::from_millis(150), false);
        assert_eq!(metrics.pipeline.traces_deferred.load(Ordering::Relaxed), 1, "root comes: {root_comes}");
        assert_eq!(a.watermark(2), 1, "the job's request is held back");
        if root_comes {
            a.add(3, root, t0 + Duration::from_millis(300));
            a.close_due(t0 + Duration::from_millis(350), false);
            assert_eq!(a.watermark(3), 1, "the job waits for the reopened trace");
            let mut requests = Vec::new();
            for at in [450, 600] {
                requests.extend(a.close_due(t0 + Duration::from_millis(at), false).requests);
            }
            let job_request = requests.iter().rev().find(|r| r.trace_ids.contains(&vec![2; 16])).expect("decided");
            assert_eq!(job_request.trace_ids.len(), 2, "joined with the whole request in view");
            assert_eq!(a.watermark(3), 3);
        } else {
            // A root that never comes holds the job back four trace
            // timeouts after its trace closed, no longer.
            a.close_due(t0 + Duration::from_millis(500), false);
            assert_eq!(a.watermark(2), 1);
            a.close_due(t0 + Duration::from_millis(600), false);
            assert_eq!(a.watermark(2), 2, "decided once the wait is over");
        }
    }
}

/// A job queue and a thread pool, as the demo with propagation off sends them: the planner's
/// `send` (trace 1), the consumer that took its message (trace 2, whose root ends last), and a
/// pool job of the consumer's service that lost its context (trace 3).
fn queue_then_pool_job() -> (Vec<Packed>, Vec<Packed>, Vec<Packed>, Vec<Packed>) {
    let with_session = |mut s: Span| {
        s.attributes.set("session.id", "s-1");
        s
    };
    let root = with_session(span(1, 1, None, "invoke_agent planner", "planner", 0, 1000));
    let mut send = with_session(span(1, 2, Some(1), "send jobs.budgeter", "planner", 10, 20));
    send.kind = SpanKind::Producer;
    send.attributes.set("messaging.message.id", "m-1");
    send.attributes.set("messaging.destination.name", "jobs.budgeter");
    let mut process = with_session(span(2, 3, None, "process jobs.budgeter", "budgeter", 50, 900));
    process.kind = SpanKind::Consumer;
    process.attributes.set("messaging.message.id", "m-1");
    process.attributes.set("messaging.destination.name", "jobs.budgeter");
    let agent = with_session(span(2, 4, Some(3), "invoke_agent budgeter", "budgeter", 60, 890));
    let early = with_session(span(2, 5, Some(4), "chat gpt-4o-mini", "budgeter", 70, 100));
    let job = with_session(span(3, 6, None, "retrieval travel-guide", "budgeter", 110, 130));
    (packed(&[root, send]), packed(&[early]), packed(&[process, agent]), packed(&[job]))
}

#[test]
fn an_orphan_joined_by_time_alone_waits_for_the_traces_beside_it() {
    let (mut a, metrics) = assembler(config());
    let t0 = Instant::now();
    let (planner, consumer_early, consumer_late, job) = queue_then_pool_job();
    a.add(1, planner, t0);
    a.add(2, consumer_early, t0);
    a.add(3, job, t0);
    // The consumer's trace keeps receiving spans; its root, which carries
    // the message ID, ends last and arrives after the job's trace is quiet.
    let more = span(2, 7, Some(4), "execute_tool estimate_budget", "budgeter", 140, 160);
    a.add(4, packed(&[more]), t0 + Duration::from_millis(80));
    // The store, as the pipeline writes it: a trace's patches replaced
    // whole whenever it has a row; what an exporter would send for the
    // job's span once the watermark passes its request.
    let mut patches: std::collections::HashMap<(Vec<u8>, Vec<u8>), String> = Default::default();
    let mut exported = None;
    let mut rounds = Vec::new();
    let mut consumer_late = Some(consumer_late);
    for (at, late) in [(150, false), (200, true), (350, false), (500, false), (700, false)] {
        let now = t0 + Duration::from_millis(at);
        if late {
            a.add(5, consumer_late.take().unwrap(), now);
            continue;
        }
        let closed = a.close_due(now, false);
        for row in &closed.rows {
            patches.retain(|(t, _), _| *t != row.trace_id);
        }
        for p in &closed.patches {
            patches.insert((p.trace_id.clone(), p.span_id.clone()), p.patch.clone());
        }
        if exported.is_none() && a.watermark(5) >= 3 {
            exported = Some(patches.get(&(vec![3; 16], vec![6; 8])).cloned());
        }
        rounds.push(closed);
    }
    // Seen without the consumer, the planner's producer looked like one
    // whose message nobody took, and the job like its far side: a guess by
    // time alone. The job waited for the consumer's trace instead.
    assert_eq!(metrics.pipeline.traces_deferred.load(Ordering::Relaxed), 1);
    assert_eq!(exported, Some(None), "the job's span goes out as it was sent");
    let stored = stored(&rounds);
    let requests: Vec<Vec<u8>> = stored.keys().map(|(id, _)| id.clone()).collect();
    assert_eq!(requests, vec![vec![1; 16], vec![3; 16]], "the request and the job on its own");
    assert_eq!(stored[&(vec![1; 16], vec![1; 8])].request.original_traces.len(), 2, "queue hop joined");
}

/// Every case of the real-library corpus, delivered one service at a time
/// (callers first on even seeds, callees first on odd ones) with gaps
/// between batches that now and then outlast the trace timeout, as a busy
/// machine delivers them: traces close half-arrived, rivals arrive after a
/// request was answered, and the stored requests must still end as the
/// file doctor's. Seed 8 once left an orphan unjoined (a request answered
/// beside half-arrived rivals kept that answer; now it is diagnosed again
/// once they closed); seeds 30 and 39 too (a rival seen without its late
/// parent unjoined an earlier request; now a trace that reopens has what
/// was answered beside it diagnosed again). Seeds 0–47 all pass (run by hand).
#[test]
fn every_case_one_service_at_a_time_with_late_batches_ends_as_the_file_doctors() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../doctor/tests/corpus");
    let mut cases = Vec::new();
    for suite in std::fs::read_dir(&root).unwrap().flatten() {
        let Ok(entries) = std::fs::read_dir(suite.path().join("cases")) else { continue };
        for case in entries.flatten() {
            if case.path().join("spans.jsonl").is_file() {
                cases.push(case.path());
            }
        }
    }
    cases.sort();
    assert!(cases.len() > 100, "the corpus is there: {} cases", cases.len());
    let mut wrong = Vec::new();
    for dir in cases {
        let text = std::fs::read_to_string(dir.join("spans.jsonl")).unwrap();
        let batches: Vec<(String, _)> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let request = agentrace_model::otlp::decode_json(l.as_bytes(), &Default::default()).unwrap().request;
                let service = request
                    .resource_spans
                    .first()
                    .and_then(|r| r.resource.as_ref())
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .map(|a| format!("{:?}", a.value))
                    .unwrap_or_default();
                (service, request)
            })
            .collect();
        let spans: Vec<Span> = batches
            .iter()
            .flat_map(|(_, b)| pack(&crate::wire::Encoded::new(b)))
            .flat_map(|p| p.span.unpack())
            .collect();
        let file = file_answers(&spans);
        let mut services: Vec<String> = Vec::new();
        for (s, _) in &batches {
            if !services.contains(s) {
                services.push(s.clone());
            }
        }
        for seed in [8u64, 30, 39] {
            let mut order = services.clone();
            if seed % 2 == 1 {
                order.reverse();
            }
            let (mut a, _) =
                assembler(PipelineConfig { trace_timeout: Duration::from_millis(300), ..PipelineConfig::default() });
            let mut now = Instant::now();
            let mut rounds = Vec::new();
            let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut seq = 0;
            for service in &order {
                for (_, b) in batches.iter().filter(|(s, _)| s == service) {
                    seq += 1;
                    a.add(seq, pack(&crate::wire::Encoded::new(b)), now);
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    // One batch in six comes 200–600 ms late (the timeout is 300 ms).
                    let gap = if (rng >> 33) % 6 == 0 { 200 + (rng >> 45) % 400 } else { (rng >> 40) % 80 };
                    now += Duration::from_millis(gap);
                    rounds.push(a.close_due(now, false));
                }
                now += Duration::from_secs(2);
                rounds.push(a.close_due(now, false));
            }
            rounds.push(a.close_due(now + Duration::from_secs(1), false));
            let live = stored(&rounds);
            if live != file {
                let mut what = String::new();
                for (k, w) in &file {
                    if live.get(k) != Some(w) {
                        what += &format!(
                            "\n  file: {} / {} of traces {:?}; live: {:?}",
                            w.request.service,
                            w.request.name,
                            w.request.original_traces,
                            live.get(k).map(|l| &l.request.original_traces)
                        );
                    }
                }
                for (k, l) in live.iter().filter(|(k, _)| !file.contains_key(*k)) {
                    what += &format!(
                        "\n  live only: {} / {} of traces {:?} ({:?})",
                        l.request.service, l.request.name, l.request.original_traces, k
                    );
                }
                wrong.push(format!("{} (seed {seed}):{what}", dir.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{} deliveries end unlike the file doctor:\n{}", wrong.len(), wrong.join("\n"));
}

/// The file doctor's answers over `spans`, after asserting that the rows
/// stored from `rounds` are those answers, request for request.
fn ends_as_the_file_doctor(
    rounds: &[Closed],
    spans: &[Span],
) -> std::collections::BTreeMap<(Vec<u8>, Vec<u8>), agentrace_doctor::RequestAnswer> {
    let file = file_answers(spans);
    let live = stored(rounds);
    assert_eq!(live.keys().collect::<Vec<_>>(), file.keys().collect::<Vec<_>>());
    for (key, want) in &file {
        assert_eq!(serde_json::to_value(&live[key]).unwrap(), serde_json::to_value(want).unwrap(), "request {key:?}");
    }
    file
}

/// A caller's turn (trace `caller`: its root and a model call) and a job
/// (trace `job`: its root and its work) of the same service that started
/// during the turn in a trace of its own and outlived it, from `at` ms:
/// `[caller root, caller chat, job root, job work]`.
fn job_beside_caller(job: u8, caller: u8, service: &str, at: u64) -> [Span; 4] {
    [
        span(caller, 1, None, "agent turn", service, at, at + 1000),
        span(caller, 2, Some(1), "chat gpt-4o", service, at + 10, at + 100),
        span(job, 3, None, "summarise", service, at + 500, at + 2500),
        span(job, 4, Some(3), "work", service, at + 600, at + 2400),
    ]
}

/// A job that lost its caller's context and outlived it: it closes while
/// the caller's trace is open with only a child arrived, so nothing seemed
/// to run in its instance when it started; the caller's root arrives later
/// and ends long before the job does. With the caller whole, the file
/// doctor says the job lost its context (a suggestion, not a join), and
/// the job's own request row must end saying so too, though the caller's
/// close cannot rewrite it (the job reaches far past the caller). This is
/// why a healthy request answered beside open traces is diagnosed again
/// when they close with spans they did not have: skipping that (tried,
/// 1.3x less CPU per span under load) left this job's row healthy.
#[test]
fn a_job_that_outlived_a_caller_still_arriving_ends_as_the_file_doctors() {
    let (mut a, _) = assembler(config());
    let t0 = Instant::now();
    let [caller_root, caller_chat, job_root, job_work] = job_beside_caller(1, 2, "agent", 0);
    let spans = vec![caller_root.clone(), caller_chat.clone(), job_root.clone(), job_work.clone()];
    a.add(1, packed(&[job_root, job_work]), t0);
    a.add(2, packed(&[caller_chat]), t0 + Duration::from_millis(80));
    let mut rounds = vec![a.close_due(t0 + Duration::from_millis(120), false)];
    a.add(3, packed(&[caller_root]), t0 + Duration::from_millis(150));
    rounds.push(a.close_due(t0 + Duration::from_millis(300), false));
    rounds.push(a.close_due(t0 + Duration::from_secs(1), false));
    ends_as_the_file_doctor(&rounds, &spans);
}

/// Five jobs like the one of the test above, each beside its own caller
/// still arriving, in services and minutes of their own: all five are
/// rechecked in the same round, and together hold more spans than one
/// context. A recheck diagnosed them in one batch of the rechecked traces
/// alone, with no room left for the callers they waited for: every job
/// kept the healthy answer it had without its caller.
#[test]
fn requests_rechecked_together_each_read_what_they_waited_for() {
    let (mut a, metrics) = assembler(PipelineConfig { max_context_spans: 8, ..config() });
    let t0 = Instant::now();
    let mut spans = Vec::new();
    let mut roots = Vec::new();
    for k in 0..5u8 {
        let (at, service) = (u64::from(k) * 100_000, format!("agent{k}"));
        let [caller_root, caller_chat, job_root, job_work] = job_beside_caller(10 + k, 20 + k, &service, at);
        spans.extend([caller_root.clone(), caller_chat.clone(), job_root.clone(), job_work.clone()]);
        a.add(u64::from(k) * 3 + 1, packed(&[job_root, job_work]), t0);
        a.add(u64::from(k) * 3 + 2, packed(&[caller_chat]), t0 + Duration::from_millis(80));
        roots.push((u64::from(k) * 3 + 3, caller_root));
    }
    let mut rounds = vec![a.close_due(t0 + Duration::from_millis(120), false)];
    for (seq, root) in roots {
        a.add(seq, packed(&[root]), t0 + Duration::from_millis(150));
    }
    rounds.push(a.close_due(t0 + Duration::from_millis(300), false));
    rounds.push(a.close_due(t0 + Duration::from_secs(1), false));
    assert_eq!(metrics.pipeline.requests_rechecked.load(Ordering::Relaxed), 5, "each job was rechecked");
    let file = ends_as_the_file_doctor(&rounds, &spans);
    let lost = file.values().filter(|a| a.findings.iter().any(|f| f.kind.as_str() == "lost_context")).count();
    assert_eq!(lost, 5, "the file doctor says each job lost its caller's context");
}

/// The job of the tests above beside a caller that had arrived whole when
/// the job was answered: the caller closes later with nothing new, so the
/// job's answer stands as it was worked out, without a second diagnosis.
#[test]
fn a_request_beside_traces_that_gained_nothing_is_not_diagnosed_again() {
    let (mut a, metrics) = assembler(config());
    let t0 = Instant::now();
    let [caller_root, caller_chat, job_root, job_work] = job_beside_caller(1, 2, "agent", 0);
    let spans = vec![caller_root.clone(), caller_chat.clone(), job_root.clone(), job_work.clone()];
    a.add(1, packed(&[job_root, job_work]), t0);
    a.add(2, packed(&[caller_root, caller_chat]), t0 + Duration::from_millis(80));
    let mut rounds = vec![a.close_due(t0 + Duration::from_millis(120), false)];
    assert!(rounds[0].requests.iter().any(|r| r.request_id == vec![1; 16]), "the job is answered");
    assert!(a.open.contains_key(&TraceId::new([2; 16]).unwrap()), "while its caller is open");
    rounds.push(a.close_due(t0 + Duration::from_millis(300), false));
    rounds.push(a.close_due(t0 + Duration::from_secs(1), false));
    assert_eq!(metrics.pipeline.requests_rechecked.load(Ordering::Relaxed), 0);
    assert_eq!(metrics.pipeline.contexts_cut.load(Ordering::Relaxed), 0, "every context held what ran beside it");
    ends_as_the_file_doctor(&rounds, &spans);
}

/// Twelve requests of one service at the same time, closing together: a
/// context of eight spans holds a batch and few of the others, and each
/// diagnosis that left one out is counted, since its answer may differ from
/// the file doctor's; the default context holds them all.
#[test]
fn a_context_that_leaves_traces_out_is_counted() {
    let traffic = |a: &mut Assembler, t0: Instant| {
        for k in 1..=12u8 {
            let root = span(k, 1, None, "POST /run", "agent", u64::from(k), 500);
            let chat = span(k, 2, Some(1), "chat gpt-4o", "agent", u64::from(k) + 1, 400);
            a.add(u64::from(k), packed(&[root, chat]), t0);
        }
        a.close_due(t0 + Duration::from_secs(1), false)
    };
    let t0 = Instant::now();
    let (mut cut, metrics) = assembler(PipelineConfig { max_context_spans: 8, ..config() });
    assert_eq!(traffic(&mut cut, t0).requests.len(), 12);
    assert!(metrics.pipeline.contexts_cut.load(Ordering::Relaxed) > 0, "eight spans left traces out");
    let (mut whole, metrics) = assembler(config());
    assert_eq!(traffic(&mut whole, t0).requests.len(), 12);
    assert_eq!(metrics.pipeline.contexts_cut.load(Ordering::Relaxed), 0, "the default holds every trace");
}

/// The receivers pack the pipeline's blocks in the walk that reads the
/// store's rows: for every request of the corpus (many resources, scopes and
/// traces per request, content and join keys of every framework), the
/// blocks are `pack`'s and the rows `from_encoded`'s, byte for byte.
#[test]
fn packing_in_the_stores_walk_gives_what_packing_alone_gives() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../doctor/tests/corpus");
    let mut requests = 0;
    for suite in std::fs::read_dir(&root).unwrap().flatten() {
        let Ok(entries) = std::fs::read_dir(suite.path().join("cases")) else { continue };
        for case in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(case.path().join("spans.jsonl")) else { continue };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let request = agentrace_model::otlp::decode_json(line.as_bytes(), &Default::default()).unwrap().request;
                let encoded = crate::wire::Encoded::new(&request);
                let mut packer = Packer::default();
                let rows = PreparedBatch::from_encoded_packing(&encoded, &mut packer);
                let together = packer.finish();
                assert_eq!(format!("{together:?}"), format!("{:?}", pack(&encoded)), "{}", case.path().display());
                assert_eq!(
                    format!("{rows:?}"),
                    format!("{:?}", PreparedBatch::from_encoded(&encoded)),
                    "{}",
                    case.path().display()
                );
                assert_eq!(together.iter().map(|p| p.span.count).sum::<usize>(), rows.len());
                requests += 1;
            }
        }
    }
    assert!(requests > 500, "the corpus is there: {requests} requests");
}
