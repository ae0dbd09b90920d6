//! The connected view: one tree per request, orphans under their true
//! parents, queue waits as synthetic spans.
//!
//! Fourth stop on the road, after [`crate::repair`]. The tree is a table of
//! nodes — the real spans in index order, then synthetic queue-transit
//! spans — with parents, children (by start time), a depth-first order and
//! each node's agent. Timing, failure and agent analyses all walk this
//! table; [`export`] turns it back into spans, marked as PRODUCT.md says, for
//! a live pipeline to forward.

use std::collections::HashMap;
use std::sync::Arc;

use agentrace_model::keys::marks;
use agentrace_model::patch::{InferredLink, SpanPatch};
use agentrace_model::{Link, Resource, Span, SpanId, SpanKind, TraceId, Value};

use crate::assemble::{FastHash, Index, Ix};
use crate::config::{Config, RepairMode};
use crate::conventions::{AgentSource, Category};
use crate::repair::Repaired;

/// A queue transit the doctor made up: from the producer's end to the consumer's start.
pub(crate) struct Transit {
    pub producer: Ix,
    pub consumer: Ix,
    pub span_id: SpanId,
}

pub(crate) struct Tree {
    /// Number of real spans; nodes from here on are transits.
    pub real: usize,
    pub transits: Vec<Transit>,
    pub parent: Vec<Option<u32>>,
    pub start: Vec<u64>,
    pub end: Vec<u64>,
    /// End of the last work the node caused (its subtree's latest end).
    pub reach: Vec<u64>,
    /// Start, never before the parent's (clock skew between services).
    pub clamped_start: Vec<u64>,
    child_offsets: Vec<u32>,
    child_list: Vec<u32>,
    /// Roots, by start time then IDs.
    pub roots: Vec<u32>,
    /// Depth-first order of every node, root by root.
    pub order: Vec<u32>,
    /// Where each root's nodes start in `order` (one more entry at the end).
    request_offsets: Vec<u32>,
    pub depth: Vec<u32>,
    pub root_of: Vec<u32>,
    /// Agent of each node, as an index into `agents` (sorted names).
    pub agent: Vec<u32>,
    pub agents: Vec<String>,
    /// Which convention named each agent of `agents`.
    pub agent_sources: Vec<AgentSource>,
}

impl Tree {
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn children(&self, node: u32) -> &[u32] {
        let n = node as usize;
        &self.child_list[self.child_offsets[n] as usize..self.child_offsets[n + 1] as usize]
    }

    /// The nodes of the `k`-th request (`roots[k]`), depth-first.
    pub fn request_nodes(&self, k: usize) -> &[u32] {
        &self.order[self.request_offsets[k] as usize..self.request_offsets[k + 1] as usize]
    }

    pub fn is_real(&self, node: u32) -> bool {
        (node as usize) < self.real
    }

    pub fn category(&self, ix: &Index, node: u32) -> Category {
        if self.is_real(node) { ix.facts[node as usize].category() } else { Category::Handoff }
    }

    pub fn span_id(&self, ix: &Index, node: u32) -> SpanId {
        if self.is_real(node) {
            ix.spans[node as usize].span_id
        } else {
            self.transits[node as usize - self.real].span_id
        }
    }

    pub fn name(&self, ix: &Index, node: u32) -> String {
        if self.is_real(node) {
            ix.spans[node as usize].name.clone()
        } else {
            let t = &self.transits[node as usize - self.real];
            transit_name(ix, t)
        }
    }

    pub fn service<'a>(&self, ix: &'a Index, node: u32) -> &'a str {
        if self.is_real(node) { ix.service[node as usize] } else { SYNTHETIC_SERVICE }
    }

    /// The connected trace ID: the one its root arrived with.
    pub fn trace_id(&self, ix: &Index, node: u32) -> TraceId {
        ix.spans[self.root_of[node as usize] as usize].trace_id
    }
}

const SYNTHETIC_SERVICE: &str = "agentrace";

