//! HTTP headers: an `http::HeaderMap` carrier, a `reqwest` request extension (feature `reqwest`)
//! and a `tower` layer for axum and hyper servers (feature `tower`).
//!
//! Header names are case-insensitive and a header may repeat: two `traceparent` headers restart
//! the trace, several `tracestate` or `baggage` headers form one list, as W3C requires.
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
//! let mut headers = http::HeaderMap::new();
//! headers.inject_context(&sent);
//! assert!(headers.contains_key("traceparent"));
//! let received = headers.extract_context();
//! assert_eq!(received.span().span_context().span_id(), span_id);
//! ```

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};

use super::ContextCarrier;
use crate::propagation;

/// Writes into a header map.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

/// Reads from a header map.
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

// Header names built once: looking a map up by `&str` parses and lower-cases the name
// on every call, which costs as much as the lookup.
static TRACEPARENT: HeaderName = HeaderName::from_static(propagation::TRACEPARENT);
static TRACESTATE: HeaderName = HeaderName::from_static(propagation::TRACESTATE);
static BAGGAGE: HeaderName = HeaderName::from_static(propagation::BAGGAGE);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Known names skip header-name parsing; our propagators only write ASCII values, but
        // another propagator may not: skip what HTTP cannot carry.
        let name = match key {
            propagation::TRACEPARENT => TRACEPARENT.clone(),
            propagation::TRACESTATE => TRACESTATE.clone(),
            propagation::BAGGAGE => BAGGAGE.clone(),
            other => match HeaderName::from_bytes(other.as_bytes()) {
                Ok(name) => name,
                Err(_) => return,
            },
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            self.0.insert(name, value);
        }
    }
}

fn header_strs<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> + 'a {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self.0.get_all(key).iter().filter_map(|v| v.to_str().ok()).collect();
        if values.is_empty() { None } else { Some(values) }
    }
}

impl ContextCarrier for HeaderMap {
    fn inject_context(&mut self, cx: &Context) {
        // A fresh map (the usual case) has nothing to replace.
        if !self.is_empty() {
            for key in [&TRACEPARENT, &TRACESTATE, &BAGGAGE] {
                self.remove(key);
            }
        }
        propagation::inject_context(cx, &mut HeaderInjector(self));
    }

    fn extract_context(&self) -> Context {
        // At most two traceparents matter: one is valid, two restart the trace.
        let mut tp = header_strs(self, &TRACEPARENT);
        let one;
        let traceparents: &[&str] = match [tp.next(), tp.next()] {
            [Some(a), None] => {
                one = [a];
                &one
            }
            [None, _] => &[],
            [Some(_), Some(_)] => &["", ""],
        };
        propagation::extract_fields(traceparents, header_strs(self, &TRACESTATE), header_strs(self, &BAGGAGE))
    }
}

/// Injects the context into an outgoing `reqwest` request.
#[cfg(feature = "reqwest")]
pub trait RequestBuilderExt {
    /// Adds the W3C headers of `cx`.
    fn with_trace_context(self, cx: &Context) -> Self;
    /// Adds the W3C headers of the current context.
    fn with_current_trace_context(self) -> Self;
}

#[cfg(feature = "reqwest")]
impl RequestBuilderExt for reqwest::RequestBuilder {
    fn with_trace_context(self, cx: &Context) -> Self {
        let mut headers = HeaderMap::new();
        headers.inject_context(cx);
        self.headers(headers)
    }

    fn with_current_trace_context(self) -> Self {
        let cx = Context::current();
        self.with_trace_context(&cx)
    }
}

#[cfg(feature = "tower")]
pub use self::tower_layer::{ExtractContextLayer, ExtractContextService};

#[cfg(feature = "tower")]
mod tower_layer {
    use std::task::{Context as TaskContext, Poll};

    use opentelemetry::Context;
    use opentelemetry::context::{FutureExt, WithContext};

    use super::HeaderExtractor;
    use crate::propagation::{InboundBaggage, W3CPropagator};
    use opentelemetry::propagation::TextMapPropagator;

    /// A tower layer that extracts the caller's context from request headers and makes it the
    /// current context while the inner service handles the request, so every span started by a
    /// handler (raw OpenTelemetry or `#[instrument]` through `tracing-opentelemetry`) joins the
    /// caller's trace.
    #[derive(Debug, Clone)]
    pub struct ExtractContextLayer {
        propagator: W3CPropagator,
    }

    impl Default for ExtractContextLayer {
        fn default() -> Self {
            Self::new()
        }
    }

    impl ExtractContextLayer {
        /// A layer with the installed propagator
        /// ([`install_global_propagator`](crate::propagation::install_global_propagator)), or the
        /// default strict one when none is installed.
        pub fn new() -> Self {
            Self { propagator: crate::propagation::installed_propagator() }
        }

        /// Sets the inbound baggage policy: use [`InboundBaggage::Drop`] on a public edge.
        pub fn with_inbound_baggage(mut self, inbound: InboundBaggage) -> Self {
            self.propagator = self.propagator.with_inbound_baggage(inbound);
            self
        }
    }

    impl<S> tower::Layer<S> for ExtractContextLayer {
        type Service = ExtractContextService<S>;

        fn layer(&self, inner: S) -> Self::Service {
            ExtractContextService { inner, propagator: self.propagator.clone() }
        }
    }

    /// The service made by [`ExtractContextLayer`].
    #[derive(Debug, Clone)]
    pub struct ExtractContextService<S> {
        inner: S,
        propagator: W3CPropagator,
    }

    impl<S, B> tower::Service<http::Request<B>> for ExtractContextService<S>
    where
        S: tower::Service<http::Request<B>>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = WithContext<S::Future>;

        fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
            // The extracted context is the caller's, never the server task's leftover one.
            let cx = self.propagator.extract_with_context(&Context::new(), &HeaderExtractor(req.headers()));
            req.extensions_mut().insert(RemoteContext(cx.clone()));
            let _guard = cx.clone().attach();
            self.inner.call(req).with_context(cx)
        }
    }

    /// The caller's context as extracted by [`ExtractContextLayer`], stored in the request's
    /// extensions for handlers that want it explicitly (for example to link rather than parent).
    #[derive(Debug, Clone)]
    pub struct RemoteContext(pub Context);
}

#[cfg(feature = "tower")]
pub use self::tower_layer::RemoteContext;

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    #[test]
    fn duplicate_traceparent_restarts_and_tracestate_lines_combine() {
        let mut headers = HeaderMap::new();
        headers
            .append("traceparent", HeaderValue::from_static("00-12345678901234567890123456789011-1234567890123456-01"));
        headers
            .append("traceparent", HeaderValue::from_static("00-12345678901234567890123456789012-1234567890123456-01"));
        assert!(!headers.extract_context().span().span_context().is_valid());

        let mut headers = HeaderMap::new();
        headers
            .append("TraceParent", HeaderValue::from_static("00-12345678901234567890123456789012-1234567890123456-01"));
        headers.append("tracestate", HeaderValue::from_static("foo=1,bar=2"));
        headers.append("tracestate", HeaderValue::from_static("baz=3"));
        let cx = headers.extract_context();
        let mut out = HeaderMap::new();
        out.inject_context(&cx);
        assert_eq!(out["tracestate"], "foo=1,bar=2,baz=3");
        assert_eq!(out["traceparent"], "00-12345678901234567890123456789012-1234567890123456-01");
    }

    #[test]
    fn non_ascii_header_values_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_bytes(b"00-\xff").unwrap());
        assert!(!headers.extract_context().span().span_context().is_valid());
    }
}
