//! Zipkin v2 spans (`POST /api/v2/spans`, JSON or protobuf) translated to
//! OTLP as the OpenTelemetry Collector's Zipkin receiver translates them,
//! then validated like any OTLP request ([`crate::otlp::validate`]).
//!
//! The mapping (the Collector's `zipkinv2` translator, and the
//! OpenTelemetry specification's Zipkin exporter read backwards):
//! - `localEndpoint.serviceName` is the resource's `service.name`; tags
//!   that name resource attributes (`service.*`, `telemetry.sdk.*`,
//!   `host.*`, `process.*`, `deployment.*`, `k8s.*`, `container.*`,
//!   `cloud.*`, `os.*`, `device.*`, `faas.*`) move to the resource, where the
//!   OpenTelemetry SDKs' Zipkin exporters had taken them from;
//! - `otel.scope.name` / `otel.scope.version` (or the older
//!   `otel.library.*`) are the instrumentation scope;
//! - `otel.status_code` / `otel.status_description` are the status; an
//!   `error` tag alone is an error status with its value as message;
//! - `kind` `CLIENT`/`SERVER`/`PRODUCER`/`CONSUMER` is the span kind (none
//!   is unspecified); `timestamp` and `duration` (µs) are the start and end;
//! - annotations are events: a value that is a JSON object of one key (as
//!   the OpenTelemetry exporters write `{"name": {attributes}}`) is that
//!   event with those attributes, any other value an event of that name;
//! - `remoteEndpoint` is `net.peer.ip`, `net.peer.port` and
//!   `peer.service`; `localEndpoint`'s address is `net.host.ip` and
//!   `net.host.port`;
//! - `otel.dropped_*_count` are the dropped counts; `w3c.tracestate` is
//!   the trace state; other tags are string attributes;
//! - a 64-bit trace ID is the low half of a 128-bit one.
//!
//! Untrusted bytes: the memory a body takes once decoded is bounded before
//! anything is decoded ([`decoded_cost`]), and every tag and annotation
//! count is then capped by [`Limits`] through the OTLP validation.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde::Deserialize;

use crate::otlp::{Decoded, Limits, validate};

