//! What a closed trace's diagnosis leaves behind: the row the trace list
//! shows, and the patches exporters apply to its spans.

use std::collections::{BTreeSet, HashMap};

use agentrace_doctor::conventions::{Category, span_usage};
use agentrace_doctor::{Config as DoctorConfig, Diagnosis};
use agentrace_model::{Span, SpanId, StatusCode, TraceId};
use serde_json::json;

use crate::export::patch::{InferredLink, SpanPatch};
use crate::store::{AnalysisRow, PatchRow};

/// The row and patches of trace `id`, whose spans are `own`, from a
/// diagnosis (and its connected view, in reparent mode) over it and its session.
pub(crate) fn summarise(
    id: TraceId,
    own: &[Span],
    diagnosis: &Diagnosis,
    view: &[Span],
    config: &DoctorConfig,
) -> (AnalysisRow, Vec<PatchRow>) {
    let mut by_id: HashMap<SpanId, &Span> = HashMap::with_capacity(own.len());
    for s in own {
        by_id.insert(s.span_id, s);
    }
    let mut patches = Vec::new();
    let mut connected_trace = id;
    let root = own
        .iter()
        .filter(|s| s.parent_span_id.is_none_or(|p| !by_id.contains_key(&p)))
        .min_by_key(|s| (s.start_unix_nano, s.span_id))
        .or_else(|| own.iter().min_by_key(|s| s.start_unix_nano));
    for v in view {
        let original_trace = v
            .attributes
            .str("agentrace.repair.original_trace_id")
            .and_then(|t| TraceId::from_hex(t).ok())
            .unwrap_or(v.trace_id);
        if original_trace != id {
            continue;
        }
        let Some(original) = by_id.get(&v.span_id) else { continue };
        if root.is_some_and(|r| r.span_id == v.span_id) {
            connected_trace = v.trace_id;
        }
        let mut patch = SpanPatch::default();
        if v.trace_id != original.trace_id {
            patch.trace_id = Some(v.trace_id);
        }
        if v.parent_span_id != original.parent_span_id {
            patch.parent_span_id = v.parent_span_id;
        }
        for (key, value) in v.attributes.iter() {
            if original.attributes.get(key) == Some(value) {
                continue;
            }
            if key.starts_with("agentrace.repair.") {
                patch.repair_attributes.push((key.to_owned(), value.clone()).into());
            } else if key.starts_with("app.agent.") {
                patch.rollup.push((key.to_owned(), value.clone()).into());
            }
        }
        patch.confidence = v.attributes.get("agentrace.repair.confidence").and_then(|c| c.as_f64());
        if let Some(r) = diagnosis.repairs.iter().find(|r| r.applied && r.trace_id == id && r.span_id == v.span_id) {
            patch.link = Some(InferredLink {
                trace_id: r.parent_trace_id,
                span_id: r.parent_span_id,
                evidence: r.evidence.as_str().to_owned(),
                confidence: r.confidence,
            });
        }
        if !patch.is_empty() {
            patches.push(PatchRow {
                trace_id: id.as_bytes().to_vec(),
                span_id: v.span_id.as_bytes().to_vec(),
                patch: serde_json::to_string(&patch).unwrap_or_default(),
            });
        }
    }

    let (mut input, mut output, mut cost, mut errors) = (0u64, 0u64, 0f64, 0i64);
    let mut agents = BTreeSet::new();
    let mut session = None;
    for s in own {
        let u = span_usage(s);
        if u.category == Some(Category::Llm) {
            input += u.input_tokens;
            output += u.output_tokens;
            if let Some(m) = &u.model {
                cost += config.prices.cost(m, u.input_tokens, u.output_tokens).unwrap_or(0.0);
            }
        }
        errors += i64::from(s.status_code == StatusCode::Error);
        if let Some(a) = u.agent {
            agents.insert(a);
        }
        if session.is_none() {
            session = u.session;
        }
    }
    let findings: Vec<_> = diagnosis.findings.iter().filter(|f| f.trace_id == id).collect();
    let repairs: Vec<_> = diagnosis.repairs.iter().filter(|r| r.trace_id == id).collect();
    let failure = diagnosis.failures.iter().find(|f| f.trace_id == id);
    let start = own.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = own.iter().map(|s| s.end_unix_nano).max().unwrap_or(start);
    let row = AnalysisRow {
        trace_id: id.as_bytes().to_vec(),
        start_ns: clamp(start),
        duration_ns: clamp(end.saturating_sub(start)),
        root_service: root.map(|r| r.resource.service_name().to_owned()).unwrap_or_default(),
        root_name: root.map(|r| r.name.clone()).unwrap_or_default(),
        spans: own.len() as i64,
        session,
        agents: serde_json::to_string(&agents).unwrap_or_else(|_| "[]".into()),
        input_tokens: clamp(input),
        output_tokens: clamp(output),
        cost_usd: (cost * 1e6).round() / 1e6,
        findings: findings.len() as i64,
        errors,
        repairs: repairs.iter().filter(|r| r.applied).count() as i64,
        connected_trace_id: connected_trace.as_bytes().to_vec(),
        diagnosis: json!({ "findings": findings, "repairs": repairs, "failure": failure }).to_string(),
    };
    (row, patches)
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
