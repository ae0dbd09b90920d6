//! A diagnosis given only part of what ran beside its spans (a live
//! pipeline's context cut at `pipeline.max_context_spans`) is told which
//! traces were left out, and is then never surer than with them: a join by
//! time alone that a left-out trace could contest is only suggested, a
//! break that rests on the absence of an entry point of the service is not
//! claimed, and joins by a key both sides carry stand.

use crate::common;

use std::sync::Arc;

use agentrace_doctor::{Config, Diagnosis, Doctor, Evidence, FindingKind, LeftOut};
use agentrace_model::Span;

/// The fixture's diagnosis with `left_out`.
fn beside(spans: &[Span], left_out: &LeftOut) -> Diagnosis {
    Doctor::new(Config::default()).analyse_with_totals_beside(spans, false, left_out).diagnosis
}

/// The orphan of the fixture's one repair, as the full diagnosis has it.
fn orphan(spans: &[Span], full: &Diagnosis) -> Span {
    let r = &full.repairs[0];
    spans.iter().find(|s| s.span_id == r.span_id).expect("the orphan is a span of the fixture").clone()
}

/// A left-out trace of `service` that ran from `start` to `end`.
fn one(service: &str, start: u64, end: u64) -> LeftOut {
    let mut l = LeftOut::new();
    l.add(&[Arc::from(service)], start, end);
    l
}

const HOUR: u64 = 3_600_000_000_000;

#[test]
fn a_left_out_trace_of_its_service_holds_a_same_instance_join_and_its_break() {
    let spans = common::load("broken_lost_context");
    let full = common::analyse("broken_lost_context");
    assert_eq!(full.repairs.len(), 1);
    assert!(full.repairs[0].applied && full.repairs[0].evidence == Evidence::SameInstance);
    let o = orphan(&spans, &full);
    assert!(full.findings.iter().any(|f| f.span_id == o.span_id && f.kind == FindingKind::LostContext));

    // Its service's history, an hour before: it may hold this root started
    // while the instance was idle (an entry point), so neither the join nor
    // the break is claimed.
    let cut = beside(&spans, &one(o.service_name(), o.start_unix_nano - HOUR, o.start_unix_nano - HOUR + 1));
    assert_eq!(cut.repairs.len(), 1, "{:#?}", cut.repairs);
    assert!(!cut.repairs[0].applied);
    assert!(cut.repairs[0].reason.as_deref().is_some_and(|r| r.contains("left out")), "{:?}", cut.repairs[0].reason);
    assert!(!cut.findings.iter().any(|f| f.span_id == o.span_id), "{:#?}", cut.findings);

    // Another service's trace an hour before contests nothing.
    let far = beside(&spans, &one("elsewhere", o.start_unix_nano - HOUR, o.start_unix_nano - HOUR + 1));
    assert_eq!(far.repairs, full.repairs);
    assert_eq!(far.findings, full.findings);
}

#[test]
fn a_left_out_trace_beside_an_orphan_holds_a_join_by_time_but_not_the_break() {
    let spans = common::load("broken_http_heuristic");
    let full = common::analyse("broken_http_heuristic");
    assert!(full.repairs[0].applied && full.repairs[0].evidence == Evidence::EnclosingClient);
    let o = orphan(&spans, &full);

    // Any service's trace running while the orphan ran may hold a rival
    // call: suggested only. The client call that reached no server still
    // says the hop broke.
    let cut = beside(&spans, &one("elsewhere", o.start_unix_nano, o.end_unix_nano));
    assert!(cut.repairs.iter().all(|r| !r.applied), "{:#?}", cut.repairs);
    assert!(cut.repairs[0].reason.as_deref().is_some_and(|r| r.contains("left out")));
    assert!(cut.findings.iter().any(|f| f.span_id == o.span_id && f.kind == FindingKind::OrphanRoot));

    // One that ended before the orphan started (beyond the clock skew
    // allowed) could not have called it.
    let before = beside(&spans, &one("elsewhere", o.start_unix_nano - HOUR, o.start_unix_nano - HOUR + 1));
    assert_eq!(before.repairs, full.repairs);
}

#[test]
fn joins_by_a_key_both_sides_carry_stand_whatever_was_left_out() {
    let spans = common::load("broken_queue_message_id");
    let full = common::analyse("broken_queue_message_id");
    assert!(full.repairs.iter().all(|r| r.applied && r.evidence == Evidence::MessageId));
    let services: Vec<Arc<str>> = spans.iter().map(|s| Arc::from(s.service_name())).collect();
    let mut everything = LeftOut::new();
    everything.add(&services, 0, u64::MAX);
    let cut = beside(&spans, &everything);
    assert_eq!(cut.repairs, full.repairs);
    assert_eq!(cut.findings, full.findings);
}
