//! How an exporter rewrites a span that the live diagnosis repaired or
//! rolled up. The doctor makes one [`SpanPatch`] per such span (the type
//! lives in `agentrace_model::patch`), the pipeline stores it (JSON, in
//! `span_patches`), and the exporter applies it as its repair mode says.

use agentrace_model::keys::marks;
pub use agentrace_model::patch::{InferredLink, PatchAttribute, PatchValue, SpanPatch};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use opentelemetry_proto::tonic::trace::v1::span::Link;

use crate::config::ExportRepair;

fn to_otlp(a: &PatchAttribute) -> KeyValue {
    let value = match &a.value {
        PatchValue::Bool(b) => any_value::Value::BoolValue(*b),
        PatchValue::Int(i) => any_value::Value::IntValue(*i),
        PatchValue::Double(d) => any_value::Value::DoubleValue(*d),
        PatchValue::Str(s) => any_value::Value::StringValue(s.clone()),
    };
    KeyValue { key: a.key.clone(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// Applying a patch to a span on its way to a backend.
pub trait ApplyPatch {
    /// Rewrites `span` as `mode` says; repairs below `min_confidence` are
    /// left out. Returns whether a repair was applied.
    fn apply(&self, span: &mut OtlpSpan, mode: ExportRepair, min_confidence: f64) -> bool;
}

impl ApplyPatch for SpanPatch {
    fn apply(&self, span: &mut OtlpSpan, mode: ExportRepair, min_confidence: f64) -> bool {
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
                    let mut attributes = vec![to_otlp(&PatchAttribute {
                        key: "agentrace.link.kind".into(),
                        value: PatchValue::Str("inferred_parent".into()),
                    })];
                    attributes.extend(marks.iter().map(to_otlp));
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
        span.attributes.push(to_otlp(a));
    }
}
