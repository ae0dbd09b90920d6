//! The web UI's read API: connected requests as the live pipeline stored
//! them, and the connected view of a trace's request or a session, with the
//! doctor's answer.
//!
//! The api_v3 routes answer spans exactly as received; these answer what
//! the doctor makes of them. The request list reads the rows the live
//! pipeline stored (`assemble`): one per connected request, with the
//! doctor's answer for it, so a page runs no diagnosis. A trace's page is
//! the connected view of the request that holds the trace, diagnosed on
//! read from the same spans the live diagnosis reads (the request's traces,
//! those sharing a key or its session, those that ran beside it), so it
//! says what the stored row says, and `agentrace doctor --server --trace`
//! diagnoses those same spans (`/context`).
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/agentrace/requests?service=&agent=&session=&findings=true&broken=true&errors=true&min_duration=&min_tokens=&start=&end=&q=NAME_OR_TRACE_ID&trace=&before=START_NS:ID:ROOT_SPAN_ID&limit=50&answers=true` | `{"live", "requests": [RequestListRow]}`: connected requests, newest first, one row per request however many traces it arrived in; `trace` (or a trace ID in `q`) finds the request holding any of its trace IDs; `live` is false when no live pipeline runs (then nothing is listed) |
//! | `GET /api/agentrace/requests/{trace_id}` | the stored row of the request holding that trace (whichever arrived piece the ID names), with the doctor's answer: findings, repairs, failure, retries, agents, usage |
//! | `GET /api/agentrace/traces/{trace_id}` | `{"trace_id", "request_id", "diagnosis": Diagnosis, "spans": {"resourceSpans": [...]}}`: the request holding the trace, its diagnosis scoped to it, its connected view (reparent mode) |
//! | `GET /api/agentrace/traces/{trace_id}/context` | the spans that diagnosis reads, OTLP JSON |
//! | `GET /api/agentrace/sessions/{session_id}` | `{"session", "diagnosis", "spans"}` over every trace of the session |
//! | `GET /api/agentrace/sessions?limit=50` | `{"sessions": [{"id", "start_unix_nano", "last_unix_nano", "traces"}]}`, most recently active first |
//! | `GET /api/agentrace/traces?service=&agent=&session=&errors=true&findings=true&min_duration=250ms&start=RFC3339&end=RFC3339&q=&limit=50` | `{"traces": [TraceRow]}`: traces as they arrived, newest first, analysed on read; what the UI lists when no live pipeline stores requests |
//!
//! Never does: load every stored trace. The trace list walks the span
//! indexes newest first and stops at a page; filters that need the analysis
//! or the whole trace (`agent`, `findings`, `min_duration`) look at a bounded
//! number of recent candidates (`MAX_ANALYSED_CANDIDATES`, 500).

use std::sync::Arc;
use std::time::Instant;

use agentrace_doctor::{Config, Diagnosis, Doctor, RepairMode};
use agentrace_model::keys::KeyKind;
use agentrace_model::{Span, SpanId, TraceId};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ApiError;
use super::search::{duration_nanos, rfc3339_nanos};
use crate::store::Store;
use crate::store::query::{self, RecentFilter};

/// Rows per list page by default, and at most.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;

/// Recent traces a filter that needs the analysis (`agent`, `findings`,
/// `min_duration`) looks at before it answers with what it found. Until
/// per-trace analysis is stored, such a filter cannot use an index.
const MAX_ANALYSED_CANDIDATES: usize = 500;

#[derive(Clone)]
struct ConnectedState {
    store: Store,
    doctor: Arc<Doctor>,
    /// Whether a live pipeline stores requests (else the request list is
    /// empty and says so).
    live: bool,
}

/// The doctor that diagnoses on read: it judges as the live pipeline
/// judges (its apply threshold) and shows the connected view reparented.
pub(crate) fn read_doctor(pipeline: &crate::config::PipelineConfig) -> Arc<Doctor> {
    let config = Config { apply_threshold: pipeline.apply_threshold, ..Config::default() };
    Arc::new(Doctor::new(config.with_repair_mode(RepairMode::Reparent)))
}

/// The UI's read routes.
pub(crate) fn router(store: Store, doctor: Arc<Doctor>, live: bool) -> Router {
    Router::new()
        .route("/api/agentrace/traces", get(list_traces))
        .route("/api/agentrace/traces/{trace_id}", get(get_trace))
        .route("/api/agentrace/traces/{trace_id}/context", get(get_trace_context))
        .route("/api/agentrace/sessions", get(list_sessions))
        .route("/api/agentrace/requests", get(list_requests))
        .route("/api/agentrace/facets", get(facets))
        .route("/api/agentrace/requests/{trace_id}", get(get_request))
        .route("/api/agentrace/sessions/{session_id}", get(get_session))
        .with_state(ConnectedState { store, doctor, live })
}

/// A span's session, the one vocabulary's way, and whether it is only a
/// conversation.
/// A trace's answer: the request holding it, diagnosed.
#[derive(Serialize)]
struct TraceAnswer<'a> {
    trace_id: String,
    request_id: Option<String>,
    diagnosis: &'a agentrace_doctor::Diagnosis,
    #[serde(skip_serializing_if = "Option::is_none")]
    spans: Option<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
}

/// A session's answer: its traces, diagnosed together.
#[derive(Serialize)]
struct SessionAnswer<'a> {
    session: String,
    diagnosis: &'a agentrace_doctor::Diagnosis,
    #[serde(skip_serializing_if = "Option::is_none")]
    spans: Option<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
}

/// What a trace's or session's answer carries.
#[derive(Debug, Default, Deserialize)]
struct ViewParams {
    /// `false`: the diagnosis (with the connected tree) only, without the
    /// repaired spans as OTLP JSON: about half the bytes of a big trace,
    /// for a first paint; the UI fetches the spans after.
    spans: Option<bool>,
}

impl ViewParams {
    /// The connected view as OTLP JSON, unless `spans=false` left it out.
    fn spans_of(
        &self,
        view: &[Span],
    ) -> Option<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest> {
        (self.spans != Some(false)).then(|| Span::to_request(view))
    }
}

async fn get_trace(
    State(state): State<ConnectedState>,
    Path(trace_id): Path<String>,
    Query(params): Query<ViewParams>,
) -> Result<Response, ApiError> {
    let id = TraceId::from_hex(&trace_id).map_err(|e| ApiError::bad_request(format!("invalid trace id: {e}")))?;
    let key = id.as_bytes().to_vec();
    let spans = state.store.read(move |conn| query::request_context(conn, &key)).await?;
    // The request that holds the trace, whichever arrived piece the ID names.
    let Some((diagnosis, view)) = state.doctor.analyse_request(&spans, id) else {
        return Err(ApiError::not_found(format!("trace {id} not found")));
    };
    let request = diagnosis.requests.first().map(|r| r.trace_id.to_string());
    // Serialized straight from the diagnosis: a 10,000-span answer built
    // as a `serde_json::Value` first spent more time in maps than in the doctor.
    let spans = params.spans_of(&view);
    Ok(axum::Json(TraceAnswer { trace_id: id.to_string(), request_id: request, diagnosis: &diagnosis, spans })
        .into_response())
}

/// The spans a diagnosis of the trace's request reads, as OTLP JSON:
/// `agentrace doctor --server URL --trace ID` diagnoses them itself and so
/// answers as the live pipeline and this API do.
async fn get_trace_context(
    State(state): State<ConnectedState>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = TraceId::from_hex(&trace_id).map_err(|e| ApiError::bad_request(format!("invalid trace id: {e}")))?;
    let key = id.as_bytes().to_vec();
    let spans = state.store.read(move |conn| query::request_context(conn, &key)).await?;
    if !spans.iter().any(|s| s.trace_id == id) {
        return Err(ApiError::not_found(format!("trace {id} not found")));
    }
    Ok(axum::Json(Span::to_request(&spans)).into_response())
}

async fn get_session(
    State(state): State<ConnectedState>,
    Path(session): Path<String>,
    Query(params): Query<ViewParams>,
) -> Result<Response, ApiError> {
    let wanted = session.clone();
    let spans = state
        .store
        .read(move |conn| {
            let ids = query::session_trace_ids(conn, &KeyKind::SESSIONS, &wanted)?;
            query::spans_of(conn, &ids)
        })
        .await?;
    if spans.is_empty() {
        return Err(ApiError::not_found(format!("session {session} not found")));
    }
    let (diagnosis, view) = state.doctor.analyse_with_view(&spans);
    let spans = params.spans_of(&view);
    Ok(axum::Json(SessionAnswer { session, diagnosis: &diagnosis, spans }).into_response())
}

/// The list's query string.
#[derive(Debug, Default, Deserialize)]
struct ListParams {
    service: Option<String>,
    agent: Option<String>,
    session: Option<String>,
    errors: Option<bool>,
    findings: Option<bool>,
    min_duration: Option<String>,
    start: Option<String>,
    end: Option<String>,
    q: Option<String>,
    limit: Option<usize>,
}

/// One row of the trace list: what the UI's table shows for one trace as it
/// arrived. The lead's stored per-trace analysis can produce the same shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceRow {
    /// Lowercase hex trace ID.
    pub trace_id: String,
    /// The trace's session, if a span carries one.
    pub session: Option<String>,
    /// Service of the trace's earliest root (or earliest span).
    pub root_service: String,
    /// Name of that span.
    pub root_name: String,
    /// Earliest span start, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// From the earliest start to the latest end, milliseconds.
    pub duration_ms: f64,
    /// Spans stored.
    pub spans: u64,
    /// Agents seen in the trace.
    pub agents: Vec<String>,
    /// Input tokens of its LLM calls.
    pub input_tokens: u64,
    /// Output tokens of its LLM calls.
    pub output_tokens: u64,
    /// Cost of its LLM calls, US dollars.
    pub cost_usd: f64,
    /// Findings at spans of this trace, with the rest of the page as context.
    pub findings: u64,
    /// Spans with status ERROR.
    pub errors: u64,
}

/// The rows for `ids` (one page, in order). Each trace is analysed alone
/// for its own numbers, and the page is analysed together once so that an
/// orphan whose producer is on the same page is seen as one.
fn trace_rows(doctor: &Doctor, traces: &[Vec<Span>]) -> Vec<TraceRow> {
    let all: Vec<Span> = traces.iter().flatten().cloned().collect();
    let page = doctor.analyse(&all);
    traces
        .iter()
        .filter_map(|spans| {
            let root = spans
                .iter()
                .filter(|s| s.parent_span_id.is_none())
                .min_by_key(|s| s.start_unix_nano)
                .or_else(|| spans.iter().min_by_key(|s| s.start_unix_nano))?;
            let own: Diagnosis = doctor.analyse(spans);
            let trace_id = root.trace_id;
            let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
            let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(start);
            let session = spans.iter().find_map(|s| query::session_of(s).map(|(v, _)| v));
            Some(TraceRow {
                trace_id: trace_id.to_string(),
                session,
                root_service: root.service_name().to_owned(),
                root_name: root.name.clone(),
                start_unix_nano: start,
                duration_ms: (end.saturating_sub(start) as f64 / 1_000.0).round() / 1_000.0,
                spans: spans.len() as u64,
                agents: own.agents.iter().map(|a| a.name.clone()).collect(),
                input_tokens: own.agents.iter().map(|a| a.input_tokens).sum(),
                output_tokens: own.agents.iter().map(|a| a.output_tokens).sum(),
                cost_usd: (own.agents.iter().map(|a| a.cost_usd).sum::<f64>() * 1e6).round() / 1e6,
                findings: page.findings.iter().filter(|f| f.trace_id == trace_id).count() as u64,
                errors: spans.iter().filter(|s| s.status_code == agentrace_model::StatusCode::Error).count() as u64,
            })
        })
        .collect()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

async fn list_traces(
    State(state): State<ConnectedState>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut filter = RecentFilter {
        service: non_empty(params.service),
        errors_only: params.errors.unwrap_or(false),
        name_contains: non_empty(params.q),
        ..RecentFilter::default()
    };
    if let Some(start) = non_empty(params.start) {
        filter.start_min_ns = Some(rfc3339_nanos("start", &start)?);
    }
    if let Some(end) = non_empty(params.end) {
        filter.start_max_ns = Some(rfc3339_nanos("end", &end)?);
    }
    let min_duration_ms = match non_empty(params.min_duration) {
        Some(d) => Some(duration_nanos("min_duration", &d)? as f64 / 1e6),
        None => None,
    };
    let agent = non_empty(params.agent);
    let with_findings = params.findings.unwrap_or(false);
    let session = non_empty(params.session);
    let needs_analysis = agent.is_some() || with_findings || min_duration_ms.is_some();
    let started = Instant::now();
    let doctor = Arc::clone(&state.doctor);
    let rows = state
        .store
        .read(move |conn| {
            if let Some(session) = &session {
                filter.within = Some(query::session_trace_ids(conn, &KeyKind::SESSIONS, session)?);
            }
            let want = if needs_analysis { MAX_ANALYSED_CANDIDATES } else { limit };
            let ids = query::recent_trace_ids(conn, &filter, want)?;
            let mut rows = Vec::new();
            for page in ids.chunks(limit) {
                let traces: Vec<Vec<Span>> =
                    page.iter().map(|id| query::spans_of(conn, std::slice::from_ref(id))).collect::<Result<_, _>>()?;
                rows.extend(trace_rows(&doctor, &traces).into_iter().filter(|row| {
                    agent.as_ref().is_none_or(|a| row.agents.contains(a))
                        && (!with_findings || row.findings > 0)
                        && min_duration_ms.is_none_or(|d| row.duration_ms >= d)
                }));
                if rows.len() >= limit {
                    break;
                }
            }
            rows.truncate(limit);
            // The scan picks the most recently active traces; a page reads
            // best by start, newest first, as Jaeger lists them.
            rows.sort_by(|a, b| b.start_unix_nano.cmp(&a.start_unix_nano).then_with(|| b.trace_id.cmp(&a.trace_id)));
            Ok(rows)
        })
        .await?;
    tracing::debug!(rows = rows.len(), elapsed = ?started.elapsed(), "trace list");
    Ok(axum::Json(json!({ "traces": rows })).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct SessionListParams {
    limit: Option<usize>,
}

async fn list_sessions(
    State(state): State<ConnectedState>,
    Query(params): Query<SessionListParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let sessions = state.store.read(move |conn| query::recent_sessions(conn, &KeyKind::SESSIONS, limit)).await?;
    Ok(axum::Json(json!({ "sessions": sessions })).into_response())
}

/// The root services, agents and models of stored requests, for the UI's pickers.
async fn facets(State(state): State<ConnectedState>) -> Result<Response, ApiError> {
    let facets = state.store.read(|conn| query::request_facets(conn, MAX_FACETS)).await?;
    Ok(axum::Json(facets).into_response())
}

/// Names in each picker, at most.
const MAX_FACETS: usize = 1000;

/// The request list's query string.
#[derive(Debug, Default, Deserialize)]
struct RequestParams {
    service: Option<String>,
    agent: Option<String>,
    model: Option<String>,
    session: Option<String>,
    findings: Option<bool>,
    broken: Option<bool>,
    errors: Option<bool>,
    min_duration: Option<String>,
    min_tokens: Option<i64>,
    start: Option<String>,
    end: Option<String>,
    q: Option<String>,
    trace: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
    answers: Option<bool>,
    sort: Option<String>,
    order: Option<String>,
    offset: Option<usize>,
}

fn trace_bytes(name: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    TraceId::from_hex(text)
        .map(|t| t.as_bytes().to_vec())
        .map_err(|e| ApiError::bad_request(format!("{name} must be a trace ID (32 hex digits): {e}")))
}

async fn list_requests(
    State(state): State<ConnectedState>,
    Query(params): Query<RequestParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut filter = query::RequestFilter {
        service: non_empty(params.service),
        agent: non_empty(params.agent),
        model: non_empty(params.model),
        session: non_empty(params.session),
        findings: params.findings.unwrap_or(false),
        broken: params.broken.unwrap_or(false),
        errors: params.errors.unwrap_or(false),
        min_tokens: params.min_tokens,
        ..Default::default()
    };
    // A trace ID typed into the search box finds the request holding it.
    match non_empty(params.q) {
        Some(q) if q.len() == 32 && TraceId::from_hex(&q).is_ok() => filter.trace_id = Some(trace_bytes("q", &q)?),
        q => filter.name_contains = q,
    }
    if let Some(d) = non_empty(params.min_duration) {
        filter.min_duration_ns = Some(duration_nanos("min_duration", &d)?);
    }
    if let Some(start) = non_empty(params.start) {
        filter.start_min_ns = Some(rfc3339_nanos("start", &start)?);
    }
    if let Some(end) = non_empty(params.end) {
        filter.start_max_ns = Some(rfc3339_nanos("end", &end)?);
    }
    if let Some(t) = non_empty(params.trace) {
        filter.trace_id = Some(trace_bytes("trace", &t)?);
    }
    if let Some(b) = non_empty(params.before) {
        let bad = || {
            ApiError::bad_request(format!(
                "before must be START_NS:REQUEST_ID:ROOT_SPAN_ID, as a page's last row gives: {b:?}"
            ))
        };
        let mut parts = b.split(':');
        let (Some(start), Some(id), Some(root), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let root = SpanId::from_hex(root).map_err(|_| bad())?;
        filter.before = Some((start.parse().map_err(|_| bad())?, trace_bytes("before", id)?, root.as_bytes().to_vec()));
    }
    if let Some(sort) = non_empty(params.sort) {
        filter.sort = query::RequestSort::parse(&sort).ok_or_else(|| {
            ApiError::bad_request(format!("sort must be one of {}: {sort:?}", query::RequestSort::NAMES.join(", ")))
        })?;
    }
    filter.ascending = match non_empty(params.order).as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => return Err(ApiError::bad_request(format!("order must be asc or desc: {other:?}"))),
    };
    if let Some(offset) = params.offset {
        if offset > query::MAX_OFFSET {
            return Err(ApiError::bad_request(format!(
                "offset must be at most {}: narrow the filter instead (e.g. start/end)",
                query::MAX_OFFSET
            )));
        }
        filter.offset = offset;
    }
    let with_answer = params.answers.unwrap_or(false);
    let rows = state.store.read(move |conn| query::requests(conn, &filter, limit, with_answer)).await?;
    Ok(axum::Json(json!({ "live": state.live, "requests": rows })).into_response())
}

async fn get_request(State(state): State<ConnectedState>, Path(trace_id): Path<String>) -> Result<Response, ApiError> {
    let id = trace_bytes("the trace", &trace_id)?;
    let filter = query::RequestFilter { trace_id: Some(id), ..Default::default() };
    let mut rows = state.store.read(move |conn| query::requests(conn, &filter, 1, true)).await?;
    match rows.pop() {
        Some(row) => Ok(axum::Json(row).into_response()),
        None => Err(ApiError::not_found(format!(
            "no request holds trace {trace_id} (yet: a trace is diagnosed once no span of it arrived for the trace timeout)"
        ))),
    }
}
