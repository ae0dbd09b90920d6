//! Strict W3C parsers and writers: `traceparent`, `tracestate` (Trace Context Level 2) and
//! `baggage` (W3C Baggage).
//!
//! This is the only place that reads untrusted header text. Everything here is pure (no I/O, no
//! global state), never panics on any input, and bounds its work by the limits the specifications
//! set, so the functions can be fuzzed directly (see `fuzz/` at the repository root).
//!
//! Why our own: `opentelemetry_sdk`'s propagators accept trace ids of the wrong length, signs and
//! whitespace inside the value (the W3C test suite expects those to restart the trace), reject
//! tracestate keys that Level 2 allows, and cut baggage values at the second `=`.

pub mod baggage;
pub mod traceparent;
pub mod tracestate;

/// Optional white space as HTTP defines it (RFC 7230 `OWS`): spaces and horizontal tabs.
pub(crate) fn trim_ows(s: &str) -> &str {
    // A byte loop: `trim_matches` with a char set decodes UTF-8 and is several times slower on
    // the short fields this runs on. Both bytes are ASCII, so every cut is a character boundary.
    let b = s.as_bytes();
    let (mut start, mut end) = (0, b.len());
    while start < end && matches!(b[start], b' ' | b'\t') {
        start += 1;
    }
    while end > start && matches!(b[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    &s[start..end]
}
