//! What each step of a span's road costs, per span: decoding the OTLP
//! request, redacting it, encoding it once for the store and the exporters,
//! packing it for the live pipeline, unpacking a held trace for a
//! diagnosis, and diagnosing it alone and with the neighbours a closing
//! batch is diagnosed with. The spans are the load generator's
//! (`benches/support/agent_spans.rs`, `--shape agents`): one request of 100
//! agent spans of about 20 attributes each. Criterion reports time per
//! request; the figures below are per span (÷ 100).
//!
//! Last figures (`cargo bench -p agentrace-collector --bench span_path --
//! --warm-up-time 2 --measurement-time 5`, bench profile, 2-vCPU Debian VM,
//! AMD EPYC, rustc 1.95, 2026-12-01, nothing else running), criterion's
//! median, and the ratio to decoding, the step every span takes:
//!
//! | step, one request of 100 agent spans | per span | ratio |
//! |---|---|---|
//! | decode (OTLP protobuf) | 2.56 µs | 1.0 |
//! | of which the decoded-size walk (later run, below) | 0.32–0.34 µs | 0.13 |
//! | clone the decoded request (what redact is given) | 1.07 µs | 0.42 |
//! | redact (default policy), its clone taken off | 0.94 µs; 0.60–0.65 µs later (below) | 0.37; 0.24 |
//! | encode once (`wire::Encoded`) | 0.76 µs | 0.29 |
//! | pack (LZ4 per trace) | 0.35 µs | 0.14 |
//! | unpack a held trace | 2.90 µs | 1.13 |
//! | diagnose the request alone | 0.56 µs | 0.22 |
//! | diagnose it with five requests beside it (600 spans) | 0.51 µs per span read, 3.06 µs per span of the request | 0.20 |
//!
//! A span received by the full pipeline is decoded, redacted, encoded,
//! packed, and then unpacked and diagnosed once for each diagnosis whose
//! context holds its trace (about 8 times at 10k spans/s offered,
//! `agentrace_pipeline_diagnosed_spans_total` over spans received; see
//! `examples/loadgen.rs`): unpacking, times eight, is the largest part of
//! the 40 µs a span costs the live collector; the doctor's own reading and
//! reasoning is a fifth of what decoding the spans for it costs.
//!
//! Later (2026-12-01, evening, same machine, `taskset -c 1`, the bench
//! binary run directly, three runs each, old and new alternately): redact
//! with its clone 207–237 µs per request before clean attribute keys were
//! remembered per thread, 170–175 µs after (redact alone about 1.7×); the
//! decoded-size walk 34–37 µs before its table of child messages, 32–34 µs
//! after.
//!
//! Held spans decoded straight into the model (2026-12-02; 2-vCPU Debian
//! VM, Intel Xeon, rustc 1.95; `taskset -c 1`, the bench binaries of
//! 61bb222 and of cb83a53 run alternately, two runs each, `--warm-up-time 1
//! --measurement-time 3`), per span:
//!
//! | step | 61bb222 | cb83a53 | ratio |
//! |---|---|---|---|
//! | decode (OTLP protobuf), unchanged | 3.05-3.06 µs | 3.11-3.12 µs | 1.02 |
//! | unpack a held trace | 3.38-3.39 µs | 2.08-2.12 µs | 0.62 |
//! | diagnose the request alone | 0.74-0.77 µs | 0.75-0.76 µs | 1.0 |
//! | diagnose it with five beside it, per span read | 0.68-0.69 µs | 0.67 µs | 0.97 |
//!
//! Unpacking now reads each span's bytes once, into the model
//! (`agentrace_model::span_bytes`), with its attribute keys shared between
//! spans (`agentrace_model::Key`), instead of building prost's OTLP
//! structures and copying them. Diagnosis on warm caches is unchanged; what
//! the shared keys save the doctor is cache misses over scattered keys,
//! which only the load generator shows (`examples/loadgen.rs`).
//!
//! The pass-through's byte check (2026-12-02, third session; same Xeon VM,
//! `taskset -c 1`, the bench binary run directly, two runs, `--warm-up-time 1
//! --measurement-time 3`), per span: `Redactor::clean` 1.14 µs, where a
//! pass-through used to decode (2.68-2.76 µs) and redact (0.49-0.53 µs
//! without its clone): 0.35x. It searches the same strings with the same
//! regexes, which are about half of it.
//!
//! Tried and dropped: converting the decoded OTLP span into the model by
//! taking its strings over instead of copying them made unpacking 0.84×
//! here (2.45 µs), but the live collector did not gain (server CPU per
//! span 40.5–45.3 µs against 39.5–44.3 µs, five rounds each, alternately):
//! the strings the doctor then reads lie scattered among the freed decoded
//! structures instead of one after another. A row here is a step alone, on
//! warm caches; only the load generator says what the collector gains.
//!
//! The agent graph without a scan of every sibling per agent span
//! (2026-12-02, fifth session; 2-vCPU Debian VM, Intel Xeon, rustc 1.95;
//! `taskset -c 1`, the bench binaries before and after run alternately,
//! two runs each, `--bench diagnose --warm-up-time 1 --measurement-time 3`),
//! per request of 100 spans:
//!
//! | step | before | after | ratio |
//! |---|---|---|---|
//! | diagnose the request alone | 155.6-157.8 µs | 137.4-146.7 µs | 0.88-0.94 |
//! | diagnose it with five beside it (600 spans) | 851.6-868.8 µs | 761.7-787.0 µs | 0.88-0.92 |
//!
//! Every span of these requests but the first is a child of the first,
//! and for each agent span whose parent is another agent's the doctor
//! looked through all its siblings and their children for a sign of who
//! handed over (`agents::handed_over_by`): quadratic in a parent's
//! children. The few children that can be such a sign are now gathered
//! once per diagnosis.

