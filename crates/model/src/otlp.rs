//! Decoding OTLP trace requests from untrusted bytes, with limits.
//!
//! Every byte that reaches agentrace from outside passes through one of the
//! three decoders here: [`decode_protobuf`], [`decode_json`] and
//! [`gunzip`]. They never panic, never allocate past the configured limits,
//! and say plainly what was wrong. After decoding, [`validate`] applies the
//! per-span rules of the OTLP specification: a span with an invalid ID, or
//! with the IDs of another span of the same request, is rejected (and
//! counted, for OTLP's partial-success answer) while the rest of the
//! request is kept.
//!
//! Documented normalisations (applied instead of refusing):
//! - enum *names* in OTLP JSON (`"kind": "SPAN_KIND_SERVER"`,
//!   `"code": "STATUS_CODE_ERROR"`) are read as their integers, as the
//!   OpenTelemetry Collector does;
//! - an all-zero parent span ID means "no parent";
//! - attributes past [`Limits::max_attributes`] on a span, event, link,
//!   resource or scope are dropped and added to its `dropped_attributes_count`,
//!   as the OpenTelemetry SDKs do at their own limits.

use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

use crate::ids::{SpanId, TraceId};

/// Limits applied to untrusted input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes a gzip body may inflate to.
    pub max_decompressed_bytes: usize,
    /// Most attributes kept on one span, event, link, resource or scope.
    pub max_attributes: usize,
    /// Deepest nesting of array and map values accepted in an attribute.
    pub max_value_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_decompressed_bytes: 64 * 1024 * 1024, max_attributes: 1024, max_value_depth: 16 }
    }
}

/// Why a request body could not be decoded at all. Each message says what
/// was wrong, so a sender can fix it; the caller answers 400 /
/// `INVALID_ARGUMENT` and keeps everything stored before.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The protobuf was malformed (truncated, wrong wire type, invalid
    /// UTF-8 in a string, nested too deeply, …).
    #[error("malformed OTLP protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The JSON was not valid OTLP JSON.
    #[error("malformed OTLP JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The gzip stream was corrupt or truncated.
    #[error("malformed gzip body: {0}")]
    Gzip(std::io::Error),
    /// The gzip stream inflated past [`Limits::max_decompressed_bytes`].
    #[error("gzip body inflates past the limit of {limit} bytes")]
    DecompressedTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
}

/// A decoded and validated request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    /// The request, holding only valid spans.
    pub request: ExportTraceServiceRequest,
    /// Spans accepted.
    pub accepted_spans: u64,
    /// Spans rejected by validation (OTLP `rejected_spans`).
    pub rejected_spans: u64,
    /// Why spans were rejected: the first few reasons, for OTLP's
    /// partial-success `error_message`. Empty when nothing was rejected.
    pub error_message: String,
}

