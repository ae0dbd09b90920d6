//! Assembly: spans in any order become an index of traces, parents,
//! sessions and service instances.
//!
//! Second stop on the road, after [`crate::conventions`]. The index puts
//! spans in one canonical order (by trace ID, span ID, then content) and
//! drops duplicates, so that everything downstream — which walks the index
//! in that order and breaks every tie by IDs — gives the same answer
//! whatever order the spans arrived in. Lookups are binary searches over the
//! sorted spans rather than hash maps: one sort serves every lookup, and no
//! hash iteration order can leak into the output.

use std::collections::HashMap;
use std::ops::Range;

use agentrace_model::{Span, SpanId, TraceId};

use crate::conventions::{self, Facts};

/// A fast hasher (FxHash's multiply-rotate) for keys that are pointers or
/// short IDs: lookups only, never iterated into output, so hash quality
/// against adversaries matters less than speed on a million spans.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

pub(crate) type FastHash = std::hash::BuildHasherDefault<FxHasher>;

/// Index of a span in [`Index::spans`].
pub(crate) type Ix = u32;

pub(crate) struct Index<'a> {
    pub spans: Vec<&'a Span>,
    pub facts: Vec<Facts<'a>>,
    /// Parent within the same trace, as sent.
    pub parent: Vec<Option<Ix>>,
    /// The span names a parent that is not in the input.
    pub missing_parent: Vec<bool>,
    /// Trace ranges over `spans` (contiguous, since spans sort by trace).
    pub traces: Vec<Range<Ix>>,
    pub trace_of: Vec<u32>,
    /// Session of each trace: the smallest session ID any of its spans carries.
    pub trace_session: Vec<Option<u32>>,
    /// Session names, sorted; `trace_session` indexes into it.
    pub sessions: Vec<String>,
    /// Service instance of each span (index into `instances`) and whether the
    /// resource names the instance, not just the service.
    pub instance_of: Vec<u32>,
    pub instances: Vec<(String, bool)>,
    /// `service.name` of each span, read once per resource.
    pub service: Vec<&'a str>,
}

impl<'a> Index<'a> {
    pub fn build(input: &'a [Span]) -> Index<'a> {
        let mut spans: Vec<&Span> = input.iter().collect();
        spans.sort_unstable_by(|a, b| {
            (a.trace_id, a.span_id, a.start_unix_nano, a.end_unix_nano, &a.name, a.parent_span_id)
                .cmp(&(b.trace_id, b.span_id, b.start_unix_nano, b.end_unix_nano, &b.name, b.parent_span_id))
                .then_with(|| {
                    (a.kind.to_i32(), a.attributes.0.len(), a.status_code.to_i32(), a.events.len(), a.links.len()).cmp(
                        &(b.kind.to_i32(), b.attributes.0.len(), b.status_code.to_i32(), b.events.len(), b.links.len()),
                    )
                })
        });
        spans.dedup_by(|b, a| a.trace_id == b.trace_id && a.span_id == b.span_id);
        // Index sizes are u32: more than four billion spans in one analysis
        // is out of scope; refuse silently by truncating rather than panic.
        spans.truncate(u32::MAX as usize - 1);

        let facts: Vec<Facts<'a>> = spans.iter().map(|s| conventions::read(s)).collect();

        let mut traces = Vec::new();
        let mut trace_of = vec![0u32; spans.len()];
        let mut start = 0usize;
        for i in 1..=spans.len() {
            if i == spans.len() || spans[i].trace_id != spans[start].trace_id {
                let t = traces.len() as u32;
                trace_of[start..i].iter_mut().for_each(|x| *x = t);
                traces.push(start as Ix..i as Ix);
                start = i;
            }
        }

        let mut parent = vec![None; spans.len()];
        let mut missing_parent = vec![false; spans.len()];
        for (i, span) in spans.iter().enumerate() {
            if let Some(p) = span.parent_span_id {
                let range = &traces[trace_of[i] as usize];
                let slice = &spans[range.start as usize..range.end as usize];
                match slice.binary_search_by(|s| s.span_id.cmp(&p)) {
                    Ok(j) if range.start as usize + j != i => parent[i] = Some(range.start + j as Ix),
                    _ => missing_parent[i] = true,
                }
            }
        }

        // Sessions repeat on every span of a trace: dedupe before sorting.
        let unique: std::collections::HashSet<&str, FastHash> =
            facts.iter().filter_map(|f| f.session.as_deref()).collect();
        let mut names: Vec<&str> = unique.into_iter().collect();
        names.sort_unstable();
        let sessions: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let trace_session = traces
            .iter()
            .map(|r| {
                let best = facts[r.start as usize..r.end as usize].iter().filter_map(|f| f.session.as_deref()).min();
                best.and_then(|s| sessions.binary_search_by(|x| x.as_str().cmp(s)).ok()).map(|i| i as u32)
            })
            .collect();

        // Resources are shared between the spans of a batch: compute each
        // instance key once per resource object, then intern the keys.
        let mut by_resource: HashMap<*const agentrace_model::Resource, (u32, &'a str), FastHash> = HashMap::default();
        let mut key_ids: HashMap<String, u32, FastHash> = HashMap::default();
        let mut instances_unsorted: Vec<(String, bool)> = Vec::new();
        let mut instance_of: Vec<u32> = Vec::with_capacity(spans.len());
        let mut service: Vec<&'a str> = Vec::with_capacity(spans.len());
        for span in &spans {
            let ptr = std::sync::Arc::as_ptr(&span.resource);
            let (id, name) = *by_resource.entry(ptr).or_insert_with(|| {
                let (key, strong) = conventions::instance_key(span);
                let id = *key_ids.entry(key.clone()).or_insert_with(|| {
                    instances_unsorted.push((key, strong));
                    instances_unsorted.len() as u32 - 1
                });
                (id, span.service_name())
            });
            instance_of.push(id);
            service.push(name);
        }
        // Renumber instances by key so numbering does not depend on input order.
        let mut order: Vec<u32> = (0..instances_unsorted.len() as u32).collect();
        order.sort_unstable_by(|a, b| instances_unsorted[*a as usize].0.cmp(&instances_unsorted[*b as usize].0));
        let mut renumber = vec![0u32; order.len()];
        for (new, old) in order.iter().enumerate() {
            renumber[*old as usize] = new as u32;
        }
        let instances = order.iter().map(|o| instances_unsorted[*o as usize].clone()).collect();
        instance_of.iter_mut().for_each(|i| *i = renumber[*i as usize]);

        Index {
            spans,
            facts,
            parent,
            missing_parent,
            traces,
            trace_of,
            trace_session,
            sessions,
            instance_of,
            instances,
            service,
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// The span with these IDs, if it arrived.
    pub fn find(&self, trace: TraceId, span: SpanId) -> Option<Ix> {
        self.spans.binary_search_by(|s| (s.trace_id, s.span_id).cmp(&(trace, span))).ok().map(|i| i as Ix)
    }

    pub fn session_of(&self, i: Ix) -> Option<u32> {
        self.trace_session[self.trace_of[i as usize] as usize]
    }

    pub fn start(&self, i: Ix) -> u64 {
        self.spans[i as usize].start_unix_nano
    }

    /// End, never before the start (a span with a broken clock ends where it starts).
    pub fn end(&self, i: Ix) -> u64 {
        let s = self.spans[i as usize];
        s.end_unix_nano.max(s.start_unix_nano)
    }
}
