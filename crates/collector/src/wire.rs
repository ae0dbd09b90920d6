//! A request encoded once, on its way in.
//!
//! After redaction ([`crate::redact`]) and before anything else, the
//! receiver encodes the request the store keeps exactly once (protobuf, as
//! prost writes it), or takes a clean body as it arrived
//! ([`crate::redact::CleanBody`]), and every path that needs bytes or
//! fields takes them from here:
//! the store's chunk copies each span's bytes ([`crate::store`]), the live
//! pipeline's per-trace blocks copy them too ([`crate::assemble`]), and
//! every exporter whose content policy is the store's queues the whole
//! request's bytes, compressed once for all of them ([`crate::export`]).
//!
//! Nothing is decoded again: the encoding is walked at the wire level (every
//! field of a request, resource spans and scope spans is length-delimited),
//! which is what lets a span's bytes, and a resource or scope without its
//! children, be cut out of the whole.

use std::ops::Range;

use agentrace_model::span_bytes::Fields;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

/// A request's protobuf encoding, with where its parts are.
#[derive(Debug, Clone)]
pub struct Encoded {
    bytes: Bytes,
    resources: Vec<EncodedResource>,
}

/// One `ResourceSpans` of an [`Encoded`] request.
#[derive(Debug, Clone)]
pub struct EncodedResource {
    /// The `ResourceSpans` with no scopes (its resource and schema URL), encoded.
    pub shell: Vec<u8>,
    /// Its scopes, in order.
    pub scopes: Vec<EncodedScope>,
}

/// One `ScopeSpans` of an [`Encoded`] request.
#[derive(Debug, Clone)]
pub struct EncodedScope {
    /// The `ScopeSpans` with no spans (its scope and schema URL), encoded.
    pub shell: Vec<u8>,
    /// Each span, length-delimited (its length, then the span), as a range
    /// of [`Encoded::bytes`]; in order.
    pub spans: Vec<Range<usize>>,
}

/// Why bytes are not a request this module can walk.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an encoded export request: {0}")]
pub struct WireError(&'static str);

/// One field of a message: its number and the byte ranges of the whole
/// field (key, length, content), of its length and content, and of its
/// content.
struct Field {
    number: u64,
    whole: Range<usize>,
    delimited: Range<usize>,
    content: Range<usize>,
}

/// The fields of the message in `bytes[range]`; every one must be
/// length-delimited (true of a request, resource spans and scope spans).
fn fields(bytes: &[u8], range: Range<usize>) -> Result<Vec<Field>, WireError> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let start = at;
        let key = varint(bytes, &mut at, range.end)?;
        if key & 7 != 2 {
            return Err(WireError("a field that is not length-delimited"));
        }
        let after_key = at;
        let len = usize::try_from(varint(bytes, &mut at, range.end)?).map_err(|_| WireError("length too large"))?;
        let content = at..at.checked_add(len).filter(|&e| e <= range.end).ok_or(WireError("field overruns"))?;
        at = content.end;
        out.push(Field { number: key >> 3, whole: start..at, delimited: after_key..at, content });
    }
    Ok(out)
}

fn varint(bytes: &[u8], at: &mut usize, end: usize) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let &b = bytes.get(*at).filter(|_| *at < end).ok_or(WireError("truncated varint"))?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError("varint too long"))
}

/// The fields of `fields` other than number `skip`, concatenated: the
/// message without its children of that field.
fn shell(bytes: &[u8], fields: &[Field], skip: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields.iter().filter(|f| f.number != skip) {
        out.extend_from_slice(&bytes[f.whole.clone()]);
    }
    out
}

impl EncodedResource {
    /// Its resource and schema URL (the shell decoded; empty if it does not decode).
    pub fn decode_shell(&self) -> ResourceSpans {
        ResourceSpans::decode(self.shell.as_slice()).unwrap_or_default()
    }
}

impl EncodedScope {
    /// Its scope and schema URL (the shell decoded; empty if it does not decode).
    pub fn decode_shell(&self) -> ScopeSpans {
        ScopeSpans::decode(self.shell.as_slice()).unwrap_or_default()
    }
}

impl Encoded {
    /// Encodes `request` once.
    pub fn new(request: &ExportTraceServiceRequest) -> Encoded {
        // prost writes only length-delimited fields for these messages, so
        // its own output always walks.
        Encoded::parse(request.encode_to_vec()).unwrap_or_else(|_| unreachable!("prost's encoding walks"))
    }

