//! OTLP/JSON export requests (the HTTP receiver and `agentrace doctor` files): never a panic,
//! enum names included, and whatever is accepted is valid.
#![no_main]
use agentrace_model::otlp::{Limits, decode_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = decode_json(data, &Limits::default()) {
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
