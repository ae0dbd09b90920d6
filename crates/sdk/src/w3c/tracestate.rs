//! The `tracestate` header: up to 32 `key=value` list members, one or several header lines.
//!
//! Keys follow the Trace Context Level 2 grammar, which the W3C test suite checks: a lower-case
//! letter or digit, then up to 255 of `a-z 0-9 _ - * / @`. Values are 1 to 256 printable ASCII
//! characters other than `,` and `=`, not ending in a space. One invalid member, or more than 32,
//! discards the whole tracestate (the traceparent is still honoured). A repeated key keeps its
//! first value, which the specification allows.

use thiserror::Error;

/// Most list members a tracestate may carry.
pub const MAX_MEMBERS: usize = 32;
/// Longest key and longest value.
pub const MAX_KEY_LEN: usize = 256;
/// Longest value.
pub const MAX_VALUE_LEN: usize = 256;
/// Longest header we read: 32 members of the largest size. Anything longer is invalid anyway.
pub const MAX_HEADER_LEN: usize = MAX_MEMBERS * (MAX_KEY_LEN + MAX_VALUE_LEN + 2) + 64;

/// Why a tracestate was discarded. The caller keeps the traceparent and drops the tracestate.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceStateError {
    /// More than 32 list members, or more bytes than 32 members can take.
    #[error("tracestate has more than 32 list members")]
    TooManyMembers,
    /// A list member has no `=`.
    #[error("tracestate list member without '='")]
    MissingEquals,
    /// A key breaks the key grammar.
    #[error("tracestate key is invalid")]
    Key,
    /// A value breaks the value grammar.
    #[error("tracestate value is invalid")]
    Value,
}

/// Whether `key` is a valid Level 2 tracestate key.
pub fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    if b.is_empty() || b.len() > MAX_KEY_LEN || !(b[0].is_ascii_lowercase() || b[0].is_ascii_digit()) {
        return false;
    }
    b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/' | b'@'))
}

/// Whether `value` is a valid tracestate value.
pub fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_VALUE_LEN
        && b[b.len() - 1] != b' '
        && b.iter().all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

/// Parses one or more tracestate header lines (several lines are one list, in order) into its
/// members, borrowed from the input. An empty result means "no tracestate".
pub fn parse<'a, I>(lines: I) -> Result<Vec<(&'a str, &'a str)>, TraceStateError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut members: Vec<(&'a str, &'a str)> = Vec::new();
    let mut total = 0usize;
    for line in lines {
        total += line.len();
        if total > MAX_HEADER_LEN {
            return Err(TraceStateError::TooManyMembers);
        }
        for member in super::split_byte(line, b',') {
            let member = super::trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let (key, value) = super::split_once_byte(member, b'=').ok_or(TraceStateError::MissingEquals)?;
            if !valid_key(key) {
                return Err(TraceStateError::Key);
            }
            if !valid_value(value) {
                return Err(TraceStateError::Value);
            }
            if members.iter().any(|(k, _)| *k == key) {
                continue;
            }
            if members.len() == MAX_MEMBERS {
                return Err(TraceStateError::TooManyMembers);
            }
            members.push((key, value));
        }
    }
    Ok(members)
}

/// Writes members as one header value, `k1=v1,k2=v2`.
pub fn format<'a, I>(members: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut out = String::with_capacity(64);
    format_into(members, &mut out);
    out
}

/// [`format`](fn@format), appending to `out` (which should be empty): a caller that knows the
/// size can give a `String` of exactly that capacity, which an HTTP header then takes over
/// without copying.
pub fn format_into<'a, I>(members: I, out: &mut String)
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let base = out.len();
    for (key, value) in members {
        if out.len() > base {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiple_lines_form_one_ordered_list() {
        let m = parse(["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]).unwrap();
        assert_eq!(format(m), "foo=1,bar=2,rojo=1,congo=2,baz=3");
    }

    #[test]
    fn ows_and_empty_members_are_skipped() {
        let m = parse(["foo=1 \t , \t bar=2,, \t baz=3\t", ""]).unwrap();
        assert_eq!(m, vec![("foo", "1"), ("bar", "2"), ("baz", "3")]);
        assert!(parse([""]).unwrap().is_empty());
    }

    #[test]
    fn level_two_keys_with_at_signs_are_accepted() {
        for key in ["foo@", "foo@@bar", "foo@bar@baz", "t@vvvvvvvvvvvvvvv"] {
            assert!(valid_key(key), "{key}");
        }
        let long = "t".repeat(242) + "@v";
        assert!(valid_key(&long));
        assert!(valid_key(&"z".repeat(256)));
        assert!(!valid_key(&"z".repeat(257)));
        assert!(!valid_key("@foo"));
    }

    #[test]
    fn one_bad_member_discards_everything() {
        for bad in ["foo =1", "FOO=1", "foo.bar=1", "foo=bar=baz", "foo=,bar=3", "@foo=1,bar=2", "novalue"] {
            assert!(parse([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn thirty_three_members_are_too_many() {
        let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        assert!(parse([members[..32].join(",").as_str()]).is_ok());
        assert_eq!(parse([members.join(",").as_str()]), Err(TraceStateError::TooManyMembers));
    }

    #[test]
    fn value_may_start_with_space_and_use_all_allowed_characters() {
        let value: String = (0x20u8..=0x7e).filter(|c| *c != b',' && *c != b'=').map(char::from).collect();
        let header = format!("key={value}");
        let m = parse([header.as_str()]).unwrap();
        assert_eq!(m[0].1, value);
    }

    #[test]
    fn duplicate_keys_keep_the_first() {
        assert_eq!(parse(["foo=1", "foo=2"]).unwrap(), vec![("foo", "1")]);
    }
}
