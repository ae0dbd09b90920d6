//! The JSON API: Jaeger's query routes (the v1 JSON API in `jaeger`, and
//! api_v3 here), Grafana Tempo's HTTP API under `/tempo` (`tempo`),
//! sessions, and the collector's own `/metrics` and `/health`. The end of
//! the data's road.
//!
//! The api_v3 routes answer traces in OTLP JSON exactly as they were
//! received:
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v3/traces/{trace_id}` | `{"result": {"resourceSpans": [...]}}` |
//! | `GET /api/v3/traces?query.serviceName=…&query.startTimeMin=…` | the same, for every matching trace; 404 `No traces found` when none |
//! | `GET /api/v3/trace-summaries?query.…` | `{"summaries": [{"traceId", "rootServiceName", "rootOperationName", "minStartTimeUnixNano", "maxEndTimeUnixNano", "spanCount", "errorSpanCount", "services", "orphanSpanCount"}]}`: what Jaeger UI 2.x lists |
//! | `GET /api/v3/services` | `{"services": [...]}` |
//! | `GET /api/v3/operations?service=NAME[&spanKind=server]` | `{"operations": [{"name", "spanKind"}]}` |
//! | `GET /api/v3/sessions/{session_id}/spans` | every span of every trace of a session (`session.id` or `gen_ai.conversation.id`), and of the traces joined to those by a shared message, MCP request or tool call ID |
//! | `GET /api/v3/sessions/{session_id}/traces` | `{"traces": [{"traceId", "startTimeUnixNano", …}]}` |
//! | `GET /api/agentrace/traces/{trace_id}` | `{"trace_id", "diagnosis", "spans": {"resourceSpans"}}`: the connected view and the doctor's diagnosis (see [`connected`]) |
//! | `GET /api/agentrace/sessions/{session_id}` | `{"session", "diagnosis", "spans"}` over a whole session |
//! | `GET /api/agentrace/traces?service=&agent=&session=&errors=&findings=&min_duration=&start=&end=&q=&limit=` | `{"traces": [{"trace_id", "session", "root_service", "root_name", "start_unix_nano", "duration_ms", "spans", "agents", "input_tokens", "output_tokens", "cost_usd", "findings", "errors"}]}` |
//! | `GET /api/agentrace/sessions?limit=` | `{"sessions": [{"id", "start_unix_nano", "last_unix_nano", "traces"}]}` |
//! | `GET /`, `GET /ui/{asset}` | the web UI (see [`crate::ui`]) |
//! | `GET /api/agentrace/dead-letters` | `{"exporters": [{"exporter", "requests", "spans", "oldest_unix_nano", "newest_unix_nano", "reasons"}]}`: what backends refused for good |
//! | `POST /api/agentrace/dead-letters/replay?exporter=NAME` | `{"exporter", "replayed_requests", "replayed_spans"}`: back into its queue |
//! | `GET /metrics` | Prometheus text |
//! | `GET /health` | `{"status": "ok"}` |
//!
//! Errors answer `{"error": {"httpCode": N, "message": "…"}}`, as Jaeger's
//! api_v3 gateway does.

pub mod connected;
mod jaeger;
mod search;
mod tempo;
mod traceql;

use std::sync::Arc;

use agentrace_model::TraceId;
use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::Deserialize;
use serde_json::json;

use crate::config::{ApiConfig, PipelineConfig};
use crate::metrics::Metrics;
use crate::store::{KeyKind, Store, StoreError, query};

#[derive(Clone)]
struct ApiState {
    store: Store,
    metrics: Arc<Metrics>,
    default_search_depth: usize,
}

/// The API's routes.
pub fn router(store: Store, metrics: Arc<Metrics>, api: &ApiConfig, pipeline: &PipelineConfig) -> Router {
    let doctor = connected::read_doctor(pipeline);
    let default_search_depth = api.default_search_depth;
    Router::new()
        .route("/api/v3/traces/{trace_id}", get(get_trace))
        .route("/api/v3/traces", get(find_traces))
        .route("/api/v3/trace-summaries", get(find_trace_summaries))
        .route("/api/v3/services", get(get_services))
        .route("/api/v3/operations", get(get_operations))
        .route("/api/v3/sessions/{session_id}/spans", get(get_session_spans))
        .route("/api/v3/sessions/{session_id}/traces", get(get_session_traces))
        .route("/api/agentrace/dead-letters", get(get_dead_letters))
        .route("/api/agentrace/dead-letters/replay", axum::routing::post(replay_dead_letters))
        .route("/metrics", get(get_metrics))
        .route("/health", get(health))
        .with_state(ApiState { store: store.clone(), metrics, default_search_depth })
        .merge(jaeger::router(store.clone(), Arc::clone(&doctor), api.jaeger_connected))
        // Under a prefix: Tempo's `/api/traces/{id}` is Jaeger's too.
        .nest("/tempo", tempo::router(store.clone()))
        .merge(connected::router(store, doctor, pipeline.enabled))
        .merge(crate::ui::router())
}

/// An API error, rendered the way Jaeger's api_v3 gateway renders them.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::UNAUTHORIZED, message: message.into() }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into() }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "API read failed");
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"httpCode": self.status.as_u16(), "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

fn otlp_result(request: ExportTraceServiceRequest) -> Response {
    // `opentelemetry-proto`'s serde mapping is OTLP JSON: hex IDs, camelCase.
    let body = json!({"result": request});
    axum::Json(body).into_response()
}

/// A trace ID as the query APIs take it: hex, its leading zeros optional
/// (Jaeger and Tempo both write IDs without them).
pub(crate) fn trace_id_from_text(text: &str) -> Result<TraceId, String> {
    if text.is_empty() || text.len() > 32 {
        return Err(format!("{text:?} is not 1 to 32 hex digits"));
    }
    TraceId::from_hex(&format!("{text:0>32}")).map_err(|e| format!("{text:?}: {e}"))
}

async fn get_trace(State(state): State<ApiState>, Path(trace_id): Path<String>) -> Result<Response, ApiError> {
    let id = trace_id_from_text(&trace_id).map_err(|e| ApiError::bad_request(format!("invalid trace id {e}")))?;
    let key = id.as_bytes().to_vec();
    let request = state.store.read(move |conn| query::load_traces(conn, &[key])).await?;
    if request.resource_spans.is_empty() {
        return Err(ApiError::not_found(format!("trace {id} not found")));
    }
    Ok(otlp_result(request))
}

async fn find_traces(State(state): State<ApiState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let search = search::parse(raw.as_deref().unwrap_or(""), state.default_search_depth)?;
    let request = state
        .store
        .read(move |conn| {
            if search.attributes.is_empty() {
                let ids = query::search(conn, &search.store)?;
                return query::load_traces(conn, &ids);
            }
            let mut request = ExportTraceServiceRequest::default();
            for (_, trace) in jaeger::search_with_tags(conn, &search.store, &search.attributes)? {
                request.resource_spans.extend(trace.resource_spans);
            }
            Ok(request)
        })
        .await?;
    if request.resource_spans.is_empty() {
        // As jaeger-query answers a search that found nothing.
        return Err(ApiError::not_found("No traces found"));
    }
    Ok(otlp_result(request))
}

/// `GET /api/v3/trace-summaries`: what Jaeger UI 2.x lists for a search,
/// a row per trace without its spans (`{"summaries": []}` when none).
async fn find_trace_summaries(State(state): State<ApiState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let search = search::parse(raw.as_deref().unwrap_or(""), state.default_search_depth)?;
    let rows = state
        .store
        .read(move |conn| {
            let ids: Vec<Vec<u8>> = if search.attributes.is_empty() {
                query::search(conn, &search.store)?
            } else {
                let found = jaeger::search_with_tags(conn, &search.store, &search.attributes)?;
                found.into_iter().map(|(id, _)| id).collect()
            };
            ids.iter().map(|id| Ok((id.clone(), query::span_outlines(conn, id)?))).collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let summaries: Vec<serde_json::Value> = rows.iter().filter_map(|(id, spans)| trace_summary(id, spans)).collect();
    Ok(axum::Json(json!({ "summaries": summaries })).into_response())
}

/// One trace's summary in Jaeger's api_v3 shape: counts of zero are left
/// out, nanoseconds are strings (protobuf JSON's 64-bit integers).
fn trace_summary(trace_id: &[u8], spans: &[query::SpanOutline]) -> Option<serde_json::Value> {
    let ids: std::collections::HashSet<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
    // The root: the earliest span without a parent; else the earliest.
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .min_by_key(|s| s.start_ns)
        .or_else(|| spans.iter().min_by_key(|s| s.start_ns))?;
    let orphans = spans.iter().filter(|s| s.parent_span_id.as_deref().is_some_and(|p| !ids.contains(p))).count();
    let mut services: Vec<(&str, u64, u64)> = Vec::new();
    for s in spans {
        let error = u64::from(s.error);
        match services.iter_mut().find(|(name, _, _)| *name == s.service) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += error;
            }
            None => services.push((&s.service, 1, error)),
        }
    }
    let with_count = |mut v: serde_json::Value, key: &str, n: u64| {
        if n > 0 {
            v[key] = json!(n);
        }
        v
    };
    // By name, as jaeger-query lists them.
    services.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let errors: u64 = services.iter().map(|(_, _, e)| e).sum();
    let mut summary = json!({
        "traceId": agentrace_model::ids::to_hex(trace_id),
        "rootServiceName": root.service,
        "rootOperationName": root.name,
        "minStartTimeUnixNano": spans.iter().map(|s| s.start_ns).min()?.to_string(),
        "maxEndTimeUnixNano": spans.iter().map(|s| s.end_ns).max()?.to_string(),
        "spanCount": spans.len(),
        "services": services
            .iter()
            .map(|(name, n, e)| with_count(json!({"name": name, "spanCount": n}), "errorSpanCount", *e))
            .collect::<Vec<_>>(),
    });
    summary = with_count(summary, "errorSpanCount", errors);
    summary = with_count(summary, "orphanSpanCount", orphans as u64);
    Some(summary)
}

async fn get_services(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let services = state.store.read(query::services).await?;
    Ok(axum::Json(json!({ "services": services })).into_response())
}

#[derive(Deserialize)]
struct OperationsParams {
    service: Option<String>,
    #[serde(alias = "spanKind")]
    span_kind: Option<String>,
}

async fn get_operations(
    State(state): State<ApiState>,
    Query(params): Query<OperationsParams>,
) -> Result<Response, ApiError> {
    let service =
        params.service.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad_request("service is required"))?;
    let ops = state.store.read(move |conn| query::operations(conn, &service)).await?;
    let wanted = params.span_kind.filter(|k| !k.is_empty()).map(|k| k.to_ascii_lowercase());
    let operations: Vec<_> = ops
        .into_iter()
        // (jaeger-query lists an unspecified kind as internal.)
        .map(|(name, kind)| (name, if kind == 0 { "internal" } else { kind_name(kind) }))
        .filter(|(_, kind)| wanted.as_deref().is_none_or(|w| w == *kind))
        .map(|(name, kind)| json!({"name": name, "spanKind": kind}))
        .collect();
    Ok(axum::Json(json!({ "operations": operations })).into_response())
}

/// Span kind as Jaeger's API names it.
fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

async fn get_session_spans(State(state): State<ApiState>, Path(session): Path<String>) -> Result<Response, ApiError> {
    let request = state
        .store
        .read(move |conn| {
            let ids = query::session_trace_ids(conn, &KeyKind::SESSIONS, &session)?;
            query::load_traces(conn, &ids)
        })
        .await?;
    Ok(otlp_result(request))
}

async fn get_session_traces(State(state): State<ApiState>, Path(session): Path<String>) -> Result<Response, ApiError> {
    let summaries = state
        .store
        .read(move |conn| {
            let ids = query::session_trace_ids(conn, &KeyKind::SESSIONS, &session)?;
            query::summaries(conn, &ids)
        })
        .await?;
    let traces: Vec<_> = summaries
        .into_iter()
        .map(|s| {
            json!({
                "traceId": s.trace_id,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "spanCount": s.spans,
                "errorCount": s.errors,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "traces": traces })).into_response())
}

/// `GET /api/agentrace/dead-letters`: what each exporter's backend refused
/// for good and agentrace kept.
async fn get_dead_letters(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let exporters = state.store.read(query::dead_letters).await?;
    Ok(axum::Json(json!({ "exporters": exporters })).into_response())
}

#[derive(Deserialize)]
struct ReplayParams {
    exporter: Option<String>,
}

/// `POST /api/agentrace/dead-letters/replay?exporter=NAME`: puts an
/// exporter's dead letters back into its queue, to be sent again (once the
/// operator has fixed what the backend refused).
async fn replay_dead_letters(
    State(state): State<ApiState>,
    Query(params): Query<ReplayParams>,
) -> Result<Response, ApiError> {
    let name = params.exporter.filter(|n| !n.is_empty()).ok_or_else(|| {
        ApiError::bad_request("exporter is required: its name as GET /api/agentrace/dead-letters lists it")
    })?;
    let wanted = name.clone();
    let found = state
        .store
        .read(move |conn| {
            let id = match conn.opt_row("SELECT id FROM exporters WHERE name = ?1", &[&wanted])? {
                Some(row) => Some(row.int(0)?),
                None => None,
            };
            match id {
                Some(id) => Ok(Some((id, query::dead_letter_totals(conn, id)?))),
                None => Ok(None),
            }
        })
        .await?;
    let Some((id, (spans, bytes))) = found else {
        return Err(ApiError::not_found(format!("no exporter named {name:?}")));
    };
    let outcome = match state.store.submit(crate::store::PreparedBatch::replay_dead_letters(id)) {
        Ok(durable) => durable.await?,
        Err(e) => return Err(ApiError::unavailable(e.to_string())),
    };
    if let Some(m) = state.metrics.exporter_named(&name) {
        use std::sync::atomic::Ordering;
        m.queued_spans.fetch_add(spans, Ordering::Relaxed);
        m.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        m.dead_letter_spans.fetch_sub(spans.min(m.dead_letter_spans.load(Ordering::Relaxed)), Ordering::Relaxed);
    }
    Ok(axum::Json(json!({ "exporter": name, "replayed_requests": outcome.inserted, "replayed_spans": spans }))
        .into_response())
}

async fn get_metrics(State(state): State<ApiState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

async fn health(State(state): State<ApiState>) -> Response {
    let pending = state.store.pending();
    axum::Json(json!({"status": "ok", "pendingSpans": pending})).into_response()
}