fn transit_name(ix: &Index, t: &Transit) -> String {
    let dest = ix.facts[t.consumer as usize].destination.or(ix.facts[t.producer as usize].destination);
    match ix.texts.opt(dest) {
        Some(d) => format!("queue transit {d}"),
        None => "queue transit".to_owned(),
    }
}

/// A span ID for a synthetic span, derived from the consumer's IDs so the
/// same input always yields the same ID (FNV-1a; never zero).
fn synthetic_id(consumer: &Span) -> SpanId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in consumer.trace_id.as_bytes().iter().chain(consumer.span_id.as_bytes()).chain(b"transit") {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    SpanId::new(h.max(1).to_be_bytes()).unwrap_or(consumer.span_id)
}

pub(crate) fn build(ix: &Index, repaired: &Repaired) -> Tree {
    let real = ix.len();
    let mut parent: Vec<Option<u32>> = repaired.parent.clone();
    let mut start: Vec<u64> = (0..real as Ix).map(|i| ix.start(i)).collect();
    let mut end: Vec<u64> = (0..real as Ix).map(|i| ix.end(i)).collect();

    let mut transits = Vec::new();
    for c in 0..real {
        if let Some(p) = parent[c]
            && ix.spans[p as usize].kind == SpanKind::Producer
            && start[c] > end[p as usize]
        {
            transits.push(Transit { producer: p, consumer: c as Ix, span_id: synthetic_id(ix.spans[c]) });
        }
    }
    for t in &transits {
        parent.push(Some(t.producer));
        start.push(end[t.producer as usize]);
        end.push(start[t.consumer as usize]);
    }
    let len = parent.len();
    break_cycles(&mut parent);

    // Children in CSR form, each list by (start, span ID).
    let mut counts = vec![0u32; len + 1];
    for p in parent.iter().flatten() {
        counts[*p as usize + 1] += 1;
    }
    for i in 0..len {
        counts[i + 1] += counts[i];
    }
    let child_offsets = counts.clone();
    let mut fill = counts;
    let mut child_list = vec![0u32; child_offsets[len] as usize];
    for (c, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            child_list[fill[*p as usize] as usize] = c as u32;
            fill[*p as usize] += 1;
        }
    }
    let span_id_of = |n: u32| -> SpanId {
        if (n as usize) < real { ix.spans[n as usize].span_id } else { transits[n as usize - real].span_id }
    };
    for p in 0..len {
        let slice = &mut child_list[child_offsets[p] as usize..child_offsets[p + 1] as usize];
        slice.sort_unstable_by_key(|&c| (start[c as usize], span_id_of(c), c));
    }

    let mut roots: Vec<u32> = (0..len as u32).filter(|&i| parent[i as usize].is_none()).collect();
    let root_key = |r: u32| (start[r as usize], ix.spans[r as usize].trace_id, ix.spans[r as usize].span_id);
    roots.sort_unstable_by_key(|&r| root_key(r));

    let mut tree = Tree {
        real,
        transits,
        parent,
        start,
        end,
        reach: Vec::new(),
        clamped_start: vec![0; len],
        child_offsets,
        child_list,
        roots: Vec::new(),
        order: Vec::with_capacity(len),
        request_offsets: Vec::with_capacity(roots.len() + 1),
        depth: vec![0; len],
        root_of: vec![u32::MAX; len],
        agent: Vec::new(),
        agents: Vec::new(),
        agent_sources: Vec::new(),
    };

    let mut stack = Vec::new();
    for &root in &roots {
        tree.request_offsets.push(tree.order.len() as u32);
        tree.clamped_start[root as usize] = tree.start[root as usize];
        tree.root_of[root as usize] = root;
        stack.push(root);
        while let Some(node) = stack.pop() {
            tree.order.push(node);
            let (a, b) = (tree.child_offsets[node as usize] as usize, tree.child_offsets[node as usize + 1] as usize);
            for &c in tree.child_list[a..b].iter().rev() {
                tree.depth[c as usize] = tree.depth[node as usize] + 1;
                tree.clamped_start[c as usize] = tree.start[c as usize].max(tree.clamped_start[node as usize]);
                tree.root_of[c as usize] = root;
                stack.push(c);
            }
        }
    }
    tree.request_offsets.push(tree.order.len() as u32);
    tree.roots = roots;

    let mut reach = tree.end.clone();
    for &node in tree.order.iter().rev() {
        if let Some(p) = tree.parent[node as usize] {
            reach[p as usize] = reach[p as usize].max(reach[node as usize]);
        }
    }
    tree.reach = reach;
    assign_agents(ix, &mut tree);
    tree
}

