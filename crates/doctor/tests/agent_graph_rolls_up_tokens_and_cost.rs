//! The agent graph reads tokens under current GenAI, OpenInference and
//! Traceloop names, prices them, and rolls them up over each subtree.

use crate::common;

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

/// One agent span with two model calls under it, as the given
/// attributes record their usage.
fn agent_with_calls(calls: &[(&str, &[(&str, i64)])]) -> Vec<agentrace_model::Span> {
    use agentrace_model::{Resource, Span, SpanId, SpanKind, TraceId};
    use std::sync::Arc;
    let trace = TraceId::new([7; 16]).expect("non-zero");
    let resource = Arc::new(Resource::for_service("svc"));
    let mut root = Span::new(trace, SpanId::new([1; 8]).expect("non-zero"), None, "invoke_agent analyst");
    root.start_unix_nano = 1_000_000_000;
    root.end_unix_nano = 2_000_000_000;
    root.resource = Arc::clone(&resource);
    root.attributes.set("gen_ai.operation.name", "invoke_agent");
    root.attributes.set("gen_ai.agent.name", "analyst");
    let mut spans = vec![root];
    for (k, (model, usage)) in calls.iter().enumerate() {
        let id = SpanId::new([k as u8 + 2; 8]).expect("non-zero");
        let mut s = Span::new(trace, id, Some(spans[0].span_id), &format!("chat {model}"));
        s.kind = SpanKind::Client;
        s.start_unix_nano = 1_100_000_000 + k as u64 * 300_000_000;
        s.end_unix_nano = s.start_unix_nano + 200_000_000;
        s.resource = Arc::clone(&resource);
        s.attributes.set("gen_ai.operation.name", "chat");
        s.attributes.set("gen_ai.request.model", *model);
        for (key, v) in usage.iter() {
            s.attributes.set(*key, *v);
        }
        spans.push(s);
    }
    spans
}

#[test]
fn cached_input_and_reasoning_are_priced_as_such_and_counted_once() {
    let spans = agent_with_calls(&[
        // Current GenAI names: 10k input of which 8k cached; 2k output of which 1.5k reasoning.
        (
            "gpt-4.1",
            &[
                ("gen_ai.usage.input_tokens", 10_000),
                ("gen_ai.usage.output_tokens", 2_000),
                ("gen_ai.usage.cache_read.input_tokens", 8_000),
                ("gen_ai.usage.reasoning.output_tokens", 1_500),
            ],
        ),
        // OpenInference names on another model.
        (
            "claude-sonnet-4-5",
            &[
                ("llm.token_count.prompt", 4_000),
                ("llm.token_count.completion", 500),
                ("llm.token_count.prompt_details.cache_read", 3_000),
                ("llm.token_count.completion_details.reasoning", 100),
            ],
        ),
    ]);
    let d = agentrace_doctor::Doctor::default().analyse(&spans);
    let a = d.agents.iter().find(|a| a.name == "analyst").expect("the agent");
    // Parts are inside the counts, never added to them.
    assert_eq!((a.input_tokens, a.output_tokens), (14_000, 2_500));
    assert_eq!((a.cached_input_tokens, a.reasoning_tokens), (11_000, 1_600));
    assert_eq!((a.subtree.cached_input_tokens, a.subtree.reasoning_tokens), (11_000, 1_600));
    assert_eq!((d.requests[0].usage.cached_input_tokens, d.requests[0].usage.reasoning_tokens), (11_000, 1_600));
    // gpt-4.1: 2k at 2.00 + 8k at 0.50 + 2k (reasoning included) at 8.00;
    // claude-sonnet-4-5: 1k at 3.00 + 3k at 0.30 + 500 at 15.00.
    let expected = (2_000.0 * 2.0 + 8_000.0 * 0.5 + 2_000.0 * 8.0 + 1_000.0 * 3.0 + 3_000.0 * 0.3 + 500.0 * 15.0) / 1e6;
    assert!((a.cost_usd - expected).abs() < 1e-6, "{} vs {expected}", a.cost_usd);
    let undiscounted = PriceTable::new().cost("gpt-4.1", 10_000, 2_000).expect("priced")
        + PriceTable::new().cost("claude-sonnet-4-5", 4_000, 500).expect("priced");
    assert!(a.cost_usd < undiscounted);
    assert!(d.cached_input_at_input_price.is_empty(), "{:?}", d.cached_input_at_input_price);
}

