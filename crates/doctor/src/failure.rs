//! What failed: the earliest causal error of each request.
//!
//! Sixth stop on the road, reading the connected [`Tree`]. An error (status
//! ERROR, an `exception` event, or `error.type`) is *causal* when nothing
//! below it failed: errors passed up the stack are consequences. Of a
//! request's causal errors the one that happened first (earliest end) is
//! the answer, with the chain from the request's root down to it. One rule
//! on top: a parse or validation error right after a tool call blames the
//! tool whose output could not be used, not the parser.

use crate::assemble::Index;
use crate::config::Config;
use crate::connect::Tree;
use crate::conventions::{BadOutput, Category};
use crate::diagnosis::{ChainLink, Failure, Retry};

pub(crate) struct Failures {
    /// One per failed request, in request order, with the time the error happened.
    pub per_request: Vec<(u64, Failure)>,
    /// Whether each node is a causal error.
    pub causal: Vec<bool>,
    /// Errors a later attempt recovered from.
    pub retries: Vec<Retry>,
}

pub(crate) fn analyse(ix: &Index, tree: &Tree, config: &Config) -> Failures {
    let len = tree.len();
    // A refused model call failed even when its span says OK.
    let is_error = |n: u32| tree.is_real(n) && (ix.facts[n as usize].error || ix.facts[n as usize].refused);
    let mut below = vec![false; len];
    let mut causal = vec![false; len];
    for &node in tree.order.iter().rev() {
        let n = node as usize;
        causal[n] = is_error(node) && !below[n];
        if let Some(p) = tree.parent[n] {
            below[p as usize] |= below[n] || is_error(node);
        }
    }
    // An error that a later attempt of the same step recovered from (a
    // sibling of the same name and service that succeeded) is a retry, not
    // what made the request fail.
    let mut retries = Vec::new();
    let mut recovered = vec![false; len];
    for &node in &tree.order {
        let n = node as usize;
        if !causal[n] || !tree.is_real(node) {
            continue;
        }
        let Some(p) = tree.parent[n] else { continue };
        let retry = tree.children(p).iter().copied().find(|&c| {
            c != node
                && tree.is_real(c)
                && tree.start[c as usize] >= tree.start[n]
                && ix.spans[c as usize].name == ix.spans[n].name
                && ix.service[c as usize] == ix.service[n]
                && !is_error(c)
                && !below[c as usize]
        });
        if let Some(r) = retry {
            recovered[n] = true;
            let facts = &ix.facts[n];
            retries.push(Retry {
                trace_id: ix.spans[n].trace_id,
                span_id: ix.spans[n].span_id,
                name: ix.spans[n].name.clone(),
                service: ix.service[n].to_owned(),
                category: facts.category(),
                error_type: ix.texts.opt(facts.error_type).map(str::to_owned),
                retried_by: ix.spans[r as usize].span_id,
                cost_ms: crate::diagnosis::ms(tree.start[r as usize].saturating_sub(tree.start[n])),
            });
        }
    }
    let mut first: Vec<Option<u32>> = vec![None; len];
    for &node in &tree.order {
        if !causal[node as usize] || recovered[node as usize] {
            continue;
        }
        let root = tree.root_of[node as usize] as usize;
        let key = |n: u32| (tree.end[n as usize], tree.start[n as usize], tree.span_id(ix, n));
        if first[root].is_none_or(|best| key(node) < key(best)) {
            first[root] = Some(node);
        }
    }
    // A framework step whose outbound call was recorded beside it rather
    // than under it (LangChain's OpenInference spans are not the current
    // context, so httpx parents its client span to the request's server
    // span): when the first error is that call's, and a retrieval or tool
    // step of the same service that encloses the call on the clock failed
    // too with nothing failing under it, the step is what failed.
    for &root in &tree.roots {
        let Some(e) = first[root as usize] else { continue };
        if let Some(step) = enclosing_step(ix, tree, &causal, &recovered, e) {
            first[root as usize] = Some(step);
        }
    }
    // A tool whose output could not be used fails the request even when no
    // span recorded an error: the first such output of a request with no
    // causal error is its failure.
    let mut unusable: Vec<Option<u32>> = vec![None; len];
    let answered = StructuredAnswers::of(ix, tree);
    for &node in &tree.order {
        if !tree.is_real(node) {
            continue;
        }
        let bad = match ix.facts[node as usize].bad_output {
            Some(BadOutput::Empty) => answered.before(ix, tree, node),
            bad => bad.is_some(),
        };
        if bad {
            let root = tree.root_of[node as usize] as usize;
            let key = |n: u32| (tree.end[n as usize], tree.start[n as usize], tree.span_id(ix, n));
            if unusable[root].is_none_or(|best| key(node) < key(best)) {
                unusable[root] = Some(node);
            }
        }
    }
    let mut per_request = Vec::new();
    for &root in &tree.roots {
        if let Some(e) = first[root as usize] {
            // A step tried again and again, failing each time (a rate limit
            // that exhausted its retries): the request gave up at the last
            // attempt, which is the one blamed, with the count.
            let attempts = failed_attempts(ix, tree, &causal, &recovered, e);
            let blamed = attempts.last().copied().unwrap_or(e);
            let mut failure = describe(ix, tree, blamed, config);
            if attempts.len() > 1 {
                failure.summary.push_str(&format!(" (attempt {n} of {n}: every attempt failed)", n = attempts.len()));
            }
            per_request.push((tree.end[blamed as usize], failure));
        } else if let Some(t) = unusable[root as usize] {
            per_request.push((tree.end[t as usize], describe_unusable(ix, tree, t)));
        }
    }
    Failures { per_request, causal, retries }
}

