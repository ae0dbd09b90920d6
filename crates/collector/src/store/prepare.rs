//! Turning a validated export request into rows, on the request's own task.
//!
//! The expensive part of a write (cutting each span's bytes out of the
//! request's one encoding, [`crate::wire`], compressing them, picking out
//! the indexed columns) happens here, outside the writer thread, so the
//! single writer does nothing but SQLite work. Every column is read from
//! the encoding ([`agentrace_model::span_bytes::fields`]), so a request
//! taken as it arrived is never decoded for the store.
//!
//! Resources and scopes are stored once each: a resource row holds an
//! encoded `ResourceSpans` with no scopes (so its `schema_url` is kept), a
//! scope row an encoded `ScopeSpans` with no spans. The spans of a request
//! are kept exactly as they were encoded, one after the other, and
//! compressed together into one chunk (LZ4): spans of one request repeat
//! their attribute keys and much of their values, so a chunk is several
//! times smaller than its spans, and the store writes that much less. Each
//! span row keeps its indexed columns and its place in the chunk.

use agentrace_model::keys::KeyKind;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};

use crate::wire::Encoded;

/// One span, ready to insert.
#[derive(Debug)]
pub struct SpanRow {
    pub(crate) trace_id: Vec<u8>,
    pub(crate) span_id: Vec<u8>,
    pub(crate) parent_span_id: Option<Vec<u8>>,
    pub(crate) resource: usize,
    pub(crate) scope: usize,
    pub(crate) name: String,
    pub(crate) kind: i32,
    pub(crate) start_ns: i64,
    pub(crate) end_ns: i64,
    pub(crate) status_code: i32,
    pub(crate) chunk_index: u32,
    pub(crate) keys: Vec<(KeyKind, String)>,
}

/// A request, ready for the writer.
#[derive(Debug, Default)]
pub struct PreparedBatch {
    /// Encoded resources with their `service.name`.
    pub(crate) resources: Vec<(Vec<u8>, String)>,
    /// Encoded scopes.
    pub(crate) scopes: Vec<Vec<u8>>,
    /// Spans, pointing into `resources` and `scopes` by index.
    pub(crate) spans: Vec<SpanRow>,
    /// Every span of the request, length-delimited, LZ4-compressed with
    /// its size prepended; `SpanRow::chunk_index` counts into it.
    pub(crate) chunk: Vec<u8>,
    /// Latest span start in the chunk, for retention.
    pub(crate) chunk_max_start_ns: i64,
    /// The same request for each exporter's disk queue, written in the same
    /// transaction, so an acknowledged span is queued for every backend.
    pub(crate) exports: Vec<QueuedExport>,
    /// Queue rows a backend has acknowledged, to delete.
    pub(crate) dequeue: Vec<i64>,
    /// Why the backend refused the `dequeue` rows for good, when it did:
    /// they move to the dead letters instead of going.
    pub(crate) dead_letter: Option<String>,
    /// An exporter whose dead letters go back into its queue.
    pub(crate) replay_dead_letters: Option<i64>,
    /// Per-span rewrites for exporters (repairs, rollups), to keep.
    pub(crate) patches: Vec<PatchRow>,
    /// Traces whose spans' rewrites `patches` holds in full: their stored
    /// rewrites go first (a diagnosis that undid a join leaves no patch
    /// for the span it had moved, and the old one must not stay).
    pub(crate) repatched: Vec<Vec<u8>>,
    pub(crate) requests: Vec<RequestRow>,
    /// Request rows to drop before the new ones are written: every request
    /// of these connected trace IDs (requests that joined another, and
    /// those of a closing trace, which are all written anew).
    pub(crate) retired_requests: Vec<Vec<u8>>,
    /// Spans a queue-only batch stands for (pass-through, no span rows).
    pub(crate) queued_only: usize,
}

/// A request waiting in one exporter's disk queue.
#[derive(Debug)]
pub struct QueuedExport {
    pub(crate) exporter: i64,
    pub(crate) seq: u64,
    pub(crate) spans: u32,
    /// The redacted request, protobuf, LZ4 with its size prepended.
    pub(crate) body: Vec<u8>,
}

