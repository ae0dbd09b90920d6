//! Assembly and live diagnosis: spans become traces, traces are closed
//! after `--trace-timeout` without a new span, and each closed trace is
//! diagnosed by the doctor together with the traces of its session.
//!
//! On the data's road this sits after the store: a receiver reserves a
//! sequence number for a redacted request (which the exporters' queue rows
//! share), and only once the store has made the request durable hands its
//! spans to the [`PipelineHandle`] (a request the store refused, or whose
//! spans were all duplicates, releases its number unseen, so a refused and
//! retried request is never buffered twice); a thread of its own runs the
//! [`Assembler`]. What it finds is kept in the
//! store: a row per trace for the trace list (tokens, cost, agents,
//! findings), and a patch per repaired or rolled-up span for the exporters.
//!
//! Memory is bounded: open traces and the session window together hold at
//! most `pipeline.max_buffered_spans` spans. Past it the oldest window
//! traces are dropped, then the oldest open traces are closed early; both
//! are counted in `/metrics`. A late span of a trace still in the window
//! reopens it, and the trace is diagnosed again.
//!
//! It must never block a receiver, and it does not refuse one while the
//! store keeps up: past its in-memory hand-off budget a request's spans go
//! to the store's backlog (a queue row written in the same transaction as
//! the spans, [`BACKLOG`]) and its number to the pipeline thread, which
//! reads the backlog back in order, a window at a time, once it has caught
//! up, and deletes what it has taken. Only past `pipeline.max_backlog_spans`
//! (or on a store shared by several collectors, where the backlog is off)
//! is a sender answered with a retryable refusal, like a full store. Rows
//! of a backlog left at a stop are replayed at the next start like the
//! queues of repairing exporters.

mod across;
mod decoded;
mod packed;
mod summary;

pub use packed::{Packed, PackedSpan, Packer, pack, pack_queued};

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use agentrace_doctor::{Config as DoctorConfig, Doctor, LeftOut};
use agentrace_model::keys::KeyKind;
use agentrace_model::{Span, TraceId};

use crate::config::PipelineConfig;
use crate::metrics::Metrics;
use crate::store::{AnalysisRow, PatchRow, PreparedBatch, RequestRow, Store};

/// The maps the pipeline thread looks traces up in, by trace ID or join key,
/// many times per span: hashed with foldhash (randomly seeded per map);
/// SipHash there was 1.7 % of the server under load.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

// Spans reserved for the pipeline thread and not yet taken are bounded (a
// quarter of the memory budget); past it receivers answer "busy, retry",
// so a pipeline slower than the receivers slows the senders instead of
// growing.

/// A join key found on more traces than this names no single partner and
/// is not followed when gathering a trace's context.
const MAX_TRACES_PER_JOIN_KEY: usize = 4;

/// Traces of the same session that overlap a closing trace in time, at
/// most, given to its diagnosis (where a heuristic join looks for a caller).
const MAX_SESSION_CONTEXT_TRACES: usize = 8;

/// Traces that share no key with a closing trace but ran beside it or in
/// the same service, at most, given to its diagnosis: the context that
/// lost its baggage (an enclosing client call, a producer, a same-named
/// rival, the service's own history of entry points). Nearest first.
const MAX_NEIGHBOUR_TRACES: usize = 1024;

/// How long before a trace's start a neighbour may have ended and still be
/// context (the doctor looks that far back for a producer).
const LOOK_BACK_NS: u64 = 30_000_000_000;

/// What a recheck waited for changed, whatever it holds now.
const CHANGED: usize = usize::MAX;

/// Clocks of two services may disagree by this much.
const SKEW_NS: u64 = 1_000_000_000;
/// How many trace timeouts after it closed a trace without its root still
/// holds back an orphan that only time joins to it.
const ROOTLESS_WAIT: u32 = 4;

/// Traces closed by one diagnosis, at most.
const MAX_BATCH_TRACES: usize = 256;

/// Rounds of widening the context to the whole request a closing trace
/// turned out to belong to.
const MAX_WIDENINGS: usize = 3;

/// The hand-off queue to the pipeline was full.
#[derive(Debug, thiserror::Error)]
#[error("the live pipeline is {0} spans behind; retry shortly")]
pub struct PipelineBusy(usize);

/// The name under which the pipeline's backlog keeps its rows in the
/// export queue (an exporter's name is its endpoint and protocol, so none
/// can take it).
pub const BACKLOG: &str = "agentrace:pipeline-backlog";

struct Arrival {
    seq: u64,
    spans: Vec<Packed>,
    count: usize,
    /// The spans are in the backlog, not here.
    deferred: bool,
    /// Refused by the store, all duplicates, or abandoned: nothing to take.
    released: bool,
}

/// Admission to the store's backlog, under the sequencer's lock.
struct BacklogAdmission {
    /// The backlog's queue (its exporter ID in the store).
    exporter: i64,
    /// Spans numbered into the backlog and not yet taken back or released:
    /// `/metrics`' gauge, which the pipeline thread brings down.
    metrics: Arc<Metrics>,
    max_spans: u64,
    /// Every request goes to the backlog until the pipeline has taken it all
    /// back, so that requests reach the pipeline in the order they came.
    on: bool,
}

struct Sequencer {
    next: u64,
    /// Where the numbers given are published (none when disabled).
    metrics: Option<Arc<Metrics>>,
    tx: Option<mpsc::Sender<Arrival>>,
    /// Spans handed over and not yet taken by the pipeline thread.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    max_in_flight: usize,
    backlog: Option<BacklogAdmission>,
}

/// The receivers' side of the pipeline; cheap to clone.
#[derive(Clone)]
pub struct PipelineHandle {
    sequencer: Arc<Mutex<Sequencer>>,
    watermark: Arc<AtomicU64>,
}

impl PipelineHandle {
    /// Numbers a request whose `count` spans the pipeline will be handed
    /// once they are durable. Past the in-memory budget the reservation is
    /// [`Reservation::backlog`]: the request's spans are to be queued in the
    /// store's backlog with its other rows; past the backlog's budget too
    /// (or with no backlog) it is refused. The number orders the request's
    /// export queue rows against [`Self::watermark`]; the reservation must
    /// be [`Reservation::deliver`]ed or dropped (which releases the number).
    pub fn reserve(&self, count: usize) -> Result<Reservation, PipelineBusy> {
        let mut guard = self.sequencer.lock().unwrap_or_else(|p| p.into_inner());
        let s = &mut *guard;
        let seq = s.next;
        let mut backlog = None;
        let tx = match &s.tx {
            Some(tx) => {
                let waiting = s.in_flight.load(Ordering::Acquire);
                // One request always goes through to an idle pipeline, whatever its size.
                let over = waiting > 0 && waiting + count > s.max_in_flight;
                match &mut s.backlog {
                    Some(b) if b.on || over => {
                        let held = b.metrics.pipeline.backlog_spans.load(Ordering::Acquire);
                        if held > 0 && held + count as u64 > b.max_spans {
                            return Err(PipelineBusy(waiting + held as usize));
                        }
                        b.on = true;
                        b.metrics.pipeline.backlog_spans.fetch_add(count as u64, Ordering::AcqRel);
                        b.metrics.pipeline.requests_to_backlog.fetch_add(1, Ordering::Relaxed);
                        backlog = Some(b.exporter);
                    }
                    _ if over => return Err(PipelineBusy(waiting)),
                    _ => {
                        s.in_flight.fetch_add(count, Ordering::AcqRel);
                    }
                }
                Some(tx.clone())
            }
            None => None,
        };
        s.next += 1;
        if let Some(m) = &s.metrics {
            m.pipeline.requests_numbered.fetch_max(seq, Ordering::AcqRel);
        }
        Ok(Reservation { seq, count, tx, backlog })
    }

