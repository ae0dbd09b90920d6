//! Where the time went: timing gaps and the critical path.
//!
//! Fifth stop on the road, reading the connected [`Tree`]. Gaps first: time
//! inside a span with children that no child covers, and queue waits, above
//! the configured thresholds, become `timing_gap` findings. Then the
//! critical path of each request, as Jaeger's UI defines it — from the
//! root's end backwards, always into the last-finishing child that ends
//! before the current point — with one change: a span's extent reaches the
//! end of the work it caused, so an asynchronous consumer that outlives its
//! producer stays on the path instead of being cut off. And one more: a
//! span that only waits for work done on the other side of an
//! asynchronous hand-off (`wait result` beside `send task`, a `join` beside
//! a `spawn`) gives the time it overlaps that work to the work, so the path
//! names the agent and the call that held the request up ([`PathTree`]).
//! Self time on the path is grouped by category and agent; the stretch a
//! `timing_gap` covers counts as `unexplained`.

use std::collections::BTreeMap;

use crate::assemble::Index;
use crate::config::Config;
use crate::connect::Tree;
use crate::conventions::Category;
use crate::diagnosis::{Finding, FindingKind, TimeShare, ms, round};

pub(crate) struct Timing {
    pub findings: Vec<(u64, Finding)>,
    pub breakdown: Vec<TimeShare>,
    /// Critical-path nanoseconds per request root, in `tree.roots` order.
    pub per_root: Vec<u64>,
    pub total: u64,
    pub critical: Vec<bool>,
}

pub(crate) fn analyse(ix: &Index, tree: &Tree, config: &Config) -> Timing {
    let (findings, gaps) = find_gaps(ix, tree, config);
    // Nanoseconds by (agent, category), flat: sections are many, keys few.
    const CATEGORIES: [Category; 7] = [
        Category::Llm,
        Category::Tool,
        Category::Retrieval,
        Category::Handoff,
        Category::Agent,
        Category::Other,
        Category::Unexplained,
    ];
    let slot = |c: Category| CATEGORIES.iter().position(|x| *x == c).unwrap_or(0);
    let mut by_key = vec![0u64; tree.agents.len() * CATEGORIES.len()];
    let mut critical = vec![false; tree.len()];
    let mut per_root = Vec::with_capacity(tree.roots.len());
    let path = PathTree::build(ix, tree, config.skew());
    for &root in &tree.roots {
        let mut sum = 0u64;
        critical_path(tree, &path, root, config.skew(), |node, from, to| {
            let len = to.saturating_sub(from);
            if len == 0 {
                return;
            }
            critical[node as usize] = true;
            sum += len;
            let agent = tree.agent[node as usize];
            let category = tree.category(ix, node).for_time();
            let unexplained = match gaps.get(&node) {
                Some(&(gs, ge)) => to.min(ge).saturating_sub(from.max(gs)),
                None => 0,
            };
            let base = agent as usize * CATEGORIES.len();
            by_key[base + slot(Category::Unexplained)] += unexplained;
            by_key[base + slot(category)] += len - unexplained;
        });
        per_root.push(sum);
    }
    let total: u64 = per_root.iter().sum();
    let mut breakdown: Vec<TimeShare> = by_key
        .into_iter()
        .enumerate()
        .filter(|(_, v)| *v > 0)
        .map(|(k, nanos)| TimeShare {
            category: CATEGORIES[k % CATEGORIES.len()],
            agent: tree.agents[k / CATEGORIES.len()].clone(),
            ms: ms(nanos),
            share: if total == 0 { 0.0 } else { round(nanos as f64 / total as f64, 4) },
        })
        .collect();
    breakdown.sort_by(|a, b| {
        b.ms.total_cmp(&a.ms).then_with(|| a.category.cmp(&b.category)).then_with(|| a.agent.cmp(&b.agent))
    });
    Timing { findings, breakdown, per_root, total, critical }
}