/// Why a Zipkin body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ZipkinError {
    /// Not a JSON list of Zipkin v2 spans.
    #[error("malformed Zipkin v2 JSON (expected a list of spans): {0}")]
    Json(#[from] serde_json::Error),
    /// Not a protobuf `zipkin.proto3.ListOfSpans`.
    #[error("malformed Zipkin v2 protobuf (expected zipkin.proto3.ListOfSpans): {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A span whose IDs are not hex of the right length.
    #[error("span {index}: {what} {value:?} is not {digits} hex digits")]
    Id {
        /// The span's position in the list.
        index: usize,
        /// Which ID.
        what: &'static str,
        /// What was sent.
        value: String,
        /// What it should be.
        digits: &'static str,
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

/// What decoding a Zipkin body costs in memory at most, estimated without
/// allocating: every span, tag, annotation and endpoint becomes an OTLP
/// struct, and each of those needs at least a `{`, a `:` (JSON) or a
/// length-delimited field of two bytes (protobuf) on the wire, so each of
/// those counts as the largest struct, plus the text for its strings.
pub fn decoded_cost(bytes: &[u8], json: bool) -> usize {
    // Per struct made: a span with its resource and scope groups, or a
    // key-value with its value.
    const PER_ITEM: usize = 3 * 256;
    let items = if json { bytes.iter().filter(|&&b| b == b'{' || b == b':').count() } else { bytes.len() / 2 };
    items.saturating_mul(PER_ITEM).saturating_add(bytes.len())
}

/// Decodes a Zipkin v2 JSON list of spans into a validated OTLP request.
pub fn decode_json(bytes: &[u8], limits: &Limits) -> Result<Decoded, ZipkinError> {
    within_limit(decoded_cost(bytes, true), limits)?;
    let spans: Vec<JsonSpan> = serde_json::from_slice(bytes)?;
    let spans = spans.into_iter().enumerate().map(|(i, s)| s.into_model(i)).collect::<Result<Vec<_>, _>>()?;
    Ok(validate(to_otlp(spans), limits))
}

/// Decodes a Zipkin v2 protobuf `ListOfSpans` into a validated OTLP request.
pub fn decode_protobuf(bytes: &[u8], limits: &Limits) -> Result<Decoded, ZipkinError> {
    within_limit(decoded_cost(bytes, false), limits)?;
    let list = <proto::ListOfSpans as prost::Message>::decode(bytes)?;
    let spans = list.spans.into_iter().enumerate().map(|(i, s)| s.into_model(i)).collect::<Result<Vec<_>, _>>()?;
    Ok(validate(to_otlp(spans), limits))
}

fn within_limit(cost: usize, limits: &Limits) -> Result<(), ZipkinError> {
    if cost > limits.max_decoded_bytes {
        return Err(ZipkinError::DecodedTooLarge { cost, limit: limits.max_decoded_bytes });
    }
    Ok(())
}

/// A Zipkin span, whichever encoding it came in.
#[derive(Debug, Default)]
struct ZSpan {
    trace_id: Vec<u8>,
    id: Vec<u8>,
    parent_id: Vec<u8>,
    name: String,
    kind: SpanKind,
    timestamp_us: u64,
    duration_us: u64,
    local: Endpoint,
    remote: Option<Endpoint>,
    annotations: Vec<(u64, String)>,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Endpoint {
    service_name: String,
    ip: Option<String>,
    port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    local_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    remote_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    annotations: Vec<JsonAnnotation>,
    #[serde(default)]
    tags: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint {
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    ipv4: Option<String>,
    #[serde(default)]
    ipv6: Option<String>,
    #[serde(default)]
    port: Option<i64>,
}

#[derive(Deserialize)]
struct JsonAnnotation {
    timestamp: u64,
    value: String,
}

impl JsonEndpoint {
    fn into_model(self) -> Endpoint {
        Endpoint {
            service_name: self.service_name.unwrap_or_default(),
            ip: self.ipv4.or(self.ipv6).filter(|s| !s.is_empty()),
            port: self.port.filter(|p| *p != 0),
        }
    }
}

fn hex_id(index: usize, what: &'static str, text: &str, trace: bool) -> Result<Vec<u8>, ZipkinError> {
    let bad = || ZipkinError::Id {
        index,
        what,
        value: text.chars().take(64).collect(),
        digits: if trace { "16 or 32" } else { "16" },
    };
    let ok_len = if trace { text.len() == 16 || text.len() == 32 } else { text.len() == 16 };
    if !ok_len || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    Ok(widen(bytes, trace))
}

/// A 64-bit trace ID as the low half of a 128-bit one.
fn widen(bytes: Vec<u8>, trace: bool) -> Vec<u8> {
    if trace && bytes.len() == 8 {
        let mut wide = vec![0u8; 8];
        wide.extend(bytes);
        wide
    } else {
        bytes
    }
}

fn kind_of(name: &str) -> SpanKind {
    match name.to_ascii_uppercase().as_str() {
        "CLIENT" => SpanKind::Client,
        "SERVER" => SpanKind::Server,
        "PRODUCER" => SpanKind::Producer,
        "CONSUMER" => SpanKind::Consumer,
        _ => SpanKind::Unspecified,
    }
}

impl JsonSpan {
    fn into_model(self, index: usize) -> Result<ZSpan, ZipkinError> {
        let parent_id = match self.parent_id.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => hex_id(index, "parentId", p, false)?,
            None => Vec::new(),
        };
        Ok(ZSpan {
            trace_id: hex_id(index, "traceId", &self.trace_id, true)?,
            id: hex_id(index, "id", &self.id, false)?,
            parent_id,
            name: self.name.unwrap_or_default(),
            kind: self.kind.as_deref().map_or(SpanKind::Unspecified, kind_of),
            timestamp_us: self.timestamp.unwrap_or(0),
            duration_us: self.duration.unwrap_or(0),
            local: self.local_endpoint.map(JsonEndpoint::into_model).unwrap_or_default(),
            remote: self.remote_endpoint.map(JsonEndpoint::into_model),
            annotations: self.annotations.into_iter().map(|a| (a.timestamp, a.value)).collect(),
            // Zipkin's tags are strings; a sender that wrote another JSON
            // value gets it as its text.
            tags: self
                .tags
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, text)
                })
                .collect(),
        })
    }
}

