//! traceparent: never panics; whatever parses writes back to a value that parses to the same ids.
#![no_main]
use agentrace::w3c::traceparent;
use libfuzzer_sys::fuzz_target;
use opentelemetry::trace::TraceState;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(tp) = traceparent::parse(s) {
        let written = traceparent::format(&tp.to_span_context(TraceState::NONE)).expect("valid context");
        assert_eq!(traceparent::parse(&written), Ok(tp));
    }
});