/// The tree the critical path walks: the connected tree, with work done on
/// the far side of an asynchronous hand-off moved under the span that
/// waited for it.
///
/// A queue hop hangs its consumer under the producer span, which ended
/// when the message was sent; the span that then waits for the result
/// (`wait result`, a sibling of `send task`) has no child at all, so a
/// walk of the connected tree credits the wait with the consumer's work.
/// Here such work — a node that starts after its parent's end, or about
/// then (within the clock skew) and clearly outlives it — becomes a child
/// of the span that waited for it: a span of agent logic or unrecognised
/// work of the agent that handed the work off (never a messaging span, nor
/// an LLM, tool or retrieval call, which do work of their own, nor another
/// agent's span) beside the hand-off — under one of its
/// ancestors, not on its line — that started once the work was handed off
/// and spent at least half its time while the work ran; of these, the one
/// that overlaps the work most (then the nearest, the deepest). The
/// message's queue transit goes with its consumer.
pub(crate) struct PathTree {
    /// Moved nodes by their new parent, sorted.
    moved_in: Vec<(u32, u32)>,
    moved: Vec<bool>,
    /// Subtree reach in this tree.
    reach: Vec<u64>,
    /// Reach without the work moved in anywhere below.
    own_reach: Vec<u64>,
    /// The node is moved work, or inside it.
    borrowed: Vec<bool>,
    /// Moved work hangs somewhere below the node.
    holds: Vec<bool>,
}

/// Visits the waiter search may spend per hand-off: past it, the work
/// stays where the connected tree put it.
const SEARCH_BUDGET: usize = 4096;

impl PathTree {
    pub(crate) fn build(ix: &Index, tree: &Tree, skew: u64) -> PathTree {
        let n = tree.len();
        let mut moved_in: Vec<(u32, u32)> = Vec::new();
        let mut new_parent: Vec<Option<u32>> = vec![None; n];
        // Queue transits follow their consumer (below).
        for c in 0..tree.real as u32 {
            let Some(p) = tree.parent[c as usize] else { continue };
            let (c_start, c_reach, p_end) = (tree.start[c as usize], tree.reach[c as usize], tree.end[p as usize]);
            // Work that began once its parent was over (a consumer, a
            // queue transit), or about then and clearly outlived it (a
            // spawned task): a client waiting for its server is neither.
            let detached = (c_start >= p_end && c_reach > p_end)
                || (c_start.saturating_add(skew) >= p_end && c_reach > p_end.saturating_add(skew));
            if !detached {
                continue;
            }
            let Some(w) = waiter(ix, tree, c, p, skew) else { continue };
            // Moves never make a cycle: the waiter is outside the work, and
            // is not below work moved earlier into this node's subtree.
            let mut x = Some(w);
            let mut cycle = false;
            while let Some(v) = x {
                if v == c {
                    cycle = true;
                    break;
                }
                x = new_parent[v as usize].or(tree.parent[v as usize]);
            }
            if !cycle {
                new_parent[c as usize] = Some(w);
                moved_in.push((w, c));
            }
        }
        // A message's wait in the queue goes with its consumer, where the
        // waiter waited through it.
        for (k, t) in tree.transits.iter().enumerate() {
            let node = (tree.real + k) as u32;
            if let Some(w) = new_parent[t.consumer as usize]
                && tree.start[node as usize] < tree.end[w as usize]
                && tree.end[node as usize] > tree.start[w as usize]
            {
                new_parent[node as usize] = Some(w);
                moved_in.push((w, node));
            }
        }
        moved_in.sort_unstable();
        let moved: Vec<bool> = new_parent.iter().map(Option::is_some).collect();
        let mut path = PathTree {
            moved_in,
            moved,
            reach: tree.reach.clone(),
            own_reach: tree.reach.clone(),
            borrowed: vec![false; n],
            holds: vec![false; n],
        };
        if path.moved_in.is_empty() {
            return path;
        }
        // Depth-first order of the new tree, parents before children.
        let mut order = Vec::with_capacity(n);
        let mut stack: Vec<u32> = tree.roots.iter().rev().copied().collect();
        while let Some(node) = stack.pop() {
            order.push(node);
            stack.extend(path.kids(tree, node));
        }
        for &node in &order {
            let p = new_parent[node as usize].or(tree.parent[node as usize]);
            path.borrowed[node as usize] = path.moved[node as usize] || p.is_some_and(|p| path.borrowed[p as usize]);
        }
        path.reach.copy_from_slice(&tree.end);
        path.own_reach.copy_from_slice(&tree.end);
        for &node in order.iter().rev() {
            let Some(p) = new_parent[node as usize].or(tree.parent[node as usize]) else { continue };
            let (p, c) = (p as usize, node as usize);
            path.reach[p] = path.reach[p].max(path.reach[c]);
            if path.moved[c] {
                path.holds[p] = true;
            } else {
                path.own_reach[p] = path.own_reach[p].max(path.own_reach[c]);
                path.holds[p] |= path.holds[c];
            }
        }
        path
    }

