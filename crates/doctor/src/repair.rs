//! Repair: joining orphan roots to their true parents from evidence.
//!
//! Third stop on the road, after [`crate::assemble`]. Every root of every
//! trace is asked "who called you?". Evidence is tried strongest first —
//! span links, `messaging.message.id` or the correlation ID beside it (with
//! no producer span of it, the consumer of another service that received
//! it first and sent it on: a relay, an RPC's reply), (`mcp.session.id`,
//! `jsonrpc.request.id`), `jsonrpc.request.id` with method, tool and time,
//! `gen_ai.tool.call.id` (also inside a model's kept output), then
//! heuristics: a same-named tool call of another service, a client call
//! addressed to the orphan's server, an unconsumed producer, the one request
//! at work in the same service instance — and the first tier that names any
//! candidate decides: a weaker tier never overrules an ambiguous stronger
//! one. A repair with one candidate and a confidence at or above the
//! threshold is applied; two or more candidates are never applied, and a
//! heuristic with a doubt (a rival of the same name, a parent busy with
//! other work, a candidate that is itself an orphan) is only suggested.
//!
//! The same pass names the breaks it saw (`orphan_root`, `tool_root`,
//! `lost_context`, `missing_parent`), since the evidence that repairs a root
//! is also what proves it was broken. It never invents a finding for a
//! root that is new work or that started a trace on purpose: a SERVER or
//! CONSUMER root with no evidence of a caller is a request, a root with a
//! span link (either way) or an MCP client's own handshake is deliberate,
//! and a root its instance also starts while idle is an entry point.
//!
//! An unconsumed producer is one with no consumer child, whose message ID no
//! consumer carries, that nothing links to, and that has no producer child
//! of its own (AutoGen's `create` around its `publish`: the message leaves
//! with the child, so an orphan that started before the child is not its
//! consumer).
//!
//! # Hold reasons
//!
//! A repair with one candidate is still only suggested (its `reason` says
//! why) when:
//!
//! - the scan was truncated (too busy to tell), or another orphan fits the
//!   same client call or producer (contested), or the confidence is below
//!   the threshold;
//! - the join is by time alone and a trace left out of the diagnosis
//!   ([`LeftOut`]: a live context cut at its bound) ran beside the orphan,
//!   or, for the same instance, in its service; a break that rests on an
//!   absence such a trace could fill (no entry point of the instance, no
//!   consumer of the producer's message) is then not claimed either;
//! - same instance, several requests were at work; the running span ended
//!   before the orphan (work that outlived its caller); the only candidates
//!   are themselves orphans; a concurrent span of the chosen one's name fits
//!   as well;
//! - same instance, the candidate was busy with a child of its own when the
//!   orphan started: a step that hands a job to a pool waits for it, so a
//!   step at work elsewhere may only have happened to be running. On one
//!   clock (an instance named by the resource is one process) a step that
//!   ended before the orphan did not wait for it, so the step asked is the
//!   nearest ancestor that outlasts the orphan, not a span that fits only
//!   within the skew allowance (a one-off job that outlived a short tool
//!   span was otherwise joined to it);
//! - same instance, another orphan that fits the same step started first and
//!   was still running: the step was waiting for that job, so a later root
//!   is a second job of the step only if the step fans out. A fan-out (a map
//!   over a pool) runs one function several times, each job before it gets
//!   to work of its own; so the later root is held when the earlier job was
//!   already busy with a child (the request's work was in that child), or
//!   when it has another name (nothing says the step handed out two jobs).
//!   A job the instance scheduled itself, starting inside a request whose
//!   sub-agent had lost its context, was otherwise joined to the tool step
//!   that was waiting for the sub-agent.
//!
//! Of the last two, when the root's name occurs nowhere else in its service
//! in the input (no call of that code inside any request, no other run of
//! it) and it is no tool span, nothing says it ever had a caller: a job the
//! instance schedules itself (asyncio `create_task` at start-up) looks
//! exactly so. The suggestion stands, and no break is reported. A job that
//! lost its context while its step was busy elsewhere and that runs once is
//! then missed, which the product accepts: a false break on a healthy trace
//! costs more than a miss. A one-off job that starts while its request's
//! innermost step is idle, with no other orphan in it, is still joined: by
//! the spans it is a pool job that lost its context.
//!
//! Not a hold but a step before them, in the client-call tier: a call is
//! no candidate for a server root that another caller plainly sent. Calls
//! to the same server are told apart by method and path (a health probe),
//! and, when both sides name the HTTP client library that sent the request,
//! by that library: the server's `User-Agent`, the client span's own
//! recorded one, else the library its instrumentation scope instruments
//! (the table in `conventions.rs`). The shape: an admin script `POST`s to
//! the agent's route while the agent's own call, whose context the server
//! dropped, is in flight. By time, address and route both server roots fit
//! that one call, so both were reported as orphans, one falsely. A root
//! whose agent names another library than the call's is not that call's
//! server; left with no candidate it is a request like any other, and the
//! call's own server, now alone, may be joined. A custom agent string, an
//! SDK's own (`OpenAI/Python`), or a scope that names no library rules
//! nothing out, so nothing changes without that evidence; a proxy that
//! rewrites the agent makes a break a miss rather than a false finding.

use std::collections::HashMap;

use agentrace_model::SpanKind;

use crate::assemble::{FastHash, Index, Ix};
use crate::config::Config;
use crate::conventions::{Category, Sym};
use crate::diagnosis::{Evidence, Finding, FindingKind, Repair};
use crate::left_out::LeftOut;

/// How many spans an interval query may look at before it gives up and
/// calls the answer ambiguous; keeps a very busy instance from making the
/// analysis quadratic.
const SCAN_CAP: usize = 512;
/// How many earlier producers a consumer root is compared with.
const PRODUCER_CAP: usize = 64;
/// How much longer than an enclosing call a root may last, in nanoseconds:
/// each side times its span on its own clock, which skew shifts but barely
/// stretches, so a caller lasts at least as long as what it waited for.
const DURATION_SLACK: u64 = 1_000_000;

/// Whether call `p` encloses the interval `start..end` of another service's
/// root once its clock is shifted by at most `skew`: a skewed clock is
/// shifted, not stretched, so the call must also have lasted as long.
fn encloses_shifted(ix: &Index, p: Ix, start: u64, end: u64, skew: u64) -> bool {
    ix.start(p) <= start + skew && end <= ix.end(p) + skew && ix.end(p) - ix.start(p) + DURATION_SLACK >= end - start
}

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
    /// Why a single candidate must not be applied all the same (an equal
    /// rival was left out, the candidate is itself an orphan).
    hold: Option<String>,
    /// The hold says the candidate was busy with other work of its own when
    /// the orphan started (a child as sent, or another orphan that fits it).
    busy: bool,
    /// Suggested, but no break reported: the spans hold no sign that the
    /// root had a caller at all (see the module docs).
    quiet: bool,
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

/// How long after a producer started an orphan root may still be the
/// consumer of its unconsumed message, for the producer heuristic.
const QUEUE_WINDOW: u64 = 30_000_000_000;

/// MCP methods a client sends on its own, outside any request of the
/// application: their client spans are roots by design.
fn is_handshake_method(method: &str) -> bool {
    // The listings too: the SDK lists tools when a session opens, before
    // any request of the application is at work.
    matches!(
        method,
        "initialize"
            | "server/discover"
            | "ping"
            | "logging/setLevel"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
    ) || method.starts_with("notifications/")
}

/// The spans whose parent, as sent, is `p`.
fn child_list(ix: &Index, p: Ix) -> Vec<Ix> {
    let range = &ix.traces[ix.trace_of[p as usize] as usize];
    (range.start..range.end).filter(|&c| ix.parent[c as usize] == Some(p)).collect()
}

/// The conversation ID (`gen_ai.conversation.id`) the span's trace carries.
fn conversation_of(ix: &Index, i: Ix) -> Option<Sym> {
    let range = &ix.traces[ix.trace_of[i as usize] as usize];
    ix.facts[range.start as usize..range.end as usize]
        .iter()
        .find(|f| f.session_is_conversation)
        .and_then(|f| f.session)
}

/// Of several candidates, those whose trace shares the orphan's
/// conversation ID, when any does; all of them otherwise.
fn narrow_by_conversation(ix: &Index, orphan: Ix, candidates: Vec<Ix>) -> Vec<Ix> {
    if candidates.len() < 2 {
        return candidates;
    }
    let Some(conv) = conversation_of(ix, orphan) else { return candidates };
    let sharing: Vec<Ix> = candidates.iter().copied().filter(|&c| trace_has_session(ix, c, conv)).collect();
    if sharing.is_empty() { candidates } else { sharing }
}

