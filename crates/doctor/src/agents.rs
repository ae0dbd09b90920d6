//! The agent graph: who delegated to whom, and what each agent spent.
//!
//! Last analysis on the road, reading the connected [`Tree`]. Agents are
//! nodes (by `gen_ai.agent.name`, else service); a span whose parent belongs
//! to another agent is a delegation. Each agent counts its own LLM calls,
//! tool calls, tokens (with their cached-input and reasoning parts), cost
//! and causal errors; nested wrappers of one call
//! (a framework's LLM span around the provider's) count once. Totals roll
//! up over every agent reachable below, each counted once even when the
//! graph is not a tree.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use agentrace_model::SpanKind;

use crate::assemble::{FastHash, Index};
use crate::config::Config;
use crate::connect::Tree;
use crate::conventions::{AgentSource, Category, Usage};
use crate::diagnosis::{AgentStats, Delegation, Rollup, ms, round};

pub(crate) struct Graph {
    pub agents: Vec<AgentStats>,
    pub delegations: Vec<Delegation>,
    pub unpriced: Vec<String>,
    /// Models whose cached input was priced at the input price.
    pub cached_at_input_price: Vec<String>,
    /// What each request (`tree.roots[k]`) spent, counted as the agents'
    /// own totals are, and the agents that worked in it (indexes into
    /// `tree.agents`).
    pub per_request: Vec<(Rollup, BTreeSet<u32>)>,
    /// Per connected request, the delegations its own spans made.
    pub per_request_delegations: Vec<Vec<Delegation>>,
}

