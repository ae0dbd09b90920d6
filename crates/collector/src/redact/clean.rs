//! The fast lane: a request checked at the byte level and taken as
//! received, never decoded.
//!
//! Nothing downstream of the receivers needs a decoded request: the
//! exporters queue bytes, and the store's rows and the pipeline's blocks are
//! read from the request's one encoding ([`crate::wire`]). Decoding it anyway
//! (prost), then validating and redacting a request that almost always comes
//! out as it went in, was the largest part of the pass-through's cost, and a
//! tenth of the full pipeline's. [`Redactor::clean`] walks the received
//! protobuf once, without allocating per field, and answers whether
//! decoding, validating ([`agentrace_model::otlp::validate`]) and redacting
//! ([`Redactor::redact`]) it would change nothing. Only then is the body
//! taken as it arrived, as a [`CleanBody`]; any doubt sends it down the
//! ordinary road, which decodes it, says what was wrong, and masks, drops or
//! rejects what it must.
//!
//! So this module restates, at the byte level, rules whose one definition is
//! elsewhere (validation in `agentrace_model::otlp`, redaction in this
//! module's parent), and always on the side of doubt: it may send down the
//! ordinary road a body that would have come out unchanged, never the
//! reverse. A proptest and a fuzz target (`fuzz_targets/clean_lane.rs`) hold
//! it to that against the decoder, validator and redactor themselves.
//!
//! A body is clean only when:
//! - every field is one of OTLP's trace messages as this build decodes them,
//!   of the right wire type, each singular field at most once and each
//!   `AnyValue` holding at most one value: a field the decoder does not know
//!   may hold anything, and redaction would never have seen it;
//! - every string is UTF-8 (the decoder refuses the body otherwise);
//! - every span has valid trace and span IDs, unique in the request, and a
//!   parent ID that is absent or valid (an all-zero one is cleared by
//!   validation: a change); no list holds more attributes than
//!   [`Limits::max_attributes`] and no value nests deeper than
//!   [`Limits::max_value_depth`]; every resource and scope holds a span;
//! - no event has a `sensitive` attribute, no list of attributes a content
//!   attribute (when some sink's content action is not `keep`), and no
//!   string (names, states, messages, URLs, keys and values at any depth,
//!   bytes that are text) a secret.

use agentrace_model::ids::{SpanId, TraceId};
use agentrace_model::otlp::Limits;
use bytes::Bytes;

use super::Redactor;

/// A received protobuf body that decoding, validation and redaction would
/// leave exactly as it is; made only by [`Redactor::clean`].
#[derive(Debug, Clone)]
pub struct CleanBody {
    body: Bytes,
    spans: u64,
}

impl CleanBody {
    /// The body, as received.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The spans it holds.
    pub fn spans(&self) -> u64 {
        self.spans
    }
}

/// Deepest nesting of lists and maps walked, whatever the limits say. prost
/// refuses a body nested past 100 messages; a request reaches an attribute's
/// value through five, and each level of a map adds three (an entry, its
/// value, the next map), so 24 levels stay 20 messages inside its limit.
const MAX_NESTING: usize = 24;

impl Redactor {
    /// The body as a [`CleanBody`] when decoding, validating (under
    /// `limits`) and redacting it would change nothing and it holds at least
    /// one span; `None` when it must take the ordinary road. `content` says
    /// whether some sink's content action drops or hashes content
    /// attributes (when every one keeps them, they are no change).
    pub fn clean(&self, body: Bytes, limits: &Limits, content: bool) -> Option<CleanBody> {
        let mut scan = Scan { redactor: self, limits, content, ids: Vec::new() };
        scan.request(&body)?;
        if scan.ids.is_empty() {
            return None;
        }
        let spans = scan.ids.len() as u64;
        scan.ids.sort_unstable();
        if scan.ids.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
        Some(CleanBody { body, spans })
    }
}

/// A field's value as the wire gives it.
enum Value<'a> {
    Varint,
    Fixed64,
    Fixed32,
    Delimited(&'a [u8]),
}

/// The fields of one message, in order; `None` at the first malformed one.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        Fields { bytes, at: 0 }
    }

    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        agentrace_model::span_bytes::varint(self.bytes, &mut self.at)
    }

    /// The next field, `Some(None)` at the end, `None` when malformed.
    fn next(&mut self) -> Option<Option<(u64, Value<'a>)>> {
        if self.at >= self.bytes.len() {
            return Some(None);
        }
        // A key past 32 bits is refused by the decoder.
        let key = u32::try_from(self.varint()?).ok()?;
        let (field, wire) = (u64::from(key >> 3), key & 7);
        let value = match wire {
            0 => {
                self.varint()?;
                Value::Varint
            }
            1 => {
                self.at = self.at.checked_add(8).filter(|&e| e <= self.bytes.len())?;
                Value::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                let end = self.at.checked_add(len).filter(|&e| e <= self.bytes.len())?;
                let body = &self.bytes[self.at..end];
                self.at = end;
                Value::Delimited(body)
            }
            5 => {
                self.at = self.at.checked_add(4).filter(|&e| e <= self.bytes.len())?;
                Value::Fixed32
            }
            _ => return None,
        };
        // Field 0 is invalid protobuf.
        if field == 0 {
            return None;
        }
        Some(Some((field, value)))
    }
}