/// `zipkin.proto3` (openzipkin/zipkin-api), as prost messages.
mod proto {
    use std::collections::BTreeMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListOfSpans {
        #[prost(message, repeated, tag = "1")]
        pub spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub parent_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub id: Vec<u8>,
        #[prost(int32, tag = "4")]
        pub kind: i32,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(fixed64, tag = "6")]
        pub timestamp: u64,
        #[prost(uint64, tag = "7")]
        pub duration: u64,
        #[prost(message, optional, tag = "8")]
        pub local_endpoint: Option<Endpoint>,
        #[prost(message, optional, tag = "9")]
        pub remote_endpoint: Option<Endpoint>,
        #[prost(message, repeated, tag = "10")]
        pub annotations: Vec<Annotation>,
        #[prost(btree_map = "string, string", tag = "11")]
        pub tags: BTreeMap<String, String>,
        #[prost(bool, tag = "12")]
        pub debug: bool,
        #[prost(bool, tag = "13")]
        pub shared: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Endpoint {
        #[prost(string, tag = "1")]
        pub service_name: String,
        #[prost(bytes = "vec", tag = "2")]
        pub ipv4: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub ipv6: Vec<u8>,
        #[prost(int32, tag = "4")]
        pub port: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Annotation {
        #[prost(fixed64, tag = "1")]
        pub timestamp: u64,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

impl proto::Endpoint {
    fn into_model(self) -> Endpoint {
        let ip = match (self.ipv4.len(), self.ipv6.len()) {
            (4, _) => Some(std::net::Ipv4Addr::new(self.ipv4[0], self.ipv4[1], self.ipv4[2], self.ipv4[3]).to_string()),
            (_, 16) => {
                let octets: [u8; 16] = self.ipv6.as_slice().try_into().unwrap_or([0; 16]);
                Some(std::net::Ipv6Addr::from(octets).to_string())
            }
            _ => None,
        };
        Endpoint { service_name: self.service_name, ip, port: (self.port != 0).then_some(i64::from(self.port)) }
    }
}

impl proto::Span {
    fn into_model(self, index: usize) -> Result<ZSpan, ZipkinError> {
        let check = |what: &'static str, id: &[u8], trace: bool| {
            let ok = if trace { id.len() == 8 || id.len() == 16 } else { id.len() == 8 };
            if ok {
                Ok(())
            } else {
                Err(ZipkinError::Id {
                    index,
                    what,
                    value: format!("{} bytes", id.len()),
                    digits: if trace { "16 or 32" } else { "16" },
                })
            }
        };
        check("traceId", &self.trace_id, true)?;
        check("id", &self.id, false)?;
        if !self.parent_id.is_empty() {
            check("parentId", &self.parent_id, false)?;
        }
        Ok(ZSpan {
            trace_id: widen(self.trace_id, true),
            id: self.id,
            parent_id: self.parent_id,
            name: self.name,
            kind: match self.kind {
                1 => SpanKind::Client,
                2 => SpanKind::Server,
                3 => SpanKind::Producer,
                4 => SpanKind::Consumer,
                _ => SpanKind::Unspecified,
            },
            timestamp_us: self.timestamp,
            duration_us: self.duration,
            local: self.local_endpoint.map(proto::Endpoint::into_model).unwrap_or_default(),
            remote: self.remote_endpoint.map(proto::Endpoint::into_model),
            annotations: self.annotations.into_iter().map(|a| (a.timestamp, a.value)).collect(),
            tags: self.tags,
        })
    }
}

/// Tag prefixes of resource attributes: what the OpenTelemetry SDKs'
/// Zipkin exporters copy from the resource into every span's tags.
const RESOURCE_PREFIXES: &[&str] = &[
    "service.",
    "telemetry.sdk.",
    "telemetry.distro.",
    "host.",
    "process.",
    "deployment.",
    "k8s.",
    "container.",
    "cloud.",
    "os.",
    "device.",
    "faas.",
];

fn string_kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value)) }),
        ..Default::default()
    }
}

/// A JSON value as an OTLP attribute value.
fn any_of(value: serde_json::Value) -> AnyValue {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    let value = match value {
        serde_json::Value::String(s) => any_value::Value::StringValue(s),
        serde_json::Value::Bool(b) => any_value::Value::BoolValue(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::Array(items) => {
            any_value::Value::ArrayValue(ArrayValue { values: items.into_iter().map(any_of).collect() })
        }
        other => any_value::Value::StringValue(other.to_string()),
    };
    AnyValue { value: Some(value) }
}

/// An annotation as an event: `{"name": {attributes}}` as the OpenTelemetry
/// exporters write it, else an event named by the value.
fn event_of(timestamp_us: u64, value: String) -> Event {
    let time_unix_nano = timestamp_us.saturating_mul(1_000);
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&value)
        && map.len() == 1
        && let Some((name, serde_json::Value::Object(attributes))) = map.into_iter().next()
    {
        let attributes = attributes
            .into_iter()
            .map(|(k, v)| KeyValue { key: k, value: Some(any_of(v)), ..Default::default() })
            .collect();
        return Event { time_unix_nano, name, attributes, ..Default::default() };
    }
    Event { time_unix_nano, name: value, ..Default::default() }
}

