//! The `traceparent` header: `version-traceid-parentid-flags`, parsed exactly as W3C Trace
//! Context says, including the rules for future versions.
//!
//! What restarts a trace (returns an error): wrong length, upper-case or non-hex digits, version
//! `ff`, an all-zero trace or parent id, and, for version `00`, anything after the flags. A future
//! version (`01`..`fe`) may carry more fields after a `-`; we read the four we know.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use thiserror::Error;

/// Length of a version `00` traceparent: `2 + 1 + 32 + 1 + 16 + 1 + 2`.
pub const TRACEPARENT_LEN: usize = 55;

/// Flags we carry through: `sampled` (Level 1) and `random` (Level 2). Other bits are not defined
/// yet, and the specification says not to propagate bits we do not understand.
const KNOWN_FLAGS: u8 = 0x03;

/// Why a traceparent was rejected. In every case the caller should start a new trace: W3C says an
/// invalid traceparent is ignored, not repaired.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Shorter than 55 characters, or a version `00` value that is not exactly 55.
    #[error("traceparent has the wrong length")]
    Length,
    /// A field separator is not `-` where the format requires one.
    #[error("traceparent field separator missing")]
    Separator,
    /// The version is not two lower-case hex digits, or is the forbidden `ff`.
    #[error("traceparent version is invalid")]
    Version,
    /// The trace id is not 32 lower-case hex digits, or is all zeros.
    #[error("traceparent trace-id is invalid")]
    TraceId,
    /// The parent id is not 16 lower-case hex digits, or is all zeros.
    #[error("traceparent parent-id is invalid")]
    ParentId,
    /// The flags are not two lower-case hex digits.
    #[error("traceparent trace-flags are invalid")]
    Flags,
}

/// A parsed, valid traceparent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// Trace id; never all zeros.
    pub trace_id: TraceId,
    /// Id of the caller's span; never all zeros.
    pub parent_id: SpanId,
    /// Trace flags, limited to the bits this implementation understands.
    pub flags: TraceFlags,
}

impl TraceParent {
    /// A remote [`SpanContext`] for this parent with the given trace state.
    pub fn to_span_context(self, trace_state: TraceState) -> SpanContext {
        SpanContext::new(self.trace_id, self.parent_id, self.flags, true, trace_state)
    }
}

// Lower-case hex only: W3C forbids upper case, which the official propagator accepts.
const fn hex_table() -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
}
static HEX_VALUE: [u8; 256] = hex_table();
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn parse_hex(bytes: &[u8]) -> Option<u128> {
    let mut acc: u128 = 0;
    for &b in bytes {
        let v = HEX_VALUE[b as usize];
        if v == 0xff {
            return None;
        }
        acc = (acc << 4) | v as u128;
    }
    Some(acc)
}

/// Parses a traceparent value. Leading and trailing spaces and tabs (HTTP `OWS`) are ignored.
pub fn parse(value: &str) -> Result<TraceParent, TraceParentError> {
    let b = super::trim_ows(value).as_bytes();
    if b.len() < TRACEPARENT_LEN {
        return Err(TraceParentError::Length);
    }
    let version = parse_hex(&b[0..2]).ok_or(TraceParentError::Version)?;
    if version == 0xff {
        return Err(TraceParentError::Version);
    }
    if version == 0 && b.len() != TRACEPARENT_LEN {
        return Err(TraceParentError::Length);
    }
    // A future version may append fields, but only after another separator.
    if b.len() > TRACEPARENT_LEN && b[TRACEPARENT_LEN] != b'-' {
        return Err(TraceParentError::Separator);
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return Err(TraceParentError::Separator);
    }
    let trace_id = parse_hex(&b[3..35]).filter(|&v| v != 0).ok_or(TraceParentError::TraceId)?;
    let parent_id = parse_hex(&b[36..52]).filter(|&v| v != 0).ok_or(TraceParentError::ParentId)?;
    let flags = parse_hex(&b[53..55]).ok_or(TraceParentError::Flags)? as u8;
    Ok(TraceParent {
        trace_id: TraceId::from(trace_id),
        parent_id: SpanId::from(parent_id as u64),
        flags: TraceFlags::new(flags & KNOWN_FLAGS),
    })
}

