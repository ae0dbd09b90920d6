//! A consumer that started a new trace is joined to the producer that sent
//! its message: found, repaired, and marked as inferred in the exported view.

use crate::common;

use agentrace_doctor::{Config, Doctor, Evidence, FindingKind, RepairMode};
use agentrace_model::{SpanKind, Value};

#[test]
fn orphan_consumer_is_joined_to_its_producer() {
    let spans = common::load("broken_queue_message_id");
    let (d, view) = Doctor::new(Config::default()).analyse_with_view(&spans);
    let producer = spans.iter().find(|s| s.kind == SpanKind::Producer).expect("producer");
    let consumer = spans.iter().find(|s| s.kind == SpanKind::Consumer).expect("consumer");

    let orphan = d.findings.iter().find(|f| f.kind == FindingKind::OrphanRoot).expect("orphan found");
    assert_eq!(orphan.span_id, consumer.span_id);
    assert!(orphan.message.contains("messaging.message.id=1767225600200-0"), "{}", orphan.message);
    assert!(d.findings.iter().any(|f| f.kind == FindingKind::TraceDiscontinuity));

    assert_eq!(d.repairs.len(), 1);
    let r = &d.repairs[0];
    assert!(r.applied);
    assert_eq!(
        (r.evidence, r.parent_span_id, r.parent_trace_id),
        (Evidence::MessageId, producer.span_id, producer.trace_id)
    );

    // Reparent mode: one trace, the consumer under the producer, originals kept.
    assert!(view.iter().all(|s| s.trace_id == producer.trace_id));
    let joined = view.iter().find(|s| s.span_id == consumer.span_id).expect("consumer exported");
    assert_eq!(joined.parent_span_id, Some(producer.span_id));
    assert_eq!(joined.attributes.str("agentrace.repair.evidence"), Some("messaging.message.id"));
    assert_eq!(joined.attributes.get("agentrace.repair.confidence"), Some(&Value::Double(0.97)));
    let original = consumer.trace_id.to_string();
    assert_eq!(joined.attributes.str("agentrace.repair.original_trace_id"), Some(original.as_str()));
    // The consumer's children moved with it and say so.
    let child = view.iter().find(|s| s.parent_span_id == Some(consumer.span_id)).expect("child");
    assert_eq!(child.attributes.str("agentrace.repair.original_trace_id"), Some(original.as_str()));

    // The queue wait became a synthetic span from the producer's end to the consumer's start.
    let transit =
        view.iter().find(|s| s.attributes.get("agentrace.synthetic") == Some(&Value::Bool(true))).expect("transit");
    assert_eq!(transit.parent_span_id, Some(producer.span_id));
    assert_eq!((transit.start_unix_nano, transit.end_unix_nano), (producer.end_unix_nano, consumer.start_unix_nano));
    assert_eq!(view.len(), spans.len() + 1);
}

#[test]
fn link_mode_keeps_ids_and_adds_an_inferred_parent_link() {
    let spans = common::load("broken_queue_message_id");
    let config = Config::default().with_repair_mode(RepairMode::Link);
    let (_, view) = Doctor::new(config).analyse_with_view(&spans);
    let consumer = spans.iter().find(|s| s.kind == SpanKind::Consumer).expect("consumer");
    let producer = spans.iter().find(|s| s.kind == SpanKind::Producer).expect("producer");
    let exported = view.iter().find(|s| s.span_id == consumer.span_id).expect("exported");
    assert_eq!((exported.trace_id, exported.parent_span_id), (consumer.trace_id, None));
    let link = exported.links.last().expect("inferred link");
    assert_eq!((link.trace_id, link.span_id), (producer.trace_id, producer.span_id));
    assert_eq!(link.attributes.str("agentrace.link.kind"), Some("inferred_parent"));
    // Everything else is exported exactly as it arrived, but for the
    // rollups written onto agent spans.
    let rollup = |k: &str| k.starts_with("app.agent.subtree.") || k == "app.agent.graph.depth";
    let mut rolled_up = 0;
    for s in &spans {
        if s.span_id != consumer.span_id {
            let mut out = view.iter().find(|v| v.span_id == s.span_id).expect("exported").clone();
            rolled_up += usize::from(out.attributes.0.iter().any(|(k, _)| rollup(k)));
            out.attributes.0.retain(|(k, _)| !rollup(k));
            assert_eq!(&out, s, "{} unchanged", s.name);
        }
    }
    assert!(rolled_up > 0, "agent spans carry their subtree's totals");
}

