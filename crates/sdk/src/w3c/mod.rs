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

/// `s.split(sep)` for an ASCII separator, without `memchr`: list members are a few dozen bytes,
/// where its set-up costs more than the scan. Cutting at an ASCII byte always lands on a
/// character boundary.
pub(crate) fn split_byte(s: &str, sep: u8) -> SplitByte<'_> {
    debug_assert!(sep.is_ascii());
    SplitByte { rest: Some(s), sep }
}

/// The iterator of [`split_byte`].
pub(crate) struct SplitByte<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for SplitByte<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match s.bytes().position(|c| c == self.sep) {
            Some(i) => {
                self.rest = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// `s.split_once(sep)` for an ASCII separator; see [`split_byte`].
pub(crate) fn split_once_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    debug_assert!(sep.is_ascii());
    let i = s.bytes().position(|c| c == sep)?;
    Some((&s[..i], &s[i + 1..]))
}
