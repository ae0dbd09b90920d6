//! Propagation cost: inject + extract of traceparent + tracestate + baggage.
//!
//! Ours through the JSON envelope and through an `http::HeaderMap`, beside `opentelemetry_sdk`'s
//! `TraceContextPropagator` (and its trace-context + baggage composite) on a `HashMap`, in the
//! same run; and the baggage span processor's cost per span with four entries.
//!
//! Last figures (2026-11-25), `cargo bench -p agentrace --bench propagation -- --warm-up-time 2
//! --measurement-time 6`, machine: 2 cores, shared with two other builds (load average about 3),
//! so absolute times are inflated; ratios are within one run. Median times:
//!
//! | inject + extract                                         | time     | ratio to theirs (tp+ts) |
//! |----------------------------------------------------------|----------|-------------------------|
//! | theirs: `TraceContextPropagator`, `HashMap`, tp+ts        | 845 ns   | 1.00x                   |
//! | ours: JSON envelope, tp+ts                                | 340 ns   | 0.40x                   |
//! | ours: `HeaderMap`, tp+ts                                  | 547 ns   | 0.65x                   |
//! | ours: JSON envelope, tp+ts+baggage (4 entries)            | 1.68 us  | 1.99x                   |
//! | ours: `HeaderMap`, tp+ts+baggage                          | 1.77 us  | 2.10x                   |
//! | theirs: TraceContext+Baggage composite, `HashMap`, all 3  | 2.20 us  | 2.60x                   |
//!
//! (An earlier run under heavier load: 0.40x, 0.83x, 1.75x, 2.62x, 2.61x.)
//!
//! Like for like, ours is 0.40x (envelope) / 0.65x (`HeaderMap`) of `TraceContextPropagator` for
//! trace context, and 0.77x / 0.81x of the official composite with baggage. With baggage we are
//! NOT within 1.0x of `TraceContextPropagator` alone, which does no baggage work: building the
//! SDK's `Baggage` (a `HashMap`, one allocation per key and per value) and a second `Context`
//! entry is most of the difference.
//!
//! Baggage span processor, span start+end with 4 allow-listed entries: 266 ns with a no-op
//! processor, 418 ns with ours: +152 ns per span (+191 ns in the earlier run), above the 100 ns
//! target: four attribute pushes with a `Vec` regrowth inside the SDK span, and the shared-string
//! clones and drops of the four values.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use agentrace::baggage::BaggageSpanProcessor;
use agentrace::carrier::ContextCarrier;
use agentrace::carrier::envelope::ContextEnvelope;
use agentrace::propagation::W3CPropagator;
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
const BAGGAGE: &str = "session.id=s-1234,user.id=u-42,app.tenant=acme,app.agent.name=planner";

