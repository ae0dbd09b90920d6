//! The fast lane ([`Redactor::clean`]) held to the ordinary road: whatever
//! it calls clean, decoding, validation and redaction leave as it is; what
//! healthy senders send, it calls clean.

use agentrace_model::otlp::{self, Limits};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;

use super::*;

#[path = "../../benches/support/agent_spans.rs"]
#[allow(unreachable_pub)]
mod agent_spans;

/// What the ordinary road makes of `body`: the spans it accepts when
/// decoding, validating and redacting (for every content action, or only
/// `keep` when `content` is false) change nothing; `None` when they change
/// something or refuse it.
fn ordinary_road(r: &Redactor, body: &[u8], limits: &Limits, content: bool) -> Option<u64> {
    let decoded = otlp::decode_protobuf(body, limits).ok()?;
    if !decoded.as_received || decoded.rejected_spans > 0 {
        return None;
    }
    let actions: &[ContentAction] =
        if content { &[ContentAction::Drop, ContentAction::Hash, ContentAction::Keep] } else { &[ContentAction::Keep] };
    for &action in actions {
        let out = r.redact(decoded.request.clone(), action);
        // (Compared encoded: a NaN attribute is not equal to itself.)
        if out.report() != RedactionReport::default()
            || out.request().encode_to_vec() != decoded.request.encode_to_vec()
        {
            return None;
        }
    }
    Some(decoded.accepted_spans)
}

fn redactor() -> &'static Redactor {
    static R: std::sync::LazyLock<Redactor> =
        std::sync::LazyLock::new(|| Redactor::new(&RedactionConfig::default()).unwrap());
    &R
}

fn clean(body: &[u8], limits: &Limits, content: bool) -> Option<u64> {
    redactor().clean(Bytes::copy_from_slice(body), limits, content).map(|c| c.spans())
}

fn tight() -> Limits {
    Limits { max_attributes: 3, max_value_depth: 2, ..Limits::default() }
}

fn text(t: &str) -> AnyValue {
    AnyValue { value: Some(any_value::Value::StringValue(t.to_owned())) }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(value), ..Default::default() }
}

/// Values as healthy senders record them: words, numbers, flags, lists and
/// maps a few levels deep, bytes that are text or not.
fn plain_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        "[a-z ]{0,12}".prop_map(|t| text(&t)),
        any::<i64>().prop_map(|i| AnyValue { value: Some(any_value::Value::IntValue(i)) }),
        (-1e12f64..1e12).prop_map(|d| AnyValue { value: Some(any_value::Value::DoubleValue(d)) }),
        any::<bool>().prop_map(|b| AnyValue { value: Some(any_value::Value::BoolValue(b)) }),
        prop::collection::vec(any::<u8>(), 0..12)
            .prop_map(|b| AnyValue { value: Some(any_value::Value::BytesValue(b)) }),
        Just(AnyValue { value: None }),
    ];
    super::tests::nested(leaf)
}

fn plain_attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(("[a-z_.]{1,12}", plain_value()).prop_map(|(k, v)| kv(&k, v)), 0..5)
}

/// A span of a healthy sender, given its place `n` in the request (its span
/// ID) and whether it has a parent.
fn plain_span(n: u64) -> impl Strategy<Value = Span> {
    (
        "[a-z ]{1,12}",
        plain_attributes(),
        prop::collection::vec(("[a-z ]{0,8}", plain_attributes(), any::<u64>()), 0..3),
        prop::collection::vec(plain_attributes(), 0..2),
        (0..6i32, 0..3i32, "[a-z ]{0,8}", any::<bool>(), any::<u64>(), 0..3u32),
    )
        .prop_map(move |(name, attributes, events, links, (kind, code, message, parent, start, dropped))| Span {
            trace_id: [[1u8; 8], (n / 4 + 1).to_be_bytes()].concat(),
            span_id: (n + 1).to_be_bytes().to_vec(),
            parent_span_id: if parent { 0x77u64.to_be_bytes().to_vec() } else { Vec::new() },
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: start.wrapping_add(1000),
            attributes,
            dropped_attributes_count: dropped,
            events: events
                .into_iter()
                .map(|(name, attributes, time_unix_nano)| Event {
                    name,
                    attributes,
                    time_unix_nano,
                    ..Default::default()
                })
                .collect(),
            links: links
                .into_iter()
                .map(|attributes| Link {
                    trace_id: vec![3; 16],
                    span_id: vec![4; 8],
                    attributes,
                    flags: 0x100,
                    ..Default::default()
                })
                .collect(),
            status: (code > 0).then_some(Status { code, message }),
            flags: 0x101,
            ..Default::default()
        })
}

