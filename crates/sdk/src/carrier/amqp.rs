//! AMQP 0-9-1 message headers (lapin `FieldTable`, in `BasicProperties::with_headers`).
//!
//! Values are written as long strings; on read, long and short strings and byte arrays that
//! are UTF-8 are accepted (other clients write either), any other AMQP type is ignored.
//!
//! ```
//! use agentrace::carrier::ContextCarrier;
//! use lapin::types::FieldTable;
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use opentelemetry::Context;
//!
//! let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
//! let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
//! let sent = Context::new().with_remote_span_context(SpanContext::new(
//!     trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default(),
//! ));
//!
//! let mut headers = FieldTable::default();
//! headers.inject_context(&sent);
//! // `BasicProperties::default().with_headers(headers)` when publishing; on delivery:
//! let received = headers.extract_context();
//! assert_eq!(received.span().span_context().trace_id(), trace_id);
//! ```

use lapin::types::{AMQPValue, FieldTable, ShortString};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};

use super::ContextCarrier;
use crate::propagation;

/// Writes into an AMQP header table.
#[derive(Debug)]
pub struct AmqpInjector<'a>(pub &'a mut FieldTable);

/// Reads from an AMQP header table.
#[derive(Debug, Clone, Copy)]
pub struct AmqpExtractor<'a>(pub &'a FieldTable);

impl Injector for AmqpInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(ShortString::from(key), AMQPValue::LongString(value.into()));
    }
}

impl Extractor for AmqpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.0.inner().get(key)?;
        match value {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            AMQPValue::ByteArray(b) => std::str::from_utf8(b.as_slice()).ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|k| k.as_str()).collect()
    }
}

impl ContextCarrier for FieldTable {
    fn inject_context(&mut self, cx: &Context) {
        propagation::inject_context(cx, &mut AmqpInjector(self));
    }

    fn extract_context(&self) -> Context {
        propagation::extract_context(&AmqpExtractor(self))
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    #[test]
    fn string_types_are_read_and_other_types_ignored() {
        let tp = "00-12345678901234567890123456789012-1234567890123456-01";
        for value in [
            AMQPValue::LongString(tp.into()),
            AMQPValue::ShortString(tp.into()),
            AMQPValue::ByteArray(tp.as_bytes().to_vec().into()),
        ] {
            let mut table = FieldTable::default();
            table.insert("traceparent".into(), value);
            assert!(table.extract_context().span().span_context().is_valid());
        }
        let mut table = FieldTable::default();
        table.insert("traceparent".into(), AMQPValue::LongUInt(7));
        assert!(!table.extract_context().span().span_context().is_valid());
    }
}
