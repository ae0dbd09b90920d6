//! NATS message headers (async-nats). NATS headers may repeat, like HTTP's, and are read the
//! same way: two `traceparent`s restart the trace, several `tracestate`/`baggage` lines join.
//!
//! ```
//! use agentrace::carrier::ContextCarrier;
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use opentelemetry::Context;
//!
//! let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
//! let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
//! let sent = Context::new().with_remote_span_context(SpanContext::new(
//!     trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default(),
//! ));
//!
//! let mut headers = async_nats::HeaderMap::new();
//! headers.inject_context(&sent);
//! assert_eq!(
//!     headers.get("traceparent").unwrap().as_str(),
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
//! );
//! // The consumer's side: its span continues the producer's trace.
//! let received = headers.extract_context();
//! assert_eq!(received.span().span_context().trace_id(), trace_id);
//! ```

use async_nats::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};

use super::ContextCarrier;
use crate::propagation;

/// Writes into NATS headers.
#[derive(Debug)]
pub struct NatsInjector<'a>(pub &'a mut HeaderMap);

/// Reads from NATS headers.
#[derive(Debug, Clone, Copy)]
pub struct NatsExtractor<'a>(pub &'a HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self.0.get_all(key).map(|v| v.as_str()).collect();
        if values.is_empty() { None } else { Some(values) }
    }
}

impl ContextCarrier for HeaderMap {
    fn inject_context(&mut self, cx: &Context) {
        propagation::inject_context(cx, &mut NatsInjector(self));
    }

    fn extract_context(&self) -> Context {
        propagation::extract_context(&NatsExtractor(self))
    }
}
