//! Receivers: where spans enter the collector, the first stop on the road.
//!
//! Both transports ([`grpc`] and [`http`]) decode with the bounded decoders
//! of `agentrace_model::otlp`, then hand the validated request to
//! [`Ingest`], which redacts it (once per content policy in force), hands
//! it to the live pipeline, writes it to the store and to every exporter's
//! disk queue in one transaction, waits until that is durable, and only
//! then lets the transport acknowledge. Each protobuf body is first asked
//! ([`Ingest::clean`]) whether it would come out of decoding, validation and
//! redaction as it went in; such a body is never decoded
//! ([`crate::redact::CleanBody`]): the store's rows, the pipeline's blocks
//! and the exporters' queues are all made from its bytes as they arrived
//! ([`crate::wire`]), which is what the decoded road does too once it has
//! encoded the redacted request. Answers follow the OTLP
//! specification: partial success with a count and a reason, invalid
//! argument for undecodable bodies, and a retryable refusal with a delay
//! when the store is behind.

pub mod grpc;
pub mod http;
mod status;
pub mod zipkin;

use std::sync::Arc;
use std::time::Duration;

use agentrace_model::otlp::{self, Decoded, Limits};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};

use crate::assemble::PipelineHandle;
use crate::config::ContentAction;
use crate::export::ExportTarget;
use crate::metrics::{Metrics, RefuseReason, Transport};
use crate::redact::{CleanBody, Redacted, Redactor};
use crate::store::{PreparedBatch, QueuedExport, Store, SubmitError};
use crate::wire::Encoded;

/// Bodies found not clean in a row after which [`Ingest::clean`] checks
/// only one in [`CLEAN_SAMPLE`].
const CLEAN_MISSES_BEFORE_SAMPLING: u32 = 16;
/// While sampling, one body in this many is checked.
const CLEAN_SAMPLE: u32 = 16;

/// How long a refused sender is told to wait before retrying.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a body's `Content-Encoding` could not be undone (counted already).
#[derive(Debug)]
pub enum InflateError {
    /// It inflates past the limit.
    TooLarge(String),
    /// The gzip stream is corrupt.
    Malformed(String),
    /// An encoding other than gzip.
    Unsupported(String),
}

impl Ingest {
    /// A body as sent, inflated when its `Content-Encoding` says gzip, within
    /// the decompressed limit; the HTTP receivers' one way to read an encoding.
    pub fn inflate<'a>(
        &self,
        headers: &::http::HeaderMap,
        bytes: &'a [u8],
    ) -> Result<std::borrow::Cow<'a, [u8]>, InflateError> {
        let encoding =
            headers.get(::http::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity").trim();
        match encoding.to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(std::borrow::Cow::Borrowed(bytes)),
            "gzip" | "x-gzip" => match otlp::gunzip(bytes, self.limits.max_decompressed_bytes) {
                Ok(v) => Ok(std::borrow::Cow::Owned(v)),
                Err(e @ otlp::DecodeError::DecompressedTooLarge { .. }) => {
                    self.metrics.refused_request(RefuseReason::TooLarge, 0);
                    Err(InflateError::TooLarge(e.to_string()))
                }
                Err(e) => {
                    self.metrics.refused_request(RefuseReason::Malformed, 0);
                    Err(InflateError::Malformed(e.to_string()))
                }
            },
            other => {
                self.metrics.refused_request(RefuseReason::UnsupportedMedia, 0);
                Err(InflateError::Unsupported(format!(
                    "unsupported Content-Encoding {other:?}: send gzip or no encoding"
                )))
            }
        }
    }
}

/// A request on its way to the store and the exporters.
enum Input {
    /// Decoded and validated, still to be redacted.
    Decoded(Decoded),
    /// Checked at the byte level, to be taken as it arrived.
    Clean(CleanBody),
}

impl Input {
    fn spans(&self) -> u64 {
        match self {
            Input::Decoded(decoded) => decoded.accepted_spans,
            Input::Clean(clean) => clean.spans(),
        }
    }
}

/// A request past redaction, before it is encoded for the store.
enum Ready {
    /// Redacted for the store (`stored`) and for each other content action.
    Redacted { stored: Redacted, others: Vec<Redacted> },
    /// A clean body, as it arrived.
    Clean(Encoded),
}

/// What an export request came to, for the transport to encode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Spans rejected by validation (OTLP `rejected_spans`).
    pub rejected_spans: u64,
    /// Why, when some were rejected.
    pub error_message: String,
}

