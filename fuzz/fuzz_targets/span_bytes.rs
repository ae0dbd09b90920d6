//! One held span's protobuf bytes, as the live pipeline decodes them again for a diagnosis
//! (`agentrace_model::span_bytes::decode`): never a panic, and whatever it accepts, prost's
//! decoder and `Span::from_otlp` accept and read alike (what it refuses goes to them). The
//! fields the store and the pipeline index a received span by (`span_bytes::fields`), where
//! prost accepts the bytes, are what prost's decoding gives (`Fields::of_otlp`).
#![no_main]
use std::sync::Arc;

use agentrace_model::{Resource, Scope, Span};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let (resource, scope) = (Arc::new(Resource::for_service("svc")), Arc::new(Scope::default()));
    if let Some(direct) = agentrace_model::span_bytes::decode(data, &resource, &scope) {
        let otlp = OtlpSpan::decode(data).expect("prost accepts what the direct decoder accepts");
        let two_steps = Span::from_otlp(&otlp, &resource, &scope).expect("valid IDs");
        // (As text: a NaN attribute equals itself there.)
        assert_eq!(format!("{direct:?}"), format!("{two_steps:?}"));
    }
    if let (Some(fields), Ok(otlp)) = (agentrace_model::span_bytes::fields(data), OtlpSpan::decode(data)) {
        let of_otlp = agentrace_model::span_bytes::Fields::of_otlp(&otlp);
        let text = |f: &agentrace_model::span_bytes::Fields| {
            format!(
                "{:?}",
                (
                    (f.trace_id, f.span_id, f.parent_span_id, f.name, f.kind),
                    (f.start_unix_nano, f.end_unix_nano, f.status_code),
                    (f.keys.keys(), &f.link_trace_ids),
                )
            )
        };
        assert_eq!(text(&fields), text(&of_otlp));
    }
});
