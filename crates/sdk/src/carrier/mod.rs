//! Carriers: where the trace context travels when it leaves the process.
//!
//! Each carrier offers the same two operations through [`ContextCarrier`]: write a context in
//! before the boundary, read it back on the other side. Reading never fails: a missing, malformed
//! or wrongly typed field is ignored (W3C: a new trace starts), it is never an error or a panic.
//!
//! Always available: [`envelope`] (JSON beside any payload), [`meta`] (MCP `params._meta`),
//! [`env`](mod@env) (`TRACEPARENT`/`TRACESTATE`/`BAGGAGE` of a subprocess). Behind features: `http`
//! (`HeaderMap`, reqwest, tower), `nats`, `amqp`, `redis` (stream fields), `kafka`.

use opentelemetry::Context;

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod env;
pub mod envelope;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod meta;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis")]
pub mod redis;

/// A type that can carry a trace context across a process boundary.
pub trait ContextCarrier {
    /// Writes `cx` (trace parent, trace state, baggage) into the carrier, replacing what was there.
    fn inject_context(&mut self, cx: &Context);

    /// Reads a context from the carrier, on top of the current context.
    fn extract_context(&self) -> Context;

    /// Writes the current context.
    fn inject_current(&mut self) {
        Context::map_current(|cx| self.inject_context(cx));
    }
}
