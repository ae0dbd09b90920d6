//! The collector's own health, as Prometheus text on `/metrics`.
//!
//! Beside the data's road rather than on it: every stage bumps counters
//! here, and the API renders them. Counters are plain atomics; the request
//! latency is a fixed-bucket histogram, so recording never allocates or
//! locks on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Which receiver a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with a protobuf body.
    HttpProtobuf,
    /// OTLP/HTTP with a JSON body.
    HttpJson,
    /// Zipkin v2 over HTTP (JSON or protobuf).
    Zipkin,
}

/// How many transports there are.
const TRANSPORTS: usize = 4;

impl Transport {
    const ALL: [Transport; TRANSPORTS] =
        [Transport::Grpc, Transport::HttpProtobuf, Transport::HttpJson, Transport::Zipkin];

    /// The transport's label in `/metrics` and the collector's own spans.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::HttpProtobuf => "http_protobuf",
            Transport::HttpJson => "http_json",
            Transport::Zipkin => "zipkin",
        }
    }

    /// The receiver and transport as the OpenTelemetry Collector labels them.
    fn collector_labels(self) -> (&'static str, &'static str) {
        match self {
            Transport::Grpc => ("otlp", "grpc"),
            Transport::HttpProtobuf | Transport::HttpJson => ("otlp", "http"),
            Transport::Zipkin => ("zipkin", "http"),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why spans or requests were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The body could not be decoded.
    Malformed,
    /// A span failed validation (bad IDs, nesting).
    InvalidSpan,
    /// The body was over the size limit (compressed or inflated).
    TooLarge,
    /// The pending-span budget was full (backpressure).
    Backpressure,
    /// The store failed to write.
    StoreError,
    /// No or wrong bearer token.
    Unauthenticated,
    /// Unsupported content type or encoding.
    UnsupportedMedia,
    /// The body did not arrive within the read timeout (a slow client).
    Timeout,
}

impl RefuseReason {
    const ALL: [RefuseReason; 8] = [
        RefuseReason::Malformed,
        RefuseReason::InvalidSpan,
        RefuseReason::TooLarge,
        RefuseReason::Backpressure,
        RefuseReason::StoreError,
        RefuseReason::Unauthenticated,
        RefuseReason::UnsupportedMedia,
        RefuseReason::Timeout,
    ];

    fn label(self) -> &'static str {
        match self {
            RefuseReason::Malformed => "malformed",
            RefuseReason::InvalidSpan => "invalid_span",
            RefuseReason::TooLarge => "too_large",
            RefuseReason::Backpressure => "backpressure",
            RefuseReason::StoreError => "store_error",
            RefuseReason::Unauthenticated => "unauthenticated",
            RefuseReason::UnsupportedMedia => "unsupported_media",
            RefuseReason::Timeout => "timeout",
        }
    }
}

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Every counter the collector keeps about itself.
#[derive(Debug, Default)]
pub struct Metrics {
    spans_received: [AtomicU64; TRANSPORTS],
    spans_accepted: [AtomicU64; TRANSPORTS],
    /// Decoded spans refused, by transport (whatever the reason).
    spans_refused_on: [AtomicU64; TRANSPORTS],
    spans_duplicate: AtomicU64,
    forwarded_undecoded: AtomicU64,
    bytes_received: [AtomicU64; TRANSPORTS],
    requests: [AtomicU64; TRANSPORTS],
    refused_spans: [AtomicU64; RefuseReason::ALL.len()],
    refused_requests: [AtomicU64; RefuseReason::ALL.len()],
    latency: [Histogram; TRANSPORTS],
    pending_spans: AtomicU64,
    store_bytes: AtomicU64,
    store_commits: AtomicU64,
    retention_deleted_spans: AtomicU64,
    retention_runs: AtomicU64,
    /// What redaction removed.
    pub redaction: RedactionMetrics,
    /// The live pipeline.
    pub pipeline: PipelineMetrics,
    exporters: std::sync::Mutex<Vec<std::sync::Arc<ExporterMetrics>>>,
}

