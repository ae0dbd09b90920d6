//! The earliest causal error is named with its category and its chain;
//! a parse error right after a tool call blames the tool.

mod common;

use agentrace_doctor::Category;

#[test]
fn each_failure_category_is_recognised() {
    let cases = [
        ("failure_retrieval", Category::Retrieval, "retrieval kb"),
        ("failure_llm", Category::Llm, "chat gpt-4o"),
        ("failure_handoff", Category::Handoff, "send analysis"),
        ("failure_agent", Category::Agent, "invoke_agent planner"),
        ("failure_tool_malformed_output", Category::Tool, "tools/call search_flights"),
    ];
    for (name, category, span) in cases {
        let d = common::analyse(name);
        let f = d.failure.as_ref().unwrap_or_else(|| panic!("{name}: a failure"));
        assert_eq!(f.category, category, "{name}: {}", f.summary);
        assert_eq!(f.name, span, "{name}");
        assert_eq!(f.chain.last().map(|c| c.span_id), Some(f.span_id), "{name}: chain ends at the blamed span");
        assert_eq!(f.chain.first().map(|c| c.name.as_str()), Some(d.requests[0].name.as_str()), "{name}");
        assert!(d.findings.is_empty(), "{name}: a failure is not a propagation break");
    }
}

#[test]
fn a_parse_error_after_a_tool_call_blames_the_tool_that_made_the_output() {
    let d = common::analyse("failure_tool_malformed_output");
    let f = d.failure.expect("failure");
    assert_eq!(f.service, "flights-mcp", "the server that produced the output");
    assert!(f.surfaced_at.is_some(), "the parser is where it surfaced");
    assert!(f.summary.contains("`parse flight results`"), "{}", f.summary);
    assert_eq!(f.error_type.as_deref(), Some("JSONDecodeError"));
}

#[test]
fn an_error_whose_message_repeats_its_type_is_said_once() {
    // Python's `raise JSONDecodeError` recorded as type and message both
    // `JSONDecodeError`, and a message that already starts with its type.
    for (message, said) in [
        ("RateLimitError", "failed: RateLimitError"),
        ("RateLimitError: Error code: 429", "failed: RateLimitError: Error code: 429"),
    ] {
        let mut spans = common::load("failure_llm");
        for s in spans.iter_mut().filter(|s| s.name == "chat gpt-4o") {
            s.status_message = message.into();
            for e in &mut s.events {
                e.attributes.set("exception.message", message);
            }
        }
        let d = agentrace_doctor::Doctor::default().analyse(&spans);
        let f = d.failure.expect("failure");
        assert!(f.summary.ends_with(said), "{message:?}: {}", f.summary);
        assert!(!f.summary.contains("RateLimitError: RateLimitError"), "{}", f.summary);
    }
}
