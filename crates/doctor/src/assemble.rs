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

use crate::conventions::{self, Facts, Texts};

/// The hasher of every map the doctor keys by what a sender chose (span
/// IDs, names, attribute values): foldhash, hashbrown's own default, seeded
/// at random for each map, so a sender cannot craft keys that all collide and
/// turn a lookup into a scan (an unkeyed FxHash allowed exactly that). Maps
/// are for lookups only, never iterated into output, so the seed changes no
/// answer.
pub(crate) type FastHash = foldhash::fast::RandomState;

/// Index of a span in [`Index::spans`].
pub(crate) type Ix = u32;

pub(crate) struct Index<'a> {
    pub spans: Vec<&'a Span>,
    pub facts: Vec<Facts>,
    /// The texts `facts` refer to.
    pub texts: Texts<'a>,
    /// Parent within the same trace, as sent.
    pub parent: Vec<Option<Ix>>,
    /// The span names a parent that is not in the input.
    pub missing_parent: Vec<bool>,
    /// Trace ranges over `spans` (contiguous, since spans sort by trace).
    pub traces: Vec<Range<Ix>>,
    pub trace_of: Vec<u32>,
    /// Each trace's ID as an integer (same order as the bytes), for lookups
    /// that touch no span.
    trace_keys: Vec<u128>,
    /// Each span's ID as an integer, likewise.
    span_keys: Vec<u64>,
    /// Session of each trace: the smallest session ID any of its spans carries.
    pub trace_session: Vec<Option<u32>>,
    /// Like `trace_session`, from user session keys only (no
    /// `gen_ai.conversation.id`).
    pub trace_user_session: Vec<Option<u32>>,
    /// Session names, sorted; `trace_session` indexes into it.
    pub sessions: Vec<String>,
    /// Service instance of each span (index into `instances`) and whether the
    /// resource names the instance, not just the service.
    pub instance_of: Vec<u32>,
    pub instances: Vec<(String, bool)>,
    /// `service.name` of each span, read once per resource.
    pub service: Vec<&'a str>,
}

fn trace_key(t: TraceId) -> u128 {
    u128::from_be_bytes(t.to_bytes())
}

fn span_key(s: SpanId) -> u64 {
    u64::from_be_bytes(s.to_bytes())
}

/// The canonical order of two spans with the same IDs (duplicates, or
/// conflicting copies): by content, so the copy kept never depends on
/// arrival order.
fn content_order(a: &Span, b: &Span) -> std::cmp::Ordering {
    (a.start_unix_nano, a.end_unix_nano, &a.name, a.parent_span_id)
        .cmp(&(b.start_unix_nano, b.end_unix_nano, &b.name, b.parent_span_id))
        .then_with(|| {
            (a.kind.to_i32(), a.attributes.0.len(), a.status_code.to_i32(), a.events.len(), a.links.len()).cmp(&(
                b.kind.to_i32(),
                b.attributes.0.len(),
                b.status_code.to_i32(),
                b.events.len(),
                b.links.len(),
            ))
        })
}