impl QueuedExport {
    /// The queue's form of a request: its encoding, LZ4 with the size
    /// prepended. Computed once for every exporter that takes the same bytes.
    pub fn compress(request: &Encoded) -> Vec<u8> {
        lz4_flex::block::compress_prepend_size(request.bytes())
    }

    /// Queues a body that [`QueuedExport::compress`] made, of `spans` spans,
    /// for exporter `exporter`; `seq` orders it against the live pipeline's progress.
    pub fn compressed(exporter: i64, seq: u64, spans: usize, body: Vec<u8>) -> QueuedExport {
        QueuedExport { exporter, seq, spans: u32::try_from(spans).unwrap_or(u32::MAX), body }
    }

    /// Bytes it takes in the queue.
    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }

    /// Spans it holds.
    pub fn spans(&self) -> u64 {
        u64::from(self.spans)
    }
}

/// What the live diagnosis says about one arrived trace. The pipeline
/// builds request rows and counts findings from it; it is not stored (the
/// request row holds the answer).
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRow {
    /// The trace, as it arrived.
    pub trace_id: Vec<u8>,
    /// Its earliest span start.
    pub start_ns: i64,
    /// From its earliest start to its latest end.
    pub duration_ns: i64,
    /// Service of its root (or earliest) span.
    pub root_service: String,
    /// Name of its root (or earliest) span.
    pub root_name: String,
    /// Spans it holds.
    pub spans: i64,
    /// Its session, if any span carried one.
    pub session: Option<String>,
    /// LLM input tokens in it.
    pub input_tokens: i64,
    /// LLM output tokens in it.
    pub output_tokens: i64,
    /// Cost of its LLM calls, USD.
    pub cost_usd: f64,
    /// Findings on its spans.
    pub findings: i64,
    /// Spans with an error status.
    pub errors: i64,
    /// Repairs applied to its spans.
    pub repairs: i64,
    /// The trace ID it belongs to once connected (its own when not repaired).
    pub connected_trace_id: Vec<u8>,
    /// Models of its LLM calls (for its request's row; not a column).
    pub models: Vec<String>,
}

/// What the live diagnosis says about one connected request: a row of the
/// request list, written when any of its traces closes and rewritten when
/// a later trace joins it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    /// The connected trace ID (its root's trace).
    pub request_id: Vec<u8>,
    /// Its root span: a trace whose span names a parent that never arrived
    /// holds two requests.
    pub root_span_id: Vec<u8>,
    /// The root's start.
    pub start_ns: i64,
    /// From the root's start to the end of the last work it caused.
    pub duration_ns: i64,
    /// Service of its root.
    pub root_service: String,
    /// Name of its root.
    pub root_name: String,
    /// Its session, if any span carried one.
    pub session: Option<String>,
    /// The trace IDs it was joined from, as they arrived.
    pub trace_ids: Vec<Vec<u8>>,
    /// Spans it holds.
    pub spans: i64,
    /// The agents that worked in it.
    pub agents: Vec<String>,
    /// The models its LLM calls used.
    pub models: Vec<String>,
    /// LLM input tokens.
    pub input_tokens: i64,
    /// LLM output tokens.
    pub output_tokens: i64,
    /// Cost of its LLM calls, USD.
    pub cost_usd: f64,
    /// Findings on its spans.
    pub findings: i64,
    /// Findings that say trace context broke.
    pub broken: i64,
    /// Errors that caused its failure (causal errors).
    pub errors: i64,
    /// Whether it failed.
    pub failed: bool,
    /// Repairs applied to its spans.
    pub repairs: i64,
    /// The doctor's answer for it, JSON (`agentrace_doctor::RequestAnswer`).
    pub answer: String,
}

/// How an exporter should rewrite one span, JSON (see `export::patch`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRow {
    /// The span's trace, as it arrived.
    pub trace_id: Vec<u8>,
    /// The span.
    pub span_id: Vec<u8>,
    /// The rewrite.
    pub patch: String,
}

impl PreparedBatch {
    /// How many spans the batch holds.
    pub fn len(&self) -> usize {
        self.spans.len().max(self.queued_only)
    }

    /// Whether the batch holds no spans.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Prepares a redacted request for the store from its encoding (made
    /// once, [`crate::wire`], or a clean body as it arrived): every row is
    /// read from the bytes, nothing is decoded again. The
    /// receivers have validated it (IDs have the right lengths).
    pub fn from_encoded(encoded: &Encoded) -> PreparedBatch {
        PreparedBatch::read(encoded, None)
    }

