use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use proptest::prelude::*;

use super::*;

fn s(v: &str) -> AnyValue {
    string_value(v.to_owned())
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(value), ..Default::default() }
}

fn request(spans: Vec<Span>, resource: Vec<KeyValue>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: resource, ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            schema_url: String::new(),
        }],
    }
}

fn only_span(r: &Redacted) -> &Span {
    &r.request().resource_spans[0].scope_spans[0].spans[0]
}

fn int(span: &Span, key: &str) -> Option<i64> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    })
}

fn redactor() -> Redactor {
    Redactor::new(&RedactionConfig::default()).unwrap()
}

fn chat_span() -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "chat gpt-4o".into(),
        attributes: vec![
            kv("gen_ai.request.model", s("gpt-4o")),
            kv("gen_ai.input.messages", s("[{\"role\":\"user\",\"content\":\"my card is 4111\"}]")),
            kv("gen_ai.usage.input_tokens", AnyValue { value: Some(any_value::Value::IntValue(12)) }),
        ],
        events: vec![
            Event {
                name: "gen_ai.content.prompt".into(),
                attributes: vec![kv("sensitive", AnyValue { value: Some(any_value::Value::BoolValue(true)) })],
                ..Default::default()
            },
            Event { name: "completion".into(), attributes: vec![kv("sensitive", s("true"))], ..Default::default() },
            Event { name: "retry".into(), attributes: vec![kv("sensitive", s("false"))], ..Default::default() },
        ],
        ..Default::default()
    }
}

#[test]
fn sensitive_events_and_content_attributes_are_dropped_and_counted() {
    let out = redactor().redact(request(vec![chat_span()], vec![]), ContentAction::Drop);
    let span = only_span(&out);
    assert_eq!(span.events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["retry"]);
    assert!(span.attributes.iter().all(|kv| kv.key != "gen_ai.input.messages"));
    assert!(span.attributes.iter().any(|kv| kv.key == "gen_ai.request.model"));
    assert_eq!(int(span, EVENTS_DROPPED), Some(2));
    assert_eq!(int(span, ATTRIBUTES_DROPPED), Some(1));
    assert_eq!(int(span, VALUES_MASKED), None);
    assert_eq!(out.report(), RedactionReport { events_dropped: 2, attributes_dropped: 1, ..Default::default() });
}

#[test]
fn hashed_content_is_comparable_but_unreadable() {
    let r = redactor();
    let a = r.redact(request(vec![chat_span()], vec![]), ContentAction::Hash);
    let b = r.redact(request(vec![chat_span()], vec![]), ContentAction::Hash);
    let value = |out: &Redacted| {
        only_span(out).attributes.iter().find(|kv| kv.key == "gen_ai.input.messages").cloned().unwrap().value
    };
    let Some(any_value::Value::StringValue(h)) = value(&a).unwrap().value else { panic!("hash is a string") };
    assert!(h.starts_with("sha256:") && h.len() == 71, "{h}");
    assert!(!h.contains("4111"));
    assert_eq!(value(&a), value(&b));
    assert_eq!(int(only_span(&a), ATTRIBUTES_HASHED), Some(1));
    // A salt changes the hash, so a table of common prompts does not help.
    let salted = Redactor::new(&RedactionConfig { hash_salt: Some("pepper".into()), ..Default::default() }).unwrap();
    assert_ne!(value(&salted.redact(request(vec![chat_span()], vec![]), ContentAction::Hash)), value(&a));
}

#[test]
fn kept_content_still_has_its_secrets_masked() {
    let mut span = chat_span();
    span.attributes.push(kv("gen_ai.tool.call.arguments", s("{\"auth\":\"Bearer abcdefghij.klmnop\"}")));
    let out = redactor().redact(request(vec![span], vec![]), ContentAction::Keep);
    let span = only_span(&out);
    let args = span.attributes.iter().find(|kv| kv.key == "gen_ai.tool.call.arguments").unwrap();
    assert_eq!(args.value, Some(s("{\"auth\":\"<redacted:bearer_token>\"}")));
    assert_eq!(int(span, VALUES_MASKED), Some(1));
    // Sensitive events go whatever the content action.
    assert_eq!(span.events.len(), 1);
}

