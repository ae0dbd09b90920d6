//! Baggage set once at the edge, copied onto every span: the [`BaggageSpanProcessor`].
//!
//! OpenTelemetry Go, Python, JS and .NET ship such a processor; Rust does not. It reads the
//! baggage of the context a span starts in and sets allow-listed entries as span attributes, so
//! `session.id` or `user.id` appears on every span of a request without each call site adding it.
//! Limits keep a hostile or careless caller from bloating every span: entry count and value length.
//!
//! Add it before the exporting processor: `on_start` runs in registration order.
//!
//! ```
//! use agentrace::baggage::BaggageSpanProcessor;
//! use opentelemetry::baggage::BaggageExt;
//! use opentelemetry::{Context, KeyValue};
//!
//! // Only the allow-listed keys become span attributes; a caller's others stay baggage.
//! let processor = BaggageSpanProcessor::allow(["session.id"]);
//! let cx = Context::new().with_baggage([KeyValue::new("session.id", "s-42"), KeyValue::new("user.email", "a@b.c")]);
//! assert_eq!(processor.attributes(&cx), [KeyValue::new("session.id", "s-42")]);
//! // Installed with `SdkTracerProvider::builder().with_span_processor(processor)`.
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::baggage::{BaggageExt, KeyValueMetadata};
use opentelemetry::trace::Span as _;
use opentelemetry::{Context, Key, KeyValue, StringValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

/// Default most entries copied onto one span.
pub const DEFAULT_MAX_ENTRIES: usize = 16;
/// Default longest value copied (in bytes; longer values are cut at a character boundary).
pub const DEFAULT_MAX_VALUE_LEN: usize = 256;

#[derive(Debug, Clone)]
enum KeyFilter {
    All,
    // Keys are stored as `Key`s so that the attribute reuses them (static or shared) instead of
    // cloning the baggage's own key, each beside its fingerprint.
    Exact(Arc<[(Fingerprint, Key)]>),
    Prefixes(Arc<[String]>),
}

/// A key's length and its first and last eight bytes: equal fingerprints of keys up to 16 bytes
/// are equal keys, so matching the usual allow-list against a span's baggage compares words in
/// registers instead of calling `memcmp` per candidate (measured in the `propagation` bench).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: usize,
    head: u64,
    tail: u64,
}

impl Fingerprint {
    #[inline(always)]
    fn of(key: &str) -> Self {
        let b = key.as_bytes();
        let len = b.len();
        let word = |s: &[u8]| {
            let mut w = [0u8; 8];
            w[..s.len()].copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        if len >= 8 {
            Fingerprint { len, head: word(&b[..8]), tail: word(&b[len - 8..]) }
        } else {
            let w = word(b);
            Fingerprint { len, head: w, tail: w }
        }
    }

    /// Whether the fingerprint covers every byte of the key.
    #[inline(always)]
    fn exact(&self) -> bool {
        self.len <= 16
    }
}

/// Copies allow-listed baggage entries onto every span as attributes.
#[derive(Debug, Clone)]
pub struct BaggageSpanProcessor {
    filter: KeyFilter,
    max_entries: usize,
    max_value_len: usize,
}

impl BaggageSpanProcessor {
    /// Copies exactly these keys (the recommended setting).
    pub fn allow<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Cow<'static, str>>,
    {
        // A static key is copied onto each span for free, an owned one is shared (a counter
        // increment): never a per-span allocation.
        let keys: Vec<(Fingerprint, Key)> = keys
            .into_iter()
            .map(|k| match k.into() {
                Cow::Borrowed(k) => Key::from_static_str(k),
                Cow::Owned(k) => Key::from(Arc::<str>::from(k)),
            })
            .map(|k| (Fingerprint::of(k.as_str()), k))
            .collect();
        Self::with_filter(KeyFilter::Exact(keys.into()))
    }

    /// Copies keys that start with one of these prefixes (for example `app.`).
    pub fn allow_prefixes<I, S>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_filter(KeyFilter::Prefixes(prefixes.into_iter().map(Into::into).collect()))
    }

    /// Copies every key. Only inside a trust boundary that drops inbound baggage.
    pub fn allow_all() -> Self {
        Self::with_filter(KeyFilter::All)
    }

    fn with_filter(filter: KeyFilter) -> Self {
        BaggageSpanProcessor { filter, max_entries: DEFAULT_MAX_ENTRIES, max_value_len: DEFAULT_MAX_VALUE_LEN }
    }

    /// Sets the most entries copied onto one span.
    pub fn with_max_entries(mut self, max: usize) -> Self {
        self.max_entries = max;
        self
    }

    /// Sets the longest value copied, in bytes.
    pub fn with_max_value_len(mut self, max: usize) -> Self {
        self.max_value_len = max;
        self
    }

    #[inline(always)]
    fn clip(&self, value: &StringValue) -> StringValue {
        let s = value.as_str();
        if s.len() <= self.max_value_len {
            return value.clone();
        }
        Self::cut(s, self.max_value_len)
    }

    #[cold]
    fn cut(s: &str, max_value_len: usize) -> StringValue {
        let mut end = max_value_len;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        StringValue::from(s[..end].to_owned())
    }