/// A request of a healthy sender: resources of scopes of spans, each span
/// with its own IDs.
fn plain_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    prop::collection::vec((plain_attributes(), prop::collection::vec(("[a-z.]{0,10}", 1..4usize), 1..3)), 1..3)
        .prop_flat_map(|resources| {
            let mut n = 0u64;
            let resources: Vec<_> = resources
                .into_iter()
                .map(|(attributes, scopes)| {
                    let scopes: Vec<_> = scopes
                        .into_iter()
                        .map(|(name, spans)| {
                            let spans: Vec<_> = (0..spans)
                                .map(|_| {
                                    n += 1;
                                    plain_span(n)
                                })
                                .collect();
                            (Just(name), spans)
                        })
                        .collect();
                    (Just(attributes), scopes)
                })
                .collect();
            resources
        })
        .prop_map(|resources| ExportTraceServiceRequest {
            resource_spans: resources
                .into_iter()
                .map(|(attributes, scopes)| ResourceSpans {
                    resource: Some(Resource { attributes, ..Default::default() }),
                    scope_spans: scopes
                        .into_iter()
                        .map(|(name, spans)| ScopeSpans {
                            scope: Some(InstrumentationScope { name, version: "1.0".into(), ..Default::default() }),
                            spans,
                            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        })
}

/// One thing the ordinary road would change or refuse, put into a healthy
/// request.
#[derive(Debug, Clone)]
enum Flaw {
    Secret,
    ContentAttribute,
    SensitiveEvent,
    ZeroParent,
    ShortParent,
    ZeroTraceId,
    ShortSpanId,
    DuplicateIds,
    EmptyScope,
    EmptyResource,
    ManyAttributes,
    DeepValue,
    SecretInBytes,
    SecretInKey,
}

fn flawed(mut request: ExportTraceServiceRequest, flaw: &Flaw, at: usize) -> ExportTraceServiceRequest {
    const SECRET: &str = "token sk-live-0123456789abcdefXYZ here";
    let at_span = at % request.resource_spans[0].scope_spans[0].spans.len();
    let spans = &mut request.resource_spans[0].scope_spans[0].spans;
    match flaw {
        Flaw::DuplicateIds => {
            let twin = spans[at_span].clone();
            spans.push(twin);
            return request;
        }
        Flaw::EmptyScope => {
            request.resource_spans[0].scope_spans.push(ScopeSpans::default());
            return request;
        }
        Flaw::EmptyResource => {
            request.resource_spans.push(ResourceSpans::default());
            return request;
        }
        _ => {}
    }
    let span = &mut spans[at_span];
    match flaw {
        Flaw::Secret => match at % 4 {
            0 => span.name = SECRET.into(),
            1 => span.status = Some(Status { code: 2, message: SECRET.into() }),
            2 => span.trace_state = SECRET.into(),
            _ => span.attributes.push(kv("x", text(SECRET))),
        },
        Flaw::ContentAttribute => span.attributes.push(kv("gen_ai.input.messages", text("hello"))),
        Flaw::SensitiveEvent => span.events.push(Event {
            name: "prompt".into(),
            attributes: vec![kv("sensitive", AnyValue { value: Some(any_value::Value::BoolValue(true)) })],
            ..Default::default()
        }),
        Flaw::ZeroParent => span.parent_span_id = vec![0; 8],
        Flaw::ShortParent => span.parent_span_id = vec![5; 4],
        Flaw::ZeroTraceId => span.trace_id = vec![0; 16],
        Flaw::ShortSpanId => span.span_id = vec![9; 7],
        Flaw::DuplicateIds | Flaw::EmptyScope | Flaw::EmptyResource => unreachable!("handled above"),
        Flaw::ManyAttributes => {
            span.attributes.extend((0..4).map(|i| kv(&format!("k{i}"), text("v"))));
        }
        Flaw::DeepValue => {
            let mut v = text("leaf");
            for _ in 0..3 {
                v = AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })) };
            }
            span.attributes.push(kv("deep", v));
        }
        Flaw::SecretInBytes => {
            span.attributes.push(kv("b", AnyValue { value: Some(any_value::Value::BytesValue(SECRET.into())) }));
        }
        Flaw::SecretInKey => span.attributes.push(kv("Authorization: Bearer abcdefgh12345678", text("v"))),
    }
    request
}

