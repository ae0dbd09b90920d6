//! Turning a validated export request into rows, on the request's own task.
//!
//! The expensive part of a write (re-encoding each span, picking out the
//! indexed columns) happens here, outside the writer thread, so the single
//! writer does nothing but SQLite work.
//!
//! Resources and scopes are stored once each: a resource row holds an
//! encoded `ResourceSpans` with no scopes (so its `schema_url` is kept), a
//! scope row an encoded `ScopeSpans` with no spans. Each span row holds the
//! encoded `Span` exactly as it arrived.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

/// Join and session keys that get an index, with their stable codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IndexedKey {
    /// `session.id`.
    SessionId = 1,
    /// `gen_ai.conversation.id`.
    ConversationId = 2,
    /// `user.id`.
    UserId = 3,
    /// `messaging.message.id`.
    MessageId = 4,
    /// `mcp.session.id` and `jsonrpc.request.id`, joined by a unit separator.
    McpRequest = 5,
    /// `gen_ai.tool.call.id`.
    ToolCallId = 6,
}

impl IndexedKey {
    fn from_attribute(key: &str) -> Option<IndexedKey> {
        Some(match key {
            "session.id" => IndexedKey::SessionId,
            "gen_ai.conversation.id" => IndexedKey::ConversationId,
            "user.id" => IndexedKey::UserId,
            "messaging.message.id" => IndexedKey::MessageId,
            "gen_ai.tool.call.id" => IndexedKey::ToolCallId,
            _ => return None,
        })
    }
}

/// One span, ready to insert.
#[derive(Debug)]
pub struct SpanRow {
    pub(crate) trace_id: Vec<u8>,
    pub(crate) span_id: Vec<u8>,
    pub(crate) parent_span_id: Option<Vec<u8>>,
    pub(crate) resource: usize,
    pub(crate) scope: usize,
    pub(crate) name: String,
    pub(crate) kind: i32,
    pub(crate) start_ns: i64,
    pub(crate) end_ns: i64,
    pub(crate) status_code: i32,
    pub(crate) body: Vec<u8>,
    pub(crate) keys: Vec<(IndexedKey, String)>,
}

/// A request, ready for the writer.
#[derive(Debug, Default)]
pub struct PreparedBatch {
    /// Encoded resources with their `service.name`.
    pub(crate) resources: Vec<(Vec<u8>, String)>,
    /// Encoded scopes.
    pub(crate) scopes: Vec<Vec<u8>>,
    /// Spans, pointing into `resources` and `scopes` by index.
    pub(crate) spans: Vec<SpanRow>,
}

impl PreparedBatch {
    /// How many spans the batch holds.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the batch holds no spans.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Prepares a request that [`agentrace_model::otlp::validate`] has
    /// already checked (IDs have the right lengths).
    pub fn from_request(request: ExportTraceServiceRequest) -> PreparedBatch {
        let mut batch = PreparedBatch::default();
        for rs in request.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| string_attr(&r.attributes, "service.name"))
                .unwrap_or("unknown_service")
                .to_owned();
            let resource_index = batch.resources.len();
            let shell = ResourceSpans { resource: rs.resource, scope_spans: Vec::new(), schema_url: rs.schema_url };
            batch.resources.push((shell.encode_to_vec(), service));
            for ss in rs.scope_spans {
                let scope_index = batch.scopes.len();
                let shell = ScopeSpans { scope: ss.scope, spans: Vec::new(), schema_url: ss.schema_url };
                batch.scopes.push(shell.encode_to_vec());
                for span in ss.spans {
                    let body = span.encode_to_vec();
                    let keys = indexed_keys(&span.attributes);
                    batch.spans.push(SpanRow {
                        parent_span_id: (!span.parent_span_id.is_empty()).then_some(span.parent_span_id),
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        resource: resource_index,
                        scope: scope_index,
                        name: span.name,
                        kind: span.kind,
                        start_ns: clamp_time(span.start_time_unix_nano),
                        end_ns: clamp_time(span.end_time_unix_nano),
                        status_code: span.status.map(|s| s.code).unwrap_or(0),
                        body,
                        keys,
                    });
                }
            }
        }
        batch
    }
}

/// SQLite integers are signed; times past 2262 are clamped rather than wrapped.
fn clamp_time(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

/// Text of a scalar attribute value: IDs sometimes arrive as integers
/// (`jsonrpc.request.id` is a JSON-RPC id, which may be a number).
fn scalar_text(kv: &KeyValue) -> Option<String> {
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn indexed_keys(attributes: &[KeyValue]) -> Vec<(IndexedKey, String)> {
    let mut keys = Vec::new();
    let mut mcp_session = None;
    let mut rpc_id = None;
    for kv in attributes {
        match kv.key.as_str() {
            "mcp.session.id" => mcp_session = scalar_text(kv),
            "jsonrpc.request.id" => rpc_id = scalar_text(kv),
            key => {
                if let Some(k) = IndexedKey::from_attribute(key)
                    && let Some(v) = scalar_text(kv)
                {
                    keys.push((k, v));
                }
            }
        }
    }
    if let (Some(session), Some(id)) = (mcp_session, rpc_id) {
        keys.push((IndexedKey::McpRequest, mcp_request_key(&session, &id)));
    }
    keys
}

/// The indexed value for an MCP request: session and request id together,
/// since a request id alone repeats across sessions.
pub fn mcp_request_key(session: &str, request_id: &str) -> String {
    format!("{session}\u{1f}{request_id}")
}
