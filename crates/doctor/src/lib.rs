//! The doctor: finds where trace context broke in a multi-agent system,
//! repairs the trace from evidence, and says what failed and where the time
//! went.
//!
//! A pure library: spans in, a [`Diagnosis`] out. No I/O, no clocks, no
//! randomness; the same spans in any order give the same answer, byte for
//! byte. `agentrace doctor` runs it on files or on spans fetched from the
//! collector; the collector runs it on every assembled trace.
//!
//! The road, module by module:
//!
//! 1. [`conventions`] reads each span once: what it is (LLM, tool,
//!    retrieval, hand-off, agent) under GenAI, MCP, messaging, OpenInference
//!    and Traceloop names, and its join keys;
//! 2. `assemble` sorts spans into one canonical order and indexes traces,
//!    parents, sessions and service instances;
//! 3. `repair` asks every root who called it, strongest evidence first, and
//!    names the breaks (`orphan_root`, `tool_root`, `lost_context`,
//!    `missing_parent`);
//! 4. `connect` builds the connected view: one tree per request, synthetic
//!    queue-transit spans, each span's agent;
//! 5. `timing` finds timing gaps and walks the critical path, crediting a
//!    span that waits on a hand-off's far side with the work done there;
//! 6. `failure` finds each request's earliest causal error;
//! 7. `agents` builds the agent graph with tokens and cost ([`pricing`]:
//!    cached input at its own price, reasoning inside output);
//! 8. [`render`] prints a [`Diagnosis`] for a terminal.
//!
//! [`input`] is the on-ramp for files: it tells OTLP JSON, JSON lines and
//! protobuf apart, for callers that did the reading.
//!
//! # Getting started
//!
//! ```
//! use agentrace_doctor::{Config, Doctor, FindingKind};
//! use agentrace_model::{otlp, Span};
//!
//! // A consumer that started a new trace, though it handled the producer's message.
//! let body = br#"{"resourceSpans":[
//!  {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"planner"}}]},
//!   "scopeSpans":[{"spans":[
//!    {"traceId":"11111111111111111111111111111111","spanId":"1111111111111111","name":"plan",
//!     "kind":2,"startTimeUnixNano":"1000000000","endTimeUnixNano":"1500000000"},
//!    {"traceId":"11111111111111111111111111111111","spanId":"2222222222222222",
//!     "parentSpanId":"1111111111111111","name":"send tasks","kind":4,
//!     "startTimeUnixNano":"1100000000","endTimeUnixNano":"1110000000",
//!     "attributes":[{"key":"messaging.message.id","value":{"stringValue":"m-1"}}]}]}]},
//!  {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"worker"}}]},
//!   "scopeSpans":[{"spans":[
//!    {"traceId":"22222222222222222222222222222222","spanId":"3333333333333333",
//!     "name":"process tasks","kind":5,"startTimeUnixNano":"1200000000","endTimeUnixNano":"1400000000",
//!     "attributes":[{"key":"messaging.message.id","value":{"stringValue":"m-1"}}]}]}]}]}"#;
//! let decoded = otlp::decode_json(body, &otlp::Limits::default())?;
//! let spans = Span::from_request(&decoded.request);
//!
//! let doctor = Doctor::new(Config::default());
//! let (diagnosis, connected) = doctor.analyse_with_view(&spans);
//! assert!(diagnosis.findings.iter().any(|f| f.kind == FindingKind::OrphanRoot));
//! assert!(diagnosis.repairs[0].applied);
//! // The connected view: the consumer now lives in the producer's trace,
//! // with a synthetic span for the time its message spent in the queue.
//! assert!(connected.iter().all(|s| s.trace_id == spans[0].trace_id));
//! assert!(connected.iter().any(|s| s.attributes.get("agentrace.synthetic").is_some()));
//! println!("{}", agentrace_doctor::render::text(&diagnosis, &Default::default()));
//! # Ok::<(), otlp::DecodeError>(())
//! ```

mod agents;
mod assemble;
pub mod config;
mod connect;
pub mod conventions;
pub mod diagnosis;
mod failure;
pub mod input;
mod left_out;
pub mod pricing;
pub mod render;
mod repair;
mod timing;

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use agentrace_model::{Span, TraceId};

pub use config::{Config, ConfigError, RepairMode};
pub use conventions::{AgentSource, Category};
pub use diagnosis::{
    AgentStats, ChainLink, Delegation, Diagnosis, Evidence, Failure, Finding, FindingKind, Repair, Request,
    RequestAnswer, Retry, Rollup, SessionSummary, Summary, TimeShare, TreeSpan,
};
pub use left_out::LeftOut;
pub use pricing::{Cost, ModelPrice, PriceTable};

