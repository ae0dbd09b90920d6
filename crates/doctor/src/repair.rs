//! Repair: joining orphan roots to their true parents from evidence.
//!
//! Third stop on the road, after [`crate::assemble`]. Every root of every
//! trace is asked "who called you?". Evidence is tried strongest first —
//! span links, `messaging.message.id`, (`mcp.session.id`,
//! `jsonrpc.request.id`), `gen_ai.tool.call.id`, then heuristics over the
//! session and the service instance — and the first tier that names any
//! candidate decides: a weaker tier never overrules an ambiguous stronger
//! one. A repair with one candidate and a confidence at or above the
//! threshold is applied; two or more candidates are never applied.
//!
//! The same pass names the breaks it saw (`orphan_root`, `tool_root`,
//! `lost_context`, `missing_parent`), since the evidence that repairs a root
//! is also what proves it was broken. It never invents a finding for a
//! root that is new work: a SERVER or CONSUMER root with no evidence of a
//! caller is a request, not an orphan.

use std::collections::HashMap;

use agentrace_model::SpanKind;

use crate::assemble::{FastHash, Index, Ix};
use crate::config::Config;
use crate::conventions::{Category, Sym};
use crate::diagnosis::{Evidence, Finding, FindingKind, Repair};

/// How many spans an interval query may look at before it gives up and
/// calls the answer ambiguous; keeps a very busy instance from making the
/// analysis quadratic.
const SCAN_CAP: usize = 512;
/// How many earlier producers a consumer root is compared with.
const PRODUCER_CAP: usize = 64;

/// The outcome of the repair pass.
pub(crate) struct Repaired {
    pub repairs: Vec<Repair>,
    /// Parent in the connected view: the sent parent, or the applied repair's.
    pub parent: Vec<Option<Ix>>,
    /// For an orphan joined by an applied repair, the repair's index;
    /// indexed by span (see [`Repaired::joined`]).
    joined: Vec<Option<u32>>,
    /// Findings, each with the time it is sorted by.
    pub findings: Vec<(u64, Finding)>,
}

impl Repaired {
    /// The applied repair that joined this node, if it is an orphan that was joined.
    pub fn joined(&self, node: u32) -> Option<usize> {
        self.joined.get(node as usize).copied().flatten().map(|r| r as usize)
    }

    /// Every joined orphan with its repair, in index order.
    pub fn joined_orphans(&self) -> impl Iterator<Item = (Ix, usize)> + '_ {
        self.joined.iter().enumerate().filter_map(|(i, r)| r.map(|r| (i as Ix, r as usize)))
    }
}

struct Proposal {
    orphan: Ix,
    evidence: Evidence,
    detail: String,
    candidates: Vec<Ix>,
    /// Confidence of a single candidate; shared out between several.
    base: f64,
    /// The scan hit [`SCAN_CAP`]: too busy to tell.
    truncated: bool,
}

/// Spans sorted by start with a running maximum of ends, for "which spans
/// were active in this window" questions in O(log n + answers).
struct Timeline {
    items: Vec<(u64, u64, Ix)>,
    max_end: Vec<u64>,
}

impl Timeline {
    fn new(mut items: Vec<(u64, u64, Ix)>) -> Timeline {
        items.sort_unstable();
        let mut running = 0;
        let max_end = items
            .iter()
            .map(|(_, e, _)| {
                running = running.max(*e);
                running
            })
            .collect();
        Timeline { items, max_end }
    }

    /// Calls `f` for every span that starts at or before `start_max` and
    /// ends at or after `end_min`. Returns false if it stopped at the cap.
    fn visit(&self, start_max: u64, end_min: u64, mut f: impl FnMut(Ix)) -> bool {
        let upto = self.items.partition_point(|(s, _, _)| *s <= start_max);
        for (steps, i) in (0..upto).rev().enumerate() {
            if self.max_end[i] < end_min {
                break;
            }
            if steps >= SCAN_CAP {
                return false;
            }
            let (_, e, ix) = self.items[i];
            if e >= end_min {
                f(ix);
            }
        }
        true
    }
}

/// Spans listed by a join key (a message ID, a tool call ID), in the order
/// pushed: one list head per symbol and one link per span, so a million
/// unique keys cost no allocation each.
struct SpansBySym {
    first: Vec<Ix>,
    last: Vec<Ix>,
    next: Vec<Ix>,
}

