//! What a closed trace's diagnosis leaves behind: the row of the request it
//! belongs to (the list's row, with the doctor's answer for that request),
//! a row per arrived trace of that request, and the patches exporters apply
//! to their spans.

use std::collections::HashMap;

use agentrace_doctor::conventions::UsageTotals;
use agentrace_doctor::{Diagnosis, RequestAnswer};
use agentrace_model::{Span, SpanId, TraceId};

use crate::export::patch::SpanPatch;
use crate::store::{AnalysisRow, PatchRow, RequestRow};

/// A span's rewrite as the doctor gives it, by the span's arrived IDs.
pub(crate) type DoctorPatch = (TraceId, SpanId, SpanPatch);

/// Rows and patches for the request a closing trace belongs to.
pub(crate) struct Answered {
    pub rows: Vec<AnalysisRow>,
    pub patches: Vec<PatchRow>,
    pub requests: Vec<RequestRow>,
    /// The requests' traces that the pipeline holds.
    pub members: Vec<TraceId>,
    /// Each request's answer hash, by (connected trace, root).
    pub hashes: Vec<((TraceId, agentrace_model::SpanId), u64)>,
    /// Applied joins that rest on time alone: (orphan's trace, parent's trace).
    pub time_only_joins: Vec<(TraceId, TraceId)>,
}

/// The rows of a request, from a diagnosis over `traces` (each with its
/// spans) with each trace's totals as the diagnosis read them, the doctor's
/// answer for the request, and its traces held.
pub(crate) fn answered<S: std::ops::Deref<Target: AsRef<[Span]>>>(
    traces: &[(TraceId, S)],
    members: &[TraceId],
    diagnosis: &Diagnosis,
    span_patches: &[DoctorPatch],
    totals: &[(TraceId, UsageTotals)],
    answers: Vec<RequestAnswer>,
) -> Answered {
    let mut rows = Vec::new();
    let mut patches = Vec::new();
    for m in members {
        let Some((_, own)) = traces.iter().find(|(t, _)| t == m) else { continue };
        let request_id =
            answers.iter().find(|a| a.request.original_traces.contains(m)).map_or(*m, |a| a.request.trace_id);
        // Every trace given to the diagnosis has its totals; one without spans adds up to nothing.
        let usage = totals.iter().find(|(t, _)| t == m).map(|(_, u)| u.clone()).unwrap_or_default();
        let (row, p) = summarise(*m, (**own).as_ref(), usage, diagnosis, span_patches, request_id);
        rows.push(row);
        patches.extend(p);
    }
    let hashes = answers.iter().map(|a| ((a.request.trace_id, a.request.span_id), super::answer_hash(a))).collect();
    let time_only_joins = answers
        .iter()
        .flat_map(|a| &a.repairs)
        .filter(|r| r.applied && !r.evidence.is_exact())
        .map(|r| (r.trace_id, r.parent_trace_id))
        .collect();
    let requests = answers.into_iter().map(|a| request_row(a, &rows)).collect();
    Answered { rows, patches, requests, members: members.to_vec(), hashes, time_only_joins }
}

/// The list's row of one request, with the doctor's answer for it.
fn request_row(answer: RequestAnswer, rows: &[AnalysisRow]) -> RequestRow {
    let request_id = answer.request.trace_id;
    let r = &answer.request;
    let start = clamp(r.start_unix_nano);
    RequestRow {
        request_id: request_id.as_bytes().to_vec(),
        root_span_id: answer.request.span_id.as_bytes().to_vec(),
        start_ns: start,
        duration_ns: (r.duration_ms * 1e6).round() as i64,
        root_service: r.service.clone(),
        root_name: r.name.clone(),
        session: r.session.clone(),
        trace_ids: r.original_traces.iter().map(|t| t.as_bytes().to_vec()).collect(),
        spans: rows
            .iter()
            .filter(|row| r.original_traces.iter().any(|t| t.as_bytes() == row.trace_id.as_slice()))
            .map(|row| row.spans)
            .sum(),
        agents: r.agents.clone(),
        models: {
            let mut models: Vec<String> = rows
                .iter()
                .filter(|row| r.original_traces.iter().any(|t| t.as_bytes() == row.trace_id.as_slice()))
                .flat_map(|row| row.models.iter().cloned())
                .collect();
            models.sort_unstable();
            models.dedup();
            models
        },
        input_tokens: clamp(r.usage.input_tokens),
        output_tokens: clamp(r.usage.output_tokens),
        cost_usd: r.usage.cost_usd,
        findings: answer.findings.len() as i64,
        broken: answer.findings.iter().filter(|f| f.kind.is_broken()).count() as i64,
        errors: clamp(r.usage.errors),
        failed: answer.failure.is_some(),
        repairs: answer.repairs.iter().filter(|x| x.applied).count() as i64,
        answer: serde_json::to_string(&answer).unwrap_or_default(),
    }
}

/// The row and patches of trace `id`, whose spans are `own`, from a
/// diagnosis over it and its context, and the doctor's patches (empty when
/// no exporter applies them).
fn summarise(
    id: TraceId,
    own: &[Span],
    usage: UsageTotals,
    diagnosis: &Diagnosis,
    patches: &[DoctorPatch],
    request_id: TraceId,
) -> (AnalysisRow, Vec<PatchRow>) {
    let mut by_id: HashMap<SpanId, &Span> = HashMap::with_capacity(own.len());
    for s in own {
        by_id.insert(s.span_id, s);
    }
    let mut out = Vec::new();
    let connected_trace = request_id;
    let root = own
        .iter()
        .filter(|s| s.parent_span_id.is_none_or(|p| !by_id.contains_key(&p)))
        .min_by_key(|s| (s.start_unix_nano, s.span_id))
        .or_else(|| own.iter().min_by_key(|s| s.start_unix_nano));
    // The doctor's own patches for this trace's spans, as they are.
    for (trace, span, patch) in patches {
        if *trace == id {
            out.push(PatchRow {
                trace_id: id.as_bytes().to_vec(),
                span_id: span.as_bytes().to_vec(),
                patch: serde_json::to_string(patch).unwrap_or_default(),
            });
        }
    }

    let findings: Vec<_> = diagnosis.findings.iter().filter(|f| f.trace_id == id).collect();
    let repairs: Vec<_> = diagnosis.repairs.iter().filter(|r| r.trace_id == id).collect();
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
        input_tokens: clamp(usage.input_tokens),
        output_tokens: clamp(usage.output_tokens),
        cost_usd: (usage.cost_usd * 1e6).round() / 1e6,
        findings: findings.len() as i64,
        errors: clamp(usage.errors),
        repairs: repairs.iter().filter(|r| r.applied).count() as i64,
        connected_trace_id: connected_trace.as_bytes().to_vec(),
        models: usage.models.into_iter().collect(),
    };
    (row, out)
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