#[test]
fn secrets_are_masked_everywhere_a_string_lives() {
    let key = "sk-proj-ABCDEFGHIJKLMNOPQRSTUV";
    let mut span = chat_span();
    span.name = format!("call with {key}");
    span.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        message: "user bob@example.com rejected".into(),
        code: 2,
    });
    span.attributes.push(kv(
        "nested",
        AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv(
                    "list",
                    AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![s(key)] })) },
                )],
            })),
        },
    ));
    span.links.push(Link { attributes: vec![kv("note", s("AKIAABCDEFGHIJKLMNOP"))], ..Default::default() });
    let out = redactor().redact(request(vec![span], vec![kv("owner", s("ops@example.org"))]), ContentAction::Drop);
    let bytes = out.request().encode_to_vec();
    for secret in [key, "bob@example.com", "AKIAABCDEFGHIJKLMNOP", "ops@example.org"] {
        assert!(!contains(&bytes, secret.as_bytes()), "{secret} survived");
    }
    let span = only_span(&out);
    assert_eq!(span.name, "call with <redacted:api_key>");
    assert_eq!(span.status.as_ref().unwrap().message, "user <redacted:email> rejected");
    assert_eq!(int(span, VALUES_MASKED), Some(4));
    assert_eq!(out.report().values_masked, 5, "the resource's e-mail counts in the total");
}

