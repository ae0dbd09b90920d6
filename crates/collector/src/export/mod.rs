//! Exporters: OTLP to the backends a team already has. The last stop on
//! the data's road that leaves the machine.
//!
//! Every accepted request is written, redacted for each backend, into that
//! backend's disk queue in the same transaction as the store (see
//! [`crate::store::QueuedExport`]): once a sender has its acknowledgement, a
//! backend outage or a `kill -9` of agentrace cannot lose the spans. One
//! task per backend sends the queue in order, in batches, and deletes a
//! batch only once the backend acknowledged it: delivery is at least once
//! (a crash between the backend's answer and the delete sends that batch
//! again, and backends de-duplicate spans by ID or show them twice).
//!
//! Failures are retried with exponential backoff (250 ms doubling, capped,
//! with jitter, `Retry-After` honoured) on the answers the OTLP
//! specification calls retryable: gRPC `UNAVAILABLE`, `RESOURCE_EXHAUSTED`,
//! `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`, `CANCELLED`, `DEADLINE_EXCEEDED`;
//! HTTP 429, 502, 503, 504; and any connection error. Other answers drop
//! the batch and count it, as the OpenTelemetry Collector does: resending
//! what a backend refuses for good would block everything behind it.
//!
//! Backends that repair (`reparent`, `link`) send a request only once the
//! live pipeline has closed and diagnosed every trace in it (its
//! watermark), and apply the stored [`patch::SpanPatch`]es on the way out.

mod client;
pub mod patch;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::watch;
use tracing::Instrument;

use crate::assemble::PipelineHandle;
use crate::config::{ExportProtocol, ExportRepair, ExporterConfig};
use crate::export::patch::ApplyPatch;
use crate::metrics::ExporterMetrics;
use crate::store::{PreparedBatch, Store, query};

pub use client::{ClientError, OtlpClient, signal_url};

/// How long an idle exporter waits before looking at its queue again.
const POLL: Duration = Duration::from_millis(100);

/// One configured backend, with its queue.
#[derive(Clone)]
pub struct ExportTarget {
    /// Its queue's ID in the store.
    pub id: i64,
    /// Its settings.
    pub config: ExporterConfig,
    /// Its counters.
    pub metrics: Arc<ExporterMetrics>,
}

/// The name an exporter's queue and metrics go by: endpoint and protocol.
pub fn exporter_name(config: &ExporterConfig) -> String {
    let protocol = match config.protocol {
        ExportProtocol::Grpc => "grpc",
        ExportProtocol::HttpProtobuf => "http/protobuf",
        ExportProtocol::HttpJson => "http/json",
    };
    format!("{} {protocol}", config.endpoint)
}

