//! Zipkin v2 bodies (JSON and protobuf, the Zipkin receiver): never a panic, and whatever is
//! accepted is valid OTLP. The first byte picks the encoding.
#![no_main]
use agentrace_model::otlp::Limits;
use agentrace_model::zipkin::{decode_json, decode_protobuf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let decoded = if first % 2 == 0 { decode_json(body, &Limits::default()) } else { decode_protobuf(body, &Limits::default()) };
    if let Ok(decoded) = decoded {
        for rs in &decoded.request.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    assert_eq!(span.trace_id.len(), 16);
                    assert_eq!(span.span_id.len(), 8);
                    assert!(span.parent_span_id.is_empty() || span.parent_span_id.len() == 8);
                }
            }
        }
    }
});