/// Whether any span of `i`'s trace carries this session or conversation ID.
fn trace_has_session(ix: &Index, i: Ix, session: Sym) -> bool {
    let range = &ix.traces[ix.trace_of[i as usize] as usize];
    ix.facts[range.start as usize..range.end as usize].iter().any(|f| f.session == Some(session))
}

/// The deepest span that is an ancestor-or-self of the innermost spans of
/// `set`, all of one trace: the fork point when a trace had several branches at
/// work, so a heuristic parent is always on the orphan's true road, never
/// a sibling branch's span.
fn common_ancestor(ix: &Index, up: &[Option<Ix>], set: &[Ix]) -> Option<Ix> {
    // The innermost spans of the set (none of them has a descendant in it):
    // an enclosing span that is running only because its child is adds
    // nothing.
    let mut inner: Vec<Ix> = set.to_vec();
    for &p in set {
        let mut x = up[p as usize];
        let mut steps = 0usize;
        while let Some(v) = x {
            if steps > ix.len() {
                break;
            }
            inner.retain(|&q| q != v);
            x = up[v as usize];
            steps += 1;
        }
    }
    let (&first, rest) = inner.split_first()?;
    let mut chain = Vec::new();
    let mut x = Some(first);
    while let Some(v) = x {
        if chain.len() > ix.len() {
            break;
        }
        chain.push(v);
        x = up[v as usize];
    }
    for &c in rest {
        let mut x = Some(c);
        let mut steps = 0usize;
        let found = loop {
            let Some(v) = x else { break None };
            if let Some(pos) = chain.iter().position(|&a| a == v) {
                break Some(pos);
            }
            steps += 1;
            if steps > ix.len() {
                break None;
            }
            x = up[v as usize];
        };
        chain.drain(..found?);
    }
    chain.first().copied()
}

