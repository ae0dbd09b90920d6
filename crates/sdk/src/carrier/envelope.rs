//! A JSON envelope that travels beside any payload: a queue message, a job-table row, a Redis
//! value. The hand-off that loses context most often is the one with no headers at all; this is
//! the field to put in such a payload.
//!
//! ```json
//! {"trace_context": {"traceparent": "00-…-01", "baggage": "session.id=s1"}, "payload": {…}}
//! ```
//!
//! Deserialisation is lenient on purpose: a `trace_context` or a field of the wrong JSON type is
//! read as absent instead of failing the whole message, because losing a trace is better than
//! losing the work item.
//!
//! ```
//! use agentrace::carrier::envelope::Traced;
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use opentelemetry::Context;
//!
//! let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
//! let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
//! let sent = Context::new().with_remote_span_context(SpanContext::new(
//!     trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default(),
//! ));
//!
//! let message = serde_json::to_string(&Traced::with_context("plan the trip", &sent)).unwrap();
//! let (received, payload): (Context, String) = serde_json::from_str::<Traced<String>>(&message).unwrap().into_parts();
//! assert_eq!(payload, "plan the trip");
//! assert_eq!(received.span().span_context().trace_id(), trace_id);
//! ```

use std::fmt;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::ContextCarrier;
use crate::propagation::{self, BAGGAGE, TRACEPARENT, TRACESTATE};

/// The W3C fields of a context, as strings, ready to serialise with any payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContextEnvelope {
    /// W3C `traceparent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// W3C `baggage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baggage: Option<String>,
}

impl ContextEnvelope {
    /// The envelope of `cx`.
    pub fn from_context(cx: &Context) -> Self {
        let mut envelope = Self::default();
        envelope.inject_context(cx);
        envelope
    }

    /// The envelope of the current context.
    pub fn current() -> Self {
        Context::map_current(Self::from_context)
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.traceparent.is_none() && self.tracestate.is_none() && self.baggage.is_none()
    }
}

impl Injector for ContextEnvelope {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value),
            BAGGAGE => self.baggage = Some(value),
            // The envelope has a fixed shape; fields of other propagators do not travel in it.
            _ => {}
        }
    }
}

impl Extractor for ContextEnvelope {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            TRACESTATE => self.tracestate.as_deref(),
            BAGGAGE => self.baggage.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        [(TRACEPARENT, &self.traceparent), (TRACESTATE, &self.tracestate), (BAGGAGE, &self.baggage)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|_| k))
            .collect()
    }
}

impl ContextCarrier for ContextEnvelope {
    fn inject_context(&mut self, cx: &Context) {
        *self = Self::default();
        propagation::inject_context(cx, self);
    }

    fn extract_context(&self) -> Context {
        propagation::extract_fields(
            self.traceparent.as_deref().as_slice(),
            self.tracestate.as_deref(),
            self.baggage.as_deref(),
        )
    }
}

/// A payload with its trace context beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traced<T> {
    /// The context of the sender at the moment it sent the payload.
    #[serde(default, skip_serializing_if = "ContextEnvelope::is_empty")]
    pub trace_context: ContextEnvelope,
    /// The message itself.
    pub payload: T,
}

impl<T> Traced<T> {
    /// Wraps `payload` with the current context.
    pub fn new(payload: T) -> Self {
        Traced { trace_context: ContextEnvelope::current(), payload }
    }

    /// Wraps `payload` with the given context.
    pub fn with_context(payload: T, cx: &Context) -> Self {
        Traced { trace_context: ContextEnvelope::from_context(cx), payload }
    }

    /// The sender's context (on top of the current one) and the payload.
    pub fn into_parts(self) -> (Context, T) {
        (self.trace_context.extract_context(), self.payload)
    }
}

// A string, or nothing: any other JSON type is skipped whole.
struct LenientString;

impl<'de> Visitor<'de> for LenientString {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

struct OptString(Option<String>);

impl<'de> Deserialize<'de> for OptString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientString).map(OptString)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = ContextEnvelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a trace context object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut env = ContextEnvelope::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                TRACEPARENT => &mut env.traceparent,
                TRACESTATE => &mut env.tracestate,
                BAGGAGE => &mut env.baggage,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<OptString>()?.0;
        }
        Ok(env)
    }
    // Anything but an object: no context, and the rest of the message still parses.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(ContextEnvelope::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ContextEnvelope::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(ContextEnvelope::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ContextEnvelope::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(ContextEnvelope::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ContextEnvelope::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ContextEnvelope::default())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(ContextEnvelope::default())
    }
}

impl<'de> Deserialize<'de> for ContextEnvelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EnvelopeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

    use super::*;

    fn remote_cx() -> Context {
        let sc = SpanContext::new(
            TraceId::from(0xabcu128),
            SpanId::from(0x12u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        );
        Context::new().with_remote_span_context(sc).with_baggage([KeyValue::new("session.id", "s=1")])
    }

    #[test]
    fn traced_payload_round_trips_through_json() {
        let msg = Traced::with_context(serde_json::json!({"task": "plan"}), &remote_cx());
        let text = serde_json::to_string(&msg).unwrap();
        let back: Traced<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let (cx, payload) = back.into_parts();
        assert_eq!(payload["task"], "plan");
        assert_eq!(cx.span().span_context().trace_id(), TraceId::from(0xabcu128));
        assert_eq!(cx.baggage().get("session.id").unwrap().as_str(), "s=1");
    }

    #[test]
    fn wrong_json_types_are_ignored_not_fatal() {
        for ctx in [r#"42"#, r#""x""#, r#"[1,2]"#, r#"null"#, r#"{"traceparent": 7, "baggage": {"a": 1}}"#] {
            let text = format!(r#"{{"trace_context": {ctx}, "payload": 5}}"#);
            let msg: Traced<u32> = serde_json::from_str(&text).unwrap();
            assert_eq!(msg.payload, 5);
            assert!(!msg.trace_context.extract_context().span().span_context().is_valid());
        }
        let missing: Traced<u32> = serde_json::from_str(r#"{"payload": 1}"#).unwrap();
        assert!(missing.trace_context.is_empty());
    }

    #[test]
    fn empty_context_serialises_to_nothing() {
        let msg = Traced::with_context(1, &Context::new());
        assert_eq!(serde_json::to_string(&msg).unwrap(), r#"{"payload":1}"#);
    }
}