use crate::conventions::UsageTotals;
use crate::diagnosis::ms;

/// Runs the analysis with one configuration; cheap to build, reusable, and
/// safe to share between threads.
#[derive(Debug, Clone, Default)]
pub struct Doctor {
    config: Config,
}

impl Doctor {
    /// A doctor with this configuration.
    pub fn new(config: Config) -> Doctor {
        Doctor { config }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Diagnoses a set of spans: any number of traces and sessions, in any
    /// order, duplicates allowed. Never fails: what cannot be understood is
    /// left as it is. The spans may be given by value or by reference (a
    /// caller that holds decoded spans need not copy them).
    pub fn analyse<S: Borrow<Span>>(&self, spans: &[S]) -> Diagnosis {
        self.run(&refs(spans), false, false, false, &LeftOut::new()).0
    }

    /// Like [`Doctor::analyse`], and also returns the connected view as
    /// spans: every input span (duplicates removed) with applied repairs
    /// marked as the [`RepairMode`] says, followed by synthetic queue-transit
    /// spans (`agentrace.synthetic = true`). This is what a live pipeline
    /// forwards.
    pub fn analyse_with_view<S: Borrow<Span>>(&self, spans: &[S]) -> (Diagnosis, Vec<Span>) {
        let (diagnosis, view, _, _) = self.run(&refs(spans), true, false, false, &LeftOut::new());
        (diagnosis, view)
    }

    /// Diagnoses `spans` and says how to rewrite each span the connected
    /// view repaired or rolled up, by the span's IDs as it arrived: the
    /// patches an exporter applies (in reparent or link mode), made here
    /// from the repairs themselves, so that no caller reads them back from
    /// the view.
    pub fn analyse_with_patches<S: Borrow<Span>>(&self, spans: &[S]) -> (Diagnosis, Vec<Patch>) {
        let (diagnosis, _, patches, _) = self.run(&refs(spans), false, true, false, &LeftOut::new());
        (diagnosis, patches)
    }

    /// Like [`Doctor::analyse_with_patches`] (patches only when `want_patches`), and also what
    /// each trace's spans add up to, as [`conventions::usage_totals`] adds them (a duplicate span
    /// counted once), from the facts the diagnosis read: a live pipeline's trace rows without
    /// reading every span a second time.
    pub fn analyse_with_totals<S: Borrow<Span>>(&self, spans: &[S], want_patches: bool) -> DiagnosisWithTotals {
        self.analyse_with_totals_beside(spans, want_patches, &LeftOut::new())
    }

    /// Like [`Doctor::analyse_with_totals`], for spans that are not all
    /// that ran around them: `left_out` says which traces were not given
    /// (a live pipeline's context cut at its bound). The answer is then
    /// never surer than with them: a join by time alone that a left-out
    /// trace could contest is only suggested, and a root that a left-out
    /// trace of its service could show to be an entry point is not
    /// reported as broken (see [`LeftOut`]).
    pub fn analyse_with_totals_beside<S: Borrow<Span>>(
        &self,
        spans: &[S],
        want_patches: bool,
        left_out: &LeftOut,
    ) -> DiagnosisWithTotals {
        let (diagnosis, _, patches, totals) = self.run(&refs(spans), false, want_patches, true, left_out);
        DiagnosisWithTotals { diagnosis, patches, totals }
    }

    /// The answer for the request that holds trace `trace`, as the file
    /// doctor, the live pipeline and the API give it: a diagnosis of `spans`
    /// (the request and what ran around it) scoped to that one request —
    /// its findings, repairs, failure and retries, its tree, and the time
    /// breakdown and agent graph of its own spans — and its spans in the
    /// connected view. A trace with a span whose parent never arrived
    /// holds two requests: both are answered. `None` when no span of
    /// `trace` is in `spans`.
    pub fn analyse_request<S: Borrow<Span>>(&self, spans: &[S], trace: TraceId) -> Option<(Diagnosis, Vec<Span>)> {
        let spans = refs(spans);
        let (full, view, _, _) = self.run(&spans, true, false, false, &LeftOut::new());
        let answers: Vec<RequestAnswer> =
            full.request_answers().into_iter().filter(|a| a.request.original_traces.contains(&trace)).collect();
        if answers.is_empty() {
            return None;
        }
        let mut traces: Vec<TraceId> = answers.iter().flat_map(|a| a.request.original_traces.iter().copied()).collect();
        traces.sort_unstable();
        traces.dedup();
        let roots: Vec<TraceId> = answers.iter().map(|a| a.request.trace_id).collect();
        let ours = |t: &TraceId| traces.binary_search(t).is_ok();
        let members: Vec<&Span> = spans.iter().copied().filter(|s| ours(&s.trace_id)).collect();
        // Time and agents of the request's own spans; what broke and what
        // was joined as the whole context says.
        let alone = self.analyse(&members);
        let view: Vec<Span> = view
            .into_iter()
            .filter(|s| {
                let original = s
                    .attributes
                    .str(agentrace_model::keys::marks::ORIGINAL_TRACE_ID)
                    .and_then(|t| TraceId::from_hex(t).ok())
                    .unwrap_or(s.trace_id);
                ours(&original) || roots.contains(&s.trace_id)
            })
            .collect();
        // Findings, repairs and failures in time order, as the whole diagnosis has them.
        let findings: Vec<Finding> = full.findings.into_iter().filter(|f| ours(&f.trace_id)).collect();
        let repairs: Vec<Repair> = full.repairs.into_iter().filter(|r| ours(&r.trace_id)).collect();
        let failures: Vec<Failure> = answers.iter().filter_map(|a| a.failure.clone()).collect();
        let retries: Vec<Retry> = full.retries.into_iter().filter(|r| ours(&r.trace_id)).collect();
        let requests: Vec<Request> = answers.into_iter().map(|a| a.request).collect();
        let session = requests.iter().find_map(|r| r.session.clone());
        let applied = repairs.iter().filter(|r| r.applied).count() as u64;
        let diagnosis = Diagnosis {
            summary: Summary {
                spans: alone.summary.spans,
                traces: traces.len() as u64,
                requests: requests.len() as u64,
                sessions: u64::from(session.is_some()),
                findings: findings.len() as u64,
                repairs_applied: applied,
                repairs_suggested: repairs.len() as u64 - applied,
                synthetic_spans: view
                    .iter()
                    .filter(|s| s.attributes.get(agentrace_model::keys::marks::SYNTHETIC).is_some())
                    .count() as u64,
            },
            failure: failures.first().cloned(),
            failures,
            retries,
            findings,
            repairs,
            time_breakdown: alone.time_breakdown,
            critical_path_ms: requests.iter().map(|r| r.critical_path_ms).sum(),
            agents: alone.agents,
            delegations: alone.delegations,
            unpriced_models: alone.unpriced_models,
            cached_input_at_input_price: alone.cached_input_at_input_price,
            sessions: full.sessions.into_iter().filter(|s| session.as_deref() == Some(s.id.as_str())).collect(),
            requests,
        };
        Some((diagnosis, view))
    }

    fn run(
        &self,
        input: &[&Span],
        want_view: bool,
        want_patches: bool,
        want_totals: bool,
        left_out: &LeftOut,
    ) -> (Diagnosis, Vec<Span>, Vec<Patch>, TraceTotals) {
        let config = &self.config;
        let ix = assemble::Index::build(input);
        let totals = if want_totals { ix.trace_totals(&config.prices) } else { Vec::new() };
        let mut repaired = repair::repair(&ix, config, left_out);
        let tree = connect::build(&ix, &repaired);
        let mut timing = timing::analyse(&ix, &tree, config);
        let failures = failure::analyse(&ix, &tree, config);
        let graph = agents::analyse(&ix, &tree, config, &failures.causal, &unjoined(&ix, &repaired));

        // Everything that reads the repairs runs before they move into the answer.
        let requests =
            requests(&ix, &tree, &repaired, &timing, &graph.per_request, &graph.per_request_delegations, config);
        let sessions = sessions(&ix, &tree);
        let view = if want_view { connect::export(&ix, &repaired, &tree, config) } else { Vec::new() };
        let patches = if want_patches { connect::patches(&ix, &repaired, &tree, config) } else { Vec::new() };
        let mut findings = discontinuities(&ix, &tree, &repaired);
        findings.append(&mut repaired.findings);
        findings.append(&mut timing.findings);
        findings
            .sort_by(|(ta, a), (tb, b)| (ta, a.kind, a.trace_id, a.span_id).cmp(&(tb, b.kind, b.trace_id, b.span_id)));
        let findings: Vec<Finding> = findings.into_iter().map(|(_, f)| f).collect();

        let failure =
            failures.per_request.iter().min_by_key(|(t, f)| (*t, f.trace_id, f.span_id)).map(|(_, f)| f.clone());
        let applied = repaired.repairs.iter().filter(|r| r.applied).count() as u64;
        let diagnosis = Diagnosis {
            summary: Summary {
                spans: ix.len() as u64,
                traces: ix.traces.len() as u64,
                requests: tree.roots.len() as u64,
                sessions: ix.sessions.len() as u64,
                findings: findings.len() as u64,
                repairs_applied: applied,
                repairs_suggested: repaired.repairs.len() as u64 - applied,
                synthetic_spans: tree.transits.len() as u64,
            },
            findings,
            repairs: std::mem::take(&mut repaired.repairs),
            failure,
            failures: failures.per_request.into_iter().map(|(_, f)| f).collect(),
            retries: failures.retries,
            time_breakdown: std::mem::take(&mut timing.breakdown),
            critical_path_ms: ms(timing.total),
            agents: graph.agents,
            delegations: graph.delegations,
            unpriced_models: graph.unpriced,
            cached_input_at_input_price: graph.cached_at_input_price,
            sessions,
            requests,
        };
        (diagnosis, view, patches, totals)
    }
}

/// A diagnosis, the patches that go with it, and each trace's totals
/// ([`Doctor::analyse_with_totals`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct DiagnosisWithTotals {
    /// The diagnosis, as [`Doctor::analyse`] gives it.
    pub diagnosis: Diagnosis,
    /// Each span's rewrite by its arrived IDs (empty unless asked for).
    pub patches: Vec<Patch>,
    /// What each trace's spans add up to, one entry per trace.
    pub totals: TraceTotals,
}

