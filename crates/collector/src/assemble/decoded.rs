//! Decoded spans of held traces, kept between diagnoses.
//!
//! Held traces stay packed ([`super::packed`]): a tenth of their decoded
//! size. But under load each trace is read by several diagnoses in a row
//! (its own close, the closes of the batches beside it, whose context it
//! is, and the recheck once those closed), and decoding it again for each
//! was half the pipeline thread. Here the decoded spans of the traces read
//! last are kept, up to a budget of bytes, and handed to the doctor by
//! reference: a diagnosis reads them where they are instead of copying
//! them. The least recently read trace goes first; a trace that gained
//! spans since it was decoded is decoded again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use agentrace_model::{Key, Span, TraceId, Value};

use super::packed::PackedSpan;

/// Decoded traces, least recently read first.
pub(super) struct Decoded {
    entries: HashMap<TraceId, Entry, foldhash::fast::RandomState>,
    /// Reads in order, with the tick of each; an entry read again later has
    /// a newer tick, and its older places here are skipped.
    order: VecDeque<(u64, TraceId)>,
    tick: u64,
    bytes: usize,
    max_bytes: usize,
}

struct Entry {
    spans: Arc<Vec<Span>>,
    /// How many blocks the trace had when it was decoded.
    blocks: usize,
    bytes: usize,
    tick: u64,
}

/// What reading a trace cost.
pub(super) enum Read {
    /// Its decoded spans were kept.
    Kept(Arc<Vec<Span>>),
    /// It was decoded now.
    Decoded(Arc<Vec<Span>>),
}

impl Decoded {
    /// Keeps at most about `max_bytes` of decoded spans (none at 0).
    pub(super) fn new(max_bytes: usize) -> Decoded {
        Decoded { entries: HashMap::default(), order: VecDeque::new(), tick: 0, bytes: 0, max_bytes }
    }

    /// The spans of trace `id`, whose packed blocks are `blocks`.
    pub(super) fn read(&mut self, id: TraceId, blocks: &[PackedSpan]) -> Read {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(&id)
            && e.blocks == blocks.len()
        {
            e.tick = tick;
            self.order.push_back((tick, id));
            let spans = Arc::clone(&e.spans);
            self.compact();
            return Read::Kept(spans);
        }
        // Decoded in place, each block onto the end of one vector the size
        // of the trace, which the `Arc` then takes without a copy.
        let mut all = Vec::with_capacity(blocks.iter().map(|b| b.count).sum());
        blocks.iter().for_each(|b| b.unpack_into(&mut all));
        let spans = Arc::new(all);
        let bytes = spans.iter().map(heap_bytes).sum();
        self.forget(id);
        if bytes <= self.max_bytes {
            self.entries.insert(id, Entry { spans: Arc::clone(&spans), blocks: blocks.len(), bytes, tick });
            self.order.push_back((tick, id));
            self.bytes += bytes;
            while self.bytes > self.max_bytes {
                let Some((t, old)) = self.order.pop_front() else { break };
                if self.entries.get(&old).is_some_and(|e| e.tick == t) {
                    self.forget(old);
                }
            }
            self.compact();
        }
        Read::Decoded(spans)
    }

    /// Drops the decoded spans of a trace no longer held.
    pub(super) fn forget(&mut self, id: TraceId) {
        if let Some(e) = self.entries.remove(&id) {
            self.bytes -= e.bytes;
        }
    }

    /// Bytes of decoded spans kept (an estimate, see [`heap_bytes`]).
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops the places of reads that were read again since, once they
    /// outnumber the entries (so the queue stays within a small multiple
    /// of the entries however often they are read).
    fn compact(&mut self) {
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|(t, id)| entries.get(id).is_some_and(|e| e.tick == *t));
        }
    }
}

