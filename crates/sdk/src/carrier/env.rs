//! Environment variables of a spawned subprocess: `TRACEPARENT`, `TRACESTATE`, `BAGGAGE`, as the
//! OpenTelemetry specification ("Environment Variables as Context Propagation Carriers") defines.
//!
//! The parent calls [`CommandExt::with_trace_context`] on its `Command`; the child calls
//! [`extract_from_env`] once at start-up. An MCP server started over stdio is the typical child.
//!
//! ```
//! use agentrace::carrier::env::{CommandExt, EnvCarrier};
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use opentelemetry::Context;
//!
//! let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
//! let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
//! let sent = Context::new().with_remote_span_context(SpanContext::new(
//!     trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default(),
//! ));
//!
//! // The parent sets TRACEPARENT (and TRACESTATE, BAGGAGE) on the child's command…
//! let mut child = std::process::Command::new("worker");
//! child.with_trace_context(&sent);
//! let env: Vec<(String, String)> = child
//!     .get_envs()
//!     .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
//!     .collect();
//! // …and the child reads it with `extract_from_env()`; here, from the same variables.
//! let carried = EnvCarrier::from_lookup(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
//! let received = agentrace::propagation::extract_context(&carried);
//! assert_eq!(received.span().span_context().trace_id(), trace_id);
//! ```

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};

use crate::propagation;

/// Environment variable names, in carrier-key order (`traceparent`, `tracestate`, `baggage`).
pub const ENV_VARS: [&str; 3] = ["TRACEPARENT", "TRACESTATE", "BAGGAGE"];

fn env_name(key: &str) -> Option<&'static str> {
    match key {
        propagation::TRACEPARENT => Some(ENV_VARS[0]),
        propagation::TRACESTATE => Some(ENV_VARS[1]),
        propagation::BAGGAGE => Some(ENV_VARS[2]),
        _ => None,
    }
}

/// A snapshot of the three variables, usable as an [`Extractor`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvCarrier {
    values: [Option<String>; 3],
}

impl EnvCarrier {
    /// Reads the variables of this process (values that are not valid Unicode are ignored).
    pub fn from_process_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`, for tests and for environments held in a map.
    pub fn from_lookup(mut lookup: impl FnMut(&str) -> Option<String>) -> Self {
        EnvCarrier { values: ENV_VARS.map(&mut lookup) }
    }

    /// The variables to set, as `(NAME, value)` pairs.
    pub fn vars(&self) -> impl Iterator<Item = (&'static str, &str)> {
        ENV_VARS.iter().zip(&self.values).filter_map(|(n, v)| v.as_deref().map(|v| (*n, v)))
    }
}

impl Injector for EnvCarrier {
    fn set(&mut self, key: &str, value: String) {
        if let Some(i) = env_name(key).and_then(|n| ENV_VARS.iter().position(|v| *v == n)) {
            self.values[i] = Some(value);
        }
    }
}

impl Extractor for EnvCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        let i = ENV_VARS.iter().position(|v| Some(*v) == env_name(key))?;
        self.values[i].as_deref()
    }

    fn keys(&self) -> Vec<&str> {
        vec![propagation::TRACEPARENT, propagation::TRACESTATE, propagation::BAGGAGE]
    }
}

/// The context this process was started in (from its own `TRACEPARENT`, `TRACESTATE`, `BAGGAGE`),
/// on top of the current context.
pub fn extract_from_env() -> Context {
    propagation::extract_context(&EnvCarrier::from_process_env())
}

/// Adds the trace context to a command's environment.
pub trait CommandExt {
    /// Sets `TRACEPARENT`, `TRACESTATE`, `BAGGAGE` from `cx`, and removes inherited ones that `cx`
    /// does not set, so the child never sees this process's own (older) parent.
    fn with_trace_context(&mut self, cx: &Context) -> &mut Self;

    /// [`CommandExt::with_trace_context`] with the current context.
    fn with_current_trace_context(&mut self) -> &mut Self {
        let cx = Context::current();
        self.with_trace_context(&cx)
    }
}

fn carrier_for(cx: &Context) -> EnvCarrier {
    let mut carrier = EnvCarrier::default();
    propagation::inject_context(cx, &mut carrier);
    carrier
}

/// Something whose environment can be edited: both `Command` types, which share the shape of
/// `env`/`env_remove` but no trait.
pub trait EnvTarget {
    /// Sets one variable.
    fn set_var(&mut self, name: &str, value: &str);
    /// Removes one variable (also an inherited one).
    fn remove_var(&mut self, name: &str);
}

impl EnvTarget for std::process::Command {
    fn set_var(&mut self, name: &str, value: &str) {
        self.env(name, value);
    }
    fn remove_var(&mut self, name: &str) {
        self.env_remove(name);
    }
}

#[cfg(feature = "tokio")]
impl EnvTarget for tokio::process::Command {
    fn set_var(&mut self, name: &str, value: &str) {
        self.env(name, value);
    }
    fn remove_var(&mut self, name: &str) {
        self.env_remove(name);
    }
}

impl<T: EnvTarget> CommandExt for T {
    fn with_trace_context(&mut self, cx: &Context) -> &mut Self {
        let carrier = carrier_for(cx);
        for (name, value) in ENV_VARS.iter().zip(&carrier.values) {
            match value {
                Some(v) => self.set_var(name, v),
                None => self.remove_var(name),
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

    use super::*;

    #[test]
    fn child_process_sees_the_parent_context() {
        let sc = SpanContext::new(
            TraceId::from(0x42u128),
            SpanId::from(0x7u64),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        let cx = Context::new().with_remote_span_context(sc).with_baggage([KeyValue::new("session.id", "s1")]);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("echo \"$TRACEPARENT|$TRACESTATE|$BAGGAGE\"")
            .env("TRACESTATE", "stale=1")
            .with_trace_context(&cx)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.trim(), "00-00000000000000000000000000000042-0000000000000007-01||session.id=s1");
    }

    #[test]
    fn lookup_extracts_context() {
        let carrier = EnvCarrier::from_lookup(|n| match n {
            "TRACEPARENT" => Some("00-12345678901234567890123456789012-1234567890123456-01".into()),
            "BAGGAGE" => Some("k=v".into()),
            _ => None,
        });
        let cx = propagation::extract_context(&carrier);
        assert!(cx.span().span_context().is_remote());
        assert_eq!(cx.baggage().get("k").unwrap().as_str(), "v");
        assert_eq!(carrier.vars().count(), 2);
    }
}
