//! Kafka message headers (rdkafka). Kafka headers are an ordered, append-only list, so injection
//! returns a new `OwnedHeaders` with the W3C headers appended; extraction reads any `Headers`
//! (owned or borrowed from a received message). A repeated `traceparent` restarts the trace.
//!
//! ```
//! use agentrace::carrier::kafka::{extract_from, inject_into};
//! use rdkafka::message::OwnedHeaders;
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use opentelemetry::Context;
//!
//! let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
//! let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
//! let sent = Context::new().with_remote_span_context(SpanContext::new(
//!     trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default(),
//! ));
//!
//! // `FutureRecord::to(topic).headers(headers)` when producing; on the consumer,
//! // `extract_from(message.headers().unwrap())`.
//! let headers = inject_into(OwnedHeaders::new(), &sent);
//! let received = extract_from(&headers);
//! assert_eq!(received.span().span_context().trace_id(), trace_id);
//! ```

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::propagation;

struct Collect(Vec<(&'static str, String)>);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        let key = match key {
            propagation::TRACEPARENT => propagation::TRACEPARENT,
            propagation::TRACESTATE => propagation::TRACESTATE,
            propagation::BAGGAGE => propagation::BAGGAGE,
            _ => return,
        };
        self.0.push((key, value));
    }
}

/// `headers` with the W3C headers of `cx` appended.
pub fn inject_into(headers: OwnedHeaders, cx: &Context) -> OwnedHeaders {
    let mut collected = Collect(Vec::new());
    propagation::inject_context(cx, &mut collected);
    collected.0.iter().fold(headers, |h, (key, value)| h.insert(Header { key, value: Some(value.as_str()) }))
}

/// Reads from any Kafka headers; values that are not UTF-8 are ignored.
#[derive(Debug, Clone, Copy)]
pub struct KafkaExtractor<'a, H>(pub &'a H);

impl<H: Headers> Extractor for KafkaExtractor<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|h| h.key == key).and_then(|h| std::str::from_utf8(h.value?).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> =
            self.0.iter().filter(|h| h.key == key).filter_map(|h| std::str::from_utf8(h.value?).ok()).collect();
        if values.is_empty() { None } else { Some(values) }
    }
}

/// The context carried by Kafka headers, on top of the current context.
pub fn extract_from<H: Headers>(headers: &H) -> Context {
    propagation::extract_context(&KafkaExtractor(headers))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

    use super::*;

    #[test]
    fn headers_round_trip_and_duplicates_restart() {
        let sc =
            SpanContext::new(TraceId::from(5u128), SpanId::from(6u64), TraceFlags::SAMPLED, true, TraceState::NONE);
        let headers = inject_into(
            OwnedHeaders::new().insert(Header { key: "app", value: Some("x") }),
            &Context::new().with_remote_span_context(sc),
        );
        assert_eq!(extract_from(&headers).span().span_context().trace_id(), TraceId::from(5u128));
        let doubled = inject_into(
            headers,
            &Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(9u128),
                SpanId::from(6u64),
                TraceFlags::SAMPLED,
                true,
                TraceState::NONE,
            )),
        );
        assert!(!extract_from(&doubled).span().span_context().is_valid());
    }
}