/// What each trace's spans add up to, one entry per trace.
pub type TraceTotals = Vec<(TraceId, UsageTotals)>;

/// The spans as references, which is how the doctor reads them.
fn refs<S: Borrow<Span>>(spans: &[S]) -> Vec<&Span> {
    spans.iter().map(Borrow::borrow).collect()
}

/// A span's rewrite, by the span's IDs as it arrived.
type Patch = (TraceId, agentrace_model::SpanId, agentrace_model::patch::SpanPatch);

/// One `trace_discontinuity` per connected request that spans several trace
/// IDs, reported at the request's root.
/// Each orphan that repair only suggested parents for, with them.
fn unjoined(ix: &assemble::Index, repaired: &repair::Repaired) -> Vec<(u32, Vec<u32>)> {
    let mut out: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut at: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for r in repaired.repairs.iter().filter(|r| !r.applied) {
        let (Some(orphan), Some(parent)) =
            (ix.find(r.trace_id, r.span_id), ix.find(r.parent_trace_id, r.parent_span_id))
        else {
            continue;
        };
        if repaired.joined(orphan).is_some() {
            continue;
        }
        match at.get(&orphan) {
            Some(&k) => out[k].1.push(parent),
            None => {
                at.insert(orphan, out.len());
                out.push((orphan, vec![parent]));
            }
        }
    }
    out
}

