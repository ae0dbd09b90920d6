//! gzip request bodies: never a panic, never more output than the cap.
#![no_main]
use agentrace_model::otlp::gunzip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = gunzip(data, 1 << 16) {
        assert!(out.len() <= 1 << 16);
    }
});