#[test]
fn cache_writes_are_priced_as_such_under_every_convention() {
    // Anthropic bills prompt-cache writes at 1.25 times the input price;
    // the conventions count them inside the input.
    let spans = agent_with_calls(&[
        (
            "claude-sonnet-4-5",
            &[
                ("gen_ai.usage.input_tokens", 10_000),
                ("gen_ai.usage.output_tokens", 200),
                ("gen_ai.usage.cache_creation.input_tokens", 9_000),
            ],
        ),
        (
            "claude-sonnet-4-5",
            &[
                ("gen_ai.usage.prompt_tokens", 10_000),
                ("gen_ai.usage.completion_tokens", 200),
                ("gen_ai.usage.cache_read_input_tokens", 9_000),
                ("gen_ai.usage.cache_creation_input_tokens", 500),
            ],
        ),
        (
            "claude-sonnet-4-5",
            &[
                ("llm.token_count.prompt", 1_000),
                ("llm.token_count.completion", 10),
                ("llm.token_count.prompt_details.cache_write", 1_000),
            ],
        ),
    ]);
    let d = agentrace_doctor::Doctor::default().analyse(&spans);
    let a = d.agents.iter().find(|a| a.name == "analyst").expect("the agent");
    assert_eq!((a.input_tokens, a.cached_input_tokens, a.cache_write_input_tokens), (21_000, 9_000, 10_500));
    assert_eq!(a.subtree.cache_write_input_tokens, 10_500);
    assert_eq!(d.requests[0].usage.cache_write_input_tokens, 10_500);
    // 1.5k plain input at 3.00, 9k reads at 0.30, 10.5k writes at 3.75, 410 output at 15.00.
    let expected = (1_500.0 * 3.0 + 9_000.0 * 0.3 + 10_500.0 * 3.75 + 410.0 * 15.0) / 1e6;
    assert!((a.cost_usd - expected).abs() < 1e-6, "{} vs {expected}", a.cost_usd);
    let text = agentrace_doctor::render::text(&d, &Default::default());
    assert!(text.contains("10500 written to the cache"), "{text}");
}

#[test]
fn cached_input_of_a_model_without_a_cached_price_is_reported() {
    let spans = agent_with_calls(&[(
        "gemini-2.5-pro",
        &[
            ("gen_ai.usage.input_tokens", 10_000),
            ("gen_ai.usage.output_tokens", 100),
            ("gen_ai.usage.cache_read.input_tokens", 6_000),
        ],
    )]);
    let d = agentrace_doctor::Doctor::default().analyse(&spans);
    let a = d.agents.iter().find(|a| a.name == "analyst").expect("the agent");
    let full = PriceTable::new().cost("gemini-2.5-pro", 10_000, 100).expect("priced");
    assert!((a.cost_usd - full).abs() < 1e-9, "priced at the input price: {} vs {full}", a.cost_usd);
    assert_eq!(d.cached_input_at_input_price, vec!["gemini-2.5-pro".to_owned()]);
    let text = agentrace_doctor::render::text(&d, &Default::default());
    assert!(text.contains("cached input priced as input"), "{text}");
    // Without cache reads the JSON is what it was: no new keys.
    let plain = agentrace_doctor::Doctor::default().analyse(&agent_with_calls(&[(
        "gpt-4o",
        &[("gen_ai.usage.input_tokens", 100), ("gen_ai.usage.output_tokens", 10)],
    )]));
    let json = serde_json::to_string(&plain).expect("serialises");
    assert!(
        !json.contains("cached_input") && !json.contains("cache_write") && !json.contains("reasoning_tokens"),
        "{json}"
    );
}

#[test]
fn each_request_holds_the_hand_offs_its_own_spans_made() {
    // Over every fixture: the requests' delegations add up to the graph's,
    // each edge in the request whose spans made it.
    for name in common::fixture_names() {
        let d = common::analyse(&name);
        let mut summed: std::collections::BTreeMap<(String, String, String), u64> = Default::default();
        for r in &d.requests {
            for e in &r.delegations {
                assert!(r.agents.contains(&e.from) || e.via == "unjoined", "{name}: {e:?} not of {:?}", r.agents);
                assert!(r.agents.contains(&e.to), "{name}: {e:?} not of {:?}", r.agents);
                *summed.entry((e.from.clone(), e.to.clone(), e.via.clone())).or_default() += e.count;
            }
        }
        let graph: std::collections::BTreeMap<(String, String, String), u64> =
            d.delegations.iter().map(|e| ((e.from.clone(), e.to.clone(), e.via.clone()), e.count)).collect();
        assert_eq!(summed, graph, "{name}");
    }
}

