//! JSON envelope and MCP `_meta`: any JSON (or not-JSON) is read without a panic, and an
//! extracted context is either invalid or a remote parent.
#![no_main]
use agentrace::carrier::envelope::Traced;
use agentrace::carrier::meta::extract_from_meta_value;
use agentrace::carrier::ContextCarrier;
use libfuzzer_sys::fuzz_target;
use opentelemetry::trace::TraceContextExt;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = serde_json::from_slice::<Traced<serde_json::Value>>(data) {
        let cx = msg.trace_context.extract_context();
        let sc = cx.span().span_context().clone();
        assert!(!sc.is_valid() || sc.is_remote());
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = extract_from_meta_value(value.get("_meta"));
    }
});