/// Cuts parent cycles (malformed input: A's parent is B, B's is A) at the
/// lowest index on the cycle, so that every span hangs under some root.
fn break_cycles(parent: &mut [Option<u32>]) {
    let mut state = vec![0u8; parent.len()];
    let mut path = Vec::new();
    for s in 0..parent.len() {
        path.clear();
        let mut x = Some(s as u32);
        while let Some(v) = x {
            match state[v as usize] {
                0 => {
                    state[v as usize] = 1;
                    path.push(v);
                    x = parent[v as usize];
                }
                1 => {
                    let pos = path.iter().position(|&p| p == v).unwrap_or(0);
                    if let Some(&cut) = path[pos..].iter().min() {
                        parent[cut as usize] = None;
                    }
                    break;
                }
                _ => break,
            }
        }
        for &p in &path {
            state[p as usize] = 2;
        }
    }
}

/// An agent is named by `gen_ai.agent.name` on its own spans (a CLIENT
/// `invoke_agent` span names the agent it calls, so it does not count);
/// other spans belong to their parent's agent while they stay in the same
/// service, and to their service otherwise (and so does an agentchat
/// team's turn: the team routed it). A queue transit belongs to the
/// agent that consumes the message: the wait is its capacity's doing.
fn assign_agents(ix: &Index, tree: &mut Tree) {
    let mut names: Vec<&str> = Vec::new();
    let mut ids: HashMap<&str, u32, FastHash> = HashMap::default();
    let mut intern = |name| -> u32 {
        *ids.entry(name).or_insert_with(|| {
            names.push(name);
            names.len() as u32 - 1
        })
    };
    // Agent names repeat on every span of the agent: resolve each symbol once.
    let mut by_sym = vec![u32::MAX; ix.texts.len()];
    let mut agent = vec![0u32; tree.len()];
    let mut sources: Vec<Option<AgentSource>> = Vec::new();
    for &node in &tree.order {
        if !tree.is_real(node) {
            continue;
        }
        let (s, f) = (ix.spans[node as usize], &ix.facts[node as usize]);
        // An agent span names its agent whatever its kind (AutoGen's and a
        // remote agent's `invoke_agent` are CLIENT spans); other CLIENT
        // spans that name an agent (a model call) run inside that agent's
        // span and take its agent from there.
        let own = f.agent_name.filter(|_| s.kind != SpanKind::Client || f.category() == Category::Agent);
        agent[node as usize] = match (own, tree.parent[node as usize]) {
            (Some(sym), _) => {
                let slot = &mut by_sym[sym.index()];
                if *slot == u32::MAX {
                    *slot = intern(ix.texts.get(sym));
                }
                let a = *slot;
                if sources.len() <= a as usize {
                    sources.resize(a as usize + 1, None);
                }
                sources[a as usize].get_or_insert(f.agent_source.unwrap_or(AgentSource::GenAi));
                a
            }
            // A team's turn is routed by the team, not by whoever sent it.
            (None, Some(p))
                if tree.is_real(p) && ix.service[p as usize] == ix.service[node as usize] && !f.team_turn =>
            {
                agent[p as usize]
            }
            _ => intern(ix.service[node as usize]),
        };
    }
    for (k, t) in tree.transits.iter().enumerate() {
        agent[tree.real + k] = agent[t.consumer as usize];
    }
    // Renumber by name so that nothing depends on visiting order.
    let mut order: Vec<u32> = (0..names.len() as u32).collect();
    order.sort_unstable_by(|a, b| names[*a as usize].cmp(names[*b as usize]));
    let mut renumber = vec![0u32; names.len()];
    for (new, old) in order.iter().enumerate() {
        renumber[*old as usize] = new as u32;
    }
    tree.agent = agent.into_iter().map(|a| renumber.get(a as usize).copied().unwrap_or(0)).collect();
    tree.agents = order.iter().map(|o| names[*o as usize].to_owned()).collect();
    tree.agent_sources =
        order.iter().map(|o| sources.get(*o as usize).copied().flatten().unwrap_or(AgentSource::Service)).collect();
}