#[test]
fn an_ambiguous_join_names_the_key_that_would_make_it_exact() {
    // Two sessions each sent a job; the consumer lost its context. The
    // message IDs repeat ("1" in both), so the hint asks for unique ones.
    let spans = common::load("ambiguous_two_producers");
    let d = Doctor::new(Config::default()).analyse(&spans);
    let orphan = d.findings.iter().find(|f| f.kind == FindingKind::OrphanRoot).expect("orphan found");
    assert!(orphan.message.contains("2 possible callers fit"), "{}", orphan.message);
    assert!(orphan.message.contains("the same `messaging.message.id` is on each of them"), "{}", orphan.message);

    // The app's own `job.id` on the consumer and on one producer (the
    // other sent another job), no message ID: time alone fits both, and the
    // hint names `job.id` and the one producer that carries it.
    let mut spans = spans;
    let mut producers = 0;
    for s in &mut spans {
        let attrs: Vec<(String, Value)> = s
            .attributes
            .iter()
            .filter(|(k, _)| *k != "messaging.message.id")
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        s.attributes = Default::default();
        for (k, v) in attrs {
            s.attributes.set(k, v);
        }
        match s.kind {
            SpanKind::Consumer => s.attributes.set("job.id", "job-7f3a"),
            SpanKind::Producer => {
                producers += 1;
                s.attributes.set("job.id", if producers == 2 { "job-7f3a" } else { "job-0c11" });
            }
            _ => {}
        }
    }
    let second = spans.iter().filter(|s| s.kind == SpanKind::Producer).nth(1).expect("two producers");
    let d = Doctor::new(Config::default()).analyse(&spans);
    assert!(d.repairs.iter().all(|r| !r.applied), "time alone applies nothing: {:#?}", d.repairs);
    let orphan = d.findings.iter().find(|f| f.kind == FindingKind::OrphanRoot).expect("orphan found");
    assert!(
        orphan.message.contains("`job.id` = \"job-7f3a\" is on this span and on `send jobs` (planner) only")
            && orphan.message.contains("record it as `messaging.message.id` on both sides"),
        "{}",
        orphan.message
    );
    assert_eq!(second.attributes.str("job.id"), Some("job-7f3a"));
}

/// The fixture's producer and orphan consumer, with a third span beside
/// them: a consumer of another service that received the same message in
/// the producer's trace (its child), before the orphan started, from
/// `received_from`; the producer sent to `sent_to`, the orphan took it
/// from `research`.
fn relayed(sent_to: &str, received_from: &str) -> (Vec<agentrace_model::Span>, agentrace_model::Span) {
    use std::sync::Arc;
    let mut spans = common::load("broken_queue_message_id");
    let producer = spans.iter().find(|s| s.kind == SpanKind::Producer).expect("producer").clone();
    for s in spans.iter_mut() {
        match s.kind {
            SpanKind::Producer => s.attributes.set("messaging.destination.name", sent_to),
            SpanKind::Consumer => s.attributes.set("messaging.destination.name", "research"),
            _ => {}
        }
    }
    let mut first = producer.clone();
    first.name = format!("{received_from} receive");
    first.kind = SpanKind::Consumer;
    first.span_id = agentrace_model::SpanId::from_hex("00000000000000aa").unwrap();
    first.parent_span_id = Some(producer.span_id);
    first.start_unix_nano = producer.end_unix_nano;
    first.end_unix_nano = producer.end_unix_nano + 1_000_000;
    first.attributes.set("messaging.destination.name", received_from);
    first.resource = Arc::new(agentrace_model::Resource::for_service("router"));
    spans.push(first.clone());
    (spans, first)
}

#[test]
fn a_consumer_whose_message_went_on_without_its_headers_joins_the_one_that_received_it() {
    // A router received the job where the producer sent it and re-published
    // its body to `research` without the headers (no producer span of its
    // own): the worker's orphan joins the router's consumer.
    let (spans, router) = relayed("router.in", "router.in");
    let d = Doctor::new(Config::default()).analyse(&spans);
    let r = d.repairs.iter().find(|r| r.applied).expect("joined");
    assert_eq!((r.evidence, r.parent_span_id), (Evidence::MessageId, router.span_id), "{r:?}");
    assert!(r.detail.contains("received by"), "{}", r.detail);
}

#[test]
fn a_sibling_consumer_of_a_fan_out_is_no_relay() {
    // A topic exchange delivered the message to two queues, whose names are
    // not the routing key the producer recorded: the consumer that kept its
    // context is a sibling of the orphan, not the one that sent it on.
    let (spans, sibling) = relayed("orders.created", "billing");
    let d = Doctor::new(Config::default()).analyse(&spans);
    assert!(d.repairs.iter().all(|r| r.parent_span_id != sibling.span_id || !r.applied), "{:#?}", d.repairs);
}

#[test]
fn an_aio_pika_publish_names_its_queue_after_the_exchange() {
    // aio-pika's instrumentation records a publish to the default exchange
    // as `,research` and the delivery as `research`.
    let mut spans = common::load("broken_queue_message_id");
    for s in spans.iter_mut().filter(|s| matches!(s.kind, SpanKind::Producer | SpanKind::Consumer)) {
        s.attributes.set("messaging.system", "rabbitmq");
        let dest = if s.kind == SpanKind::Producer { ",research" } else { "research" };
        s.attributes.set("messaging.destination.name", dest);
    }
    let d = Doctor::new(Config::default()).analyse(&spans);
    assert!(d.repairs.iter().any(|r| r.applied && r.evidence == Evidence::MessageId), "{:#?}", d.repairs);
    // Elsewhere a comma is part of the name.
    for s in spans.iter_mut().filter(|s| s.kind == SpanKind::Producer) {
        s.attributes.set("messaging.system", "kafka");
    }
    let d = Doctor::new(Config::default()).analyse(&spans);
    assert!(d.repairs.iter().all(|r| !r.applied), "{:#?}", d.repairs);
}