/// About the memory a decoded span takes: the span, its strings, and each
/// attribute's key and value (with an allocator's rounding per allocation;
/// a key shared with other spans, see [`Key`], is not counted).
/// For bounding what is kept, not for accounting to the byte.
fn heap_bytes(span: &Span) -> usize {
    const ALLOCATION: usize = 16;
    fn attributes(a: &[(Key, Value)]) -> usize {
        a.iter()
            .map(|(k, v)| {
                let key = if k.is_shared() { 0 } else { k.len() + ALLOCATION };
                std::mem::size_of::<(Key, Value)>() + key + value(v)
            })
            .sum()
    }
    fn map(a: &[(String, Value)]) -> usize {
        a.iter().map(|(k, v)| std::mem::size_of::<(String, Value)>() + k.len() + ALLOCATION + value(v)).sum()
    }
    fn value(v: &Value) -> usize {
        match v {
            Value::Str(s) => s.len() + ALLOCATION,
            Value::Bytes(b) => b.len() + ALLOCATION,
            Value::Array(items) => {
                items.iter().map(|i| std::mem::size_of::<Value>() + value(i)).sum::<usize>() + ALLOCATION
            }
            Value::Map(entries) => map(entries) + ALLOCATION,
            _ => 0,
        }
    }
    std::mem::size_of::<Span>()
        + span.name.len()
        + span.trace_state.len()
        + span.status_message.len()
        + 3 * ALLOCATION
        + attributes(&span.attributes.0)
        + span
            .events
            .iter()
            .map(|e| std::mem::size_of_val(e) + e.name.len() + attributes(&e.attributes.0))
            .sum::<usize>()
        + span
            .links
            .iter()
            .map(|l| std::mem::size_of_val(l) + l.trace_state.len() + attributes(&l.attributes.0))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::packed::pack;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};

    fn blocks(trace: u8, spans: u8) -> Vec<PackedSpan> {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (1..=spans)
                        .map(|s| OtlpSpan {
                            trace_id: vec![trace; 16],
                            span_id: vec![s; 8],
                            name: "x".repeat(200),
                            start_time_unix_nano: 1,
                            end_time_unix_nano: 2,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let encoded = crate::wire::Encoded::new(&request);
        pack(&encoded).into_iter().map(|p| p.span).collect()
    }

    fn id(t: u8) -> TraceId {
        TraceId::from_slice(&[t; 16]).unwrap()
    }

    #[test]
    fn a_trace_read_again_is_not_decoded_again_until_it_gains_spans() {
        let mut d = Decoded::new(1 << 20);
        let mut b = blocks(1, 3);
        assert!(matches!(d.read(id(1), &b), Read::Decoded(s) if s.len() == 3));
        assert!(matches!(d.read(id(1), &b), Read::Kept(s) if s.len() == 3));
        b.extend(blocks(1, 4));
        assert!(matches!(d.read(id(1), &b), Read::Decoded(s) if s.len() == 7));
        d.forget(id(1));
        assert_eq!(d.bytes(), 0);
        assert!(matches!(d.read(id(1), &b), Read::Decoded(_)));
    }

    #[test]
    fn the_least_recently_read_trace_goes_first_and_the_budget_holds() {
        let one = blocks(1, 10).iter().flat_map(PackedSpan::unpack).map(|s| heap_bytes(&s)).sum::<usize>();
        let mut d = Decoded::new(2 * one + one / 2);
        let (b1, b2, b3) = (blocks(1, 10), blocks(2, 10), blocks(3, 10));
        d.read(id(1), &b1);
        d.read(id(2), &b2);
        d.read(id(1), &b1);
        d.read(id(3), &b3);
        assert!(d.bytes() <= 2 * one + one / 2);
        assert!(matches!(d.read(id(1), &b1), Read::Kept(_)), "read last but one: kept");
        assert!(matches!(d.read(id(2), &b2), Read::Decoded(_)), "read least recently: dropped");
        for _ in 0..1000 {
            d.read(id(2), &b2);
        }
        assert!(d.order.len() <= 2 * d.entries.len() + 64);
    }

    #[test]
    fn nothing_is_kept_without_a_budget() {
        let mut d = Decoded::new(0);
        let b = blocks(1, 2);
        assert!(matches!(d.read(id(1), &b), Read::Decoded(s) if s.len() == 2));
        assert!(matches!(d.read(id(1), &b), Read::Decoded(_)));
        assert_eq!(d.bytes(), 0);
    }
}
