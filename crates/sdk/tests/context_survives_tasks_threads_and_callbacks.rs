//! In-process hand-offs: a span started inside `tokio::spawn`, `spawn_blocking`, a thread, a
//! rayon job or a callback through our helpers has the spawning span as parent; the same work
//! through the bare primitives starts a new root (the control that shows the test can fail).

mod common;

use std::sync::mpsc;

use agentrace::task::{self, Captured, FutureContextExt};
use common::Telemetry;
use opentelemetry::Context;
use opentelemetry::trace::{TraceContextExt, Tracer};
use opentelemetry_sdk::trace::SdkTracer;
use rayon::prelude::*;

fn child(tracer: &SdkTracer, name: &'static str) {
    tracer.in_span(name, |_| {});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helpers_keep_the_parent_and_bare_primitives_lose_it() {
    let t = Telemetry::new();
    let tracer = t.tracer("svc");
    let parent = tracer.start("parent");
    let cx = Context::current_with_span(parent);
    let guard = cx.clone().attach();

    let (t1, t2, t3, t4, t5, t6, t7) = (
        tracer.clone(),
        tracer.clone(),
        tracer.clone(),
        tracer.clone(),
        tracer.clone(),
        tracer.clone(),
        tracer.clone(),
    );
    task::spawn(async move { child(&t1, "tokio::spawn") }).await.unwrap();
    task::spawn_blocking(move || child(&t2, "spawn_blocking")).await.unwrap();
    task::spawn_thread(move || child(&t3, "thread")).join().unwrap();
    let (tx, rx) = mpsc::channel();
    task::rayon_spawn(move || {
        child(&t4, "rayon::spawn");
        tx.send(()).unwrap();
    });
    rx.recv().unwrap();
    let wrapped = Captured::current().wrap_fn(move |_: u32| child(&t5, "par_iter"));
    (0..4u32).into_par_iter().for_each(wrapped);
    let callback = Captured::current().wrap_once(move || child(&t6, "callback"));
    std::thread::spawn(callback).join().unwrap();
    tokio::spawn(async move { child(&t7, "in_current_context") }.in_current_context()).await.unwrap();

    let t8 = tracer.clone();
    tokio::spawn(async move { child(&t8, "bare tokio::spawn") }).await.unwrap();
    let t9 = tracer.clone();
    std::thread::spawn(move || child(&t9, "bare thread")).join().unwrap();

    drop(guard);
    cx.span().end();
    let parent_id = cx.span().span_context().span_id();
    let trace_id = cx.span().span_context().trace_id();
    let spans = t.spans();
    for name in
        ["tokio::spawn", "spawn_blocking", "thread", "rayon::spawn", "par_iter", "callback", "in_current_context"]
    {
        let matching: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert!(!matching.is_empty(), "{name} span missing");
        for s in matching {
            assert_eq!(s.parent_span_id, parent_id, "{name} lost its parent");
            assert_eq!(s.span_context.trace_id(), trace_id);
        }
    }
    assert_eq!(spans.iter().filter(|s| s.name == "par_iter").count(), 4);
    for name in ["bare tokio::spawn", "bare thread"] {
        let s = t.span(name);
        assert_ne!(s.span_context.trace_id(), trace_id, "{name}: the control should be a new root");
    }
}
