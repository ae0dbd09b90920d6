//! Strict W3C propagators that plug into OpenTelemetry's `TextMapPropagator` machinery.
//!
//! [`W3CPropagator`] handles `traceparent`, `tracestate` and `baggage` in one pass and is what
//! every carrier in this crate uses by default; [`TraceContextPropagator`] and
//! [`BaggagePropagator`] are the two halves, for users who compose their own propagator list.
//! Install one globally with [`install_global_propagator`] so that other instrumentation (for
//! example `tracing-opentelemetry`, or HTTP clients that call the global propagator) is strict too.
//!
//! A trust boundary is a propagator setting: [`InboundBaggage::Drop`] or
//! [`InboundBaggage::AllowList`] on the service that receives traffic from outside, so a caller
//! cannot plant `user.id=admin` into every span and every downstream call.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock, RwLock};

use opentelemetry::Context;
use opentelemetry::baggage::{Baggage, BaggageExt, BaggageMetadata};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TraceId, TraceState};

use crate::w3c::{baggage, traceparent, tracestate};

/// Header (and carrier key) of the trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// Header (and carrier key) of the vendor trace state.
pub const TRACESTATE: &str = "tracestate";
/// Header (and carrier key) of the W3C baggage.
pub const BAGGAGE: &str = "baggage";

fn all_fields() -> &'static [String] {
    static FIELDS: OnceLock<[String; 3]> = OnceLock::new();
    FIELDS.get_or_init(|| [TRACEPARENT.to_owned(), TRACESTATE.to_owned(), BAGGAGE.to_owned()])
}

/// What to do with baggage that arrives from a caller.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum InboundBaggage {
    /// Keep every valid entry (inside a trusted system).
    #[default]
    Accept,
    /// Ignore the caller's baggage entirely: the edge of the system, facing the internet.
    Drop,
    /// Keep only these keys (for example `session.id` from a trusted gateway).
    AllowList(Arc<[String]>),
}

impl InboundBaggage {
    /// An allow-list policy from any list of keys.
    pub fn allow<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        InboundBaggage::AllowList(keys.into_iter().map(Into::into).collect())
    }

    fn admits(&self, key: &str) -> bool {
        match self {
            InboundBaggage::Accept => true,
            InboundBaggage::Drop => false,
            InboundBaggage::AllowList(keys) => keys.iter().any(|k| k == key),
        }
    }
}

/// What the SDK's span context cannot hold about an inbound trace, stored beside it in the
/// [`Context`] and injected again for spans of the same trace:
/// - a tracestate that W3C Level 2 allows but `opentelemetry`'s `TraceState` type rejects (keys
///   such as `foo@@bar`, or a vendor part longer than 14 characters);
/// - the Level 2 `random` trace flag, which the SDK drops when it starts a child span.
#[derive(Debug, Clone)]
struct PassThroughTraceState {
    trace_id: TraceId,
    header: Option<Arc<str>>,
    random: bool,
}

/// Trace flag (Level 2): the trace id's right 7 bytes are random.
const RANDOM_FLAG: u8 = 0x02;

/// Strict `traceparent` + `tracestate` propagator (W3C Trace Context).
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextPropagator;

/// Strict `baggage` propagator (W3C Baggage), with an inbound trust policy.
#[derive(Debug, Clone, Default)]
pub struct BaggagePropagator {
    inbound: InboundBaggage,
}

impl BaggagePropagator {
    /// A propagator that accepts all valid inbound baggage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what to do with inbound baggage.
    pub fn with_inbound(mut self, inbound: InboundBaggage) -> Self {
        self.inbound = inbound;
        self
    }
}

/// Trace context and baggage in one propagator; the default for every carrier in this crate.
#[derive(Debug, Clone, Default)]
pub struct W3CPropagator {
    baggage: BaggagePropagator,
}

