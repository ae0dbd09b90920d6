//! tracestate: never panics; what parses is within limits and re-parses to the same members.
#![no_main]
use agentrace::w3c::tracestate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let lines: Vec<&str> = s.split('\n').collect();
    if let Ok(members) = tracestate::parse(lines.iter().copied()) {
        assert!(members.len() <= tracestate::MAX_MEMBERS);
        let written = tracestate::format(members.iter().copied());
        assert_eq!(tracestate::parse([written.as_str()]), Ok(members));
    }
});
