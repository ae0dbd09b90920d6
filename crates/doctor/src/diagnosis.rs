//! The doctor's answer: [`Diagnosis`] and the records it holds.
//!
//! End of the analysis road: everything here is plain data that serialises
//! to the JSON shape PRODUCT.md fixes (`findings`, `repairs`, `failure`,
//! `time_breakdown`, `agents`) plus the connected requests, sessions and
//! delegations. IDs serialise as lowercase hex; durations are milliseconds
//! rounded to the microsecond, so the same input always prints the same text.

use std::sync::Arc;

use agentrace_model::{SpanId, SpanKind, TraceId};
use serde::{Deserialize, Serialize};

use crate::conventions::{AgentSource, Category};

/// The kinds of broken propagation, with the stable names of PRODUCT.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A root that starts in the middle of a session's work: a hand-off failed to propagate.
    OrphanRoot,
    /// One logical request is split over several trace IDs.
    TraceDiscontinuity,
    /// A tool or MCP span that is a root: the tool layer lost context.
    ToolRoot,
    /// Time inside a parent, or between a producer and its consumer, that no span explains.
    TimingGap,
    /// A span names a parent that never arrived.
    MissingParent,
    /// A root that starts while a span of the same service instance is active.
    LostContext,
}

impl FindingKind {
    /// Whether the finding says trace context broke (every kind but
    /// `timing_gap`, which says where time went unexplained: a slow hop is
    /// not a broken one).
    pub fn is_broken(self) -> bool {
        self != FindingKind::TimingGap
    }

    /// The stable name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::OrphanRoot => "orphan_root",
            FindingKind::TraceDiscontinuity => "trace_discontinuity",
            FindingKind::ToolRoot => "tool_root",
            FindingKind::TimingGap => "timing_gap",
            FindingKind::MissingParent => "missing_parent",
            FindingKind::LostContext => "lost_context",
        }
    }
}

/// One thing that broke, at one span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What kind of break.
    pub kind: FindingKind,
    /// The span's trace, as it arrived (what Jaeger or Tempo shows).
    pub trace_id: TraceId,
    /// The span where the break shows.
    pub span_id: SpanId,
    /// One sentence: what happened, and what to fix at that boundary.
    pub message: String,
    /// The span's name.
    pub name: String,
    /// The span's service.
    pub service: String,
    /// The evidence that tied the span to its caller, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

impl Finding {
    /// A finding about `span`, naming it by its IDs, name and service.
    pub fn at(span: &agentrace_model::Span, kind: FindingKind, evidence: Option<Evidence>, message: String) -> Finding {
        Finding {
            kind,
            trace_id: span.trace_id,
            span_id: span.span_id,
            message,
            name: span.name.clone(),
            service: span.service_name().to_owned(),
            evidence,
        }
    }
}

/// What tied an orphan to its parent, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Evidence {
    /// The orphan links to the parent's context.
    #[serde(rename = "link")]
    Link,
    /// A producer and a consumer carry the same `messaging.message.id`.
    #[serde(rename = "messaging.message.id")]
    MessageId,
    /// An MCP client and server span carry the same (`mcp.session.id`, `jsonrpc.request.id`).
    #[serde(rename = "mcp.session.id+jsonrpc.request.id")]
    McpRequest,
    /// An MCP client and server span carry the same `jsonrpc.request.id`
    /// (and method and tool), and the client call encloses the server span:
    /// for instrumentations that record no `mcp.session.id`.
    #[serde(rename = "jsonrpc.request.id+time")]
    RequestIdInTime,
    /// Both carry the same `gen_ai.tool.call.id`.
    #[serde(rename = "gen_ai.tool.call.id")]
    ToolCallId,
    /// Heuristic: a client span of another service, in the same session, encloses the orphan.
    #[serde(rename = "heuristic.enclosing_client")]
    EnclosingClient,
    /// Heuristic: a call of the same tool in another service, which reached
    /// no instrumented server, encloses the orphan tool span.
    #[serde(rename = "heuristic.enclosing_tool_call")]
    EnclosingToolCall,
    /// Heuristic: an unconsumed producer span in the same session precedes the orphan.
    #[serde(rename = "heuristic.preceding_producer")]
    PrecedingProducer,
    /// Heuristic: a span of the same service instance was active when the orphan started.
    #[serde(rename = "heuristic.same_instance")]
    SameInstance,
}

