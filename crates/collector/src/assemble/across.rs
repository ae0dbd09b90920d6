//! Requests split across collectors (the shared store only,
//! `storage.backend: postgres`).
//!
//! A collector's pipeline holds only the traces it received. When a
//! closing trace's hand-off (a message, MCP request or tool call ID, or a
//! span link) has
//! its other side in a trace that another collector stored, the request is
//! diagnosed on read instead, from the shared store, exactly as the API's
//! connected view diagnoses it ([`query::request_context`]), and its rows
//! replace the pipeline's: one row for the connected request, the rows the
//! other sides were stored as retired. Whichever collector closes its side
//! last sees both sides stored (spans are stored before they reach a
//! pipeline), so the request list ends connected whatever the order; a
//! collector that closes its side first writes what it can see, which the
//! later one rewrites.
//!
//! On the data's road this sits between the [`super::Assembler`]'s close
//! and the store's write of its rows.

use std::collections::HashSet;
use std::ops::Range;

use agentrace_doctor::Doctor;
use agentrace_model::{Span, TraceId};

use super::{Closed, summary};
use crate::store::query;
use crate::store::{Store, StoreError};

/// What the shared store says about one request the pipeline closed.
struct Split {
    /// Its traces as the pipeline saw them.
    members: Vec<Vec<u8>>,
    /// The spans its diagnosis on read reads.
    spans: Vec<Span>,
    /// The request each trace of the context was stored as part of.
    stored_as: Vec<query::Membership>,
}

/// Rewrites the rows of the closed requests that a hand-off joins to a
/// trace this collector does not hold (`holds` says which it does). Rows
/// of requests whose every other side is held are left as the pipeline
/// made them, joined or not: those sides were in its diagnosis. A store
/// that cannot be read leaves them all as they are (the connected view
/// still joins them on read).
pub(crate) fn settle(
    closed: &mut Closed,
    store: &Store,
    runtime: &tokio::runtime::Handle,
    doctor: &Doctor,
    want_patches: bool,
    holds: impl Fn(&[u8]) -> bool,
) {
    if closed.requests.is_empty() {
        return;
    }
    let requests: Vec<Vec<Vec<u8>>> = closed.requests.iter().map(|r| r.trace_ids.clone()).collect();
    // Each request's stored partners, then those this collector does not hold.
    let partners = runtime.block_on(store.read(move |db| {
        let mut all: Vec<Vec<u8>> = requests.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        let pairs = query::hand_off_partners(db, &all)?;
        Ok::<_, StoreError>(
            requests
                .into_iter()
                .map(|members| {
                    let partners: Vec<Vec<u8>> = pairs
                        .iter()
                        .filter(|(t, p)| members.contains(t) && !members.contains(p))
                        .map(|(_, p)| p.clone())
                        .collect();
                    (members, partners)
                })
                .collect::<Vec<_>>(),
        )
    }));
    let split: Vec<Vec<Vec<u8>>> = match partners {
        Ok(p) => p.into_iter().filter(|(_, partners)| partners.iter().any(|p| !holds(p))).map(|(m, _)| m).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for the other sides of closed requests in the shared store");
            return;
        }
    };
    if split.is_empty() {
        return;
    }
    let found = runtime.block_on(store.read(move |db| {
        let mut splits: Vec<Split> = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        for members in split {
            if members.iter().any(|m| seen.contains(m)) {
                continue;
            }
            let mut spans = query::request_context(db, &members[0])?;
            let held: HashSet<Vec<u8>> = spans.iter().map(|s| s.trace_id.as_bytes().to_vec()).collect();
            let missing: Vec<Vec<u8>> = members.iter().filter(|m| !held.contains(*m)).cloned().collect();
            spans.extend(query::spans_of(db, &missing)?);
            let mut traces: Vec<Vec<u8>> = spans.iter().map(|s| s.trace_id.as_bytes().to_vec()).collect();
            traces.sort();
            traces.dedup();
            let stored_as = query::stored_requests(db, &traces)?;
            seen.extend(traces);
            splits.push(Split { members, spans, stored_as });
        }
        Ok::<_, StoreError>(splits)
    }));
    match found {
        Ok(splits) => {
            for split in splits {
                join(closed, split, doctor, want_patches);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the other sides of closed requests from the shared store"),
    }
}

/// Replaces the rows of one split request with those of its diagnosis on read.
fn join(closed: &mut Closed, split: Split, doctor: &Doctor, want_patches: bool) {
    let Split { members, mut spans, stored_as } = split;
    // Each trace's spans together, for the rows' ranges.
    spans.sort_by(|a, b| a.trace_id.as_bytes().cmp(b.trace_id.as_bytes()));
    let mut traces: Vec<(TraceId, Range<usize>)> = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        match traces.last_mut() {
            Some((t, range)) if *t == span.trace_id => range.end = i + 1,
            _ => traces.push((span.trace_id, i..i + 1)),
        }
    }
    let agentrace_doctor::DiagnosisWithTotals { diagnosis, patches, totals, .. } =
        doctor.analyse_with_totals(&spans, want_patches);
    let answers: Vec<_> = diagnosis
        .request_answers()
        .into_iter()
        .filter(|a| a.request.original_traces.iter().any(|t| members.iter().any(|m| m == t.as_bytes())))
        .collect();
    if answers.is_empty() {
        return;
    }
    let mut joined: Vec<TraceId> = answers.iter().flat_map(|a| a.request.original_traces.iter().copied()).collect();
    joined.sort_unstable();
    joined.dedup();
    let new_ids: Vec<Vec<u8>> = answers.iter().map(|a| a.request.trace_id.as_bytes().to_vec()).collect();
    let traces: Vec<(TraceId, &[Span])> = traces.into_iter().map(|(t, range)| (t, &spans[range])).collect();
    let answered = summary::answered(&traces, &joined, &diagnosis, &patches, &totals, answers);
    let is_joined = |t: &[u8]| joined.iter().any(|j| j.as_bytes() == t);
    // The exporters' patches of every joined trace are written anew (its
    // row says so), those of the other sides included.
    closed.rows.retain(|r| !is_joined(&r.trace_id));
    closed.patches.retain(|p| !is_joined(&p.trace_id));
    closed.rows.extend(answered.rows);
    closed.patches.extend(answered.patches);
    // The pipeline's rows for these traces go; so do the requests the
    // other sides were stored as, where they are not the new ones.
    closed.requests.retain(|r| !r.trace_ids.iter().any(|t| is_joined(t)));
    for (trace, request) in stored_as {
        if is_joined(&trace) && !new_ids.contains(&request) && !closed.retired_requests.contains(&request) {
            closed.retired_requests.push(request);
        }
    }
    for m in &members {
        if !new_ids.contains(m) && !closed.retired_requests.contains(m) {
            closed.retired_requests.push(m.clone());
        }
    }
    closed.requests.extend(answered.requests);
}