/// Starts the sending task of one backend; it stops when `stop` turns true,
/// leaving what it has not sent in the queue.
pub fn spawn(
    target: ExportTarget,
    store: Store,
    pipeline: PipelineHandle,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ClientError> {
    let client = OtlpClient::new(&target.config)?;
    Ok(tokio::spawn(run(target, client, store, pipeline, stop)))
}

async fn run(
    target: ExportTarget,
    client: OtlpClient,
    store: Store,
    pipeline: PipelineHandle,
    mut stop: watch::Receiver<bool>,
) {
    let id = target.id;
    let max_spans = target.config.max_batch_spans as u64;
    let repair = target.config.repair;
    loop {
        if *stop.borrow() {
            return;
        }
        let max_seq = if repair == ExportRepair::Off { u64::MAX } else { pipeline.watermark() };
        let window = query::QueueWindow { after: 0, max_seq, max_spans, max_bytes: target.config.max_batch_bytes };
        // With a shared store, the rows this collector may send are leased to it.
        let me = store.is_shared().then(|| store.instance().to_owned());
        let rows = match store
            .read(move |c| match &me {
                Some(me) => query::queue_lease(c, id, window, me),
                None => query::queue_peek(c, id, window),
            })
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, exporter = %target.metrics.name, "cannot read the export queue");
                if sleep_or_stop(&mut stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        if rows.is_empty() {
            if sleep_or_stop(&mut stop, POLL).await {
                return;
            }
            continue;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let (spans, bytes) = rows.iter().fold((0, 0), |(s, b), r| (s + r.spans, b + r.size));
        let body = if repair == ExportRepair::Off && !client.takes_json() {
            // Requests as queued, concatenated: one request holding all
            // their resource spans. Nothing to decode or encode again.
            let mut body = Vec::with_capacity(rows.iter().map(|r| r.encoded.len()).sum());
            for row in &rows {
                body.extend_from_slice(&row.encoded);
            }
            Bytes::from(body)
        } else {
            let mut request = ExportTraceServiceRequest::default();
            for row in &rows {
                match row.request() {
                    Ok(r) => request.resource_spans.extend(r.resource_spans),
                    Err(e) => tracing::error!(error = %e, "skipping an undecodable export queue row"),
                }
            }
            if repair != ExportRepair::Off {
                apply_patches(&store, &mut request, repair, target.config.min_confidence).await;
            }
            match client.encode(&request) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a batch; kept in the dead letters");
                    Bytes::new()
                }
            }
        };
        let outcome = if body.is_empty() {
            Sent::Refused("the batch could not be encoded for this exporter's protocol".to_owned())
        } else {
            send_until_done(&client, &target, body, spans, &mut stop).await
        };
        let write = match outcome {
            Sent::Stopped => return,
            Sent::Delivered => PreparedBatch::dequeue(ids),
            // Never to nowhere: an operator can look and replay
            // (`/api/agentrace/dead-letters`).
            Sent::Refused(reason) => {
                target.metrics.dropped_spans.fetch_add(spans, Ordering::Relaxed);
                target.metrics.dead_letter_spans.fetch_add(spans, Ordering::Relaxed);
                PreparedBatch::dead_letter(ids, reason)
            }
        };
        match store.submit(write) {
            Ok(durable) => {
                if let Err(e) = durable.await {
                    tracing::error!(error = %e, "cannot delete sent spans from the export queue; they will be sent again");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot delete sent spans from the export queue"),
        }
        target
            .metrics
            .queued_spans
            .fetch_sub(spans.min(target.metrics.queued_spans.load(Ordering::Relaxed)), Ordering::Relaxed);
        target
            .metrics
            .queued_bytes
            .fetch_sub(bytes.min(target.metrics.queued_bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
    }
}

/// How sending one batch ended.
enum Sent {
    /// The backend took it (perhaps refusing some spans, which OTLP does
    /// not name, so they are counted only).
    Delivered,
    /// The backend refused it for good, saying this.
    Refused(String),
    /// The exporter was told to stop first.
    Stopped,
}

/// Sends one batch until the backend takes it or refuses it for good.
async fn send_until_done(
    client: &OtlpClient,
    target: &ExportTarget,
    body: Bytes,
    spans: u64,
    stop: &mut watch::Receiver<bool>,
) -> Sent {
    let mut backoff = Duration::from_millis(250);
    let mut attempt: u64 = 0;
    loop {
        let span = tracing::info_span!(
            "export",
            otel.kind = "client",
            exporter = %target.metrics.name,
            spans,
            attempt,
            otel.status_code = tracing::field::Empty,
        );
        let outcome = client.export(body.clone()).instrument(span.clone()).await;
        if outcome.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        match outcome {
            Ok(rejected) => {
                if rejected > 0 {
                    tracing::warn!(rejected, exporter = %target.metrics.name, "the backend rejected some spans");
                    target.metrics.dropped_spans.fetch_add(rejected.min(spans), Ordering::Relaxed);
                }
                target.metrics.sent_spans.fetch_add(spans.saturating_sub(rejected), Ordering::Relaxed);
                return Sent::Delivered;
            }
            // Settings errors surface when the client is built, not here.
            Err(ClientError::Permanent(message) | ClientError::Config(message)) => {
                tracing::error!(
                    %message,
                    spans,
                    exporter = %target.metrics.name,
                    "the backend refused a batch for good; kept in the dead letters"
                );
                return Sent::Refused(message);
            }
            // Kept queued: retried at the longest backoff, loudly, until
            // an operator fixes the exporter (the queue's size bounds it,
            // and a full queue pushes back on senders: nothing is lost).
            Err(ClientError::Misconfigured(message)) => {
                target.metrics.failed_attempts.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%message, spans, exporter = %target.metrics.name, "export misconfigured; the batch stays queued");
                if sleep_or_stop(stop, target.config.max_backoff).await {
                    return Sent::Stopped;
                }
            }
            Err(ClientError::Retryable { message, after }) => {
                target.metrics.failed_attempts.fetch_add(1, Ordering::Relaxed);
                attempt += 1;
                let wait = after.unwrap_or(backoff).min(target.config.max_backoff);
                // Jitter, so that many collectors do not retry in step.
                let jitter = Duration::from_millis((attempt.wrapping_mul(7919) ^ spans) % 100);
                tracing::warn!(%message, ?wait, exporter = %target.metrics.name, "export failed; will retry");
                if sleep_or_stop(stop, wait + jitter).await {
                    return Sent::Stopped;
                }
                backoff = (backoff * 2).min(target.config.max_backoff);
            }
        }
    }
}

/// Rewrites the request's spans with their stored patches.
async fn apply_patches(
    store: &Store,
    request: &mut ExportTraceServiceRequest,
    mode: ExportRepair,
    min_confidence: f64,
) {
    let traces: HashSet<Vec<u8>> = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.trace_id.clone())
        .collect();
    let traces: Vec<Vec<u8>> = traces.into_iter().collect();
    let patches = match store.read(move |c| query::patches(c, &traces)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot read repairs; sending the batch unrepaired");
            return;
        }
    };
    if patches.is_empty() {
        return;
    }
    for span in request.resource_spans.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans) {
        let key = (span.trace_id.clone(), span.span_id.clone());
        if let Some(p) = patches.get(&key).and_then(|json| serde_json::from_str::<patch::SpanPatch>(json).ok()) {
            p.apply(span, mode, min_confidence);
        }
    }
}

/// Sleeps, or returns true at once when told to stop.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}
