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
    // Writing may drop members to respect the byte limit (a value can grow when re-encoded:
    // invalid UTF-8 became U+FFFD); the members it keeps come back unchanged and in order.
    let mut rest = members.iter();
    for a in &again {
        assert!(
            rest.any(|b| (a.key, a.value.as_ref()) == (b.key, b.value.as_ref())),
            "member {:?} written but not read, or out of order",
            a.key
        );
    }
});