fn flaw() -> impl Strategy<Value = Flaw> {
    prop_oneof![
        Just(Flaw::Secret),
        Just(Flaw::ContentAttribute),
        Just(Flaw::SensitiveEvent),
        Just(Flaw::ZeroParent),
        Just(Flaw::ShortParent),
        Just(Flaw::ZeroTraceId),
        Just(Flaw::ShortSpanId),
        Just(Flaw::DuplicateIds),
        Just(Flaw::EmptyScope),
        Just(Flaw::EmptyResource),
        Just(Flaw::ManyAttributes),
        Just(Flaw::DeepValue),
        Just(Flaw::SecretInBytes),
        Just(Flaw::SecretInKey),
    ]
}

/// The child message a length-delimited field of `msg` holds, by OTLP's
/// trace schema (names as in [`super::clean`]).
fn child(msg: &str, field: u64) -> Option<&'static str> {
    Some(match (msg, field) {
        ("request", 1) => "resource_spans",
        ("resource_spans", 1) => "resource",
        ("resource_spans", 2) => "scope_spans",
        ("resource", 1) | ("scope", 3) | ("span", 9) | ("event", 3) | ("link", 4) | ("kvlist", 1) => "key_value",
        ("scope_spans", 1) => "scope",
        ("scope_spans", 2) => "span",
        ("span", 11) => "event",
        ("span", 13) => "link",
        ("span", 15) => "status",
        ("key_value", 2) | ("array", 1) => "any_value",
        ("any_value", 5) => "array",
        ("any_value", 6) => "kvlist",
        _ => return None,
    })
}

/// `bytes` (a `msg`) with `extra` appended to the `target`-th message met in
/// a depth-first walk (counting down), lengths rewritten.
fn append_to_message(bytes: &[u8], msg: &str, target: &mut i64, extra: &[u8]) -> Vec<u8> {
    let hit = *target == 0;
    *target -= 1;
    let mut out = Vec::new();
    let mut buf = bytes;
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf).unwrap();
        let (field, wire) = (key >> 3, key & 7);
        prost::encoding::encode_varint(key, &mut out);
        match wire {
            0 => prost::encoding::encode_varint(prost::encoding::decode_varint(&mut buf).unwrap(), &mut out),
            1 => {
                out.extend_from_slice(&buf[..8]);
                buf = &buf[8..];
            }
            5 => {
                out.extend_from_slice(&buf[..4]);
                buf = &buf[4..];
            }
            _ => {
                let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
                let (body, rest) = buf.split_at(len);
                buf = rest;
                let body = match child(msg, field) {
                    Some(c) => append_to_message(body, c, target, extra),
                    None => body.to_vec(),
                };
                prost::encoding::encode_varint(body.len() as u64, &mut out);
                out.extend_from_slice(&body);
            }
        }
    }
    if hit {
        out.extend_from_slice(extra);
    }
    out
}

#[test]
fn the_load_generators_agent_traffic_is_clean() {
    // The traffic the pass-through's figures are measured on takes the fast
    // lane, whole: every span counted.
    for shape in [agent_spans::Shape::Agents, agent_spans::Shape::Adversarial] {
        for variant in 0..8 {
            let body = agent_spans::request(variant, 100, shape).encode_to_vec();
            assert_eq!(clean(&body, &Limits::default(), true), Some(100), "{shape:?} {variant}");
            assert_eq!(ordinary_road(redactor(), &body, &Limits::default(), true), Some(100));
        }
    }
}

#[test]
fn a_content_attribute_is_clean_only_when_every_sink_keeps_content() {
    let mut request = agent_spans::request(1, 10, agent_spans::Shape::Agents);
    let span = &mut request.resource_spans[0].scope_spans[0].spans[3];
    span.attributes.push(kv("gen_ai.output.messages", text("[]")));
    let body = request.encode_to_vec();
    assert_eq!(clean(&body, &Limits::default(), true), None);
    assert_eq!(clean(&body, &Limits::default(), false), Some(10));
}