#[test]
fn an_embedding_call_recorded_by_two_conventions_is_billed_once() {
    use agentrace_model::SpanKind;
    // OpenInference's EMBEDDING span over the client library's own `embeddings` span, both with
    // the call's usage: the outer one is billed; a lone inner one would be.
    let mut spans = agent_with_calls(&[("text-embedding-3-small", &[("gen_ai.usage.input_tokens", 40)])]);
    spans[1].name = "embeddings text-embedding-3-small".into();
    spans[1].attributes.set("gen_ai.operation.name", "embeddings");
    let mut outer = spans[1].clone();
    outer.span_id = agentrace_model::SpanId::new([9; 8]).expect("non-zero");
    outer.name = "OpenAIEmbeddings".into();
    outer.kind = SpanKind::Internal;
    outer.attributes.set("openinference.span.kind", "EMBEDDING");
    outer.start_unix_nano -= 1_000;
    outer.end_unix_nano += 1_000;
    spans[1].parent_span_id = Some(outer.span_id);
    spans.push(outer);
    let billed = |spans: &[agentrace_model::Span]| {
        let d = agentrace_doctor::Doctor::default().analyse(spans);
        d.agents.iter().find(|a| a.name == "analyst").expect("the agent").input_tokens
    };
    assert_eq!(billed(&spans), 40);
    // Three deep (a framework's span over OpenInference's over the library's): still once.
    let mut top = spans[2].clone();
    top.span_id = agentrace_model::SpanId::new([10; 8]).expect("non-zero");
    top.name = "retrieve".into();
    top.start_unix_nano -= 1_000;
    top.end_unix_nano += 1_000;
    spans[2].parent_span_id = Some(top.span_id);
    spans.push(top);
    assert_eq!(billed(&spans), 40);
    // The library's span alone is billed.
    assert_eq!(billed(&agent_with_calls(&[("text-embedding-3-small", &[("gen_ai.usage.input_tokens", 40)])])), 40);
}

/// The live pipeline's trace rows take each trace's totals from the facts its diagnosis read
/// (`analyse_with_totals`) instead of reading every span again: over every fixture, they are what
/// `usage_totals` adds up over the trace's spans, a span sent twice counted once.
#[test]
fn trace_totals_from_a_diagnosis_are_the_totals_of_the_traces_spans() {
    use agentrace_doctor::conventions::usage_totals;
    use agentrace_doctor::{Config, Doctor};
    let doctor = Doctor::new(Config::default());
    let prices = &doctor.config().prices;
    let mut traces_seen = 0;
    for name in common::fixture_names() {
        let mut spans = common::load(&name);
        // Every fixture's first span again, as an exporter's retry sends it.
        if let Some(first) = spans.first().cloned() {
            spans.push(first);
        }
        let got = doctor.analyse_with_totals(&spans, false).totals;
        let mut ids: Vec<_> = spans.iter().map(|s| s.trace_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(got.len(), ids.len(), "{name}: one entry per trace");
        for id in ids {
            let mut own: Vec<&agentrace_model::Span> = spans.iter().filter(|s| s.trace_id == id).collect();
            own.sort_by_key(|s| s.span_id);
            own.dedup_by_key(|s| s.span_id);
            let mut want = usage_totals(&own, prices);
            let (_, mut have) = got.iter().find(|(t, _)| *t == id).cloned().expect("trace has totals");
            // Both add the same calls; only the sum's order may differ in the last bits.
            assert!((want.cost_usd - have.cost_usd).abs() < 1e-9, "{name}");
            (want.cost_usd, have.cost_usd) = (0.0, 0.0);
            assert_eq!(have, want, "{name}, trace {id}");
            traces_seen += 1;
        }
    }
    assert!(traces_seen > 20, "{traces_seen}");
}
