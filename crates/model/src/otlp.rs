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
    /// Most memory one request may take once decoded, as [`decoded_cost`]
    /// estimates it from the bytes before anything is allocated: an empty
    /// span is 2 bytes on the wire and hundreds decoded, so a body's size
    /// says little about what decoding it costs.
    pub max_decoded_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: 64 * 1024 * 1024,
            max_attributes: 1024,
            max_value_depth: 16,
            max_decoded_bytes: 256 * 1024 * 1024,
        }
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
    /// Decoding would take more memory than [`Limits::max_decoded_bytes`].
    #[error(
        "request would take about {cost} bytes of memory once decoded, over the limit of {limit} \
         (receivers.otlp.max_decoded_bytes): send smaller batches"
    )]
    DecodedTooLarge {
        /// The estimate.
        cost: usize,
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
    /// Validation changed nothing: no span rejected, no attribute cut, no
    /// all-zero parent cleared, no empty resource or scope left out. (The
    /// body may still hold fields the decoder does not know; only
    /// re-encoding the request tells.)
    pub as_received: bool,
}

/// Decodes an OTLP/protobuf `ExportTraceServiceRequest` and validates it.
pub fn decode_protobuf(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    within_decoded_limit(decoded_cost(bytes, Format::Protobuf), limits)?;
    decode_estimated(bytes, Format::Protobuf, limits)
}

/// Decodes and validates a body whose [`decoded_cost`] the caller has
/// already held within [`Limits::max_decoded_bytes`] (a receiver that
/// reserved memory for it): [`decode_protobuf`] or [`decode_json`] without
/// walking the bytes a second time.
pub fn decode_estimated(bytes: &[u8], format: Format, limits: &Limits) -> Result<Decoded, DecodeError> {
    match format {
        Format::Protobuf => Ok(validate(ExportTraceServiceRequest::decode(bytes)?, limits)),
        Format::Json => json_request(bytes).map(|request| validate(request, limits)),
    }
}

fn within_decoded_limit(cost: usize, limits: &Limits) -> Result<(), DecodeError> {
    if cost > limits.max_decoded_bytes {
        return Err(DecodeError::DecodedTooLarge { cost, limit: limits.max_decoded_bytes });
    }
    Ok(())
}

/// The encoding of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OTLP/protobuf.
    Protobuf,
    /// OTLP/JSON.
    Json,
}

/// What decoding `bytes` would cost in memory, estimated without
/// allocating, so that a request is refused (or made to wait) for what it
/// will take, not for what it weighs on the wire.
///
/// Protobuf is walked field by field: every message it holds counts its
/// decoded struct's size, every string and bytes field its length. A
/// malformed body gets an estimate of what was readable and then fails to
/// decode. JSON is bounded from above: every decoded message needs an
/// object in the text, so each `{` counts as the largest struct, plus the
/// text's length for its strings.
pub fn decoded_cost(bytes: &[u8], format: Format) -> usize {
    match format {
        Format::Protobuf => {
            let mut cost = std::mem::size_of::<ExportTraceServiceRequest>();
            wire::walk(bytes, wire::Msg::Request, 0, &mut cost);
            cost
        }
        Format::Json => {
            let objects = bytes.iter().filter(|&&b| b == b'{').count();
            objects.saturating_mul(wire::LARGEST).saturating_add(bytes.len())
        }
    }
}

/// The protobuf walk behind [`decoded_cost`]: which field of which OTLP
/// message holds which message, and what each costs once decoded.
mod wire {
    use std::mem::size_of;

    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    #[derive(Clone, Copy)]
    pub(super) enum Msg {
        Request,
        ResourceSpans,
        Resource,
        ScopeSpans,
        Scope,
        Span,
        Event,
        Link,
        Status,
        KeyValue,
        AnyValue,
        Array,
        KvList,
    }

    const ALL: [Msg; 13] = [
        Msg::Request,
        Msg::ResourceSpans,
        Msg::Resource,
        Msg::ScopeSpans,
        Msg::Scope,
        Msg::Span,
        Msg::Event,
        Msg::Link,
        Msg::Status,
        Msg::KeyValue,
        Msg::AnyValue,
        Msg::Array,
        Msg::KvList,
    ];