/// What redaction removed, in total.
#[derive(Debug, Default)]
pub struct RedactionMetrics {
    /// Sensitive span events dropped.
    pub events_dropped: AtomicU64,
    /// Content attributes dropped.
    pub attributes_dropped: AtomicU64,
    /// Content attributes hashed.
    pub attributes_hashed: AtomicU64,
    /// String values with a secret masked.
    pub values_masked: AtomicU64,
}

/// The live pipeline's state and work.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    /// Traces open, or closed with their answers not yet stored (gauge).
    pub open_traces: AtomicU64,
    /// Spans held in memory, open traces and session window (gauge).
    pub buffered_spans: AtomicU64,
    /// Traces closed after their timeout and diagnosed.
    pub traces_closed: AtomicU64,
    /// Open traces closed early because the memory budget was reached.
    pub traces_closed_early: AtomicU64,
    /// Traces closed because they reached the maximum age.
    pub traces_closed_at_max_age: AtomicU64,
    /// Closes put off because a time-only join would make a trace still
    /// open the parent (the orphan waits for it).
    pub traces_deferred: AtomicU64,
    /// Closed traces dropped from the session window before their time
    /// because the memory budget was reached.
    pub window_evicted_traces: AtomicU64,
    /// Findings reported.
    pub findings: AtomicU64,
    /// Repairs applied.
    pub repairs_applied: AtomicU64,
    /// Spans given to diagnoses: each closed trace's own and its context's.
    pub diagnosed_spans: AtomicU64,
    /// Diagnoses whose context reached `pipeline.max_context_spans` and left
    /// out a trace it would have read (see `PipelineConfig::max_context_spans`).
    pub contexts_cut: AtomicU64,
    /// Spans decoded for diagnoses (the rest of `diagnosed_spans` were
    /// read where an earlier diagnosis had decoded them).
    pub decoded_spans: AtomicU64,
    /// Bytes of decoded spans kept between diagnoses (an estimate).
    pub decoded_bytes: AtomicU64,
    /// Diagnoses that panicked (a doctor bug a sender's spans found): their
    /// traces were stored and forwarded unrepaired.
    pub diagnoses_failed: AtomicU64,
    /// Traces whose request was diagnosed again once traces beside it
    /// closed with spans they did not have when it was answered.
    pub requests_rechecked: AtomicU64,
    /// Requests numbered into the store's backlog because the pipeline was
    /// behind (see [`crate::assemble::PipelineHandle::reserve`]).
    pub requests_to_backlog: AtomicU64,
    /// Spans waiting in the store's backlog for the pipeline (gauge).
    pub backlog_spans: AtomicU64,
    /// The last number given to an accepted request (see
    /// [`crate::assemble::PipelineHandle::reserve`]).
    pub requests_numbered: AtomicU64,
    /// Every request numbered up to this is in a closed, diagnosed trace
    /// whose answer is stored (the pipeline's watermark).
    pub requests_settled: AtomicU64,
}

impl PipelineMetrics {
    /// Accepted requests whose traces are not yet closed, diagnosed and
    /// stored: 0 means every answer so far can be read.
    pub fn requests_behind(&self) -> u64 {
        let numbered = self.requests_numbered.load(Ordering::Acquire);
        numbered.saturating_sub(self.requests_settled.load(Ordering::Acquire))
    }
}

/// One exporter's work; `name` is its endpoint and protocol.
#[derive(Debug, Default)]
pub struct ExporterMetrics {
    /// `endpoint (protocol)`.
    pub name: String,
    /// Spans the backend acknowledged.
    pub sent_spans: AtomicU64,
    /// Export attempts that failed and were retried.
    pub failed_attempts: AtomicU64,
    /// Spans the backend refused for good (a non-retryable answer).
    pub dropped_spans: AtomicU64,
    /// Spans waiting in the disk queue (gauge).
    pub queued_spans: AtomicU64,
    /// Bytes waiting in the disk queue (gauge).
    pub queued_bytes: AtomicU64,
    /// Spans kept in the dead letters, refused for good (gauge).
    pub dead_letter_spans: AtomicU64,
}

