//! Spans as the pipeline holds them: the spans of one trace that arrived
//! together (same request, resource and scope) are encoded as they arrived
//! and LZ4-compressed as one block, and decoded only when their trace is
//! diagnosed. Spans of one trace repeat their keys and much of their
//! values, so a block takes a fraction of the encoded size, and about a
//! tenth of what decoded spans take. What the assembler indexes them by
//! (trace, times, roots, join keys) is read from the request's encoding, as
//! the store's columns are ([`agentrace_model::span_bytes::fields`]).

use std::sync::Arc;

use agentrace_model::keys::{KeyKind, KeySet};
use agentrace_model::span::{resource_from_otlp, scope_from_otlp};
use agentrace_model::span_bytes::Fields;
use agentrace_model::{Resource, Scope, Span, TraceId};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
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
    let id = row.id;
    let encoded = Encoded::parse(row.encoded)
        .map_err(|e| crate::store::StoreError::Corrupt(format!("export queue row {id}: {e}")))?;
    Ok(pack(&encoded))
}

/// Packs every span of a (validated, redacted) request from its one
/// encoding ([`crate::wire`]): one block per trace within each scope, each
/// span's bytes copied, its fields read from them, nothing decoded again.
pub fn pack(encoded: &Encoded) -> Vec<Packed> {
    let mut packer = Packer::default();
    for enc_rs in encoded.resources() {
        packer.resource(&enc_rs.decode_shell());
        for enc_ss in &enc_rs.scopes {
            packer.scope(&enc_ss.decode_shell());
            for range in &enc_ss.spans {
                encoded.span_fields(range, |s| packer.span(encoded.span(range), s));
            }
        }
    }
    packer.finish()
}

/// [`pack`] a span at a time, for a caller that walks the request and reads
/// each span's fields anyway (the store's rows,
/// [`crate::store::PreparedBatch::from_encoded`]): each span's fields are
/// then read once for both. Resources, scopes and spans are given in the
/// request's order.
#[derive(Default)]
pub struct Packer {
    out: Vec<Packed>,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    /// The current scope's spans by trace, in order of first appearance.
    groups: Vec<Group>,
    index: std::collections::HashMap<TraceId, usize>,
}

impl Packer {
    /// The spans that follow are of this resource (its shell, decoded).
    pub fn resource(&mut self, rs: &ResourceSpans) {
        self.flush();
        self.resource = Arc::new(resource_from_otlp(rs.resource.as_ref(), &rs.schema_url));
    }

    /// The spans that follow are of this scope (its shell, decoded).
    pub fn scope(&mut self, ss: &ScopeSpans) {
        self.flush();
        self.scope = Arc::new(scope_from_otlp(ss.scope.as_ref(), &ss.schema_url));
    }

    /// A span: `bytes` length-delimited, `s` read from them.
    pub fn span(&mut self, bytes: &[u8], s: &Fields<'_>) {
        let Ok(trace_id) = TraceId::from_slice(s.trace_id) else { return };
        let i = *self.index.entry(trace_id).or_insert_with(|| {
            self.groups.push(Group {
                trace_id,
                plain: Vec::new(),
                start: u64::MAX,
                end: 0,
                count: 0,
                roots: 0,
                keys: Vec::new(),
            });
            self.groups.len() - 1
        });
        let g = &mut self.groups[i];
        g.plain.extend_from_slice(bytes);
        g.start = g.start.min(s.start_unix_nano);
        g.end = g.end.max(s.end_unix_nano.max(s.start_unix_nano));
        g.count += 1;
        g.roots += usize::from(s.parent_span_id.is_empty());
        for k in join_keys(&s.keys) {
            if !g.keys.contains(&k) {
                g.keys.push(k);
            }
        }
    }

    /// The packed spans of everything given.
    pub fn finish(mut self) -> Vec<Packed> {
        self.flush();
        self.out
    }

    /// Packs the current scope's groups.
    fn flush(&mut self) {
        self.index.clear();
        for Group { trace_id, plain, start, end, count, roots, keys } in self.groups.drain(..) {
            self.out.push(Packed {
                span: PackedSpan {
                    trace_id,
                    start,
                    end,
                    count,
                    roots,
                    block: lz4_flex::block::compress_prepend_size(&plain).into_boxed_slice(),
                    resource: Arc::clone(&self.resource),
                    scope: Arc::clone(&self.scope),
                },
                keys,
            });
        }
    }
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
pub(crate) fn join_keys(keys: &KeySet) -> Vec<(KeyKind, String)> {
    let mut keys = keys.keys();
    keys.retain(|(kind, _)| !matches!(kind, KeyKind::User | KeyKind::RpcId));
    keys
}
