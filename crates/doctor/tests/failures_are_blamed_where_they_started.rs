//! The earliest causal error is named with its category and its chain;
//! a parse error right after a tool call blames the tool.

use crate::common;

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

/// A span built by hand: name, parent (an index into the request), attributes, whether it failed.
type Step<'a> = (&'a str, Option<usize>, &'a [(&'a str, &'a str)], bool);

/// A request of the `triage` agent: spans built by hand, one after another on the clock, each
/// inside its parent.
fn request(spans: &[Step]) -> Vec<agentrace_model::Span> {
    use agentrace_model::span::StatusCode;
    use agentrace_model::{Resource, Span, SpanId, TraceId};
    use std::sync::Arc;
    let trace = TraceId::new([9; 16]).expect("non-zero");
    let resource = Arc::new(Resource::for_service("support"));
    let mut out: Vec<Span> = Vec::new();
    for (k, (name, parent, attributes, error)) in spans.iter().enumerate() {
        let parent_id = parent.map(|p| out[p].span_id);
        let mut s = Span::new(trace, SpanId::new([k as u8 + 1; 8]).expect("non-zero"), parent_id, name);
        // Nested by depth: each span starts after and ends before its parent.
        let depth = std::iter::successors(*parent, |&p| spans[p].1).count() as u64;
        s.start_unix_nano = 1_000_000_000 + k as u64 * 1_000_000 + depth;
        s.end_unix_nano = 2_000_000_000 - k as u64 * 1_000_000 - depth;
        s.resource = Arc::clone(&resource);
        for (key, value) in attributes.iter() {
            s.attributes.set(*key, *value);
        }
        if *error {
            s.status_code = StatusCode::Error;
            s.status_message = "boom".into();
        }
        out.push(s);
    }
    out
}

const TRIAGE: &[(&str, &str)] = &[("gen_ai.operation.name", "invoke_agent"), ("gen_ai.agent.name", "triage")];

#[test]
fn a_hand_off_that_fails_is_a_handoff_failure() {
    // The OpenAI Agents SDK's hand-off span as OpenInference names it, and as OpenLLMetry does.
    for (name, attributes) in [
        ("handoff to researcher", &[("openinference.span.kind", "TOOL")][..]),
        ("triage → researcher.handoff", &[("traceloop.span.kind", "handoff")][..]),
    ] {
        let spans = request(&[
            ("POST /chat", None, &[], false),
            ("triage", Some(0), TRIAGE, true),
            (name, Some(1), attributes, true),
        ]);
        let d = agentrace_doctor::Doctor::default().analyse(&spans);
        let f = d.failure.expect("failure");
        assert_eq!((f.category, f.name.as_str()), (Category::Handoff, name), "{}", f.summary);
    }
}

#[test]
fn an_agent_that_could_not_be_invoked_is_a_handoff_failure_and_one_that_failed_at_work_is_not() {
    let researcher: &[(&str, &str)] = &[("gen_ai.operation.name", "invoke_agent"), ("gen_ai.agent.name", "researcher")];
    let chat: &[(&str, &str)] = &[("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o")];
    // Nothing ran under the researcher's invocation: it could not be invoked.
    let spans = request(&[
        ("POST /chat", None, &[], false),
        ("invoke_agent triage", Some(0), TRIAGE, true),
        ("invoke_agent researcher", Some(1), researcher, true),
    ]);
    let f = agentrace_doctor::Doctor::default().analyse(&spans).failure.expect("failure");
    assert_eq!((f.category, f.name.as_str()), (Category::Handoff, "invoke_agent researcher"), "{}", f.summary);
    // The researcher ran (a model call under it) and then failed: its own failure.
    let spans = request(&[
        ("POST /chat", None, &[], false),
        ("invoke_agent triage", Some(0), TRIAGE, true),
        ("invoke_agent researcher", Some(1), researcher, true),
        ("chat gpt-4o", Some(2), chat, false),
    ]);
    let f = agentrace_doctor::Doctor::default().analyse(&spans).failure.expect("failure");
    assert_eq!((f.category, f.name.as_str()), (Category::Agent, "invoke_agent researcher"), "{}", f.summary);
    // The request's own first agent failing at once is that agent's failure, not a hand-off.
    let spans = request(&[("POST /chat", None, &[], false), ("invoke_agent triage", Some(0), TRIAGE, true)]);
    let f = agentrace_doctor::Doctor::default().analyse(&spans).failure.expect("failure");
    assert_eq!(f.category, Category::Agent, "{}", f.summary);
}