    /// The largest decoded struct, for bounds that cannot tell them apart.
    pub(super) const LARGEST: usize = {
        let mut max = 0;
        let mut i = 0;
        while i < ALL.len() {
            if size(ALL[i]) > max {
                max = size(ALL[i]);
            }
            i += 1;
        }
        max
    };

    /// The message a length-delimited field holds, or `None` for strings
    /// and bytes (and fields this walk does not know).
    const fn child(msg: Msg, field: u64) -> Option<Msg> {
        use Msg::*;
        Some(match (msg, field) {
            (Request, 1) => ResourceSpans,
            (ResourceSpans, 1) => Resource,
            (ResourceSpans, 2) => ScopeSpans,
            (Resource, 1) | (Scope, 3) | (Span, 9) | (Event, 3) | (Link, 4) | (KvList, 1) => KeyValue,
            (ScopeSpans, 1) => Scope,
            (ScopeSpans, 2) => Span,
            (Span, 11) => Event,
            (Span, 13) => Link,
            (Span, 15) => Status,
            (KeyValue, 2) | (Array, 1) => AnyValue,
            (AnyValue, 5) => Array,
            (AnyValue, 6) => KvList,
            _ => return None,
        })
    }

    const fn size(msg: Msg) -> usize {
        match msg {
            Msg::Request => 0,
            Msg::ResourceSpans => size_of::<ResourceSpans>(),
            Msg::Resource => size_of::<Resource>(),
            Msg::ScopeSpans => size_of::<ScopeSpans>(),
            Msg::Scope => size_of::<InstrumentationScope>(),
            Msg::Span => size_of::<Span>(),
            Msg::Event => size_of::<Event>(),
            Msg::Link => size_of::<Link>(),
            Msg::Status => size_of::<Status>(),
            Msg::KeyValue => size_of::<KeyValue>(),
            Msg::AnyValue => size_of::<AnyValue>(),
            Msg::Array => size_of::<ArrayValue>(),
            Msg::KvList => size_of::<KeyValueList>(),
        }
    }

    /// Deeper than prost decodes (its recursion limit is 100).
    const MAX_DEPTH: usize = 100;

    /// Fields numbered below this are looked up in [`CHILDREN`]; OTLP's
    /// message fields all are.
    const FIELDS: usize = 16;

    /// [`child`] for every message and field below [`FIELDS`], as a table:
    /// the walk runs over every field of every request, and an array index
    /// costs less than the nested `match` did (5 % of the pass-through).
    const CHILDREN: [[Option<Msg>; FIELDS]; ALL.len()] = {
        let mut table = [[None; FIELDS]; ALL.len()];
        let mut m = 0;
        while m < ALL.len() {
            // Rows are indexed by `msg as usize`.
            assert!(ALL[m] as usize == m);
            let mut f = 0;
            while f < FIELDS {
                table[m][f] = child(ALL[m], f as u64);
                f += 1;
            }
            m += 1;
        }
        table
    };

    use crate::span_bytes::varint;