    /// The attributes this processor would add for `cx`.
    pub fn attributes(&self, cx: &Context) -> Vec<KeyValue> {
        let mut out = Vec::new();
        self.visit(cx, |kv| out.push(kv));
        out
    }

    #[inline(always)]
    fn visit(&self, cx: &Context, mut emit: impl FnMut(KeyValue)) {
        let bag = cx.baggage();
        if bag.is_empty() || self.max_entries == 0 {
            return;
        }
        let mut n = 0;
        for (key, (value, _)) in bag.iter() {
            let key = match &self.filter {
                KeyFilter::All => key.clone(),
                KeyFilter::Exact(keys) => {
                    let (key, print) = (key.as_str(), Fingerprint::of(key.as_str()));
                    match keys.iter().find(|(p, k)| *p == print && (print.exact() || k.as_str() == key)) {
                        Some((_, k)) => k.clone(),
                        None => continue,
                    }
                }
                KeyFilter::Prefixes(prefixes) => {
                    if !prefixes.iter().any(|p| key.as_str().starts_with(p.as_str())) {
                        continue;
                    }
                    key.clone()
                }
            };
            emit(KeyValue::new(key, self.clip(value)));
            n += 1;
            if n == self.max_entries {
                break;
            }
        }
    }
}

impl SpanProcessor for BaggageSpanProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.visit(cx, |kv| span.set_attribute(kv));
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The baggage entries of `cx`, to build a modified copy (`Baggage` itself is not `Clone`).
pub fn entries(cx: &Context) -> Vec<KeyValueMetadata> {
    cx.baggage().iter().map(|(k, (v, m))| KeyValueMetadata::new(k.clone(), v.clone(), m.clone())).collect()
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Tracer, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    use super::*;

    #[test]
    fn allow_listed_entries_land_on_every_span_within_limits() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BaggageSpanProcessor::allow(["session.id", "user.id", "long"]).with_max_value_len(4))
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("t");
        let cx = Context::new().with_baggage([
            KeyValue::new("session.id", "s1"),
            KeyValue::new("secret", "x"),
            KeyValue::new("long", "héllo"),
        ]);
        let _guard = cx.attach();
        tracer.in_span("outer", |_| tracer.in_span("inner", |_| {}));
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 2);
        for span in spans {
            let get = |k: &str| span.attributes.iter().find(|kv| kv.key.as_str() == k).map(|kv| kv.value.to_string());
            assert_eq!(get("session.id").as_deref(), Some("s1"));
            assert_eq!(get("secret"), None);
            // "hé" is 3 bytes, "hél" 4: cut on a character boundary.
            assert_eq!(get("long").as_deref(), Some("hél"));
        }
    }

    #[test]
    fn prefixes_and_entry_cap() {
        let cx = Context::new().with_baggage([
            KeyValue::new("app.a", "1"),
            KeyValue::new("app.b", "2"),
            KeyValue::new("other", "3"),
        ]);
        let attrs = BaggageSpanProcessor::allow_prefixes(["app."]).attributes(&cx);
        assert_eq!(attrs.len(), 2);
        assert_eq!(BaggageSpanProcessor::allow_all().with_max_entries(1).attributes(&cx).len(), 1);
    }

    // Keys are matched by length and first and last eight bytes, then in full when longer than
    // 16: a key differing only in its middle, or in one byte of a short key, is not allowed.
    #[test]
    fn only_exact_keys_match_however_alike() {
        let allowed = ["user.id", "session.id", "tenant.region.primary.name", "a"];
        let cx = Context::new().with_baggage([
            KeyValue::new("user.ie", "1"),
            KeyValue::new("user.id", "2"),
            // Same length, first and last eight bytes: only the full compare tells them apart.
            KeyValue::new("tenant.rXXXXX.primary.name", "3"),
            KeyValue::new("tenant.region.primary.name", "4"),
            KeyValue::new("session.idx", "5"),
            KeyValue::new("b", "6"),
            KeyValue::new("a", "7"),
        ]);
        let mut got: Vec<String> = BaggageSpanProcessor::allow(allowed)
            .attributes(&cx)
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        got.sort();
        assert_eq!(got, ["a=7", "tenant.region.primary.name=4", "user.id=2"]);
    }

    // Up to 16 bytes the fingerprint alone decides: a change of any one byte, at any position of
    // a key of any length, changes it, and keys of different lengths never share one.
    #[test]
    fn fingerprints_of_short_keys_are_the_keys() {
        for len in 0..=16usize {
            let key: Vec<u8> = (0..len).map(|i| b'a' + i as u8).collect();
            let print = Fingerprint::of(std::str::from_utf8(&key).unwrap());
            assert!(print.exact());
            assert_eq!(print, Fingerprint::of(std::str::from_utf8(&key).unwrap()));
            for at in 0..len {
                let mut other = key.clone();
                other[at] = b'Z';
                assert_ne!(print, Fingerprint::of(std::str::from_utf8(&other).unwrap()), "len {len}, byte {at}");
            }
            let shorter = std::str::from_utf8(&key[..len.saturating_sub(1)]).unwrap();
            if len > 0 {
                assert_ne!(print, Fingerprint::of(shorter));
            }
        }
    }
}