/// The attributes of an `execute_tool lookup` span that answered `output`.
fn tool(output: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", "lookup"), ("gen_ai.tool.call.result", output)]
}

#[test]
fn a_tool_that_answers_with_an_error_member_fails_the_request() {
    for (output, fails) in [
        (r#"{"error": "upstream timed out"}"#, true),
        (r#"{"error": {"code": 503, "message": "unavailable"}}"#, true),
        (r#"{"error": null, "rows": [1, 2]}"#, false),
        (r#"{"error": "", "rows": []}"#, false),
        (r#"{"rows": [1, 2]}"#, false),
    ] {
        let t = tool(output);
        let spans = request(&[
            ("POST /chat", None, &[], false),
            ("triage", Some(0), TRIAGE, false),
            ("execute_tool lookup", Some(1), &t, false),
        ]);
        let d = agentrace_doctor::Doctor::default().analyse(&spans);
        match (fails, d.failure) {
            (true, Some(f)) => {
                assert_eq!((f.category, f.name.as_str()), (Category::Tool, "execute_tool lookup"), "{output}");
                assert!(f.summary.contains("error payload"), "{output}: {}", f.summary);
            }
            (false, None) => {}
            (fails, got) => panic!("{output}: expected a failure {fails}, got {got:?}"),
        }
    }
}

#[test]
fn a_tool_that_answers_with_nothing_after_answering_with_data_fails_the_request() {
    let (data, empty) = (tool(r#"{"rows": [1, 2]}"#), tool(""));
    let run = |first: &[(&str, &str)], second: &[(&str, &str)]| {
        let mut spans = request(&[
            ("POST /chat", None, &[], false),
            ("triage", Some(0), TRIAGE, false),
            ("execute_tool lookup", Some(1), first, false),
            ("execute_tool lookup", Some(1), second, false),
        ]);
        // One call after the other.
        (spans[2].start_unix_nano, spans[2].end_unix_nano) = (1_100_000_000, 1_200_000_000);
        (spans[3].start_unix_nano, spans[3].end_unix_nano) = (1_300_000_000, 1_400_000_000);
        agentrace_doctor::Doctor::default().analyse(&spans).failure
    };
    let f = run(&data, &empty).expect("the empty answer after a structured one fails the request");
    assert_eq!(
        (f.category, f.span_id),
        (Category::Tool, agentrace_model::SpanId::new([4; 8]).unwrap()),
        "{}",
        f.summary
    );
    assert!(f.summary.contains("returned nothing"), "{}", f.summary);
    // A tool that always answers with nothing, or answered with nothing first, is not judged.
    assert!(run(&empty, &empty).is_none());
    assert!(run(&empty, &data).is_none());
    // An empty JSON value is an answer: a search that found nothing, a lookup of something absent.
    for nothing in ["[]", "{}", "null"] {
        let none = tool(nothing);
        assert!(run(&data, &none).is_none(), "{nothing}");
    }
}

/// A request whose `chat gpt-4o` call was tried three times, one after another: `failed[k]` says
/// whether attempt `k` failed with a rate limit.
fn three_attempts(failed: [bool; 3]) -> Vec<agentrace_model::Span> {
    let chat: &[(&str, &str)] = &[("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o")];
    let mut spans = request(&[
        ("POST /chat", None, &[], false),
        ("triage", Some(0), TRIAGE, failed.iter().all(|f| *f)),
        ("chat gpt-4o", Some(1), chat, failed[0]),
        ("chat gpt-4o", Some(1), chat, failed[1]),
        ("chat gpt-4o", Some(1), chat, failed[2]),
    ]);
    for (k, s) in spans[2..].iter_mut().enumerate() {
        s.start_unix_nano = 1_100_000_000 + k as u64 * 200_000_000;
        s.end_unix_nano = s.start_unix_nano + 100_000_000;
        if s.status_code == agentrace_model::span::StatusCode::Error {
            s.attributes.set("error.type", "RateLimitError");
        }
    }
    spans
}

#[test]
fn a_rate_limit_recovered_by_a_retry_is_a_retry_with_its_cost_not_the_failure() {
    let d = agentrace_doctor::Doctor::default().analyse(&three_attempts([true, false, false]));
    assert!(d.failure.is_none(), "{:?}", d.failure);
    assert_eq!(d.retries.len(), 1, "{:?}", d.retries);
    let r = &d.retries[0];
    assert_eq!(
        (r.name.as_str(), r.category, r.error_type.as_deref()),
        ("chat gpt-4o", Category::Llm, Some("RateLimitError"))
    );
    assert_eq!(r.retried_by, agentrace_model::SpanId::new([4; 8]).unwrap());
    assert_eq!(r.cost_ms, 200.0, "from the failed attempt's start to the retry's");
}

#[test]
fn a_rate_limit_that_exhausted_its_retries_fails_the_request_at_the_last_attempt() {
    let f = agentrace_doctor::Doctor::default().analyse(&three_attempts([true, true, true])).failure.expect("failure");
    assert_eq!(
        (f.category, f.span_id),
        (Category::Llm, agentrace_model::SpanId::new([5; 8]).unwrap()),
        "{}",
        f.summary
    );
    assert!(f.summary.contains("attempt 3 of 3: every attempt failed"), "{}", f.summary);
    assert_eq!(f.error_type.as_deref(), Some("RateLimitError"));
}

#[test]
fn attempts_are_counted_only_while_they_fail_one_after_another() {
    // Failed, recovered by the second, failed again: the third failed alone.
    let d = agentrace_doctor::Doctor::default().analyse(&three_attempts([true, false, true]));
    let f = d.failure.expect("failure");
    assert_eq!(f.span_id, agentrace_model::SpanId::new([5; 8]).unwrap(), "{}", f.summary);
    assert!(!f.summary.contains("attempt"), "{}", f.summary);
    assert_eq!(d.retries.len(), 1, "the first, recovered by the second");
    // Three calls at once that all fail are three calls, not retries: the first to end is blamed.
    let mut spans = three_attempts([true, true, true]);
    for s in &mut spans[2..] {
        (s.start_unix_nano, s.end_unix_nano) = (1_100_000_000, s.end_unix_nano + 600_000_000);
    }
    spans[3].end_unix_nano -= 1;
    let f = agentrace_doctor::Doctor::default().analyse(&spans).failure.expect("failure");
    assert!(!f.summary.contains("attempt"), "{}", f.summary);
}

#[test]
fn an_agent_that_failed_handing_over_blames_the_hand_off_it_started() {
    // As the OpenAI Agents SDK records a refused hand-off under OpenInference: the `handoff` span
    // (its target never set) is OK and last in the agent's turn; the agent's span has the error.
    let agent: &[(&str, &str)] = &[("openinference.span.kind", "AGENT"), ("graph.node.id", "triage")];
    let chat: &[(&str, &str)] = &[("openinference.span.kind", "LLM")];
    let handoff: &[(&str, &str)] = &[("openinference.span.kind", "TOOL"), ("input.value", "triage")];
    let mut spans = request(&[
        ("POST /chat", None, &[], true),
        ("triage", Some(0), agent, true),
        ("turn", Some(1), &[], false),
        ("response", Some(2), chat, false),
        ("handoff", Some(2), handoff, false),
    ]);
    (spans[3].start_unix_nano, spans[3].end_unix_nano) = (1_100_000_000, 1_500_000_000);
    (spans[4].start_unix_nano, spans[4].end_unix_nano) = (1_600_000_000, 1_700_000_000);
    let f = agentrace_doctor::Doctor::default().analyse(&spans).failure.expect("failure");
    assert_eq!((f.category, f.name.as_str()), (Category::Handoff, "handoff"), "{}", f.summary);
    assert_eq!(f.surfaced_at, Some(spans[1].span_id), "the agent's span is where it surfaced");
    // The same agent failing after its model call, the hand-off done before: the agent's failure.
    (spans[3].start_unix_nano, spans[4].start_unix_nano) = (1_600_000_000, 1_100_000_000);
    spans[4].end_unix_nano = 1_200_000_000;
    let f = agentrace_doctor::Doctor::default().analyse(&spans).failure.expect("failure");
    assert_eq!((f.category, f.name.as_str()), (Category::Agent, "triage"), "{}", f.summary);
}