    /// Whether spans go to a live pipeline (else [`Self::reserve`] only numbers them).
    pub fn is_live(&self) -> bool {
        self.sequencer.lock().unwrap_or_else(|p| p.into_inner()).tx.is_some()
    }

    /// Every request numbered up to this has been diagnosed, its trace
    /// closed, and its patches stored: exporters that repair may send it.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }
}

/// A reserved sequence number: delivered with its spans once they are
/// durable, or released unseen when dropped.
pub struct Reservation {
    seq: u64,
    count: usize,
    tx: Option<mpsc::Sender<Arrival>>,
    backlog: Option<i64>,
}

impl Reservation {
    /// The request's number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The backlog's queue (its exporter ID) when the request's spans are
    /// to wait in the store for the pipeline: a row of them, numbered
    /// [`Self::seq`], goes there in the request's write, and nothing is
    /// handed over in memory.
    pub fn backlog(&self) -> Option<i64> {
        self.backlog
    }

    /// Hands the durable request's spans to the pipeline (only its number,
    /// when they wait in the backlog).
    pub fn deliver(mut self, spans: Vec<Packed>) {
        if let Some(tx) = self.tx.take() {
            // A stopped pipeline (shutdown) takes nothing: the spans are
            // stored and exported, only not diagnosed live.
            let deferred = self.backlog.is_some();
            let spans = if deferred { Vec::new() } else { spans };
            let _ = tx.send(Arrival { seq: self.seq, spans, count: self.count, deferred, released: false });
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Refused by the store, all duplicates, or the sender went away:
        // the number is released so that the watermark moves past it.
        if let Some(tx) = self.tx.take() {
            let deferred = self.backlog.is_some();
            let _ = tx.send(Arrival { seq: self.seq, spans: Vec::new(), count: self.count, deferred, released: true });
        }
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
                metrics: None,
                tx: None,
                in_flight: Default::default(),
                max_in_flight: 0,
                backlog: None,
            })),
            watermark: Arc::new(AtomicU64::new(u64::MAX)),
        };
        Pipeline { handle, thread: None }
    }

    /// Starts the pipeline thread. Requests are numbered from `first_seq`;
    /// `replay` (requests still queued for export or in the backlog when
    /// the collector last stopped, with their numbers) is assembled first.
    /// `backlog` is the backlog's queue ([`BACKLOG`]'s exporter ID), none
    /// on a shared store.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        config: PipelineConfig,
        store: Store,
        metrics: Arc<Metrics>,
        first_seq: u64,
        replay: Vec<(u64, Vec<Packed>)>,
        want_patches: bool,
        backlog: Option<i64>,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Pipeline> {
        // Unbounded: admission is bounded by `reserve`, and a durable
        // request must always be taken.
        let (tx, rx) = mpsc::channel();
        let doctor = Doctor::new(DoctorConfig {
            apply_threshold: config.apply_threshold,
            include_tree: false,
            ..DoctorConfig::default()
        });
        let max_in_flight = (config.max_buffered_spans / 4).max(1);
        let max_backlog_spans = config.max_backlog_spans;
        let mut assembler = Assembler::new(config, doctor, Arc::clone(&metrics)).with_patches(want_patches);
        let now = Instant::now();
        for (seq, spans) in replay {
            assembler.add(seq, spans, now);
        }
        let in_flight: Arc<std::sync::atomic::AtomicUsize> = Default::default();
        // Replayed requests wait for their traces to close like new ones.
        let watermark = Arc::new(AtomicU64::new(assembler.watermark(first_seq.saturating_sub(1))));
        let backlog = backlog.filter(|_| max_backlog_spans > 0).map(|exporter| BacklogAdmission {
            exporter,
            metrics: Arc::clone(&metrics),
            max_spans: max_backlog_spans,
            on: false,
        });
        let reader = backlog.as_ref().map(|b| BacklogReader {
            exporter: b.exporter,
            waiting: BTreeMap::new(),
            // Rows a stopped collector left are replayed above; the first
            // read deletes them.
            sweep: true,
            window: max_in_flight,
        });
        let sequencer = Arc::new(Mutex::new(Sequencer {
            next: first_seq,
            metrics: Some(Arc::clone(&metrics)),
            tx: Some(tx),
            in_flight: Arc::clone(&in_flight),
            max_in_flight,
            backlog,
        }));
        let handle = PipelineHandle { sequencer: Arc::clone(&sequencer), watermark: Arc::clone(&watermark) };
        metrics.pipeline.requests_numbered.store(first_seq.saturating_sub(1), Ordering::Release);
        metrics.pipeline.requests_settled.store(watermark.load(Ordering::Acquire), Ordering::Release);
        let thread = std::thread::Builder::new().name("agentrace-pipeline".into()).spawn(move || {
            let numbers = Numbers { contiguous: first_seq.saturating_sub(1), later: BTreeSet::new() };
            let taking = Taking { in_flight, numbers, backlog: reader, sequencer };
            run(assembler, rx, taking, store, watermark, runtime);
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
    mut taking: Taking,
    store: Store,
    watermark: Arc<AtomicU64>,
    runtime: tokio::runtime::Handle,
) {
    let _open = OpenOnExit(Arc::clone(&watermark));
    let tick = (assembler.config.trace_timeout / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let mut next_tick = Instant::now() + tick;
    let mut stopping = false;
    let mut pace = Pace::Tick;
    loop {
        let to_tick = next_tick.saturating_duration_since(Instant::now());
        let wait = match pace {
            Pace::Now => Duration::ZERO,
            Pace::Soon => to_tick.min(Duration::from_millis(5)),
            Pace::Tick => to_tick,
        };
        match rx.recv_timeout(wait) {
            Ok(a) => {
                taking.take(a, &mut assembler);
                continue_draining(&rx, &mut taking, &mut assembler);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => stopping = true,
        }
        // Rows left at a stop stay for the next start's replay.
        pace = if stopping { Pace::Tick } else { taking.take_back(&store, &runtime, &mut assembler) };
        let now = Instant::now();
        if now < next_tick && !stopping {
            continue;
        }
        next_tick = now + tick;
        let mut closed = assembler.close_due(now, stopping);
        if store.is_shared() {
            let holds = |t: &[u8]| TraceId::from_slice(t).is_ok_and(|t| assembler.held(t).is_some());
            across::settle(&mut closed, &store, &runtime, &assembler.doctor, assembler.want_patches, holds);
        }
        if !closed.rows.is_empty() || !closed.requests.is_empty() || !closed.retired_requests.is_empty() {
            // Every trace with a row had its patches worked out anew.
            let repatched = closed.rows.iter().map(|r| r.trace_id.clone()).collect();
            let batch = PreparedBatch::analysis(closed.patches, repatched, closed.requests, closed.retired_requests);
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
        assembler.stored();
        let settled = assembler.watermark(taking.numbers.contiguous);
        watermark.store(settled, Ordering::Release);
        assembler.metrics.pipeline.requests_settled.store(settled, Ordering::Release);
        if stopping {
            break;
        }
    }
}

/// The lowest and highest valid trace IDs, as bounds of time ranges.
/// A hash of a request's answer, to tell whether a diagnosis changed it.
pub(crate) fn answer_hash(answer: &agentrace_doctor::RequestAnswer) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(answer).unwrap_or_default().hash(&mut h);
    h.finish()
}

fn lowest_id() -> TraceId {
    let mut b = [0u8; 16];
    b[15] = 1;
    TraceId::new(b).expect("a non-zero trace ID is valid")
}

fn highest_id() -> TraceId {
    TraceId::new([0xff; 16]).expect("a non-zero trace ID is valid")
}

/// Request numbers taken so far: every number up to `contiguous`, and
/// those after it (requests become durable out of order).
struct Numbers {
    contiguous: u64,
    later: BTreeSet<u64>,
}

impl Numbers {
    fn take(&mut self, seq: u64) {
        if seq > self.contiguous {
            self.later.insert(seq);
        }
        while self.later.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }

    fn taken(&self, seq: u64) -> bool {
        seq <= self.contiguous || self.later.contains(&seq)
    }
}

/// The pipeline thread's side of the hand-off: what it has taken, and the
/// backlog it reads back.
struct Taking {
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    numbers: Numbers,
    backlog: Option<BacklogReader>,
    sequencer: Arc<Mutex<Sequencer>>,
}

/// Reads the backlog back in the order it was written.
struct BacklogReader {
    exporter: i64,
    /// Requests durable in the backlog and not yet taken back: number → spans.
    waiting: BTreeMap<u64, usize>,
    /// Rows may be there that no arrival names (a stopped collector's).
    sweep: bool,
    /// Spans taken back at once, about (the in-memory hand-off budget).
    window: usize,
}

impl Taking {
    fn take(&mut self, a: Arrival, assembler: &mut Assembler) {
        if a.deferred {
            if let Some(b) = &mut self.backlog {
                if a.released {
                    assembler.metrics.pipeline.backlog_spans.fetch_sub(a.count as u64, Ordering::AcqRel);
                } else {
                    // Taken once its row is read back.
                    b.waiting.insert(a.seq, a.count);
                    return;
                }
            }
        } else {
            self.in_flight.fetch_sub(a.count, Ordering::AcqRel);
        }
        self.numbers.take(a.seq);
        if !a.spans.is_empty() {
            assembler.add(a.seq, a.spans, Instant::now());
        }
    }

    /// Takes back a window of backlog rows, in order, once what came in
    /// memory is taken and while open traces hold at most half the memory
    /// budget (a backlog read back faster than traces close would otherwise
    /// close them early); deletes the rows taken and those no request waits
    /// for (released, or left by a stopped collector). Says when to look
    /// again.
    fn take_back(&mut self, store: &Store, runtime: &tokio::runtime::Handle, assembler: &mut Assembler) -> Pace {
        let Some(b) = &mut self.backlog else { return Pace::Tick };
        if b.waiting.is_empty() && !b.sweep {
            return Pace::Tick;
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // Requests numbered before the backlog began are still being
            // committed or handed over: they go first.
            return Pace::Soon;
        }
        let open = assembler.open_spans();
        if open > 0 && open + b.window > assembler.config.max_buffered_spans / 2 {
            return Pace::Tick;
        }
        let (exporter, window) = (b.exporter, b.window as u64);
        // From the start every time: rows taken back are deleted, and a row
        // ID may come back once the rows after it are gone.
        let window =
            crate::store::query::QueueWindow { after: 0, max_seq: u64::MAX, max_spans: window, max_bytes: 64 << 20 };
        let rows = match runtime.block_on(store.read(move |c| crate::store::query::queue_peek(c, exporter, window))) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "could not read the pipeline's backlog; trying again");
                return Pace::Tick;
            }
        };
        if rows.is_empty() {
            b.sweep = false;
            if !b.waiting.is_empty() {
                // Durable requests whose rows are gone: their spans are
                // stored, only not diagnosed live. The watermark moves on.
                tracing::error!(
                    requests = b.waiting.len(),
                    "backlog rows missing; those requests are not diagnosed live"
                );
                for (seq, count) in std::mem::take(&mut b.waiting) {
                    assembler.metrics.pipeline.backlog_spans.fetch_sub(count as u64, Ordering::AcqRel);
                    self.numbers.take(seq);
                }
            }
        }
        let mut done = Vec::new();
        let mut pace = Pace::Now;
        let now = Instant::now();
        for row in rows {
            if let Some(count) = b.waiting.remove(&row.seq) {
                let (id, seq) = (row.id, row.seq);
                match pack_queued(row) {
                    Ok(spans) => assembler.add(seq, spans, now),
                    Err(e) => {
                        tracing::error!(error = %e, "a backlog row does not decode; its request is not diagnosed live")
                    }
                }
                assembler.metrics.pipeline.backlog_spans.fetch_sub(count as u64, Ordering::AcqRel);
                self.numbers.take(seq);
                done.push(id);
            } else if self.numbers.taken(row.seq) {
                // Released, or a stopped collector's: nothing waits for it.
                done.push(row.id);
            } else {
                // Its request is durable and its number not handed over yet:
                // the rows after it wait with it.
                pace = Pace::Soon;
                break;
            }
        }
        if !done.is_empty() {
            let deleted = match store.submit(PreparedBatch::dequeue(done)) {
                Ok(durable) => runtime.block_on(durable).map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = deleted {
                // Read again at the next start and deleted then.
                tracing::warn!(error = %e, "could not delete backlog rows taken back");
            }
        }
        if b.waiting.is_empty() {
            // Caught up: requests go through memory again, unless one was
            // numbered into the backlog meanwhile.
            let mut s = self.sequencer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(admission) = &mut s.backlog
                && admission.metrics.pipeline.backlog_spans.load(Ordering::Acquire) == 0
            {
                admission.on = false;
            }
            if !b.sweep {
                return Pace::Tick;
            }
        }
        pace
    }
}

/// When the pipeline thread looks at its hand-off again.
#[derive(Clone, Copy)]
enum Pace {
    /// At once: there is more to take back.
    Now,
    /// In a few milliseconds: a request in the backlog is being handed over.
    Soon,
    /// At the next tick.
    Tick,
}

fn continue_draining(rx: &mpsc::Receiver<Arrival>, taking: &mut Taking, assembler: &mut Assembler) {
    // Take what is already waiting before closing anything, but not so
    // much that closing waits for ever under load.
    for _ in 0..256 {
        match rx.try_recv() {
            Ok(a) => taking.take(a, assembler),
            Err(_) => break,
        }
    }
}

/// A trace's buffered spans, its keys, services and time range.
struct Held {
    spans: Vec<PackedSpan>,
    keys: Set<(KeyKind, String)>,
    services: Vec<Arc<str>>,
    start: u64,
    end: u64,
    /// Spans with no parent: none while the trace's root has not arrived.
    roots: usize,
}

impl Held {
    fn new() -> Held {
        Held { spans: Vec::new(), keys: Set::default(), services: Vec::new(), start: u64::MAX, end: 0, roots: 0 }
    }

    fn push(&mut self, p: Packed) {
        self.start = self.start.min(p.span.start);
        self.end = self.end.max(p.span.end);
        self.roots += p.span.roots;
        self.keys.extend(p.keys);
        let service = p.span.service();
        if !self.services.iter().any(|s| **s == *service) {
            self.services.push(service);
        }
        self.spans.push(p.span);
    }

    fn len(&self) -> usize {
        self.spans.iter().map(|p| p.count).sum()
    }

    /// Whether it ran during `start..end`, give or take the skew allowance.
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end.saturating_add(SKEW_NS) && self.end.saturating_add(SKEW_NS) >= start
    }
}

struct OpenTrace {
    held: Held,
    first_seq: u64,
    opened: Instant,
    last_arrival: Instant,
    /// A trace still open that a time-only join would make this one's
    /// parent: this one waits for it to close (see `Assembler::close`).
    waits_for: Option<TraceId>,
}

struct WindowTrace {
    held: Held,
    closed: Instant,
}

/// What closing some traces produced, for the store.
#[derive(Debug, Default)]
pub struct Closed {
    /// One row per closed trace and per trace of the requests they belong to.
    pub rows: Vec<AnalysisRow>,
    /// Patches for their spans.
    pub patches: Vec<PatchRow>,
    /// One row per request a closed trace belongs to.
    pub requests: Vec<RequestRow>,
    /// Connected trace IDs whose request rows go before `requests` are
    /// written: requests that joined another, and the closing traces' own
    /// (all of a closing trace's requests are in `requests`).
    pub retired_requests: Vec<Vec<u8>>,
}

impl Closed {
    /// Keeps the newest row of each trace and request (a trace closing later
    /// in the same round saw more).
    fn push(
        &mut self,
        rows: Vec<AnalysisRow>,
        patches: Vec<PatchRow>,
        requests: Vec<RequestRow>,
        retired: Vec<Vec<u8>>,
    ) {
        let ids: HashSet<&Vec<u8>> = rows.iter().map(|r| &r.trace_id).collect();
        self.rows.retain(|r| !ids.contains(&r.trace_id));
        self.patches.retain(|p| !ids.contains(&p.trace_id));
        self.rows.extend(rows);
        self.patches.extend(patches);
        let same = |a: &RequestRow, b: &RequestRow| a.request_id == b.request_id && a.root_span_id == b.root_span_id;
        self.requests.retain(|r| !requests.iter().any(|n| same(r, n)) && !retired.contains(&r.request_id));
        for r in retired {
            if !self.retired_requests.contains(&r) {
                self.retired_requests.push(r);
            }
        }
        self.requests.extend(requests);
    }
}

/// The spans of a diagnosis, trace by trace.
struct Context {
    traces: Vec<(TraceId, Arc<Vec<Span>>)>,
    /// Spans in all.
    len: usize,
    /// The traces it would have read but left out at `max_context_spans`,
    /// which the doctor weighs (it is never surer for their absence).
    left_out: LeftOut,
}

impl Context {
    /// Every span, as the doctor reads them (by reference, not copied).
    fn spans(&self) -> Vec<&Span> {
        let mut out = Vec::with_capacity(self.len);
        out.extend(self.traces.iter().flat_map(|(_, spans)| spans.iter()));
        out
    }
}

/// Traces being assembled, and the window of recently closed ones.
pub struct Assembler {
    config: PipelineConfig,
    doctor: Doctor,
    metrics: Arc<Metrics>,
    open: Map<TraceId, OpenTrace>,
    window: Map<TraceId, WindowTrace>,
    window_order: VecDeque<(Instant, TraceId)>,
    /// Session and join keys → the traces (open or in the window) carrying them.
    keys: Map<(KeyKind, String), Vec<TraceId>>,
    /// Every held trace by its start, and by service and start.
    by_start: BTreeSet<(u64, TraceId)>,
    by_service: Map<Arc<str>, BTreeSet<(u64, TraceId)>>,
    /// The request each held trace was last stored as part of.
    request_of: Map<TraceId, TraceId>,
    /// A hash of each stored request's answer, by (connected trace, root).
    stored: Map<(TraceId, agentrace_model::SpanId), u64>,
    buffered: usize,
    /// Held traces of stored requests whose answer was worked out while
    /// traces that ran beside them were still open: each waits for those
    /// traces (with the spans each held then), then, if any of them gained
    /// spans meanwhile, its request is diagnosed again in its own context.
    /// A rival that was still arriving can make a join ambiguous that the
    /// whole picture makes; without this, a request diagnosed beside
    /// half-arrived rivals kept that answer. A trace that gained nothing
    /// since is read again as it was read then: no recheck (under load,
    /// where every request has open traces beside it, that is most).
    recheck: Map<TraceId, Map<TraceId, usize>>,
    /// For each held trace, the traces of stored requests whose answer
    /// rests on rivals (a join, a break, or a member that moved) and was
    /// worked out with it in the context: when it reopens (a late span)
    /// and closes again, they are diagnosed again. A rival seen without
    /// its late parent can have made a join ambiguous.
    beside: Map<TraceId, Set<TraceId>>,
    /// Window traces a late span reopened, until they close again.
    reopened: Set<TraceId>,
    /// Traces the last [`Assembler::close_due`] closed whose answers are not
    /// yet durable: still counted as open until [`Assembler::stored`], so
    /// that "no open traces" means every answer can be read.
    unstored: usize,
    /// Whether an exporter applies patches (else none are worked out).
    want_patches: bool,
    /// The decoded spans of the traces diagnoses read last.
    decoded: RefCell<decoded::Decoded>,
}

impl Assembler {
    /// An empty assembler.
    pub fn new(config: PipelineConfig, doctor: Doctor, metrics: Arc<Metrics>) -> Assembler {
        Assembler {
            doctor,
            metrics,
            open: Map::default(),
            window: Map::default(),
            window_order: VecDeque::new(),
            keys: Map::default(),
            by_start: BTreeSet::new(),
            by_service: Map::default(),
            request_of: Map::default(),
            stored: Map::default(),
            buffered: 0,
            recheck: Map::default(),
            beside: Map::default(),
            reopened: Set::default(),
            unstored: 0,
            want_patches: true,
            decoded: RefCell::new(decoded::Decoded::new(usize::try_from(config.keep_decoded).unwrap_or(usize::MAX))),
            config,
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
                    let earlier = match self.window.remove(&trace) {
                        Some(w) => {
                            self.reopened.insert(trace);
                            w.held
                        }
                        None => Held::new(),
                    };
                    self.open.entry(trace).or_insert(OpenTrace {
                        held: earlier,
                        first_seq: seq,
                        opened: now,
                        last_arrival: now,
                        waits_for: None,
                    })
                }
            };
            self.buffered += p.span.count;
            let before = (open.held.start, open.held.services.len());
            open.held.push(p);
            open.last_arrival = now;
            if before != (open.held.start, open.held.services.len()) {
                let (start, services) = (open.held.start, open.held.services.clone());
                self.index_time(trace, before.0, start, &services);
            }
        }
        self.publish_gauges();
    }

    /// Keeps `by_start` and `by_service` up to date for a trace whose start
    /// moved from `old` (u64::MAX when it was not held) or that gained a service.
    fn index_time(&mut self, trace: TraceId, old: u64, start: u64, services: &[Arc<str>]) {
        self.by_start.remove(&(old, trace));
        self.by_start.insert((start, trace));
        for s in services {
            let set = self.by_service.entry(Arc::clone(s)).or_default();
            set.remove(&(old, trace));
            set.insert((start, trace));
        }
    }

    /// Closes the traces whose time is up (all of them when `all`),
    /// diagnoses each with its session, and keeps the memory budget.
    pub fn close_due(&mut self, now: Instant, all: bool) -> Closed {
        let mut due = self.due(now, all);
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
        let mut out = Closed::default();
        self.close_in_batches(&mut due, now, all, &mut out);
        // A trace that waited for one that closed in this round (an orphan
        // whose picture was still growing) is due now: it closes in this
        // round too, not a tick later.
        let mut closed_ids: HashSet<TraceId> = due.iter().map(|(_, id)| *id).collect();
        for _ in 0..MAX_WIDENINGS {
            let mut more: Vec<(Instant, TraceId)> =
                self.due(now, all).into_iter().filter(|(_, id)| self.open[id].waits_for.is_some()).collect();
            if more.is_empty() {
                break;
            }
            closed_ids.extend(more.iter().map(|(_, id)| *id));
            self.close_in_batches(&mut more, now, all, &mut out);
        }
        // Requests answered beside traces that were still open, once those
        // closed: in time order, in batches of the same size as closing
        // traces, each read with what it waited for (a batch of every ready
        // trace at once left no room in its context for them, and a request
        // kept the answer it had without its rival).
        for _ in 0..MAX_WIDENINGS {
            let mut ready: Vec<(u64, TraceId)> = self
                .recheck
                .iter()
                .filter(|(t, waits)| !self.open.contains_key(*t) && waits.keys().all(|w| !self.open.contains_key(w)))
                .map(|(t, _)| (self.held(*t).map_or(0, |h| h.start), *t))
                .collect();
            if ready.is_empty() {
                break;
            }
            ready.sort_unstable();
            let mut waits: Map<TraceId, Vec<TraceId>> = Map::default();
            for (_, t) in &ready {
                let Some(w) = self.recheck.remove(t) else { continue };
                if w.iter().any(|(b, then)| self.held(*b).is_none_or(|h| h.len() != *then)) {
                    waits.insert(*t, w.into_keys().collect());
                }
            }
            let ids: Vec<TraceId> = ready.into_iter().map(|(_, t)| t).filter(|t| waits.contains_key(t)).collect();
            for batch in self.batches(&ids) {
                let mut waited: Vec<TraceId> = batch.iter().filter_map(|t| waits.get(t)).flatten().copied().collect();
                waited.sort_unstable();
                waited.dedup();
                self.close(&batch, &waited, now, all, &mut out);
                self.metrics.pipeline.requests_rechecked.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
        self.unstored += closed_ids.iter().filter(|id| !self.open.contains_key(id)).count();
        self.expire_window(now);
        while self.buffered > self.config.max_buffered_spans && self.evict_oldest_window().is_some() {
            self.metrics.pipeline.window_evicted_traces.fetch_add(1, Ordering::Relaxed);
        }
        self.publish_gauges();
        out
    }

    /// The open traces whose time is up: quiet for the trace timeout (and
    /// not waiting for a trace still unfinished), or past the maximum age,
    /// or all of them when `all`. Those closing at their maximum age are
    /// counted.
    fn due(&self, now: Instant, all: bool) -> Vec<(Instant, TraceId)> {
        let timeout = self.config.trace_timeout;
        let max_age = self.config.max_trace_age;
        let due: Vec<(Instant, TraceId)> = self
            .open
            .iter()
            .filter(|(_, t)| {
                let quiet = now.duration_since(t.last_arrival) >= timeout
                    && t.waits_for.is_none_or(|parent| !self.unfinished(parent, now));
                all || quiet || now.duration_since(t.opened) >= max_age
            })
            .map(|(id, t)| (t.opened, *id))
            .collect();
        for (_, id) in &due {
            let t = &self.open[id];
            if !all && now.duration_since(t.last_arrival) < timeout {
                self.metrics.pipeline.traces_closed_at_max_age.fetch_add(1, Ordering::Relaxed);
            }
        }
        due
    }

    /// Closes `due`, oldest first. Traces closing together are diagnosed
    /// together, in batches of a bounded size: their contexts overlap (they
    /// ran at the same time), so one diagnosis of the union costs about what
    /// one of them would, and each span is diagnosed about once per round
    /// however busy the collector is.
    fn close_in_batches(&mut self, due: &mut [(Instant, TraceId)], now: Instant, all: bool, out: &mut Closed) {
        due.sort();
        let ids: Vec<TraceId> = due.iter().map(|(_, id)| *id).collect();
        for batch in self.batches(&ids) {
            self.close(&batch, &[], now, all, out);
        }
    }

    /// `ids` in order, cut into the batches diagnosed together: a quarter
    /// of the context's spans at most, so that three quarters are left for
    /// what ran beside them.
    fn batches(&self, ids: &[TraceId]) -> Vec<Vec<TraceId>> {
        let budget = (self.config.max_context_spans / 4).max(1);
        let mut out = Vec::new();
        let mut batch: Vec<TraceId> = Vec::new();
        let mut size = 0;
        for id in ids {
            let n = self.held(*id).map_or(0, |h| h.len());
            if !batch.is_empty() && (size + n > budget || batch.len() >= MAX_BATCH_TRACES) {
                out.push(std::mem::take(&mut batch));
                size = 0;
            }
            batch.push(*id);
            size += n;
        }
        if !batch.is_empty() {
            out.push(batch);
        }
        out
    }

    /// Every request numbered up to the answer is in a closed trace.
    pub fn watermark(&self, last_seq: u64) -> u64 {
        match self.open.values().map(|t| t.first_seq).min() {
            Some(first) => first.saturating_sub(1).min(last_seq),
            None => last_seq,
        }
    }

    /// Closes `ids` (or diagnoses them again, for those of the window),
    /// reading the traces in `waited` (what a recheck waited for) right
    /// after their join-key relatives and sessions.
    fn close(&mut self, ids: &[TraceId], waited: &[TraceId], now: Instant, all: bool, out: &mut Closed) {
        let _span = tracing::info_span!("pipeline.close", traces = ids.len()).entered();
        let mut closing = Vec::with_capacity(ids.len());
        let mut kept: HashMap<TraceId, (u64, Instant, Instant)> = HashMap::new();
        for &id in ids {
            // A trace of the window is diagnosed again as it is (a recheck).
            if !self.open.contains_key(&id) {
                if self.window.contains_key(&id) && !closing.contains(&id) {
                    closing.push(id);
                }
                continue;
            }
            let Some(trace) = self.open.remove(&id) else { continue };
            // Closing now: diagnosed with everything, no recheck pending.
            self.recheck.remove(&id);
            kept.insert(id, (trace.first_seq, trace.opened, trace.last_arrival));
            // The trace moves to the window first, so that its diagnosis
            // reads it like any other held trace.
            self.window.insert(id, WindowTrace { held: trace.held, closed: now });
            self.window_order.push_back((now, id));
            closing.push(id);
        }
        // Spans come from senders: a bug they trigger in the diagnosis must
        // cost those traces their repairs, not stop the pipeline.
        let mut diagnosed = None;
        for round in 0..2 {
            if closing.is_empty() {
                return;
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.diagnose(&closing, waited)));
            // A trace whose orphan only time joins waits while the picture
            // around it may still grow: the parent's trace still open (or
            // closed before its root arrived), or another trace of its
            // context that ran beside it. Until then a rival, the true
            // parent, or the consumer that took the producer's message may
            // still arrive, and deciding now could export a join that the
            // whole picture would not make (past `max_trace_age`, or on
            // shutdown, it is decided).
            let waiting: Vec<(TraceId, TraceId)> = match &result {
                Ok(Some((answer, context))) if !all => answer
                    .time_only_joins
                    .iter()
                    .filter(|(orphan, _)| {
                        kept.get(orphan).is_some_and(|k| now.duration_since(k.1) < self.config.max_trace_age)
                    })
                    .filter_map(|&(orphan, parent)| {
                        if self.unfinished(parent, now) {
                            return Some((orphan, parent));
                        }
                        let h = self.held(orphan)?;
                        context
                            .iter()
                            .copied()
                            // (Open and not itself waiting: two orphans
                            // beside each other never wait on each other.)
                            .filter(|&c| c != orphan && self.open.get(&c).is_some_and(|t| t.waits_for.is_none()))
                            .find(|&c| self.held(c).is_some_and(|o| o.overlaps(h.start, h.end)))
                            .map(|c| (orphan, c))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            // (Once: the traces left after the first deferral are decided.)
            if waiting.is_empty() || round == 1 {
                diagnosed = Some(result);
                break;
            }
            for (orphan, parent) in waiting {
                let (Some(w), Some((first_seq, opened, last_arrival))) =
                    (self.window.remove(&orphan), kept.get(&orphan))
                else {
                    continue;
                };
                self.open.insert(
                    orphan,
                    OpenTrace {
                        held: w.held,
                        first_seq: *first_seq,
                        opened: *opened,
                        last_arrival: *last_arrival,
                        waits_for: Some(parent),
                    },
                );
                closing.retain(|c| *c != orphan);
                self.metrics.pipeline.traces_deferred.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(Ok(None)) = diagnosed {
            // (No request holds a closing trace: nothing to write.)
            return;
        }
        let Some(Ok(Some((answer, context_traces)))) = diagnosed else {
            // Not relied upon: the doctor is fuzzed on sender-shaped span
            // sets (`fuzz/fuzz_targets/doctor_analyse.rs`). Should a bug slip
            // through, it costs these traces their repairs, is counted, and
            // the pipeline goes on for everyone else.
            self.metrics.pipeline.diagnoses_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                traces = closing.len(),
                "the diagnosis of closing traces failed; they are forwarded unrepaired"
            );
            return;
        };
        let open_in_context: Vec<TraceId> =
            context_traces.iter().copied().filter(|t| self.open.contains_key(t)).collect();
        let summary::Answered { rows, patches, requests, members, hashes, .. } = answer;
        self.stored.extend(hashes);
        self.metrics.pipeline.traces_closed.fetch_add(kept.len() as u64, Ordering::Relaxed);
        if !open_in_context.is_empty() && !all {
            for r in &requests {
                let traces: Vec<TraceId> = r.trace_ids.iter().filter_map(|t| TraceId::from_slice(t).ok()).collect();
                let (start, end) = self.reach(&traces);
                // The still-open traces that ran beside it: its possible rivals.
                let beside: Vec<TraceId> = open_in_context
                    .iter()
                    .copied()
                    .filter(|o| self.held(*o).is_some_and(|h| h.overlaps(start, end)))
                    .collect();
                if beside.is_empty() {
                    continue;
                }
                for t in traces.into_iter().filter(|t| self.window.contains_key(t)) {
                    let waits = self.recheck.entry(t).or_default();
                    for &b in &beside {
                        let held = self.open.get(&b).map_or(CHANGED, |o| o.held.len());
                        waits.entry(b).or_insert(held);
                    }
                }
            }
        }
        // (Counted once per close: a recheck's findings were counted.)
        for own in rows.iter().filter(|r| kept.keys().any(|c| c.as_bytes() == r.trace_id.as_slice())) {
            self.metrics.pipeline.findings.fetch_add(own.findings as u64, Ordering::Relaxed);
            self.metrics.pipeline.repairs_applied.fetch_add(own.repairs as u64, Ordering::Relaxed);
        }
        // Every request rooted in a closing trace is among `requests`: rows
        // of its earlier roots (a parent that had not arrived) go. A member
        // that was a request of its own, or part of another, is now part of
        // one of these: the old request's row goes.
        let mut retired: Vec<Vec<u8>> = closing.iter().map(|c| c.as_bytes().to_vec()).collect();
        let written: HashSet<&[u8]> = requests.iter().map(|r| r.request_id.as_slice()).collect();
        let mut moved: HashSet<TraceId> = HashSet::new();
        for m in &members {
            let request_id = requests
                .iter()
                .find(|r| r.trace_ids.iter().any(|t| t == m.as_bytes()))
                .and_then(|r| TraceId::from_slice(&r.request_id).ok())
                .unwrap_or(*m);
            // The request it left is rewritten here when this diagnosis saw
            // it; a row that is not rewritten is not dropped either.
            let old = self.request_of.insert(*m, request_id);
            if old.is_some_and(|old| old != request_id) {
                moved.insert(*m);
            }
            if let Some(old) = old
                && old != request_id
                && written.contains(old.as_bytes().as_slice())
                && !retired.contains(&old.as_bytes().to_vec())
            {
                retired.push(old.as_bytes().to_vec());
            }
            if *m != request_id && !retired.contains(&m.as_bytes().to_vec()) {
                retired.push(m.as_bytes().to_vec());
            }
        }
        if !all {
            // A trace that reopened is whole again: what was answered beside
            // it before, without its late spans, is looked at again.
            for id in kept.keys() {
                if self.reopened.remove(id)
                    && let Some(deps) = self.beside.remove(id)
                {
                    for m in deps {
                        if self.window.contains_key(&m) && !closing.contains(&m) {
                            self.recheck.entry(m).or_default().insert(*id, CHANGED);
                        }
                    }
                }
            }
            for r in &requests {
                let traces: Vec<TraceId> = r.trace_ids.iter().filter_map(|t| TraceId::from_slice(t).ok()).collect();
                if !(traces.len() > 1 || r.broken > 0 || traces.iter().any(|t| moved.contains(t))) {
                    continue;
                }
                for c in context_traces.iter().filter(|c| !traces.contains(c)) {
                    self.beside.entry(*c).or_default().extend(traces.iter().copied());
                }
            }
        }
        // A closing trace's own rooted requests are written here, so it is
        // retired only of rows this round does not rewrite.
        out.push(rows, patches, requests, retired);
    }

    /// Diagnoses the requests the `closing` traces belong to: first with
    /// what ran beside them, then, while a request turns out to reach
    /// further (a parent whose call encloses more than the closing traces),
    /// with what ran beside the whole request.
    /// Also says which traces its context held.
    fn diagnose(&self, closing: &[TraceId], waited: &[TraceId]) -> Option<(summary::Answered, Vec<TraceId>)> {
        let mut seeds = closing.to_vec();
        let mut last = None;
        for _ in 0..MAX_WIDENINGS {
            let context = self.context(&seeds, waited);
            self.metrics.pipeline.diagnosed_spans.fetch_add(context.len as u64, Ordering::Relaxed);
            if !context.left_out.is_empty() {
                self.metrics.pipeline.contexts_cut.fetch_add(1, Ordering::Relaxed);
            }
            let spans = context.spans();
            let agentrace_doctor::DiagnosisWithTotals { diagnosis, patches, totals, .. } =
                self.doctor.analyse_with_totals_beside(&spans, self.want_patches, &context.left_out);
            // Every request a closing trace is part of (two for a trace with
            // a span whose parent never arrived).
            let answers: Vec<_> = diagnosis
                .request_answers()
                .into_iter()
                .filter(|a| a.request.original_traces.iter().any(|t| closing.contains(t)))
                .collect();
            if answers.is_empty() {
                return None;
            }
            let mut members: Vec<TraceId> = answers
                .iter()
                .flat_map(|a| a.request.original_traces.iter().copied())
                .filter(|t| self.held(*t).is_some())
                .collect();
            members.sort_unstable();
            members.dedup();
            // Settled when no request reaches past what its context was
            // gathered around.
            let outside: Vec<TraceId> = members.iter().copied().filter(|m| !seeds.contains(m)).collect();
            let (had, wider) = (self.reach(&seeds), self.reach(&members));
            let settled = outside.is_empty() || (wider.0 >= had.0 && wider.1 <= had.1);
            last = Some((context, diagnosis, patches, totals, answers, members));
            if settled {
                break;
            }
            seeds.extend(outside);
        }
        let (context, diagnosis, patches, totals, mut answers, mut members) = last?;
        // Requests the closing traces are not part of are written too:
        // - a request that a trace of the written ones was stored as part of
        //   (it lost that trace: its row would be stale);
        // - a request that ran wholly within the closing traces, so that
        //   its own context is inside this one, which this diagnosis changed:
        //   a held trace of it was stored as part of another request (a
        //   join that more context undid, or made), or its answer is not the
        //   one stored (a rival or a candidate parent arrived with them).
        // A request this diagnosis sees only in part (pulled in by a join
        // key, without what ran around it) is left as stored.
        let (lo, hi) = self.reach(&seeds);
        let mut left: HashSet<TraceId> = HashSet::new();
        for _ in 0..2 {
            for a in answers.iter() {
                for t in &a.request.original_traces {
                    if let Some(old) = self.request_of.get(t).filter(|old| **old != a.request.trace_id) {
                        left.insert(*old);
                    }
                }
            }
            let mut added = false;
            for a in diagnosis.request_answers() {
                let key = (a.request.trace_id, a.request.span_id);
                if answers.iter().any(|c| (c.request.trace_id, c.request.span_id) == key) {
                    continue;
                }
                // A trace stored as part of a request whose own trace the
                // window has dropped is seen here without it: that answer
                // saw more, and stands.
                let dropped_from = a.request.original_traces.iter().any(|t| {
                    self.request_of.get(t).is_some_and(|old| *old != a.request.trace_id && self.held(*old).is_none())
                });
                if dropped_from {
                    continue;
                }
                let moved = a
                    .request
                    .original_traces
                    .iter()
                    .any(|t| self.request_of.get(t).is_some_and(|old| *old != a.request.trace_id));
                let (start, end) = self.reach(&a.request.original_traces);
                let inside = start.saturating_add(SKEW_NS) >= lo && end <= hi.saturating_add(SKEW_NS);
                let changed = || self.stored.get(&key) != Some(&answer_hash(&a));
                if left.contains(&a.request.trace_id) || (inside && (moved || changed())) {
                    members.extend(a.request.original_traces.iter().copied().filter(|t| self.held(*t).is_some()));
                    answers.push(a);
                    added = true;
                }
            }
            if !added {
                break;
            }
        }
        members.sort_unstable();
        members.dedup();
        let traces: Vec<TraceId> = context.traces.iter().map(|(t, _)| *t).collect();
        let answered = summary::answered(&context.traces, &members, &diagnosis, &patches, &totals, answers);
        Some((answered, traces))
    }

    /// The spans a diagnosis of the `seeds` reads: the seeds', then those of
    /// the traces that may hold their parents, their orphans or their
    /// rivals. In order: every trace that shares a join key with them
    /// (message, MCP request, tool call ID; followed transitively; a key on
    /// many traces is no point-to-point join and is not followed), the
    /// traces of their sessions that overlap them, the traces a recheck of
    /// them `waited` for (nearest in start first), then neighbours with no
    /// key in common (an orphan that lost its baggage lost its session
    /// too): traces that ran at the same time, then traces of the same
    /// services (their history of entry points), then traces that ended
    /// shortly before (producers). Bounded by `max_context_spans`.
    fn context(&self, seeds: &[TraceId], waited: &[TraceId]) -> Context {
        let limit = self.config.max_context_spans;
        let mut out = Context { traces: Vec::new(), len: 0, left_out: LeftOut::new() };
        let mut seen: Set<TraceId> = Set::default();
        let mut decoded = self.decoded.borrow_mut();
        let mut take = |t: TraceId, out: &mut Context, seen: &mut Set<TraceId>, force: bool| -> bool {
            if seen.contains(&t) {
                return false;
            }
            let Some(h) = self.held(t) else { return false };
            if !force && out.len + h.len() > limit {
                if seen.insert(t) {
                    out.left_out.add(&h.services, h.start, h.end);
                }
                return false;
            }
            seen.insert(t);
            let spans = match decoded.read(t, &h.spans) {
                decoded::Read::Kept(spans) => spans,
                decoded::Read::Decoded(spans) => {
                    self.metrics.pipeline.decoded_spans.fetch_add(spans.len() as u64, Ordering::Relaxed);
                    spans
                }
            };
            out.len += spans.len();
            out.traces.push((t, spans));
            true
        };
        let (mut start, mut end) = (u64::MAX, 0u64);
        let mut services: Vec<Arc<str>> = Vec::new();
        for &t in seeds {
            if let Some(h) = self.held(t) {
                start = start.min(h.start);
                end = end.max(h.end);
                for s in &h.services {
                    if !services.contains(s) {
                        services.push(Arc::clone(s));
                    }
                }
            }
            take(t, &mut out, &mut seen, true);
        }
        if seen.is_empty() {
            return out;
        }
        let overlaps = |h: &Held| h.start <= end.saturating_add(SKEW_NS) && h.end.saturating_add(SKEW_NS) >= start;

        // Join keys, transitively; sessions of the seeds.
        let mut queue: VecDeque<TraceId> = seeds.iter().copied().collect();
        while let Some(t) = queue.pop_front() {
            let Some(h) = self.held(t) else { continue };
            for key in &h.keys {
                let Some(traces) = self.keys.get(key) else { continue };
                let session = key.0.is_session();
                if session && !seeds.contains(&t) {
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
                        if !overlaps(more) {
                            continue;
                        }
                        overlapping += 1;
                        if overlapping > MAX_SESSION_CONTEXT_TRACES {
                            break;
                        }
                    }
                    if take(*other, &mut out, &mut seen, false) {
                        queue.push_back(*other);
                    }
                }
            }
        }

        // What a recheck waited for: the reason it is diagnosed again.
        let mut waited: Vec<(u64, TraceId)> =
            waited.iter().filter_map(|&t| self.held(t).map(|h| (h.start.abs_diff(start), t))).collect();
        waited.sort_unstable();
        for (_, t) in waited {
            take(t, &mut out, &mut seen, false);
        }

        // Neighbours: at the same time, then the same services, then shortly before.
        let earliest = start.saturating_sub(self.config.max_trace_age.as_nanos() as u64 + LOOK_BACK_NS);
        let mut near: Vec<(u8, u64, TraceId)> = Vec::new();
        for &(s, t) in self.by_start.range((earliest, lowest_id())..=(end.saturating_add(SKEW_NS), highest_id())) {
            let Some(h) = self.held(t).filter(|_| !seen.contains(&t)) else { continue };
            if overlaps(h) {
                near.push((0, s.abs_diff(start), t));
            } else if h.end.saturating_add(LOOK_BACK_NS) >= start {
                near.push((2, start.saturating_sub(h.end), t));
            }
        }
        for service in &services {
            let Some(set) = self.by_service.get(service) else { continue };
            // The service's traces nearest in start, either side.
            let before = set.range(..(start, lowest_id())).rev().take(MAX_NEIGHBOUR_TRACES);
            let after = set.range((start, lowest_id())..).take(MAX_NEIGHBOUR_TRACES);
            for &(s, t) in before.chain(after) {
                if !seen.contains(&t) {
                    near.push((1, s.abs_diff(start), t));
                }
            }
        }
        near.sort_unstable();
        let mut taken = 0;
        for (_, _, t) in near {
            if taken >= MAX_NEIGHBOUR_TRACES {
                break;
            }
            if take(t, &mut out, &mut seen, false) {
                taken += 1;
            }
        }
        out
    }

    /// The time the held traces among `traces` span.
    fn reach(&self, traces: &[TraceId]) -> (u64, u64) {
        traces.iter().filter_map(|t| self.held(*t)).fold((u64::MAX, 0), |(a, b), h| (a.min(h.start), b.max(h.end)))
    }

    /// Whether a trace may still grow: open, or closed by a quiet spell
    /// before its root arrived (a request whose root span ends last, after
    /// a wait longer than the trace timeout, is closed meanwhile). A root
    /// may also never come (a caller that propagates but exports nothing),
    /// and a waiting orphan holds every exporter back, so a rootless trace
    /// counts for a few trace timeouts only.
    fn unfinished(&self, id: TraceId, now: Instant) -> bool {
        self.open.contains_key(&id)
            || self.window.get(&id).is_some_and(|w| {
                w.held.roots == 0 && now.duration_since(w.closed) < self.config.trace_timeout * ROOTLESS_WAIT
            })
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
        self.by_start.remove(&(w.held.start, id));
        for s in &w.held.services {
            if let Some(set) = self.by_service.get_mut(s) {
                set.remove(&(w.held.start, id));
                if set.is_empty() {
                    self.by_service.remove(s);
                }
            }
        }
        self.decoded.get_mut().forget(id);
        if let Some(request) = self.request_of.remove(&id) {
            // The traces answered in one request with it are not diagnosed
            // again without it: the answer kept saw more than a new one could
            // (a join to the dropped trace would come undone, and the rows
            // of the request and of its traces would disagree).
            let partners: Vec<TraceId> =
                self.request_of.iter().filter(|&(_, r)| *r == request).map(|(t, _)| *t).collect();
            for t in partners {
                self.recheck.remove(&t);
            }
        }
        self.recheck.remove(&id);
        self.beside.remove(&id);
        self.reopened.remove(&id);
        self.stored.retain(|(t, _), _| *t != id);
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

    /// The answers of the traces closed so far are durable (or could not be
    /// kept, which was logged): they no longer count as open.
    pub fn stored(&mut self) {
        self.unstored = 0;
        self.publish_gauges();
    }

    /// Spans in open traces.
    fn open_spans(&self) -> usize {
        self.open.values().map(|t| t.held.len()).sum()
    }

    fn publish_gauges(&self) {
        self.metrics.pipeline.open_traces.store((self.open.len() + self.unstored) as u64, Ordering::Relaxed);
        self.metrics.pipeline.buffered_spans.store(self.buffered as u64, Ordering::Relaxed);
        self.metrics.pipeline.decoded_bytes.store(self.decoded.borrow().bytes() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
