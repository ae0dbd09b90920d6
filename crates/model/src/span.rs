//! [`Span`]: one span, flat and owned, with its resource and scope.
//!
//! Analysis reads spans in this form. Conversions to and from OTLP are
//! lossless for everything the doctor and the exporters need; the collector's
//! store keeps the original protobuf bytes besides, so the Jaeger-shaped API
//! can return exactly what arrived.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span::Event as OtlpEvent, span::Link as OtlpLink,
};

use crate::ids::{SpanId, TraceId};
use crate::value::Attributes;

/// OTLP span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// Not set by the sender.
    #[default]
    Unspecified,
    /// In-process work.
    Internal,
    /// Handles a remote request.
    Server,
    /// Makes a remote request.
    Client,
    /// Creates a message to be handled later.
    Producer,
    /// Handles a message created by a producer.
    Consumer,
}

impl SpanKind {
    /// From OTLP's integer.
    pub fn from_i32(v: i32) -> SpanKind {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// To OTLP's integer.
    pub fn to_i32(self) -> i32 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }
}

/// OTLP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusCode {
    /// Not set.
    #[default]
    Unset,
    /// Explicitly successful.
    Ok,
    /// Failed.
    Error,
}

impl StatusCode {
    /// From OTLP's integer.
    pub fn from_i32(v: i32) -> StatusCode {
        match v {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// To OTLP's integer.
    pub fn to_i32(self) -> i32 {
        match self {
            StatusCode::Unset => 0,
            StatusCode::Ok => 1,
            StatusCode::Error => 2,
        }
    }
}

/// A resource: the entity (service instance) that produced spans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resource {
    /// Resource attributes (`service.name`, `service.instance.id`, …).
    pub attributes: Attributes,
    /// Dropped attribute count, as sent.
    pub dropped_attributes_count: u32,
    /// Schema URL of the enclosing `ResourceSpans`.
    pub schema_url: String,
}

impl Resource {
    /// `service.name`, or `unknown_service` as the OpenTelemetry spec says.
    pub fn service_name(&self) -> &str {
        self.attributes.str("service.name").unwrap_or("unknown_service")
    }

    /// A resource with just a service name.
    pub fn for_service(name: &str) -> Resource {
        Resource { attributes: [("service.name", name)].into_iter().collect(), ..Default::default() }
    }
}

/// An instrumentation scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    /// Scope name.
    pub name: String,
    /// Scope version.
    pub version: String,
    /// Scope attributes.
    pub attributes: Attributes,
    /// Dropped attribute count, as sent.
    pub dropped_attributes_count: u32,
    /// Schema URL of the enclosing `ScopeSpans`.
    pub schema_url: String,
}

/// A span event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// Event name (`exception`, `gen_ai.content.prompt`, …).
    pub name: String,
    /// Time, nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// Event attributes.
    pub attributes: Attributes,
    /// Dropped attribute count, as sent.
    pub dropped_attributes_count: u32,
}

/// A span link.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Linked trace.
    pub trace_id: TraceId,
    /// Linked span.
    pub span_id: SpanId,
    /// W3C tracestate of the linked context.
    pub trace_state: String,
    /// Link attributes.
    pub attributes: Attributes,
    /// Dropped attribute count, as sent.
    pub dropped_attributes_count: u32,
    /// W3C flags of the linked context.
    pub flags: u32,
}

/// One span, flat: IDs, timing, attributes, events, links, status, and the
/// resource and scope it was sent under (shared between spans of a batch).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Trace ID.
    pub trace_id: TraceId,
    /// Span ID.
    pub span_id: SpanId,
    /// Parent span ID; `None` for a root.
    pub parent_span_id: Option<SpanId>,
    /// W3C tracestate.
    pub trace_state: String,
    /// OTLP span flags.
    pub flags: u32,
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_unix_nano: u64,
    /// Span attributes.
    pub attributes: Attributes,
    /// Dropped attribute count, as sent.
    pub dropped_attributes_count: u32,
    /// Events.
    pub events: Vec<Event>,
    /// Dropped event count, as sent.
    pub dropped_events_count: u32,
    /// Links.
    pub links: Vec<Link>,
    /// Dropped link count, as sent.
    pub dropped_links_count: u32,
    /// Status code.
    pub status_code: StatusCode,
    /// Status message.
    pub status_message: String,
    /// The resource the span was sent under.
    pub resource: Arc<Resource>,
    /// The instrumentation scope the span was sent under.
    pub scope: Arc<Scope>,
}