fn discontinuities(ix: &assemble::Index, tree: &connect::Tree, repaired: &repair::Repaired) -> Vec<(u64, Finding)> {
    let mut evidence: BTreeMap<u32, Vec<&'static str>> = BTreeMap::new();
    for (orphan, ri) in repaired.joined_orphans() {
        // A trace that links to its origin started anew on purpose (a trace
        // per message, a batch consumer): joined, but not a broken hop.
        if repaired.repairs[ri].evidence == Evidence::Link {
            continue;
        }
        let root = tree.root_of[orphan as usize];
        evidence.entry(root).or_default().push(repaired.repairs[ri].evidence.as_str());
    }
    let mut out = Vec::new();
    for (k, &root) in tree.roots.iter().enumerate() {
        let Some(mut how) = evidence.remove(&root) else { continue };
        let mut traces: Vec<TraceId> = tree
            .request_nodes(k)
            .iter()
            .filter(|&&n| tree.is_real(n))
            .map(|&n| ix.spans[n as usize].trace_id)
            .collect();
        traces.sort_unstable();
        traces.dedup();
        if traces.len() < 2 {
            continue;
        }
        how.sort_unstable();
        how.dedup();
        let span = ix.spans[root as usize];
        let list: Vec<String> = traces.iter().map(TraceId::to_string).collect();
        let message = format!(
            "request `{}` ({}) is split over {} trace IDs ({}); the connected view joins them by {}; fix: propagate trace context across the hops reported for this request so every backend sees one trace",
            span.name,
            span.service_name(),
            traces.len(),
            list.join(", "),
            how.join(", ")
        );
        out.push((span.start_unix_nano, Finding::at(span, FindingKind::TraceDiscontinuity, None, message)));
    }
    out
}

