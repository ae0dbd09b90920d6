//! Assembly and live diagnosis: spans become traces, traces are closed
//! after `--trace-timeout` without a new span, and each closed trace is
//! diagnosed by the doctor together with the traces of its session.
//!
//! On the data's road this sits beside the store, after redaction: the
//! receivers hand every redacted request to the [`PipelineHandle`] (in the
//! order of a sequence number that the exporters' queue rows share), and a
//! thread of its own runs the [`Assembler`]. What it finds is kept in the
//! store: a row per trace for the trace list (tokens, cost, agents,
//! findings), and a patch per repaired or rolled-up span for the exporters.
//!
//! Memory is bounded: open traces and the session window together hold at
//! most `pipeline.max_buffered_spans` spans. Past it the oldest window
//! traces are dropped, then the oldest open traces are closed early; both
//! are counted in `/metrics`. A late span of a trace still in the window
//! reopens it, and the trace is diagnosed again.
//!
//! It must never block a receiver: a full hand-off queue is answered with a
//! retryable refusal, like a full store.

mod packed;
mod summary;

pub use packed::{Packed, PackedSpan, pack};

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use agentrace_doctor::{Config as DoctorConfig, Doctor};
use agentrace_model::{Span, TraceId};

use crate::config::PipelineConfig;
use crate::metrics::Metrics;
use crate::store::{AnalysisRow, PatchRow, PreparedBatch, Store};

/// Requests waiting for the pipeline thread, at most; past it receivers
/// answer "busy, retry". Spans waiting are bounded too (a quarter of the
/// memory budget), so a pipeline slower than the receivers slows the
/// senders instead of growing.
const HANDOFF_CAPACITY: usize = 4096;

/// A join key found on more traces than this names no single partner and
/// is not followed when gathering a trace's context.
const MAX_TRACES_PER_JOIN_KEY: usize = 4;

/// Traces of the same session that overlap a closing trace in time, at
/// most, given to its diagnosis (where a heuristic join looks for a caller).
const MAX_SESSION_CONTEXT_TRACES: usize = 8;

/// The hand-off queue to the pipeline was full.
#[derive(Debug, thiserror::Error)]
#[error("the live pipeline is {0} spans behind; retry shortly")]
pub struct PipelineBusy(usize);

struct Arrival {
    seq: u64,
    spans: Vec<Packed>,
    count: usize,
}

struct Sequencer {
    next: u64,
    tx: Option<mpsc::SyncSender<Arrival>>,
    /// Spans handed over and not yet taken by the pipeline thread.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    max_in_flight: usize,
}

/// The receivers' side of the pipeline; cheap to clone.
#[derive(Clone)]
pub struct PipelineHandle {
    sequencer: Arc<Mutex<Sequencer>>,
    watermark: Arc<AtomicU64>,
}

impl PipelineHandle {
    /// Numbers a request and hands its spans to the pipeline. The number
    /// orders the request's export queue rows against [`Self::watermark`].
    pub fn offer(&self, spans: Vec<Packed>) -> Result<u64, PipelineBusy> {
        let mut s = self.sequencer.lock().unwrap_or_else(|p| p.into_inner());
        let seq = s.next;
        if let Some(tx) = &s.tx {
            let count: usize = spans.iter().map(|p| p.span.count).sum();
            let waiting = s.in_flight.load(Ordering::Acquire);
            // One request always goes through to an idle pipeline, whatever its size.
            if waiting > 0 && waiting + count > s.max_in_flight {
                return Err(PipelineBusy(waiting));
            }
            match tx.try_send(Arrival { seq, spans, count }) {
                Ok(()) => {
                    s.in_flight.fetch_add(count, Ordering::AcqRel);
                }
                Err(mpsc::TrySendError::Full(_)) => return Err(PipelineBusy(waiting)),
                // The pipeline stopped (shutdown): spans are still stored and
                // exported, only not diagnosed live.
                Err(mpsc::TrySendError::Disconnected(_)) => {}
            }
        }
        s.next += 1;
        Ok(seq)
    }