impl SpansBySym {
    const NONE: Ix = Ix::MAX;

    fn new(symbols: usize, spans: usize) -> SpansBySym {
        SpansBySym { first: vec![Self::NONE; symbols], last: vec![Self::NONE; symbols], next: vec![Self::NONE; spans] }
    }

    fn push(&mut self, key: Sym, span: Ix) {
        let k = key.index();
        match self.last[k] {
            Self::NONE => self.first[k] = span,
            tail => self.next[tail as usize] = span,
        }
        self.last[k] = span;
    }

    fn has(&self, key: Sym) -> bool {
        self.first[key.index()] != Self::NONE
    }

    fn get(&self, key: Sym) -> impl Iterator<Item = Ix> + '_ {
        let mut at = self.first[key.index()];
        std::iter::from_fn(move || {
            let here = at;
            (here != Self::NONE).then(|| {
                at = self.next[here as usize];
                here
            })
        })
    }
}

/// Spans grouped by a small integer key (instance, session), each group in
/// index order: a counting sort, one allocation for all groups.
struct Groups {
    offsets: Vec<u32>,
    members: Vec<Ix>,
}

impl Groups {
    fn new(keys: usize, spans: impl Iterator<Item = (Option<u32>, Ix)> + Clone) -> Groups {
        let mut offsets = vec![0u32; keys + 1];
        for (k, _) in spans.clone() {
            if let Some(k) = k {
                offsets[k as usize + 1] += 1;
            }
        }
        for k in 0..keys {
            offsets[k + 1] += offsets[k];
        }
        let mut fill = offsets.clone();
        let mut members = vec![0; offsets[keys] as usize];
        for (k, i) in spans {
            if let Some(k) = k {
                members[fill[k as usize] as usize] = i;
                fill[k as usize] += 1;
            }
        }
        Groups { offsets, members }
    }

    fn get(&self, key: usize) -> &[Ix] {
        &self.members[self.offsets[key] as usize..self.offsets[key + 1] as usize]
    }
}

fn describe(ix: &Index, i: Ix) -> String {
    format!("`{}` ({})", ix.spans[i as usize].name, ix.service[i as usize])
}

