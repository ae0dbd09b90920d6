//! MCP `params._meta` (SEP-414): the keys `traceparent`, `tracestate` and `baggage` in the JSON
//! object that every MCP request may carry, whatever the transport (stdio has no headers at all).
//!
//! Works on a plain `serde_json::Map`, which rmcp's `_meta` types dereference to. A `_meta` that
//! is not an object, or a key whose value is not a string, is ignored.
//!
//! ```
//! use agentrace::carrier::ContextCarrier;
//! use agentrace::carrier::meta::extract_from_meta_value;
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use opentelemetry::Context;
//!
//! let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
//! let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
//! let sent = Context::new().with_remote_span_context(SpanContext::new(
//!     trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default(),
//! ));
//!
//! // The client writes the context into the request's `params._meta`…
//! let mut meta = serde_json::Map::new();
//! meta.inject_context(&sent);
//! let params = serde_json::json!({"name": "search", "arguments": {}, "_meta": meta});
//! // …and the server reads it back from whatever JSON it received.
//! let received = extract_from_meta_value(params.get("_meta"));
//! assert_eq!(received.span().span_context().trace_id(), trace_id);
//! ```

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use serde_json::{Map, Value};

use super::ContextCarrier;
use crate::propagation::{self, BAGGAGE, TRACEPARENT, TRACESTATE};

/// Writes into a `_meta` object.
#[derive(Debug)]
pub struct MetaInjector<'a>(pub &'a mut Map<String, Value>);

/// Reads from a `_meta` object; non-string values read as absent.
#[derive(Debug, Clone, Copy)]
pub struct MetaExtractor<'a>(pub &'a Map<String, Value>);

impl Injector for MetaInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), Value::String(value));
    }
}

impl Extractor for MetaExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl ContextCarrier for Map<String, Value> {
    fn inject_context(&mut self, cx: &Context) {
        // A stale context from a reused params object must not survive next to the new one.
        for key in [TRACEPARENT, TRACESTATE, BAGGAGE] {
            self.remove(key);
        }
        propagation::inject_context(cx, &mut MetaInjector(self));
    }

    fn extract_context(&self) -> Context {
        propagation::extract_context(&MetaExtractor(self))
    }
}

/// Extracts from a raw `_meta` value of any JSON type: only an object can carry a context.
pub fn extract_from_meta_value(meta: Option<&Value>) -> Context {
    match meta {
        Some(Value::Object(map)) => map.extract_context(),
        _ => Context::current(),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_sep_414_keys_and_ignores_wrong_types() {
        let meta =
            json!({"traceparent": "00-12345678901234567890123456789012-1234567890123456-01", "progressToken": 3});
        let cx = extract_from_meta_value(Some(&meta));
        assert!(cx.span().span_context().is_valid());
        for bad in
            [json!("00-12345678901234567890123456789012-1234567890123456-01"), json!([1]), json!({"traceparent": 1})]
        {
            assert!(!extract_from_meta_value(Some(&bad)).span().span_context().is_valid());
        }
    }

    #[test]
    fn inject_replaces_stale_keys_and_keeps_others() {
        let mut meta = json!({"traceparent": "stale", "baggage": "old=1", "progressToken": 3});
        let map = meta.as_object_mut().unwrap();
        map.inject_context(&Context::new());
        assert_eq!(map.len(), 1);
        assert_eq!(map["progressToken"], 3);
    }
}