impl Span {
    /// A span with the given IDs and name, and everything else empty; for
    /// tests, fixtures and synthetic spans.
    pub fn new(trace_id: TraceId, span_id: SpanId, parent_span_id: Option<SpanId>, name: &str) -> Span {
        Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state: String::new(),
            flags: 0,
            name: name.to_owned(),
            kind: SpanKind::Internal,
            start_unix_nano: 0,
            end_unix_nano: 0,
            attributes: Attributes::default(),
            dropped_attributes_count: 0,
            events: Vec::new(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status_code: StatusCode::Unset,
            status_message: String::new(),
            resource: Arc::new(Resource::default()),
            scope: Arc::new(Scope::default()),
        }
    }

    /// `service.name` of the span's resource.
    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }

    /// Duration in nanoseconds (zero if the end precedes the start).
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// Whether the span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }

    /// Converts one OTLP span. Fails if its trace or span ID is invalid; an
    /// invalid parent ID (wrong length or all zeros) is read as "no parent",
    /// which is what OTLP receivers in the field do.
    pub fn from_otlp(span: &OtlpSpan, resource: &Arc<Resource>, scope: &Arc<Scope>) -> Result<Span, crate::IdError> {
        let trace_id = TraceId::from_slice(&span.trace_id)?;
        let span_id = SpanId::from_slice(&span.span_id)?;
        let parent_span_id = SpanId::from_slice(&span.parent_span_id).ok();
        let status = span.status.clone().unwrap_or_default();
        Ok(Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state: span.trace_state.clone(),
            flags: span.flags,
            name: span.name.clone(),
            kind: SpanKind::from_i32(span.kind),
            start_unix_nano: span.start_time_unix_nano,
            end_unix_nano: span.end_time_unix_nano,
            attributes: Attributes::from_otlp(&span.attributes),
            dropped_attributes_count: span.dropped_attributes_count,
            events: span
                .events
                .iter()
                .map(|e| Event {
                    name: e.name.clone(),
                    time_unix_nano: e.time_unix_nano,
                    attributes: Attributes::from_otlp(&e.attributes),
                    dropped_attributes_count: e.dropped_attributes_count,
                })
                .collect(),
            dropped_events_count: span.dropped_events_count,
            links: span
                .links
                .iter()
                .filter_map(|l| {
                    Some(Link {
                        trace_id: TraceId::from_slice(&l.trace_id).ok()?,
                        span_id: SpanId::from_slice(&l.span_id).ok()?,
                        trace_state: l.trace_state.clone(),
                        attributes: Attributes::from_otlp(&l.attributes),
                        dropped_attributes_count: l.dropped_attributes_count,
                        flags: l.flags,
                    })
                })
                .collect(),
            dropped_links_count: span.dropped_links_count,
            status_code: StatusCode::from_i32(status.code),
            status_message: status.message,
            resource: Arc::clone(resource),
            scope: Arc::clone(scope),
        })
    }

    /// Converts to one OTLP span (without resource and scope).
    pub fn to_otlp(&self) -> OtlpSpan {
        OtlpSpan {
            trace_id: self.trace_id.as_bytes().to_vec(),
            span_id: self.span_id.as_bytes().to_vec(),
            trace_state: self.trace_state.clone(),
            parent_span_id: self.parent_span_id.map(|p| p.as_bytes().to_vec()).unwrap_or_default(),
            flags: self.flags,
            name: self.name.clone(),
            kind: self.kind.to_i32(),
            start_time_unix_nano: self.start_unix_nano,
            end_time_unix_nano: self.end_unix_nano,
            attributes: self.attributes.to_otlp(),
            dropped_attributes_count: self.dropped_attributes_count,
            events: self
                .events
                .iter()
                .map(|e| OtlpEvent {
                    time_unix_nano: e.time_unix_nano,
                    name: e.name.clone(),
                    attributes: e.attributes.to_otlp(),
                    dropped_attributes_count: e.dropped_attributes_count,
                })
                .collect(),
            dropped_events_count: self.dropped_events_count,
            links: self
                .links
                .iter()
                .map(|l| OtlpLink {
                    trace_id: l.trace_id.as_bytes().to_vec(),
                    span_id: l.span_id.as_bytes().to_vec(),
                    trace_state: l.trace_state.clone(),
                    attributes: l.attributes.to_otlp(),
                    dropped_attributes_count: l.dropped_attributes_count,
                    flags: l.flags,
                })
                .collect(),
            dropped_links_count: self.dropped_links_count,
            status: match (self.status_code, self.status_message.is_empty()) {
                (StatusCode::Unset, true) => None,
                _ => Some(Status { message: self.status_message.clone(), code: self.status_code.to_i32() }),
            },
        }
    }

    /// Flattens an export request into spans. Spans with invalid IDs are
    /// skipped; [`crate::otlp`] validation reports them before this point.
    pub fn from_request(request: &ExportTraceServiceRequest) -> Vec<Span> {
        let mut out = Vec::new();
        for rs in &request.resource_spans {
            let resource = Arc::new(resource_from_otlp(rs.resource.as_ref(), &rs.schema_url));
            for ss in &rs.scope_spans {
                let scope = Arc::new(scope_from_otlp(ss.scope.as_ref(), &ss.schema_url));
                out.extend(ss.spans.iter().filter_map(|s| Span::from_otlp(s, &resource, &scope).ok()));
            }
        }
        out
    }

    /// Groups spans back into an export request, one `ResourceSpans` per
    /// distinct resource and one `ScopeSpans` per distinct scope within it,
    /// in order of first appearance.
    pub fn to_request(spans: &[Span]) -> ExportTraceServiceRequest {
        type ScopeGroup = (Arc<Scope>, Vec<OtlpSpan>);
        let mut resources: Vec<(Arc<Resource>, Vec<ScopeGroup>)> = Vec::new();
        let mut resource_index: HashMap<*const Resource, usize> = HashMap::new();
        for span in spans {
            let key = Arc::as_ptr(&span.resource);
            let ri = *resource_index.entry(key).or_insert_with(|| {
                resources.push((Arc::clone(&span.resource), Vec::new()));
                resources.len() - 1
            });
            let scopes = &mut resources[ri].1;
            let si = match scopes.iter().position(|(s, _)| Arc::ptr_eq(s, &span.scope) || **s == *span.scope) {
                Some(i) => i,
                None => {
                    scopes.push((Arc::clone(&span.scope), Vec::new()));
                    scopes.len() - 1
                }
            };
            scopes[si].1.push(span.to_otlp());
        }
        ExportTraceServiceRequest {
            resource_spans: resources
                .into_iter()
                .map(|(resource, scopes)| ResourceSpans {
                    resource: Some(OtlpResource {
                        attributes: resource.attributes.to_otlp(),
                        dropped_attributes_count: resource.dropped_attributes_count,
                        entity_refs: Vec::new(),
                    }),
                    schema_url: resource.schema_url.clone(),
                    scope_spans: scopes
                        .into_iter()
                        .map(|(scope, spans)| ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: scope.name.clone(),
                                version: scope.version.clone(),
                                attributes: scope.attributes.to_otlp(),
                                dropped_attributes_count: scope.dropped_attributes_count,
                            }),
                            schema_url: scope.schema_url.clone(),
                            spans,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Converts an OTLP resource.
pub fn resource_from_otlp(resource: Option<&OtlpResource>, schema_url: &str) -> Resource {
    Resource {
        attributes: resource.map(|r| Attributes::from_otlp(&r.attributes)).unwrap_or_default(),
        dropped_attributes_count: resource.map(|r| r.dropped_attributes_count).unwrap_or(0),
        schema_url: schema_url.to_owned(),
    }
}

/// Converts an OTLP instrumentation scope.
pub fn scope_from_otlp(scope: Option<&InstrumentationScope>, schema_url: &str) -> Scope {
    Scope {
        name: scope.map(|s| s.name.clone()).unwrap_or_default(),
        version: scope.map(|s| s.version.clone()).unwrap_or_default(),
        attributes: scope.map(|s| Attributes::from_otlp(&s.attributes)).unwrap_or_default(),
        dropped_attributes_count: scope.map(|s| s.dropped_attributes_count).unwrap_or(0),
        schema_url: schema_url.to_owned(),
    }
}