#[test]
fn the_built_in_catalogue_masks_tokens_credentials_and_keys_and_leaves_prose() {
    let planted = [
        ("Authorization: Bearer abc123", "bearer_token"),
        ("authorization=bearer x", "bearer_token"),
        ("Authorization: Basic dXNlcjpwYXNz", "basic_auth"),
        ("sent Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ== upstream", "basic_auth"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
        ("postgres://agent:hunter2@db.internal:5432/app", "url_credentials"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_key"),
        ("{\"password\": \"correct-horse\"}", "password"),
        ("https://api.example.com/v1?api_key=9f8e7d6c5b4a&q=1", "password"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "private_key"),
    ];
    let secrets = [
        "abc123",
        "dXNlcjpwYXNz",
        "QWxhZGRpbjpvcGVuIHNlc2FtZQ",
        "dozjgNryP4J3",
        "hunter2",
        "wJalrXUtnFEMI",
        "correct-horse",
        "9f8e7d6c5b4a",
        "MIIEowIBAAKCAQEA",
    ];
    for (text, kind) in planted {
        let mut span = chat_span();
        span.attributes.push(kv("note", s(text)));
        let out = redactor().redact(request(vec![span], vec![]), ContentAction::Drop);
        let bytes = out.request().encode_to_vec();
        for secret in secrets {
            assert!(!contains(&bytes, secret.as_bytes()), "{secret} survived in {text:?}");
        }
        let note = only_span(&out).attributes.iter().find(|a| a.key == "note").unwrap().value.clone();
        let Some(any_value::Value::StringValue(masked)) = note.and_then(|v| v.value) else { panic!("a string") };
        assert!(masked.contains(&format!("<redacted:{kind}>")), "{text:?} -> {masked:?}");
    }
    // Prose that merely names these things stays as written.
    for prose in [
        "the bearer of bad news",
        "basic auth is enabled",
        "reset your password in Settings",
        "see https://example.com/docs for the api key page",
        "used 1200 input tokens",
    ] {
        let mut span = chat_span();
        span.attributes.push(kv("note", s(prose)));
        let out = redactor().redact(request(vec![span], vec![]), ContentAction::Drop);
        let note = only_span(&out).attributes.iter().find(|a| a.key == "note").unwrap().value.clone();
        assert_eq!(note, Some(s(prose)), "{prose:?} was masked");
    }
}

#[test]
fn secrets_in_names_versions_keys_bytes_schema_urls_and_trace_states_are_masked() {
    let key = "sk-proj-ABCDEFGHIJKLMNOPQRSTUV";
    let mut span = chat_span();
    span.trace_state = format!("vendor={key}");
    span.attributes.push(kv(&format!("x-{key}"), s("v")));
    span.attributes.push(kv("raw", AnyValue { value: Some(any_value::Value::BytesValue(key.as_bytes().to_vec())) }));
    span.links.push(Link { trace_state: format!("v={key}"), ..Default::default() });
    let mut req = request(vec![span], vec![]);
    req.resource_spans[0].schema_url = format!("https://schemas.example/{key}");
    req.resource_spans[0].scope_spans[0].schema_url = format!("https://schemas.example/{key}");
    req.resource_spans[0].scope_spans[0].scope = Some(opentelemetry_proto::tonic::common::v1::InstrumentationScope {
        name: format!("lib {key}"),
        version: key.into(),
        ..Default::default()
    });
    let out = redactor().redact(req, ContentAction::Drop);
    assert!(!contains(&out.request().encode_to_vec(), key.as_bytes()), "the key survived somewhere");
    let span = only_span(&out);
    assert_eq!(int(span, VALUES_MASKED), Some(4), "trace state, attribute key, bytes value, link trace state");
    let raw = span.attributes.iter().find(|a| a.key == "raw").unwrap();
    assert!(
        matches!(&raw.value, Some(AnyValue { value: Some(any_value::Value::BytesValue(b)) }) if b == b"<redacted:api_key>")
    );
    assert_eq!(out.report().values_masked, 8, "and the two schema URLs, the scope's name and version");
}

// Keys found clean are remembered per thread and per policy: a key clean
// under one policy is still searched under another that calls it a secret,
// and a remembered key never hides a secret in a value or a new key.
#[test]
fn keys_remembered_clean_belong_to_their_policy() {
    let plain = redactor();
    let strict = Redactor::new(&RedactionConfig {
        secret_patterns: vec![crate::config::SecretPattern { name: "tenant".into(), pattern: r"app\.tenant".into() }],
        ..Default::default()
    })
    .unwrap();
    let span = || Span {
        attributes: vec![kv("app.tenant", s("acme")), kv("note", s("sk-proj-ABCDEFGHIJKLMNOPQRSTUV"))],
        ..Default::default()
    };
    for round in 0..3 {
        // The default policy finds the key clean (and remembers it), the value not.
        let out = plain.redact(request(vec![span()], vec![]), ContentAction::Keep);
        let keys: Vec<&str> = only_span(&out).attributes.iter().map(|a| a.key.as_str()).collect();
        assert!(keys.contains(&"app.tenant"), "round {round}: {keys:?}");
        assert_eq!(int(only_span(&out), VALUES_MASKED), Some(1), "round {round}");
        // The strict policy, on the same thread, masks the key every time.
        let out = strict.redact(request(vec![span()], vec![]), ContentAction::Keep);
        let keys: Vec<&str> = only_span(&out).attributes.iter().map(|a| a.key.as_str()).collect();
        assert!(keys.contains(&"<redacted:tenant>"), "round {round}: {keys:?}");
    }
    // Past the memo's size, keys are still searched.
    let many: Vec<KeyValue> = (0..CLEAN_KEYS_MAX + 10).map(|i| kv(&format!("k{i}"), s("v"))).collect();
    plain.redact(request(vec![Span { attributes: many, ..Default::default() }], vec![]), ContentAction::Keep);
    let late = format!("k{} sk-proj-ABCDEFGHIJKLMNOPQRSTUV", CLEAN_KEYS_MAX + 20);
    let out = plain.redact(
        request(vec![Span { attributes: vec![kv(&late, s("v"))], ..Default::default() }], vec![]),
        ContentAction::Keep,
    );
    assert!(only_span(&out).attributes.iter().all(|a| !a.key.contains("sk-proj")));
}

#[test]
fn a_bad_pattern_is_refused_with_its_name() {
    let config = RedactionConfig {
        secret_patterns: vec![crate::config::SecretPattern { name: "mine".into(), pattern: "(".into() }],
        ..Default::default()
    };
    let err = Redactor::new(&config).unwrap_err().to_string();
    assert!(err.contains("\"mine\""), "{err}");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const SECRET: &str = "sk-live-0123456789abcdefXYZ";

fn value_strategy() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        "[a-z ]{0,12}".prop_map(|t| s(&t)),
        Just(s(SECRET)),
        any::<bool>().prop_map(|b| AnyValue { value: Some(any_value::Value::BoolValue(b)) }),
        prop_oneof![Just("true"), Just("TRUE"), Just(" true "), Just("false")].prop_map(s),
    ];
    nested(leaf)
}

/// `leaf` values, and lists and maps of them up to three levels deep.
pub(super) fn nested(leaf: impl Strategy<Value = AnyValue> + 'static) -> impl Strategy<Value = AnyValue> {
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|values| AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values })) }),
            prop::collection::vec(("[a-z.]{1,8}", inner), 0..4).prop_map(|kvs| AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: kvs.into_iter().map(|(k, v)| kv(&k, v)).collect(),
                })),
            }),
        ]
    })
}

fn attributes_strategy() -> impl Strategy<Value = Vec<KeyValue>> {
    let key = prop_oneof![
        Just("sensitive".to_owned()),
        Just("gen_ai.input.messages".to_owned()),
        Just("gen_ai.output.messages".to_owned()),
        Just("gen_ai.system_instructions".to_owned()),
        Just("gen_ai.tool.call.arguments".to_owned()),
        Just("gen_ai.tool.call.result".to_owned()),
        "[a-z_.]{1,12}",
    ];
    prop::collection::vec((key, value_strategy()).prop_map(|(k, v)| kv(&k, v)), 0..6)
}