impl Evidence {
    /// The name written into `agentrace.repair.evidence` and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Link => "link",
            Evidence::MessageId => "messaging.message.id",
            Evidence::McpRequest => "mcp.session.id+jsonrpc.request.id",
            Evidence::RequestIdInTime => "jsonrpc.request.id+time",
            Evidence::ToolCallId => "gen_ai.tool.call.id",
            Evidence::EnclosingClient => "heuristic.enclosing_client",
            Evidence::EnclosingToolCall => "heuristic.enclosing_tool_call",
            Evidence::PrecedingProducer => "heuristic.preceding_producer",
            Evidence::SameInstance => "heuristic.same_instance",
        }
    }

    /// Whether the evidence is an exact join key rather than a heuristic.
    pub fn is_exact(self) -> bool {
        matches!(self, Evidence::Link | Evidence::MessageId | Evidence::McpRequest | Evidence::ToolCallId)
    }
}

/// A proposed join of an orphan root to its true parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repair {
    /// The orphan.
    pub span_id: SpanId,
    /// The orphan's trace, as it arrived.
    pub trace_id: TraceId,
    /// The proposed parent.
    pub parent_span_id: SpanId,
    /// The proposed parent's trace, as it arrived.
    pub parent_trace_id: TraceId,
    /// What ties them.
    pub evidence: Evidence,
    /// The evidence's value, for a human (`messaging.message.id=m-42`).
    pub detail: String,
    /// From 0 to 1; applied at or above the configured threshold.
    pub confidence: f64,
    /// Whether the connected view uses this repair.
    pub applied: bool,
    /// Why it was not applied (below threshold, ambiguous, a cycle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The first thing that went wrong in a request, and the road to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// `retrieval`, `llm`, `tool`, `handoff`, `agent` or `other`.
    pub category: Category,
    /// The blamed span's trace, as it arrived.
    pub trace_id: TraceId,
    /// The blamed span.
    pub span_id: SpanId,
    /// One sentence for a human.
    pub summary: String,
    /// The blamed span's name.
    pub name: String,
    /// The blamed span's service.
    pub service: String,
    /// The error type, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The error message, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the error surfaced, when that is not the blamed span (a
    /// parser that choked on a tool's output blames the tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surfaced_at: Option<SpanId>,
    /// From the request's root down to the blamed span.
    pub chain: Vec<ChainLink>,
}

/// An error that a later attempt of the same step recovered from: reported
/// with what it cost, not as the request's failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// The failed attempt's trace, as it arrived.
    pub trace_id: TraceId,
    /// The failed attempt.
    pub span_id: SpanId,
    /// Its name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Its category.
    pub category: Category,
    /// The error type, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The attempt that succeeded.
    pub retried_by: SpanId,
    /// From the failed attempt's start to the successful one's, ms.
    pub cost_ms: f64,
}

/// One step of a failure chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainLink {
    /// The span.
    pub span_id: SpanId,
    /// Its name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Its category.
    pub category: Category,
}

/// Critical-path time of one category in one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeShare {
    /// `llm`, `tool`, `retrieval`, `handoff`, `agent` or `unexplained`.
    pub category: Category,
    /// The agent the time belongs to.
    pub agent: String,
    /// Milliseconds on the critical path.
    pub ms: f64,
    /// Share of all critical-path time, 0 to 1.
    pub share: f64,
}

/// Totals over an agent and every agent it delegates to, each counted once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    /// LLM calls.
    pub llm_calls: u64,
    /// Tool calls.
    pub tool_calls: u64,
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output (completion) tokens.
    pub output_tokens: u64,
    /// Input tokens read from a prompt cache: part of `input_tokens`
    /// (absent from JSON when none were recorded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Input tokens written to a prompt cache: part of `input_tokens`
    /// (absent from JSON when none were recorded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_input_tokens: u64,
    /// Output tokens spent on reasoning: part of `output_tokens` (absent
    /// from JSON when none were recorded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    /// Cost in US dollars, from the price table.
    pub cost_usd: f64,
    /// Errors that started in the agent (not errors passed up from below).
    pub errors: u64,
}

