//! The doctor's knobs: thresholds, tolerances, repair mode and prices.
//!
//! Read before anything else on the road. Every field has a default that
//! suits real agent systems; the struct deserialises with
//! `deny_unknown_fields`, so the collector can embed it in its YAML config
//! and a typo is an error, not a silently ignored setting.

use serde::{Deserialize, Serialize};

use crate::pricing::PriceTable;

/// How the connected view shows an applied repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairMode {
    /// Rewrite the orphan's parent and its subtree's trace ID, keeping the
    /// originals in `agentrace.repair.original_*` attributes.
    #[default]
    Reparent,
    /// Keep IDs; add a span link with `agentrace.link.kind = inferred_parent`.
    Link,
}

/// Configuration of a [`crate::Doctor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Repairs at or above this confidence are applied; below, suggested.
    pub apply_threshold: f64,
    /// How far apart the clocks of two services may be, in milliseconds.
    /// Heuristic joins across services allow this much slack.
    pub clock_skew_ms: u64,
    /// A gap inside a span with children is a `timing_gap` when it lasts at
    /// least this long (ms) …
    pub gap_min_ms: u64,
    /// … and at least this share of the span's duration.
    pub gap_min_share: f64,
    /// A message that waits in a queue at least this long (ms) between its
    /// producer's end and its consumer's start is a `timing_gap`.
    pub queue_gap_min_ms: u64,
    /// How applied repairs appear in the connected spans.
    pub repair_mode: RepairMode,
    /// Model prices, on top of the built-in defaults.
    pub prices: PriceTable,
    /// Whether [`crate::Diagnosis::requests`] carries each request's span tree.
    pub include_tree: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            apply_threshold: 0.8,
            clock_skew_ms: 100,
            gap_min_ms: 200,
            gap_min_share: 0.5,
            queue_gap_min_ms: 1000,
            repair_mode: RepairMode::Reparent,
            prices: PriceTable::default(),
            include_tree: true,
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A ratio lies outside 0 to 1; set it within that range.
    #[error("{field} must lie between 0 and 1, got {value}")]
    OutOfRange {
        /// The field's name.
        field: &'static str,
        /// The value given.
        value: f64,
    },
}

impl Config {
    /// Checks the ratios; call it after reading a config file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [("apply_threshold", self.apply_threshold), ("gap_min_share", self.gap_min_share)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::OutOfRange { field, value });
            }
        }
        Ok(())
    }

    /// Sets the repair mode.
    pub fn with_repair_mode(mut self, mode: RepairMode) -> Config {
        self.repair_mode = mode;
        self
    }

    /// Sets the confidence threshold for applying repairs.
    pub fn with_apply_threshold(mut self, threshold: f64) -> Config {
        self.apply_threshold = threshold;
        self
    }

    /// Sets the price table.
    pub fn with_prices(mut self, prices: PriceTable) -> Config {
        self.prices = prices;
        self
    }

    pub(crate) fn skew(&self) -> u64 {
        self.clock_skew_ms.saturating_mul(1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_round_trips_and_validates() {
        let config = Config::default();
        config.validate().expect("defaults are valid");
        let text = serde_json::to_string(&config).expect("serialises");
        let back: Config = serde_json::from_str(&text).expect("deserialises");
        assert_eq!(back, config);
        let partial: Config = serde_json::from_str(r#"{"repair_mode": "link"}"#).expect("fields default");
        assert_eq!(partial.repair_mode, RepairMode::Link);
        assert!(serde_json::from_str::<Config>(r#"{"treshold": 1}"#).is_err(), "typos are refused");
        let bad = Config::default().with_apply_threshold(1.5).validate().unwrap_err();
        assert_eq!(bad.to_string(), "apply_threshold must lie between 0 and 1, got 1.5");
    }
}