/// Links whose target moved to another trace follow it, so that no link in
/// the connected view dangles; the link keeps the trace it named.
fn retarget_links(ix: &Index, tree: &Tree, span: &mut Span) {
    for link in &mut span.links {
        if let Some(target) = ix.find(link.trace_id, link.span_id) {
            let connected = tree.trace_id(ix, target);
            if connected != link.trace_id {
                link.attributes.set(marks::ORIGINAL_TRACE_ID, link.trace_id.to_string());
                link.trace_id = connected;
            }
        }
    }
}

/// Totals over an agent span's subtree in the connected view, written onto
/// it as `app.agent.subtree.*` and `app.agent.graph.depth` (see
/// `docs/attributes.md`).
struct AgentRollup {
    llm_calls: u64,
    tool_calls: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
    errors: u64,
    /// Agent spans above it in the connected view.
    depth: u64,
}

impl AgentRollup {
    fn attributes(&self) -> [(&'static str, Value); 7] {
        let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        [
            ("app.agent.subtree.llm_calls", int(self.llm_calls)),
            ("app.agent.subtree.tool_calls", int(self.tool_calls)),
            ("app.agent.subtree.input_tokens", int(self.input_tokens)),
            ("app.agent.subtree.output_tokens", int(self.output_tokens)),
            ("app.agent.subtree.cost_usd", Value::Double((self.cost_usd * 1e6).round() / 1e6)),
            ("app.agent.subtree.errors", int(self.errors)),
            // The SDK's `app.agent.delegation.depth` is what the agent said;
            // this is where the connected view puts it.
            ("app.agent.graph.depth", int(self.depth)),
        ]
    }

    fn write(&self, span: &mut Span) {
        for (key, value) in self.attributes() {
            span.attributes.set(key, value);
        }
    }
}

/// Sums LLM and tool calls, tokens, cost and errors over each node's
/// subtree, and keeps the sums of agent spans (`invoke_agent` and the
/// like, which name their agent).
fn agent_rollups(ix: &Index, tree: &Tree, config: &Config) -> Vec<Option<AgentRollup>> {
    let n = tree.len();
    let mut sums = vec![(0u64, 0u64, 0u64, 0u64, 0f64, 0u64); n];
    for (sum, f) in sums.iter_mut().zip(&ix.facts[..tree.real]) {
        let category = f.category();
        let u = crate::conventions::Usage::of(f);
        let (input, output) = (u.input, u.output);
        let cost = ix
            .texts
            .opt(f.model)
            .and_then(|m| config.prices.call_cost(m, input, u.cached_input, u.cache_write_input, output))
            .map_or(0.0, |c| c.usd);
        *sum = (
            u64::from(category == Category::Llm),
            u64::from(category == Category::Tool),
            input,
            output,
            cost,
            u64::from(f.error),
        );
    }
    // Depth-first order puts children after their parent: walking it
    // backwards adds every subtree before its root is read.
    for &node in tree.order.iter().rev() {
        if let Some(p) = tree.parent[node as usize] {
            let c = sums[node as usize];
            let s = &mut sums[p as usize];
            s.0 += c.0;
            s.1 += c.1;
            s.2 += c.2;
            s.3 += c.3;
            s.4 += c.4;
            s.5 += c.5;
        }
    }
    let is_agent = |node: usize| {
        node < tree.real && ix.facts[node].category() == Category::Agent && ix.facts[node].agent_name.is_some()
    };
    let mut depth = vec![0u64; n];
    for &node in &tree.order {
        if let Some(p) = tree.parent[node as usize] {
            depth[node as usize] = depth[p as usize] + u64::from(is_agent(p as usize));
        }
    }
    (0..tree.real)
        .map(|node| {
            is_agent(node).then(|| {
                let s = sums[node];
                AgentRollup {
                    llm_calls: s.0,
                    tool_calls: s.1,
                    input_tokens: s.2,
                    output_tokens: s.3,
                    cost_usd: s.4,
                    errors: s.5,
                    depth: depth[node],
                }
            })
        })
        .collect()
}

/// The rewrite of each span that the connected view repaired or rolled up,
/// by the span's IDs as it arrived: what an exporter applies in either
/// repair mode (`agentrace_model::patch`). A span moved by a chain of
/// repairs is only as sure as the weakest of them: its confidence is the
/// lowest on its path to the root, so an exporter that leaves one out does
/// not move the span past it.
pub(crate) fn patches(
    ix: &Index,
    repaired: &Repaired,
    tree: &Tree,
    config: &Config,
) -> Vec<(TraceId, SpanId, SpanPatch)> {
    let mut moved_by: Vec<Option<usize>> = vec![None; tree.len()];
    let mut weakest = vec![1.0f64; tree.len()];
    for &node in &tree.order {
        let n = node as usize;
        let own = repaired.joined(node);
        moved_by[n] = own.or_else(|| tree.parent[n].and_then(|p| moved_by[p as usize]));
        let above = tree.parent[n].map_or(1.0, |p| weakest[p as usize]);
        weakest[n] = own.map_or(above, |ri| above.min(repaired.repairs[ri].confidence));
    }
    let rollups = agent_rollups(ix, tree, config);
    let mut out = Vec::new();
    for i in 0..tree.real {
        let span = ix.spans[i];
        let mut patch = SpanPatch::default();
        if let Some(r) = &rollups[i] {
            patch.rollup = r
                .attributes()
                .into_iter()
                .filter(|(key, value)| span.attributes.get(key) != Some(value))
                .map(|(key, value)| (key.to_owned(), value).into())
                .collect();
        }
        if let Some(ri) = moved_by[i] {
            let repair = &repaired.repairs[ri];
            let is_orphan = repaired.joined(i as Ix) == Some(ri);
            let mut mark = |key: &str, value: Value| patch.repair_attributes.push((key.to_owned(), value).into());
            let connected = tree.trace_id(ix, i as u32);
            if connected != span.trace_id {
                mark(marks::ORIGINAL_TRACE_ID, Value::from(span.trace_id.to_string()));
                patch.trace_id = Some(connected);
            }
            if is_orphan {
                if let Some(old) = span.parent_span_id {
                    mark(marks::ORIGINAL_PARENT_SPAN_ID, Value::from(old.to_string()));
                }
                if span.parent_span_id != Some(repair.parent_span_id) {
                    patch.parent_span_id = Some(repair.parent_span_id);
                }
                patch.link = Some(InferredLink {
                    trace_id: repair.parent_trace_id,
                    span_id: repair.parent_span_id,
                    evidence: repair.evidence.as_str().to_owned(),
                    confidence: repair.confidence,
                });
            }
            mark(marks::EVIDENCE, Value::from(repair.evidence.as_str()));
            mark(marks::CONFIDENCE, Value::from(repair.confidence));
            patch.confidence = Some(repair.confidence.min(weakest[i]));
        }
        if !patch.is_empty() {
            out.push((span.trace_id, span.span_id, patch));
        }
    }
    out
}

/// The connected view as spans, ready to forward: repairs applied as the
/// configured [`RepairMode`] says, synthetic spans appended.
pub(crate) fn export(ix: &Index, repaired: &Repaired, tree: &Tree, config: &Config) -> Vec<Span> {
    let mut out = Vec::with_capacity(tree.len());
    // The repair that moved each node: its own, else its parent's.
    let mut moved_by: Vec<Option<usize>> = vec![None; tree.len()];
    for &node in &tree.order {
        moved_by[node as usize] =
            repaired.joined(node).or_else(|| tree.parent[node as usize].and_then(|p| moved_by[p as usize]));
    }
    let rollups = agent_rollups(ix, tree, config);
    for (i, moved) in moved_by.iter().enumerate().take(tree.real) {
        let mut span = ix.spans[i].clone();
        if let Some(r) = &rollups[i] {
            r.write(&mut span);
        }
        if config.repair_mode == RepairMode::Reparent {
            retarget_links(ix, tree, &mut span);
        }
        let Some(ri) = *moved else {
            out.push(span);
            continue;
        };
        let repair = &repaired.repairs[ri];
        let is_orphan = repaired.joined(i as Ix) == Some(ri);
        match config.repair_mode {
            RepairMode::Reparent => {
                let connected = tree.trace_id(ix, i as u32);
                if connected != span.trace_id {
                    span.attributes.set(marks::ORIGINAL_TRACE_ID, span.trace_id.to_string());
                    span.trace_id = connected;
                }
                if is_orphan {
                    if let Some(old) = span.parent_span_id {
                        span.attributes.set(marks::ORIGINAL_PARENT_SPAN_ID, old.to_string());
                    }
                    span.parent_span_id = Some(repair.parent_span_id);
                }
                span.attributes.set(marks::EVIDENCE, repair.evidence.as_str());
                span.attributes.set(marks::CONFIDENCE, repair.confidence);
            }
            RepairMode::Link => {
                if !is_orphan {
                    out.push(span);
                    continue;
                }
                span.attributes.set(marks::EVIDENCE, repair.evidence.as_str());
                span.attributes.set(marks::CONFIDENCE, repair.confidence);
                span.links.push(Link {
                    trace_id: repair.parent_trace_id,
                    span_id: repair.parent_span_id,
                    trace_state: String::new(),
                    attributes: [
                        ("agentrace.link.kind", Value::from("inferred_parent")),
                        (marks::EVIDENCE, Value::from(repair.evidence.as_str())),
                        (marks::CONFIDENCE, Value::from(repair.confidence)),
                    ]
                    .into_iter()
                    .collect(),
                    dropped_attributes_count: 0,
                    flags: 0,
                });
            }
        }
        out.push(span);
    }
    let resource = Arc::new(Resource::for_service(SYNTHETIC_SERVICE));
    for (k, t) in tree.transits.iter().enumerate() {
        let node = (tree.real + k) as u32;
        let producer = ix.spans[t.producer as usize];
        let trace = match config.repair_mode {
            RepairMode::Reparent => tree.trace_id(ix, node),
            RepairMode::Link => producer.trace_id,
        };
        let mut span = Span::new(trace, t.span_id, Some(producer.span_id), &transit_name(ix, t));
        span.kind = SpanKind::Internal;
        span.start_unix_nano = tree.start[node as usize];
        span.end_unix_nano = tree.end[node as usize];
        span.resource = Arc::clone(&resource);
        span.attributes.set(marks::SYNTHETIC, true);
        span.attributes.set(marks::SYNTHETIC_KIND, "queue_transit");
        if let Some(d) = ix.texts.opt(ix.facts[t.consumer as usize].destination) {
            span.attributes.set("messaging.destination.name", d);
        }
        span.attributes.set(marks::SYNTHETIC_CONSUMER_SPAN_ID, ix.spans[t.consumer as usize].span_id.to_string());
        out.push(span);
    }
    out
}
