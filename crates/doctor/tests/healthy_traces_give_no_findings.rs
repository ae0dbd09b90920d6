//! Healthy controls — several requests per session, concurrent interleaved
//! sessions on shared instances, clocks tens of milliseconds apart — give
//! no findings, no repairs and no failure.

use crate::common;

#[test]
fn healthy_traces_give_no_findings() {
    let healthy: Vec<String> = common::fixture_names().into_iter().filter(|n| n.starts_with("healthy_")).collect();
    assert_eq!(healthy.len(), 3, "{healthy:?}");
    for name in healthy {
        let d = common::analyse(&name);
        assert!(d.findings.is_empty(), "{name}: {:#?}", d.findings);
        assert!(d.repairs.is_empty(), "{name}: {:#?}", d.repairs);
        assert!(d.failure.is_none(), "{name}");
        assert!(d.is_healthy());
        // Every request is one trace, and each request's spans all hang under its root.
        for r in &d.requests {
            assert_eq!(r.original_traces.len(), 1, "{name}");
            assert_eq!(r.spans.iter().filter(|s| s.parent_span_id.is_none()).count(), 1, "{name}");
        }
    }
}

#[test]
fn a_session_with_three_requests_is_three_requests_not_orphans() {
    let d = common::analyse("healthy_session_three_requests");
    assert_eq!(d.sessions.len(), 1);
    assert_eq!(d.sessions[0].id, "sess-many");
    assert_eq!(d.sessions[0].requests, 4, "three chats and one overlapping summary");
}
