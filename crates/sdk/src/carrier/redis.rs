//! Redis stream entry fields: the context as `traceparent` / `tracestate` / `baggage` fields
//! next to the payload fields of an `XADD`, read back from the entry an `XREAD` returns.
//!
//! (For a plain Redis value, a list element or a pub/sub message, use the JSON envelope.)
//!
//! ```
//! use std::collections::HashMap;
//!
//! use agentrace::carrier::redis::{extract_from_entry, StreamFields};
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use opentelemetry::Context;
//!
//! let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
//! let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
//! let sent = Context::new().with_remote_span_context(SpanContext::new(
//!     trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default(),
//! ));
//!
//! // `XADD stream * <fields> payload …`: the context travels as fields of the entry.
//! let fields = StreamFields::from_context(&sent);
//! let entry: HashMap<String, redis::Value> = fields
//!     .0
//!     .iter()
//!     .map(|(k, v)| (k.clone(), redis::Value::BulkString(v.clone().into_bytes())))
//!     .collect();
//! // The consumer reads the entry's map back (`XREADGROUP`).
//! let received = extract_from_entry(&entry);
//! assert_eq!(received.span().span_context().trace_id(), trace_id);
//! ```

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use redis::Value;

use crate::propagation;

/// Field/value pairs to append to an `XADD`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamFields(pub Vec<(String, String)>);

impl Injector for StreamFields {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value));
    }
}

impl StreamFields {
    /// The fields that carry `cx`.
    pub fn from_context(cx: &Context) -> Self {
        let mut fields = StreamFields::default();
        propagation::inject_context(cx, &mut fields);
        fields
    }
}

/// Reads the fields of a stream entry (`StreamId::map`); non-UTF-8 or non-string values are ignored.
#[derive(Debug, Clone, Copy)]
pub struct StreamEntryExtractor<'a>(pub &'a HashMap<String, Value>);

impl Extractor for StreamEntryExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.get(key)? {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
            Value::SimpleString(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The context carried by a stream entry's fields, on top of the current context.
pub fn extract_from_entry(map: &HashMap<String, Value>) -> Context {
    propagation::extract_context(&StreamEntryExtractor(map))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    #[test]
    fn non_string_fields_are_ignored() {
        let tp = "00-12345678901234567890123456789012-1234567890123456-01";
        let mut map = HashMap::new();
        map.insert("traceparent".to_owned(), Value::BulkString(tp.as_bytes().to_vec()));
        assert!(extract_from_entry(&map).span().span_context().is_valid());
        map.insert("traceparent".to_owned(), Value::Int(3));
        assert!(!extract_from_entry(&map).span().span_context().is_valid());
        map.insert("traceparent".to_owned(), Value::BulkString(vec![0xff, 0xfe]));
        assert!(!extract_from_entry(&map).span().span_context().is_valid());
    }
}