fn requests(
    ix: &assemble::Index,
    tree: &connect::Tree,
    repaired: &repair::Repaired,
    timing: &timing::Timing,
    per_request: &[(Rollup, std::collections::BTreeSet<u32>)],
    per_request_delegations: &[Vec<Delegation>],
    config: &Config,
) -> Vec<Request> {
    // Tree strings repeat on every span of a kind: share one copy of each.
    let mut shared: HashSet<Arc<str>, assemble::FastHash> = HashSet::default();
    let mut share = |text: &str| -> Arc<str> {
        if let Some(t) = shared.get(text) {
            return Arc::clone(t);
        }
        let t: Arc<str> = Arc::from(text);
        shared.insert(Arc::clone(&t));
        t
    };
    let agents: Vec<Arc<str>> = tree.agents.iter().map(|a| Arc::from(a.as_str())).collect();
    // An instance has one service: resolve it once per instance, not per span.
    let mut instance_service: Vec<Option<Arc<str>>> = vec![None; ix.instances.len()];
    tree.roots
        .iter()
        .enumerate()
        .zip(&timing.per_root)
        .map(|((k, &root), &critical)| {
            let nodes = tree.request_nodes(k);
            let base = tree.start[root as usize];
            let mut originals: Vec<TraceId> =
                nodes.iter().filter(|&&n| tree.is_real(n)).map(|&n| ix.spans[n as usize].trace_id).collect();
            originals.sort_unstable();
            originals.dedup();
            let session = nodes
                .iter()
                .filter(|&&n| tree.is_real(n))
                .find_map(|&n| ix.session_of(n))
                .map(|s| ix.sessions[s as usize].clone());
            let spans = if config.include_tree {
                nodes
                    .iter()
                    .map(|&n| {
                        let real = tree.is_real(n);
                        TreeSpan {
                            span_id: tree.span_id(ix, n),
                            parent_span_id: tree.parent[n as usize].map(|p| tree.span_id(ix, p)),
                            original_trace_id: if real {
                                ix.spans[n as usize].trace_id
                            } else {
                                ix.spans[tree.transits[n as usize - tree.real].producer as usize].trace_id
                            },
                            depth: tree.depth[n as usize],
                            name: if real { share(&ix.spans[n as usize].name) } else { share(&tree.name(ix, n)) },
                            service: if real {
                                let slot = &mut instance_service[ix.instance_of[n as usize] as usize];
                                Arc::clone(slot.get_or_insert_with(|| share(ix.service[n as usize])))
                            } else {
                                share(tree.service(ix, n))
                            },
                            agent: Arc::clone(&agents[tree.agent[n as usize] as usize]),
                            kind: if real { ix.spans[n as usize].kind } else { agentrace_model::SpanKind::Internal },
                            category: tree.category(ix, n),
                            offset_ms: ((tree.start[n as usize] as i128 - base as i128) as f64 / 1e3).round() / 1e3,
                            duration_ms: ms(tree.end[n as usize] - tree.start[n as usize]),
                            error: real && ix.facts[n as usize].error,
                            synthetic: !real,
                            repaired: repaired.joined(n).map(|ri| repaired.repairs[ri].evidence),
                            critical: timing.critical[n as usize],
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let span = ix.spans[root as usize];
            Request {
                trace_id: span.trace_id,
                span_id: span.span_id,
                name: span.name.clone(),
                service: span.service_name().to_owned(),
                session,
                start_unix_nano: base,
                duration_ms: ms(tree.reach[root as usize] - base),
                critical_path_ms: ms(critical),
                original_traces: originals,
                agents: per_request[k].1.iter().map(|&a| tree.agents[a as usize].clone()).collect(),
                delegations: per_request_delegations.get(k).cloned().unwrap_or_default(),
                usage: per_request[k].0.clone(),
                spans,
            }
        })
        .collect()
}

fn sessions(ix: &assemble::Index, tree: &connect::Tree) -> Vec<SessionSummary> {
    let mut traces: Vec<Vec<TraceId>> = vec![Vec::new(); ix.sessions.len()];
    for (t, s) in ix.trace_session.iter().enumerate() {
        if let Some(s) = s {
            traces[*s as usize].push(ix.spans[ix.traces[t].start as usize].trace_id);
        }
    }
    let mut requests = vec![0u64; ix.sessions.len()];
    for &root in &tree.roots {
        if let Some(s) = ix.session_of(root) {
            requests[s as usize] += 1;
        }
    }
    ix.sessions
        .iter()
        .zip(traces)
        .zip(requests)
        .map(|((id, traces), requests)| SessionSummary { id: id.clone(), traces, requests })
        .collect()
}
