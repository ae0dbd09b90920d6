//! Model prices, for turning token counts into dollars.
//!
//! Used at the end of the road by the agent graph ([`crate::agents`]).
//! Built-in defaults cover common OpenAI, Anthropic and Google models (list
//! prices per million tokens, as published in 2025–2026; cached-input
//! discounts are not modelled). A [`PriceTable`] holds overrides on top of
//! them and deserialises from a plain map, so the collector's YAML config
//! can embed it:
//!
//! ```yaml
//! prices:
//!   gpt-4o: { input_per_million: 2.5, output_per_million: 10 }
//!   my-finetune: { input_per_million: 1, output_per_million: 4 }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Price of one model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Dollars per million input (prompt) tokens.
    pub input_per_million: f64,
    /// Dollars per million output (completion) tokens.
    pub output_per_million: f64,
}

/// Built-in prices: (model name or prefix, input, output) per million tokens.
const DEFAULTS: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4-turbo", 10.00, 30.00),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("gpt-5", 1.25, 10.00),
    ("gpt-5-mini", 0.25, 2.00),
    ("gpt-5-nano", 0.05, 0.40),
    ("o1", 15.00, 60.00),
    ("o3", 2.00, 8.00),
    ("o3-mini", 1.10, 4.40),
    ("o4-mini", 1.10, 4.40),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
    ("claude-3-haiku", 0.25, 1.25),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("claude-haiku-4-5", 1.00, 5.00),
    ("claude-3-5-sonnet", 3.00, 15.00),
    ("claude-3-7-sonnet", 3.00, 15.00),
    ("claude-sonnet-4", 3.00, 15.00),
    ("claude-sonnet-4-5", 3.00, 15.00),
    ("claude-3-opus", 15.00, 75.00),
    ("claude-opus-4", 15.00, 75.00),
    ("gemini-1.5-flash", 0.075, 0.30),
    ("gemini-1.5-pro", 1.25, 5.00),
    ("gemini-2.0-flash", 0.10, 0.40),
    ("gemini-2.5-flash", 0.30, 2.50),
    ("gemini-2.5-pro", 1.25, 10.00),
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
            DEFAULTS.iter().map(|(k, i, o)| (*k, ModelPrice { input_per_million: *i, output_per_million: *o })),
        );
        match (over, builtin) {
            (Some((lo, po)), Some((lb, pb))) => Some(if lo >= lb { po } else { pb }),
            (o, b) => o.or(b).map(|(_, p)| p),
        }
    }

    /// Dollars for a call, or `None` when the model has no price.
    pub fn cost(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Option<f64> {
        let p = self.lookup(model)?;
        Some(input_tokens as f64 * p.input_per_million / 1e6 + output_tokens as f64 * p.output_per_million / 1e6)
    }
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
}
