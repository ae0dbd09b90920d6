//! baggage: never panics; limits hold; writing then reading gives back the same keys and values.
#![no_main]
use agentrace::w3c::baggage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let members = baggage::parse(s.split('\n'));
    assert!(members.len() <= baggage::MAX_MEMBERS);
    let written = baggage::format(members.iter().map(|m| (m.key, m.value.as_ref(), m.properties)));
    assert!(written.len() <= baggage::MAX_BYTES);
    let again = baggage::parse([written.as_str()]);
    // Writing may drop members only to respect the byte limit; those it keeps are unchanged.
    for (a, b) in again.iter().zip(&members) {
        assert_eq!((a.key, a.value.as_ref()), (b.key, b.value.as_ref()));
    }
});
