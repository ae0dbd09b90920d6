//! Spans as the pipeline holds them: the spans of one trace that arrived
//! together (same request, resource and scope) are encoded as they arrived
//! and LZ4-compressed as one block, and decoded only when their trace is
//! diagnosed. Spans of one trace repeat their keys and much of their
//! values, so a block takes a fraction of the encoded size, and about a
//! tenth of what decoded spans take.

use std::sync::Arc;

use agentrace_model::keys::KeyKind;
use agentrace_model::span::{resource_from_otlp, scope_from_otlp};
use agentrace_model::{Resource, Scope, Span, TraceId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use prost::Message;

use crate::wire::Encoded;

/// Buffered spans of one trace that arrived together.
#[derive(Debug, Clone)]
pub struct PackedSpan {
    pub(crate) trace_id: TraceId,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) count: usize,
    /// How many of them have no parent: the trace's root is among them.
    pub(crate) roots: usize,
    /// Length-delimited OTLP spans, LZ4 with the size prepended.
    block: Box<[u8]>,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
}

/// Spans on their way in, with their session and join keys.
#[derive(Debug)]
pub struct Packed {
    pub(crate) span: PackedSpan,
    pub(crate) keys: Vec<(KeyKind, String)>,
}

impl Packed {
    /// The spans, packed.
    pub fn packed(&self) -> &PackedSpan {
        &self.span
    }
}

impl PackedSpan {
    /// The service that sent them.
    pub fn service(&self) -> Arc<str> {
        Arc::from(self.resource.service_name())
    }

    /// The spans, decoded. Spans with invalid IDs are skipped (validation
    /// has refused those already, so none are in practice).
    pub fn unpack(&self) -> Vec<Span> {
        let mut out = Vec::with_capacity(self.count);
        self.unpack_into(&mut out);
        out
    }

    /// Decodes the spans onto the end of `out`.
    pub fn unpack_into(&self, out: &mut Vec<Span>) {
        let Ok(plain) = lz4_flex::block::decompress_size_prepended(&self.block) else { return };
        let mut rest: &[u8] = &plain;
        while !rest.is_empty() {
            let Ok(len) = prost::decode_length_delimiter(&mut rest) else { break };
            let Some(bytes) = rest.get(..len) else { break };
            rest = &rest[len..];
            // Straight into the model; bytes it is not written for take
            // prost's two steps, as they always did.
            if let Some(span) = agentrace_model::span_bytes::decode(bytes, &self.resource, &self.scope) {
                out.push(span);
                continue;
            }
            let Ok(otlp) = OtlpSpan::decode(bytes) else { break };
            if let Ok(span) = Span::from_otlp(&otlp, &self.resource, &self.scope) {
                out.push(span);
            }
        }
    }
}

/// The packed spans of a queued request (an export queue or the pipeline's
/// backlog), whose bytes are the request's one encoding already.
pub fn pack_queued(row: crate::store::query::QueueRow) -> Result<Vec<Packed>, crate::store::StoreError> {
    let request = row.request()?;
    let encoded = Encoded::parse(row.encoded)
        .map_err(|e| crate::store::StoreError::Corrupt(format!("export queue row {}: {e}", row.id)))?;
    Ok(pack(&request, &encoded))
}

/// Packs every span of a (validated, redacted) request: one block per
/// trace within each scope. `encoded` is the request's one encoding
/// ([`crate::wire`]): each span's bytes are copied from it, not encoded again.
pub fn pack(request: &ExportTraceServiceRequest, encoded: &Encoded) -> Vec<Packed> {
    let mut out: Vec<Packed> = Vec::new();
    for (rs, enc_rs) in request.resource_spans.iter().zip(encoded.resources()) {
        let resource = Arc::new(resource_from_otlp(rs.resource.as_ref(), &rs.schema_url));
        for (ss, enc_ss) in rs.scope_spans.iter().zip(&enc_rs.scopes) {
            let scope = Arc::new(scope_from_otlp(ss.scope.as_ref(), &ss.schema_url));
            // In order of first appearance.
            let mut groups: Vec<Group> = Vec::new();
            let mut index: std::collections::HashMap<TraceId, usize> = std::collections::HashMap::new();
            for (s, range) in ss.spans.iter().zip(&enc_ss.spans) {
                let Ok(trace_id) = TraceId::from_slice(&s.trace_id) else { continue };
                let i = *index.entry(trace_id).or_insert_with(|| {
                    groups.push(Group {
                        trace_id,
                        plain: Vec::new(),
                        start: u64::MAX,
                        end: 0,
                        count: 0,
                        roots: 0,
                        keys: Vec::new(),
                    });
                    groups.len() - 1
                });
                let g = &mut groups[i];
                g.plain.extend_from_slice(encoded.span(range));
                g.start = g.start.min(s.start_time_unix_nano);
                g.end = g.end.max(s.end_time_unix_nano.max(s.start_time_unix_nano));
                g.count += 1;
                g.roots += usize::from(s.parent_span_id.is_empty());
                for k in join_keys(&s.attributes) {
                    if !g.keys.contains(&k) {
                        g.keys.push(k);
                    }
                }
            }
            for Group { trace_id, plain, start, end, count, roots, keys } in groups {
                out.push(Packed {
                    span: PackedSpan {
                        trace_id,
                        start,
                        end,
                        count,
                        roots,
                        block: lz4_flex::block::compress_prepend_size(&plain).into_boxed_slice(),
                        resource: Arc::clone(&resource),
                        scope: Arc::clone(&scope),
                    },
                    keys,
                });
            }
        }
    }
    out
}

/// Spans of one trace being packed.
struct Group {
    trace_id: TraceId,
    /// Their encoded bytes, one after another.
    plain: Vec<u8>,
    start: u64,
    end: u64,
    count: usize,
    /// Those without a parent.
    roots: usize,
    keys: Vec<(KeyKind, String)>,
}

/// The keys the pipeline follows from a span to the traces of its
/// relatives: the one vocabulary's session and join keys, less the weak
/// ones (a user's ID is on every trace of theirs; a bare JSON-RPC ID
/// repeats in every session), which only time makes a join.
pub(crate) fn join_keys(attributes: &[KeyValue]) -> Vec<(KeyKind, String)> {
    let mut keys = crate::store::indexed_keys(attributes);
    keys.retain(|(kind, _)| !matches!(kind, KeyKind::User | KeyKind::RpcId));
    keys
}
