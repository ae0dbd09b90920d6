//! How an exporter rewrites a span that the live diagnosis repaired or
//! rolled up. The pipeline stores one [`SpanPatch`] per such span (JSON, in
//! `span_patches`); the exporter applies it as its repair mode says.

use agentrace_model::keys::marks;
use agentrace_model::{SpanId, TraceId, Value};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use opentelemetry_proto::tonic::trace::v1::span::Link;
use serde::{Deserialize, Serialize};

use crate::config::ExportRepair;

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

impl PatchAttribute {
    fn to_otlp(&self) -> KeyValue {
        let value = match &self.value {
            PatchValue::Bool(b) => any_value::Value::BoolValue(*b),
            PatchValue::Int(i) => any_value::Value::IntValue(*i),
            PatchValue::Double(d) => any_value::Value::DoubleValue(*d),
            PatchValue::Str(s) => any_value::Value::StringValue(s.clone()),
        };
        KeyValue { key: self.key.clone(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
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

    /// Rewrites `span` as `mode` says; repairs below `min_confidence` are
    /// left out. Returns whether a repair was applied.
    pub fn apply(&self, span: &mut OtlpSpan, mode: ExportRepair, min_confidence: f64) -> bool {
        let confident = |c: f64| c >= min_confidence;
        let mut repaired = false;
        match mode {
            ExportRepair::Off => return false,
            ExportRepair::Reparent => {
                if self.confidence.is_some_and(confident) {
                    if let Some(t) = self.trace_id {
                        span.trace_id = t.as_bytes().to_vec();
                    }
                    if let Some(p) = self.parent_span_id {
                        span.parent_span_id = p.as_bytes().to_vec();
                    }
                    set(span, &self.repair_attributes);
                    repaired = true;
                }
            }
            ExportRepair::Link => {
                if let Some(l) = self.link.as_ref().filter(|l| confident(l.confidence)) {
                    let marks = [
                        PatchAttribute { key: marks::EVIDENCE.into(), value: PatchValue::Str(l.evidence.clone()) },
                        PatchAttribute { key: marks::CONFIDENCE.into(), value: PatchValue::Double(l.confidence) },
                    ];
                    set(span, &marks);
                    let mut attributes = vec![
                        PatchAttribute {
                            key: "agentrace.link.kind".into(),
                            value: PatchValue::Str("inferred_parent".into()),
                        }
                        .to_otlp(),
                    ];
                    attributes.extend(marks.iter().map(PatchAttribute::to_otlp));
                    span.links.push(Link {
                        trace_id: l.trace_id.as_bytes().to_vec(),
                        span_id: l.span_id.as_bytes().to_vec(),
                        attributes,
                        ..Default::default()
                    });
                    repaired = true;
                }
            }
        }
        set(span, &self.rollup);
        repaired
    }
}

fn set(span: &mut OtlpSpan, attributes: &[PatchAttribute]) {
    for a in attributes {
        span.attributes.retain(|kv| kv.key != a.key);
        span.attributes.push(a.to_otlp());
    }
}
