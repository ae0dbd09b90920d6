//! What a closed trace's diagnosis leaves behind: the row the trace list
//! shows, and the patches exporters apply to its spans.

use std::collections::HashMap;

use agentrace_doctor::conventions::usage_totals;
use agentrace_doctor::{Config as DoctorConfig, Diagnosis};
use agentrace_model::{Span, SpanId, TraceId};
use serde_json::json;

use crate::export::patch::{InferredLink, SpanPatch};
use crate::store::{AnalysisRow, PatchRow};

/// The row and patches of trace `id`, whose spans are `own`, from a
/// diagnosis over it and its session, and, when exporters need patches,
/// its connected view in reparent mode (else `view` is empty).
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
            // Only the doctor's own marks can be new; the prefix test is
            // cheap, the lookup in the original is not.
            let repair = key.starts_with("agentrace.repair.");
            if !(repair || key.starts_with("app.agent.")) || original.attributes.get(key) == Some(value) {
                continue;
            }
            if repair {
                patch.repair_attributes.push((key.to_owned(), value.clone()).into());
            } else {
                patch.rollup.push((key.to_owned(), value.clone()).into());
            }
        }
        // A span moved through a chain of repairs is only as sure as the
        // weakest of them: an exporter that leaves one out must not move
        // the span past it.
        patch.confidence = v
            .attributes
            .get("agentrace.repair.confidence")
            .and_then(|c| c.as_f64())
            .map(|c| c.min(chain_confidence(diagnosis, id, v.trace_id)));
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

    if view.is_empty() {
        // Without a view, the connected trace is the one the root was
        // joined into, as the repairs say.
        let mut at = root.map(|r| (id, r.span_id));
        let mut hops = 0;
        while let Some((trace, span)) = at {
            match diagnosis.repairs.iter().find(|r| r.applied && r.trace_id == trace && r.span_id == span) {
                Some(r) if hops < 64 => {
                    connected_trace = r.parent_trace_id;
                    let parent_root = diagnosis.requests.iter().find(|q| q.trace_id == r.parent_trace_id);
                    at = parent_root.map(|q| (q.trace_id, q.span_id)).filter(|next| *next != (trace, span));
                    hops += 1;
                }
                _ => at = None,
            }
        }
    }
    let usage = usage_totals(own, &config.prices);
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
        session: usage.session,
        agents: serde_json::to_string(&usage.agents).unwrap_or_else(|_| "[]".into()),
        input_tokens: clamp(usage.input_tokens),
        output_tokens: clamp(usage.output_tokens),
        cost_usd: (usage.cost_usd * 1e6).round() / 1e6,
        findings: findings.len() as i64,
        errors: clamp(usage.errors),
        repairs: repairs.iter().filter(|r| r.applied).count() as i64,
        connected_trace_id: connected_trace.as_bytes().to_vec(),
        diagnosis: json!({ "findings": findings, "repairs": repairs, "failure": failure }).to_string(),
    };
    (row, patches)
}

/// The lowest confidence of the applied repairs that lead from trace
/// `from` to trace `to`, following each trace's root to its parent's trace.
fn chain_confidence(diagnosis: &Diagnosis, from: TraceId, to: TraceId) -> f64 {
    let mut lowest = 1.0f64;
    let mut at = from;
    for _ in 0..64 {
        if at == to {
            break;
        }
        let Some(r) = diagnosis.repairs.iter().find(|r| r.applied && r.trace_id == at && r.parent_trace_id != at)
        else {
            break;
        };
        lowest = lowest.min(r.confidence);
        at = r.parent_trace_id;
    }
    lowest
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
