//! The agent graph reads tokens under current GenAI, OpenInference and
//! Traceloop names, prices them, and rolls them up over each subtree.

mod common;

use agentrace_doctor::PriceTable;

#[test]
fn agent_graph_rolls_up_tokens_and_cost() {
    let d = common::analyse("agent_graph_tokens");
    let get = |n: &str| d.agents.iter().find(|a| a.name == n).unwrap_or_else(|| panic!("agent {n}"));
    let (orch, planner, research, writer) = (get("orchestrator"), get("planner"), get("researcher"), get("writer"));
    assert_eq!([orch.depth, planner.depth, research.depth, writer.depth], [0, 1, 2, 3]);
    assert_eq!((orch.llm_calls, orch.input_tokens, orch.output_tokens), (2, 6000, 1200));
    // OpenInference llm.token_count.* on the researcher, legacy gen_ai.usage.prompt_tokens on the writer.
    assert_eq!((research.llm_calls, research.input_tokens, research.output_tokens), (1, 5000, 800));
    assert_eq!((writer.llm_calls, writer.input_tokens, writer.output_tokens), (1, 3000, 1200));

    let prices = PriceTable::new();
    let cost = |m: &str, i: u64, o: u64| prices.cost(m, i, o).expect("priced");
    assert!((research.cost_usd - cost("claude-3-5-sonnet-20241022", 5000, 800)).abs() < 1e-9);
    assert!((writer.cost_usd - cost("gpt-4o-mini", 3000, 1200)).abs() < 1e-9);

    let total_in: u64 = d.agents.iter().map(|a| a.input_tokens).sum();
    assert_eq!(orch.subtree.input_tokens, total_in);
    assert_eq!(orch.subtree.llm_calls, 5);
    assert_eq!(research.subtree.input_tokens, 8000, "researcher and writer");
    assert!(d.unpriced_models.is_empty(), "{:?}", d.unpriced_models);
    let vias: Vec<(&str, &str, &str)> =
        d.delegations.iter().map(|e| (e.from.as_str(), e.to.as_str(), e.via.as_str())).collect();
    assert!(vias.contains(&("planner", "researcher", "queue")), "{vias:?}");
    assert!(vias.contains(&("researcher", "writer", "call")), "{vias:?}");
}