impl W3CPropagator {
    /// Strict trace context, accepting all valid inbound baggage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what to do with inbound baggage (a trust boundary).
    pub fn with_inbound_baggage(mut self, inbound: InboundBaggage) -> Self {
        self.baggage.inbound = inbound;
        self
    }
}

/// The propagator installed with [`install_global_propagator`], which every carrier and helper of
/// this crate uses (its inbound baggage policy included).
static INSTALLED: RwLock<Option<W3CPropagator>> = RwLock::new(None);

/// Installs [`W3CPropagator`] as OpenTelemetry's global text-map propagator, and as the one every
/// carrier of this crate (`HeaderMap`, envelopes, MCP `_meta`, AMQP, NATS, Kafka, Redis, the
/// environment) and [`ExtractContextLayer::new`](crate::carrier::http) injects and extracts with:
/// an inbound baggage policy set here holds at every boundary.
pub fn install_global_propagator(propagator: W3CPropagator) {
    *INSTALLED.write().unwrap_or_else(|p| p.into_inner()) = Some(propagator.clone());
    opentelemetry::global::set_text_map_propagator(propagator);
}

/// Runs `f` with the installed propagator, or the default strict one when none was installed.
fn with_propagator<T>(f: impl FnOnce(&W3CPropagator) -> T) -> T {
    static DEFAULT: OnceLock<W3CPropagator> = OnceLock::new();
    let installed = INSTALLED.read().unwrap_or_else(|p| p.into_inner());
    f(installed.as_ref().unwrap_or_else(|| DEFAULT.get_or_init(W3CPropagator::default)))
}

/// The propagator the carriers use: the installed one (see [`install_global_propagator`]), else
/// the default strict [`W3CPropagator`].
pub fn installed_propagator() -> W3CPropagator {
    with_propagator(W3CPropagator::clone)
}

/// Injects `cx` into `carrier` with the installed [`W3CPropagator`] (the default when none is).
pub fn inject_context(cx: &Context, carrier: &mut dyn Injector) {
    with_propagator(|p| p.inject_context(cx, carrier));
}

/// Extracts a context from `carrier` onto the current context with the installed
/// [`W3CPropagator`] (the default when none is). An invalid or missing traceparent leaves the
/// current context's span as the parent, so new spans start a new trace when there is none.
pub fn extract_context(carrier: &dyn Extractor) -> Context {
    Context::map_current(|cx| with_propagator(|p| p.extract_with_context(cx, carrier)))
}

fn inject_trace(cx: &Context, injector: &mut dyn Injector) {
    let span = cx.span();
    let sc = span.span_context();
    let inbound = cx.get::<PassThroughTraceState>().filter(|p| p.trace_id == sc.trace_id());
    let extra_flags = if inbound.is_some_and(|p| p.random) { RANDOM_FLAG } else { 0 };
    let Some(tp) = traceparent::format_with_flags(sc, extra_flags) else { return };
    injector.set(TRACEPARENT, tp);
    let ts = sc.trace_state();
    if ts.into_iter().len() > 0 {
        // Exact size: see `inject_baggage`.
        let size = ts.into_iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() - 1;
        let mut header = String::with_capacity(size);
        tracestate::format_into(ts, &mut header);
        injector.set(TRACESTATE, header);
    } else if let Some(PassThroughTraceState { header: Some(header), .. }) = inbound {
        injector.set(TRACESTATE, header.to_string());
    }
}

fn extract_trace(cx: &Context, extractor: &dyn Extractor) -> Context {
    let traceparents = extractor.get_all(TRACEPARENT).unwrap_or_default();
    let tracestates = extractor.get_all(TRACESTATE).unwrap_or_default();
    extract_trace_fields(cx, &traceparents, tracestates)
}