    /// Adds what `bytes`, a `msg`, costs once decoded to `cost`; stops at
    /// the first malformed field (the decoder then says what was wrong).
    pub(super) fn walk(bytes: &[u8], msg: Msg, depth: usize, cost: &mut usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let children = &CHILDREN[msg as usize];
        let mut at = 0;
        while at < bytes.len() {
            let Some(key) = varint(bytes, &mut at) else { return };
            let (field, wire_type) = (key >> 3, key & 7);
            // Most fields are length-delimited (messages, strings), then varints.
            if wire_type == 2 {
                let Some(len) = varint(bytes, &mut at).and_then(|l| usize::try_from(l).ok()) else { return };
                let Some(body) = at.checked_add(len).and_then(|end| bytes.get(at..end)) else { return };
                at += len;
                let c = usize::try_from(field).ok().and_then(|f| children.get(f).copied().flatten());
                match c {
                    Some(c) => {
                        *cost = cost.saturating_add(size(c));
                        walk(body, c, depth + 1, cost);
                    }
                    None => *cost = cost.saturating_add(len),
                }
            } else if wire_type == 0 {
                if varint(bytes, &mut at).is_none() {
                    return;
                }
            } else if wire_type == 1 {
                at += 8;
            } else if wire_type == 5 {
                at += 4;
            } else {
                return;
            }
        }
    }
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest` and validates it.
///
/// Enum names are accepted where integers belong (see the module docs).
pub fn decode_json(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    within_decoded_limit(decoded_cost(bytes, Format::Json), limits)?;
    decode_estimated(bytes, Format::Json, limits)
}

fn json_request(bytes: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
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
    Ok(request)
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
    let mut cut = false;
    let mut parents_cleared = false;
    let parts = |r: &ExportTraceServiceRequest| {
        (r.resource_spans.len(), r.resource_spans.iter().map(|rs| rs.scope_spans.len()).sum::<usize>())
    };
    let parts_before = parts(&request);
    for rs in &mut request.resource_spans {
        if let Some(resource) = rs.resource.as_mut() {
            cut |= cap_attributes(&mut resource.attributes, &mut resource.dropped_attributes_count, limits);
        }
        for ss in &mut rs.scope_spans {
            if let Some(scope) = ss.scope.as_mut() {
                cut |= cap_attributes(&mut scope.attributes, &mut scope.dropped_attributes_count, limits);
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
                        parents_cleared = true;
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
                cut |= cap_attributes(&mut span.attributes, &mut span.dropped_attributes_count, limits);
                for event in &mut span.events {
                    cut |= cap_attributes(&mut event.attributes, &mut event.dropped_attributes_count, limits);
                }
                for link in &mut span.links {
                    cut |= cap_attributes(&mut link.attributes, &mut link.dropped_attributes_count, limits);
                }
                accepted += 1;
                true
            });
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    request.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    let as_received = rejected == 0 && !cut && !parents_cleared && parts(&request) == parts_before;
    Decoded {
        as_received,
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

/// Keeps at most `limits.max_attributes`; says whether any were cut.
fn cap_attributes(attributes: &mut Vec<KeyValue>, dropped: &mut u32, limits: &Limits) -> bool {
    let over = attributes.len() > limits.max_attributes;
    if over {
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
    over
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

    /// A request of `n` spans with `attrs` string attributes each, as protobuf.
    fn request(n: usize, attrs: usize) -> Vec<u8> {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: format!("span {i}"),
                attributes: (0..attrs)
                    .map(|a| KeyValue {
                        key: format!("k{a}"),
                        value: Some(AnyValue { value: Some(any_value::Value::StringValue("v".repeat(20))) }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn the_decoded_cost_is_estimated_before_decoding_and_bounds_a_request() {
        // An ordinary batch: its estimate covers what the decoded structs
        // take, and it decodes under the default limit.
        let body = request(512, 20);
        let cost = decoded_cost(&body, Format::Protobuf);
        let structs = 512 * std::mem::size_of::<opentelemetry_proto::tonic::trace::v1::Span>()
            + 512 * 20 * (std::mem::size_of::<KeyValue>() + std::mem::size_of::<AnyValue>());
        assert!(cost >= structs && cost < 2 * structs + body.len(), "{cost} for {structs} bytes of structs");
        assert_eq!(decode_protobuf(&body, &Limits::default()).unwrap().accepted_spans, 512);

        // 16 MB of empty spans (2 bytes each on the wire) is refused before
        // a single span is allocated, with what to do about it.
        let mut scope = Vec::new();
        for _ in 0..8 * 1024 * 1024 {
            scope.extend_from_slice(&[0x12, 0x00]); // ScopeSpans.spans: an empty Span
        }
        let mut body = Vec::new();
        let mut rs = vec![0x12]; // ResourceSpans.scope_spans
        prost::encoding::encode_varint(scope.len() as u64, &mut rs);
        rs.extend_from_slice(&scope);
        body.push(0x0a); // ExportTraceServiceRequest.resource_spans
        prost::encoding::encode_varint(rs.len() as u64, &mut body);
        body.extend_from_slice(&rs);
        let err = decode_protobuf(&body, &Limits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::DecodedTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("send smaller batches"), "{err}");

        // JSON likewise: each object may be a struct.
        let json = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}{{}}]}}]}}]}}"#, "{},".repeat(2_000_000));
        assert!(matches!(decode_json(json.as_bytes(), &Limits::default()), Err(DecodeError::DecodedTooLarge { .. })));
        assert!(decode_json(SPAN.as_bytes(), &Limits::default()).is_ok());
    }

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
