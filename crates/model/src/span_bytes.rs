//! One OTLP span's protobuf bytes, decoded straight into the model.
//!
//! The live pipeline holds each trace as the protobuf bytes its spans
//! arrived in, and decodes them again for each diagnosis that reads the
//! trace. prost's decoder first builds OTLP's structures (a `String` per
//! key and per value, a `Vec` per list), which [`Span::from_otlp`] then
//! copies into the model; this reads the bytes once, into the model, with
//! the keys shared ([`Key::interned`]).
//!
//! [`decode`] gives what those two steps give (tested against them over
//! generated spans and the doctor's corpus, and by the `span_bytes` fuzz
//! target). Bytes it is not written for give `None` and the caller takes the
//! two steps, so they fare exactly as before: a field repeated where
//! protobuf merges messages (an attribute's value, an `AnyValue`'s array or
//! map), text that is not UTF-8, a span or trace ID of the wrong length,
//! groups, malformed varints, nesting past [`MAX_DEPTH`].

use std::borrow::Cow;
use std::sync::Arc;

use crate::keys::KeySet;
use crate::span::{Event, Link, Resource, Scope, Span, SpanKind, StatusCode};
use crate::value::{Attributes, Key, Value};
use crate::{SpanId, TraceId};

/// Deepest nesting of attribute values decoded here (deeper goes to prost).
/// Each level is three of prost's nested messages at most (a map's entry
/// and value), and prost refuses a span past 100 of them: at 32 the margin
/// was one level (a review built the case), so this keeps eight.
pub const MAX_DEPTH: usize = 24;

/// Reads a protobuf varint at `*at`, moving past it; `None` where prost's
/// decoder refuses one (truncated, or a tenth byte over 1). Every walk of
/// protobuf bytes in agentrace reads varints here: the decoded-size
/// estimate, this decoder, and the collector's pass-through check.
#[inline(always)]
pub fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    // Tags and short lengths fit in one byte.
    let b = *bytes.get(*at)?;
    if b < 0x80 {
        *at += 1;
        return Some(u64::from(b));
    }
    varint_long(bytes, at)
}

