//! Model prices, for turning token counts into dollars.
//!
//! Used at the end of the road by the agent graph (`agents`).
//! Built-in defaults cover common OpenAI, Anthropic and Google models (list
//! prices per million tokens, as published in 2025–2026), with the price of
//! cached input (prompt-cache reads) where the provider lists one (OpenAI,
//! Anthropic; not Google, whose context caching also bills storage), and of
//! cache writes where the provider charges extra for them (Anthropic's
//! 5-minute cache writes at 1.25 times the input price; OpenAI caches
//! automatically at the input price). A
//! [`PriceTable`] holds overrides on top of them and deserialises from a
//! plain map, so the collector's YAML config can embed it:
//!
//! ```yaml
//! prices:
//!   gpt-4o: { input_per_million: 2.5, output_per_million: 10, cached_input_per_million: 1.25 }
//!   claude-sonnet-4-5: { input_per_million: 3, output_per_million: 15, cached_input_per_million: 0.3, cache_write_input_per_million: 3.75 }
//!   my-finetune: { input_per_million: 1, output_per_million: 4 }
//! ```
//!
//! Token counts follow the OpenTelemetry GenAI conventions: cached input
//! (`gen_ai.usage.cache_read.input_tokens`) and cache writes
//! (`gen_ai.usage.cache_creation.input_tokens`) are part of the input
//! count, reasoning (`gen_ai.usage.reasoning.output_tokens`) part of the
//! output count. So a call costs its other input at the input price, its
//! cached input at the cached price (the input price when none is known,
//! which the diagnosis reports), its cache writes at the cache-write price
//! (the input price when none is listed), and all of its output, reasoning
//! included, at the output price.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Price of one model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Dollars per million input (prompt) tokens.
    pub input_per_million: f64,
    /// Dollars per million output (completion) tokens, reasoning included.
    pub output_per_million: f64,
    /// Dollars per million cached input tokens (prompt-cache reads), when
    /// the provider lists a price for them; unknown means the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_million: Option<f64>,
    /// Dollars per million input tokens written to a prompt cache, when the
    /// provider charges them differently from input; unknown means the
    /// input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_input_per_million: Option<f64>,
}

impl ModelPrice {
    /// A price with no separate price for cached input.
    pub fn new(input_per_million: f64, output_per_million: f64) -> ModelPrice {
        ModelPrice {
            input_per_million,
            output_per_million,
            cached_input_per_million: None,
            cache_write_input_per_million: None,
        }
    }

    /// The same price with this price for cached input.
    pub fn with_cached_input(self, cached_input_per_million: f64) -> ModelPrice {
        ModelPrice { cached_input_per_million: Some(cached_input_per_million), ..self }
    }

    /// The same price with this price for cache writes.
    pub fn with_cache_write_input(self, cache_write_input_per_million: f64) -> ModelPrice {
        ModelPrice { cache_write_input_per_million: Some(cache_write_input_per_million), ..self }
    }

    /// What one call costs: `input` tokens of which `cached_input` were
    /// cache reads and `cache_write_input` cache writes (both counted
    /// inside `input`, as the conventions define, and together never more
    /// than it), and `output` tokens (reasoning inside them).
    pub fn cost(&self, input: u64, cached_input: u64, cache_write_input: u64, output: u64) -> Cost {
        let cached = cached_input.min(input);
        let written = cache_write_input.min(input - cached);
        let cached_rate = self.cached_input_per_million.unwrap_or(self.input_per_million);
        let write_rate = self.cache_write_input_per_million.unwrap_or(self.input_per_million);
        Cost {
            usd: (input - cached - written) as f64 * self.input_per_million / 1e6
                + cached as f64 * cached_rate / 1e6
                + written as f64 * write_rate / 1e6
                + output as f64 * self.output_per_million / 1e6,
            cached_at_input_price: cached > 0 && self.cached_input_per_million.is_none(),
        }
    }
}

/// The cost of a call, and how it was priced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// US dollars.
    pub usd: f64,
    /// Cached input tokens were recorded but the model has no cached-input
    /// price, so they cost the full input price (an upper bound).
    pub cached_at_input_price: bool,
}

