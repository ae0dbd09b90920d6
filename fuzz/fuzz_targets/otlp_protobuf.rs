//! OTLP/protobuf export requests, as the gRPC and HTTP receivers decode them: never a panic,
//! and whatever is accepted is valid (16-byte trace ids, 8-byte span ids, none all zero) and
//! converts to the doctor's span model and back.
#![no_main]
use agentrace_model::otlp::{Limits, decode_protobuf};
use agentrace_model::Span;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_attributes: 64, max_value_depth: 8, ..Limits::default() };
    if let Ok(decoded) = decode_protobuf(data, &limits) {
        let mut count = 0u64;
        for rs in &decoded.request.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    assert_eq!(span.trace_id.len(), 16);
                    assert_eq!(span.span_id.len(), 8);
                    assert!(span.attributes.len() <= 64);
                    count += 1;
                }
            }
        }
        assert_eq!(count, decoded.accepted_spans);
        let spans = Span::from_request(&decoded.request);
        assert_eq!(spans.len() as u64, decoded.accepted_spans);
        let _ = Span::to_request(&spans);
    }
});
