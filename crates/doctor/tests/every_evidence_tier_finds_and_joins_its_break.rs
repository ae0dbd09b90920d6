//! Each injected break is found with the right kind, and each evidence tier
//! joins it to the right parent with the confidence its strength earns.

use crate::common;

use agentrace_doctor::{Evidence, FindingKind};

#[test]
fn every_evidence_tier_finds_and_joins_its_break() {
    // fixture, kind reported at the orphan, evidence, applied
    let cases = [
        ("broken_queue_link", None, Evidence::Link, true),
        ("broken_queue_message_id", Some(FindingKind::OrphanRoot), Evidence::MessageId, true),
        ("broken_mcp_tool_root", Some(FindingKind::ToolRoot), Evidence::McpRequest, true),
        ("broken_tool_call_id", Some(FindingKind::ToolRoot), Evidence::ToolCallId, true),
        ("broken_http_heuristic", Some(FindingKind::OrphanRoot), Evidence::EnclosingClient, true),
        ("broken_lost_context", Some(FindingKind::LostContext), Evidence::SameInstance, true),
        ("ambiguous_two_producers", Some(FindingKind::OrphanRoot), Evidence::MessageId, false),
    ];
    for (name, kind, evidence, applied) in cases {
        let d = common::analyse(name);
        assert!(!d.repairs.is_empty(), "{name}");
        for r in &d.repairs {
            assert_eq!(r.evidence, evidence, "{name}");
            assert_eq!(r.applied, applied, "{name}: {r:?}");
            // The parent is always in another trace than the orphan.
            assert_ne!(r.trace_id, r.parent_trace_id, "{name}");
            let orphan_finding = d.findings.iter().find(|f| f.span_id == r.span_id);
            assert_eq!(orphan_finding.map(|f| f.kind), kind, "{name}");
        }
        if applied {
            assert!(d.requests.iter().any(|r| r.original_traces.len() > 1), "{name}");
            // A consumer that links to its producer started a new trace the
            // way the messaging conventions allow: joined, not broken.
            let split = d.findings.iter().any(|f| f.kind == FindingKind::TraceDiscontinuity);
            assert_eq!(split, evidence != Evidence::Link, "{name}: {:#?}", d.findings);
        }
    }
}

#[test]
fn mcp_joins_need_both_the_session_and_the_request_id() {
    let d = common::analyse("broken_mcp_tool_root");
    // Request id 3 exists in two MCP sessions; each server joins its own client.
    assert_eq!(d.repairs.len(), 3);
    for r in &d.repairs {
        assert!(r.applied);
        assert!(r.detail.starts_with("mcp.session.id="), "{}", r.detail);
    }
    let details: Vec<&str> = d.repairs.iter().map(|r| r.detail.as_str()).collect();
    assert!(details.contains(&"mcp.session.id=9e9e, jsonrpc.request.id=3"));
    assert!(details.contains(&"mcp.session.id=5f1c, jsonrpc.request.id=3"));
}

#[test]
fn missing_parents_and_timing_gaps_are_found() {
    let d = common::analyse("broken_missing_parent");
    let missing: Vec<_> = d.findings.iter().filter(|f| f.kind == FindingKind::MissingParent).collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].name, "summarise batch");

    let d = common::analyse("broken_timing_gap");
    assert_eq!(d.findings.len(), 1);
    assert_eq!(d.findings[0].kind, FindingKind::TimingGap);
    let unexplained = d.time_breakdown.iter().find(|t| t.category == agentrace_doctor::Category::Unexplained);
    assert_eq!(unexplained.map(|t| t.ms), Some(710.0));
}

#[test]
fn a_busy_replica_of_the_same_service_is_not_blamed_for_lost_context() {
    let d = common::analyse("broken_lost_context");
    let r = d.repairs.iter().find(|r| r.applied).expect("applied");
    let request = d.requests.iter().find(|q| q.original_traces.contains(&r.parent_trace_id)).expect("request");
    assert_eq!(request.session.as_deref(), Some("sess-c"), "joined to its own instance's work, not sess-d's replica");
}

/// A tool server's root inside a call of the same tool made by another service (a gateway that
/// forwards without `_meta`) is joined to it; a short call of that tool that lies inside the
/// root is no caller, however close the two start and end: a skewed clock is shifted, not
/// stretched.
#[test]
fn an_enclosing_tool_call_must_last_as_long_as_the_root() {
    use std::sync::Arc;

    use agentrace_doctor::{Config, Doctor};
    use agentrace_model::{Resource, Span, SpanId, SpanKind, TraceId};

    const MS: u64 = 1_000_000;
    let spans = |call: (u64, u64)| {
        let at = |s: &mut Span, service: &str, (start, end): (u64, u64)| {
            s.resource = Arc::new(Resource::for_service(service));
            s.start_unix_nano = 1_700_000_000_000 * MS + start * MS;
            s.end_unix_nano = 1_700_000_000_000 * MS + end * MS;
        };
        let tool = |s: &mut Span| {
            s.attributes.set("gen_ai.operation.name", "execute_tool");
            s.attributes.set("gen_ai.tool.name", "search_docs");
        };
        let (a, b) = (TraceId::new([1; 16]).unwrap(), TraceId::new([2; 16]).unwrap());
        let mut root = Span::new(a, SpanId::new([1; 8]).unwrap(), None, "POST /run");
        root.kind = SpanKind::Server;
        at(&mut root, "gateway", (0, 1000));
        let mut forward = Span::new(a, SpanId::new([2; 8]).unwrap(), root.span_id.into(), "execute_tool search_docs");
        tool(&mut forward);
        at(&mut forward, "gateway", call);
        let mut server = Span::new(b, SpanId::new([3; 8]).unwrap(), None, "execute_tool search_docs");
        server.kind = SpanKind::Server;
        tool(&mut server);
        at(&mut server, "tools", (250, 400));
        vec![root, forward, server]
    };
    let doctor = Doctor::new(Config::default());
    // The forwarding call encloses the server's root: joined.
    let d = doctor.analyse(&spans((240, 460)));
    let joined: Vec<_> = d.repairs.iter().filter(|r| r.applied).map(|r| r.evidence).collect();
    assert_eq!(joined, [Evidence::EnclosingToolCall], "{:#?}", d.repairs);
    // A 3 ms call that starts 50 ms into the 150 ms root, inside the skew allowance at both
    // ends: not its caller.
    let d = doctor.analyse(&spans((300, 303)));
    assert!(d.repairs.iter().all(|r| !r.applied), "{:#?}", d.repairs);
}