impl Accepted {
    /// The OTLP answer: partial success only when something was rejected.
    pub fn into_response(self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (self.rejected_spans > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: i64::try_from(self.rejected_spans).unwrap_or(i64::MAX),
                error_message: self.error_message,
            }),
        }
    }
}

/// Why a whole request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Too much is pending; retryable after [`RETRY_AFTER`].
    #[error("agentrace is busy: {0}")]
    Busy(String),
    /// The store failed; retryable.
    #[error("agentrace could not store the spans: {0}")]
    Unavailable(String),
}

/// The shared path from a decoded request to a durable one.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    metrics: Arc<Metrics>,
    limits: Limits,
    admission: Arc<tokio::sync::Semaphore>,
    redactor: Arc<Redactor>,
    store_content: ContentAction,
    exports: Arc<[ExportTarget]>,
    pipeline: PipelineHandle,
    memory: MemoryLimiter,
    keep_spans: bool,
    read_timeout: Duration,
    /// Whether some sink drops or hashes content attributes (then a body
    /// holding one is not clean, [`Self::clean`]).
    content_changes: bool,
    /// Bodies [`Self::clean`] found not clean (or did not check) since the
    /// last clean one.
    clean_misses: Arc<std::sync::atomic::AtomicU32>,
    /// The memory requests being decoded may take at once, in KiB.
    decoding: Arc<tokio::sync::Semaphore>,
    decoding_kib: u32,
}

/// Where accepted spans go besides the store.
pub struct Sinks {
    /// The redaction policy.
    pub redactor: Arc<Redactor>,
    /// What the store gets of content attributes.
    pub store_content: ContentAction,
    /// Backends, each with its disk queue.
    pub exports: Vec<ExportTarget>,
    /// The live pipeline (or only its request numbering).
    pub pipeline: PipelineHandle,
    /// The memory limiter.
    pub memory: MemoryLimiter,
    /// Whether the store keeps spans (else a pass-through to the exporters).
    pub keep_spans: bool,
    /// How long a request's body may take to arrive.
    pub read_timeout: Duration,
    /// The memory requests being decoded may take at once.
    pub decoding_budget: u64,
}

/// Watches the process's resident memory and says when it is over the
/// configured limit. A task samples `/proc/self/status` every 100 ms, so the
/// check on each request is one atomic load.
#[derive(Clone, Default)]
pub struct MemoryLimiter {
    over: Arc<std::sync::atomic::AtomicBool>,
}