// The carrier-independent core: carriers that hold their fields directly (the envelope, a
// `HeaderMap`) call it without building the `Vec`s that `Extractor::get_all` returns.
fn extract_trace_fields<'a>(
    cx: &Context,
    traceparents: &[&str],
    tracestates: impl IntoIterator<Item = &'a str>,
) -> Context {
    // Two traceparent values mean two parents: W3C says to restart the trace.
    let parsed = match traceparents {
        [one] => traceparent::parse(one).ok(),
        _ => None,
    };
    let Some(tp) = parsed else { return cx.clone() };
    let members = tracestate::parse(tracestates).unwrap_or_default();
    let (trace_state, pass_through) = if members.is_empty() {
        (TraceState::NONE, None)
    } else {
        match TraceState::from_key_value(members.iter().copied()) {
            Ok(ts) => (ts, None),
            Err(_) => (TraceState::NONE, Some(Arc::from(tracestate::format(members.iter().copied())))),
        }
    };
    let trace_id = tp.trace_id;
    let random = tp.flags.to_u8() & RANDOM_FLAG != 0;
    let cx = cx.with_remote_span_context(tp.to_span_context(trace_state));
    // Only pay for a context value when there is something to carry, or a stale one to replace.
    if pass_through.is_some() || random || cx.get::<PassThroughTraceState>().is_some() {
        cx.with_value(PassThroughTraceState { trace_id, header: pass_through, random })
    } else {
        cx
    }
}

fn inject_baggage(cx: &Context, injector: &mut dyn Injector) {
    let bag = cx.baggage();
    if bag.is_empty() {
        return;
    }
    let members = || bag.iter().map(|(k, (v, meta))| (k.as_str(), v.as_str(), meta.as_str()));
    // Exactly the size of the header when every member is written (the usual case), so that an
    // HTTP header value takes the buffer over instead of allocating beside it.
    let size: usize = members()
        .map(|(k, v, meta)| k.len() + 1 + baggage::encoded_len(v) + if meta.is_empty() { 0 } else { 1 + meta.len() })
        .sum::<usize>()
        + bag.len()
        - 1;
    let mut header = String::with_capacity(size.min(baggage::MAX_BYTES));
    baggage::format_into(members(), &mut header);
    if !header.is_empty() {
        injector.set(BAGGAGE, header);
    }
}

fn extract_baggage(cx: &Context, extractor: &dyn Extractor, inbound: &InboundBaggage) -> Context {
    if matches!(inbound, InboundBaggage::Drop) {
        return cx.clone();
    }
    match extractor.get_all(BAGGAGE) {
        Some(lines) => extract_baggage_fields(cx, lines, inbound),
        None => cx.clone(),
    }
}

fn extract_baggage_fields<'a>(
    cx: &Context,
    lines: impl IntoIterator<Item = &'a str>,
    inbound: &InboundBaggage,
) -> Context {
    if matches!(inbound, InboundBaggage::Drop) {
        return cx.clone();
    }
    let mut bag = Baggage::new();
    baggage::for_each_member(lines, |m| {
        if inbound.admits(m.key) {
            // Shared strings: the baggage span processor clones keys and values onto every span,
            // and an `Arc` clone is a counter increment where a `String` clone is an allocation.
            let value = opentelemetry::StringValue::from(Arc::<str>::from(m.value.as_ref()));
            bag.insert_with_metadata(shared_key(m.key), value, BaggageMetadata::from(m.properties));
        }
    });
    if bag.is_empty() { cx.clone() } else { cx.with_baggage(bag) }
}

