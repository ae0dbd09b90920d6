//! The rewrite of one span that a diagnosis repaired or rolled up: the
//! doctor makes it (`Doctor::analyse_with_patches`), the live pipeline
//! stores it (JSON, one per span), and an exporter applies it as its
//! repair mode says. Defined once here, with the marks it writes
//! ([`crate::keys::marks`]).

use serde::{Deserialize, Serialize};

use crate::{SpanId, TraceId, Value};

/// A span's rewrite.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanPatch {
    /// The connected trace, when the span moved (reparent mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<TraceId>,
    /// The true parent, for a repaired orphan (reparent mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    /// `agentrace.repair.*` attributes of reparent mode (evidence,
    /// confidence, original IDs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repair_attributes: Vec<PatchAttribute>,
    /// The inferred parent, for a repaired orphan (link mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<InferredLink>,
    /// Confidence of the repair that moved the span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// `app.agent.*` rollups, whatever the mode but `off`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollup: Vec<PatchAttribute>,
}

/// The parent a repair inferred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferredLink {
    /// Parent's trace.
    pub trace_id: TraceId,
    /// Parent span.
    pub span_id: SpanId,
    /// Evidence kind (`messaging.message.id`, …).
    pub evidence: String,
    /// Confidence, 0 to 1.
    pub confidence: f64,
}

/// An attribute a patch adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchAttribute {
    /// Key.
    pub key: String,
    /// Value.
    pub value: PatchValue,
}

/// A scalar attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PatchValue {
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Float.
    Double(f64),
    /// Text.
    Str(String),
}

impl From<(String, Value)> for PatchAttribute {
    fn from((key, value): (String, Value)) -> PatchAttribute {
        let value = match value {
            Value::Bool(b) => PatchValue::Bool(b),
            Value::Int(i) => PatchValue::Int(i),
            Value::Double(d) => PatchValue::Double(d),
            other => PatchValue::Str(other.to_text()),
        };
        PatchAttribute { key, value }
    }
}

impl SpanPatch {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.trace_id.is_none()
            && self.parent_span_id.is_none()
            && self.repair_attributes.is_empty()
            && self.link.is_none()
            && self.rollup.is_empty()
    }
}