impl MemoryLimiter {
    /// Starts sampling (Linux; elsewhere the limit is not enforced).
    /// Without a limit, never says over.
    pub fn start(limit: Option<u64>, mut stop: tokio::sync::watch::Receiver<bool>) -> MemoryLimiter {
        let limiter = MemoryLimiter::default();
        let Some(limit) = limit else { return limiter };
        let over = Arc::clone(&limiter.over);
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                if let Some(rss) = resident_bytes() {
                    let is_over = rss > limit;
                    if is_over && !warned {
                        tracing::warn!(rss, limit, "over the memory limit; refusing new requests until it falls");
                    }
                    warned = is_over;
                    over.store(is_over, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.changed() => return,
                }
            }
        });
        limiter
    }

    /// Whether the process is over its limit now.
    pub fn over_limit(&self) -> bool {
        self.over.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Resident set size, from `/proc/self/status` (`VmRSS`, in kB whatever
/// the page size).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Past the size limit.
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// The whole body did not arrive in time.
    #[error("the request body did not arrive within {0:?} (receivers.otlp.read_timeout)")]
    TimedOut(Duration),
    /// The connection failed mid-body.
    #[error("cannot read request body: {0}")]
    Read(String),
}

/// Reads a whole request body, at most `limit` bytes, within `timeout` from
/// now: a body trickled in byte by byte is cut off at the deadline, so it
/// ties up a connection for a bounded time only.
pub async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<bytes::Bytes, BodyError>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    match tokio::time::timeout(timeout, http_body_util::Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::TimedOut(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}

/// Memory reserved for a request being decoded; dropping it frees it.
pub struct Decoding(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// Why decoding memory was not reserved.
#[derive(Debug)]
pub enum ReserveError {
    /// The request can never fit: final.
    TooLarge(otlp::DecodeError),
    /// Others are decoding: retryable.
    Busy(IngestError),
}

/// A place among the requests handled at once; dropping it frees the place.
pub struct Admitted(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl Ingest {
    /// An ingest path writing to `store`.
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        limits: Limits,
        max_concurrent_requests: usize,
        sinks: Sinks,
    ) -> Ingest {
        let admission = Arc::new(tokio::sync::Semaphore::new(max_concurrent_requests));
        let decoding_kib = u32::try_from((sinks.decoding_budget / 1024).max(1)).unwrap_or(u32::MAX);
        // A pipeline stopped later (at shutdown) only leaves requests on the
        // ordinary road; one not live now never starts.
        let content_changes = sinks.store_content != ContentAction::Keep
            || sinks.exports.iter().any(|t| t.config.content != ContentAction::Keep);
        Ingest {
            content_changes,
            clean_misses: Arc::default(),
            decoding: Arc::new(tokio::sync::Semaphore::new(decoding_kib as usize)),
            decoding_kib,
            store,
            metrics,
            limits,
            admission,
            redactor: sinks.redactor,
            store_content: sinks.store_content,
            exports: sinks.exports.into(),
            pipeline: sinks.pipeline,
            memory: sinks.memory,
            keep_spans: sinks.keep_spans,
            read_timeout: sinks.read_timeout,
        }
    }

    /// Whether this collector neither keeps spans nor diagnoses them: a
    /// clean body is then only queued for the exporters, as it came.
    pub fn is_pass_through(&self) -> bool {
        !self.keep_spans && !self.pipeline.is_live()
    }

    /// How long a request's body may take to arrive.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Refuses at once, before a body is read, while the process is over its
    /// memory limit: under memory pressure a refusal costs nothing.
    pub fn check_memory(&self) -> Result<(), IngestError> {
        if self.memory.over_limit() {
            self.metrics.refused_request(RefuseReason::Backpressure, 0);
            return Err(IngestError::Busy("agentrace is over its memory limit; retry shortly".into()));
        }
        Ok(())
    }

    /// Takes a place among the requests handled at once, or says why not.
    /// Transports call this once the body has been read (see [`read_body`]):
    /// a client that sends its body slowly holds a connection, never a
    /// place, so a few slow clients cannot lock every sender out.
    pub fn admit(&self) -> Result<Admitted, IngestError> {
        self.check_memory()?;
        match Arc::clone(&self.admission).try_acquire_owned() {
            Ok(permit) => Ok(Admitted(permit)),
            Err(_) => {
                self.metrics.refused_request(RefuseReason::Backpressure, 0);
                Err(IngestError::Busy("too many export requests in progress; retry shortly".into()))
            }
        }
    }

    /// Reserves what decoding a body will cost in memory (estimated from its
    /// bytes, [`otlp::decoded_cost`]) until the permit is dropped, or says
    /// why not: a request that can never fit gets the decoder's final
    /// answer, one that does not fit now while others decode is told to
    /// retry.
    pub fn reserve_decoding(&self, body: &[u8], format: otlp::Format) -> Result<Decoding, ReserveError> {
        self.reserve_cost(otlp::decoded_cost(body, format))
    }

    /// Reserves `cost` bytes of decoding memory, as [`Self::reserve_decoding`].
    pub fn reserve_cost(&self, cost: usize) -> Result<Decoding, ReserveError> {
        let limit = self.limits.max_decoded_bytes;
        if cost > limit {
            self.metrics.refused_request(RefuseReason::TooLarge, 0);
            return Err(ReserveError::TooLarge(otlp::DecodeError::DecodedTooLarge { cost, limit }));
        }
        let kib = u32::try_from(cost.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.decoding_kib);
        match Arc::clone(&self.decoding).try_acquire_many_owned(kib) {
            Ok(permit) => Ok(Decoding(permit)),
            Err(_) => {
                self.metrics.refused_request(RefuseReason::Backpressure, 0);
                Err(ReserveError::Busy(IngestError::Busy(format!(
                    "requests being decoded already take the memory budget for it ({} MiB); retry shortly",
                    self.decoding_kib / 1024
                ))))
            }
        }
    }

    /// The decoding limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The collector's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Redacts a request for the store, and once more for each other
    /// content action an exporter asks for.
    fn redact(
        &self,
        request: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    ) -> (Redacted, Vec<Redacted>) {
        let mut actions: Vec<ContentAction> = Vec::new();
        for t in self.exports.iter() {
            if t.config.content != self.store_content && !actions.contains(&t.config.content) {
                actions.push(t.config.content);
            }
        }
        let others = actions.iter().map(|a| self.redactor.redact(request.clone(), *a)).collect();
        (self.redactor.redact(request, self.store_content), others)
    }

    /// A protobuf body this collector may take as received, never decoded:
    /// when [`Redactor::clean`] finds that decoding, validating and
    /// redacting it would change nothing (for the store and for every
    /// exporter's content policy). Then [`Self::ingest_clean`] takes it.
    ///
    /// Traffic that is never clean (prompts recorded, and a policy that drops
    /// them) would pay for the check on every request and then be decoded
    /// anyway: after [`CLEAN_MISSES_BEFORE_SAMPLING`] misses in a row, only
    /// one body in [`CLEAN_SAMPLE`] is checked, until one is clean again.
    pub fn clean(&self, body: &bytes::Bytes) -> Option<CleanBody> {
        use std::sync::atomic::Ordering::Relaxed;
        let misses = self.clean_misses.load(Relaxed);
        if misses >= CLEAN_MISSES_BEFORE_SAMPLING && !misses.is_multiple_of(CLEAN_SAMPLE) {
            self.clean_misses.fetch_add(1, Relaxed);
            return None;
        }
        let clean = self.redactor.clean(body.clone(), &self.limits, self.content_changes);
        match clean {
            Some(_) => self.clean_misses.store(0, Relaxed),
            None => {
                self.clean_misses.fetch_add(1, Relaxed);
            }
        }
        clean
    }

    /// Stores a decoded request and waits until it is durable.
    pub async fn ingest(&self, decoded: Decoded, transport: Transport) -> Result<Accepted, IngestError> {
        self.metrics.received(transport, decoded.accepted_spans + decoded.rejected_spans);
        if decoded.rejected_spans > 0 {
            self.metrics.refused_spans(RefuseReason::InvalidSpan, decoded.rejected_spans);
            self.metrics.refused_on(transport, decoded.rejected_spans);
        }
        self.ingest_input(Input::Decoded(decoded), transport).await
    }

    /// Stores, queues and hands to the pipeline a body found clean
    /// ([`Self::clean`]), as it arrived, and waits until that is durable.
    pub async fn ingest_clean(&self, clean: CleanBody, transport: Transport) -> Result<Accepted, IngestError> {
        self.metrics.received(transport, clean.spans());
        self.metrics.forwarded_undecoded();
        self.ingest_input(Input::Clean(clean), transport).await
    }

    async fn ingest_input(&self, input: Input, transport: Transport) -> Result<Accepted, IngestError> {
        let n = input.spans();
        let span = tracing::info_span!(
            "receive",
            otel.kind = "server",
            transport = transport.label(),
            spans = n,
            otel.status_code = tracing::field::Empty,
        );
        let result = tracing::Instrument::instrument(self.keep(input, transport), span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
            self.metrics.refused_on(transport, n);
        }
        result
    }

    /// Redacts, stores and queues a request's valid spans.
    async fn keep(&self, input: Input, transport: Transport) -> Result<Accepted, IngestError> {
        let n = input.spans();
        let accepted = match &input {
            Input::Decoded(decoded) => {
                Accepted { rejected_spans: decoded.rejected_spans, error_message: decoded.error_message.clone() }
            }
            Input::Clean(_) => Accepted::default(),
        };
        if n == 0 {
            return Ok(accepted);
        }
        if let Some(full) = self
            .exports
            .iter()
            .find(|t| t.metrics.queued_bytes.load(std::sync::atomic::Ordering::Relaxed) >= t.config.max_queue_bytes)
        {
            self.metrics.refused_request(RefuseReason::Backpressure, n);
            return Err(IngestError::Busy(format!(
                "the export queue of {} is full (is the backend down?)",
                full.metrics.name
            )));
        }
        // A clean body is taken as it came: it has nothing to redact, and
        // no one here needs it decoded.
        let ready = match input {
            Input::Decoded(decoded) => {
                let (stored, others) = self.redact(decoded.request);
                let report = stored.report();
                let r = &self.metrics.redaction;
                r.events_dropped.fetch_add(report.events_dropped, std::sync::atomic::Ordering::Relaxed);
                r.attributes_dropped.fetch_add(report.attributes_dropped, std::sync::atomic::Ordering::Relaxed);
                r.attributes_hashed.fetch_add(report.attributes_hashed, std::sync::atomic::Ordering::Relaxed);
                r.values_masked.fetch_add(report.values_masked, std::sync::atomic::Ordering::Relaxed);
                Ready::Redacted { stored, others }
            }
            // A clean body's request, resource and scope fields were all
            // walked as length-delimited: it parses.
            Input::Clean(clean) => match Encoded::parse(clean.bytes().clone()) {
                Ok(encoded) => Ready::Clean(encoded),
                Err(e) => return Err(IngestError::Unavailable(e.to_string())),
            },
        };
        // The pipeline gets the spans once they are durable; a number is
        // reserved now, for the export queue rows written with them.
        let reservation = match self.pipeline.reserve(n as usize) {
            Ok(r) => r,
            Err(busy) => {
                self.metrics.refused_request(RefuseReason::Backpressure, n);
                return Err(IngestError::Busy(busy.to_string()));
            }
        };
        let seq = reservation.seq();
        // With the pipeline behind, its spans wait in the store's backlog
        // (a queue row in this request's write) instead of memory.
        let backlog = reservation.backlog();
        // Encoded once (or not at all, for a clean body, which is the request
        // every sink would have got): the store's chunk, the pipeline's blocks
        // and every exporter that takes what the store takes share these bytes.
        let (others, encoded) = match ready {
            // Encoded afresh, never the body as received: a body can decode
            // to this request and still hold what the decoder shadowed (a
            // field written twice), which redaction never saw; a body that
            // holds nothing of the kind is clean, and took the lane.
            Ready::Redacted { stored, others } => (others, Encoded::new(stored.request())),
            Ready::Clean(encoded) => (Vec::new(), encoded),
        };
        // The store's rows and the pipeline's blocks are read from these
        // bytes, not from a decoded request.
        let live = backlog.is_none() && self.pipeline.is_live();
        let (rows, spans) = match (self.keep_spans, live) {
            (true, true) => {
                let mut packer = crate::assemble::Packer::default();
                let rows = PreparedBatch::from_encoded_packing(&encoded, &mut packer);
                (Some(rows), packer.finish())
            }
            (true, false) => (Some(PreparedBatch::from_encoded(&encoded)), Vec::new()),
            (false, true) => (None, crate::assemble::pack(&encoded)),
            (false, false) => (None, Vec::new()),
        };
        // One compressed body per content policy, shared by its exporters.
        let mut bodies: Vec<Option<(usize, Vec<u8>)>> = vec![None; others.len() + 1];
        let mut exports: Vec<QueuedExport> = self
            .exports
            .iter()
            .map(|t| {
                let k = others.iter().position(|r| r.content_action() == t.config.content).map_or(0, |i| i + 1);
                let (spans, body) = bodies[k].get_or_insert_with(|| match k {
                    0 => (encoded.span_count(), QueuedExport::compress(&encoded)),
                    _ => {
                        let other = Encoded::new(others[k - 1].request());
                        (other.span_count(), QueuedExport::compress(&other))
                    }
                });
                QueuedExport::compressed(t.id, seq, *spans, body.clone())
            })
            .collect();
        let queued: Vec<(u64, u64)> = exports.iter().map(|e| (e.spans(), e.size())).collect();
        if let Some(backlog) = backlog {
            // The store's own encoding, as the pipeline would have packed it.
            let (spans, body) =
                bodies[0].get_or_insert_with(|| (encoded.span_count(), QueuedExport::compress(&encoded)));
            exports.push(QueuedExport::compressed(backlog, seq, *spans, body.clone()));
        }
        let batch = match rows {
            Some(rows) => rows.with_exports(exports),
            None => PreparedBatch::queue_only(n as usize, exports),
        };
        let durable = match self.store.submit(batch) {
            Ok(durable) => durable,
            Err(SubmitError::Backpressure(b)) => {
                self.metrics.refused_request(RefuseReason::Backpressure, n);
                return Err(IngestError::Busy(b.to_string()));
            }
            Err(SubmitError::Store(e)) => {
                self.metrics.refused_request(RefuseReason::StoreError, n);
                return Err(IngestError::Unavailable(e.to_string()));
            }
        };
        match durable.await {
            Ok(outcome) => {
                self.metrics.accepted(transport, n);
                self.metrics.duplicates(outcome.duplicates);
                if outcome.inserted > 0 {
                    for (t, (spans, bytes)) in self.exports.iter().zip(queued) {
                        t.metrics.queued_spans.fetch_add(spans, std::sync::atomic::Ordering::Relaxed);
                        t.metrics.queued_bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
                    }
                    // Durable now. A request whose every span was a
                    // duplicate (a retry of one already kept) is not
                    // diagnosed twice: its reservation is released unseen.
                    reservation.deliver(spans);
                }
                Ok(accepted)
            }
            Err(e) => {
                self.metrics.refused_request(RefuseReason::StoreError, n);
                Err(IngestError::Unavailable(e.to_string()))
            }
        }
    }
}