#[cold]
fn varint_long(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *bytes.get(*at)?;
        *at += 1;
        // The tenth byte holds the top bit only.
        if i == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Decodes one `opentelemetry.proto.trace.v1.Span` message (its bytes
/// without a length prefix) sent under `resource` and `scope`; `None` when
/// the bytes need prost's decoder (see the module's documentation).
pub fn decode(bytes: &[u8], resource: &Arc<Resource>, scope: &Arc<Scope>) -> Option<Span> {
    let mut r = Reader { bytes, at: 0 };
    let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let mut trace_state = "";
    let mut name = "";
    let mut flags = 0u32;
    let mut kind = 0i32;
    let (mut start, mut end) = (0u64, 0u64);
    // Lists sized as sent: kept spans hold no spare room.
    let [n_attributes, n_events, n_links] = r.count_lists([9, 11, 13])?;
    let mut attributes = Vec::with_capacity(n_attributes);
    let mut events = Vec::with_capacity(n_events);
    let mut links = Vec::with_capacity(n_links);
    let (mut dropped_attributes, mut dropped_events, mut dropped_links) = (0u32, 0u32, 0u32);
    let (mut status_message, mut status_code) = ("", 0i32);
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, LEN) => trace_id = r.bytes()?,
            (2, LEN) => span_id = r.bytes()?,
            (3, LEN) => trace_state = r.str()?,
            (4, LEN) => parent = r.bytes()?,
            (16, FIXED32) => flags = r.fixed32()?,
            (5, LEN) => name = r.str()?,
            (6, VARINT) => kind = r.varint()? as i32,
            (7, FIXED64) => start = r.fixed64()?,
            (8, FIXED64) => end = r.fixed64()?,
            (9, LEN) => attributes.push(key_value(r.bytes()?, 0)?),
            (10, VARINT) => dropped_attributes = r.varint()? as u32,
            (11, LEN) => events.push(event(r.bytes()?)?),
            (12, VARINT) => dropped_events = r.varint()? as u32,
            (13, LEN) => {
                if let Some(link) = link(r.bytes()?)? {
                    links.push(link);
                }
            }
            (14, VARINT) => dropped_links = r.varint()? as u32,
            // A status sent twice merges field by field, as here.
            (15, LEN) => {
                let mut s = Reader { bytes: r.bytes()?, at: 0 };
                while !s.done() {
                    match s.key()? {
                        (2, LEN) => status_message = s.str()?,
                        (3, VARINT) => status_code = s.varint()? as i32,
                        (2 | 3, _) => return None,
                        (_, wire) => s.skip(wire)?,
                    }
                }
            }
            (1..=16, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some(Span {
        trace_id: TraceId::from_slice(trace_id).ok()?,
        span_id: SpanId::from_slice(span_id).ok()?,
        parent_span_id: SpanId::from_slice(parent).ok(),
        trace_state: trace_state.to_owned(),
        flags,
        name: name.to_owned(),
        kind: SpanKind::from_i32(kind),
        start_unix_nano: start,
        end_unix_nano: end,
        attributes: Attributes(attributes),
        dropped_attributes_count: dropped_attributes,
        events,
        dropped_events_count: dropped_events,
        links,
        dropped_links_count: dropped_links,
        status_code: StatusCode::from_i32(status_code),
        status_message: status_message.to_owned(),
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
    })
}

/// What the store's rows and the pipeline's blocks take from a span: its
/// IDs, name, kind, times, status code, indexed keys and the traces its
/// links name. Read from the bytes by [`fields`], or from prost's
/// structures by [`Fields::of_otlp`]; both give the same.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    /// As sent (validated by the receivers: 16 bytes).
    pub trace_id: &'a [u8],
    /// As sent (8 bytes).
    pub span_id: &'a [u8],
    /// Empty for a root.
    pub parent_span_id: &'a [u8],
    /// The span's name.
    pub name: &'a str,
    /// OTLP's `SpanKind` number.
    pub kind: i32,
    /// Start time, as sent.
    pub start_unix_nano: u64,
    /// End time, as sent.
    pub end_unix_nano: u64,
    /// OTLP's `Status.code` number (0 when unset).
    pub status_code: i32,
    /// The session and join keys of its attributes ([`crate::keys`]):
    /// text and integer values count.
    pub keys: KeySet<'a>,
    /// The trace ID of each of its links, as sent.
    pub link_trace_ids: Vec<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// The same fields from a span prost decoded.
    pub fn of_otlp(span: &'a opentelemetry_proto::tonic::trace::v1::Span) -> Fields<'a> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        let mut keys = KeySet::new();
        for kv in &span.attributes {
            keys.offer(&kv.key, || match kv.value.as_ref()?.value.as_ref()? {
                V::StringValue(s) => Some(Cow::Borrowed(s.as_str())),
                V::IntValue(i) => Some(Cow::Owned(i.to_string())),
                _ => None,
            });
        }
        Fields {
            trace_id: &span.trace_id,
            span_id: &span.span_id,
            parent_span_id: &span.parent_span_id,
            name: &span.name,
            kind: span.kind,
            start_unix_nano: span.start_time_unix_nano,
            end_unix_nano: span.end_time_unix_nano,
            status_code: span.status.as_ref().map_or(0, |s| s.code),
            keys,
            link_trace_ids: span.links.iter().map(|l| l.trace_id.as_slice()).collect(),
        }
    }
}

/// The [`Fields`] of one `opentelemetry.proto.trace.v1.Span` message (its
/// bytes without a length prefix), read without decoding the rest: what
/// prost's decoding and [`Fields::of_otlp`] give, or `None` where the bytes
/// need prost's decoder (a field this reads sent twice, which protobuf
/// merges; a wire type prost refuses; text it reads that is not UTF-8).
/// Its callers read bytes that prost or the pass-through's check
/// (`Redactor::clean`) accepted already, so what it does not read (the
/// trace state, events, keys that are none of [`crate::keys`]') it does not
/// check either: bytes prost refuses may still have fields here.
pub fn fields(bytes: &[u8]) -> Option<Fields<'_>> {
    let mut r = Reader { bytes, at: 0 };
    let mut out = Fields {
        trace_id: &[],
        span_id: &[],
        parent_span_id: &[],
        name: "",
        kind: 0,
        start_unix_nano: 0,
        end_unix_nano: 0,
        status_code: 0,
        keys: KeySet::new(),
        link_trace_ids: Vec::new(),
    };
    // Each singular field read at most once (bit per field number).
    let mut seen = 0u32;
    while !r.done() {
        let (field, wire) = r.key()?;
        if matches!(field, 1 | 2 | 4 | 5 | 6 | 7 | 8 | 15) {
            if seen & (1 << field) != 0 {
                return None;
            }
            seen |= 1 << field;
        }
        match (field, wire) {
            (1, LEN) => out.trace_id = r.bytes()?,
            (2, LEN) => out.span_id = r.bytes()?,
            (4, LEN) => out.parent_span_id = r.bytes()?,
            (5, LEN) => out.name = r.str()?,
            (6, VARINT) => out.kind = r.varint()? as i32,
            (7, FIXED64) => out.start_unix_nano = r.fixed64()?,
            (8, FIXED64) => out.end_unix_nano = r.fixed64()?,
            (9, LEN) => {
                let (key, value) = raw_entry(r.bytes()?)?;
                if crate::keys::slot_of_bytes(key).is_some() {
                    let key = std::str::from_utf8(key).ok()?;
                    let text = scalar_text(value)?;
                    out.keys.offer(key, || text);
                }
            }
            (13, LEN) => {
                let mut l = Reader { bytes: r.bytes()?, at: 0 };
                let mut trace_id = None;
                while !l.done() {
                    match l.key()? {
                        (1, LEN) if trace_id.is_none() => trace_id = Some(l.bytes()?),
                        (2..=4, LEN) => l.skip(LEN)?,
                        (5, VARINT) => l.skip(VARINT)?,
                        (6, FIXED32) => l.skip(FIXED32)?,
                        (1..=6, _) => return None,
                        (_, wire) => l.skip(wire)?,
                    }
                }
                out.link_trace_ids.push(trace_id.unwrap_or(&[]));
            }
            (15, LEN) => {
                let mut s = Reader { bytes: r.bytes()?, at: 0 };
                let mut code = None;
                while !s.done() {
                    match s.key()? {
                        (2, LEN) => {
                            s.str()?;
                        }
                        (3, VARINT) if code.is_none() => code = Some(s.varint()? as i32),
                        (2 | 3, _) => return None,
                        (_, wire) => s.skip(wire)?,
                    }
                }
                out.status_code = code.unwrap_or(0);
            }
            (10 | 12 | 14, VARINT) | (3 | 11, LEN) | (16, FIXED32) => r.skip(wire)?,
            (1..=16, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some(out)
}

/// A `KeyValue`'s key and its value's bytes (empty when absent), each sent
/// at most once.
fn raw_entry(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader { bytes, at: 0 };
    let (mut key, mut value) = (None, None);
    while !r.done() {
        match r.key()? {
            (1, LEN) if key.is_none() => key = Some(r.bytes()?),
            (2, LEN) if value.is_none() => value = Some(r.bytes()?),
            (3, VARINT) => {
                r.varint()?;
            }
            (1..=3, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some((key.unwrap_or(&[]), value.unwrap_or(&[])))
}

/// The text of an `AnyValue`'s bytes for [`KeySet`]: a string, or an
/// integer written out; `Some(None)` for any other value, `None` for bytes
/// that need prost's decoder (a value sent twice).
fn scalar_text(bytes: &[u8]) -> Option<Option<Cow<'_, str>>> {
    let mut r = Reader { bytes, at: 0 };
    let mut out = None;
    let mut values = 0;
    while !r.done() {
        let (field, wire) = r.key()?;
        if (1..=8).contains(&field) {
            values += 1;
            if values > 1 {
                return None;
            }
        }
        match (field, wire) {
            (1, LEN) => out = Some(Cow::Borrowed(r.str()?)),
            (3, VARINT) => out = Some(Cow::Owned((r.varint()? as i64).to_string())),
            (2 | 8, VARINT) | (4, FIXED64) | (5..=7, LEN) => r.skip(wire)?,
            (1..=8, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some(out)
}

fn event(bytes: &[u8]) -> Option<Event> {
    let mut r = Reader { bytes, at: 0 };
    let attributes = Attributes(Vec::with_capacity(r.count_lists([3])?[0]));
    let mut out = Event { name: String::new(), time_unix_nano: 0, attributes, dropped_attributes_count: 0 };
    let mut name = "";
    while !r.done() {
        match r.key()? {
            (1, FIXED64) => out.time_unix_nano = r.fixed64()?,
            (2, LEN) => name = r.str()?,
            (3, LEN) => out.attributes.0.push(key_value(r.bytes()?, 0)?),
            (4, VARINT) => out.dropped_attributes_count = r.varint()? as u32,
            (1..=4, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    out.name = name.to_owned();
    Some(out)
}

/// A link, or `Some(None)` for one whose IDs are not valid (dropped, as
/// [`Span::from_otlp`] drops it).
fn link(bytes: &[u8]) -> Option<Option<Link>> {
    let mut r = Reader { bytes, at: 0 };
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    let mut trace_state = "";
    let mut attributes = Vec::with_capacity(r.count_lists([4])?[0]);
    let (mut dropped, mut flags) = (0u32, 0u32);
    while !r.done() {
        match r.key()? {
            (1, LEN) => trace_id = r.bytes()?,
            (2, LEN) => span_id = r.bytes()?,
            (3, LEN) => trace_state = r.str()?,
            (4, LEN) => attributes.push(key_value(r.bytes()?, 0)?),
            (5, VARINT) => dropped = r.varint()? as u32,
            (6, FIXED32) => flags = r.fixed32()?,
            (1..=6, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    let (Ok(trace_id), Ok(span_id)) = (TraceId::from_slice(trace_id), SpanId::from_slice(span_id)) else {
        return Some(None);
    };
    Some(Some(Link {
        trace_id,
        span_id,
        trace_state: trace_state.to_owned(),
        attributes: Attributes(attributes),
        dropped_attributes_count: dropped,
        flags,
    }))
}

/// A `KeyValue` (its value sent at most once).
fn key_value(bytes: &[u8], depth: usize) -> Option<(Key, Value)> {
    let (key, value) = entry(bytes, depth)?;
    Some((Key::interned(key), value))
}

fn entry(bytes: &[u8], depth: usize) -> Option<(&str, Value)> {
    let mut r = Reader { bytes, at: 0 };
    let mut key = "";
    let mut value = None;
    while !r.done() {
        match r.key()? {
            (1, LEN) => key = r.str()?,
            (2, LEN) => {
                if value.is_some() {
                    return None;
                }
                value = Some(any_value(r.bytes()?, depth)?);
            }
            // A string-table index for the key (the profiles signal's):
            // read for its type, as prost reads it, and not used.
            (3, VARINT) => {
                r.varint()?;
            }
            (1..=3, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some((key, value.unwrap_or(Value::Empty)))
}

/// An `AnyValue` (its one value sent at most once).
fn any_value(bytes: &[u8], depth: usize) -> Option<Value> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let mut r = Reader { bytes, at: 0 };
    let mut value = None;
    while !r.done() {
        let (field, wire) = r.key()?;
        if (1..=8).contains(&field) && value.is_some() {
            return None;
        }
        match (field, wire) {
            (1, LEN) => value = Some(Value::Str(r.str()?.to_owned())),
            (2, VARINT) => value = Some(Value::Bool(r.varint()? != 0)),
            (3, VARINT) => value = Some(Value::Int(r.varint()? as i64)),
            (4, FIXED64) => value = Some(Value::Double(f64::from_bits(r.fixed64()?))),
            (5, LEN) => {
                let mut items = Vec::new();
                let mut a = Reader { bytes: r.bytes()?, at: 0 };
                while !a.done() {
                    match a.key()? {
                        (1, LEN) => items.push(any_value(a.bytes()?, depth + 1)?),
                        (1, _) => return None,
                        (_, wire) => a.skip(wire)?,
                    }
                }
                value = Some(Value::Array(items));
            }
            (6, LEN) => {
                let mut entries = Vec::new();
                let mut m = Reader { bytes: r.bytes()?, at: 0 };
                while !m.done() {
                    match m.key()? {
                        (1, LEN) => {
                            let (k, v) = entry(m.bytes()?, depth + 1)?;
                            entries.push((k.to_owned(), v));
                        }
                        (1, _) => return None,
                        (_, wire) => m.skip(wire)?,
                    }
                }
                value = Some(Value::Map(entries));
            }
            (7, LEN) => value = Some(Value::Bytes(r.bytes()?.to_vec())),
            // A string-table index (the profiles signal's): no table here.
            (8, VARINT) => {
                r.varint()?;
                value = Some(Value::Empty);
            }
            (1..=8, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some(value.unwrap_or(Value::Empty))
}

/// Protobuf's wire format, read as prost reads it; `None` where prost
/// would return an error.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// How many length-delimited fields of each of these numbers the
    /// message holds, read ahead without moving.
    fn count_lists<const N: usize>(&self, fields: [u32; N]) -> Option<[usize; N]> {
        let mut ahead = Reader { bytes: self.bytes, at: self.at };
        let mut counts = [0usize; N];
        while !ahead.done() {
            let (field, wire) = ahead.key()?;
            ahead.skip(wire)?;
            if wire == LEN
                && let Some(i) = fields.iter().position(|f| *f == field)
            {
                counts[i] += 1;
            }
        }
        Some(counts)
    }

    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        varint(self.bytes, &mut self.at)
    }

    fn key(&mut self) -> Option<(u32, u8)> {
        let key = self.varint()?;
        let key = u32::try_from(key).ok()?;
        let wire = (key & 7) as u8;
        let field = key >> 3;
        if field == 0 || wire > 5 {
            return None;
        }
        Some((field, wire))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn fixed64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn fixed32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// Skips an unknown field (groups are not skipped: prost's path).
    fn skip(&mut self, wire: u8) -> Option<()> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};
    use opentelemetry_proto::tonic::trace::v1::span::{Event as OtlpEvent, Link as OtlpLink};
    use opentelemetry_proto::tonic::trace::v1::{Span as OtlpSpan, Status};
    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    fn context() -> (Arc<Resource>, Arc<Scope>) {
        let mut resource = Resource::for_service("svc");
        resource.attributes.set("service.instance.id", "i-1");
        (Arc::new(resource), Arc::new(Scope::default()))
    }

    /// What prost and [`Span::from_otlp`] make of `bytes`, as text (a NaN
    /// is equal to itself there).
    fn two_steps(bytes: &[u8]) -> Option<String> {
        let (resource, scope) = context();
        let otlp = OtlpSpan::decode(bytes).ok()?;
        Span::from_otlp(&otlp, &resource, &scope).ok().map(|s| format!("{s:?}"))
    }

    fn direct(bytes: &[u8]) -> Option<String> {
        let (resource, scope) = context();
        decode(bytes, &resource, &scope).map(|s| format!("{s:?}"))
    }

    /// [`Fields`] as text, to compare.
    fn fields_text(f: &Fields) -> String {
        format!(
            "{:?}",
            (
                (f.trace_id, f.span_id, f.parent_span_id, f.name, f.kind),
                (f.start_unix_nano, f.end_unix_nano, f.status_code),
                (f.keys.keys(), f.keys.session(), &f.link_trace_ids),
            )
        )
    }

    /// What prost's decoding and [`Fields::of_otlp`] make of `bytes`.
    fn prost_fields(bytes: &[u8]) -> Option<String> {
        let otlp = OtlpSpan::decode(bytes).ok()?;
        Some(fields_text(&Fields::of_otlp(&otlp)))
    }

    fn direct_fields(bytes: &[u8]) -> Option<String> {
        fields(bytes).map(|f| fields_text(&f))
    }

    /// Spans whose attributes include the keyed ones, with text, integer
    /// and other values.
    fn keyed_span() -> impl Strategy<Value = OtlpSpan> {
        let keyed = proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    "session.id",
                    "langfuse.session.id",
                    "gen_ai.conversation.id",
                    "user.id",
                    "messaging.message.id",
                    "messaging.conversation_id",
                    "gen_ai.tool.call.id",
                    "tool_call.id",
                    "mcp.session.id",
                    "jsonrpc.request.id",
                    "mcp.request.id",
                ]),
                proptest::option::of(any_value_tree()),
            ),
            0..6,
        );
        (otlp_span(), keyed).prop_map(|(mut span, keyed)| {
            for (key, value) in keyed {
                span.attributes.push(KeyValue { key: key.to_owned(), value, key_strindex: 0 });
            }
            span
        })
    }

    #[test]
    fn every_span_of_the_doctors_corpus_decodes_as_prost_and_from_otlp_do() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../doctor/tests/corpus");
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.file_name().is_some_and(|n| n == "spans.jsonl") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 100, "the corpus: {} files", files.len());
        let mut spans = 0;
        for file in files {
            for line in std::fs::read_to_string(&file).unwrap().lines().filter(|l| !l.trim().is_empty()) {
                let request = crate::otlp::decode_json(line.as_bytes(), &Default::default()).unwrap().request;
                for span in request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                    let bytes = span.encode_to_vec();
                    let want = two_steps(&bytes);
                    assert!(want.is_some(), "{}: a span the corpus holds is valid", file.display());
                    assert_eq!(direct_fields(&bytes), prost_fields(&bytes), "{}: its fields", file.display());
                    assert_eq!(direct(&bytes), want, "{}", file.display());
                    spans += 1;
                }
            }
        }
        assert!(spans > 5000, "{spans} spans");
    }

    fn any_value_tree() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            any::<String>().prop_map(any_value::Value::StringValue),
            any::<bool>().prop_map(any_value::Value::BoolValue),
            any::<i64>().prop_map(any_value::Value::IntValue),
            any::<f64>().prop_map(any_value::Value::DoubleValue),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(any_value::Value::BytesValue),
            any::<i32>().prop_map(any_value::Value::StringValueStrindex),
        ]
        .prop_map(|v| AnyValue { value: Some(v) });
        let leaf = prop_oneof![9 => leaf, 1 => Just(AnyValue { value: None })];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|values| any_value::Value::ArrayValue(ArrayValue { values })),
                proptest::collection::vec(("[a-z.]{0,6}", proptest::option::of(inner)), 0..4).prop_map(|kvs| {
                    any_value::Value::KvlistValue(KeyValueList {
                        values: kvs.into_iter().map(|(key, value)| KeyValue { key, value, key_strindex: 0 }).collect(),
                    })
                }),
            ]
            .prop_map(|v| AnyValue { value: Some(v) })
        })
    }

    fn key_values() -> impl Strategy<Value = Vec<KeyValue>> {
        proptest::collection::vec(
            ("(gen_ai|session|messaging)\\.[a-z_]{0,8}|\\PC{0,12}", proptest::option::of(any_value_tree()), 0..3i32),
            0..6,
        )
        .prop_map(|kvs| {
            kvs.into_iter().map(|(key, value, key_strindex)| KeyValue { key, value, key_strindex }).collect()
        })
    }

    fn id(lens: &'static [usize]) -> impl Strategy<Value = Vec<u8>> {
        proptest::sample::select(lens).prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n))
    }

    fn otlp_span() -> impl Strategy<Value = OtlpSpan> {
        (
            (id(&[16, 16, 16, 0, 5]), id(&[8, 8, 8, 0, 3]), id(&[0, 8, 8, 2]), "\\PC{0,8}", "\\PC{0,16}"),
            (any::<u32>(), -1..7i32, any::<u64>(), any::<u64>(), any::<u32>()),
            key_values(),
            proptest::collection::vec((any::<u64>(), "\\PC{0,8}", key_values(), any::<u32>()), 0..3),
            proptest::collection::vec(
                (id(&[16, 16, 0]), id(&[8, 8, 1]), "\\PC{0,4}", key_values(), any::<u32>(), any::<u32>()),
                0..3,
            ),
            (any::<u32>(), any::<u32>(), proptest::option::of(("\\PC{0,8}", -1..4i32))),
        )
            .prop_map(
                |(
                    (trace_id, span_id, parent, trace_state, name),
                    (flags, kind, start, end, dropped),
                    attributes,
                    events,
                    links,
                    (de, dl, status),
                )| {
                    OtlpSpan {
                        trace_id,
                        span_id,
                        trace_state,
                        parent_span_id: parent,
                        flags,
                        name,
                        kind,
                        start_time_unix_nano: start,
                        end_time_unix_nano: end,
                        attributes,
                        dropped_attributes_count: dropped,
                        events: events
                            .into_iter()
                            .map(|(time_unix_nano, name, attributes, dropped_attributes_count)| OtlpEvent {
                                time_unix_nano,
                                name,
                                attributes,
                                dropped_attributes_count,
                            })
                            .collect(),
                        dropped_events_count: de,
                        links: links
                            .into_iter()
                            .map(|(trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags)| {
                                OtlpLink { trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags }
                            })
                            .collect(),
                        dropped_links_count: dl,
                        status: status.map(|(message, code)| Status { message, code }),
                    }
                },
            )
    }

    /// `span` encoded, every field sent twice if `repeat` (scalars take the
    /// last, lists grow, the status merges), `edits` written over it, and
    /// cut at `cut`.
    fn damaged(
        span: &OtlpSpan,
        repeat: bool,
        edits: &[(proptest::sample::Index, u8)],
        cut: proptest::sample::Index,
    ) -> Vec<u8> {
        let mut bytes = span.encode_to_vec();
        if repeat {
            let again = bytes.clone();
            bytes.extend(again);
        }
        if !bytes.is_empty() {
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = *b;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        bytes
    }

    #[test]
    fn a_known_field_of_the_wrong_type_goes_to_prost() {
        // A key's string-table index (field 3, an int32) sent as bytes:
        // prost refuses the span, so the direct decoder must not accept it.
        let span = OtlpSpan { trace_id: vec![1; 16], span_id: vec![2; 8], ..Default::default() };
        let mut bytes = span.encode_to_vec();
        let attribute = [0x0a, 0x01, b'k', 0x1a, 0x01, b'x'];
        bytes.extend([0x4a, attribute.len() as u8]);
        bytes.extend(attribute);
        assert_eq!(two_steps(&bytes), None);
        assert_eq!(direct(&bytes), None);
        // As an int32 it is read and not used, by both.
        let mut bytes = span.encode_to_vec();
        let attribute = [0x0a, 0x01, b'k', 0x18, 0x07];
        bytes.extend([0x4a, attribute.len() as u8]);
        bytes.extend(attribute);
        assert!(direct(&bytes).is_some());
        assert_eq!(direct(&bytes), two_steps(&bytes));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any span prost encodes decodes here to what prost and
        /// `from_otlp` make of it; only spans whose IDs are invalid (which
        /// `from_otlp` rejects too) are left to them.
        #[test]
        fn an_encoded_span_decodes_as_prost_and_from_otlp_do(span in otlp_span()) {
            let bytes = span.encode_to_vec();
            let want = two_steps(&bytes);
            let got = direct(&bytes);
            if want.is_some() {
                prop_assert_eq!(got, want);
            } else {
                prop_assert!(got.is_none());
            }
        }

        /// Any span prost encodes has the fields prost's decoding gives.
        #[test]
        fn an_encoded_spans_fields_are_read_as_prost_reads_them(span in keyed_span()) {
            let bytes = span.encode_to_vec();
            prop_assert_eq!(direct_fields(&bytes), prost_fields(&bytes));
        }

        /// Damaged or repeated bytes: whatever fields are read here, prost
        /// reads alike when it accepts the bytes (what is refused here goes
        /// to prost).
        #[test]
        fn damaged_bytes_fields_are_read_as_prost_reads_them_or_go_to_it(
            span in keyed_span(),
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<proptest::sample::Index>(),
            repeat in any::<bool>(),
        ) {
            let bytes = damaged(&span, repeat, &edits, cut);
            if let (Some(got), Some(want)) = (direct_fields(&bytes), prost_fields(&bytes)) {
                prop_assert_eq!(got, want);
            }
        }

        /// Damaged or reordered bytes: whatever this decoder accepts, the
        /// two steps accept and read alike (what it refuses goes to them).
        #[test]
        fn damaged_bytes_decode_as_prost_and_from_otlp_do_or_go_to_them(
            span in otlp_span(),
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<proptest::sample::Index>(),
            repeat in any::<bool>(),
        ) {
            let bytes = damaged(&span, repeat, &edits, cut);
            if let Some(got) = direct(&bytes) {
                prop_assert_eq!(Some(got), two_steps(&bytes));
            }
        }
    }
}