/// `unjoined`: each orphan that repair only suggested parents for (not
/// joined), with those candidate parents.
pub(crate) fn analyse(
    ix: &Index,
    tree: &Tree,
    config: &Config,
    causal: &[bool],
    unjoined: &[(u32, Vec<u32>)],
) -> Graph {
    let count = tree.agents.len();
    let mut own = vec![Rollup::default(); count];
    let mut duration = vec![0u64; count];
    let mut depth = vec![u32::MAX; count];
    let mut node_depth = vec![0u32; tree.len()];
    // Counted in a hash map (one entry per delegating span), ordered once at the end.
    let mut edge_counts: HashMap<(u32, u32, &'static str), u64, FastHash> = HashMap::default();
    let mut unpriced = BTreeSet::new();
    let mut cached_at_input_price = BTreeSet::new();
    // For a nested LLM span: the outermost LLM span of its call, and
    // whether that one reported tokens itself.
    let mut llm_top: Vec<u32> = vec![u32::MAX; tree.len()];
    let mut top_has_tokens = vec![false; tree.len()];
    // Model names repeat on every call: look each one up once, by symbol.
    let mut prices: Vec<Option<Option<crate::pricing::ModelPrice>>> = vec![None; ix.texts.len()];

    let mut per_request = vec![(Rollup::default(), BTreeSet::new()); tree.roots.len()];
    let mut request_edges: Vec<BTreeMap<(u32, u32, &'static str), u64>> = vec![BTreeMap::new(); tree.roots.len()];
    let mut request_of: HashMap<u32, usize, FastHash> = HashMap::default();
    let siblings = Siblings::new(ix, tree);
    let nodes = (0..tree.roots.len()).flat_map(|k| tree.request_nodes(k).iter().map(move |&n| (k, n)));
    for (k, node) in nodes {
        let n = node as usize;
        request_of.insert(node, k);
        let agent = tree.agent[n];
        let parent = tree.parent[n];
        let parent_agent = parent.map(|p| tree.agent[p as usize]);
        node_depth[n] = match (parent, parent_agent) {
            (Some(p), Some(pa)) => node_depth[p as usize] + u32::from(pa != agent),
            _ => 0,
        };
        depth[agent as usize] = depth[agent as usize].min(node_depth[n]);
        if !tree.is_real(node) {
            continue;
        }
        if parent_agent != Some(agent) {
            duration[agent as usize] += tree.end[n] - tree.start[n];
        }
        if let (Some(p), Some(pa)) = (parent, parent_agent)
            && pa != agent
        {
            // Graph frameworks say who handed over: the node that routed to
            // this one (LangGraph), or the graph parent (OpenInference); the
            // span tree only shows the graph that runs them side by side.
            let (from, how) = match handed_over_by(ix, tree, &siblings, node) {
                Some((from, how)) if from != agent => (from, how),
                _ => (pa, via(ix, tree, p, node)),
            };
            // A worker routing back to the supervisor that handed it the
            // work returns a result: no delegation.
            let returns = how == "graph" && edge_counts.keys().any(|&(f, t, _)| f == agent && t == from);
            if !returns {
                *edge_counts.entry((from, agent, how)).or_insert(0) += 1;
                *request_edges[k].entry((from, agent, how)).or_insert(0) += 1;
            }
        }
        let facts = &ix.facts[n];
        let category = facts.category();
        let parent_category = parent.map(|p| tree.category(ix, p));
        let request = &mut per_request[k];
        request.1.insert(agent);
        if causal[n] {
            own[agent as usize].errors += 1;
            request.0.errors += 1;
        }
        if category == Category::Tool && parent_category != Some(Category::Tool) {
            own[agent as usize].tool_calls += 1;
            request.0.tool_calls += 1;
        }
        let tokens = facts.input_tokens.is_some() || facts.output_tokens.is_some();
        // Model calls bill tokens, embedding calls too (retrieval by
        // category). Two conventions on one call (an OpenInference LLM or
        // EMBEDDING span over the client library's own span) bill it once:
        // the outermost span of the nest, when it carries tokens.
        let counts_tokens = match category {
            Category::Llm | Category::Retrieval => {
                if let Some(p) = parent.filter(|_| parent_category == Some(category)) {
                    let top = llm_top[p as usize];
                    llm_top[n] = top;
                    !top_has_tokens[top as usize]
                } else {
                    llm_top[n] = node;
                    top_has_tokens[n] = tokens;
                    if category == Category::Llm {
                        own[agent as usize].llm_calls += 1;
                        request.0.llm_calls += 1;
                    }
                    true
                }
            }
            _ => false,
        };
        if counts_tokens && tokens {
            let u = Usage::of(facts);
            // Tokens of a nested span go to the agent of the call's outer span.
            let target = if llm_top[n] != u32::MAX { tree.agent[llm_top[n] as usize] } else { agent } as usize;
            for r in [&mut own[target], &mut request.0] {
                r.input_tokens += u.input;
                r.output_tokens += u.output;
                r.cached_input_tokens += u.cached_input;
                r.cache_write_input_tokens += u.cache_write_input;
                r.reasoning_tokens += u.reasoning;
            }
            let mut price = |m: crate::conventions::Sym| {
                *prices[m.index()].get_or_insert_with(|| config.prices.lookup(ix.texts.get(m)))
            };
            let cost = |p: Option<crate::pricing::ModelPrice>| {
                p.map(|p| p.cost(u.input, u.cached_input, u.cache_write_input, u.output))
            };
            match facts.model.map(|m| (m, cost(price(m)))) {
                Some((m, Some(cost))) => {
                    own[target].cost_usd += cost.usd;
                    request.0.cost_usd += cost.usd;
                    if cost.cached_at_input_price {
                        cached_at_input_price.insert(ix.texts.get(m).to_owned());
                    }
                }
                Some((m, None)) => {
                    unpriced.insert(ix.texts.get(m).to_owned());
                }
                None => {
                    unpriced.insert("(no model name)".to_owned());
                }
            }
        }
    }

    // An agent run that lost its caller, whose every candidate caller is
    // of one agent (two sessions' `ask_researcher` tools in flight at once):
    // which call it answered is unsure, which agent delegated to it is not.
    for (orphan, candidates) in unjoined {
        let to = tree.agent[*orphan as usize];
        if ix.facts[*orphan as usize].agent_name.is_none() {
            continue;
        }
        let mut from = candidates.iter().map(|&c| tree.agent[c as usize]);
        if let Some(first) = from.next()
            && from.all(|a| a == first)
            && first != to
        {
            *edge_counts.entry((first, to, "unjoined")).or_insert(0) += 1;
            if let Some(&k) = request_of.get(orphan) {
                *request_edges[k].entry((first, to, "unjoined")).or_insert(0) += 1;
            }
        }
    }
    let edges: BTreeMap<(u32, u32, &'static str), u64> = edge_counts.into_iter().collect();
    let mut out_edges: Vec<Vec<u32>> = vec![Vec::new(); count];
    for &(from, to, _) in edges.keys() {
        if !out_edges[from as usize].contains(&to) {
            out_edges[from as usize].push(to);
        }
    }
    let mut agents: Vec<AgentStats> = (0..count)
        .map(|a| {
            // Everything reachable below, each agent once.
            let mut seen = vec![false; count];
            let mut stack = vec![a as u32];
            let mut subtree = Rollup::default();
            while let Some(x) = stack.pop() {
                if std::mem::replace(&mut seen[x as usize], true) {
                    continue;
                }
                let o = &own[x as usize];
                subtree.llm_calls += o.llm_calls;
                subtree.tool_calls += o.tool_calls;
                subtree.input_tokens += o.input_tokens;
                subtree.output_tokens += o.output_tokens;
                subtree.cached_input_tokens += o.cached_input_tokens;
                subtree.cache_write_input_tokens += o.cache_write_input_tokens;
                subtree.reasoning_tokens += o.reasoning_tokens;
                subtree.cost_usd += o.cost_usd;
                subtree.errors += o.errors;
                stack.extend(out_edges[x as usize].iter().copied());
            }
            subtree.cost_usd = round(subtree.cost_usd, 6);
            let o = &own[a];
            let mut delegates_to: Vec<String> = out_edges[a].iter().map(|t| tree.agents[*t as usize].clone()).collect();
            delegates_to.sort();
            AgentStats {
                name: tree.agents[a].clone(),
                source: tree.agent_sources.get(a).copied().unwrap_or(AgentSource::Service),
                depth: if depth[a] == u32::MAX { 0 } else { depth[a] },
                llm_calls: o.llm_calls,
                tool_calls: o.tool_calls,
                input_tokens: o.input_tokens,
                output_tokens: o.output_tokens,
                cached_input_tokens: o.cached_input_tokens,
                cache_write_input_tokens: o.cache_write_input_tokens,
                reasoning_tokens: o.reasoning_tokens,
                cost_usd: round(o.cost_usd, 6),
                duration_ms: ms(duration[a]),
                errors: o.errors,
                delegates_to,
                subtree,
            }
        })
        .collect();
    agents.sort_by(|a, b| (a.depth, &a.name).cmp(&(b.depth, &b.name)));
    let delegation = |((from, to, via), count): ((u32, u32, &'static str), u64)| Delegation {
        from: tree.agents[from as usize].clone(),
        to: tree.agents[to as usize].clone(),
        via: via.to_owned(),
        count,
    };
    let delegations = edges.into_iter().map(delegation).collect();
    let per_request_delegations =
        request_edges.into_iter().map(|edges| edges.into_iter().map(delegation).collect()).collect();
    for (usage, _) in &mut per_request {
        usage.cost_usd = round(usage.cost_usd, 6);
    }
    Graph {
        agents,
        delegations,
        unpriced: unpriced.into_iter().collect(),
        cached_at_input_price: cached_at_input_price.into_iter().collect(),
        per_request,
        per_request_delegations,
    }
}

/// What [`handed_over_by`] reads among an agent span's siblings, gathered
/// for every node of the tree in one pass: its children that route to an
/// agent (`routes_to`), and the grandchildren that may be a sign of a hand-
/// over (a hand-off span or a tool call in its child's own agent's
/// subtree, as `(child, grandchild)`), each in the tree's order. Reading
/// every sibling for every agent span instead was quadratic under a parent
/// of hundreds of children.
struct Siblings {
    routing: Vec<u32>,
    routing_at: Vec<u32>,
    signs: Vec<(u32, u32)>,
    signs_at: Vec<u32>,
}

impl Siblings {
    fn new(ix: &Index, tree: &Tree) -> Siblings {
        let mut s = Siblings {
            routing: Vec::new(),
            routing_at: Vec::with_capacity(tree.len() + 1),
            signs: Vec::new(),
            signs_at: Vec::with_capacity(tree.len() + 1),
        };
        for parent in 0..tree.len() as u32 {
            s.routing_at.push(s.routing.len() as u32);
            s.signs_at.push(s.signs.len() as u32);
            for &c in tree.children(parent).iter().filter(|&&c| tree.is_real(c)) {
                if ix.facts[c as usize].routes_to.is_some() {
                    s.routing.push(c);
                }
                for &h in tree.children(c) {
                    if !tree.is_real(h) || tree.agent[h as usize] != tree.agent[c as usize] {
                        continue;
                    }
                    let hf = &ix.facts[h as usize];
                    if hf.hands_off || hf.category() == Category::Tool {
                        s.signs.push((c, h));
                    }
                }
            }
        }
        s.routing_at.push(s.routing.len() as u32);
        s.signs_at.push(s.signs.len() as u32);
        s
    }

    /// The children of `parent` that route to an agent.
    fn routing(&self, parent: u32) -> &[u32] {
        let p = parent as usize;
        &self.routing[self.routing_at[p] as usize..self.routing_at[p + 1] as usize]
    }

    /// The `(child, grandchild)` pairs under `parent` that may be a sign.
    fn signs(&self, parent: u32) -> &[(u32, u32)] {
        let p = parent as usize;
        &self.signs[self.signs_at[p] as usize..self.signs_at[p + 1] as usize]
    }
}

/// The agent that handed work to the agent span `node`, and how, where a
/// framework records it: the OpenInference graph parent, the latest
/// earlier sibling node that routed here (LangGraph `goto`), or a sign in
/// a sibling agent's own subtree (a hand-off span, a tool call).
fn handed_over_by(ix: &Index, tree: &Tree, siblings: &Siblings, node: u32) -> Option<(u32, &'static str)> {
    if !tree.is_real(node) {
        return None;
    }
    let f = &ix.facts[node as usize];
    if let Some(parent) = f.graph_parent {
        let name = ix.texts.get(parent);
        return tree.agents.binary_search_by(|a| a.as_str().cmp(name)).ok().map(|i| (i as u32, "graph"));
    }
    let me = f.agent_name?;
    let parent = tree.parent[node as usize]?;
    let start = tree.start[node as usize];
    let agent = tree.agent[node as usize];
    let routed = siblings
        .routing(parent)
        .iter()
        .copied()
        .filter(|&c| c != node && tree.is_real(c) && tree.start[c as usize] <= start)
        .filter(|&c| ix.facts[c as usize].routes_to == Some(me))
        .max_by_key(|&c| (tree.start[c as usize], c))
        .map(|c| (tree.agent[c as usize], "graph"));
    if routed.is_some() {
        return routed;
    }
    // An agent run beside the one that handed over (the Agents SDK under
    // OpenLLMetry runs every agent as a sibling under the workflow span):
    // the delegator's own subtree says so, by a hand-off span whose next
    // agent to start is this one, or by a tool call of its during which
    // this one started (an agent used as a tool). The latest such sign wins.
    let other_agent = |c: u32| c != node && tree.is_real(c) && tree.agent[c as usize] != agent;
    let next_after = |t: u64| {
        tree.children(parent)
            .iter()
            .copied()
            .filter(|&s| tree.is_real(s) && ix.facts[s as usize].agent_name.is_some() && tree.start[s as usize] >= t)
            .min_by_key(|&s| (tree.start[s as usize], s))
    };
    let mut best: Option<(u64, u32, &'static str)> = None;
    for &(c, h) in siblings.signs(parent).iter().filter(|&&(c, _)| other_agent(c) && tree.start[c as usize] <= start) {
        let (hs, he) = (tree.start[h as usize], tree.end[h as usize]);
        let hf = &ix.facts[h as usize];
        let sign = if hf.hands_off && hs <= start && hf.routes_to.is_none_or(|t| t == me) {
            (next_after(hs) == Some(node)).then_some("handoff")
        } else if hf.category() == Category::Tool && hs <= start && start <= he {
            Some("tool")
        } else {
            None
        };
        if let Some(how) = sign
            && best.is_none_or(|(t, _, _)| hs > t)
        {
            best = Some((hs, tree.agent[c as usize], how));
        }
    }
    best.map(|(_, from, how)| (from, how))
}

/// How work crossed from the parent's agent to the child's.
fn via(ix: &Index, tree: &Tree, parent: u32, child: u32) -> &'static str {
    let kinds = |n: u32| if tree.is_real(n) { ix.spans[n as usize].kind } else { SpanKind::Internal };
    if !tree.is_real(parent)
        || matches!(kinds(child), SpanKind::Consumer)
        || matches!(kinds(parent), SpanKind::Producer)
    {
        "queue"
    } else if tree.category(ix, parent) == Category::Tool || tree.category(ix, child) == Category::Tool {
        "tool"
    } else if tree.category(ix, parent) == Category::Agent || tree.category(ix, child) == Category::Agent {
        "invoke_agent"
    } else {
        "call"
    }
}