/// Keeps, of candidates in the same trace, the innermost (latest start):
/// a tool call ID on both an `execute_tool` span and its MCP client child
/// names one caller, not two.
fn innermost_per_trace(ix: &Index, mut candidates: Vec<Ix>) -> Vec<Ix> {
    candidates.sort_unstable();
    candidates.dedup();
    let mut out: Vec<Ix> = Vec::with_capacity(candidates.len());
    for c in candidates {
        match out.last_mut() {
            Some(last) if ix.trace_of[*last as usize] == ix.trace_of[c as usize] => {
                if (ix.start(c), c) > (ix.start(*last), *last) {
                    *last = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn compatible<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

pub(crate) fn repair(ix: &Index, config: &Config) -> Repaired {
    let n = ix.len();
    let skew = config.skew();

    // Join keys, each list in index order (so deterministic).
    let mut producers = SpansBySym::new(ix.texts.len(), n);
    let mut mcp_clients: HashMap<(Sym, Sym), Vec<Ix>, FastHash> = HashMap::default();
    let mut tool_calls = SpansBySym::new(ix.texts.len(), n);
    let mut server_child = vec![false; n];
    let mut consumer_child = vec![false; n];
    for i in 0..n {
        let (s, f) = (ix.spans[i], &ix.facts[i]);
        if let (Some(m), SpanKind::Producer) = (f.message_id, s.kind) {
            producers.push(m, i as Ix);
        }
        if let (Some(a), Some(b), SpanKind::Client) = (f.mcp_session, f.jsonrpc_id, s.kind) {
            mcp_clients.entry((a, b)).or_default().push(i as Ix);
        }
        if let Some(t) = f.tool_call_id {
            tool_calls.push(t, i as Ix);
        }
        if let Some(p) = ix.parent[i] {
            match s.kind {
                SpanKind::Server => server_child[p as usize] = true,
                SpanKind::Consumer => consumer_child[p as usize] = true,
                _ => {}
            }
        }
    }
    let roots: Vec<Ix> =
        (0..n as Ix).filter(|&i| ix.parent[i as usize].is_none() && !ix.missing_parent[i as usize]).collect();

    // Tiers 1–4: exact join keys.
    let mut proposals: Vec<Option<Proposal>> = Vec::with_capacity(roots.len());
    for &r in &roots {
        let (s, f) = (ix.spans[r as usize], &ix.facts[r as usize]);
        let t = ix.trace_of[r as usize];
        let other_trace = |c: &Ix| ix.trace_of[*c as usize] != t;
        let mut links: Vec<Ix> =
            s.links.iter().filter_map(|l| ix.find(l.trace_id, l.span_id)).filter(other_trace).collect();
        links.sort_unstable();
        links.dedup();
        let proposal = if !links.is_empty() {
            let detail = format!("link to span {}", ix.spans[links[0] as usize].span_id);
            Some((Evidence::Link, detail, links, 0.99))
        } else if let Some(m) = f.message_id.filter(|_| s.kind != SpanKind::Producer)
            && producers.has(m)
        {
            let dest = f.destination;
            let c: Vec<Ix> = producers
                .get(m)
                .filter(other_trace)
                .filter(|p| compatible(dest, ix.facts[*p as usize].destination))
                .collect();
            let detail = format!("messaging.message.id={}", ix.texts.get(m));
            Some((Evidence::MessageId, detail, innermost_per_trace(ix, c), 0.97))
        } else if let (Some(a), Some(b), SpanKind::Server) = (f.mcp_session, f.jsonrpc_id, s.kind)
            && let Some(list) = mcp_clients.get(&(a, b))
        {
            let c: Vec<Ix> = list.iter().copied().filter(other_trace).collect();
            let detail = format!("mcp.session.id={}, jsonrpc.request.id={}", ix.texts.get(a), ix.texts.get(b));
            Some((Evidence::McpRequest, detail, innermost_per_trace(ix, c), 0.95))
        } else if let Some(id) = f.tool_call_id
            && tool_calls.has(id)
        {
            let c: Vec<Ix> =
                tool_calls.get(id).filter(other_trace).filter(|c| ix.start(*c) <= ix.start(r) + skew).collect();
            let detail = format!("gen_ai.tool.call.id={}", ix.texts.get(id));
            Some((Evidence::ToolCallId, detail, innermost_per_trace(ix, c), 0.90))
        } else {
            None
        };
        proposals.push(proposal.filter(|(_, _, c, _)| !c.is_empty()).map(|(evidence, detail, candidates, base)| {
            Proposal { orphan: r, evidence, detail, candidates, base, truncated: false }
        }));
    }

    // Parents claimed by exact evidence are not offered to heuristics.
    let mut claimed = vec![false; n];
    for p in proposals.iter().flatten() {
        if p.candidates.len() == 1 {
            claimed[p.candidates[0] as usize] = true;
        }
    }

    // Tier 5: heuristics, over service instances and sessions. Most roots
    // are settled by exact evidence above, so each timeline is built the
    // first time a root asks for it, from spans grouped once by key.
    let by_instance = Groups::new(ix.instances.len(), (0..n as Ix).map(|i| (Some(ix.instance_of[i as usize]), i)));
    let by_session = Groups::new(ix.sessions.len(), (0..n as Ix).map(|i| (ix.session_of(i), i)));
    let item = |i: Ix| (ix.start(i), ix.end(i), i);
    let mut instance_lines: Vec<Option<Timeline>> = (0..ix.instances.len()).map(|_| None).collect();
    let mut session_lines: Vec<Option<Timeline>> = (0..ix.sessions.len()).map(|_| None).collect();
    let mut client_lines: Vec<Option<Timeline>> = (0..ix.sessions.len()).map(|_| None).collect();
    let mut session_producers: Vec<Option<Vec<(u64, Ix)>>> = vec![None; ix.sessions.len()];
    // A client that already reached an instrumented server, or a call to an
    // LLM provider (never instrumented by us), cannot be the caller of an
    // orphan server root; a claimed parent is not offered again.
    let is_free_client = |i: Ix| {
        let i = i as usize;
        !claimed[i]
            && ix.spans[i].kind == SpanKind::Client
            && !server_child[i]
            && ix.facts[i].category() != Category::Llm
    };
    let is_free_producer =
        |i: Ix| !claimed[i as usize] && ix.spans[i as usize].kind == SpanKind::Producer && !consumer_child[i as usize];

    let mut no_evidence_mid_session = vec![false; roots.len()];
    for (k, &r) in roots.iter().enumerate() {
        if proposals[k].is_some() {
            continue;
        }
        let (s, f) = (ix.spans[r as usize], &ix.facts[r as usize]);
        let t = ix.trace_of[r as usize];
        let session = ix.session_of(r);
        let (start, end) = (ix.start(r), ix.end(r));
        let new_work = matches!(s.kind, SpanKind::Server | SpanKind::Consumer);

        if !new_work {
            let (_, strong) = &ix.instances[ix.instance_of[r as usize] as usize];
            let mut c = Vec::new();
            let instance = ix.instance_of[r as usize] as usize;
            let line = instance_lines[instance]
                .get_or_insert_with(|| Timeline::new(by_instance.get(instance).iter().map(|&i| item(i)).collect()));
            let complete = line.visit(start, start + 1, |p| {
                if ix.trace_of[p as usize] != t && ix.start(p) <= start {
                    c.push(p);
                }
            });
            let mut c = innermost_per_trace(ix, c);
            if c.len() > 1 && session.is_some() {
                let same: Vec<Ix> = c.iter().copied().filter(|p| ix.session_of(*p) == session).collect();
                if !same.is_empty() {
                    c = same;
                }
            }
            if !c.is_empty() {
                proposals[k] = Some(Proposal {
                    orphan: r,
                    evidence: Evidence::SameInstance,
                    detail: format!("active in the same service instance ({})", ix.service[r as usize]),
                    candidates: c,
                    base: if *strong { 0.85 } else { 0.6 },
                    truncated: !complete,
                });
                continue;
            }
        }
        let Some(sess) = session else { continue };
        let sess = sess as usize;
        if s.kind != SpanKind::Consumer {
            let mut c = Vec::new();
            let mut addressed = false;
            let service = ix.service[r as usize];
            let line = client_lines[sess].get_or_insert_with(|| {
                Timeline::new(by_session.get(sess).iter().copied().filter(|&i| is_free_client(i)).map(item).collect())
            });
            let complete = line.visit(start + skew, end.saturating_sub(skew), |p| {
                let pf = &ix.facts[p as usize];
                let peer = ix.texts.opt(pf.peer_service);
                if ix.trace_of[p as usize] == t
                    || ix.service[p as usize] == service
                    || !compatible(peer, Some(service))
                    || !compatible(pf.server_address, f.server_address)
                {
                    return;
                }
                addressed |= peer.is_some() || (pf.server_address.is_some() && f.server_address.is_some());
                c.push(p);
            });
            let c = innermost_per_trace(ix, c);
            if !c.is_empty() {
                let base = match (s.kind, addressed) {
                    (SpanKind::Server, true) => 0.85,
                    (SpanKind::Server, false) => 0.7,
                    _ => 0.6,
                };
                proposals[k] = Some(Proposal {
                    orphan: r,
                    evidence: Evidence::EnclosingClient,
                    detail: format!("same session {}, enclosing client span", ix.sessions[sess]),
                    candidates: c,
                    base,
                    truncated: !complete,
                });
                continue;
            }
        }
        if s.kind != SpanKind::Server {
            let list = session_producers[sess].get_or_insert_with(|| {
                let mut list: Vec<(u64, Ix)> = by_session
                    .get(sess)
                    .iter()
                    .copied()
                    .filter(|&i| is_free_producer(i))
                    .map(|i| (ix.end(i), i))
                    .collect();
                list.sort_unstable();
                list
            });
            let upto = list.partition_point(|(e, _)| *e <= start + skew);
            let dest = f.destination;
            let c: Vec<Ix> = list[upto.saturating_sub(PRODUCER_CAP)..upto]
                .iter()
                .map(|(_, p)| *p)
                .filter(|p| ix.trace_of[*p as usize] != t)
                .filter(|p| compatible(dest, ix.facts[*p as usize].destination))
                .collect();
            let c = innermost_per_trace(ix, c);
            if !c.is_empty() {
                let same_dest = dest.is_some() && c.iter().all(|p| ix.facts[*p as usize].destination.is_some());
                proposals[k] = Some(Proposal {
                    orphan: r,
                    evidence: Evidence::PrecedingProducer,
                    detail: format!("same session {}, unconsumed producer before it", ix.sessions[sess]),
                    candidates: c,
                    base: if same_dest && s.kind == SpanKind::Consumer { 0.75 } else { 0.6 },
                    truncated: upto > PRODUCER_CAP,
                });
                continue;
            }
        }
        if !new_work {
            // No caller in evidence; still an orphan if it starts while
            // other work of its session is clearly under way.
            let mut busy = false;
            let line = session_lines[sess]
                .get_or_insert_with(|| Timeline::new(by_session.get(sess).iter().map(|&i| item(i)).collect()));
            line.visit(start.saturating_sub(skew), start + skew, |p| {
                busy |= ix.trace_of[p as usize] != t;
            });
            no_evidence_mid_session[k] = busy;
        }
    }

    // One heuristic parent serves one orphan: a client call reaches one
    // server, a message one consumer. Contested parents are not applied.
    let mut heuristic_uses: HashMap<Ix, u32, FastHash> = HashMap::default();
    for p in proposals.iter().flatten() {
        if matches!(p.evidence, Evidence::EnclosingClient | Evidence::PrecedingProducer) && p.candidates.len() == 1 {
            *heuristic_uses.entry(p.candidates[0]).or_default() += 1;
        }
    }

    let mut repairs = Vec::new();
    let mut findings = Vec::new();
    let mut applicable: Vec<(usize, Ix, Ix)> = Vec::new();
    for (k, p) in proposals.iter().enumerate() {
        let r = roots[k];
        let is_tool = ix.facts[r as usize].category() == Category::Tool;
        let Some(p) = p else {
            if is_tool {
                findings.push(finding(ix, r, FindingKind::ToolRoot, None, tool_root_message(ix, r, None)));
            } else if no_evidence_mid_session[k] {
                findings.push(finding(ix, r, FindingKind::OrphanRoot, None, no_evidence_message(ix, r)));
            }
            continue;
        };
        let count = p.candidates.len();
        let contested = count == 1 && heuristic_uses.get(&p.candidates[0]).copied().unwrap_or(0) > 1;
        for &c in &p.candidates {
            let confidence = crate::diagnosis::round(p.base / count as f64, 3);
            let reason = if p.truncated {
                Some("too many concurrent spans to tell which one".to_owned())
            } else if count > 1 {
                Some(format!("ambiguous: {count} candidates fit"))
            } else if contested {
                Some("contested: another orphan fits the same parent".to_owned())
            } else if confidence < config.apply_threshold {
                Some(format!("below the apply threshold of {}", config.apply_threshold))
            } else {
                applicable.push((repairs.len(), p.orphan, c));
                None
            };
            let (os, ps) = (ix.spans[p.orphan as usize], ix.spans[c as usize]);
            repairs.push(Repair {
                span_id: os.span_id,
                trace_id: os.trace_id,
                parent_span_id: ps.span_id,
                parent_trace_id: ps.trace_id,
                evidence: p.evidence,
                detail: p.detail.clone(),
                confidence,
                applied: false,
                reason,
            });
        }
        let kind = if is_tool {
            FindingKind::ToolRoot
        } else if p.evidence == Evidence::Link {
            // A link is a deliberate, standard way to start a new trace
            // (batch consumers, long-running work): joined, and reported as a
            // discontinuity of the request, but not as a failed hand-off.
            continue;
        } else if p.evidence == Evidence::SameInstance {
            FindingKind::LostContext
        } else {
            FindingKind::OrphanRoot
        };
        let message = if is_tool { tool_root_message(ix, r, Some(p)) } else { orphan_message(ix, p) };
        findings.push(finding(ix, r, kind, Some(p.evidence), message));
    }

    // Apply the strongest first, refusing any that would close a cycle.
    applicable.sort_by(|a, b| {
        repairs[b.0]
            .confidence
            .total_cmp(&repairs[a.0].confidence)
            .then_with(|| (ix.start(a.1), a.1).cmp(&(ix.start(b.1), b.1)))
    });
    let mut parent = ix.parent.clone();
    let mut joined = vec![None; n];
    for (ri, orphan, candidate) in applicable {
        let mut cursor = Some(candidate);
        let mut steps = 0usize;
        let mut cycle = false;
        while let Some(c) = cursor {
            if c == orphan || steps > n {
                cycle = true;
                break;
            }
            cursor = parent[c as usize];
            steps += 1;
        }
        if cycle {
            repairs[ri].reason = Some("would create a cycle".to_owned());
            continue;
        }
        parent[orphan as usize] = Some(candidate);
        repairs[ri].applied = true;
        joined[orphan as usize] = Some(ri as u32);
    }

    for i in 0..n as Ix {
        if ix.missing_parent[i as usize] {
            let s = ix.spans[i as usize];
            let pid = s.parent_span_id.map(|p| p.to_string()).unwrap_or_default();
            let message = format!(
                "{} names parent span {pid}, which never arrived: it was dropped by its exporter, sampled out, or is still in flight — check the parent service's exporter and sampler",
                describe(ix, i)
            );
            findings.push(finding(ix, i, FindingKind::MissingParent, None, message));
        }
    }
    Repaired { repairs, parent, joined, findings }
}

fn finding(ix: &Index, i: Ix, kind: FindingKind, evidence: Option<Evidence>, message: String) -> (u64, Finding) {
    let s = ix.spans[i as usize];
    (s.start_unix_nano, Finding::at(s, kind, evidence, message))
}

fn fix_for(evidence: Option<Evidence>) -> &'static str {
    match evidence {
        Some(Evidence::MessageId | Evidence::PrecedingProducer) => {
            "inject `traceparent` into the message headers or envelope when producing and extract it when consuming"
        }
        Some(Evidence::McpRequest) => {
            "carry `traceparent` in the request's `params._meta` (MCP SEP-414) on the client and parent the server span on it"
        }
        Some(Evidence::ToolCallId) => {
            "pass `traceparent` along with the tool call (MCP `params._meta` or HTTP headers) and extract it where the tool runs"
        }
        Some(Evidence::EnclosingClient) => {
            "inject `traceparent` into the outgoing request's headers and extract it in the server"
        }
        Some(Evidence::SameInstance) => {
            "carry the current context into the spawned task, thread-pool job or callback (attach it where the work starts)"
        }
        Some(Evidence::Link) | None => "propagate `traceparent` (and `session.id` as baggage) across this hop",
    }
}

fn caller_phrase(ix: &Index, p: &Proposal) -> String {
    let count = p.candidates.len();
    let who = describe(ix, p.candidates[0]);
    let trace = ix.spans[p.candidates[0] as usize].trace_id;
    if count > 1 {
        format!("{count} possible callers fit ({}), so it was not repaired", p.detail)
    } else {
        format!("its caller is {who} in trace {trace} ({})", p.detail)
    }
}

fn orphan_message(ix: &Index, p: &Proposal) -> String {
    let r = p.orphan;
    let what = match p.evidence {
        Evidence::SameInstance => {
            "started a new trace while its own service instance was busy: in-process context was lost"
        }
        Evidence::MessageId | Evidence::PrecedingProducer => {
            "started a new trace: the queue hand-off dropped trace context"
        }
        Evidence::McpRequest => "started a new trace: the MCP call dropped trace context",
        Evidence::ToolCallId => "started a new trace: the tool call dropped trace context",
        Evidence::EnclosingClient => "started a new trace: the call dropped trace context",
        Evidence::Link => "started a new trace",
    };
    format!("{} {what}; {}; fix: {}", describe(ix, r), caller_phrase(ix, p), fix_for(Some(p.evidence)))
}

fn tool_root_message(ix: &Index, r: Ix, p: Option<&Proposal>) -> String {
    match p {
        Some(p) => format!(
            "tool span {} is a root: the tool layer lost context; {}; fix: {}",
            describe(ix, r),
            caller_phrase(ix, p),
            fix_for(Some(p.evidence))
        ),
        None => format!(
            "tool span {} is a root and nothing names its caller: the tool layer lost context; fix: {}",
            describe(ix, r),
            fix_for(Some(Evidence::ToolCallId))
        ),
    }
}

fn no_evidence_message(ix: &Index, r: Ix) -> String {
    format!(
        "{} started a new trace in the middle of its session's work and no span names its caller, so it cannot be joined; fix: {}",
        describe(ix, r),
        fix_for(None)
    )
}