/// Singular fields seen in one message: a second one is merged or replaced
/// by the decoder, which the walk does not follow.
#[derive(Default)]
struct Once(u32);

impl Once {
    fn first(&mut self, field: u64) -> Option<()> {
        let bit = 1u32.checked_shl(u32::try_from(field).ok()?)?;
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

/// Which list of attributes a key is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum List {
    /// Of a resource, scope, span or link: content attributes are looked for.
    Top,
    /// Of an event: content attributes, and the `sensitive` marker.
    Event,
    /// Inside a map value: only secrets.
    Nested,
}

struct Scan<'r> {
    redactor: &'r Redactor,
    limits: &'r Limits,
    content: bool,
    /// Each span's (trace ID, span ID), to find a pair used twice.
    ids: Vec<(u128, u64)>,
}

impl Scan<'_> {
    fn request(&mut self, bytes: &[u8]) -> Option<()> {
        let mut fields = Fields::of(bytes);
        while let Some((field, value)) = fields.next()? {
            match (field, value) {
                (1, Value::Delimited(b)) => self.resource_spans(b)?,
                _ => return None,
            }
        }
        Some(())
    }

    fn resource_spans(&mut self, bytes: &[u8]) -> Option<()> {
        let (mut fields, mut once, mut scopes) = (Fields::of(bytes), Once::default(), 0usize);
        while let Some((field, value)) = fields.next()? {
            match (field, value) {
                (1, Value::Delimited(b)) => {
                    once.first(1)?;
                    self.resource(b)?;
                }
                (2, Value::Delimited(b)) => {
                    self.scope_spans(b)?;
                    scopes += 1;
                }
                (3, Value::Delimited(b)) => {
                    once.first(3)?;
                    self.text(b)?;
                }
                _ => return None,
            }
        }
        // Validation leaves out a resource with no spans.
        (scopes > 0).then_some(())
    }

    fn resource(&mut self, bytes: &[u8]) -> Option<()> {
        let (mut fields, mut once, mut attributes) = (Fields::of(bytes), Once::default(), 0usize);
        while let Some((field, value)) = fields.next()? {
            match (field, value) {
                (1, Value::Delimited(b)) => self.attribute(b, List::Top, &mut attributes)?,
                (2, Value::Varint) => once.first(2)?,
                _ => return None,
            }
        }
        Some(())
    }

    fn scope_spans(&mut self, bytes: &[u8]) -> Option<()> {
        let (mut fields, mut once, mut spans) = (Fields::of(bytes), Once::default(), 0usize);
        while let Some((field, value)) = fields.next()? {
            match (field, value) {
                (1, Value::Delimited(b)) => {
                    once.first(1)?;
                    self.scope(b)?;
                }
                (2, Value::Delimited(b)) => {
                    self.span(b)?;
                    spans += 1;
                }
                (3, Value::Delimited(b)) => {
                    once.first(3)?;
                    self.text(b)?;
                }
                _ => return None,
            }
        }
        // Validation leaves out a scope with no spans.
        (spans > 0).then_some(())
    }

    fn scope(&mut self, bytes: &[u8]) -> Option<()> {
        let (mut fields, mut once, mut attributes) = (Fields::of(bytes), Once::default(), 0usize);
        while let Some((field, value)) = fields.next()? {
            match (field, value) {
                (1 | 2, Value::Delimited(b)) => {
                    once.first(field)?;
                    self.text(b)?;
                }
                (3, Value::Delimited(b)) => self.attribute(b, List::Top, &mut attributes)?,
                (4, Value::Varint) => once.first(4)?,
                _ => return None,
            }
        }
        Some(())
    }

    fn span(&mut self, bytes: &[u8]) -> Option<()> {
        let (mut fields, mut once, mut attributes) = (Fields::of(bytes), Once::default(), 0usize);
        let (mut trace_id, mut span_id) = (None, None);
        while let Some((field, value)) = fields.next()? {
            match (field, value) {
                (1, Value::Delimited(b)) => {
                    once.first(1)?;
                    trace_id = Some(u128::from_be_bytes(TraceId::from_slice(b).ok()?.to_bytes()));
                }
                (2, Value::Delimited(b)) => {
                    once.first(2)?;
                    span_id = Some(u64::from_be_bytes(SpanId::from_slice(b).ok()?.to_bytes()));
                }
                // An all-zero parent is cleared by validation, one of
                // another length refused: only none or a valid one is clean.
                (4, Value::Delimited(b)) => {
                    once.first(4)?;
                    if !b.is_empty() {
                        SpanId::from_slice(b).ok()?;
                    }
                }
                (3 | 5, Value::Delimited(b)) => {
                    once.first(field)?;
                    self.text(b)?;
                }
                (6 | 10 | 12 | 14, Value::Varint) | (7 | 8, Value::Fixed64) | (16, Value::Fixed32) => {
                    once.first(field)?
                }
                (9, Value::Delimited(b)) => self.attribute(b, List::Top, &mut attributes)?,
                (11, Value::Delimited(b)) => self.event(b)?,
                (13, Value::Delimited(b)) => self.link(b)?,
                (15, Value::Delimited(b)) => {
                    once.first(15)?;
                    self.status(b)?;
                }
                _ => return None,
            }
        }
        self.ids.push((trace_id?, span_id?));
        Some(())
    }

    fn event(&mut self, bytes: &[u8]) -> Option<()> {
        let (mut fields, mut once, mut attributes) = (Fields::of(bytes), Once::default(), 0usize);
        while let Some((field, value)) = fields.next()? {
            match (field, value) {
                (1, Value::Fixed64) | (4, Value::Varint) => once.first(field)?,
                (2, Value::Delimited(b)) => {
                    once.first(2)?;
                    self.text(b)?;
                }
                (3, Value::Delimited(b)) => self.attribute(b, List::Event, &mut attributes)?,
                _ => return None,
            }
        }
        Some(())
    }

    fn link(&mut self, bytes: &[u8]) -> Option<()> {
        let (mut fields, mut once, mut attributes) = (Fields::of(bytes), Once::default(), 0usize);
        while let Some((field, value)) = fields.next()? {
            match (field, value) {
                // Link IDs are bytes the decoder and validation take as they are.
                (1 | 2, Value::Delimited(_)) | (5, Value::Varint) | (6, Value::Fixed32) => once.first(field)?,
                (3, Value::Delimited(b)) => {
                    once.first(3)?;
                    self.text(b)?;
                }
                (4, Value::Delimited(b)) => self.attribute(b, List::Top, &mut attributes)?,
                _ => return None,
            }
        }
        Some(())
    }

    fn status(&mut self, bytes: &[u8]) -> Option<()> {
        let (mut fields, mut once) = (Fields::of(bytes), Once::default());
        while let Some((field, value)) = fields.next()? {
            match (field, value) {
                (2, Value::Delimited(b)) => {
                    once.first(2)?;
                    self.text(b)?;
                }
                (3, Value::Varint) => once.first(3)?,
                _ => return None,
            }
        }
        Some(())
    }

    /// One `KeyValue` of a list; `count` is the list's attributes so far.
    fn attribute(&mut self, bytes: &[u8], list: List, count: &mut usize) -> Option<()> {
        *count += 1;
        if *count > self.limits.max_attributes {
            return None;
        }
        self.key_value(bytes, list, 0)
    }

    fn key_value(&mut self, bytes: &[u8], list: List, nesting: usize) -> Option<()> {
        let (mut fields, mut once) = (Fields::of(bytes), Once::default());
        while let Some((field, value)) = fields.next()? {
            match (field, value) {
                (1, Value::Delimited(b)) => {
                    once.first(1)?;
                    // A key found clean before is UTF-8 and holds no secret:
                    // most keys are, and are neither checked nor searched.
                    if !self.redactor.key_known_clean(b) {
                        let key = std::str::from_utf8(b).ok()?;
                        if self.redactor.key_has_secret(key) {
                            return None;
                        }
                    }
                    if list != List::Nested && self.content && self.redactor.is_content_bytes(b) {
                        return None;
                    }
                    // Whatever its value says, the ordinary road decides
                    // whether an event marked sensitive is dropped.
                    if list == List::Event && b == b"sensitive" {
                        return None;
                    }
                }
                (2, Value::Delimited(b)) => {
                    once.first(2)?;
                    self.any_value(b, nesting)?;
                }
                _ => return None,
            }
        }
        Some(())
    }

    /// An `AnyValue` inside `nesting` arrays and maps.
    fn any_value(&mut self, bytes: &[u8], nesting: usize) -> Option<()> {
        let mut fields = Fields::of(bytes);
        let mut values = 0;
        while let Some((field, value)) = fields.next()? {
            values += 1;
            if values > 1 {
                return None;
            }
            match (field, value) {
                (1, Value::Delimited(b)) => self.text(b)?,
                (2 | 3, Value::Varint) | (4, Value::Fixed64) => {}
                (5 | 6, Value::Delimited(b)) => {
                    let nesting = nesting + 1;
                    if nesting > self.limits.max_value_depth || nesting > MAX_NESTING {
                        return None;
                    }
                    let mut items = Fields::of(b);
                    while let Some((item, value)) = items.next()? {
                        match (item, value) {
                            (1, Value::Delimited(v)) if field == 5 => self.any_value(v, nesting)?,
                            (1, Value::Delimited(kv)) => self.key_value(kv, List::Nested, nesting)?,
                            _ => return None,
                        }
                    }
                }
                // Bytes that are text are searched as text.
                (7, Value::Delimited(b)) => {
                    if let Ok(text) = std::str::from_utf8(b)
                        && self.redactor.has_secret(text)
                    {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        Some(())
    }

    /// A string field: UTF-8, and no secret in it.
    fn text(&self, bytes: &[u8]) -> Option<()> {
        let text = std::str::from_utf8(bytes).ok()?;
        (!self.redactor.has_secret(text)).then_some(())
    }
}
