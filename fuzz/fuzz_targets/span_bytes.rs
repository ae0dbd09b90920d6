//! One held span's protobuf bytes, as the live pipeline decodes them again for a diagnosis
//! (`agentrace_model::span_bytes::decode`): never a panic, and whatever it accepts, prost's
//! decoder and `Span::from_otlp` accept and read alike (what it refuses goes to them).
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
});