/// The baggage key `key` as a shared string, reusing one this thread made recently.
///
/// A service sees the same few keys (`session.id`, `user.id`, …) on every request, so each
/// extraction would otherwise allocate, and each dropped context free, the same strings again.
/// The cache is small, per thread (no lock) and bounded in size and key length, so keys a caller
/// invents only cost the allocation they always cost.
fn shared_key(key: &str) -> opentelemetry::Key {
    const SLOTS: usize = 32;
    const LONGEST: usize = 64;
    thread_local! {
        static RECENT: RefCell<(Vec<opentelemetry::Key>, usize)> = const { RefCell::new((Vec::new(), 0)) };
    }
    let make = || opentelemetry::Key::from(Arc::<str>::from(key));
    if key.len() > LONGEST {
        return make();
    }
    RECENT
        .try_with(|recent| {
            let Ok(mut recent) = recent.try_borrow_mut() else { return make() };
            let (keys, next) = &mut *recent;
            if let Some(k) = keys.iter().find(|k| k.as_str() == key) {
                return k.clone();
            }
            let k = make();
            if keys.len() < SLOTS {
                keys.push(k.clone());
            } else {
                keys[*next] = k.clone();
                *next = (*next + 1) % SLOTS;
            }
            k
        })
        .unwrap_or_else(|_| make())
}

impl W3CPropagator {
    /// Extracts from the three W3C fields given directly, each as the list of values the carrier
    /// holds for it (HTTP may repeat a header). This is what [`TextMapPropagator::extract_with_context`]
    /// does after reading the fields, for carriers that can hand them over without an
    /// [`Extractor`].
    pub fn extract_fields<'a, S, B>(&self, cx: &Context, traceparents: &[&str], tracestates: S, baggages: B) -> Context
    where
        S: IntoIterator<Item = &'a str>,
        B: IntoIterator<Item = &'a str>,
    {
        let cx = extract_trace_fields(cx, traceparents, tracestates);
        extract_baggage_fields(&cx, baggages, &self.baggage.inbound)
    }
}

/// [`W3CPropagator::extract_fields`] with the installed propagator, on top of the current context.
pub fn extract_fields<'a, S, B>(traceparents: &[&str], tracestates: S, baggages: B) -> Context
where
    S: IntoIterator<Item = &'a str>,
    B: IntoIterator<Item = &'a str>,
{
    Context::map_current(|cx| with_propagator(|p| p.extract_fields(cx, traceparents, tracestates, baggages)))
}

impl TextMapPropagator for TraceContextPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        inject_trace(cx, injector);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        extract_trace(cx, extractor)
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&all_fields()[..2])
    }
}

impl TextMapPropagator for BaggagePropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        inject_baggage(cx, injector);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        extract_baggage(cx, extractor, &self.inbound)
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&all_fields()[2..])
    }
}

impl TextMapPropagator for W3CPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        inject_trace(cx, injector);
        inject_baggage(cx, injector);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let cx = extract_trace(cx, extractor);
        extract_baggage(&cx, extractor, &self.baggage.inbound)
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(all_fields())
    }
}