/// Built-in prices: (model name or prefix, input, output, cached input)
/// per million tokens. Cached input: OpenAI's listed cached-input prices;
/// Anthropic's cache reads at a tenth of the input price; none for Google.
/// Cache writes: Anthropic's (`claude-` models) at 1.25 times the input
/// price, see [`cache_write_rate`]; everyone else's at the input price.
const DEFAULTS: &[(&str, f64, f64, Option<f64>)] = &[
    ("gpt-4o", 2.50, 10.00, Some(1.25)),
    ("gpt-4o-mini", 0.15, 0.60, Some(0.075)),
    ("gpt-4.1", 2.00, 8.00, Some(0.50)),
    ("gpt-4.1-mini", 0.40, 1.60, Some(0.10)),
    ("gpt-4.1-nano", 0.10, 0.40, Some(0.025)),
    ("gpt-4-turbo", 10.00, 30.00, None),
    ("gpt-3.5-turbo", 0.50, 1.50, None),
    ("gpt-5", 1.25, 10.00, Some(0.125)),
    ("gpt-5-mini", 0.25, 2.00, Some(0.025)),
    ("gpt-5-nano", 0.05, 0.40, Some(0.005)),
    ("o1", 15.00, 60.00, Some(7.50)),
    ("o3", 2.00, 8.00, Some(0.50)),
    ("o3-mini", 1.10, 4.40, Some(0.55)),
    ("o4-mini", 1.10, 4.40, Some(0.275)),
    ("text-embedding-3-small", 0.02, 0.0, None),
    ("text-embedding-3-large", 0.13, 0.0, None),
    ("claude-3-haiku", 0.25, 1.25, Some(0.03)),
    ("claude-3-5-haiku", 0.80, 4.00, Some(0.08)),
    ("claude-haiku-4-5", 1.00, 5.00, Some(0.10)),
    ("claude-3-5-sonnet", 3.00, 15.00, Some(0.30)),
    ("claude-3-7-sonnet", 3.00, 15.00, Some(0.30)),
    ("claude-sonnet-4", 3.00, 15.00, Some(0.30)),
    ("claude-sonnet-4-5", 3.00, 15.00, Some(0.30)),
    ("claude-3-opus", 15.00, 75.00, Some(1.50)),
    ("claude-opus-4", 15.00, 75.00, Some(1.50)),
    ("gemini-1.5-flash", 0.075, 0.30, None),
    ("gemini-1.5-pro", 1.25, 5.00, None),
    ("gemini-2.0-flash", 0.10, 0.40, None),
    ("gemini-2.5-flash", 0.30, 2.50, None),
    ("gemini-2.5-pro", 1.25, 10.00, None),
];

/// Prices by model name: overrides on top of the built-in defaults.
///
/// A model matches an entry exactly, or by the longest entry that is a
/// prefix of it followed by `-`, `@`, `:` or `.` (so a dated release such as
/// `gpt-4o-2024-08-06` costs what `gpt-4o` costs, while `gpt-4o-mini` keeps
/// its own price). Provider prefixes (`openai/`, `anthropic.`) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable {
    overrides: BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    /// The built-in defaults only.
    pub fn new() -> PriceTable {
        PriceTable::default()
    }

    /// Adds or replaces the price of a model (or prefix).
    pub fn with_price(mut self, model: &str, price: ModelPrice) -> PriceTable {
        self.overrides.insert(model.to_ascii_lowercase(), price);
        self
    }

    /// The price of a model, if known.
    pub fn lookup(&self, model: &str) -> Option<ModelPrice> {
        let lower = model.trim().to_ascii_lowercase();
        let name = strip_provider(&lower);
        // The most specific entry wins wherever it comes from; on a tie, the override.
        let over = best_match(name, self.overrides.iter().map(|(k, v)| (k.as_str(), *v)));
        let builtin = best_match(
            name,
            DEFAULTS.iter().map(|(k, i, o, c)| {
                let price = ModelPrice {
                    input_per_million: *i,
                    output_per_million: *o,
                    cached_input_per_million: *c,
                    cache_write_input_per_million: cache_write_rate(k, *i),
                };
                (*k, price)
            }),
        );
        match (over, builtin) {
            (Some((lo, po)), Some((lb, pb))) => Some(if lo >= lb { po } else { pb }),
            (o, b) => o.or(b).map(|(_, p)| p),
        }
    }

    /// Dollars for a call with no cached input, or `None` when the model
    /// has no price.
    pub fn cost(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Option<f64> {
        Some(self.lookup(model)?.cost(input_tokens, 0, 0, output_tokens).usd)
    }

    /// The cost of a call whose input held `cached_input_tokens` cache
    /// reads and `cache_write_input_tokens` cache writes (see
    /// [`ModelPrice::cost`]), or `None` when the model has no price.
    pub fn call_cost(
        &self,
        model: &str,
        input_tokens: u64,
        cached_input_tokens: u64,
        cache_write_input_tokens: u64,
        output_tokens: u64,
    ) -> Option<Cost> {
        Some(self.lookup(model)?.cost(input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens))
    }
}