fn remote_context() -> Context {
    let wire: HashMap<String, String> =
        [("traceparent", TRACEPARENT), ("tracestate", TRACESTATE), ("baggage", BAGGAGE)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    W3CPropagator::new().extract_with_context(&Context::new(), &wire)
}

fn propagation(c: &mut Criterion) {
    let cx = remote_context();
    let mut group = c.benchmark_group("inject+extract tp+ts+baggage");

    group.bench_function("ours: JSON envelope", |b| {
        b.iter(|| {
            let env = ContextEnvelope::from_context(black_box(&cx));
            black_box(W3CPropagator::new().extract_with_context(&Context::new(), &env))
        })
    });
    group.bench_function("ours: HeaderMap", |b| {
        b.iter(|| {
            let mut headers = HeaderMap::new();
            headers.inject_context(black_box(&cx));
            black_box(headers.extract_context())
        })
    });

    // Like for like with TraceContextPropagator: the same context without baggage.
    let cx_no_baggage = Context::new().with_remote_span_context(cx.span().span_context().clone());
    group.bench_function("ours: JSON envelope (tp+ts only)", |b| {
        b.iter(|| {
            let env = ContextEnvelope::from_context(black_box(&cx_no_baggage));
            black_box(W3CPropagator::new().extract_with_context(&Context::new(), &env))
        })
    });
    group.bench_function("ours: HeaderMap (tp+ts only)", |b| {
        b.iter(|| {
            let mut headers = HeaderMap::new();
            headers.inject_context(black_box(&cx_no_baggage));
            black_box(headers.extract_context())
        })
    });

    let theirs_tc = TraceContextPropagator::new();
    group.bench_function("theirs: TraceContextPropagator, HashMap (tp+ts only)", |b| {
        b.iter(|| {
            let mut map = HashMap::new();
            theirs_tc.inject_context(black_box(&cx), &mut map);
            black_box(theirs_tc.extract_with_context(&Context::new(), &map))
        })
    });
    let theirs_all = TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]);
    group.bench_function("theirs: TraceContext+Baggage composite, HashMap", |b| {
        b.iter(|| {
            let mut map = HashMap::new();
            theirs_all.inject_context(black_box(&cx), &mut map);
            black_box(theirs_all.extract_with_context(&Context::new(), &map))
        })
    });

    // The floor under any propagator that hands baggage to OpenTelemetry: building the SDK's
    // `Baggage` from four ready-made shared keys and values and storing it in a context, no
    // parsing or writing at all.
    let entries: Vec<(opentelemetry::Key, opentelemetry::StringValue)> =
        [("session.id", "s-1234"), ("user.id", "u-42"), ("app.tenant", "acme"), ("app.agent.name", "planner")]
            .into_iter()
            .map(|(k, v)| (opentelemetry::Key::from(Arc::<str>::from(k)), Arc::<str>::from(v).into()))
            .collect();
    group.bench_function("floor: SDK Baggage of 4 ready entries into a Context", |b| {
        b.iter(|| {
            let mut bag = Baggage::new();
            for (k, v) in black_box(&entries) {
                bag.insert(k.clone(), v.clone());
            }
            black_box(Context::new().with_baggage(bag))
        })
    });
    group.finish();
}

fn baggage_processor(c: &mut Criterion) {
    let cx = remote_context();
    // Both providers have exactly one processor, so the SDK does the same export-data work on end
    // for both; the difference is what the baggage processor adds (on_start + 4 attributes).
    let plain = SdkTracerProvider::builder().with_span_processor(NoopProcessor).build();
    let with_processor = SdkTracerProvider::builder()
        .with_span_processor(BaggageSpanProcessor::allow(["session.id", "user.id", "app.tenant", "app.agent.name"]))
        .build();
    let (t_plain, t_proc) = (plain.tracer("bench"), with_processor.tracer("bench"));
    let mut group = c.benchmark_group("span start+end, 4 baggage entries");
    group.bench_function("no-op processor", |b| {
        b.iter(|| {
            let mut span = t_plain.start_with_context("op", black_box(&cx));
            span.set_attribute(KeyValue::new("k", 1));
            span.end();
        })
    });
    group.bench_function("baggage processor (4 allow-listed entries)", |b| {
        b.iter(|| {
            let mut span = t_proc.start_with_context("op", black_box(&cx));
            span.set_attribute(KeyValue::new("k", 1));
            span.end();
        })
    });
    // The floor under any processor that adds four attributes through the SDK's `Span` API: four
    // static attributes, no baggage lookup and no shared-string counters.
    let floor = SdkTracerProvider::builder().with_span_processor(StaticAttributes).build();
    let t_floor = floor.tracer("bench");
    group.bench_function("floor: 4 static attributes", |b| {
        b.iter(|| {
            let mut span = t_floor.start_with_context("op", black_box(&cx));
            span.set_attribute(KeyValue::new("k", 1));
            span.end();
        })
    });
    group.finish();
}

#[derive(Debug)]
struct StaticAttributes;

impl SpanProcessor for StaticAttributes {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {
        for key in ["session.id", "user.id", "app.tenant", "app.agent.name"] {
            span.set_attribute(KeyValue::new(key, "static"));
        }
    }
    fn on_end(&self, _span: SpanData) {}
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[derive(Debug)]
struct NoopProcessor;

impl SpanProcessor for NoopProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}
    fn on_end(&self, _span: SpanData) {}
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

criterion_group!(benches, propagation, baggage_processor);
criterion_main!(benches);