    /// The node's children in this tree, in no particular order.
    fn kids<'a>(&'a self, tree: &'a Tree, node: u32) -> impl Iterator<Item = u32> + 'a {
        let from = self.moved_in.partition_point(|&(w, _)| w < node);
        let moved_here = self.moved_in[from..].iter().take_while(move |&&(w, _)| w == node).map(|&(_, c)| c);
        tree.children(node).iter().copied().filter(|&c| !self.moved[c as usize]).chain(moved_here)
    }

    /// Whether any work was moved (for tests).
    #[cfg(test)]
    fn moves(&self) -> usize {
        self.moved_in.len()
    }
}

/// The span that waited for the work `c`, which its parent `p` handed off
/// and which outlived it: see [`PathTree`].
fn waiter(ix: &Index, tree: &Tree, c: u32, p: u32, skew: u64) -> Option<u32> {
    let (lo, hi) = (tree.start[c as usize], tree.reach[c as usize]);
    let after = tree.end[p as usize].saturating_sub(skew);
    let mut visits = 0usize;
    let mut below = p;
    let mut level = 0u32;
    let mut stack = Vec::new();
    // Best so far: the most overlap, then the nearest level, the deepest
    // span, the lowest index.
    type Key = (u64, std::cmp::Reverse<u32>, u32, std::cmp::Reverse<u32>);
    let mut best: Option<Key> = None;
    while let Some(a) = tree.parent[below as usize] {
        stack.clear();
        stack.extend(tree.children(a).iter().copied().filter(|&s| s != below));
        while let Some(x) = stack.pop() {
            visits += 1;
            if visits > SEARCH_BUDGET {
                return None;
            }
            let (xs, xe, xr) = (tree.start[x as usize], tree.end[x as usize], tree.reach[x as usize]);
            if xs >= hi || xr <= lo {
                continue;
            }
            stack.extend_from_slice(tree.children(x));
            // Agent logic or unrecognised work (a `wait`, an `await`, a
            // join): messaging spans send and receive, model, tool and
            // retrieval calls do work of their own.
            // It is the hand-off's own agent that waits: another agent
            // beside it does work of its own.
            let waits = tree.is_real(x)
                && tree.agent[x as usize] == tree.agent[p as usize]
                && matches!(tree.category(ix, x), Category::Agent | Category::Other);
            // It began once the work was handed off, and spent at least
            // half of its time while the work ran.
            let overlap = xe.min(hi).saturating_sub(xs.max(lo));
            if waits && xs >= after && overlap > 0 && overlap.saturating_mul(2) >= xe - xs {
                let key = (overlap, std::cmp::Reverse(level), tree.depth[x as usize], std::cmp::Reverse(x));
                if best.is_none_or(|b| key > b) {
                    best = Some(key);
                }
            }
        }
        below = a;
        level += 1;
    }
    best.map(|(_, _, _, std::cmp::Reverse(w))| w)
}