/// The attempts of the step that failed first at `e`: `e` and the siblings
/// after it of the same name and service that failed too, one after another
/// (each starting once the one before ended), none recovered by a later
/// success; in start order. `e` alone when it was not tried again. Steps of
/// no known kind (plain HTTP calls, all named `POST`) are not told apart by
/// name, so they are never attempts of each other.
fn failed_attempts(ix: &Index, tree: &Tree, causal: &[bool], recovered: &[bool], e: u32) -> Vec<u32> {
    let n = e as usize;
    let Some(parent) = tree.parent[n] else { return vec![e] };
    if tree.category(ix, e) == Category::Other {
        return vec![e];
    }
    let mut later: Vec<u32> = tree
        .children(parent)
        .iter()
        .copied()
        .filter(|&c| {
            c != e
                && tree.is_real(c)
                && ix.spans[c as usize].name == ix.spans[n].name
                && ix.service[c as usize] == ix.service[n]
                && tree.start[c as usize] >= tree.start[n]
        })
        .collect();
    later.sort_by_key(|&c| (tree.start[c as usize], c));
    let mut attempts = vec![e];
    for c in later {
        let previous = attempts[attempts.len() - 1];
        if !causal[c as usize] || recovered[c as usize] || tree.start[c as usize] < tree.end[previous as usize] {
            break;
        }
        attempts.push(c);
    }
    attempts
}

/// Where each tool answered with structured output first, per request,
/// service and tool: an empty answer after one is not what the tool gives.
struct StructuredAnswers<'a>(std::collections::HashMap<(u32, &'a str, &'a str), u64>);

impl<'a> StructuredAnswers<'a> {
    fn of(ix: &'a Index, tree: &Tree) -> Self {
        let mut first = std::collections::HashMap::new();
        for &m in &tree.order {
            if !tree.is_real(m) || !ix.facts[m as usize].structured_output {
                continue;
            }
            let end = first.entry(Self::key(ix, tree, m)).or_insert(u64::MAX);
            *end = (*end).min(tree.end[m as usize]);
        }
        StructuredAnswers(first)
    }

    fn key(ix: &'a Index, tree: &Tree, m: u32) -> (u32, &'a str, &'a str) {
        let m = m as usize;
        let tool = ix.texts.opt(ix.facts[m].tool_name).unwrap_or(ix.spans[m].name.as_str());
        (tree.root_of[m], ix.service[m], tool)
    }

    /// Whether the tool of `node` answered with structured output in its
    /// request before `node` started.
    fn before(&self, ix: &'a Index, tree: &Tree, node: u32) -> bool {
        self.0.get(&Self::key(ix, tree, node)).is_some_and(|&end| end <= tree.start[node as usize])
    }
}

