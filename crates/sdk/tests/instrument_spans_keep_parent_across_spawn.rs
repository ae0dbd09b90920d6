//! `tracing` users: an `#[instrument]` function spawned from inside another `#[instrument]`
//! span, through `agentrace::task`, becomes its child in the OpenTelemetry trace exported via
//! `tracing-opentelemetry`; and a context extracted from a carrier parents `#[instrument]` spans.
//! (One test per binary: it installs the global subscriber, which spawned tasks need.)

mod common;

use agentrace::carrier::ContextCarrier;
use agentrace::carrier::envelope::ContextEnvelope;
use agentrace::task;
use common::Telemetry;
use tracing::instrument;
use tracing_subscriber::layer::SubscriberExt;

#[instrument]
async fn worker(n: u32) {
    tracing::info!(n, "working");
}

#[instrument]
fn blocking_worker() {}

#[instrument]
async fn orchestrate() {
    task::spawn(worker(1)).await.unwrap();
    task::spawn_blocking(blocking_worker).await.unwrap();
    // The control: a bare spawn has no current tracing span, so it becomes a root.
    tokio::spawn(bare_worker()).await.unwrap();
}

#[instrument]
async fn bare_worker() {}

#[instrument]
fn handle_message() {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instrumented_children_keep_their_parent() {
    let t = Telemetry::new();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(t.tracer("tracing")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    orchestrate().await;

    // A message from another process: its context becomes the parent of #[instrument] spans.
    let envelope = ContextEnvelope {
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        ..Default::default()
    };
    let remote = envelope.extract_context();
    agentrace::task::Captured::from_context(remote).in_scope(handle_message);

    let parent = t.span("orchestrate");
    for name in ["worker", "blocking_worker"] {
        let s = t.span(name);
        assert_eq!(s.parent_span_id, parent.span_context.span_id(), "{name} lost its parent");
        assert_eq!(s.span_context.trace_id(), parent.span_context.trace_id());
    }
    assert_ne!(t.span("bare_worker").span_context.trace_id(), parent.span_context.trace_id());
    let handled = t.span("handle_message");
    assert_eq!(format!("{:032x}", handled.span_context.trace_id()), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(format!("{:016x}", handled.parent_span_id), "b7ad6b7169203331");
}
