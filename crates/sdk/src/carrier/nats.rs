//! NATS message headers (async-nats). NATS headers may repeat, like HTTP's, and are read the
//! same way: two `traceparent`s restart the trace, several `tracestate`/`baggage` lines join.

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
