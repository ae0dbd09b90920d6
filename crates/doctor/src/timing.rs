//! Where the time went: timing gaps and the critical path.
//!
//! Fifth stop on the road, reading the connected [`Tree`]. Gaps first: time
//! inside a span with children that no child covers, and queue waits, above
//! the configured thresholds, become `timing_gap` findings. Then the
//! critical path of each request, as Jaeger's UI defines it — from the
//! root's end backwards, always into the last-finishing child that ends
//! before the current point — with one change: a span's extent reaches the
//! end of the work it caused, so an asynchronous consumer that outlives its
//! producer stays on the path instead of being cut off. Self time on the
//! path is grouped by category and agent; the stretch a `timing_gap`
//! covers counts as `unexplained`.

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
    for &root in &tree.roots {
        let mut sum = 0u64;
        critical_path(tree, root, config.skew(), |node, from, to| {
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

/// Walks the critical path of one request; `section(node, from, to)` gets
/// each stretch of self time on it.
///
/// A child that ends after the current point by no more than `skew` is
/// taken as ending at it: with clocks tens of milliseconds apart, a consumer
/// that "ends" just after the step it fed must not fall off the path.
pub(crate) fn critical_path(tree: &Tree, root: u32, skew: u64, mut section: impl FnMut(u32, u64, u64)) {
    struct Frame {
        node: u32,
        cursor: u64,
        kids: Vec<u32>,
        next: usize,
    }
    let mut scratch: Vec<Vec<u32>> = Vec::new();
    let frame = |node: u32, cursor: u64, spare: &mut Vec<Vec<u32>>| {
        // Reuse the lists of finished frames: one allocation per depth, not per span.
        let mut kids = spare.pop().unwrap_or_default();
        kids.clear();
        kids.extend_from_slice(tree.children(node));
        // Last-finishing first; ties go to the later start, then the ID order.
        kids.sort_unstable_by(|a, b| {
            let (a, b) = (*a as usize, *b as usize);
            tree.reach[b].cmp(&tree.reach[a]).then(tree.start[b].cmp(&tree.start[a])).then(a.cmp(&b))
        });
        Frame { node, cursor, kids, next: 0 }
    };
    let mut stack = vec![frame(root, tree.reach[root as usize], &mut scratch)];
    while let Some(top) = stack.last_mut() {
        let node = top.node;
        let mut descend = None;
        while top.next < top.kids.len() {
            let c = top.kids[top.next];
            top.next += 1;
            let (c_start, reach) = (tree.clamped_start[c as usize], tree.reach[c as usize]);
            let c_end = reach.min(top.cursor);
            if reach <= top.cursor.saturating_add(skew) && c_end > c_start {
                section(node, c_end, top.cursor);
                top.cursor = c_start;
                descend = Some((c, c_end));
                break;
            }
        }
        match descend {
            Some((c, c_end)) => {
                let next = frame(c, c_end, &mut scratch);
                stack.push(next);
            }
            None => {
                let from = tree.clamped_start[node as usize];
                section(node, from, top.cursor.max(from));
                if let Some(done) = stack.pop() {
                    scratch.push(done.kids);
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