pub(crate) fn repair(ix: &Index, config: &Config, left_out: &LeftOut) -> Repaired {
    let n = ix.len();
    let skew = config.skew();

    // Join keys, each list in index order (so deterministic).
    let mut producers = SpansBySym::new(ix.texts.len(), n);
    let mut mcp_clients: HashMap<(Sym, Sym), Vec<Ix>, FastHash> = HashMap::default();
    let mut rpc_clients = SpansBySym::new(ix.texts.len(), n);
    let mut tool_calls = SpansBySym::new(ix.texts.len(), n);
    // Model calls by the tool call IDs their output asked for.
    let mut asked: HashMap<String, Vec<Ix>, FastHash> = HashMap::default();
    let mut server_child = vec![false; n];
    let mut consumer_child = vec![false; n];
    // Producers with a producer child: the child sends the message (AutoGen's
    // `create` around its `publish`), so the outer span sends nothing itself.
    let mut producer_child = vec![false; n];
    // Message IDs that some consumer-side span carries.
    let mut consumed = vec![false; ix.texts.len()];
    // Spans that a span of another trace links to.
    let mut linked_in = vec![false; n];
    // Producers by a correlation ID besides their message ID, and the
    // consumer spans that received their context, by either (rarer: an
    // AMQP RPC's spans, Celery's tasks).
    let mut correlated: HashMap<Sym, Vec<Ix>, FastHash> = HashMap::default();
    let mut received: HashMap<Sym, Vec<Ix>, FastHash> = HashMap::default();
    for i in 0..n {
        let (s, f) = (ix.spans[i], &ix.facts[i]);
        if let Some(m) = f.message_id {
            if s.kind == SpanKind::Producer {
                producers.push(m, i as Ix);
            } else {
                consumed[m.index()] = true;
            }
        }
        if let Some(c) = f.correlation_id {
            if s.kind == SpanKind::Producer {
                correlated.entry(c).or_default().push(i as Ix);
            } else {
                consumed[c.index()] = true;
            }
        }
        if s.kind == SpanKind::Consumer && ix.parent[i].is_some() {
            for k in [f.message_id, f.correlation_id].into_iter().flatten() {
                received.entry(k).or_default().push(i as Ix);
            }
        }
        if let (Some(a), Some(b), SpanKind::Client) = (f.mcp_session, f.jsonrpc_id, s.kind) {
            mcp_clients.entry((a, b)).or_default().push(i as Ix);
        }
        if let (Some(b), SpanKind::Client) = (f.jsonrpc_id, s.kind) {
            rpc_clients.push(b, i as Ix);
        }
        if let Some(t) = f.tool_call_id {
            tool_calls.push(t, i as Ix);
        }
        if f.category() == Category::Llm {
            for id in crate::conventions::output_tool_call_ids(s) {
                asked.entry(id).or_default().push(i as Ix);
            }
        }
        if let Some(p) = ix.parent[i] {
            match s.kind {
                SpanKind::Server => server_child[p as usize] = true,
                SpanKind::Consumer => consumer_child[p as usize] = true,
                SpanKind::Producer => producer_child[p as usize] = true,
                _ => {}
            }
        }
        for l in &s.links {
            if let Some(t) = ix.find(l.trace_id, l.span_id)
                && ix.trace_of[t as usize] != ix.trace_of[i]
            {
                linked_in[t as usize] = true;
            }
        }
    }
    // A client call around the client call that reached a server (an agent
    // framework's `invoke_agent` CLIENT span over its HTTP client's span)
    // reached that server too: it is no call out that an orphan may answer.
    for i in 0..n {
        let mut c = i;
        while server_child[c]
            && ix.spans[c].kind == SpanKind::Client
            && let Some(p) = ix.parent[c]
            && ix.spans[p as usize].kind == SpanKind::Client
            && !server_child[p as usize]
        {
            server_child[p as usize] = true;
            c = p as usize;
        }
    }
    let roots: Vec<Ix> =
        (0..n as Ix).filter(|&i| ix.parent[i as usize].is_none() && !ix.missing_parent[i as usize]).collect();
    let trace_end: Vec<u64> =
        ix.traces.iter().map(|r| (r.start..r.end).map(|i| ix.end(i)).max().unwrap_or(0)).collect();
    // Instrumentation scopes whose consumer spans link to their producers
    // elsewhere in the input: such an instrumentation links whenever it can,
    // so one of its consumers with no link and no parent lost the context on
    // the way.
    let mut propagating_scopes: std::collections::HashSet<&str, FastHash> = Default::default();
    for i in 0..n {
        let s = ix.spans[i];
        // Only a runtime that links its consumers (AutoGen's) says anything by
        // a missing link: a consumer without a parent is also what a task
        // sent by an uninstrumented process (cron, beat) looks like.
        if s.kind == SpanKind::Consumer && !s.links.is_empty() {
            propagating_scopes.insert(s.scope.name.as_str());
        }
    }
    // Roots that started a trace on purpose: they link to other work or
    // other work links to them (a new trace per message, batch consumers),
    // or they are an MCP client's own handshake. None is an orphan.
    let deliberate: Vec<bool> = roots
        .iter()
        .map(|&r| {
            let (s, f) = (ix.spans[r as usize], &ix.facts[r as usize]);
            !s.links.is_empty()
                || linked_in[r as usize]
                || (s.kind == SpanKind::Client && ix.texts.opt(f.mcp_method).is_some_and(is_handshake_method))
        })
        .collect();

    // Tiers 1–4: exact join keys.
    let mut proposals: Vec<Option<Proposal>> = Vec::with_capacity(roots.len());
    // A consumer-side root's message keys (its message ID, then its
    // correlation ID): the producers that sent one to where it was
    // received; else the consumer of another service that received it
    // first, with its context, and sent it on (a relay that re-publishes
    // the body without its headers; an RPC server whose reply goes out on
    // an uninstrumented channel), when no producer span sent it on. A key
    // that some producer carries, to another destination or in the root's
    // own trace, ends the search there: the first tier that names any
    // candidate decides, and a weaker tier never overrules it.
    let by_message = |r: Ix| -> Option<(String, Vec<Ix>, f64)> {
        let (f, t) = (&ix.facts[r as usize], ix.trace_of[r as usize]);
        let keys = [(f.message_id, "messaging.message.id"), (f.correlation_id, "messaging.conversation_id")];
        let keys = keys.into_iter().filter_map(|(k, attr)| Some((k?, attr)));
        let mut sent_any = false;
        for (k, attr) in keys.clone() {
            let sent: Vec<Ix> = producers.get(k).chain(correlated.get(&k).into_iter().flatten().copied()).collect();
            sent_any |= !sent.is_empty();
            let c: Vec<Ix> = sent
                .into_iter()
                .filter(|&p| {
                    ix.trace_of[p as usize] != t && compatible(f.destination, ix.facts[p as usize].destination)
                })
                .collect();
            if !c.is_empty() {
                let detail = format!("{attr}={} on the producer and the consumer", ix.texts.get(k));
                return Some((detail, innermost_per_trace(ix, c), 0.97));
            }
        }
        let dest = f.destination?;
        for (k, attr) in keys {
            let c: Vec<Ix> = received
                .get(&k)
                .into_iter()
                .flatten()
                .copied()
                .filter(|&c| {
                    let cf = &ix.facts[c as usize];
                    // Received where it was sent (its producer's destination
                    // agrees), then sent on elsewhere.
                    let delivered = ix.parent[c as usize].is_some_and(|p| {
                        ix.spans[p as usize].kind == SpanKind::Producer
                            && compatible(cf.destination, ix.facts[p as usize].destination)
                    });
                    ix.trace_of[c as usize] != t
                        && ix.service[c as usize] != ix.service[r as usize]
                        && ix.start(c) <= ix.start(r) + skew
                        && cf.destination.is_some_and(|d| d != dest)
                        && delivered
                })
                .collect();
            if !c.is_empty() {
                let detail = format!(
                    "{attr}={}: received by {} first, and sent on to {} by no producer span",
                    ix.texts.get(k),
                    describe(ix, c[0]),
                    ix.texts.get(dest)
                );
                return Some((detail, innermost_per_trace(ix, c), 0.9));
            }
        }
        sent_any.then(|| (String::new(), Vec::new(), 0.0))
    };

    for &r in &roots {
        let (s, f) = (ix.spans[r as usize], &ix.facts[r as usize]);
        let t = ix.trace_of[r as usize];
        let other_trace = |c: &Ix| ix.trace_of[*c as usize] != t;
        let mut links: Vec<Ix> =
            s.links.iter().filter_map(|l| ix.find(l.trace_id, l.span_id)).filter(other_trace).collect();
        links.sort_unstable();
        links.dedup();
        let encloses = |c: Ix| ix.start(c) <= ix.start(r) + skew && ix.end(r) <= ix.end(c) + skew;
        let proposal = if !links.is_empty() {
            let detail = format!("link to span {}", ix.spans[links[0] as usize].span_id);
            Some((Evidence::Link, detail, links, 0.99))
        } else if s.kind != SpanKind::Producer
            && let Some((detail, c, base)) = by_message(r)
        {
            Some((Evidence::MessageId, detail, c, base))
        } else if let (Some(a), Some(b), SpanKind::Server) = (f.mcp_session, f.jsonrpc_id, s.kind)
            && let Some(list) = mcp_clients.get(&(a, b))
        {
            let c: Vec<Ix> = list.iter().copied().filter(other_trace).collect();
            let detail = format!("mcp.session.id={}, jsonrpc.request.id={}", ix.texts.get(a), ix.texts.get(b));
            Some((Evidence::McpRequest, detail, innermost_per_trace(ix, c), 0.95))
        } else if let Some(b) = f.jsonrpc_id.filter(|_| s.kind != SpanKind::Client)
            && rpc_clients.has(b)
            && let c = rpc_clients
                .get(b)
                .filter(other_trace)
                .filter(|&c| {
                    let cf = &ix.facts[c as usize];
                    !server_child[c as usize]
                        && ix.service[c as usize] != ix.service[r as usize]
                        && compatible(f.mcp_method, cf.mcp_method)
                        && compatible(f.tool_name, cf.tool_name)
                        && encloses(c)
                })
                .collect::<Vec<Ix>>()
            && !c.is_empty()
        {
            // A request ID is unique within one MCP session only; without
            // `mcp.session.id`, the method, the tool and the time must agree
            // too, and the process pair (stdio) narrows it where recorded.
            // Calls that enclose it on the clock as read count before those
            // that need the skew allowance.
            let strict: Vec<Ix> =
                c.iter().copied().filter(|&c| ix.start(c) <= ix.start(r) && ix.end(r) <= ix.end(c)).collect();
            let c = if strict.is_empty() { c } else { strict };
            let c = same_process_pair(ix, r, innermost_per_trace(ix, c));
            let detail = format!(
                "jsonrpc.request.id={}{}{}; the client call that reached no server encloses it",
                ix.texts.get(b),
                ix.texts.opt(f.mcp_method).map(|m| format!(", mcp.method.name={m}")).unwrap_or_default(),
                ix.texts.opt(f.tool_name).map(|m| format!(", tool {m}")).unwrap_or_default(),
            );
            // A bare small integer and time tie any busy system's calls to
            // any server's requests: with neither the method nor the tool
            // named on the server's side, it is only suggested.
            let named = f.mcp_method.is_some() || f.tool_name.is_some();
            Some((Evidence::RequestIdInTime, detail, c, if named { 0.9 } else { 0.5 }))
        } else if let Some(id) = f.tool_call_id
            && tool_calls.has(id)
            && let c = tool_calls
                .get(id)
                .filter(other_trace)
                .filter(|c| ix.start(*c) <= ix.start(r) + skew)
                .collect::<Vec<Ix>>()
            && !c.is_empty()
        {
            let detail = format!("gen_ai.tool.call.id={}", ix.texts.get(id));
            Some((Evidence::ToolCallId, detail, innermost_per_trace(ix, c), 0.90))
        } else if let Some(id) = f.tool_call_id
            && let Some(models) = asked.get(ix.texts.get(id))
            && let c = models
                .iter()
                .filter(|c| other_trace(c) && ix.start(**c) <= ix.start(r) + skew)
                // The step that asked the model runs the tool it asked for.
                .filter_map(|&m| ix.parent[m as usize])
                .collect::<Vec<Ix>>()
            && !c.is_empty()
        {
            let detail = format!("gen_ai.tool.call.id={} in the output messages of the model call", ix.texts.get(id));
            Some((Evidence::ToolCallId, detail, innermost_per_trace(ix, c), 0.90))
        } else {
            None
        };
        proposals.push(proposal.filter(|(_, _, c, _)| !c.is_empty()).map(|(evidence, detail, candidates, base)| {
            Proposal {
                orphan: r,
                evidence,
                detail,
                candidates,
                base,
                truncated: false,
                hold: None,
                busy: false,
                quiet: false,
            }
        }));
    }

    // Parents claimed by exact evidence are not offered to heuristics, and
    // roots joined by it are settled.
    let mut claimed = vec![false; n];
    let mut settled_trace = vec![false; ix.traces.len()];
    // Parents as sent, plus the joins exact evidence makes: pieces of one
    // request (a trace per message, joined by links) count as one.
    let mut up = ix.parent.clone();
    for p in proposals.iter().flatten() {
        // (A request ID alone, only suggested, claims nothing: the call may
        // be another server's, whose orphan it then still fits.)
        if p.candidates.len() == 1 && p.base >= config.apply_threshold {
            claimed[p.candidates[0] as usize] = true;
            settled_trace[ix.trace_of[p.orphan as usize] as usize] = true;
            up[p.orphan as usize] = Some(p.candidates[0]);
        }
    }
    let top = |i: Ix| {
        let (mut x, mut steps) = (i, 0usize);
        while let Some(p) = up[x as usize] {
            steps += 1;
            if steps > n {
                break;
            }
            x = p;
        }
        x
    };

    // Tier 5: heuristics. Most roots are settled by exact evidence above, so
    // each timeline is built the first time a root asks for it, from spans
    // grouped once by key.
    let by_instance = Groups::new(ix.instances.len(), (0..n as Ix).map(|i| (Some(ix.instance_of[i as usize]), i)));
    let by_session = Groups::new(ix.sessions.len(), (0..n as Ix).map(|i| (ix.session_of(i), i)));
    let item = |i: Ix| (ix.start(i), ix.end(i), i);
    let mut instance_lines: Vec<Option<Timeline>> = (0..ix.instances.len()).map(|_| None).collect();
    let mut session_lines: Vec<Option<Timeline>> = (0..ix.sessions.len()).map(|_| None).collect();
    let is_new_work = |r: Ix| matches!(ix.spans[r as usize].kind, SpanKind::Server | SpanKind::Consumer);

    // What was running in the root's own service instance when it started
    // (spans of other traces that started before it and had not ended).
    let mut active: Vec<Vec<Ix>> = vec![Vec::new(); roots.len()];
    let mut truncated_scan = vec![false; roots.len()];
    // (instance, name) of roots that also start while their instance is
    // idle: entry points of the service (a request, a scheduled job), not
    // work that lost its caller.
    let mut entry_points: std::collections::HashSet<(u32, &str), FastHash> = Default::default();
    for (k, &r) in roots.iter().enumerate() {
        if proposals[k].is_some() || deliberate[k] || is_new_work(r) {
            continue;
        }
        let t = ix.trace_of[r as usize];
        let start = ix.start(r);
        let instance = ix.instance_of[r as usize] as usize;
        let line = instance_lines[instance]
            .get_or_insert_with(|| Timeline::new(by_instance.get(instance).iter().map(|&i| item(i)).collect()));
        let mut found = Vec::new();
        let complete = line.visit(start, start, |p| {
            if ix.trace_of[p as usize] != t && (ix.start(p) < start || ix.parent[p as usize].is_some()) {
                found.push(p);
            }
        });
        truncated_scan[k] = !complete;
        if found.is_empty() && complete {
            entry_points.insert((instance as u32, ix.spans[r as usize].name.as_str()));
        }
        found.sort_unstable();
        active[k] = found;
    }
    let is_entry_point =
        |r: Ix| entry_points.contains(&(ix.instance_of[r as usize], ix.spans[r as usize].name.as_str()));
    // Traces whose root is itself an unresolved orphan: their spans are no
    // parent to apply, only to suggest.
    let mut suspect_trace = vec![false; ix.traces.len()];
    for (k, &r) in roots.iter().enumerate() {
        if !active[k].is_empty() && !is_entry_point(r) {
            suspect_trace[ix.trace_of[r as usize] as usize] = true;
        }
    }
    let sessions_fit = |a: Ix, b: Ix| compatible(ix.user_session_of(a), ix.user_session_of(b));

    let mut client_line: Option<Timeline> = None;
    let mut producer_list: Option<Vec<(u64, Ix)>> = None;
    // A client that already reached an instrumented server, or a call to an
    // LLM provider (never instrumented by us), cannot be the caller of an
    // orphan server root; a claimed parent is not offered again.
    //
    // Some instrumentations record an outbound MCP call as INTERNAL spans
    // (OpenLLMetry: a `{tool}.tool` span over a `ResponseStreamWriter` that
    // carries `mcp.request.id`): a tool span whose own or child span carries
    // a JSON-RPC request ID is a call out too.
    let mut rpc_below = vec![false; n];
    let mut has_child = vec![false; n];
    for i in 0..n {
        if let Some(p) = ix.parent[i] {
            has_child[p as usize] = true;
        }
        if ix.facts[i].jsonrpc_id.is_some() {
            rpc_below[i] = true;
            // An INTERNAL span with the request ID (OpenLLMetry's
            // `ResponseStreamWriter`) stands for its parent's call; a CLIENT
            // span with it is the call itself, and its parent is not.
            if let Some(p) = ix.parent[i].filter(|_| ix.spans[i].kind == SpanKind::Internal) {
                rpc_below[p as usize] = true;
            }
        }
    }
    // What ties a call to a root besides time: the call names the root's
    // service (`peer.service`), its address is the root's, or both name the
    // RPC service.
    let call_tie = |p: Ix, r: Ix| -> Option<&'static str> {
        let (pf, f) = (&ix.facts[p as usize], &ix.facts[r as usize]);
        if ix.texts.opt(pf.peer_service).is_some() {
            Some("peer.service")
        } else if matches!((pf.address, f.address), (Some(a), Some(b)) if a.matches(b)) {
            Some("server address")
        } else if pf.rpc_service.is_some() && f.rpc_service.is_some() {
            Some("rpc.service")
        } else {
            None
        }
    };
    let is_free_client = |i: Ix| {
        let i = i as usize;
        // A tool span with nothing under it (the call's work happened, or
        // went unrecorded, elsewhere) is a call out as far as time can tell.
        let tool = ix.facts[i].category() == Category::Tool
            && !matches!(ix.spans[i].kind, SpanKind::Server | SpanKind::Consumer);
        // Any span over a JSON-RPC request ID is an MCP call out (OpenLLMetry's
        // `initialize.mcp`, `{tool}.tool`).
        // OpenLLMetry names its MCP request spans `{method}.mcp`.
        let mcp_named = ix.spans[i].name.ends_with(".mcp") && ix.spans[i].scope.name.contains("mcp");
        let rpc_call =
            (rpc_below[i] || mcp_named) && !matches!(ix.spans[i].kind, SpanKind::Server | SpanKind::Consumer);
        let outbound = ix.spans[i].kind == SpanKind::Client || rpc_call || (tool && !has_child[i]);
        !claimed[i] && outbound && !server_child[i] && ix.facts[i].category() != Category::Llm
    };
    // A producer whose message no consumer-side span carries.
    let is_free_producer = |i: Ix| {
        let (s, f) = (ix.spans[i as usize], &ix.facts[i as usize]);
        !claimed[i as usize]
            && !linked_in[i as usize]
            && s.kind == SpanKind::Producer
            && !consumer_child[i as usize]
            && !producer_child[i as usize]
            && f.message_id.is_none_or(|m| !consumed[m.index()])
    };

    // Why a lost-context root has no parent to propose, per root.
    let mut lost_unjoined: Vec<Option<String>> = vec![None; roots.len()];
    let mut no_evidence_mid_session = vec![false; roots.len()];
    for (k, &r) in roots.iter().enumerate() {
        if proposals[k].is_some() || deliberate[k] {
            continue;
        }
        let (s, f) = (ix.spans[r as usize], &ix.facts[r as usize]);
        let t = ix.trace_of[r as usize];
        let session = ix.session_of(r);
        let (start, end) = (ix.start(r), ix.end(r));
        let new_work = is_new_work(r);
        let service = ix.service[r as usize];

        if !new_work && !active[k].is_empty() && !is_entry_point(r) {
            let (_, strong) = &ix.instances[ix.instance_of[r as usize] as usize];
            // What ran in the instance, by trace: in-process work only, since
            // outbound and model calls run elsewhere; a trace of another
            // session is ruled out when both sides still carry their session.
            let mut traces: Vec<(u32, Vec<Ix>)> = Vec::new();
            let mut other_session = false;
            for &p in &active[k] {
                let (ps, pf) = (ix.spans[p as usize], &ix.facts[p as usize]);
                if matches!(ps.kind, SpanKind::Client | SpanKind::Producer) || pf.category() == Category::Llm {
                    continue;
                }
                if !sessions_fit(p, r) {
                    other_session = true;
                    continue;
                }
                let pt = top(p);
                if pt == r {
                    continue;
                }
                match traces.iter_mut().find(|(t, _)| *t == pt) {
                    Some((_, list)) => list.push(p),
                    None => traces.push((pt, vec![p])),
                }
            }
            // Work that is itself cut off from its caller is no parent to
            // weigh against requests that are whole: drop it unless it is
            // all there is.
            let is_orphan_group = |top: Ix| {
                let tt = ix.trace_of[top as usize] as usize;
                suspect_trace[tt] && !settled_trace[tt]
            };
            // A conversation ID the orphan's trace shares with one request
            // narrows the field (a per-run ID that matches nothing rules
            // nothing out).
            let mut narrowed = None;
            if traces.len() > 1
                && let Some(conv) = conversation_of(ix, r)
            {
                let sharing: Vec<(u32, Vec<Ix>)> = traces
                    .iter()
                    .filter(|(_, list)| list.iter().any(|&p| trace_has_session(ix, p, conv)))
                    .cloned()
                    .collect();
                if !sharing.is_empty() {
                    traces = sharing;
                    narrowed = Some(conv);
                }
            }
            let whole: Vec<(u32, Vec<Ix>)> = traces.iter().filter(|(t, _)| !is_orphan_group(*t)).cloned().collect();
            let only_orphans = whole.is_empty() && !traces.is_empty();
            if !whole.is_empty() {
                traces = whole;
            }
            if traces.is_empty() {
                let first = active[k][0];
                lost_unjoined[k] = Some(format!(
                    "{} of its service instance was running when it started, but {}",
                    describe(ix, first),
                    if other_session { "in another session" } else { "no in-process work was" }
                ));
                continue;
            }
            // Per trace, the fork point of what was running: the orphan's
            // caller is on that road whichever branch started it.
            let mut candidates: Vec<Ix> = Vec::new();
            let mut ended_early = Vec::new();
            // One instance named by the resource is one process, so one
            // clock: a step that waits for its job ends after it as read, and
            // one that ended first (inside the skew allowance) did not wait
            // for it. The candidate is then its nearest ancestor that did, and
            // whether that one was busy with other work is asked of it.
            let on_one_clock = |a: Ix| {
                if !*strong {
                    return a;
                }
                let (mut x, mut steps) = (a, 0usize);
                while ix.end(x) < end {
                    match up[x as usize] {
                        Some(p) if steps <= n => (x, steps) = (p, steps + 1),
                        _ => return a,
                    }
                }
                x
            };
            for (_, list) in &traces {
                let enclosing: Vec<Ix> = list.iter().copied().filter(|&p| ix.end(p) + skew >= end).collect();
                match common_ancestor(ix, &up, if enclosing.is_empty() { list } else { &enclosing }) {
                    Some(a) if !enclosing.is_empty() => candidates.push(on_one_clock(a)),
                    Some(a) => ended_early.push(a),
                    None => {}
                }
            }
            let mut why = vec![format!(
                "running in the same service instance ({}) when it started",
                if *strong { "named by the resource" } else { "only the service name: replicas cannot be told apart" }
            )];
            if session.is_some() && traces.iter().all(|(_, l)| ix.session_of(l[0]) == session) {
                why.push(format!("same session {}", ix.sessions[session.unwrap_or(0) as usize]));
            }
            if other_session {
                why.push("work of other sessions ruled out".to_owned());
            }
            let mut hold = None;
            if traces.len() > 1 {
                // Several requests were at work: the one that encloses it
                // need not be the one that started it (work that outlives its
                // caller), so nothing here is more than a suggestion.
                hold =
                    Some(format!("ambiguous: {} requests were at work in the instance when it started", traces.len()));
            } else if candidates.is_empty() {
                hold = Some("the running span ended before it: work that outlived its caller".to_owned());
            }
            let candidates = if candidates.is_empty() { ended_early } else { candidates };
            let Some(&chosen) = candidates.first() else { continue };
            // Work handed to a pool is started by a step that then waits for
            // it; a parent that was busy with other work of its own when the
            // orphan started may only have happened to be running.
            let busy_with =
                child_list(ix, chosen).into_iter().find(|&c| ix.start(c) < start && ix.end(c) > start && top(c) != r);
            let busy = busy_with.is_some() && hold.is_none();
            if let (Some(c), true) = (busy_with, busy) {
                hold = Some(format!(
                    "its candidate was busy with `{}` when it started: the orphan may be other work of the instance",
                    ix.spans[c as usize].name
                ));
            }
            if hold.is_none() && only_orphans {
                hold = Some("its only candidates are themselves orphans".to_owned());
            }
            // A concurrent span of the same name and service as the chosen
            // parent is an equal candidate: two calls of the same function
            // at work, and nothing tells which one started it.
            let chosen_top = top(chosen);
            let rival = active[k].iter().any(|&q| {
                top(q) != chosen_top
                    && sessions_fit(q, r)
                    && narrowed.is_none_or(|conv| trace_has_session(ix, q, conv))
                    && (only_orphans || !is_orphan_group(top(q)))
                    && q != chosen
                    && ix.spans[q as usize].name == ix.spans[chosen as usize].name
                    && ix.service[q as usize] == ix.service[chosen as usize]
            });
            if rival && hold.is_none() {
                hold = Some(format!(
                    "ambiguous: a concurrent span of the same name (`{}`) fits as well",
                    ix.spans[chosen as usize].name
                ));
            }
            if candidates.len() == 1 && hold.is_none() {
                why.push("it encloses the orphan and no other request was at work there".to_owned());
            }
            proposals[k] = Some(Proposal {
                orphan: r,
                evidence: Evidence::SameInstance,
                detail: why.join("; "),
                candidates,
                base: if *strong { 0.85 } else { 0.6 },
                truncated: truncated_scan[k],
                hold,
                busy,
                quiet: false,
            });
            continue;
        }
        if f.category() == Category::Tool
            && let Some(tool) = f.tool_name
        {
            // A tool server's root inside a call of the same tool made by
            // another service (a gateway that forwards without `_meta`).
            let encloses = |p: Ix| encloses_shifted(ix, p, start, end, skew);
            let mut c: Vec<Ix> = (0..n as Ix)
                .filter(|&p| {
                    let pf = &ix.facts[p as usize];
                    pf.tool_name == Some(tool)
                        && pf.category() == Category::Tool
                        && ix.trace_of[p as usize] != t
                        && ix.service[p as usize] != service
                        && !claimed[p as usize]
                        && !server_child[p as usize]
                        && encloses(p)
                })
                .collect();
            let strict: Vec<Ix> = c.iter().copied().filter(|&p| ix.start(p) <= start && end <= ix.end(p)).collect();
            if !strict.is_empty() {
                c = strict;
            }
            let c = innermost_per_trace(ix, c);
            if !c.is_empty() {
                proposals[k] = Some(Proposal {
                    orphan: r,
                    evidence: Evidence::EnclosingToolCall,
                    detail: format!(
                        "a call of the same tool `{}` in another service, which reached no instrumented server, encloses it",
                        ix.texts.get(tool)
                    ),
                    candidates: c,
                    base: 0.8,
                    truncated: false,
                    hold: None,
                    busy: false,
                    quiet: false,
                });
                continue;
            }
        }
        if s.kind != SpanKind::Consumer {
            let mut c = Vec::new();
            let mut addressed_by = Vec::new();
            let line = client_line
                .get_or_insert_with(|| Timeline::new((0..n as Ix).filter(|&i| is_free_client(i)).map(item).collect()));
            // Calls in flight when it started: a server may outlive a client
            // that timed out, so an addressed call need not enclose it.
            let complete = line.visit(start + skew, start, |p| {
                let pf = &ix.facts[p as usize];
                let peer = ix.texts.opt(pf.peer_service);
                if ix.trace_of[p as usize] == t
                    || ix.service[p as usize] == service
                    || !compatible(peer, Some(service))
                    || !compatible(pf.rpc_service, f.rpc_service)
                    // Another call to the same server (a health probe, an
                    // admin request) is told apart by its method and path.
                    || !compatible(pf.http_method, f.http_method)
                    || !compatible(pf.http_path, f.http_path)
                    // ... and by the HTTP client library each side names
                    // (an admin script's call during the agent's call).
                    || !compatible(pf.http_client, f.http_client)
                    || !sessions_fit(p, r)
                {
                    return;
                }
                if matches!((pf.address, f.address), (Some(a), Some(b)) if !a.matches(b)) {
                    return;
                }
                let by = call_tie(p, r);
                // Without an address, only a shared session ties a call to
                // a server: a busy system has calls in flight everywhere. A
                // root that is no request by kind (INTERNAL work) inside a call
                // that reached no server is still named, as a suggestion, when
                // the call encloses it on the clock as read: with time the only
                // tie, no skew allowance.
                let same_session = session.is_some() && ix.session_of(p) == session;
                // (A 3 ms call inside a 120 ms turn of the same session is
                // no caller of it, however close their ends.)
                let encloses = encloses_shifted(ix, p, start, end, skew);
                let strictly = ix.start(p) <= start && ix.end(p) >= end;
                let fits = match (by, same_session) {
                    (Some(_), _) => true,
                    (None, true) => encloses,
                    (None, false) => !new_work && strictly,
                };
                if !fits {
                    return;
                }
                addressed_by.push(by);
                c.push(p);
            });
            let addressed = !addressed_by.is_empty() && addressed_by.iter().all(Option::is_some);
            let same_session = session.is_some() && c.iter().all(|&p| ix.session_of(p) == session);
            let c = narrow_by_conversation(ix, r, innermost_per_trace(ix, c));
            if !c.is_empty() {
                let base = match (s.kind, addressed, same_session) {
                    (SpanKind::Server, true, _) => 0.85,
                    (SpanKind::Server, false, _) | (_, true, _) => 0.7,
                    (_, false, true) => 0.6,
                    // Only time ties them: never applied.
                    (_, false, false) => 0.5,
                };
                let mut why =
                    vec!["a client call of another service that reached no instrumented server encloses it".to_owned()];
                match addressed_by.iter().flatten().next() {
                    Some(by) if addressed => why.push(format!("addressed to it by {by}")),
                    _ if same_session => why.push("not addressed: only the session ties them".to_owned()),
                    _ => why.push("not addressed and no session: only time ties them".to_owned()),
                }
                if let Some(sess) = session {
                    why.push(format!("same session {}", ix.sessions[sess as usize]));
                }
                proposals[k] = Some(Proposal {
                    orphan: r,
                    evidence: Evidence::EnclosingClient,
                    detail: why.join("; "),
                    candidates: c,
                    base,
                    truncated: !complete,
                    hold: None,
                    busy: false,
                    quiet: false,
                });
                continue;
            }
        }
        if s.kind != SpanKind::Server {
            let list = producer_list.get_or_insert_with(|| {
                let mut list: Vec<(u64, Ix)> =
                    (0..n as Ix).filter(|&i| is_free_producer(i)).map(|i| (ix.start(i), i)).collect();
                list.sort_unstable();
                list
            });
            // A message is consumed after it was sent: no skew allowance here,
            // or a producer that started just after the orphan fits it.
            let upto = list.partition_point(|(s, _)| *s <= start);
            let from = list.partition_point(|(s, _)| s + QUEUE_WINDOW < start);
            let dest = f.destination;
            // An AutoGen delivery `{type}.({key})-A` may come from a publish
            // to any topic whose source is that key (module docs).
            let autogen_key = dest
                .and_then(|d| crate::conventions::autogen_address_key(ix.texts.get(d)))
                .filter(|&(_, agent)| agent && s.kind == SpanKind::Consumer)
                .map(|(key, _)| key);
            let by_topic_key = |p: Ix| {
                let pd = ix.facts[p as usize].destination;
                autogen_key.is_some()
                    && pd != dest
                    && pd.and_then(|d| crate::conventions::autogen_address_key(ix.texts.get(d)))
                        == autogen_key.map(|k| (k, false))
            };
            let window = &list[from.max(upto.saturating_sub(PRODUCER_CAP))..upto];
            let c: Vec<Ix> = window
                .iter()
                .map(|(_, p)| *p)
                .filter(|&p| ix.trace_of[p as usize] != t)
                // Time alone cannot tie a consumer to a request that had
                // already ended (a cache hit that consumed nothing, and a cron
                // job after it, look alike).
                .filter(|&p| trace_end[ix.trace_of[p as usize] as usize] + skew >= start)
                .filter(|&p| compatible(dest, ix.facts[p as usize].destination) || by_topic_key(p))
                .filter(|&p| sessions_fit(p, r))
                // Without a session, only a root of another service can be
                // the far side of a queue.
                .filter(|&p| session.is_some() || ix.service[p as usize] != service)
                .collect();
            let c = narrow_by_conversation(ix, r, innermost_per_trace(ix, c));
            if !c.is_empty() {
                let topic_key = c.iter().any(|&p| by_topic_key(p));
                let same_dest =
                    !topic_key && dest.is_some() && c.iter().all(|p| ix.facts[*p as usize].destination.is_some());
                let mut why =
                    vec!["a producer whose message no instrumented consumer received started before it".to_owned()];
                if same_dest {
                    why.push("same destination".to_owned());
                }
                if let Some(key) = autogen_key.filter(|_| topic_key) {
                    why.push(format!(
                        "AutoGen: published to a topic whose source is the recipient's key {key}; which agent types \
                         subscribe to which topics is not recorded, so this is only suggested"
                    ));
                }
                if let Some(sess) = session {
                    why.push(format!("same session {}", ix.sessions[sess as usize]));
                }
                why.push("applied only if no other orphan fits that producer".to_owned());
                proposals[k] = Some(Proposal {
                    orphan: r,
                    evidence: Evidence::PrecedingProducer,
                    detail: why.join("; "),
                    candidates: c,
                    base: if topic_key {
                        0.6
                    } else if same_dest && s.kind == SpanKind::Consumer {
                        0.85
                    } else {
                        0.8
                    },
                    truncated: upto - from > PRODUCER_CAP,
                    hold: None,
                    busy: false,
                    quiet: false,
                });
                continue;
            }
        }
        if !new_work
            && let Some(sess) = session
            && !is_entry_point(r)
        {
            // No caller in evidence; still an orphan if it starts while
            // other work of its session is clearly under way.
            let sess = sess as usize;
            let mut busy = false;
            let line = session_lines[sess]
                .get_or_insert_with(|| Timeline::new(by_session.get(sess).iter().map(|&i| item(i)).collect()));
            line.visit(start.saturating_sub(skew), start + skew, |p| {
                busy |= ix.trace_of[p as usize] != t;
            });
            no_evidence_mid_session[k] = busy;
        }
    }

    // A call reaches one server. A root that started before the call did
    // fits it only by the skew allowance; when another orphan started inside
    // that call on the clock as read, that one is the call's server, and the
    // call is no candidate for the earlier root (a health probe just before
    // an agent's first call to the same address).
    let mut unskewed: std::collections::HashSet<Ix, FastHash> = Default::default();
    for p in proposals.iter().flatten().filter(|p| p.evidence == Evidence::EnclosingClient) {
        let start = ix.start(p.orphan);
        unskewed.extend(p.candidates.iter().copied().filter(|&c| ix.start(c) <= start));
    }
    for slot in proposals.iter_mut() {
        let Some(p) = slot.as_mut().filter(|p| p.evidence == Evidence::EnclosingClient) else { continue };
        let start = ix.start(p.orphan);
        p.candidates.retain(|&c| ix.start(c) <= start || !unskewed.contains(&c));
        if p.candidates.is_empty() {
            *slot = None;
        }
    }

    // A call reaches one server, and a message one consumer. A call or a
    // producer that only time ties to a root (not addressed to it, no
    // destination or session in common) is no evidence in a busy system,
    // where every long call encloses other services' work and every message
    // is followed by some:
    // - when it fits roots of several services, it names none of them (roots
    //   of one service may all be the work of the server it reached, each
    //   span of a handler that lost its context starting a trace of its own);
    // - an instance that starts more of its roots with nothing fitting them
    //   than with such a tie starts its work on its own (an agent loop, a
    //   script, a scheduled job): the tie is chance.
    let shares_session = |c: Ix, o: Ix| ix.session_of(o).is_some() && ix.session_of(c) == ix.session_of(o);
    let time_only = |p: &Proposal, c: Ix| match p.evidence {
        Evidence::EnclosingClient => call_tie(c, p.orphan).is_none() && !shares_session(c, p.orphan),
        Evidence::PrecedingProducer => {
            let o = p.orphan as usize;
            ix.spans[o].kind != SpanKind::Consumer && ix.facts[o].destination.is_none() && !shares_session(c, p.orphan)
        }
        _ => false,
    };
    let by_time = |p: &Proposal| p.candidates.iter().all(|&c| time_only(p, c));
    // Instance → (roots nothing fits, roots only time ties).
    let mut starts: HashMap<u32, (u32, u32), FastHash> = HashMap::default();
    for (k, &r) in roots.iter().enumerate() {
        if is_new_work(r) {
            continue;
        }
        let counts = starts.entry(ix.instance_of[r as usize]).or_default();
        match &proposals[k] {
            // (A root started on purpose, with a link or as an MCP
            // handshake, is started on the instance's own account too.)
            None => counts.0 += 1,
            Some(p) if by_time(p) => counts.1 += 1,
            Some(_) => {}
        }
    }
    let mut fitted: HashMap<Ix, Vec<&str>, FastHash> = HashMap::default();
    for p in proposals.iter().flatten() {
        for &c in p.candidates.iter().filter(|&&c| time_only(p, c)) {
            let services = fitted.entry(c).or_default();
            let service = ix.service[p.orphan as usize];
            if !services.contains(&service) {
                services.push(service);
            }
        }
    }
    for slot in proposals.iter_mut() {
        let Some(p) = slot.as_mut() else { continue };
        if by_time(p) && starts.get(&ix.instance_of[p.orphan as usize]).is_some_and(|&(alone, tied)| alone > tied) {
            *slot = None;
            continue;
        }
        let keep: Vec<Ix> = p
            .candidates
            .iter()
            .copied()
            .filter(|&c| !time_only(p, c) || fitted.get(&c).is_none_or(|services| services.len() < 2))
            .collect();
        if keep.is_empty() {
            *slot = None;
        } else if keep.len() < p.candidates.len() {
            // Fewer candidates, no more evidence: what is left is suggested.
            p.candidates = keep;
            p.hold.get_or_insert_with(|| {
                "ambiguous: another candidate fits roots of several services by time alone".to_owned()
            });
        }
    }

    // A step that handed a job to a pool waits for it. A later orphan that
    // fits the same step and starts while that job runs is a second job of
    // the step only if the step fans out: a map over a pool runs one
    // function several times, each job before it gets to work of its own.
    // So the later one may be other work of the instance when the earlier
    // job was already busy with a child of its own (the request's work was
    // in that child: the sent-children rule above, one level down through
    // the orphan that fits the step), or when it is of another name (nothing
    // says the step handed out more than one job).
    let mut by_parent: HashMap<Ix, Vec<usize>, FastHash> = HashMap::default();
    for (k, p) in proposals.iter().enumerate() {
        if let Some(p) = p
            && p.evidence == Evidence::SameInstance
            && p.candidates.len() == 1
        {
            by_parent.entry(p.candidates[0]).or_default().push(k);
        }
    }
    for (&step, list) in by_parent.iter_mut().filter(|(_, l)| l.len() > 1) {
        list.sort_unstable_by_key(|&k| (ix.start(roots[k]), roots[k]));
        for (at, &k) in list.iter().enumerate() {
            let r = roots[k];
            let start = ix.start(r);
            let name = ix.spans[r as usize].name.as_str();
            let why = list[..at].iter().rev().take(SCAN_CAP).find_map(|&j| {
                let o = roots[j];
                if ix.start(o) >= start || ix.end(o) <= start {
                    return None;
                }
                let (job, step) = (&ix.spans[o as usize].name, &ix.spans[step as usize].name);
                match child_list(ix, o).into_iter().find(|&c| ix.start(c) < start && ix.end(c) > start) {
                    Some(c) => Some(format!(
                        "its candidate was waiting for `{job}`, an orphan that fits it and was busy with `{}` when it started",
                        ix.spans[c as usize].name
                    )),
                    None if job.as_str() != name => Some(format!(
                        "`{step}` already had `{job}`, an orphan of another name that fits it, at work when it started: nothing says it handed out two jobs"
                    )),
                    None => None,
                }
            });
            if let Some(why) = why
                && let Some(p) = proposals[k].as_mut()
                && p.hold.is_none()
            {
                p.hold = Some(format!("{why}: the orphan may be other work of the instance"));
                p.busy = true;
            }
        }
    }
    // A root held because its candidate was busy with other work, whose name
    // its service records nowhere else in the input (no call of that code in
    // any request, no other run of it): nothing says it ever had a caller. A
    // job the instance schedules itself looks exactly so, so the suggestion
    // stands but no break is claimed.
    let mut name_count: HashMap<(&str, &str), u32, FastHash> = HashMap::default();
    let any_busy = proposals.iter().flatten().any(|p| p.busy);
    for i in (0..n).filter(|_| any_busy) {
        *name_count.entry((ix.service[i], ix.spans[i].name.as_str())).or_default() += 1;
    }
    for p in proposals.iter_mut().flatten() {
        let r = p.orphan as usize;
        if p.busy
            && ix.facts[r].category() != Category::Tool
            && name_count.get(&(ix.service[r], ix.spans[r].name.as_str())).copied() == Some(1)
        {
            p.quiet = true;
            if let Some(why) = p.hold.as_mut() {
                why.push_str("; its name occurs nowhere else in the input, so no break is claimed");
            }
        }
    }

    // One heuristic parent serves one orphan: a client call reaches one
    // server, a message one consumer. Contested parents are not applied.
    let mut heuristic_uses: HashMap<Ix, u32, FastHash> = HashMap::default();
    for p in proposals.iter().flatten() {
        if matches!(p.evidence, Evidence::EnclosingClient | Evidence::PrecedingProducer | Evidence::EnclosingToolCall)
            && p.candidates.len() == 1
        {
            *heuristic_uses.entry(p.candidates[0]).or_default() += 1;
        }
    }

    // Traces left out of this diagnosis (a live context cut at its bound):
    // a join by time alone that one of them could contest is only
    // suggested, and a root that one of them could show to be an entry
    // point of its service is not reported (see [`LeftOut`]).
    let left = (!left_out.is_empty()).then(|| left_out.view());
    let history_left_out = |r: Ix| left.as_ref().is_some_and(|l| l.has_service(ix.service[r as usize]));
    let rival_left_out = |r: Ix, evidence: Evidence| {
        let by_time = matches!(
            evidence,
            Evidence::EnclosingClient
                | Evidence::EnclosingToolCall
                | Evidence::PrecedingProducer
                | Evidence::SameInstance
                | Evidence::RequestIdInTime
        );
        // A producer is unconsumed only if no consumer of its message ran
        // after it, at any time since.
        let (from, to) = match evidence {
            Evidence::PrecedingProducer => (ix.start(r).saturating_sub(skew + QUEUE_WINDOW), u64::MAX),
            _ => (ix.start(r).saturating_sub(skew), ix.end(r).saturating_add(skew)),
        };
        by_time
            && left.as_ref().is_some_and(|l| {
                l.overlaps(from, to) || (evidence == Evidence::SameInstance && l.has_service(ix.service[r as usize]))
            })
    };

    let mut repairs = Vec::new();
    let mut findings = Vec::new();
    let mut applicable: Vec<(usize, Ix, Ix)> = Vec::new();
    for (k, p) in proposals.iter().enumerate() {
        let r = roots[k];
        let is_tool = ix.facts[r as usize].category() == Category::Tool;
        let Some(p) = p else {
            if deliberate[k] {
                continue;
            }
            let absent = lost_unjoined[k].is_some() || no_evidence_mid_session[k];
            if is_tool {
                findings.push(finding(ix, r, FindingKind::ToolRoot, None, tool_root_message(ix, r, None)));
            } else if absent && history_left_out(r) {
                // Broken only if its instance never starts it while idle,
                // which a left-out trace of its service may show it does.
            } else if let Some(why) = &lost_unjoined[k] {
                findings.push(finding(ix, r, FindingKind::LostContext, None, lost_unjoined_message(ix, r, why)));
            } else if no_evidence_mid_session[k] {
                findings.push(finding(ix, r, FindingKind::OrphanRoot, None, no_evidence_message(ix, r)));
            } else if ix.spans[r as usize].kind == SpanKind::Consumer
                && !ix.spans[r as usize].scope.name.is_empty()
                && propagating_scopes.contains(ix.spans[r as usize].scope.name.as_str())
            {
                findings.push(finding(ix, r, FindingKind::OrphanRoot, None, unlinked_consumer_message(ix, r)));
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
            } else if let Some(why) = &p.hold {
                Some(why.clone())
            } else if contested {
                Some("contested: another orphan fits the same parent".to_owned())
            } else if rival_left_out(r, p.evidence) {
                Some(format!(
                    "traces that ran beside it were left out of this diagnosis ({} of them): one may fit as well",
                    left_out.len()
                ))
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
        // The break itself rests on an absence for these two: an entry point
        // of the instance's own, or a consumer of the producer's message,
        // may be among the traces left out.
        let unsure = match p.evidence {
            Evidence::SameInstance => !is_tool && history_left_out(r),
            Evidence::PrecedingProducer => rival_left_out(r, p.evidence),
            _ => false,
        };
        if p.quiet || unsure {
            continue;
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

/// The language and instrumentation that emitted a span, for a fix that
/// names the user's own remedy.
struct Stack<'a> {
    language: &'a str,
    scope: &'a str,
}

fn stack<'a>(ix: &Index<'a>, i: Ix) -> Stack<'a> {
    let s = ix.spans[i as usize];
    Stack { language: s.resource.attributes.str("telemetry.sdk.language").unwrap_or(""), scope: s.scope.name.as_str() }
}

/// The remedy for a break at this kind of boundary, in the terms of the
/// stack on each side (`orphan` is the side that lost context, `caller` the
/// side that had it).
fn fix_for(evidence: Option<Evidence>, orphan: &Stack, caller: Option<&Stack>) -> String {
    let lang = orphan.language;
    let caller_scope = caller.map_or("", |c| c.scope);
    let celery = caller_scope.contains("celery") || orphan.scope.contains("celery");
    let fix = match evidence {
        Some(Evidence::MessageId | Evidence::PrecedingProducer) => match lang {
            "python" if celery => {
                "instrument the Celery worker too: `opentelemetry-instrumentation-celery`, with `CeleryInstrumentor().instrument()` in the worker's `worker_process_init` signal"
            }
            "python" => {
                "inject `traceparent` into the message headers when producing and extract it when consuming (the messaging library's `opentelemetry-instrumentation-*` package on both sides, or `opentelemetry.propagate.inject`/`extract`)"
            }
            "rust" => {
                "inject with agentrace's carriers (`agentrace::carrier`: envelope, NATS, AMQP, Kafka or Redis headers) when producing and extract when consuming"
            }
            _ => {
                "inject `traceparent` into the message headers or envelope when producing and extract it when consuming"
            }
        },
        Some(Evidence::McpRequest | Evidence::RequestIdInTime) => match lang {
            "python" => {
                "make the MCP server parent its spans on the request's `params._meta` context: the `mcp` 2.x package does it itself; on `mcp` 1.x instrument both sides (`opentelemetry-instrumentation-mcp` or `openinference-instrumentation-mcp`)"
            }
            "rust" => "use agentrace's rmcp integration (`agentrace::mcp`) on the client and the server",
            _ => {
                "carry `traceparent` in the request's `params._meta` (MCP SEP-414) on the client and parent the server span on it"
            }
        },
        Some(Evidence::ToolCallId) => {
            "pass `traceparent` along with the tool call (MCP `params._meta` or HTTP headers) and extract it where the tool runs"
        }
        Some(Evidence::EnclosingToolCall) => match lang {
            "python" => {
                "forward the tool call with the MCP SDK's client (which carries `params._meta`), or copy `traceparent` into the forwarded request's `_meta`"
            }
            _ => "carry `traceparent` in the forwarded request's `params._meta` (MCP SEP-414)",
        },
        Some(Evidence::EnclosingClient) => match lang {
            "python" => {
                "instrument the server so it extracts `traceparent` (`opentelemetry-instrumentation-fastapi`, `-aiohttp-server`, `-flask`, `-django`, or run it under `opentelemetry-instrument`)"
            }
            "rust" => {
                "extract the incoming headers in the server (`agentrace::carrier::http`, or `opentelemetry-http`'s `HeaderExtractor`) and parent the server span on them"
            }
            "nodejs" | "webjs" => {
                "register the HTTP instrumentation in the server (`@opentelemetry/instrumentation-http`)"
            }
            _ => "inject `traceparent` into the outgoing request's headers and extract it in the server",
        },
        Some(Evidence::SameInstance) => match lang {
            "python" => {
                "run the job in the caller's context: `opentelemetry-instrumentation-threading` for `ThreadPoolExecutor` and `threading.Thread`, `contextvars.copy_context().run(...)` for a callback, or `asyncio.to_thread`, which copies it"
            }
            "rust" => {
                "carry the context into the task: `FutureExt::with_current_context` on spawned futures (agentrace's `task` helpers), `Context::attach` in `spawn_blocking` and thread closures"
            }
            "nodejs" | "webjs" => {
                "keep the AsyncLocalStorage context manager registered and bind callbacks with `context.bind(context.active(), fn)`"
            }
            "java" => "wrap the executor with `Context.taskWrapping(executor)` (or let the Java agent instrument it)",
            "go" => "pass the request's `ctx` into the goroutine",
            "dotnet" => {
                "let `Activity.Current` flow: start the work with `Task.Run`, not a thread that suppresses ExecutionContext"
            }
            _ => {
                "carry the current context into the spawned task, thread-pool job or callback (attach it where the work starts)"
            }
        },
        Some(Evidence::Link) | None => "propagate `traceparent` (and `session.id` as baggage) across this hop",
    };
    fix.to_owned()
}

/// Attribute keys that never identify one hand-off: where and how a span
/// ran, not what it carried.
fn is_generic_key(key: &str) -> bool {
    const PREFIXES: [&str; 14] = [
        "http.",
        "url.",
        "server.",
        "client.",
        "network.",
        "net.",
        "code.",
        "thread.",
        "otel.",
        "service.",
        "telemetry.",
        "agentrace.",
        "user_agent.",
        "process.",
    ];
    const KEYS: [&str; 10] = [
        "session.id",
        "gen_ai.conversation.id",
        "gen_ai.system",
        "gen_ai.provider.name",
        "gen_ai.operation.name",
        "gen_ai.request.model",
        "messaging.system",
        "messaging.operation",
        "messaging.operation.type",
        "messaging.destination.name",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || KEYS.contains(&key)
}

/// For a join that several callers fit: what would make it exact. An
/// attribute whose value the orphan (or a child) shares with exactly one
/// candidate (or its parent) is named — `job.id` where the convention's key
/// is `messaging.message.id` — with the key to record it under; otherwise
/// the key this kind of hop is joined by.
fn key_hint(ix: &Index, p: &Proposal) -> String {
    let convention = match p.evidence {
        Evidence::MessageId | Evidence::PrecedingProducer => "`messaging.message.id`",
        Evidence::ToolCallId | Evidence::EnclosingToolCall => "`gen_ai.tool.call.id`",
        Evidence::McpRequest | Evidence::RequestIdInTime => "`mcp.session.id` with `jsonrpc.request.id`",
        Evidence::EnclosingClient | Evidence::SameInstance | Evidence::Link => "",
    };
    let sides = |i: Ix, down: bool| -> Vec<Ix> {
        let mut v = vec![i];
        if down {
            v.extend(child_list(ix, i));
        } else if let Some(parent) = ix.parent[i as usize] {
            v.push(parent);
        }
        v
    };
    let values = |spans: &[Ix]| -> Vec<(&str, String)> {
        let mut out = Vec::new();
        for &i in spans {
            for (key, value) in ix.spans[i as usize].attributes.iter() {
                // Content (a result, a prompt) and names repeat by chance
                // or by design; an identifier has no spaces and a digit.
                let lower = key.to_ascii_lowercase();
                let content = ["model", "name", "result", "output", "input", "content", "prompt", "message", "text"]
                    .iter()
                    .any(|w| lower.contains(w));
                if is_generic_key(key) || content {
                    continue;
                }
                let text = match value {
                    agentrace_model::Value::Str(s)
                        if (4..=128).contains(&s.len())
                            && !s.contains(char::is_whitespace)
                            && s.contains(|c: char| c.is_ascii_digit()) =>
                    {
                        s.clone()
                    }
                    agentrace_model::Value::Int(n) if n.unsigned_abs() >= 1000 => n.to_string(),
                    _ => continue,
                };
                out.push((key, text));
            }
        }
        out
    };
    if convention.is_empty() {
        // Calls and in-process jobs are joined by context, not by a key.
        return String::new();
    }
    let mine = values(&sides(p.orphan, true));
    let theirs: Vec<Vec<(&str, String)>> = p.candidates.iter().map(|&c| values(&sides(c, false))).collect();
    for (key, value) in &mine {
        let holders: Vec<usize> = (0..theirs.len()).filter(|&k| theirs[k].iter().any(|(_, v)| v == value)).collect();
        if let [only] = holders[..] {
            let their_key = theirs[only].iter().find(|(_, v)| v == value).map_or(*key, |(k, _)| *k);
            let under = convention;
            let same = if their_key == *key { format!("`{key}`") } else { format!("`{key}` / `{their_key}`") };
            return format!(
                "; {same} = {value:?} is on this span and on {} only: if it names this hand-off, record it as \
                 {under} on both sides and the doctor joins them exactly",
                describe(ix, p.candidates[only])
            );
        }
    }
    if p.evidence == Evidence::RequestIdInTime {
        "; JSON-RPC request IDs restart in every MCP session: record `mcp.session.id` on the client's and the \
         server's spans and the doctor joins them exactly"
            .to_owned()
    } else if p.evidence == Evidence::PrecedingProducer {
        format!("; to make this join exact, record one {convention} per message on both sides")
    } else {
        format!("; the same {convention} is on each of them: make it unique per hand-off")
    }
}

fn caller_phrase(ix: &Index, p: &Proposal) -> String {
    let count = p.candidates.len();
    let who = describe(ix, p.candidates[0]);
    let trace = ix.spans[p.candidates[0] as usize].trace_id;
    if count > 1 {
        format!("{count} possible callers fit ({}), so it was not repaired{}", p.detail, key_hint(ix, p))
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
        Evidence::McpRequest | Evidence::RequestIdInTime => "started a new trace: the MCP call dropped trace context",
        Evidence::ToolCallId => "started a new trace: the tool call dropped trace context",
        Evidence::EnclosingClient => "started a new trace: the call dropped trace context",
        Evidence::EnclosingToolCall => "started a new trace: the forwarded tool call dropped trace context",
        Evidence::Link => "started a new trace",
    };
    let caller = stack(ix, p.candidates[0]);
    format!(
        "{} {what}; {}; fix: {}",
        describe(ix, r),
        caller_phrase(ix, p),
        fix_for(Some(p.evidence), &stack(ix, r), Some(&caller))
    )
}

fn tool_root_message(ix: &Index, r: Ix, p: Option<&Proposal>) -> String {
    match p {
        Some(p) => format!(
            "tool span {} is a root: the tool layer lost context; {}; fix: {}",
            describe(ix, r),
            caller_phrase(ix, p),
            fix_for(Some(p.evidence), &stack(ix, r), Some(&stack(ix, p.candidates[0])))
        ),
        None => format!(
            "tool span {} is a root and nothing names its caller: the tool layer lost context; fix: {}",
            describe(ix, r),
            fix_for(Some(Evidence::ToolCallId), &stack(ix, r), None)
        ),
    }
}

fn no_evidence_message(ix: &Index, r: Ix) -> String {
    format!(
        "{} started a new trace in the middle of its session's work and no span names its caller, so it cannot be joined; fix: {}",
        describe(ix, r),
        fix_for(None, &stack(ix, r), None)
    )
}

fn unlinked_consumer_message(ix: &Index, r: Ix) -> String {
    let s = ix.spans[r as usize];
    format!(
        "{} received a message with no trace context, though its instrumentation (`{}`) links its other consumers to their producers: the producer side sent none, so no span names its caller; fix: {}",
        describe(ix, r),
        s.scope.name,
        fix_for(Some(Evidence::MessageId), &stack(ix, r), None)
    )
}

fn lost_unjoined_message(ix: &Index, r: Ix, why: &str) -> String {
    format!(
        "{} started a new trace while its own service instance was busy: in-process context was lost; {why}, so it was not joined; fix: {}",
        describe(ix, r),
        fix_for(Some(Evidence::SameInstance), &stack(ix, r), None)
    )
}

/// Of several MCP clients, those in the process that launched the server
/// (stdio), where the resources record process IDs; all of them otherwise.
fn same_process_pair(ix: &Index, server: Ix, candidates: Vec<Ix>) -> Vec<Ix> {
    let parent_pid = ix.spans[server as usize].resource.attributes.first_i64(&["process.parent_pid"]);
    let Some(ppid) = parent_pid else { return candidates };
    let pid = |c: Ix| ix.spans[c as usize].resource.attributes.first_i64(&["process.pid"]);
    let pair: Vec<Ix> = candidates.iter().copied().filter(|&c| pid(c) == Some(ppid)).collect();
    if pair.is_empty() { candidates } else { pair }
}