/// Zipkin spans as one OTLP request: a resource group per service (and
/// resource tags), a scope group per instrumentation scope.
fn to_otlp(spans: Vec<ZSpan>) -> ExportTraceServiceRequest {
    let mut request = ExportTraceServiceRequest::default();
    for mut z in spans {
        let tags = std::mem::take(&mut z.tags);
        let mut resource_attrs = vec![string_kv("service.name", z.local.service_name.clone())];
        let mut scope = InstrumentationScope::default();
        let mut status = Status::default();
        let mut error_tag = None;
        let mut span = Span {
            trace_id: std::mem::take(&mut z.trace_id),
            span_id: std::mem::take(&mut z.id),
            parent_span_id: std::mem::take(&mut z.parent_id),
            name: std::mem::take(&mut z.name),
            kind: z.kind as i32,
            start_time_unix_nano: z.timestamp_us.saturating_mul(1_000),
            end_time_unix_nano: z.timestamp_us.saturating_add(z.duration_us).saturating_mul(1_000),
            ..Default::default()
        };
        for (key, value) in tags {
            match key.as_str() {
                "service.name" => {}
                "otel.scope.name" | "otel.library.name" => scope.name = value,
                "otel.scope.version" | "otel.library.version" => scope.version = value,
                "otel.status_code" => {
                    status.code = match value.to_ascii_uppercase().as_str() {
                        "ERROR" => StatusCode::Error as i32,
                        "OK" => StatusCode::Ok as i32,
                        _ => StatusCode::Unset as i32,
                    }
                }
                "otel.status_description" => status.message = value,
                "error" => error_tag = Some(value),
                "otel.dropped_attributes_count" => span.dropped_attributes_count = value.parse().unwrap_or(0),
                "otel.dropped_events_count" => span.dropped_events_count = value.parse().unwrap_or(0),
                "otel.dropped_links_count" => span.dropped_links_count = value.parse().unwrap_or(0),
                "w3c.tracestate" => span.trace_state = value,
                k if RESOURCE_PREFIXES.iter().any(|p| k.starts_with(p)) => resource_attrs.push(string_kv(k, value)),
                _ => span.attributes.push(string_kv(&key, value)),
            }
        }
        // An `error` tag alone marks an error; its value is the message.
        if let Some(message) = error_tag {
            if status.code == StatusCode::Unset as i32 {
                status.code = StatusCode::Error as i32;
            }
            if status.message.is_empty() && message != "true" {
                status.message = message;
            }
        }
        if status.code != StatusCode::Unset as i32 || !status.message.is_empty() {
            span.status = Some(status);
        }
        if let Some(ip) = z.local.ip.take() {
            span.attributes.push(string_kv("net.host.ip", ip));
        }
        if let Some(port) = z.local.port {
            span.attributes.push(KeyValue {
                key: "net.host.port".into(),
                value: Some(AnyValue { value: Some(any_value::Value::IntValue(port)) }),
                ..Default::default()
            });
        }
        if let Some(remote) = z.remote.take() {
            if !remote.service_name.is_empty() {
                span.attributes.push(string_kv("peer.service", remote.service_name));
            }
            if let Some(ip) = remote.ip {
                span.attributes.push(string_kv("net.peer.ip", ip));
            }
            if let Some(port) = remote.port {
                span.attributes.push(KeyValue {
                    key: "net.peer.port".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::IntValue(port)) }),
                    ..Default::default()
                });
            }
        }
        span.events = z.annotations.drain(..).map(|(t, v)| event_of(t, v)).collect();
        let resource = Resource { attributes: resource_attrs, ..Default::default() };
        let rs = match request.resource_spans.iter_mut().find(|rs| rs.resource.as_ref() == Some(&resource)) {
            Some(rs) => rs,
            None => {
                request.resource_spans.push(ResourceSpans { resource: Some(resource), ..Default::default() });
                request.resource_spans.last_mut().expect("just pushed")
            }
        };
        let ss = match rs.scope_spans.iter_mut().find(|ss| ss.scope.as_ref() == Some(&scope)) {
            Some(ss) => ss,
            None => {
                rs.scope_spans.push(ScopeSpans { scope: Some(scope), ..Default::default() });
                rs.scope_spans.last_mut().expect("just pushed")
            }
        };
        ss.spans.push(span);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zipkin_span_becomes_the_otlp_span_the_collector_would_make() {
        let body = br#"[{"traceId":"0102030405060708","id":"aaaaaaaaaaaaaaaa","parentId":"bbbbbbbbbbbbbbbb",
            "name":"get /x","kind":"SERVER","timestamp":1700000000123456,"duration":1500,
            "localEndpoint":{"serviceName":"api","ipv4":"10.0.0.1","port":8080},
            "remoteEndpoint":{"serviceName":"db","ipv4":"10.0.0.2","port":5432},
            "annotations":[{"timestamp":1700000000124000,"value":"{\"retry\": {\"attempt\": 2}}"},
                           {"timestamp":1700000000125000,"value":"cache miss"}],
            "tags":{"http.method":"GET","service.instance.id":"i-1","otel.scope.name":"lib","otel.scope.version":"1",
                    "otel.status_code":"ERROR","error":"boom","w3c.tracestate":"k=v"}}]"#;
        let decoded = decode_json(body, &Limits::default()).unwrap();
        assert_eq!((decoded.accepted_spans, decoded.rejected_spans), (1, 0));
        let rs = &decoded.request.resource_spans[0];
        let resource = &rs.resource.as_ref().unwrap().attributes;
        let keys: Vec<&str> = resource.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["service.name", "service.instance.id"]);
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!((scope.name.as_str(), scope.version.as_str()), ("lib", "1"));
        let span = &rs.scope_spans[0].spans[0];
        assert_eq!(span.trace_id, [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_123_456_000);
        assert_eq!(span.end_time_unix_nano, 1_700_000_000_124_956_000);
        assert_eq!(span.status, Some(Status { code: StatusCode::Error as i32, message: "boom".into() }));
        assert_eq!(span.trace_state, "k=v");
        let attrs: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            attrs,
            ["http.method", "net.host.ip", "net.host.port", "peer.service", "net.peer.ip", "net.peer.port"]
        );
        assert_eq!(span.events[0].name, "retry");
        assert_eq!(span.events[0].attributes[0].key, "attempt");
        assert_eq!(span.events[1].name, "cache miss");
    }

    #[test]
    fn bad_bodies_say_what_was_wrong() {
        let e = decode_json(br#"{"traceId":"x"}"#, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("expected a list of spans"), "{e}");
        let e = decode_json(br#"[{"traceId":"xyz","id":"aaaaaaaaaaaaaaaa"}]"#, &Limits::default()).unwrap_err();
        assert_eq!(e.to_string(), r#"span 0: traceId "xyz" is not 16 or 32 hex digits"#);
        let e = decode_protobuf(&[0x0a, 0x02, 0x0a, 0x00], &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("traceId"), "{e}");
        let tight = Limits { max_decoded_bytes: 1_000, ..Limits::default() };
        let e = decode_json(&[b'{'; 10], &tight).unwrap_err();
        assert!(matches!(e, ZipkinError::DecodedTooLarge { .. }), "{e}");
    }

    #[test]
    fn protobuf_spans_read_like_json_ones() {
        let span = proto::Span {
            trace_id: vec![7; 16],
            id: vec![1; 8],
            kind: 1,
            name: "call".into(),
            timestamp: 1_000,
            duration: 10,
            local_endpoint: Some(proto::Endpoint {
                service_name: "svc".into(),
                ipv4: vec![127, 0, 0, 1],
                ..Default::default()
            }),
            tags: [("k".to_owned(), "v".to_owned())].into(),
            ..Default::default()
        };
        let bytes = prost::Message::encode_to_vec(&proto::ListOfSpans { spans: vec![span] });
        let decoded = decode_protobuf(&bytes, &Limits::default()).unwrap();
        let span = &decoded.request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((span.kind, span.name.as_str()), (SpanKind::Client as i32, "call"));
        assert_eq!(span.attributes[0].key, "k");
        assert_eq!(
            span.attributes[1].value.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("127.0.0.1".into()))
        );
    }
}