    /// The [`Fields`] of the span at `range` (one of [`EncodedScope::spans`]),
    /// given to `f`: read from its bytes, or, where they need prost's
    /// decoder, from what it decodes. `None` for bytes that are no span.
    pub fn span_fields<R>(&self, range: &Range<usize>, f: impl FnOnce(&Fields<'_>) -> R) -> Option<R> {
        let mut bytes = self.span(range);
        let len = prost::decode_length_delimiter(&mut bytes).ok()?;
        let bytes = bytes.get(..len)?;
        if let Some(fields) = agentrace_model::span_bytes::fields(bytes) {
            return Some(f(&fields));
        }
        let span = opentelemetry_proto::tonic::trace::v1::Span::decode(bytes).ok()?;
        Some(f(&Fields::of_otlp(&span)))
    }

    /// Walks bytes that are already an encoded request (a queue row),
    /// without decoding them.
    pub fn parse(bytes: impl Into<Bytes>) -> Result<Encoded, WireError> {
        let bytes: Bytes = bytes.into();
        let mut resources = Vec::new();
        for rs in fields(&bytes, 0..bytes.len())?.into_iter().filter(|f| f.number == 1) {
            let rs_fields = fields(&bytes, rs.content)?;
            let mut scopes = Vec::new();
            for ss in rs_fields.iter().filter(|f| f.number == 2) {
                let ss_fields = fields(&bytes, ss.content.clone())?;
                let spans = ss_fields.iter().filter(|f| f.number == 2).map(|f| f.delimited.clone()).collect();
                scopes.push(EncodedScope { shell: shell(&bytes, &ss_fields, 2), spans });
            }
            resources.push(EncodedResource { shell: shell(&bytes, &rs_fields, 2), scopes });
        }
        Ok(Encoded { bytes, resources })
    }

    /// The whole request, encoded.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its resources, in order.
    pub fn resources(&self) -> &[EncodedResource] {
        &self.resources
    }

    /// A span's bytes, length-delimited, by its range in a scope.
    pub fn span(&self, range: &Range<usize>) -> &[u8] {
        &self.bytes[range.clone()]
    }

    /// How many spans it holds.
    pub fn span_count(&self) -> usize {
        self.resources.iter().flat_map(|r| &r.scopes).map(|s| s.spans.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn attr(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn request() -> ExportTraceServiceRequest {
        let span = |i: u8, len: usize| Span {
            trace_id: vec![i; 16],
            span_id: vec![i; 8],
            name: "x".repeat(len),
            attributes: vec![attr("gen_ai.agent.name", "researcher")],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource { attributes: vec![attr("service.name", "a")], ..Default::default() }),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: Some(InstrumentationScope { name: "s1".into(), ..Default::default() }),
                            // A span over 127 bytes has a two-byte length.
                            spans: vec![span(1, 3), span(2, 300)],
                            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                        },
                        ScopeSpans { scope: None, spans: vec![span(3, 1)], schema_url: String::new() },
                    ],
                    schema_url: "https://opentelemetry.io/schemas/1.27.0".into(),
                },
                ResourceSpans { resource: None, scope_spans: vec![], schema_url: String::new() },
            ],
        }
    }

    #[test]
    fn the_parts_are_what_encoding_each_part_gives() {
        let req = request();
        let enc = Encoded::new(&req);
        assert_eq!(enc.bytes(), req.encode_to_vec().as_slice());
        assert_eq!(enc.resources().len(), 2);
        assert_eq!(enc.span_count(), 3);
        for (rs, er) in req.resource_spans.iter().zip(enc.resources()) {
            let shell = ResourceSpans { scope_spans: vec![], ..rs.clone() };
            assert_eq!(er.shell, shell.encode_to_vec());
            for (ss, es) in rs.scope_spans.iter().zip(&er.scopes) {
                let shell = ScopeSpans { spans: vec![], ..ss.clone() };
                assert_eq!(es.shell, shell.encode_to_vec());
                assert_eq!(es.spans.len(), ss.spans.len());
                for (span, r) in ss.spans.iter().zip(&es.spans) {
                    assert_eq!(enc.span(r), span.encode_length_delimited_to_vec().as_slice());
                }
            }
        }
    }

    #[test]
    fn bytes_that_are_no_request_are_refused_not_misread() {
        let good = request().encode_to_vec();
        assert!(Encoded::parse(good[..good.len() - 3].to_vec()).is_err(), "truncated");
        assert!(Encoded::parse(vec![0x08, 0x01]).is_err(), "a varint field");
        assert!(Encoded::parse(vec![0x0a, 0xff]).is_err(), "a truncated length");
        assert_eq!(Encoded::parse(Vec::new()).unwrap().span_count(), 0);
    }

    // A body in another field order than prost writes it (as another
    // encoder may write it) walks: its shells and spans are cut out as they
    // are, and decode to the request.
    #[test]
    fn a_body_in_another_field_order_walks() {
        let req = request();
        // Fields in another order than prost writes them: the same request.
        let mut reordered = Vec::new();
        for rs in &req.resource_spans {
            let mut inner = Vec::new();
            for ss in &rs.scope_spans {
                prost::encoding::message::encode(2, ss, &mut inner);
            }
            if let Some(resource) = &rs.resource {
                prost::encoding::message::encode(1, resource, &mut inner);
            }
            if !rs.schema_url.is_empty() {
                prost::encoding::string::encode(3, &rs.schema_url, &mut inner);
            }
            prost::encoding::bytes::encode(1, &inner, &mut reordered);
        }
        let decoded = ExportTraceServiceRequest::decode(reordered.as_slice()).unwrap();
        assert_eq!(decoded, req);
        let enc = Encoded::parse(Bytes::from(reordered.clone())).unwrap();
        assert_eq!(enc.bytes(), reordered.as_slice());
        for (rs, er) in req.resource_spans.iter().zip(enc.resources()) {
            let shell = ResourceSpans::decode(er.shell.as_slice()).unwrap();
            assert_eq!(shell, ResourceSpans { scope_spans: vec![], ..rs.clone() });
            for (ss, es) in rs.scope_spans.iter().zip(&er.scopes) {
                for (span, r) in ss.spans.iter().zip(&es.spans) {
                    assert_eq!(enc.span(r), span.encode_length_delimited_to_vec().as_slice());
                }
            }
        }
    }
}
