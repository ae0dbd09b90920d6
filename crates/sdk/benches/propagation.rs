//! Propagation cost: inject + extract of traceparent + tracestate + baggage.
//!
//! Ours through the JSON envelope and through an `http::HeaderMap`, beside `opentelemetry_sdk`'s
//! `TraceContextPropagator` (and its trace-context + baggage composite) on a `HashMap`, in the
//! same run; and the baggage span processor's cost per span with four entries.
//!
//! Last figures (2026-11-25), `taskset -c 1 cargo bench -p agentrace --bench propagation --
//! --warm-up-time 2 --measurement-time 6`, machine: 2-core VM (load average about 1 during the
//! runs). Two runs of the same build; ratios are within one run, against theirs (tp+ts). Median
//! times, run 1 / run 2, and the figures before the work on the baggage path (commit 8ce591d, two
//! runs under heavier load):
//!
//! | inject + extract                                         | run 1   | run 2   | ratio       | before      |
//! |----------------------------------------------------------|---------|---------|-------------|-------------|
//! | theirs: `TraceContextPropagator`, `HashMap`, tp+ts        | 808 ns  | 806 ns  | 1.00x       | 1.00x       |
//! | ours: JSON envelope, tp+ts                                | 319 ns  | 320 ns  | 0.39-0.40x  | 0.40x       |
//! | ours: `HeaderMap`, tp+ts                                  | 429 ns  | 437 ns  | 0.53-0.54x  | 0.60-0.65x  |
//! | ours: JSON envelope, tp+ts+baggage (4 entries)            | 1.07 us | 1.07 us | 1.33x       | 1.99-2.75x  |
//! | ours: `HeaderMap`, tp+ts+baggage                          | 1.20 us | 1.22 us | 1.49-1.52x  | 1.84-2.10x  |
//! | theirs: TraceContext+Baggage composite, `HashMap`, all 3  | 2.16 us | 2.16 us | 2.67x       | 2.60x       |
//! | floor: SDK `Baggage` of 4 ready entries into a `Context`  | 377 ns  | 377 ns  | 0.47x       |             |
//!
//! With baggage we are still NOT within 1.0x of `TraceContextPropagator`, which does no baggage
//! work (we are 0.50x / 0.56x of the official composite that does). The floor row is why: four
//! entries handed to OpenTelemetry (its `Baggage` re-validates each key with a `memchr` per byte,
//! SipHashes each key, grows its `HashMap` once and rehashes, then the `Context` entry) costs
//! 0.47x of theirs before any parsing, so ours-tp+ts plus the floor is already 0.86x (envelope) /
//! 1.0x (`HeaderMap`). Our own parse, percent-decode check, shared values and write of the four
//! members are what is left (about 0.47x). What moved the figures: a byte-class table and
//! one-pass member parser instead of `split`/`split_once`/`trim_matches` (`memchr` set-up
//! dominated on 10-byte fields), no intermediate `Vec` of members, baggage keys shared per thread,
//! header values written into a `String` of exactly their size (an `http::HeaderValue` then takes
//! the buffer over instead of allocating beside it), and prebuilt `HeaderName`s.
//!
//! Re-run 2026-12-01 on a 2-vCPU AMD EPYC VM (`taskset -c 1`, the bench binary run directly, two
//! full runs): envelope with baggage 998 / 1003 ns against the composite's 1.93 / 1.86 us (0.52x /
//! 0.54x), `HeaderMap` with baggage 0.62x / 0.63x; against `TraceContextPropagator` (tp+ts only,
//! 707 / 679 ns) 1.41x / 1.48x. Propagation with baggage is within the official composite that
//! does the same work; it is not within the propagator that does none of it.
//!
//! Baggage span processor, span start+end with 4 allow-listed entries. Each row is one process;
//! the run-to-run spread of this row alone is wide (one full run gave +155 ns where the next gave
//! +103, with the other rows unchanged), so the figures are six processes of the old and the new
//! code run alternately, same session, `--warm-up-time 1 --measurement-time 3 "span start"`:
//!
//! | per span, over the no-op processor           | six processes (ns)             | median |
//! |----------------------------------------------|--------------------------------|--------|
//! | before (memcmp per candidate key)            | +114 +121 +116 +123 +133 +125  | +122   |
//! | now (key fingerprints, cold value cut)       | +112 +113 +104 +106 +100 +115  | +109   |
//! | floor: 4 static attributes                   | +54 to +62                     | +58    |
//! | floor: 4 shared attributes (counted values)  | +61 to +74                     | +66    |
//!
//! Still NOT within the 100 ns target. The static floor is the SDK's `Span` API: four pushes and
//! the attribute `Vec` regrowing from 4 to 8, which no public API lets a processor reserve. The
//! shared floor adds a counter increment per value and a decrement when the span data is dropped:
//! owned copies instead (an allocation and a free each) measured slower, and a value cannot be
//! static. What is ours is finding the four entries in the context's baggage (about 40 ns; the
//! "pieces" group measures its parts without a span: getting the baggage out of the `Context`
//! and walking its four entries alone is 18.5 ns, and `attributes(cx)`, which adds the matching,
//! the shared values and a `Vec`, is 99 ns): matching keys by length and first/last eight bytes (`Fingerprint`) instead of a
//! `memcmp` per candidate took about 13 ns off the median. Tried and dropped: finding all the
//! values before pushing any (418-420 ns in three runs where this code gave 358-368), forcing
//! `visit` and `clip` inline without the cold cut (no gain).
//!
//! Re-measured 2026-12-02 on a 2-vCPU Intel Xeon VM (`taskset -c 1`, bench binary run directly,
//! `--warm-up-time 1 --measurement-time 3`, three processes): no-op 318-324 ns, the processor
//! +142 to +168 ns over it, the floors +84 to +88 (static) and +85 to +96 (shared). On this machine
//! the SDK's own floor for four shared attributes is within 15 ns of the target, so 100 ns is out
//! of reach for any processor that copies four baggage values through the `Span` API; a profile
//! of our `on_start` puts 39 % of it on the values' reference-count increments (`lock incq`).
//! Tried and dropped: fingerprints from overlapping fixed-size loads instead of a short copy
//! (which compiles to a `memcpy` call for keys under 8 bytes): +144 to +168 against +143 to +152
//! alternately, no measurable change.

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
    // The floor under any processor that copies four shared (reference-counted) values: the same
    // four pushes with a counter increment per value, and a decrement when the span data is
    // dropped, still without any baggage lookup.
    let shared = SdkTracerProvider::builder().with_span_processor(SharedAttributes::new()).build();
    let t_shared = shared.tracer("bench");
    group.bench_function("floor: 4 shared attributes", |b| {
        b.iter(|| {
            let mut span = t_shared.start_with_context("op", black_box(&cx));
            span.set_attribute(KeyValue::new("k", 1));
            span.end();
        })
    });
    group.finish();

    // Pieces of the processor's own work, without a span: what any baggage processor must do
    // (get the baggage, walk it), and all of ours with the attributes collected in a `Vec`.
    let mut pieces = c.benchmark_group("baggage processor pieces");
    pieces.bench_function("cx.baggage() and iterate", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (k, (v, _)) in black_box(&cx).baggage().iter() {
                n += k.as_str().len() + v.as_str().len();
            }
            black_box(n)
        })
    });
    let p = BaggageSpanProcessor::allow(["session.id", "user.id", "app.tenant", "app.agent.name"]);
    pieces.bench_function("attributes(cx) into a Vec", |b| b.iter(|| black_box(p.attributes(black_box(&cx)))));
    pieces.finish();
}

#[derive(Debug)]
struct SharedAttributes(Vec<KeyValue>);

impl SharedAttributes {
    fn new() -> Self {
        let value = |v: &str| opentelemetry::StringValue::from(Arc::<str>::from(v));
        SharedAttributes(
            [("session.id", "s-1234"), ("user.id", "u-42"), ("app.tenant", "acme"), ("app.agent.name", "planner")]
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, value(v)))
                .collect(),
        )
    }
}

impl SpanProcessor for SharedAttributes {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {
        for kv in &self.0 {
            span.set_attribute(kv.clone());
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