fn write_hex(out: &mut [u8], value: u128) {
    let n = out.len();
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 4 * (n - 1 - i);
        *slot = HEX_DIGITS[((value >> shift) & 0xf) as usize];
    }
}

/// Writes a version `00` traceparent for a span context. Returns `None` for an invalid context,
/// which must not be propagated.
pub fn format(span_context: &SpanContext) -> Option<String> {
    format_with_flags(span_context, 0)
}

/// [`format`](fn@format) with extra known flag bits set (the Level 2 `random` flag, which the SDK's span
/// context does not keep for child spans).
pub fn format_with_flags(span_context: &SpanContext, extra_flags: u8) -> Option<String> {
    if !span_context.is_valid() {
        return None;
    }
    let mut buf = [b'-'; TRACEPARENT_LEN];
    buf[0] = b'0';
    buf[1] = b'0';
    write_hex(&mut buf[3..35], u128::from_be_bytes(span_context.trace_id().to_bytes()));
    write_hex(&mut buf[36..52], u64::from_be_bytes(span_context.span_id().to_bytes()) as u128);
    write_hex(&mut buf[53..55], ((span_context.trace_flags().to_u8() | extra_flags) & KNOWN_FLAGS) as u128);
    // Every byte written above is ASCII, so this conversion cannot fail.
    String::from_utf8(buf.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-12345678901234567890123456789012-1234567890123456-01";

    #[test]
    fn valid_value_round_trips() {
        let tp = parse(VALID).unwrap();
        assert_eq!(format!("{:032x}", tp.trace_id), "12345678901234567890123456789012");
        assert!(tp.flags.is_sampled());
        let sc = tp.to_span_context(TraceState::NONE);
        assert_eq!(super::format(&sc).unwrap(), VALID);
    }

    #[test]
    fn ows_is_ignored() {
        assert!(parse(" \t00-12345678901234567890123456789012-1234567890123456-01\t ").is_ok());
    }

    #[test]
    fn rejects_what_the_w3c_suite_rejects() {
        let bad = [
            "",
            "00-12345678901234567890123456789012-1234567890123456-01.",
            "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
            "ff-12345678901234567890123456789012-1234567890123456-01",
            "0x-12345678901234567890123456789012-1234567890123456-01",
            "000-12345678901234567890123456789012-1234567890123456-01",
            "0-12345678901234567890123456789012-1234567890123456-01",
            "00-00000000000000000000000000000000-1234567890123456-01",
            "00-1234567890123456789012345678901.-1234567890123456-01",
            "00-123456789012345678901234567890123-1234567890123456-01",
            "00-1234567890123456789012345678901-1234567890123456-01",
            "00-12345678901234567890123456789012-0000000000000000-01",
            "00-12345678901234567890123456789012-123456789012345.-01",
            "00-12345678901234567890123456789012-12345678901234567-01",
            "00-12345678901234567890123456789012-123456789012345-01",
            "00-12345678901234567890123456789012-1234567890123456-.0",
            "00-12345678901234567890123456789012-1234567890123456-001",
            "00-12345678901234567890123456789012-1234567890123456-1",
            "00-1234567890123456789012345678901A-1234567890123456-01",
            "00-+2345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-0 ",
        ];
        for value in bad {
            assert!(parse(value).is_err(), "accepted {value:?}");
        }
    }

    #[test]
    fn future_version_with_extra_fields_is_accepted() {
        let tp = parse("cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like").unwrap();
        assert_eq!(format!("{:032x}", tp.trace_id), "12345678901234567890123456789012");
        assert!(parse("cc-12345678901234567890123456789012-1234567890123456-01").is_ok());
    }

    #[test]
    fn unknown_flag_bits_are_not_propagated() {
        let tp = parse("00-12345678901234567890123456789012-1234567890123456-ff").unwrap();
        assert_eq!(tp.flags.to_u8(), 0x03);
    }
}