/// One agent of the agent graph, with its own numbers and its subtree's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStats {
    /// `gen_ai.agent.name` (or the name another convention gives it),
    /// else the service name.
    pub name: String,
    /// Which convention named it (`service` when none did).
    pub source: AgentSource,
    /// Delegation depth: 0 for an agent that receives requests, +1 per hand-off.
    pub depth: u32,
    /// LLM calls the agent made itself.
    pub llm_calls: u64,
    /// Tool calls the agent made itself.
    pub tool_calls: u64,
    /// Input tokens of its own LLM calls.
    pub input_tokens: u64,
    /// Output tokens of its own LLM calls.
    pub output_tokens: u64,
    /// Of its input tokens, those read from a prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Of its input tokens, those written to a prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_input_tokens: u64,
    /// Of its output tokens, those spent on reasoning.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    /// Cost of its own LLM calls, US dollars.
    pub cost_usd: f64,
    /// Wall time of its invocations, milliseconds.
    pub duration_ms: f64,
    /// Errors that started in this agent.
    pub errors: u64,
    /// Agents it hands work to.
    pub delegates_to: Vec<String>,
    /// Its numbers plus those of every agent below it.
    pub subtree: Rollup,
}

/// A hand-off between two agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The calling agent.
    pub from: String,
    /// The called agent.
    pub to: String,
    /// How: `invoke_agent`, `queue`, `tool`, `call`, `graph` (a graph
    /// framework said so), `handoff` (a hand-off span said so) or
    /// `unjoined` (an agent run lost its caller, and every candidate caller
    /// is of this agent: the edge is sure, the join was only suggested).
    pub via: String,
    /// How many times.
    pub count: u64,
}

/// The traces of one session (`session.id` or `gen_ai.conversation.id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// The session ID.
    pub id: String,
    /// Its traces, as they arrived.
    pub traces: Vec<TraceId>,
    /// Connected requests (roots after repair) among them.
    pub requests: u64,
}

/// One span of the connected view, as the waterfall shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeSpan {
    /// The span.
    pub span_id: SpanId,
    /// Its parent in the connected view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    /// Its trace as it arrived.
    pub original_trace_id: TraceId,
    /// Depth below the request root.
    pub depth: u32,
    /// Name. Tree strings are shared: a million spans carry a few dozen
    /// distinct names, services and agents.
    #[serde(with = "shared_str")]
    pub name: Arc<str>,
    /// Service.
    #[serde(with = "shared_str")]
    pub service: Arc<str>,
    /// Agent it is attributed to.
    #[serde(with = "shared_str")]
    pub agent: Arc<str>,
    /// Kind.
    pub kind: SpanKind,
    /// Category.
    pub category: Category,
    /// Start, milliseconds after the request's start.
    pub offset_ms: f64,
    /// Duration, milliseconds.
    pub duration_ms: f64,
    /// Whether it records an error.
    pub error: bool,
    /// Made up by the doctor (queue transit).
    pub synthetic: bool,
    /// The evidence, when this span was joined to its parent by a repair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired: Option<Evidence>,
    /// Whether part of it lies on the critical path.
    pub critical: bool,
}

/// One request: a root of the connected view and its tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The connected trace ID (the root's).
    pub trace_id: TraceId,
    /// The root span.
    pub span_id: SpanId,
    /// Root name.
    pub name: String,
    /// Root service.
    pub service: String,
    /// Session, if any span carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// From the root's start to the end of the last work it caused, ms.
    pub duration_ms: f64,
    /// Length of its critical path, ms (its duration, less any stretch
    /// before a late child that skew pushed past the root).
    pub critical_path_ms: f64,
    /// Trace IDs joined into this request, as they arrived.
    pub original_traces: Vec<TraceId>,
    /// The agents that worked in it, by name.
    #[serde(default)]
    pub agents: Vec<String>,
    /// The hand-offs between them in this request: the agent graph's edges
    /// that its own spans made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegations: Vec<Delegation>,
    /// What it spent: model calls, tool calls, tokens, cost, causal errors,
    /// counted as each agent's own totals are.
    #[serde(default)]
    pub usage: Rollup,
    /// The spans, depth first, children by start time; empty when the
    /// configuration turns the tree off.
    pub spans: Vec<TreeSpan>,
}