impl Metrics {
    /// A request arrived with `bytes` on the wire.
    pub fn request(&self, t: Transport, bytes: usize) {
        self.requests[t.index()].fetch_add(1, Ordering::Relaxed);
        self.bytes_received[t.index()].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Spans decoded from a request (valid or not).
    pub fn received(&self, t: Transport, spans: u64) {
        self.spans_received[t.index()].fetch_add(spans, Ordering::Relaxed);
    }

    /// Spans made durable (duplicates included: they were acknowledged).
    pub fn accepted(&self, t: Transport, spans: u64) {
        self.spans_accepted[t.index()].fetch_add(spans, Ordering::Relaxed);
    }

    /// Decoded spans that `t` refused (invalid, or the request could not be kept).
    pub fn refused_on(&self, t: Transport, spans: u64) {
        self.spans_refused_on[t.index()].fetch_add(spans, Ordering::Relaxed);
    }

    /// A request the pass-through forwarded without decoding it.
    pub fn forwarded_undecoded(&self) {
        self.forwarded_undecoded.fetch_add(1, Ordering::Relaxed);
    }

    /// Spans that were already stored (a client retry) and were not written again.
    pub fn duplicates(&self, spans: u64) {
        self.spans_duplicate.fetch_add(spans, Ordering::Relaxed);
    }

    /// A whole request was refused; `spans` is how many it held, if known.
    pub fn refused_request(&self, reason: RefuseReason, spans: u64) {
        self.refused_requests[reason as usize].fetch_add(1, Ordering::Relaxed);
        self.refused_spans[reason as usize].fetch_add(spans, Ordering::Relaxed);
    }

    /// Some spans of an accepted request were refused.
    pub fn refused_spans(&self, reason: RefuseReason, spans: u64) {
        self.refused_spans[reason as usize].fetch_add(spans, Ordering::Relaxed);
    }

    /// How long a request took from arrival to answer.
    pub fn latency(&self, t: Transport, d: Duration) {
        self.latency[t.index()].record(d);
    }

    /// Spans currently waiting to be written.
    pub fn set_pending(&self, spans: u64) {
        self.pending_spans.store(spans, Ordering::Relaxed);
    }

    /// Bytes the store occupies on disk.
    pub fn set_store_bytes(&self, bytes: u64) {
        self.store_bytes.store(bytes, Ordering::Relaxed);
    }

    /// One transaction committed.
    pub fn commit(&self) {
        self.store_commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Retention deleted spans.
    pub fn retention_deleted(&self, spans: u64) {
        self.retention_deleted_spans.fetch_add(spans, Ordering::Relaxed);
    }

    /// A retention pass finished.
    pub fn retention_ran(&self) {
        self.retention_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of the exporter named `name`, if one is registered.
    pub fn exporter_named(&self, name: &str) -> Option<std::sync::Arc<ExporterMetrics>> {
        self.exporters.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|e| e.name == name).cloned()
    }

    /// Registers an exporter's counters, rendered from then on.
    pub fn exporter(&self, name: String) -> std::sync::Arc<ExporterMetrics> {
        let m = std::sync::Arc::new(ExporterMetrics { name, ..Default::default() });
        self.exporters.lock().unwrap_or_else(|p| p.into_inner()).push(std::sync::Arc::clone(&m));
        m
    }

    /// Renders everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let per_transport = |out: &mut String, name: &str, help: &str, values: &[AtomicU64; TRANSPORTS]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for t in Transport::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{transport=\"{}\"}} {}",
                    t.label(),
                    values[t.index()].load(Ordering::Relaxed)
                );
            }
        };
        per_transport(&mut out, "agentrace_receiver_requests_total", "Export requests received.", &self.requests);
        per_transport(
            &mut out,
            "agentrace_receiver_bytes_total",
            "Request body bytes received, as sent on the wire.",
            &self.bytes_received,
        );
        per_transport(
            &mut out,
            "agentrace_receiver_spans_received_total",
            "Spans decoded from requests, valid or not.",
            &self.spans_received,
        );
        per_transport(
            &mut out,
            "agentrace_receiver_spans_accepted_total",
            "Spans made durable and acknowledged.",
            &self.spans_accepted,
        );
        let by_reason = |out: &mut String, name: &str, help: &str, values: &[AtomicU64; RefuseReason::ALL.len()]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for r in RefuseReason::ALL {
                let _ =
                    writeln!(out, "{name}{{reason=\"{}\"}} {}", r.label(), values[r as usize].load(Ordering::Relaxed));
            }
        };
        by_reason(&mut out, "agentrace_receiver_spans_refused_total", "Spans refused, by reason.", &self.refused_spans);
        by_reason(
            &mut out,
            "agentrace_receiver_requests_refused_total",
            "Whole requests refused, by reason.",
            &self.refused_requests,
        );
        let _ = writeln!(
            out,
            "# HELP agentrace_receiver_request_duration_seconds Time from a request's arrival to its answer.\n\
             # TYPE agentrace_receiver_request_duration_seconds histogram"
        );
        for t in Transport::ALL {
            let h = &self.latency[t.index()];
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "agentrace_receiver_request_duration_seconds_bucket{{transport=\"{}\",le=\"{bound}\"}} {cumulative}",
                    t.label()
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "agentrace_receiver_request_duration_seconds_bucket{{transport=\"{0}\",le=\"+Inf\"}} {count}\n\
                 agentrace_receiver_request_duration_seconds_sum{{transport=\"{0}\"}} {1}\n\
                 agentrace_receiver_request_duration_seconds_count{{transport=\"{0}\"}} {count}",
                t.label(),
                h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            );
        }
        let scalar = |out: &mut String, name: &str, kind: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", v.load(Ordering::Relaxed));
        };
        scalar(
            &mut out,
            "agentrace_receiver_spans_duplicate_total",
            "counter",
            "Spans acknowledged but not written again because they were already stored (client retries).",
            &self.spans_duplicate,
        );
        scalar(
            &mut out,
            "agentrace_receiver_requests_forwarded_undecoded_total",
            "counter",
            "Requests checked at the byte level and taken as they arrived, never decoded: stored, diagnosed and forwarded from their bytes.",
            &self.forwarded_undecoded,
        );
        scalar(&mut out, "agentrace_pending_spans", "gauge", "Spans waiting to be written.", &self.pending_spans);
        scalar(&mut out, "agentrace_store_size_bytes", "gauge", "Bytes the store occupies on disk.", &self.store_bytes);
        scalar(
            &mut out,
            "agentrace_store_commits_total",
            "counter",
            "Store transactions committed.",
            &self.store_commits,
        );
        scalar(
            &mut out,
            "agentrace_store_retention_deleted_spans_total",
            "counter",
            "Spans deleted by retention (age or size).",
            &self.retention_deleted_spans,
        );
        scalar(
            &mut out,
            "agentrace_store_retention_runs_total",
            "counter",
            "Retention passes completed.",
            &self.retention_runs,
        );
        let _ = writeln!(
            out,
            "# HELP agentrace_redaction_total What redaction removed or masked.\n# TYPE agentrace_redaction_total counter"
        );
        let r = &self.redaction;
        for (what, v) in [
            ("sensitive_event_dropped", &r.events_dropped),
            ("content_attribute_dropped", &r.attributes_dropped),
            ("content_attribute_hashed", &r.attributes_hashed),
            ("secret_masked", &r.values_masked),
        ] {
            let _ = writeln!(out, "agentrace_redaction_total{{what=\"{what}\"}} {}", v.load(Ordering::Relaxed));
        }
        let p = &self.pipeline;
        for (name, kind, help, v) in [
            (
                "agentrace_pipeline_open_traces",
                "gauge",
                "Traces open, waiting for late spans, or closed with their answers not yet stored.",
                &p.open_traces,
            ),
            (
                "agentrace_pipeline_buffered_spans",
                "gauge",
                "Spans held in memory: open traces and the session window.",
                &p.buffered_spans,
            ),
            (
                "agentrace_pipeline_backlog_spans",
                "gauge",
                "Spans accepted while the pipeline was behind, waiting in the store's backlog to be diagnosed.",
                &p.backlog_spans,
            ),
            (
                "agentrace_pipeline_requests_to_backlog_total",
                "counter",
                "Requests accepted into the store's backlog because the pipeline was behind (instead of refused).",
                &p.requests_to_backlog,
            ),
            (
                "agentrace_pipeline_decoded_bytes",
                "gauge",
                "Decoded spans kept between diagnoses, in bytes (an estimate; pipeline.keep_decoded bounds it).",
                &p.decoded_bytes,
            ),
            ("agentrace_pipeline_traces_closed_total", "counter", "Traces closed and diagnosed.", &p.traces_closed),
            (
                "agentrace_pipeline_traces_deferred_total",
                "counter",
                "Closes put off until the trace a time-only join would make the parent has closed too.",
                &p.traces_deferred,
            ),
            (
                "agentrace_pipeline_traces_closed_early_total",
                "counter",
                "Open traces closed before their timeout because the memory budget was reached (evictions).",
                &p.traces_closed_early,
            ),
            (
                "agentrace_pipeline_traces_closed_at_max_age_total",
                "counter",
                "Traces closed while still receiving spans, at the maximum age.",
                &p.traces_closed_at_max_age,
            ),
            (
                "agentrace_pipeline_window_evicted_traces_total",
                "counter",
                "Closed traces dropped from the session window early because the memory budget was reached (evictions).",
                &p.window_evicted_traces,
            ),
            (
                "agentrace_pipeline_traces_rechecked_total",
                "counter",
                "Traces whose request was diagnosed again once the traces beside it, still open when it was answered, had closed with spans they did not have then.",
                &p.requests_rechecked,
            ),
            ("agentrace_pipeline_findings_total", "counter", "Findings reported by the live diagnosis.", &p.findings),
            ("agentrace_pipeline_repairs_applied_total", "counter", "Repairs applied.", &p.repairs_applied),
            (
                "agentrace_pipeline_diagnosed_spans_total",
                "counter",
                "Spans given to diagnoses: each closed trace's own and those of its session and joined traces.",
                &p.diagnosed_spans,
            ),
            (
                "agentrace_pipeline_contexts_cut_total",
                "counter",
                "Diagnoses whose context reached pipeline.max_context_spans and left out traces that ran beside the closing ones: their answers may differ from the file doctor's, which reads every span.",
                &p.contexts_cut,
            ),
            (
                "agentrace_pipeline_decoded_spans_total",
                "counter",
                "Spans decoded for diagnoses; the rest of those diagnosed were read where an earlier diagnosis had decoded them.",
                &p.decoded_spans,
            ),
            (
                "agentrace_pipeline_diagnoses_failed_total",
                "counter",
                "Diagnoses that failed (a doctor bug): their traces were kept and forwarded unrepaired.",
                &p.diagnoses_failed,
            ),
        ] {
            scalar(&mut out, name, kind, help, v);
        }
        let behind = AtomicU64::new(p.requests_behind());
        scalar(
            &mut out,
            "agentrace_pipeline_requests_behind",
            "gauge",
            "Accepted requests whose traces are not yet closed, diagnosed and stored.",
            &behind,
        );
        // The OpenTelemetry Collector's own names, so its dashboards and
        // alerts apply (`receiver`, `transport`, `exporter` labels as it
        // sets them; its `http` transport is both OTLP/HTTP encodings).
        let per_collector_transport = |out: &mut String, name: &str, help: &str, values: &[AtomicU64; TRANSPORTS]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let mut series: Vec<((&str, &str), u64)> = Vec::new();
            for t in Transport::ALL {
                let v = values[t.index()].load(Ordering::Relaxed);
                match series.iter_mut().find(|(labels, _)| *labels == t.collector_labels()) {
                    Some((_, total)) => *total += v,
                    None => series.push((t.collector_labels(), v)),
                }
            }
            for ((receiver, transport), v) in series {
                let _ = writeln!(out, "{name}{{receiver=\"{receiver}\",transport=\"{transport}\"}} {v}");
            }
        };
        per_collector_transport(
            &mut out,
            "otelcol_receiver_accepted_spans",
            "Spans the receiver accepted (made durable), as the OpenTelemetry Collector names it.",
            &self.spans_accepted,
        );
        per_collector_transport(
            &mut out,
            "otelcol_receiver_refused_spans",
            "Spans the receiver refused, as the OpenTelemetry Collector names it.",
            &self.spans_refused_on,
        );
        let exporters = self.exporters.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (name, kind, help, get) in [
            (
                "agentrace_exporter_sent_spans_total",
                "counter",
                "Spans a backend acknowledged.",
                (|e: &ExporterMetrics| &e.sent_spans) as fn(&ExporterMetrics) -> &AtomicU64,
            ),
            (
                "agentrace_exporter_failed_attempts_total",
                "counter",
                "Export attempts that failed and will be retried.",
                |e| &e.failed_attempts,
            ),
            (
                "agentrace_exporter_dropped_spans_total",
                "counter",
                "Spans a backend refused with a non-retryable answer.",
                |e| &e.dropped_spans,
            ),
            ("agentrace_exporter_queue_spans", "gauge", "Spans waiting in the disk queue.", |e| &e.queued_spans),
            ("agentrace_exporter_queue_bytes", "gauge", "Bytes waiting in the disk queue.", |e| &e.queued_bytes),
            (
                "agentrace_exporter_dead_letter_spans",
                "gauge",
                "Spans a backend refused for good, kept for an operator to replay.",
                |e| &e.dead_letter_spans,
            ),
            // The OpenTelemetry Collector's names for the same.
            (
                "otelcol_exporter_sent_spans",
                "counter",
                "Spans a backend acknowledged, as the OpenTelemetry Collector names it.",
                |e| &e.sent_spans,
            ),
            (
                "otelcol_exporter_send_failed_spans",
                "counter",
                "Spans that could not be sent and will not be retried, as the OpenTelemetry Collector names it.",
                |e| &e.dropped_spans,
            ),
            (
                "otelcol_exporter_queue_size",
                "gauge",
                "Spans waiting in the exporter's (disk) queue, as the OpenTelemetry Collector names it.",
                |e| &e.queued_spans,
            ),
        ] {
            if exporters.is_empty() {
                break;
            }
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for e in &exporters {
                let label = e.name.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(out, "{name}{{exporter=\"{label}\"}} {}", get(e).load(Ordering::Relaxed));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counters_labelled() {
        let m = Metrics::default();
        m.latency(Transport::Grpc, Duration::from_millis(3));
        m.latency(Transport::Grpc, Duration::from_millis(30));
        m.refused_request(RefuseReason::Backpressure, 100);
        let text = m.render();
        assert!(text.contains("agentrace_receiver_request_duration_seconds_bucket{transport=\"grpc\",le=\"0.005\"} 1"));
        assert!(text.contains("agentrace_receiver_request_duration_seconds_bucket{transport=\"grpc\",le=\"0.05\"} 2"));
        assert!(text.contains("agentrace_receiver_request_duration_seconds_count{transport=\"grpc\"} 2"));
        assert!(text.contains("agentrace_receiver_spans_refused_total{reason=\"backpressure\"} 100"));
        m.accepted(Transport::HttpJson, 3);
        m.accepted(Transport::HttpProtobuf, 4);
        m.refused_on(Transport::Grpc, 5);
        let text = m.render();
        assert!(text.contains("otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"http\"} 7"), "{text}");
        assert!(text.contains("otelcol_receiver_refused_spans{receiver=\"otlp\",transport=\"grpc\"} 5"), "{text}");
    }
}
