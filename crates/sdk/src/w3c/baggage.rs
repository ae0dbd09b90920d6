//! The `baggage` header (W3C Baggage): `key=value;property,key2=value2`.
//!
//! Values are percent-decoded and may contain `=` (the official propagator cuts them there).
//! Limits: at most 64 list members and 8192 bytes; members past a limit are dropped, and a member
//! that breaks the grammar is dropped alone, so one bad entry from a peer does not cost the rest.

use std::borrow::Cow;

use super::{split_byte, split_once_byte};

/// Most list members we accept or write.
pub const MAX_MEMBERS: usize = 64;
/// Most bytes of baggage we accept or write.
pub const MAX_BYTES: usize = 8192;

/// One decoded baggage list member, borrowed from the header where no decoding was needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// The key, an RFC 7230 token.
    pub key: &'a str,
    /// The value, percent-decoded (invalid UTF-8 becomes U+FFFD, as the specification says).
    pub value: Cow<'a, str>,
    /// The properties after the first `;`, as written (already validated), or `""`.
    pub properties: &'a str,
}

// One table lookup per byte instead of range tests and a scan of the tchar list: the parser
// runs on every inbound request, and most of its time is spent classifying short strings.
const TOKEN: u8 = 1;
const OCTET: u8 = 2;
const fn byte_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        // RFC 7230 tchar.
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            )
        {
            t[c] |= TOKEN;
        }
        // baggage-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E. Note that `=` (0x3D) is
        // allowed.
        if matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e) {
            t[c] |= OCTET;
        }
        c += 1;
    }
    t
}
static BYTE_CLASS: [u8; 256] = byte_classes();

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| BYTE_CLASS[c as usize] & TOKEN != 0)
}

fn is_baggage_octet(c: u8) -> bool {
    BYTE_CLASS[c as usize] & OCTET != 0
}

fn is_ows(c: u8) -> bool {
    matches!(c, b' ' | b'\t')
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a value made of `baggage-octet`s that holds a `%`; `None` for a broken escape.
fn percent_decode(raw: &str) -> Option<Cow<'_, str>> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex_val(*b.get(i + 1)?)?;
            let lo = hex_val(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

fn valid_property(p: &str) -> bool {
    let p = super::trim_ows(p);
    match split_once_byte(p, b'=') {
        None => is_token(p),
        Some((k, v)) => is_token(super::trim_ows(k)) && super::trim_ows(v).bytes().all(is_baggage_octet),
    }
}

fn valid_properties(properties: &str) -> bool {
    split_byte(properties, b';').all(valid_property)
}

// One pass over a member already trimmed of white space: `key OWS = OWS value OWS [; properties]`.
fn parse_member(member: &str) -> Option<Member<'_>> {
    let b = member.as_bytes();
    let mut i = 0;
    while i < b.len() && BYTE_CLASS[b[i] as usize] & TOKEN != 0 {
        i += 1;
    }
    let key_end = i;
    while i < b.len() && is_ows(b[i]) {
        i += 1;
    }
    if key_end == 0 || b.get(i) != Some(&b'=') {
        return None;
    }
    i += 1;
    while i < b.len() && is_ows(b[i]) {
        i += 1;
    }
    let value_start = i;
    let mut escaped = false;
    while i < b.len() && is_baggage_octet(b[i]) {
        escaped |= b[i] == b'%';
        i += 1;
    }
    let value_end = i;
    while i < b.len() && is_ows(b[i]) {
        i += 1;
    }
    let properties = match b.get(i) {
        None => "",
        Some(b';') => &member[i + 1..],
        Some(_) => return None,
    };
    let raw = &member[value_start..value_end];
    let value = if escaped { percent_decode(raw)? } else { Cow::Borrowed(raw) };
    if !properties.is_empty() && !valid_properties(properties) {
        return None;
    }
    Some(Member { key: &member[..key_end], value, properties: super::trim_ows(properties) })
}

/// Calls `f` with each valid member of one or more baggage header lines, in order, without
/// collecting them. Invalid members are skipped; parsing stops at 64 members or once 8192 bytes
/// have been read, whichever comes first. [`parse`] is this, collected.
pub fn for_each_member<'a, I, F>(lines: I, mut f: F)
where
    I: IntoIterator<Item = &'a str>,
    F: FnMut(Member<'a>),
{
    let mut count = 0;
    let mut budget = MAX_BYTES;
    for line in lines {
        for member in split_byte(line, b',') {
            // The budget counts raw bytes, separators included, so a huge header costs at most
            // 8 KiB of work however it is built.
            let cost = member.len() + 1;
            if cost > budget + 1 || count == MAX_MEMBERS {
                return;
            }
            budget = budget.saturating_sub(cost);
            let member = super::trim_ows(member);
            if member.is_empty() {
                continue;
            }
            if let Some(m) = parse_member(member) {
                f(m);
                count += 1;
            }
        }
    }
}

/// Parses one or more baggage header lines into members. Invalid members are skipped; parsing
/// stops at 64 members or once 8192 bytes have been read, whichever comes first.
pub fn parse<'a, I>(lines: I) -> Vec<Member<'a>>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut out = Vec::new();
    for_each_member(lines, |m| out.push(m));
    out
}

fn needs_escape(c: u8) -> bool {
    !is_baggage_octet(c) || c == b'%'
}

/// Length of `value` once percent-encoded by [`encode_value_into`].
pub fn encoded_len(value: &str) -> usize {
    value.len() + 2 * value.bytes().filter(|&c| needs_escape(c)).count()
}

/// Appends `value` percent-encoded so that it is a valid `baggage-octet` string.
pub fn encode_value_into(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // Copy the runs that need no escape whole: most values are plain identifiers. A run holds
    // only ASCII (every other byte is escaped), so a non-empty run starts and ends on character
    // boundaries; an empty one is skipped, as its index may sit inside an escaped character.
    let mut run = 0;
    for (i, c) in value.bytes().enumerate() {
        if needs_escape(c) {
            if run < i {
                out.push_str(&value[run..i]);
            }
            out.push('%');
            out.push(HEX[(c >> 4) as usize] as char);
            out.push(HEX[(c & 0xf) as usize] as char);
            run = i + 1;
        }
    }
    out.push_str(&value[run..]);
}

/// Writes members as one header value, in order, skipping keys that are not tokens and any member
/// that would take the header past 8192 bytes; at most 64 members are written.
pub fn format<'a, I>(members: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str, &'a str)>,
{
    let mut out = String::with_capacity(128);
    format_into(members, &mut out);
    out
}