/// The failed retrieval or tool step that made the call on the way to the
/// error `e`, where the call was recorded beside the step (see above): a
/// causal error of `e`'s request and of the calling service that is no
/// ancestor of the call and encloses it on the clock; the innermost such.
fn enclosing_step(ix: &Index, tree: &Tree, causal: &[bool], recovered: &[bool], e: u32) -> Option<u32> {
    let root = tree.root_of[e as usize];
    let mut node = e;
    for _ in 0..8 {
        let parent = tree.parent[node as usize]?;
        if tree.is_real(node) && ix.spans[node as usize].kind == agentrace_model::SpanKind::Client {
            let (start, end) = (tree.start[node as usize], tree.end[node as usize]);
            let service = ix.service[node as usize];
            let step = tree
                .order
                .iter()
                .copied()
                .filter(|&d| {
                    causal[d as usize]
                        && !recovered[d as usize]
                        && tree.is_real(d)
                        && tree.root_of[d as usize] == root
                        && ix.service[d as usize] == service
                        && matches!(tree.category(ix, d), Category::Retrieval | Category::Tool)
                        && tree.start[d as usize] <= start
                        && end <= tree.end[d as usize]
                })
                .min_by_key(|&d| (tree.end[d as usize] - tree.start[d as usize], d));
            if step.is_some() {
                return step;
            }
        }
        node = parent;
    }
    None
}

/// Finds the tool call whose output a failing parse step consumed: a tool
/// span under the failing span, else just before it among its siblings,
/// else just before its parent.
fn blamed_tool(ix: &Index, tree: &Tree, e: u32, config: &Config) -> Option<u32> {
    let is_tool = |n: u32| {
        tree.category(ix, n) == Category::Tool
            && tree.parent[n as usize].is_none_or(|p| tree.category(ix, p) != Category::Tool)
    };
    let latest = |candidates: &mut dyn Iterator<Item = u32>| {
        candidates.max_by_key(|&n| (tree.end[n as usize], tree.start[n as usize], n))
    };
    let skew = config.skew();
    let end_e = tree.end[e as usize];
    if let Some(t) =
        latest(&mut tree.children(e).iter().copied().filter(|&c| is_tool(c) && tree.end[c as usize] <= end_e))
    {
        return Some(t);
    }
    let mut current = e;
    for _ in 0..2 {
        let parent = tree.parent[current as usize]?;
        let start = tree.start[current as usize] + skew;
        let before = tree
            .children(parent)
            .iter()
            .copied()
            .filter(|&c| c != current && is_tool(c) && tree.end[c as usize] <= start);
        if let Some(t) = latest(&mut before.into_iter()) {
            return Some(t);
        }
        current = parent;
    }
    None
}