/// Walks the critical path of one request; `section(node, from, to)` gets
/// each stretch of self time on it.
///
/// A child that ends after the current point by no more than `skew` is
/// taken as ending at it: with clocks tens of milliseconds apart, a consumer
/// that "ends" just after the step it fed must not fall off the path.
///
/// Work moved under a waiter ([`PathTree`]) takes the waiter's time where
/// they overlap: a span that holds such work is entered when its own work
/// has ended by the current point, and inside it the walk cuts into the
/// moved work that is running at that point (the waiter's time overlapping
/// it is the work's), rather than passing over it as a parallel branch. A
/// stretch of moved work from before the waiter started is walked there
/// too, and the walk goes on from where it ended.
pub(crate) fn critical_path(
    tree: &Tree,
    path: &PathTree,
    root: u32,
    skew: u64,
    mut section: impl FnMut(u32, u64, u64),
) {
    struct Frame {
        node: u32,
        cursor: u64,
        kids: Vec<u32>,
        next: usize,
        /// Entered at a point inside moved work: running moved work counts.
        cut: bool,
    }
    let reach = &path.reach;
    let mut scratch: Vec<Vec<u32>> = Vec::new();
    let frame = |node: u32, cursor: u64, cut: bool, spare: &mut Vec<Vec<u32>>| {
        // Reuse the lists of finished frames: one allocation per depth, not per span.
        let mut kids = spare.pop().unwrap_or_default();
        kids.clear();
        kids.extend(path.kids(tree, node));
        // Last-finishing first; ties go to the later start, then the ID order.
        kids.sort_unstable_by(|a, b| {
            let (a, b) = (*a as usize, *b as usize);
            reach[b].cmp(&reach[a]).then(tree.start[b].cmp(&tree.start[a])).then(a.cmp(&b))
        });
        Frame { node, cursor, kids, next: 0, cut }
    };
    let mut stack = vec![frame(root, reach[root as usize], false, &mut scratch)];
    while let Some(top) = stack.last_mut() {
        let node = top.node;
        let mut descend = None;
        while top.next < top.kids.len() {
            let c = top.kids[top.next];
            top.next += 1;
            let (c_start, c_reach) = (tree.clamped_start[c as usize], reach[c as usize]);
            let c_end = c_reach.min(top.cursor);
            let done = path.own_reach[c as usize] <= top.cursor.saturating_add(skew);
            let running = top.cut && (path.borrowed[c as usize] || path.holds[c as usize]);
            if (done || running) && c_end > c_start {
                let cut = c_reach > top.cursor.saturating_add(skew);
                section(node, c_end, top.cursor);
                top.cursor = c_start;
                descend = Some((c, c_end, cut));
                break;
            }
        }
        match descend {
            Some((c, c_end, cut)) => {
                let next = frame(c, c_end, cut, &mut scratch);
                stack.push(next);
            }
            None => {
                let from = tree.clamped_start[node as usize];
                section(node, from, top.cursor.max(from));
                // Moved work may have started before this node did: the
                // walk goes on from where it got to.
                let reached = top.cursor.min(from);
                if let Some(done) = stack.pop() {
                    scratch.push(done.kids);
                }
                if let Some(parent) = stack.last_mut() {
                    parent.cursor = parent.cursor.min(reached);
                }
            }
        }
    }
}

/// Finds gaps inside spans with children, and long queue waits.
/// Returns the findings and, per span, the gap that the critical path
/// should count as unexplained.
/// Per span, the stretch of it that no child explains.
type Gaps = BTreeMap<u32, (u64, u64)>;

fn find_gaps(ix: &Index, tree: &Tree, config: &Config) -> (Vec<(u64, Finding)>, Gaps) {
    let mut findings = Vec::new();
    let mut gaps = BTreeMap::new();
    let min_gap = config.gap_min_ms.saturating_mul(1_000_000);
    for node in 0..tree.real as u32 {
        let (s, e) = (tree.start[node as usize], tree.end[node as usize]);
        // Children that start after the span ended are asynchronous (a
        // consumer after its producer): they explain nothing inside it, and
        // a span with only such children is a leaf as far as gaps go.
        let mut kids = tree.children(node).iter().copied().filter(|&c| tree.start[c as usize] < e).peekable();
        if kids.peek().is_none() {
            continue;
        }
        let mut cursor = s;
        let mut best = (0u64, s, s);
        for c in kids {
            let cs = tree.start[c as usize].clamp(s, e);
            if cs > cursor && cs - cursor > best.0 {
                best = (cs - cursor, cursor, cs);
            }
            cursor = cursor.max(tree.reach[c as usize].min(e));
        }
        if e > cursor && e - cursor > best.0 {
            best = (e - cursor, cursor, e);
        }
        let (gap, gs, ge) = best;
        let duration = e - s;
        if gap >= min_gap.max(1) && gap as f64 >= config.gap_min_share * duration as f64 {
            gaps.insert(node, (gs, ge));
            let span = ix.spans[node as usize];
            let message = format!(
                "`{}` ({}) spent {:.0} ms ({:.0}% of it, from +{:.0} ms) with no child span at work: uninstrumented work, an opaque framework loop, or a call whose span was lost; fix: instrument that stretch (or check the orphans of this request)",
                span.name,
                span.service_name(),
                ms(gap),
                100.0 * gap as f64 / duration.max(1) as f64,
                ms(gs - s),
            );
            findings.push((gs, gap_finding(span, message)));
        }
    }
    let min_queue = config.queue_gap_min_ms.saturating_mul(1_000_000);
    for (k, t) in tree.transits.iter().enumerate() {
        let node = tree.real + k;
        let wait = tree.end[node] - tree.start[node];
        if wait >= min_queue.max(1) {
            let consumer = ix.spans[t.consumer as usize];
            let producer = ix.spans[t.producer as usize];
            let message = format!(
                "the message from `{}` ({}) waited {:.0} ms before `{}` ({}) started on it, and no span covers the wait; fix: check the queue's backlog and consumer capacity, or instrument the receive",
                producer.name,
                producer.service_name(),
                ms(wait),
                consumer.name,
                consumer.service_name()
            );
            findings.push((tree.start[node], gap_finding(consumer, message)));
        }
    }
    (findings, gaps)
}