    /// [`PreparedBatch::from_encoded`], and the live pipeline's blocks
    /// packed in the same walk: each span's fields are read once for both.
    pub fn from_encoded_packing(encoded: &Encoded, packer: &mut crate::assemble::Packer) -> PreparedBatch {
        PreparedBatch::read(encoded, Some(packer))
    }

    fn read(encoded: &Encoded, mut packer: Option<&mut crate::assemble::Packer>) -> PreparedBatch {
        let mut batch = PreparedBatch::default();
        let mut plain = Vec::with_capacity(encoded.bytes().len());
        for enc_rs in encoded.resources() {
            let shell = enc_rs.decode_shell();
            if let Some(p) = packer.as_mut() {
                p.resource(&shell);
            }
            let service = shell
                .resource
                .as_ref()
                .and_then(|r| string_attr(&r.attributes, "service.name"))
                .unwrap_or("unknown_service")
                .to_owned();
            let resource_index = batch.resources.len();
            batch.resources.push((enc_rs.shell.clone(), service));
            for enc_ss in &enc_rs.scopes {
                let scope_index = batch.scopes.len();
                batch.scopes.push(enc_ss.shell.clone());
                if let Some(p) = packer.as_mut() {
                    p.scope(&enc_ss.decode_shell());
                }
                for range in &enc_ss.spans {
                    let chunk_index = u32::try_from(batch.spans.len()).unwrap_or(u32::MAX);
                    let Some(row) = encoded.span_fields(range, |span| {
                        if let Some(p) = packer.as_mut() {
                            p.span(encoded.span(range), span);
                        }
                        let mut keys = span.keys.keys();
                        // The traces it links to (a consumer's producer): the
                        // other side of a hand-off, for collectors that share the store.
                        for link in &span.link_trace_ids {
                            if link.len() == 16 && *link != span.trace_id && link.iter().any(|b| *b != 0) {
                                let target = agentrace_model::ids::to_hex(link);
                                if !keys.iter().any(|(k, v)| *k == KeyKind::Link && *v == target) {
                                    keys.push((KeyKind::Link, target));
                                }
                            }
                        }
                        SpanRow {
                            parent_span_id: (!span.parent_span_id.is_empty()).then(|| span.parent_span_id.to_vec()),
                            trace_id: span.trace_id.to_vec(),
                            span_id: span.span_id.to_vec(),
                            resource: resource_index,
                            scope: scope_index,
                            name: span.name.to_owned(),
                            kind: span.kind,
                            start_ns: clamp_time(span.start_unix_nano),
                            end_ns: clamp_time(span.end_unix_nano),
                            status_code: span.status_code,
                            chunk_index,
                            keys,
                        }
                    }) else {
                        continue;
                    };
                    plain.extend_from_slice(encoded.span(range));
                    batch.spans.push(row);
                }
            }
        }
        batch.chunk_max_start_ns = batch.spans.iter().map(|s| s.start_ns).max().unwrap_or(0);
        batch.chunk = lz4_flex::block::compress_prepend_size(&plain);
        batch
    }

    /// Also queues the request for exporters, in the same transaction.
    pub fn with_exports(mut self, exports: Vec<QueuedExport>) -> PreparedBatch {
        self.exports = exports;
        self
    }

    /// A pass-through write: `spans` spans go only to the exporters' queues.
    pub fn queue_only(spans: usize, exports: Vec<QueuedExport>) -> PreparedBatch {
        PreparedBatch { queued_only: spans, exports, ..Default::default() }
    }

    /// A write that only deletes acknowledged queue rows.
    pub fn dequeue(ids: Vec<i64>) -> PreparedBatch {
        PreparedBatch { dequeue: ids, ..Default::default() }
    }

    /// A write that moves queue rows a backend refused for good to the
    /// dead letters, with the backend's reason.
    pub fn dead_letter(ids: Vec<i64>, reason: String) -> PreparedBatch {
        PreparedBatch { dequeue: ids, dead_letter: Some(reason), ..Default::default() }
    }