/// [`format`](fn@format), appending to `out` (which should be empty): a caller that knows the
/// size can give a `String` of exactly that capacity, which an HTTP header then takes over
/// without copying.
pub fn format_into<'a, I>(members: I, out: &mut String)
where
    I: IntoIterator<Item = (&'a str, &'a str, &'a str)>,
{
    let base = out.len();
    let mut count = 0;
    for (key, value, properties) in members {
        if count == MAX_MEMBERS || !is_token(key) {
            continue;
        }
        let mark = out.len();
        if mark > base {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        encode_value_into(value, out);
        if !properties.is_empty() && valid_properties(properties) {
            out.push(';');
            out.push_str(properties);
        }
        if out.len() - base > MAX_BYTES {
            out.truncate(mark);
            continue;
        }
        count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_equals_signs() {
        let m = parse(["tok=abc==,k2=a=b"]);
        assert_eq!(m[0].value, "abc==");
        assert_eq!(m[1].value, "a=b");
    }

    #[test]
    fn percent_encoding_round_trips() {
        let mut out = String::new();
        encode_value_into("a b,c;d%é=", &mut out);
        assert_eq!(out, "a%20b%2Cc%3Bd%25%C3%A9=");
        let header = format([("k", "a b,c;d%é=", "")]);
        let m = parse([header.as_str()]);
        assert_eq!(m[0].value, "a b,c;d%é=");
    }

    #[test]
    fn properties_and_ows_are_handled() {
        let m = parse([" userId = alice ; prop1 ; p2=v2 , sid=s1"]);
        assert_eq!(m[0].key, "userId");
        assert_eq!(m[0].value, "alice");
        assert_eq!(m[0].properties, "prop1 ; p2=v2");
        assert_eq!(m[1].key, "sid");
    }

    #[test]
    fn bad_members_are_dropped_alone() {
        let m = parse(["good=1,bad key=2,noeq,bad=\"q\",esc=%zz,ok=2"]);
        let keys: Vec<_> = m.iter().map(|m| m.key).collect();
        assert_eq!(keys, ["good", "ok"]);
    }

    #[test]
    fn limits_are_enforced_on_read_and_write() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse([many.join(",").as_str()]).len(), MAX_MEMBERS);
        let big = format!("a={},b=2", "x".repeat(9000));
        assert!(parse([big.as_str()]).is_empty());
        let long = "y".repeat(5000);
        let written = format([("a", long.as_str(), ""), ("b", long.as_str(), ""), ("c", "1", "")]);
        assert!(written.len() <= MAX_BYTES);
        assert!(written.ends_with(",c=1"));
    }

    /// The first, straightforward implementation (`str::split`, `split_once`, `trim_matches`),
    /// kept as the reference the byte-level parser and writer must agree with exactly.
    mod reference {
        use std::borrow::Cow;

        use super::super::{MAX_BYTES, MAX_MEMBERS, Member};

        fn trim_ows(s: &str) -> &str {
            s.trim_matches([' ', '\t'])
        }
        fn is_token_char(c: u8) -> bool {
            c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
        }
        fn is_token(s: &str) -> bool {
            !s.is_empty() && s.bytes().all(is_token_char)
        }
        fn is_baggage_octet(c: u8) -> bool {
            matches!(c, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
        }
        fn hex_val(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            }
        }
        fn decode_value(raw: &str) -> Option<Cow<'_, str>> {
            let b = raw.as_bytes();
            if !b.iter().all(|&c| is_baggage_octet(c)) {
                return None;
            }
            if !b.contains(&b'%') {
                return Some(Cow::Borrowed(raw));
            }
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    let hi = hex_val(*b.get(i + 1)?)?;
                    let lo = hex_val(*b.get(i + 2)?)?;
                    out.push(hi << 4 | lo);
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
        }
        fn valid_property(p: &str) -> bool {
            let p = trim_ows(p);
            match p.split_once('=') {
                None => is_token(p),
                Some((k, v)) => is_token(trim_ows(k)) && trim_ows(v).bytes().all(is_baggage_octet),
            }
        }
        fn parse_member(member: &str) -> Option<Member<'_>> {
            let (kv, properties) = match member.split_once(';') {
                Some((kv, props)) => (kv, props),
                None => (member, ""),
            };
            let (key, value) = kv.split_once('=')?;
            let key = trim_ows(key);
            if !is_token(key) {
                return None;
            }
            let value = decode_value(trim_ows(value))?;
            if !properties.is_empty() && !properties.split(';').all(valid_property) {
                return None;
            }
            Some(Member { key, value, properties: trim_ows(properties) })
        }
        pub fn parse<'a>(lines: &[&'a str]) -> Vec<Member<'a>> {
            let mut out = Vec::new();
            let mut budget = MAX_BYTES;
            for line in lines {
                for member in line.split(',') {
                    let cost = member.len() + 1;
                    if cost > budget + 1 || out.len() == MAX_MEMBERS {
                        return out;
                    }
                    budget = budget.saturating_sub(cost);
                    let member = trim_ows(member);
                    if member.is_empty() {
                        continue;
                    }
                    if let Some(m) = parse_member(member) {
                        out.push(m);
                    }
                }
            }
            out
        }
        pub fn format(members: &[(&str, &str, &str)]) -> String {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            let mut out = String::new();
            let mut count = 0;
            for &(key, value, properties) in members {
                if count == MAX_MEMBERS || !is_token(key) {
                    continue;
                }
                let mark = out.len();
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(key);
                out.push('=');
                for &c in value.as_bytes() {
                    if is_baggage_octet(c) && c != b'%' {
                        out.push(c as char);
                    } else {
                        out.push('%');
                        out.push(HEX[(c >> 4) as usize] as char);
                        out.push(HEX[(c & 0xf) as usize] as char);
                    }
                }
                if !properties.is_empty() && properties.split(';').all(valid_property) {
                    out.push(';');
                    out.push_str(properties);
                }
                if out.len() > MAX_BYTES {
                    out.truncate(mark);
                    continue;
                }
                count += 1;
            }
            out
        }
    }

    // Text made of the characters the grammar cares about, so that members are often valid and
    // every branch (escapes, properties, OWS, limits) is reached.
    const GRAMMAR_TEXT: &str = "[a-c0-2 \\t=;,%A-F.\"\\\\é\\x7f]{0,120}";

    proptest::proptest! {
        #[test]
        fn parser_agrees_with_the_reference(lines in proptest::collection::vec(GRAMMAR_TEXT, 0..4), long in 0usize..3) {
            // Sometimes add a line long enough to reach the byte and member limits.
            let mut lines = lines;
            if long > 0 {
                lines.push(vec!["k=v"; 40 * long].join(","));
                lines.push(format!("big={}", "x".repeat(4000 * long)));
            }
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(parse(lines.iter().copied()), reference::parse(&lines));
        }

        #[test]
        fn writer_agrees_with_the_reference(members in proptest::collection::vec((GRAMMAR_TEXT, "\\PC{0,30}", GRAMMAR_TEXT), 0..80), big in 0usize..2) {
            let mut members = members;
            if big > 0 {
                members.push(("big".to_owned(), "y".repeat(5000), String::new()));
            }
            let members: Vec<(&str, &str, &str)> = members.iter().map(|(k, v, p)| (k.as_str(), v.as_str(), p.as_str())).collect();
            let expected = reference::format(&members);
            proptest::prop_assert_eq!(format(members.iter().copied()), expected.clone());
            let total: usize = members.iter().map(|&(k, v, p)| k.len() + encoded_len(v) + p.len() + 3).sum();
            let mut exact = String::with_capacity(total);
            format_into(members.iter().copied(), &mut exact);
            proptest::prop_assert_eq!(exact, expected);
        }
    }

    #[test]
    fn invalid_utf8_after_decoding_becomes_replacement_char() {
        let m = parse(["k=%FF"]);
        assert_eq!(m[0].value, "\u{FFFD}");
    }
}