fn gap_finding(span: &agentrace_model::Span, message: String) -> Finding {
    Finding::at(span, FindingKind::TimingGap, None, message)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agentrace_model::{Resource, Span, SpanId, SpanKind, TraceId, Value};

    use crate::diagnosis::{Diagnosis, TimeShare};
    use crate::{Category, Config, Doctor};

    const MS: u64 = 1_000_000;

    /// Builds spans of one or more traces, times in milliseconds.
    struct Spans(Vec<Span>);

    impl Spans {
        #[allow(clippy::too_many_arguments)]
        fn add(
            &mut self,
            trace: u8,
            id: u8,
            parent: Option<u8>,
            service: &str,
            name: &str,
            kind: SpanKind,
            (start, end): (u64, u64),
            attrs: &[(&str, Value)],
        ) -> &mut Self {
            let mut s = Span::new(
                TraceId::new([trace; 16]).expect("non-zero"),
                SpanId::new([id; 8]).expect("non-zero"),
                parent.map(|p| SpanId::new([p; 8]).expect("non-zero")),
                name,
            );
            s.kind = kind;
            s.start_unix_nano = 1_000_000_000_000 + start * MS;
            s.end_unix_nano = 1_000_000_000_000 + end * MS;
            s.resource = Arc::new(Resource::for_service(service));
            for (k, v) in attrs {
                s.attributes.set(*k, v.clone());
            }
            self.0.push(s);
            self
        }
    }

    fn agent(name: &str) -> Vec<(&'static str, Value)> {
        vec![("gen_ai.operation.name", "invoke_agent".into()), ("gen_ai.agent.name", name.into())]
    }

    fn chat() -> Vec<(&'static str, Value)> {
        vec![("gen_ai.operation.name", "chat".into()), ("gen_ai.request.model", "gpt-4o".into())]
    }

    fn message(id: &str) -> Vec<(&'static str, Value)> {
        vec![
            ("messaging.system", "rabbitmq".into()),
            ("messaging.destination.name", "tasks".into()),
            ("messaging.message.id", id.into()),
        ]
    }

    /// The orchestrator plans, sends a task to a queue, then waits for the
    /// result; the researcher takes the task 40 ms later and spends most of
    /// its time in one LLM call. `consumer_trace` is the researcher's trace
    /// (the orchestrator's, or a new one when context was lost) and
    /// `consumer_parent` its parent (`send task`, or none).
    fn queue_hop(consumer_trace: u8, consumer_parent: Option<u8>, research_end: u64, waiter: (&str, u64)) -> Spans {
        let mut s = Spans(Vec::new());
        let (waiter_name, waiter_end) = waiter;
        let waiter_attrs: Vec<(&str, Value)> = if waiter_name.starts_with("chat") { chat() } else { Vec::new() };
        s.add(1, 1, None, "orchestrator", "POST /run", SpanKind::Server, (0, 1000), &[])
            .add(
                1,
                2,
                Some(1),
                "orchestrator",
                "invoke_agent orchestrator",
                SpanKind::Internal,
                (5, 995),
                &agent("orchestrator"),
            )
            .add(1, 3, Some(2), "orchestrator", "chat gpt-4o", SpanKind::Client, (10, 100), &chat())
            .add(1, 4, Some(2), "orchestrator", "send task", SpanKind::Producer, (100, 110), &message("m-1"))
            .add(1, 5, Some(2), "orchestrator", waiter_name, SpanKind::Internal, (110, waiter_end), &waiter_attrs)
            .add(
                consumer_trace,
                6,
                consumer_parent,
                "worker",
                "process task",
                SpanKind::Consumer,
                (150, research_end),
                &message("m-1"),
            )
            .add(
                consumer_trace,
                7,
                Some(6),
                "worker",
                "invoke_agent researcher",
                SpanKind::Internal,
                (152, research_end - 2),
                &agent("researcher"),
            )
            .add(
                consumer_trace,
                8,
                Some(7),
                "worker",
                "chat gpt-4o",
                SpanKind::Client,
                (160, research_end - 10),
                &chat(),
            );
        s
    }

    fn share(d: &Diagnosis, agent: &str, category: Category) -> f64 {
        d.time_breakdown.iter().filter(|t| t.agent == agent && t.category == category).map(|t| t.ms).sum()
    }

    fn top(d: &Diagnosis) -> &TimeShare {
        d.time_breakdown.first().expect("a breakdown")
    }

    /// Every stretch of the request is counted once: the breakdown adds up
    /// to the critical path, which is the request's whole duration.
    fn counted_once(d: &Diagnosis) {
        let sum: f64 = d.time_breakdown.iter().map(|t| t.ms).sum();
        assert!((sum - d.critical_path_ms).abs() < 0.01, "{sum} vs {}", d.critical_path_ms);
        assert!((d.critical_path_ms - d.requests[0].duration_ms).abs() < 0.01, "{d:#?}");
    }

    fn critical(d: &Diagnosis, name: &str, service: &str) -> bool {
        d.requests[0].spans.iter().any(|s| &*s.name == name && &*s.service == service && s.critical)
    }

    #[test]
    fn a_wait_for_queued_work_is_credited_to_the_work_that_held_it_up() {
        let spans = queue_hop(1, Some(4), 950, ("wait result", 990));
        let d = Doctor::new(Config::default()).analyse(&spans.0);
        counted_once(&d);
        assert_eq!(d.requests.len(), 1);
        let t = top(&d);
        assert_eq!((t.agent.as_str(), t.category), ("researcher", Category::Llm), "{:#?}", d.time_breakdown);
        assert!((t.ms - 780.0).abs() < 0.01, "the researcher's call, 160..940 ms: {t:?}");
        // The queue wait (110..150) belongs to the hand-off, charged to the
        // consumer's side (its service: `process task` names no agent),
        // with the consumer span's own 4 ms.
        assert!((share(&d, "worker", Category::Handoff) - 44.0).abs() < 0.01, "{:#?}", d.time_breakdown);
        // The orchestrator keeps its own call, its send, and the 40 ms its
        // wait outlasted the work (plus 20 ms of its server and agent spans).
        assert!((share(&d, "orchestrator", Category::Llm) - 90.0).abs() < 0.01);
        assert!((share(&d, "orchestrator", Category::Handoff) - 10.0).abs() < 0.01);
        assert!((share(&d, "orchestrator", Category::Agent) - 60.0).abs() < 0.01, "{:#?}", d.time_breakdown);
        assert!(critical(&d, "chat gpt-4o", "worker"));
        assert!(critical(&d, "send task", "orchestrator"), "the send itself is on the path");
    }

    #[test]
    fn a_consumer_joined_by_repair_gives_the_same_answer() {
        // Context was lost at the queue: the consumer started a new trace,
        // and the connected view joins it by the message ID.
        let spans = queue_hop(2, None, 950, ("wait result", 990));
        let d = Doctor::new(Config::default()).analyse(&spans.0);
        assert!(d.repairs.iter().any(|r| r.applied), "{:#?}", d.repairs);
        counted_once(&d);
        let t = top(&d);
        assert_eq!((t.agent.as_str(), t.category), ("researcher", Category::Llm), "{:#?}", d.time_breakdown);
        assert!((t.ms - 780.0).abs() < 0.01);
    }

    #[test]
    fn time_with_no_work_running_stays_the_waiters() {
        // The research ends at 600 ms; the orchestrator waits on until 990.
        let spans = queue_hop(1, Some(4), 600, ("wait result", 990));
        let d = Doctor::new(Config::default()).analyse(&spans.0);
        counted_once(&d);
        assert!((share(&d, "researcher", Category::Llm) - 430.0).abs() < 0.01, "{:#?}", d.time_breakdown);
        // 600..990 of the wait, and 20 ms of the server and agent spans' own.
        let own = share(&d, "orchestrator", Category::Agent);
        assert!((own - 410.0).abs() < 0.01, "{own}: {:#?}", d.time_breakdown);
    }

    #[test]
    fn a_model_call_beside_queued_work_keeps_its_own_time() {
        // An LLM call after the send does work of its own: it waits for nothing.
        let spans = queue_hop(1, Some(4), 950, ("chat gpt-4o-mini", 990));
        let d = Doctor::new(Config::default()).analyse(&spans.0);
        counted_once(&d);
        let t = top(&d);
        assert_eq!((t.agent.as_str(), t.category), ("orchestrator", Category::Llm), "{:#?}", d.time_breakdown);
        assert!(share(&d, "researcher", Category::Llm) < 1.0);
    }

    #[test]
    fn a_wait_that_ends_before_the_work_credits_the_work_it_overlapped() {
        // The wait gives up at 500 ms (a timeout) and a summary call runs
        // 510..990 while the research goes on to 950: the summary is the
        // path's end, and before it the wait's time is the research's.
        let mut spans = queue_hop(1, Some(4), 950, ("wait result", 500));
        spans.add(1, 9, Some(2), "orchestrator", "chat gpt-4o", SpanKind::Client, (510, 990), &chat());
        let d = Doctor::new(Config::default()).analyse(&spans.0);
        counted_once(&d);
        assert!((share(&d, "orchestrator", Category::Llm) - (90.0 + 480.0)).abs() < 0.01, "{:#?}", d.time_breakdown);
        // 160..510 of the researcher's call ran while the orchestrator
        // waited (and, its last 10 ms, before it started the summary).
        assert!((share(&d, "researcher", Category::Llm) - 350.0).abs() < 0.01, "{:#?}", d.time_breakdown);
    }

    #[test]
    fn a_server_span_under_its_client_call_takes_the_calls_time() {
        // An HTTP call to another agent's service: the client span only
        // waits for the server, whose LLM call held the request up.
        let mut s = Spans(Vec::new());
        s.add(1, 1, None, "orchestrator", "POST /run", SpanKind::Server, (0, 1000), &[])
            .add(1, 2, Some(1), "orchestrator", "POST /research", SpanKind::Client, (10, 990), &[])
            .add(1, 3, Some(2), "research", "POST /research", SpanKind::Server, (20, 980), &[])
            .add(
                1,
                4,
                Some(3),
                "research",
                "invoke_agent researcher",
                SpanKind::Internal,
                (22, 978),
                &agent("researcher"),
            )
            .add(1, 5, Some(4), "research", "chat gpt-4o", SpanKind::Client, (30, 970), &chat());
        let d = Doctor::new(Config::default()).analyse(&s.0);
        counted_once(&d);
        let t = top(&d);
        assert_eq!((t.agent.as_str(), t.category), ("researcher", Category::Llm), "{:#?}", d.time_breakdown);
        assert!((t.ms - 940.0).abs() < 0.01);
    }

    #[test]
    fn a_spawned_task_outliving_its_spawner_is_credited_inside_the_wait() {
        // `spawn` starts a background task and returns; `join` waits for it.
        let mut s = Spans(Vec::new());
        s.add(1, 1, None, "app", "POST /run", SpanKind::Server, (0, 1000), &[])
            .add(1, 2, Some(1), "app", "spawn research", SpanKind::Internal, (10, 12), &[])
            .add(1, 3, Some(2), "app", "invoke_agent researcher", SpanKind::Internal, (11, 900), &agent("researcher"))
            .add(1, 4, Some(3), "app", "chat gpt-4o", SpanKind::Client, (20, 890), &chat())
            .add(1, 5, Some(1), "app", "join research", SpanKind::Internal, (15, 950), &[]);
        let d = Doctor::new(Config::default()).analyse(&s.0);
        counted_once(&d);
        let t = top(&d);
        assert_eq!((t.agent.as_str(), t.category), ("researcher", Category::Llm), "{:#?}", d.time_breakdown);
        assert!((t.ms - 870.0).abs() < 0.01);
    }

    #[test]
    fn a_tree_without_asynchronous_hand_offs_moves_nothing() {
        let mut s = Spans(Vec::new());
        s.add(1, 1, None, "app", "POST /run", SpanKind::Server, (0, 1000), &[])
            .add(1, 2, Some(1), "app", "chat gpt-4o", SpanKind::Client, (10, 400), &chat())
            .add(1, 3, Some(1), "app", "chat gpt-4o", SpanKind::Client, (300, 990), &chat());
        let refs: Vec<&Span> = s.0.iter().collect();
        let ix = crate::assemble::Index::build(&refs);
        let config = Config::default();
        let repaired = crate::repair::repair(&ix, &config, &crate::LeftOut::new());
        let tree = crate::connect::build(&ix, &repaired);
        assert_eq!(super::PathTree::build(&ix, &tree, config.skew()).moves(), 0);
    }
}