    /// Whether spans go to a live pipeline (else [`Self::offer`] only numbers them).
    pub fn is_live(&self) -> bool {
        self.sequencer.lock().unwrap_or_else(|p| p.into_inner()).tx.is_some()
    }

    /// Every request numbered up to this has been diagnosed, its trace
    /// closed, and its patches stored: exporters that repair may send it.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }
}

/// The running pipeline thread.
pub struct Pipeline {
    handle: PipelineHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pipeline {
    /// A pipeline that only numbers requests (`pipeline.enabled: false`).
    pub fn disabled(first_seq: u64) -> Pipeline {
        let handle = PipelineHandle {
            sequencer: Arc::new(Mutex::new(Sequencer {
                next: first_seq,
                tx: None,
                in_flight: Default::default(),
                max_in_flight: 0,
            })),
            watermark: Arc::new(AtomicU64::new(u64::MAX)),
        };
        Pipeline { handle, thread: None }
    }

    /// Starts the pipeline thread. Requests are numbered from `first_seq`;
    /// `replay` (requests still queued for export when the collector last
    /// stopped, with their numbers) is assembled first.
    pub fn start(
        config: PipelineConfig,
        store: Store,
        metrics: Arc<Metrics>,
        first_seq: u64,
        replay: Vec<(u64, Vec<Packed>)>,
        want_patches: bool,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Pipeline> {
        let (tx, rx) = mpsc::sync_channel(HANDOFF_CAPACITY);
        let doctor = Doctor::new(DoctorConfig {
            apply_threshold: config.apply_threshold,
            include_tree: false,
            ..DoctorConfig::default()
        });
        let max_in_flight = (config.max_buffered_spans / 4).max(1);
        let mut assembler = Assembler::new(config, doctor, Arc::clone(&metrics)).with_patches(want_patches);
        let now = Instant::now();
        for (seq, spans) in replay {
            assembler.add(seq, spans, now);
        }
        let in_flight: Arc<std::sync::atomic::AtomicUsize> = Default::default();
        // Replayed requests wait for their traces to close like new ones.
        let watermark = Arc::new(AtomicU64::new(assembler.watermark(first_seq.saturating_sub(1))));
        let handle = PipelineHandle {
            sequencer: Arc::new(Mutex::new(Sequencer {
                next: first_seq,
                tx: Some(tx),
                in_flight: Arc::clone(&in_flight),
                max_in_flight,
            })),
            watermark: Arc::clone(&watermark),
        };
        let thread = std::thread::Builder::new().name("agentrace-pipeline".into()).spawn(move || {
            run(assembler, rx, in_flight, store, watermark, first_seq.saturating_sub(1), runtime);
        })?;
        Ok(Pipeline { handle, thread: Some(thread) })
    }

    /// The receivers' side.
    pub fn handle(&self) -> PipelineHandle {
        self.handle.clone()
    }

    /// Closes and diagnoses every open trace, keeps the results, and stops.
    pub fn stop(mut self) {
        self.handle.sequencer.lock().unwrap_or_else(|p| p.into_inner()).tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the watermark for good when the pipeline thread ends, however it
/// ends: exporters then send without waiting for diagnoses that will never
/// come, rather than stall.
struct OpenOnExit(Arc<AtomicU64>);

impl Drop for OpenOnExit {
    fn drop(&mut self) {
        self.0.store(u64::MAX, Ordering::Release);
    }
}

fn run(
    mut assembler: Assembler,
    rx: mpsc::Receiver<Arrival>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    store: Store,
    watermark: Arc<AtomicU64>,
    mut last_seq: u64,
    runtime: tokio::runtime::Handle,
) {
    let _open = OpenOnExit(Arc::clone(&watermark));
    let tick = (assembler.config.trace_timeout / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let mut next_tick = Instant::now() + tick;
    let mut stopping = false;
    loop {
        match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(a) => {
                last_seq = last_seq.max(a.seq);
                in_flight.fetch_sub(a.count, Ordering::AcqRel);
                assembler.add(a.seq, a.spans, Instant::now());
                continue_draining(&rx, &in_flight, &mut assembler, &mut last_seq);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => stopping = true,
        }
        let now = Instant::now();
        if now < next_tick && !stopping {
            continue;
        }
        next_tick = now + tick;
        let closed = assembler.close_due(now, stopping);
        if !closed.rows.is_empty() {
            let batch = PreparedBatch::analysis(closed.rows, closed.patches);
            let written = match store.submit(batch) {
                Ok(durable) => runtime.block_on(durable).map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = written {
                // Exports go out unpatched rather than never: the watermark
                // still moves on. The diagnosis can be asked for again on read.
                tracing::error!(error = %e, "could not keep the live diagnosis");
            }
        }
        watermark.store(assembler.watermark(last_seq), Ordering::Release);
        if stopping {
            break;
        }
    }
}

fn continue_draining(
    rx: &mpsc::Receiver<Arrival>,
    in_flight: &std::sync::atomic::AtomicUsize,
    assembler: &mut Assembler,
    last_seq: &mut u64,
) {
    // Take what is already waiting before closing anything, but not so
    // much that closing waits for ever under load.
    for _ in 0..256 {
        match rx.try_recv() {
            Ok(a) => {
                *last_seq = (*last_seq).max(a.seq);
                in_flight.fetch_sub(a.count, Ordering::AcqRel);
                assembler.add(a.seq, a.spans, Instant::now());
            }
            Err(_) => break,
        }
    }
}

/// A trace's buffered spans, its keys and its time range.
struct Held {
    spans: Vec<PackedSpan>,
    keys: HashSet<String>,
    start: u64,
    end: u64,
}

impl Held {
    fn new() -> Held {
        Held { spans: Vec::new(), keys: HashSet::new(), start: u64::MAX, end: 0 }
    }

    fn push(&mut self, p: Packed) {
        self.start = self.start.min(p.span.start);
        self.end = self.end.max(p.span.end);
        self.keys.extend(p.keys);
        self.spans.push(p.span);
    }

    fn unpack(&self) -> Vec<Span> {
        self.spans.iter().flat_map(PackedSpan::unpack).collect()
    }

    fn len(&self) -> usize {
        self.spans.iter().map(|p| p.count).sum()
    }
}

struct OpenTrace {
    held: Held,
    first_seq: u64,
    opened: Instant,
    last_arrival: Instant,
}

struct WindowTrace {
    held: Held,
    closed: Instant,
}

/// What closing some traces produced, for the store.
#[derive(Debug, Default)]
pub struct Closed {
    /// One row per closed trace.
    pub rows: Vec<AnalysisRow>,
    /// Patches for their spans.
    pub patches: Vec<PatchRow>,
}

/// Traces being assembled, and the window of recently closed ones.
pub struct Assembler {
    config: PipelineConfig,
    doctor: Doctor,
    metrics: Arc<Metrics>,
    open: HashMap<TraceId, OpenTrace>,
    window: HashMap<TraceId, WindowTrace>,
    window_order: VecDeque<(Instant, TraceId)>,
    /// Session and join keys → the traces (open or in the window) carrying them.
    keys: HashMap<String, Vec<TraceId>>,
    buffered: usize,
    /// Whether an exporter applies patches (else none are worked out).
    want_patches: bool,
}

impl Assembler {
    /// An empty assembler.
    pub fn new(config: PipelineConfig, doctor: Doctor, metrics: Arc<Metrics>) -> Assembler {
        Assembler {
            config,
            doctor,
            metrics,
            open: HashMap::new(),
            window: HashMap::new(),
            window_order: VecDeque::new(),
            keys: HashMap::new(),
            buffered: 0,
            want_patches: true,
        }
    }

    /// Works out exporters' patches (repairs and rollups) only when some
    /// exporter applies them.
    pub fn with_patches(mut self, want: bool) -> Assembler {
        self.want_patches = want;
        self
    }

    /// Adds spans that arrived in request `seq`.
    pub fn add(&mut self, seq: u64, spans: Vec<Packed>, now: Instant) {
        for p in spans {
            let trace = p.span.trace_id;
            for key in &p.keys {
                let traces = self.keys.entry(key.clone()).or_default();
                if !traces.contains(&trace) {
                    traces.push(trace);
                }
            }
            let open = match self.open.get_mut(&trace) {
                Some(t) => t,
                None => {
                    // A late span of a trace in the window reopens it whole.
                    let earlier = self.window.remove(&trace).map(|w| w.held).unwrap_or_else(Held::new);
                    self.open.entry(trace).or_insert(OpenTrace {
                        held: earlier,
                        first_seq: seq,
                        opened: now,
                        last_arrival: now,
                    })
                }
            };
            self.buffered += p.span.count;
            open.held.push(p);
            open.last_arrival = now;
        }
        self.publish_gauges();
    }

    /// Closes the traces whose time is up (all of them when `all`),
    /// diagnoses each with its session, and keeps the memory budget.
    pub fn close_due(&mut self, now: Instant, all: bool) -> Closed {
        let timeout = self.config.trace_timeout;
        let max_age = self.config.max_trace_age;
        let mut due: Vec<(Instant, TraceId)> = self
            .open
            .iter()
            .filter(|(_, t)| {
                all || now.duration_since(t.last_arrival) >= timeout || now.duration_since(t.opened) >= max_age
            })
            .map(|(id, t)| (t.opened, *id))
            .collect();
        for (_, id) in &due {
            let t = &self.open[id];
            if !all && now.duration_since(t.last_arrival) < timeout {
                self.metrics.pipeline.traces_closed_at_max_age.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Over budget: the window goes first, then the oldest open traces
        // close early (closing moves them to the window, which the pass
        // after closing evicts).
        let mut projected = self.buffered;
        while projected > self.config.max_buffered_spans {
            if let Some(n) = self.evict_oldest_window() {
                projected -= n;
                self.metrics.pipeline.window_evicted_traces.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let pending: HashSet<TraceId> = due.iter().map(|(_, id)| *id).collect();
            let oldest = self.open.iter().filter(|(id, _)| !pending.contains(id)).min_by_key(|(_, t)| t.opened);
            let Some((id, t)) = oldest else { break };
            projected -= t.held.len();
            due.push((t.opened, *id));
            self.metrics.pipeline.traces_closed_early.fetch_add(1, Ordering::Relaxed);
        }
        due.sort();
        let mut out = Closed::default();
        for (_, id) in &due {
            self.close(*id, now, &mut out);
        }
        self.expire_window(now);
        while self.buffered > self.config.max_buffered_spans && self.evict_oldest_window().is_some() {
            self.metrics.pipeline.window_evicted_traces.fetch_add(1, Ordering::Relaxed);
        }
        self.publish_gauges();
        out
    }

    /// Every request numbered up to the answer is in a closed trace.
    pub fn watermark(&self, last_seq: u64) -> u64 {
        match self.open.values().map(|t| t.first_seq).min() {
            Some(first) => first.saturating_sub(1).min(last_seq),
            None => last_seq,
        }
    }

    fn close(&mut self, id: TraceId, now: Instant, out: &mut Closed) {
        let Some(trace) = self.open.remove(&id) else { return };
        let own = trace.held.unpack();
        let n = own.len();
        let context = self.context(id, &trace.held, own);
        self.metrics.pipeline.diagnosed_spans.fetch_add(context.len() as u64, Ordering::Relaxed);
        // Spans come from senders: a bug they trigger in the diagnosis must
        // cost that trace its repairs, not stop the pipeline.
        let diagnosed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (diagnosis, view) = if self.want_patches {
                self.doctor.analyse_with_view(&context)
            } else {
                (self.doctor.analyse(&context), Vec::new())
            };
            summary::summarise(id, &context[..n], &diagnosis, &view, self.doctor.config())
        }));
        let (row, patches) = match diagnosed {
            Ok(done) => done,
            Err(_) => {
                tracing::error!(trace = %id, "the diagnosis of a trace failed; it is forwarded unrepaired");
                self.window.insert(id, WindowTrace { held: trace.held, closed: now });
                self.window_order.push_back((now, id));
                return;
            }
        };
        self.metrics.pipeline.traces_closed.fetch_add(1, Ordering::Relaxed);
        self.metrics.pipeline.findings.fetch_add(row.findings as u64, Ordering::Relaxed);
        self.metrics.pipeline.repairs_applied.fetch_add(row.repairs as u64, Ordering::Relaxed);
        out.rows.push(row);
        out.patches.extend(patches);
        self.window.insert(id, WindowTrace { held: trace.held, closed: now });
        self.window_order.push_back((now, id));
    }

    /// The closing trace's spans, then those of the traces that may hold
    /// its parents or its orphans: every trace that shares a join key with
    /// it (message, MCP request, tool call ID; followed transitively), and
    /// the traces of its session that overlap it in time (where a heuristic
    /// join could find an enclosing caller). A key shared by many traces is
    /// not a point-to-point join and is not followed; the context stops at
    /// `max_context_spans`.
    fn context(&self, id: TraceId, held: &Held, own: Vec<Span>) -> Vec<Span> {
        let mut out = own;
        let mut seen: HashSet<TraceId> = HashSet::from([id]);
        let mut queue: VecDeque<TraceId> = VecDeque::from([id]);
        let limit = self.config.max_context_spans;
        let skew = 1_000_000_000; // 1 s either side, for clocks that disagree
        while let Some(t) = queue.pop_front() {
            let Some(keys) = (if t == id { Some(held) } else { self.held(t) }).map(|h| &h.keys) else { continue };
            for key in keys {
                let Some(traces) = self.keys.get(key) else { continue };
                let session = key.starts_with("s\u{1f}");
                if session && t != id {
                    continue;
                }
                if !session && traces.len() > MAX_TRACES_PER_JOIN_KEY {
                    continue;
                }
                // The newest traces of a session are the likeliest relatives;
                // of a session running many requests at once, a few are given.
                let mut overlapping = 0;
                for other in traces.iter().rev() {
                    if seen.contains(other) {
                        continue;
                    }
                    let Some(more) = self.held(*other) else { continue };
                    if session {
                        if more.start > held.end.saturating_add(skew) || more.end.saturating_add(skew) < held.start {
                            continue;
                        }
                        overlapping += 1;
                        if overlapping > MAX_SESSION_CONTEXT_TRACES {
                            break;
                        }
                    }
                    if out.len() + more.len() > limit {
                        continue;
                    }
                    seen.insert(*other);
                    out.extend(more.unpack());
                    queue.push_back(*other);
                }
            }
        }
        out
    }

    fn held(&self, id: TraceId) -> Option<&Held> {
        self.open.get(&id).map(|t| &t.held).or_else(|| self.window.get(&id).map(|w| &w.held))
    }

    fn expire_window(&mut self, now: Instant) {
        while let Some(&(closed, id)) = self.window_order.front() {
            if now.duration_since(closed) < self.config.session_window {
                break;
            }
            self.window_order.pop_front();
            let _ = self.drop_window_trace(id, closed);
        }
    }

    /// Drops the oldest trace of the window; says how many spans went.
    fn evict_oldest_window(&mut self) -> Option<usize> {
        while let Some((closed, id)) = self.window_order.pop_front() {
            if let Some(n) = self.drop_window_trace(id, closed) {
                return Some(n);
            }
        }
        None
    }

    /// Drops a window trace if it is still the one closed at `closed` (a
    /// reopened and closed-again trace has a later entry).
    fn drop_window_trace(&mut self, id: TraceId, closed: Instant) -> Option<usize> {
        if self.window.get(&id).is_none_or(|w| w.closed != closed) {
            return None;
        }
        let w = self.window.remove(&id)?;
        let n = w.held.len();
        self.buffered -= n;
        for key in &w.held.keys {
            if let Some(list) = self.keys.get_mut(key) {
                list.retain(|t| *t != id || self.open.contains_key(t));
                if list.is_empty() {
                    self.keys.remove(key);
                }
            }
        }
        Some(n)
    }

    fn publish_gauges(&self) {
        self.metrics.pipeline.open_traces.store(self.open.len() as u64, Ordering::Relaxed);
        self.metrics.pipeline.buffered_spans.store(self.buffered as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