/// A text field: plain, or carrying the secret among other words.
fn text_strategy() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z ]{0,8}", 1 => "[a-z]{0,4}".prop_map(|t| format!("{t} {SECRET} x"))]
}

/// Attributes whose keys may carry the secret, and values of bytes too.
fn planted_attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    (
        attributes_strategy(),
        prop::collection::vec(
            (text_strategy(), prop_oneof![Just(SECRET.as_bytes().to_vec()), Just(b"plain".to_vec())]),
            0..2,
        ),
    )
        .prop_map(|(mut attributes, extra)| {
            for (key, bytes) in extra {
                attributes.push(kv(&key, AnyValue { value: Some(any_value::Value::BytesValue(bytes)) }));
            }
            attributes
        })
}

fn span_strategy() -> impl Strategy<Value = Span> {
    (
        planted_attributes(),
        prop::collection::vec((text_strategy(), planted_attributes()), 0..4),
        prop::collection::vec((planted_attributes(), text_strategy()), 0..2),
        (text_strategy(), text_strategy(), text_strategy()),
    )
        .prop_map(|(attributes, events, links, (name, status, trace_state))| Span {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            name,
            trace_state,
            attributes,
            events: events
                .into_iter()
                .map(|(name, attributes)| Event { name, attributes, ..Default::default() })
                .collect(),
            links: links
                .into_iter()
                .map(|(attributes, trace_state)| Link { attributes, trace_state, ..Default::default() })
                .collect(),
            status: Some(opentelemetry_proto::tonic::trace::v1::Status { code: 2, message: status }),
            ..Default::default()
        })
}

/// A request with the secret possibly in the resource, the scope and the
/// schema URLs as well as in its spans.
fn planted_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    (
        prop::collection::vec(span_strategy(), 1..4),
        planted_attributes(),
        (text_strategy(), text_strategy(), planted_attributes()),
        (text_strategy(), text_strategy()),
    )
        .prop_map(|(spans, resource, (scope_name, scope_version, scope_attributes), (schema, scope_schema))| {
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource { attributes: resource, ..Default::default() }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                            name: scope_name,
                            version: scope_version,
                            attributes: scope_attributes,
                            ..Default::default()
                        }),
                        spans,
                        schema_url: scope_schema,
                    }],
                    schema_url: schema,
                }],
            }
        })
}

proptest! {
    /// No input lets a sensitive event, a listed content attribute (unless
    /// the sink keeps content) or a secret through.
    #[test]
    fn nothing_sensitive_reaches_a_sink(
        planted in planted_request(),
        action in prop_oneof![Just(ContentAction::Drop), Just(ContentAction::Hash), Just(ContentAction::Keep)],
    ) {
        // Built once: compiling the patterns is start-up work, not per request.
        static R: std::sync::LazyLock<Redactor> = std::sync::LazyLock::new(redactor);
        let r = &*R;
        let out = r.redact(planted, action);
        // Whatever field it was planted in (names, keys, values of every
        // type, events, links, status, trace states, resource, scope,
        // schema URLs), the secret reaches no sink: the store and every
        // exporter take only what `redact` gives them.
        prop_assert!(!contains(&out.request().encode_to_vec(), SECRET.as_bytes()));
        for span in &out.request().resource_spans[0].scope_spans[0].spans {
            for event in &span.events {
                prop_assert!(!is_sensitive(&event.attributes), "a sensitive event survived");
            }
            let lists = std::iter::once(&span.attributes)
                .chain(span.events.iter().map(|e| &e.attributes))
                .chain(span.links.iter().map(|l| &l.attributes));
            for list in lists {
                for kv in list.iter().filter(|kv| r.is_content(&kv.key)) {
                    match action {
                        ContentAction::Drop => prop_assert!(false, "content attribute {} survived", kv.key),
                        ContentAction::Hash => prop_assert!(matches!(
                            kv.value.as_ref().and_then(|v| v.value.as_ref()),
                            Some(any_value::Value::StringValue(h)) if h.starts_with("sha256:")
                        )),
                        ContentAction::Keep => {}
                    }
                }
            }
        }
    }
}

#[test]
fn content_on_a_resource_is_dropped_too() {
    let out = redactor().redact(
        request(
            vec![chat_span()],
            vec![kv("gen_ai.system_instructions", s("You are ACME's agent")), kv("service.name", s("a"))],
        ),
        ContentAction::Drop,
    );
    let resource = out.request().resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(resource.attributes.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["service.name"]);
    assert_eq!(out.report().attributes_dropped, 2, "the span's and the resource's");
}