//! The store's rows and the pipeline's blocks read in one walk of the
//! request (2026-12-03; 2-vCPU Debian VM, rustc 1.95; `taskset -c 1`, the
//! bench binary run directly, the two alternately, five runs each,
//! `--warm-up-time 1 --measurement-time 2`), per request of 100 spans:
//!
//! | step | time | ratio |
//! |---|---|---|
//! | store rows, then pack (each reads every span's fields) | 352–442 µs, median 399 µs | 1.0 |
//! | store rows and pack in one walk (`PreparedBatch::from_encoded_packing`) | 239–334 µs, median 303 µs | 0.76 |
//!
//! About 1 µs per span, of the 30–40 µs a span costs the full pipeline
//! (`examples/loadgen.rs`): this VM's spread between runs is wider than that.

#![allow(missing_docs)]

#[path = "support/agent_spans.rs"]
mod agent_spans;

use std::hint::black_box;

use agent_spans::{Shape, request};
use agentrace_collector::assemble::{Packer, pack};
use agentrace_collector::config::{ContentAction, RedactionConfig};
use agentrace_collector::redact::Redactor;
use agentrace_collector::store::PreparedBatch;
use agentrace_collector::wire::Encoded;
use agentrace_doctor::{Config as DoctorConfig, Doctor};
use agentrace_model::Span;
use agentrace_model::otlp::{Format, Limits, decode_protobuf, decoded_cost};
use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message;

const SPANS: usize = 100;

fn span_path(c: &mut Criterion) {
    let req = request(1, SPANS, Shape::Agents);
    let bytes = req.encode_to_vec();
    let limits = Limits::default();
    let redactor = Redactor::new(&RedactionConfig::default()).expect("the default policy");
    let encoded = Encoded::new(&req);
    let packed = pack(&encoded);
    let spans: Vec<Span> = packed.iter().flat_map(|p| p.packed().unpack()).collect();
    assert_eq!(spans.len(), SPANS);
    // The request and five others that ran beside it (other traces, sessions).
    let context: Vec<Span> = (1..=6)
        .map(|v| request(v, SPANS, Shape::Agents))
        .flat_map(|r| pack(&Encoded::new(&r)))
        .flat_map(|p| p.packed().unpack())
        .collect();
    let doctor = Doctor::new(DoctorConfig::default());

    let mut g = c.benchmark_group("one request of 100 agent spans");
    g.bench_function("decode (OTLP protobuf)", |b| {
        b.iter(|| decode_protobuf(black_box(&bytes), &limits).expect("decodes"))
    });
    g.bench_function("estimate the decoded size (walk, part of decode)", |b| {
        b.iter(|| decoded_cost(black_box(&bytes), Format::Protobuf))
    });
    let body = bytes::Bytes::from(bytes.clone());
    assert!(redactor.clean(body.clone(), &limits, true).is_some(), "agent traffic is clean");
    g.bench_function("clean (the pass-through's byte check, instead of decode and redact)", |b| {
        b.iter(|| redactor.clean(black_box(&body).clone(), &limits, true).expect("clean"))
    });
    g.bench_function("clone (what redact is given)", |b| b.iter(|| black_box(&req).clone()));
    g.bench_function("redact (default policy), with its clone", |b| {
        b.iter(|| redactor.redact(black_box(&req).clone(), ContentAction::Drop))
    });
    g.bench_function("encode once (wire::Encoded)", |b| b.iter(|| Encoded::new(black_box(&req))));
    g.bench_function("pack (LZ4 per trace)", |b| b.iter(|| pack(black_box(&encoded))));
    g.bench_function("store rows (from the encoding)", |b| b.iter(|| PreparedBatch::from_encoded(black_box(&encoded))));
    g.bench_function("store rows, then pack", |b| {
        b.iter(|| (PreparedBatch::from_encoded(black_box(&encoded)), pack(black_box(&encoded))))
    });
    g.bench_function("store rows and pack in one walk", |b| {
        b.iter(|| {
            let mut packer = Packer::default();
            (PreparedBatch::from_encoded_packing(black_box(&encoded), &mut packer), packer.finish())
        })
    });
    g.bench_function("unpack (a held trace, for a diagnosis)", |b| {
        b.iter(|| packed.iter().flat_map(|p| p.packed().unpack()).collect::<Vec<_>>())
    });
    g.bench_function("diagnose (the request alone)", |b| b.iter(|| doctor.analyse(black_box(&spans))));
    g.finish();

    let mut g = c.benchmark_group("six requests of 100 agent spans");
    g.bench_function("diagnose (a request with five beside it)", |b| b.iter(|| doctor.analyse(black_box(&context))));
    g.finish();
}

criterion_group!(benches, span_path);
criterion_main!(benches);