/// Anthropic charges 5-minute prompt-cache writes at 1.25 times the input
/// price (its list prices, 2025–2026); the other built-in providers bill
/// cache writes as plain input.
fn cache_write_rate(model: &str, input_per_million: f64) -> Option<f64> {
    model.starts_with("claude-").then_some(input_per_million * 1.25)
}

fn strip_provider(name: &str) -> &str {
    let name = name.rsplit('/').next().unwrap_or(name);
    for vendor in ["anthropic.", "openai.", "google.", "us.anthropic.", "eu.anthropic."] {
        if let Some(rest) = name.strip_prefix(vendor) {
            return rest;
        }
    }
    name
}

fn best_match<'a>(name: &str, entries: impl Iterator<Item = (&'a str, ModelPrice)>) -> Option<(usize, ModelPrice)> {
    let mut best: Option<(usize, ModelPrice)> = None;
    for (key, price) in entries {
        let fits = name == key
            || (name.starts_with(key) && matches!(name.as_bytes().get(key.len()), Some(b'-' | b'@' | b':' | b'.')));
        if fits && best.is_none_or(|(len, _)| key.len() > len) {
            best = Some((key.len(), price));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_releases_and_providers_match_their_family_longest_first() {
        let t = PriceTable::new();
        assert_eq!(t.lookup("gpt-4o-2024-08-06").unwrap().input_per_million, 2.50);
        assert_eq!(t.lookup("gpt-4o-mini-2024-07-18").unwrap().input_per_million, 0.15);
        assert_eq!(t.lookup("anthropic.claude-3-5-sonnet-20240620-v1:0").unwrap().output_per_million, 15.0);
        assert_eq!(t.lookup("openai/gpt-4.1").unwrap().output_per_million, 8.0);
        assert!(t.lookup("gpt-4ox").is_none());
        assert!(t.lookup("my-model").is_none());
    }

    #[test]
    fn overrides_win_and_deserialise_from_a_map() {
        let t: PriceTable = serde_json::from_str(r#"{"gpt-4o": {"input_per_million": 1, "output_per_million": 2}}"#)
            .expect("valid table");
        assert_eq!(t.cost("gpt-4o", 1_000_000, 500_000), Some(2.0));
        assert_eq!(t.lookup("gpt-4o-mini").unwrap().input_per_million, 0.15, "defaults remain underneath");
        let bad = serde_json::from_str::<PriceTable>(r#"{"x": {"input": 1}}"#);
        assert!(bad.is_err(), "unknown fields are refused");
    }

    #[test]
    fn cached_input_is_priced_inside_the_input_count() {
        let t = PriceTable::new();
        // 1M input of which 800k cache reads, 100k output: 200k at 2.50,
        // 800k at 1.25, 100k at 10.
        let c = t.call_cost("gpt-4o-2024-08-06", 1_000_000, 800_000, 0, 100_000).expect("priced");
        assert!((c.usd - (0.5 + 1.0 + 1.0)).abs() < 1e-9, "{c:?}");
        assert!(!c.cached_at_input_price);
        // No cached tokens: the plain price, as before.
        assert_eq!(t.call_cost("gpt-4o", 1_000_000, 0, 0, 0).map(|c| c.usd), t.cost("gpt-4o", 1_000_000, 0));
        // Anthropic cache reads cost a tenth of the input.
        let c = t.call_cost("claude-sonnet-4-5", 1_000_000, 1_000_000, 0, 0).expect("priced");
        assert!((c.usd - 0.30).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn cache_writes_are_priced_inside_the_input_count() {
        let t = PriceTable::new();
        // Claude: 1M input of which 200k cache reads and 600k cache writes;
        // 200k at 3.00, 200k at 0.30, 600k at 3.75.
        let c = t.call_cost("claude-sonnet-4-5-20250929", 1_000_000, 200_000, 600_000, 0).expect("priced");
        assert!((c.usd - (0.6 + 0.06 + 2.25)).abs() < 1e-9, "{c:?}");
        // OpenAI bills cache writes as input: the same as no writes recorded.
        let written = t.call_cost("gpt-4o", 1_000_000, 0, 600_000, 0).expect("priced").usd;
        assert_eq!(Some(written), t.cost("gpt-4o", 1_000_000, 0));
        // Reads and writes together never exceed the input.
        let c = t.call_cost("claude-sonnet-4-5", 1_000, 800, 800, 0).expect("priced");
        assert!((c.usd - (800.0 * 0.30 + 200.0 * 3.75) / 1e6).abs() < 1e-12, "{c:?}");
        // An override may set its own cache-write price.
        let t: PriceTable = serde_json::from_str(
            r#"{"m": {"input_per_million": 1, "output_per_million": 2, "cache_write_input_per_million": 2}}"#,
        )
        .expect("valid table");
        assert_eq!(t.lookup("m"), Some(ModelPrice::new(1.0, 2.0).with_cache_write_input(2.0)));
        assert!((t.call_cost("m", 1_000_000, 0, 1_000_000, 0).expect("priced").usd - 2.0).abs() < 1e-9);
    }

    #[test]
    fn cached_input_without_a_cached_price_costs_the_input_price_and_says_so() {
        let t = PriceTable::new();
        let c = t.call_cost("gemini-2.5-pro", 1_000_000, 500_000, 0, 0).expect("priced");
        assert!((c.usd - 1.25).abs() < 1e-9, "{c:?}");
        assert!(c.cached_at_input_price);
        // Nothing cached: nothing to say.
        assert!(!t.call_cost("gemini-2.5-pro", 1_000_000, 0, 0, 0).expect("priced").cached_at_input_price);
    }

    #[test]
    fn more_cache_reads_than_input_are_capped_at_the_input() {
        // The conventions count cache reads inside the input; a recording
        // with more of them than input tokens is not charged beyond its input.
        let p = ModelPrice::new(2.0, 8.0).with_cached_input(0.5);
        let c = p.cost(1_000, 5_000, 0, 0);
        assert!((c.usd - 1_000.0 * 0.5 / 1e6).abs() < 1e-12, "{c:?}");
    }

    #[test]
    fn a_cached_price_is_an_optional_override_field() {
        let t: PriceTable = serde_json::from_str(
            r#"{"my-model": {"input_per_million": 1, "output_per_million": 2, "cached_input_per_million": 0.25}}"#,
        )
        .expect("valid table");
        assert_eq!(t.lookup("my-model"), Some(ModelPrice::new(1.0, 2.0).with_cached_input(0.25)));
        let plain: PriceTable =
            serde_json::from_str(r#"{"my-model": {"input_per_million": 1, "output_per_million": 2}}"#).expect("valid");
        assert_eq!(plain.lookup("my-model").and_then(|p| p.cached_input_per_million), None);
        assert_eq!(
            serde_json::to_string(&plain).expect("serialises"),
            r#"{"my-model":{"input_per_million":1.0,"output_per_million":2.0}}"#,
            "a table without cached prices serialises as before"
        );
    }
}