fn describe(ix: &Index, tree: &Tree, e: u32, config: &Config) -> Failure {
    let span = ix.spans[e as usize];
    let facts = &ix.facts[e as usize];
    let error_type = ix.texts.opt(facts.error_type).map(str::to_owned);
    let message = ix.texts.opt(facts.error_message).map(str::to_owned);
    let what = match (&error_type, &message) {
        (None, None) if facts.refused => "the model refused, or a content filter stopped it".to_owned(),
        // A message that only repeats the type (`JSONDecodeError: JSONDecodeError`), or
        // already starts with it, is said once.
        (Some(t), Some(m)) if m.trim() == t.as_str() || m.starts_with(&format!("{t}:")) => m.clone(),
        (Some(t), Some(m)) => format!("{t}: {m}"),
        (Some(t), None) => t.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => "error status without a message".to_owned(),
    };
    // An agent that failed right after starting a hand-off, with nothing
    // started after it (the OpenAI Agents SDK records the hand-off span as
    // OK and the error on the agent's span, and OpenInference leaves the
    // span named `handoff`, its target never set): the hand-off failed.
    if let Some(h) = unfinished_handoff(ix, tree, e) {
        let hs = ix.spans[h as usize];
        return Failure {
            category: Category::Handoff,
            trace_id: hs.trace_id,
            span_id: hs.span_id,
            summary: format!("hand-off `{}` from `{}` ({}) failed: {what}", hs.name, span.name, span.service_name()),
            name: hs.name.clone(),
            service: hs.service_name().to_owned(),
            error_type,
            message,
            surfaced_at: Some(span.span_id),
            chain: chain_to(ix, tree, h),
        };
    }
    let tool = if facts.is_parse_error(&ix.texts, &span.name) && facts.category() != Category::Tool {
        blamed_tool(ix, tree, e, config)
    } else {
        None
    };
    // An error that says the model refused (or a content filter stopped
    // it), raised by the step above the model call, blames that call: the
    // instrumentation of the call may not record refusals at all.
    let refusal = tool.is_none()
        && facts.category() != Category::Llm
        && [texts_of(ix, facts.error_type), texts_of(ix, facts.error_message)].iter().flatten().any(|t| {
            let t = t.to_ascii_lowercase();
            t.contains("refus")
                || t.contains("content_filter")
                || t.contains("content filter")
                || t.contains("contentfilter")
        });
    if refusal && let Some(m) = latest_llm_below(tree, ix, e) {
        let ms = ix.spans[m as usize];
        let summary = format!(
            "LLM call `{}` ({}) was refused or filtered, and `{}` ({}) failed on it: {what}",
            ms.name,
            ms.service_name(),
            span.name,
            span.service_name()
        );
        return Failure {
            category: Category::Llm,
            trace_id: ms.trace_id,
            span_id: ms.span_id,
            summary,
            name: ms.name.clone(),
            service: ms.service_name().to_owned(),
            error_type,
            message,
            surfaced_at: Some(span.span_id),
            chain: chain_to(ix, tree, m),
        };
    }
    let (blamed, category, summary) = match tool {
        Some(mut t) => {
            // Follow the call down to where the output was made (the MCP
            // server behind a client span), so the blame names that service.
            while let Some(&deeper) = tree
                .children(t)
                .iter()
                .filter(|&&c| tree.category(ix, c) == Category::Tool)
                .max_by_key(|&&c| (tree.end[c as usize], c))
            {
                t = deeper;
            }
            let ts = ix.spans[t as usize];
            let tool_name = ix.texts.opt(ix.facts[t as usize].tool_name).unwrap_or(ts.name.as_str());
            let summary = format!(
                "tool `{tool_name}` ({}) returned output that `{}` ({}) could not use: {what}",
                ts.service_name(),
                span.name,
                span.service_name()
            );
            (t, Category::Tool, summary)
        }
        None => {
            // A search or retrieval tool that fails is a retrieval failure.
            let tool_name = ix.texts.opt(facts.tool_name).unwrap_or(span.name.as_str());
            let category = match facts.category() {
                _ if is_failed_handoff(ix, tree, e) => Category::Handoff,
                Category::Tool if is_retrieval_tool(tool_name) => Category::Retrieval,
                c => c,
            };
            let label = match category {
                Category::Llm => "LLM call",
                Category::Tool => "tool call",
                Category::Retrieval => "retrieval",
                Category::Handoff => "hand-off",
                Category::Agent => "agent step",
                Category::Other | Category::Unexplained => "step",
            };
            (e, category, format!("{label} `{}` ({}) failed: {what}", span.name, span.service_name()))
        }
    };
    let chain = chain_to(ix, tree, blamed);
    let bs = ix.spans[blamed as usize];
    Failure {
        category,
        trace_id: bs.trace_id,
        span_id: bs.span_id,
        summary,
        name: bs.name.clone(),
        service: bs.service_name().to_owned(),
        error_type,
        message,
        surfaced_at: (blamed != e).then_some(span.span_id),
        chain,
    }
}

fn describe_unusable(ix: &Index, tree: &Tree, t: u32) -> Failure {
    let span = ix.spans[t as usize];
    let facts = &ix.facts[t as usize];
    let tool = ix.texts.opt(facts.tool_name).unwrap_or(span.name.as_str());
    let what = match facts.bad_output {
        Some(BadOutput::ErrorPayload) => "an error payload (`isError`, or an `error` member)",
        Some(BadOutput::Empty) => "nothing, where it had answered with structured output before",
        _ => "structured output that does not parse (truncated or malformed JSON)",
    };
    let category = Category::Tool;
    let chain = chain_to(ix, tree, t);
    Failure {
        category,
        trace_id: span.trace_id,
        span_id: span.span_id,
        summary: format!(
            "tool `{tool}` ({}) returned {what} without recording an error, and the request went on with it",
            span.service_name()
        ),
        name: span.name.clone(),
        service: span.service_name().to_owned(),
        error_type: None,
        message: None,
        surfaced_at: None,
        chain,
    }
}

