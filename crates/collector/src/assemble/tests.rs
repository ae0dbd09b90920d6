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
    pack(&Span::to_request(spans))
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
    let row = &second.rows[0];
    assert_eq!(row.trace_id, vec![2; 16]);
    assert_eq!(row.connected_trace_id, vec![1; 16], "the consumer's trace now belongs to the producer's");
    assert_eq!((row.input_tokens, row.output_tokens), (1000, 100));
    assert!(row.cost_usd > 0.0);
    assert_eq!(row.repairs, 1);
    assert!(row.findings >= 1 && row.diagnosis.contains("orphan_root"), "{}", row.diagnosis);
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
    assert_eq!(metrics.pipeline.traces_closed.load(Ordering::Relaxed), 2);
    assert_eq!(metrics.pipeline.repairs_applied.load(Ordering::Relaxed), 1);
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
    assert_eq!(closed.rows.len(), 1);
    assert_eq!(closed.rows[0].trace_id, vec![1; 16]);
    assert!(a.buffered <= 3, "{}", a.buffered);
    assert_eq!(metrics.pipeline.traces_closed_early.load(Ordering::Relaxed), 1);
}