#[test]
fn a_value_nested_past_the_decoders_limit_is_not_clean_whatever_the_configured_depth() {
    // An operator may allow deep values; prost still refuses a body nested
    // past 100 messages, so the fast lane must not forward one.
    let limits = Limits { max_value_depth: 1000, ..Limits::default() };
    let nest = |levels: usize| {
        let mut v = text("leaf");
        for _ in 0..levels {
            v = AnyValue {
                value: Some(any_value::Value::KvlistValue(opentelemetry_proto::tonic::common::v1::KeyValueList {
                    values: vec![kv("k", v)],
                })),
            };
        }
        let mut request = agent_spans::request(1, 1, agent_spans::Shape::Agents);
        request.resource_spans[0].scope_spans[0].spans[0].attributes.push(kv("deep", v));
        request.encode_to_vec()
    };
    assert_eq!(clean(&nest(24), &limits, true), Some(1), "24 levels are walked");
    assert_eq!(ordinary_road(redactor(), &nest(24), &limits, true), Some(1));
    for levels in [25, 40] {
        assert_eq!(clean(&nest(levels), &limits, true), None, "{levels} levels");
    }
    assert!(otlp::decode_protobuf(&nest(40), &limits).is_err(), "the decoder refuses 40 levels of maps");
}

#[test]
fn a_request_with_no_spans_takes_the_ordinary_road() {
    assert_eq!(clean(&[], &Limits::default(), true), None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A healthy sender's request is clean, every span counted, and the
    /// ordinary road agrees that it would change nothing.
    #[test]
    fn a_healthy_request_is_forwarded_as_it_came(request in plain_request()) {
        let body = request.encode_to_vec();
        let spans = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum();
        prop_assert_eq!(clean(&body, &Limits::default(), true), Some(spans));
        prop_assert_eq!(ordinary_road(redactor(), &body, &Limits::default(), true), Some(spans));
    }

    /// Whatever the ordinary road would change or refuse sends the body
    /// down it.
    #[test]
    fn a_request_the_ordinary_road_would_change_is_not_clean(
        request in plain_request(),
        flaw in flaw(),
        at in 0usize..8,
    ) {
        let body = flawed(request, &flaw, at).encode_to_vec();
        prop_assert_eq!(ordinary_road(redactor(), &body, &tight(), true), None, "{:?} is a change", flaw);
        prop_assert_eq!(clean(&body, &tight(), true), None, "{:?}", flaw);
    }

    /// A field the decoder does not know, in any message of the request,
    /// may hold anything: the body is not clean.
    #[test]
    fn an_unknown_field_anywhere_is_not_clean(
        request in plain_request(),
        target in any::<prop::sample::Index>(),
        extra in prop_oneof![
            Just(vec![0xfa, 0x06, 3, b'a', b'b', b'c']), // field 111, length-delimited
            Just(vec![0xf8, 0x06, 1]),                    // field 111, varint
            Just(vec![0x0b, 0x0c]),                       // field 1, a group
        ],
    ) {
        let body = request.encode_to_vec();
        // Every message of the request, counted by the same walk.
        let mut uncounted = i64::MAX;
        append_to_message(&body, "request", &mut uncounted, &[]);
        let messages = (i64::MAX - uncounted) as usize;
        let mut left = target.index(messages) as i64;
        let changed = append_to_message(&body, "request", &mut left, &extra);
        prop_assert_eq!(clean(&changed, &Limits::default(), true), None);
    }

    /// Whatever bytes it is given, what the fast lane calls clean the
    /// ordinary road decodes, accepts whole, with as many spans, and leaves
    /// as it is under every content action: edits, cuts and repeats of
    /// healthy and flawed requests.
    #[test]
    fn what_is_clean_the_ordinary_road_leaves_as_it_is(
        request in plain_request(),
        flaw in prop::option::of(flaw()),
        at in 0usize..8,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 0..3),
        limits in prop_oneof![Just(Limits::default()), Just(tight())],
    ) {
        let request = match &flaw {
            Some(f) => flawed(request, f, at),
            None => request,
        };
        let mut body = request.encode_to_vec();
        for (i, byte, how) in edits {
            if body.is_empty() {
                break;
            }
            let i = i.index(body.len());
            match how {
                0 => body[i] = byte,
                1 => body.truncate(i),
                2 => body.insert(i, byte),
                _ => {
                    let copy = body[i..].to_vec();
                    body.extend_from_slice(&copy);
                }
            }
        }
        if let Some(n) = clean(&body, &limits, true) {
            prop_assert_eq!(ordinary_road(redactor(), &body, &limits, true), Some(n));
        }
    }
}