impl<'a> Index<'a> {
    pub fn build(input: &[&'a Span]) -> Index<'a> {
        // Sort integer keys, not spans: one cache line per comparison instead
        // of two pointer chases. Only runs of equal IDs look at content.
        let mut keys: Vec<(u128, u64, u32)> = input
            .iter()
            .take(u32::MAX as usize - 1)
            .enumerate()
            .map(|(i, s)| (trace_key(s.trace_id), span_key(s.span_id), i as u32))
            .collect();
        keys.sort_unstable_by_key(|&(t, s, _)| (t, s));
        let mut spans: Vec<&Span> = Vec::with_capacity(keys.len());
        let mut trace_keys: Vec<u128> = Vec::new();
        let mut span_keys: Vec<u64> = Vec::with_capacity(keys.len());
        let mut traces = Vec::new();
        let mut trace_of = Vec::with_capacity(keys.len());
        let mut run = 0;
        while run < keys.len() {
            let (t, s, first) = keys[run];
            let mut end = run + 1;
            while end < keys.len() && keys[end].0 == t && keys[end].1 == s {
                end += 1;
            }
            // Duplicates: keep the least by content.
            let kept = keys[run..end]
                .iter()
                .map(|k| input[k.2 as usize])
                .min_by(|a, b| content_order(a, b))
                .unwrap_or(input[first as usize]);
            if trace_keys.last() != Some(&t) {
                if let Some(open) = traces.last_mut() {
                    let open: &mut Range<Ix> = open;
                    open.end = spans.len() as Ix;
                }
                trace_keys.push(t);
                traces.push(spans.len() as Ix..spans.len() as Ix);
            }
            trace_of.push(trace_keys.len() as u32 - 1);
            spans.push(kept);
            span_keys.push(s);
            run = end;
        }
        if let Some(open) = traces.last_mut() {
            open.end = spans.len() as Ix;
        }
        drop(keys);

        let mut parent = vec![None; spans.len()];
        let mut missing_parent = vec![false; spans.len()];
        for (i, span) in spans.iter().enumerate() {
            if let Some(p) = span.parent_span_id {
                let range = &traces[trace_of[i] as usize];
                let slice = &span_keys[range.start as usize..range.end as usize];
                match slice.binary_search(&span_key(p)) {
                    Ok(j) if range.start as usize + j != i => parent[i] = Some(range.start + j as Ix),
                    _ => missing_parent[i] = true,
                }
            }
        }

        // One pass over the spans reads their facts and their resources.
        // Resources are shared between the spans of a batch, and a batch's
        // spans mostly sort next to each other: remember the last one, and
        // compute each instance key once per resource object.
        let mut texts = Texts::default();
        let mut facts: Vec<Facts> = Vec::with_capacity(spans.len());
        let mut by_resource: HashMap<*const agentrace_model::Resource, (u32, &'a str), FastHash> = HashMap::default();
        let mut key_ids: HashMap<String, u32, FastHash> = HashMap::default();
        let mut instances_unsorted: Vec<(String, bool)> = Vec::new();
        let mut instance_of: Vec<u32> = Vec::with_capacity(spans.len());
        let mut service: Vec<&'a str> = Vec::with_capacity(spans.len());
        let mut last: Option<(*const agentrace_model::Resource, (u32, &'a str))> = None;
        for span in &spans {
            facts.push(conventions::read(span, &mut texts));
            let ptr = std::sync::Arc::as_ptr(&span.resource);
            let (id, name) = match last {
                Some((p, found)) if p == ptr => found,
                _ => {
                    let found = *by_resource.entry(ptr).or_insert_with(|| {
                        let (key, strong) = conventions::instance_key(span);
                        let id = *key_ids.entry(key.clone()).or_insert_with(|| {
                            instances_unsorted.push((key, strong));
                            instances_unsorted.len() as u32 - 1
                        });
                        (id, span.service_name())
                    });
                    last = Some((ptr, found));
                    found
                }
            };
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

        // Sessions: the texts used as one, sorted; each trace takes the
        // smallest of its spans'.
        const NONE: u32 = u32::MAX;
        let mut rank = vec![NONE; texts.len()];
        let mut names: Vec<(&str, usize)> = Vec::new();
        for f in &facts {
            if let Some(sym) = f.session
                && rank[sym.index()] == NONE
            {
                rank[sym.index()] = 0;
                names.push((texts.get(sym), sym.index()));
            }
        }
        names.sort_unstable();
        for (k, (_, sym)) in names.iter().enumerate() {
            rank[*sym] = k as u32;
        }
        let sessions: Vec<String> = names.iter().map(|(s, _)| (*s).to_owned()).collect();
        let trace_session = traces
            .iter()
            .map(|r| {
                facts[r.start as usize..r.end as usize].iter().filter_map(|f| f.session).map(|s| rank[s.index()]).min()
            })
            .collect();
        // A user's session, not a conversation ID that a framework may mint
        // per agent run (pydantic-ai): what joins may be ruled out by.
        let trace_user_session = traces
            .iter()
            .map(|r| {
                facts[r.start as usize..r.end as usize]
                    .iter()
                    .filter(|f| !f.session_is_conversation)
                    .filter_map(|f| f.session)
                    .map(|s| rank[s.index()])
                    .min()
            })
            .collect();

        Index {
            spans,
            facts,
            texts,
            parent,
            missing_parent,
            traces,
            trace_of,
            trace_keys,
            span_keys,
            trace_session,
            trace_user_session,
            sessions,
            instance_of,
            instances,
            service,
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// What each trace's spans add up to, from the facts read already.
    pub fn trace_totals(&self, prices: &crate::PriceTable) -> Vec<(TraceId, crate::conventions::UsageTotals)> {
        self.traces
            .iter()
            .map(|r| {
                let mut sum = crate::conventions::Totaller::default();
                for f in &self.facts[r.start as usize..r.end as usize] {
                    sum.add(f, &self.texts, prices);
                }
                (self.spans[r.start as usize].trace_id, sum.finish(&self.texts))
            })
            .collect()
    }

    /// The span with these IDs, if it arrived.
    pub fn find(&self, trace: TraceId, span: SpanId) -> Option<Ix> {
        let t = self.trace_keys.binary_search(&trace_key(trace)).ok()?;
        let range = &self.traces[t];
        let slice = &self.span_keys[range.start as usize..range.end as usize];
        slice.binary_search(&span_key(span)).ok().map(|j| range.start + j as Ix)
    }

    /// The user session of the span's trace (see `trace_user_session`).
    pub fn user_session_of(&self, i: Ix) -> Option<u32> {
        self.trace_user_session[self.trace_of[i as usize] as usize]
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