/// What the doctor says about one connected request: the answer for any
/// trace ID that arrived as part of it. The file doctor (`--trace`), the
/// live pipeline's stored rows and the API all build it here, from a
/// diagnosis over the request and everything around it, so that the same
/// spans give the same answer wherever a user asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestAnswer {
    /// The request: its root, member traces, agents, usage and critical path.
    pub request: Request,
    /// Findings at spans of its traces.
    pub findings: Vec<Finding>,
    /// Joins of its orphans, applied or suggested (an orphan whose join is
    /// only suggested is a request of its own, and its answer holds it).
    pub repairs: Vec<Repair>,
    /// Where it failed, if it did.
    pub failure: Option<Failure>,
    /// Errors in it that a later attempt recovered from.
    pub retries: Vec<Retry>,
}

/// Counts at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Spans analysed (after removing duplicates).
    pub spans: u64,
    /// Trace IDs as they arrived.
    pub traces: u64,
    /// Requests in the connected view.
    pub requests: u64,
    /// Sessions.
    pub sessions: u64,
    /// Findings.
    pub findings: u64,
    /// Repairs applied.
    pub repairs_applied: u64,
    /// Repairs proposed but not applied.
    pub repairs_suggested: u64,
    /// Synthetic spans in the connected view.
    pub synthetic_spans: u64,
}

/// Everything the doctor found in a set of spans.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Counts.
    pub summary: Summary,
    /// What broke, in time order.
    pub findings: Vec<Finding>,
    /// Joins of orphans to parents, applied or suggested.
    pub repairs: Vec<Repair>,
    /// The earliest failure over all requests, if any.
    pub failure: Option<Failure>,
    /// The first failure of each failed request, in request order.
    pub failures: Vec<Failure>,
    /// Errors that a later attempt recovered from.
    #[serde(default)]
    pub retries: Vec<Retry>,
    /// Critical-path time by category and agent, largest first.
    pub time_breakdown: Vec<TimeShare>,
    /// Sum of the requests' critical paths, milliseconds.
    pub critical_path_ms: f64,
    /// The agent graph's nodes, by depth then name.
    pub agents: Vec<AgentStats>,
    /// The agent graph's edges.
    pub delegations: Vec<Delegation>,
    /// Models with token counts but no price.
    pub unpriced_models: Vec<String>,
    /// Models whose calls recorded cached input tokens but which have no
    /// cached-input price: those tokens cost the full input price, so the
    /// cost is an upper bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cached_input_at_input_price: Vec<String>,
    /// Sessions and their traces.
    pub sessions: Vec<SessionSummary>,
    /// The connected requests.
    pub requests: Vec<Request>,
}

impl Diagnosis {
    /// Whether nothing broke and nothing failed (timing gaps are not breaks).
    pub fn is_healthy(&self) -> bool {
        !self.has_broken_propagation() && self.failure.is_none()
    }

    /// Whether any finding says trace context broke.
    pub fn has_broken_propagation(&self) -> bool {
        self.findings.iter().any(|f| f.kind.is_broken())
    }

    /// The answer for each connected request, in request order.
    pub fn request_answers(&self) -> Vec<RequestAnswer> {
        (0..self.requests.len()).map(|k| self.answer(k)).collect()
    }

    /// The answer for the request that holds trace `trace` (whichever
    /// arrived piece of it the ID names).
    pub fn answer_for_trace(&self, trace: TraceId) -> Option<RequestAnswer> {
        let k = self.requests.iter().position(|r| r.original_traces.contains(&trace))?;
        Some(self.answer(k))
    }

    fn answer(&self, k: usize) -> RequestAnswer {
        let request = &self.requests[k];
        let ours = |t: &TraceId| request.original_traces.binary_search(t).is_ok();
        RequestAnswer {
            request: request.clone(),
            findings: self.findings.iter().filter(|f| ours(&f.trace_id)).cloned().collect(),
            repairs: self.repairs.iter().filter(|r| ours(&r.trace_id)).cloned().collect(),
            failure: self.failures.iter().find(|f| ours(&f.trace_id)).cloned(),
            retries: self.retries.iter().filter(|r| ours(&r.trace_id)).cloned().collect(),
        }
    }
}

/// Nanoseconds to milliseconds, rounded to the microsecond so output is stable.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(crate) fn ms(nanos: u64) -> f64 {
    (nanos as f64 / 1_000.0).round() / 1_000.0
}

/// Rounds a ratio or a price for output.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Serde for shared strings without serde's `rc` feature: a plain string
/// either way.
mod shared_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(deserializer).map(Arc::from)
    }
}