/// Whether a span is a hand-off: `gen_ai.operation.name` or
/// `traceloop.span.kind` `handoff`, or the OpenAI Agents SDK's hand-off span
/// as OpenInference names it (`handoff`, `handoff to {agent}`) or OpenLLMetry
/// does (`{from} → {to}.handoff`).
fn is_handoff_span(ix: &Index, n: u32) -> bool {
    let name = ix.spans[n as usize].name.as_str();
    ix.facts[n as usize].hands_off || name == "handoff" || name.starts_with("handoff to ") || name.ends_with(".handoff")
}

/// The hand-off that the failed agent span `e` started last, when nothing
/// under `e` (at any depth: the SDK wraps a turn's steps in a `turn` span)
/// started after it: the agent failed handing the work over.
fn unfinished_handoff(ix: &Index, tree: &Tree, e: u32) -> Option<u32> {
    if tree.category(ix, e) != Category::Agent {
        return None;
    }
    let mut last: Option<u32> = None;
    let mut stack: Vec<u32> = tree.children(e).to_vec();
    while let Some(n) = stack.pop() {
        if tree.is_real(n) && last.is_none_or(|l| (tree.start[n as usize], n) > (tree.start[l as usize], l)) {
            last = Some(n);
        }
        stack.extend_from_slice(tree.children(n));
    }
    last.filter(|&l| is_handoff_span(ix, l))
}

/// A failed step that hands the work to another agent: a hand-off span
/// (`gen_ai.operation.name` or `traceloop.span.kind` `handoff`; the OpenAI
/// Agents SDK's `handoff to {agent}` under OpenInference and
/// `{from} → {to}.handoff` under OpenLLMetry), or one agent's invocation of
/// another that failed before the callee did anything (no span under it):
/// the agent could not be invoked.
fn is_failed_handoff(ix: &Index, tree: &Tree, e: u32) -> bool {
    let facts = &ix.facts[e as usize];
    if is_handoff_span(ix, e) {
        return true;
    }
    let Some(parent) = tree.parent[e as usize] else { return false };
    let (callee, caller) = (tree.agent[e as usize], tree.agent[parent as usize]);
    facts.category() == Category::Agent
        && facts.agent_name.is_some()
        && callee != caller
        && tree.agent_sources.get(caller as usize).is_some_and(|s| *s != crate::conventions::AgentSource::Service)
        && tree.children(e).iter().all(|&c| !tree.is_real(c))
}

/// Tools that search or retrieve: their failures are retrieval failures.
fn is_retrieval_tool(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["search", "retriev", "lookup_docs", "vector", "rag", "knowledge"].iter().any(|m| lower.contains(m))
}

/// The road from the request's root down to `node`.
fn chain_to(ix: &Index, tree: &Tree, node: u32) -> Vec<ChainLink> {
    let mut chain = Vec::new();
    let mut cursor = Some(node);
    while let Some(n) = cursor {
        chain.push(ChainLink {
            span_id: tree.span_id(ix, n),
            name: tree.name(ix, n),
            service: tree.service(ix, n).to_owned(),
            category: tree.category(ix, n),
        });
        cursor = tree.parent[n as usize];
    }
    chain.reverse();
    chain
}

fn texts_of<'a>(ix: &'a Index, sym: Option<crate::conventions::Sym>) -> Option<&'a str> {
    ix.texts.opt(sym)
}

/// The model call under `node` (its subtree) that ended last.
fn latest_llm_below(tree: &Tree, ix: &Index, node: u32) -> Option<u32> {
    let mut best: Option<u32> = None;
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        for &c in tree.children(n) {
            if tree.category(ix, c) == Category::Llm
                && best.is_none_or(|b| (tree.end[c as usize], c) > (tree.end[b as usize], b))
            {
                best = Some(c);
            }
            stack.push(c);
        }
    }
    best
}