/// Decodes an OTLP/protobuf `ExportTraceServiceRequest` and validates it.
pub fn decode_protobuf(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let request = ExportTraceServiceRequest::decode(bytes)?;
    Ok(validate(request, limits))
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest` and validates it.
///
/// Enum names are accepted where integers belong (see the module docs).
pub fn decode_json(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let request = match serde_json::from_slice::<ExportTraceServiceRequest>(bytes) {
        Ok(request) => request,
        Err(first) => {
            // The fast path failed; retry once with enum names normalised.
            // Only a body that then decodes is accepted, and the first error
            // is the one reported, since it names the real problem.
            let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
            if !normalise_enum_names(&mut value) {
                return Err(first.into());
            }
            serde_json::from_value(value).map_err(|_| first)?
        }
    };
    Ok(validate(request, limits))
}

/// Inflates a gzip body, refusing to go past `limit` bytes.
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
    let mut decoder = flate2::read::GzDecoder::new(bytes).take(limit as u64 + 1);
    decoder.read_to_end(&mut out).map_err(DecodeError::Gzip)?;
    if out.len() > limit {
        return Err(DecodeError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

/// Replaces enum names by integers in place; says whether it changed anything.
fn normalise_enum_names(value: &mut serde_json::Value) -> bool {
    let mut changed = false;
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if let serde_json::Value::String(name) = v {
                    let number = match key.as_str() {
                        "kind" => span_kind_number(name),
                        "code" => status_code_number(name),
                        _ => None,
                    };
                    if let Some(n) = number {
                        *v = serde_json::Value::from(n);
                        changed = true;
                    }
                } else {
                    changed |= normalise_enum_names(v);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                changed |= normalise_enum_names(v);
            }
        }
        _ => {}
    }
    changed
}

fn span_kind_number(name: &str) -> Option<i32> {
    Some(match name {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        _ => return None,
    })
}

fn status_code_number(name: &str) -> Option<i32> {
    Some(match name {
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        _ => return None,
    })
}

/// Applies OTLP's per-span rules: drops spans with invalid IDs or absurdly
/// nested values (counting them), normalises all-zero parents, caps
/// attribute counts. Empty resource and scope groups are removed.
pub fn validate(mut request: ExportTraceServiceRequest, limits: &Limits) -> Decoded {
    let mut accepted = 0u64;
    let mut rejected = 0u64;
    let mut reasons: Vec<String> = Vec::new();
    let mut reject = |reason: String, reasons: &mut Vec<String>| {
        rejected += 1;
        if reasons.len() < 3 && !reasons.contains(&reason) {
            reasons.push(reason);
        }
    };
    // A span ID names one span of its trace: a second span with the same
    // IDs in one request is refused and counted, not silently dropped later.
    let mut seen: std::collections::HashSet<(TraceId, SpanId)> = std::collections::HashSet::new();
    for rs in &mut request.resource_spans {
        if let Some(resource) = rs.resource.as_mut() {
            cap_attributes(&mut resource.attributes, &mut resource.dropped_attributes_count, limits);
        }
        for ss in &mut rs.scope_spans {
            if let Some(scope) = ss.scope.as_mut() {
                cap_attributes(&mut scope.attributes, &mut scope.dropped_attributes_count, limits);
            }
            ss.spans.retain_mut(|span| {
                let trace_id = match TraceId::from_slice(&span.trace_id) {
                    Ok(id) => id,
                    Err(e) => {
                        reject(format!("span {:?}: {e}", span.name), &mut reasons);
                        return false;
                    }
                };
                let span_id = match SpanId::from_slice(&span.span_id) {
                    Ok(id) => id,
                    Err(e) => {
                        reject(format!("span {:?}: {e}", span.name), &mut reasons);
                        return false;
                    }
                };
                if !seen.insert((trace_id, span_id)) {
                    let e = format!(
                        "span {:?}: span id {span_id} of trace {trace_id} is another span's of this request (the first is kept)",
                        span.name
                    );
                    reject(e, &mut reasons);
                    return false;
                }
                if !span.parent_span_id.is_empty() {
                    if span.parent_span_id.iter().all(|b| *b == 0) {
                        span.parent_span_id.clear();
                    } else if span.parent_span_id.len() != SpanId::LEN {
                        let e = format!(
                            "span {:?}: parent span id must be 8 bytes (16 hex digits), got {} bytes",
                            span.name,
                            span.parent_span_id.len()
                        );
                        reject(e, &mut reasons);
                        return false;
                    }
                }
                if let Some(key) = too_deep(&span.attributes, limits.max_value_depth) {
                    let e = format!(
                        "span {:?}: attribute {key:?} nests deeper than {} levels",
                        span.name, limits.max_value_depth
                    );
                    reject(e, &mut reasons);
                    return false;
                }
                cap_attributes(&mut span.attributes, &mut span.dropped_attributes_count, limits);
                for event in &mut span.events {
                    cap_attributes(&mut event.attributes, &mut event.dropped_attributes_count, limits);
                }
                for link in &mut span.links {
                    cap_attributes(&mut link.attributes, &mut link.dropped_attributes_count, limits);
                }
                accepted += 1;
                true
            });
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    request.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    Decoded {
        request,
        accepted_spans: accepted,
        rejected_spans: rejected,
        error_message: if reasons.is_empty() {
            String::new()
        } else {
            format!("rejected {rejected} span(s): {}", reasons.join("; "))
        },
    }
}

fn cap_attributes(attributes: &mut Vec<KeyValue>, dropped: &mut u32, limits: &Limits) {
    if attributes.len() > limits.max_attributes {
        // The `sensitive` marker decides whether redaction drops an event:
        // it is kept whatever its place, in the last slot kept.
        if limits.max_attributes > 0
            && let Some(at) = attributes[limits.max_attributes..].iter().position(|kv| kv.key == "sensitive")
        {
            attributes.swap(limits.max_attributes - 1, limits.max_attributes + at);
        }
        let extra = attributes.len() - limits.max_attributes;
        attributes.truncate(limits.max_attributes);
        *dropped = dropped.saturating_add(u32::try_from(extra).unwrap_or(u32::MAX));
    }
}

fn too_deep(attributes: &[KeyValue], max: usize) -> Option<String> {
    fn depth(value: &AnyValue, budget: usize) -> bool {
        match &value.value {
            Some(any_value::Value::ArrayValue(a)) => budget > 0 && a.values.iter().all(|v| depth(v, budget - 1)),
            Some(any_value::Value::KvlistValue(kv)) => {
                budget > 0 && kv.values.iter().all(|kv| kv.value.as_ref().is_none_or(|v| depth(v, budget - 1)))
            }
            _ => true,
        }
    }
    attributes
        .iter()
        .find(|kv| kv.value.as_ref().is_some_and(|v| !depth(v, max)))
        .map(|kv| kv.key.chars().take(64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7",
         "parentSpanId":"0000000000000000","name":"a","kind":"SPAN_KIND_CLIENT",
         "status":{"code":"STATUS_CODE_ERROR","message":"boom"},
         "startTimeUnixNano":"1","endTimeUnixNano":"2"},
        {"traceId":"00000000000000000000000000000000","spanId":"00f067aa0ba902b8","name":"zero"},
        {"traceId":"4bf92f3577b34da6a3ce929d0e0e47","spanId":"00f067aa0ba902b9","name":"short"}
    ]}]}]}"#;

    #[test]
    fn json_enum_names_are_read_and_invalid_ids_rejected_one_by_one() {
        let decoded = decode_json(SPAN.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(decoded.accepted_spans, 1);
        assert_eq!(decoded.rejected_spans, 2);
        assert!(decoded.error_message.contains("all zeros"), "{}", decoded.error_message);
        assert!(decoded.error_message.contains("must be 16 bytes"), "{}", decoded.error_message);
        let span = &decoded.request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, 3);
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        assert!(span.parent_span_id.is_empty(), "all-zero parent normalised to root");
    }

    #[test]
    fn malformed_json_says_where() {
        let err = decode_json(br#"{"resourceSpans": [}"#, &Limits::default()).unwrap_err();
        assert!(err.to_string().starts_with("malformed OTLP JSON: "), "{err}");
        let err = decode_json(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_NOPE"}]}]}]}"#,
            &Limits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("malformed OTLP JSON"), "{err}");
    }

    #[test]
    fn gzip_bomb_is_refused() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        let err = gunzip(&bomb, 1000).unwrap_err();
        assert!(matches!(err, DecodeError::DecompressedTooLarge { limit: 1000 }));
        assert_eq!(gunzip(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert!(matches!(gunzip(b"not gzip", 10), Err(DecodeError::Gzip(_))));
    }

    #[test]
    fn attribute_counts_are_capped_and_counted() {
        let attrs: Vec<String> = (0..50).map(|i| format!(r#"{{"key":"k{i}","value":{{"intValue":"{i}"}}}}"#)).collect();
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"a","attributes":[{}]}}]}}]}}]}}"#,
            attrs.join(",")
        );
        let limits = Limits { max_attributes: 10, ..Limits::default() };
        let decoded = decode_json(body.as_bytes(), &limits).unwrap();
        let span = &decoded.request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.attributes.len(), 10);
        assert_eq!(span.dropped_attributes_count, 40);
    }

    #[test]
    fn a_span_that_repeats_another_spans_ids_in_one_request_is_rejected_and_counted() {
        let span = |name: &str, span_id: &str, trace_id: &str| {
            format!(r#"{{"traceId":"{trace_id}","spanId":"{span_id}","name":"{name}"}}"#)
        };
        let t1 = "4bf92f3577b34da6a3ce929d0e0e4736";
        let t2 = "4bf92f3577b34da6a3ce929d0e0e4737";
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{},{},{},{}]}}]}}]}}"#,
            span("first", "00f067aa0ba902b7", t1),
            span("again", "00f067aa0ba902b7", t1),
            span("other trace, same span id", "00f067aa0ba902b7", t2),
            span("other", "00f067aa0ba902b8", t1)
        );
        let decoded = decode_json(body.as_bytes(), &Limits::default()).unwrap();
        assert_eq!((decoded.accepted_spans, decoded.rejected_spans), (3, 1));
        let kept: Vec<&str> =
            decoded.request.resource_spans[0].scope_spans[0].spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(kept, ["first", "other trace, same span id", "other"]);
        assert!(decoded.error_message.contains("\"again\": span id 00f067aa0ba902b7"), "{}", decoded.error_message);
    }

    #[test]
    fn the_sensitive_marker_survives_the_attribute_cap() {
        // An event whose `sensitive = true` lies past the cap: capped, it
        // must still say so, or redaction would keep its prompt.
        let mut attrs: Vec<String> =
            (0..20).map(|i| format!(r#"{{"key":"k{i}","value":{{"intValue":"{i}"}}}}"#)).collect();
        attrs.push(r#"{"key":"sensitive","value":{"boolValue":true}}"#.to_owned());
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"a","events":[{{"name":"prompt","attributes":[{}]}}]}}]}}]}}]}}"#,
            attrs.join(",")
        );
        let limits = Limits { max_attributes: 10, ..Limits::default() };
        let decoded = decode_json(body.as_bytes(), &limits).unwrap();
        let event = &decoded.request.resource_spans[0].scope_spans[0].spans[0].events[0];
        assert_eq!(event.attributes.len(), 10);
        assert_eq!(event.dropped_attributes_count, 11);
        assert!(event.attributes.iter().any(|kv| kv.key == "sensitive"), "the marker was capped away");
    }

    #[test]
    fn deep_nesting_rejects_the_span_not_the_request() {
        let mut value = r#"{"stringValue":"x"}"#.to_owned();
        for _ in 0..20 {
            value = format!(r#"{{"arrayValue":{{"values":[{value}]}}}}"#);
        }
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"deep","attributes":[{{"key":"k","value":{value}}}]}}]}}]}}]}}"#
        );
        let decoded = decode_json(body.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(decoded.rejected_spans, 1);
        assert!(decoded.error_message.contains("nests deeper than 16"), "{}", decoded.error_message);
    }

    #[test]
    fn non_utf8_protobuf_string_is_a_clear_error() {
        // Field 1 (resource_spans) -> field 2 (scope_spans) -> field 2 (spans)
        // -> field 5 (name) holding the byte 0xff.
        let span = [0x2a, 0x01, 0xff];
        let scope_spans = [&[0x12, span.len() as u8][..], &span].concat();
        let resource_spans = [&[0x12, scope_spans.len() as u8][..], &scope_spans].concat();
        let request = [&[0x0a, resource_spans.len() as u8][..], &resource_spans].concat();
        let err = decode_protobuf(&request, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }
}