/// Applies an inbound-baggage policy to a context that some other code already extracted (for
/// example a framework's own middleware): the trust boundary, after the fact.
pub fn apply_trust_boundary(cx: &Context, inbound: &InboundBaggage) -> Context {
    match inbound {
        InboundBaggage::Accept => cx.clone(),
        InboundBaggage::Drop => cx.with_cleared_baggage(),
        InboundBaggage::AllowList(_) => {
            let kept: Baggage = cx
                .baggage()
                .iter()
                .filter(|(k, _)| inbound.admits(k.as_str()))
                .map(|(k, (v, m))| opentelemetry::baggage::KeyValueMetadata::new(k.clone(), v.clone(), m.clone()))
                .collect();
            cx.with_baggage(kept)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags};

    use super::*;

    fn carrier(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";

    #[test]
    fn extract_then_inject_preserves_everything() {
        let input = carrier(&[(TRACEPARENT, TP), (TRACESTATE, "foo=1,bar=2"), (BAGGAGE, "tok=abc==,user.id=u%201")]);
        let cx = W3CPropagator::new().extract_with_context(&Context::new(), &input);
        assert_eq!(cx.baggage().get("tok").map(|v| v.as_str()), Some("abc=="));
        assert_eq!(cx.baggage().get("user.id").map(|v| v.as_str()), Some("u 1"));
        let mut out = HashMap::new();
        W3CPropagator::new().inject_context(&cx, &mut out);
        assert_eq!(out[TRACEPARENT], TP);
        assert_eq!(out[TRACESTATE], "foo=1,bar=2");
        let back = W3CPropagator::new().extract_with_context(&Context::new(), &out);
        assert_eq!(back.baggage().get("tok").map(|v| v.as_str()), Some("abc=="));
    }

    #[test]
    fn invalid_traceparent_yields_no_remote_parent_and_drops_tracestate() {
        let input = carrier(&[(TRACEPARENT, "00-1234-1234567890123456-01"), (TRACESTATE, "foo=1")]);
        let cx = W3CPropagator::new().extract_with_context(&Context::new(), &input);
        assert!(!cx.span().span_context().is_valid());
        let mut out = HashMap::new();
        W3CPropagator::new().inject_context(&cx, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn level_two_tracestate_that_opentelemetry_rejects_is_passed_through() {
        let input = carrier(&[(TRACEPARENT, TP), (TRACESTATE, "foo@@bar=1,bar=2")]);
        let cx = W3CPropagator::new().extract_with_context(&Context::new(), &input);
        let mut out = HashMap::new();
        W3CPropagator::new().inject_context(&cx, &mut out);
        assert_eq!(out[TRACESTATE], "foo@@bar=1,bar=2");
        // A different trace in the same context must not inherit it.
        let other =
            SpanContext::new(TraceId::from(7u128), SpanId::from(9u64), TraceFlags::SAMPLED, true, TraceState::NONE);
        let cx2 = cx.with_remote_span_context(other);
        let mut out2 = HashMap::new();
        W3CPropagator::new().inject_context(&cx2, &mut out2);
        assert!(!out2.contains_key(TRACESTATE));
    }

    #[test]
    fn random_flag_survives_into_child_spans() {
        use opentelemetry::trace::{Tracer, TracerProvider as _};
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let tracer = provider.tracer("t");
        let input = carrier(&[(TRACEPARENT, "00-12345678901234567890123456789012-1234567890123456-03")]);
        let cx = W3CPropagator::new().extract_with_context(&Context::new(), &input);
        let child = cx.with_span(tracer.start_with_context("child", &cx));
        let mut out = HashMap::new();
        W3CPropagator::new().inject_context(&child, &mut out);
        assert!(out[TRACEPARENT].ends_with("-03"), "{}", out[TRACEPARENT]);
        assert!(!out[TRACEPARENT].contains("1234567890123456-"));
    }

    #[test]
    fn trust_boundary_drops_or_filters_inbound_baggage() {
        let input = carrier(&[(TRACEPARENT, TP), (BAGGAGE, "user.id=admin,session.id=s1")]);
        let dropped = W3CPropagator::new().with_inbound_baggage(InboundBaggage::Drop).extract(&input);
        assert!(dropped.baggage().is_empty());
        assert!(dropped.span().span_context().is_valid());
        let filtered = W3CPropagator::new().with_inbound_baggage(InboundBaggage::allow(["session.id"])).extract(&input);
        assert_eq!(filtered.baggage().len(), 1);
        assert!(filtered.baggage().get("session.id").is_some());

        let cx = Context::new().with_baggage([KeyValue::new("user.id", "x"), KeyValue::new("session.id", "s")]);
        let after = apply_trust_boundary(&cx, &InboundBaggage::allow(["user.id"]));
        assert_eq!(after.baggage().len(), 1);
        assert!(apply_trust_boundary(&cx, &InboundBaggage::Drop).baggage().is_empty());
    }

    #[test]
    fn fields_are_the_three_w3c_headers() {
        let propagator = W3CPropagator::new();
        let fields: Vec<_> = propagator.fields().collect();
        assert_eq!(fields, [TRACEPARENT, TRACESTATE, BAGGAGE]);
    }
}