    /// A write that puts an exporter's dead letters back into its queue
    /// (its outcome's `inserted` counts the requests moved).
    pub fn replay_dead_letters(exporter: i64) -> PreparedBatch {
        PreparedBatch { replay_dead_letters: Some(exporter), ..Default::default() }
    }

    /// A write that keeps the live diagnosis of closed traces: their
    /// requests' rows and their spans' patches.
    pub fn analysis(
        patches: Vec<PatchRow>,
        repatched: Vec<Vec<u8>>,
        requests: Vec<RequestRow>,
        retired_requests: Vec<Vec<u8>>,
    ) -> PreparedBatch {
        PreparedBatch { patches, repatched, requests, retired_requests, ..Default::default() }
    }
}

/// Most bytes a stored chunk may claim to inflate to; a larger claim means
/// the file was damaged, and is refused rather than allocated.
const MAX_CHUNK_BYTES: usize = 1 << 30;

/// The spans of a stored chunk: byte ranges of each encoded span within
/// the inflated chunk.
pub(crate) struct Chunk {
    bytes: Vec<u8>,
    spans: Vec<std::ops::Range<usize>>,
}

impl Chunk {
    /// Inflates and splits a chunk as [`PreparedBatch::from_encoded`] wrote it.
    pub(crate) fn open(compressed: &[u8]) -> Result<Chunk, String> {
        let claimed = compressed.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        if claimed.is_none_or(|n| n > MAX_CHUNK_BYTES) {
            return Err("chunk header is damaged".into());
        }
        let bytes = lz4_flex::block::decompress_size_prepended(compressed).map_err(|e| e.to_string())?;
        let mut spans = Vec::new();
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let before = rest.len();
            let len = prost::encoding::decode_varint(&mut rest).map_err(|e| e.to_string())? as usize;
            let start = bytes.len() - rest.len();
            if len > rest.len() {
                return Err(format!("chunk is truncated at byte {}", bytes.len() - before));
            }
            spans.push(start..start + len);
            rest = &rest[len..];
        }
        Ok(Chunk { bytes, spans })
    }

    /// The encoded span at `index`.
    pub(crate) fn span(&self, index: usize) -> Option<&[u8]> {
        self.spans.get(index).map(|r| &self.bytes[r.clone()])
    }
}

/// SQLite integers are signed; times past 2262 are clamped rather than wrapped.
fn clamp_time(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn request(n: usize) -> ExportTraceServiceRequest {
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![7; 16],
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: format!("step {i}"),
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_chunk_gives_back_every_span_byte_for_byte() {
        let req = request(50);
        let batch = PreparedBatch::from_encoded(&Encoded::new(&req));
        let chunk = Chunk::open(&batch.chunk).unwrap();
        for (i, span) in req.resource_spans[0].scope_spans[0].spans.iter().enumerate() {
            assert_eq!(chunk.span(batch.spans[i].chunk_index as usize).unwrap(), span.encode_to_vec().as_slice());
        }
        assert!(chunk.span(50).is_none());
        assert!(batch.chunk.len() < req.encoded_len(), "similar spans compress");
    }

    #[test]
    fn a_link_to_another_trace_is_indexed_as_the_other_side_of_a_hop() {
        use opentelemetry_proto::tonic::trace::v1::span::Link;
        let mut req = request(3);
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        let link = |trace: u8| Link { trace_id: vec![trace; 16], span_id: vec![1; 8], ..Default::default() };
        // To its producer's trace (twice: one key), to its own trace, and to no trace.
        spans[0].links = vec![link(9), link(9), link(7), Link { trace_id: vec![0; 16], ..link(0) }];
        let batch = PreparedBatch::from_encoded(&Encoded::new(&req));
        assert_eq!(batch.spans[0].keys, vec![(KeyKind::Link, "09".repeat(16))]);
        assert!(batch.spans[1].keys.is_empty());
    }

    #[test]
    fn a_damaged_chunk_is_an_error_not_a_panic_or_a_huge_allocation() {
        let req = request(5);
        let batch = PreparedBatch::from_encoded(&Encoded::new(&req));
        let mut huge = batch.chunk.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Chunk::open(&huge).is_err());
        assert!(Chunk::open(&batch.chunk[..batch.chunk.len() / 2]).is_err());
        assert!(Chunk::open(&[1, 2]).is_err());
    }
}
