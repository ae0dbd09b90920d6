//! Jaeger's query JSON API (the "v1" routes of jaeger-query), so that
//! Grafana's Jaeger data source and Jaeger UI read agentrace unmodified.
//!
//! Spans leave the store as OTLP and are translated to Jaeger's JSON model
//! as the OpenTelemetry Collector's Jaeger translator does (`span.kind`,
//! `otel.status_code`, `error`, `otel.scope.*` tags; events as logs; links
//! as `FOLLOWS_FROM` references; the resource as the process).
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/services` | `{"data": ["svc", …], "total", "limit", "offset", "errors"}` |
//! | `GET /api/services/{service}/operations` | `{"data": ["name", …]}` |
//! | `GET /api/operations?service=&spanKind=` | `{"data": [{"name", "spanKind"}]}` |
//! | `GET /api/traces?service=&operation=&tags={"k":"v"}&tag=k:v&start=µs&end=µs&lookback=1h&minDuration=&maxDuration=&limit=20&traceID=…&connected=` | `{"data": [Trace]}`, newest first |
//! | `GET /api/traces/{traceID}?connected=` | `{"data": [Trace]}`; 404 `{"errors": [{"code": 404, "msg": "trace not found"}]}` |
//! | `GET /api/dependencies?endTs=ms&lookback=ms&graph=services\|agents` | `{"data": [{"parent", "child", "callCount"}]}`: service calls, repaired hops included; or the agent graph's hand-offs |
//!
//! Arrived traces by default; `connected=true` (or `api.jaeger_connected`
//! in the config) answers a trace with the connected view of the request
//! that holds it, the lost hops repaired, as the web UI shows it.
//!
//! Errors answer Jaeger's envelope with `data: null` and
//! `errors: [{"code", "msg"}]`, and the HTTP status of the code.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::Db;
use agentrace_doctor::Doctor;
use agentrace_model::{Span, TraceId};
use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span as OtlpSpan, span::SpanKind, status::StatusCode as OtlpStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use super::kind_name;
use super::search::form_pairs;
use crate::store::query::{self, SearchQuery};
use crate::store::{KeyKind, Store, StoreError};

/// Traces a search returns when it does not say (`limit`), as jaeger-query.
const DEFAULT_LIMIT: usize = 100;
/// Most traces one search returns.
const MAX_LIMIT: usize = 1_500;
/// How far back a search looks when it gives no `start`, as jaeger-query
/// (two days); a `lookback` says otherwise (jaeger-query ignores it, but
/// old UIs send it with `start`, which wins).
const DEFAULT_LOOKBACK_US: i64 = 2 * 24 * 3_600_000_000;
/// Recent candidate traces a search with non-indexed tags reads, at most,
/// per trace it may return: such tags are matched on the spans themselves.
const CANDIDATES_PER_RESULT: usize = 20;
const MAX_CANDIDATES: usize = 5_000;
/// Span links followed for `/api/dependencies`, at most (newest first).
const MAX_DEPENDENCY_SPANS: i64 = 1_000_000;
/// Requests read for `/api/dependencies?graph=agents`, at most (newest first).
const MAX_DEPENDENCY_REQUESTS: i64 = 100_000;

#[derive(Clone)]
struct JaegerState {
    store: Store,
    doctor: Arc<Doctor>,
    connected_by_default: bool,
}

/// The Jaeger query routes.
pub(crate) fn router(store: Store, doctor: Arc<Doctor>, connected_by_default: bool) -> Router {
    Router::new()
        .route("/api/services", get(services))
        .route("/api/services/{service}/operations", get(service_operations))
        .route("/api/operations", get(operations))
        .route("/api/traces", get(find_traces))
        .route("/api/traces/{trace_id}", get(get_trace))
        .route("/api/dependencies", get(dependencies))
        .with_state(JaegerState { store, doctor, connected_by_default })
}

/// An answer in Jaeger's envelope.
fn envelope(data: Value, total: usize) -> Response {
    envelope_with_errors(data, total, Vec::new())
}

/// An answer with what could not be answered (`errors` is null when nothing).
fn envelope_with_errors(data: Value, total: usize, errors: Vec<Value>) -> Response {
    let errors = if errors.is_empty() { Value::Null } else { Value::Array(errors) };
    axum::Json(json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors})).into_response()
}

/// An error in Jaeger's envelope.
#[derive(Debug)]
struct JaegerError {
    status: StatusCode,
    msg: String,
}

impl JaegerError {
    fn bad_request(msg: impl Into<String>) -> JaegerError {
        JaegerError { status: StatusCode::BAD_REQUEST, msg: msg.into() }
    }
}

impl From<StoreError> for JaegerError {
    fn from(e: StoreError) -> JaegerError {
        tracing::error!(error = %e, "Jaeger API read failed");
        JaegerError { status: StatusCode::INTERNAL_SERVER_ERROR, msg: e.to_string() }
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        let body = json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": self.status.as_u16(), "msg": self.msg}],
        });
        // As Go's http.Error writes it: plain text with a final newline.
        let headers = [
            (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ];
        (self.status, headers, format!("{body}\n")).into_response()
    }
}

async fn services(State(state): State<JaegerState>) -> Result<Response, JaegerError> {
    let services = state.store.read(query::services).await?;
    let n = services.len();
    Ok(envelope(json!(services), n))
}

async fn service_operations(
    State(state): State<JaegerState>,
    Path(service): Path<String>,
) -> Result<Response, JaegerError> {
    let ops = state.store.read(move |conn| query::operations(conn, &service)).await?;
    let mut names: Vec<String> = ops.into_iter().map(|(name, _)| name).collect();
    names.dedup();
    let n = names.len();
    // (jaeger-query answers `null`, not `[]`, for a service without operations.)
    Ok(envelope(if names.is_empty() { Value::Null } else { json!(names) }, n))
}

#[derive(Deserialize)]
struct OperationsParams {
    service: Option<String>,
    #[serde(rename = "spanKind")]
    span_kind: Option<String>,
}

async fn operations(
    State(state): State<JaegerState>,
    Query(params): Query<OperationsParams>,
) -> Result<Response, JaegerError> {
    let service = params
        .service
        .filter(|s| !s.is_empty())
        .ok_or_else(|| JaegerError::bad_request("parameter 'service' is required"))?;
    let ops = state.store.read(move |conn| query::operations(conn, &service)).await?;
    let wanted = params.span_kind.filter(|k| !k.is_empty()).map(|k| k.to_ascii_lowercase());
    let data: Vec<Value> = ops
        .into_iter()
        .map(|(name, kind)| (name, jaeger_kind(kind)))
        .filter(|(_, kind)| wanted.as_deref().is_none_or(|w| w == *kind))
        .map(|(name, kind)| json!({"name": name, "spanKind": kind}))
        .collect();
    let n = data.len();
    Ok(envelope(json!(data), n))
}

/// A span kind as Jaeger's operations list it (`""` when unspecified).
fn jaeger_kind(kind: i32) -> &'static str {
    match kind_name(kind) {
        "unspecified" => "",
        k => k,
    }
}

/// A parsed `/api/traces` search.
#[derive(Debug, Default)]
struct Search {
    store: SearchQuery,
    /// Tags the store has no index for, matched on the spans.
    tags: Vec<(String, String)>,
    trace_ids: Vec<TraceId>,
    connected: Option<bool>,
    /// Attributes in the order they arrived (jaeger-query's `raw`: no adjusting).
    raw: bool,
}

fn parse_search(raw: &str, now_us: i64) -> Result<Search, JaegerError> {
    let mut search = Search::default();
    let mut limit = None;
    let (mut start_us, mut end_us, mut lookback_us) = (None, None, None);
    for (key, value) in form_pairs(raw) {
        if value.is_empty() {
            continue;
        }
        match key.as_str() {
            "service" => search.store.service = Some(value),
            "operation" => search.store.operation = Some(value),
            "start" => start_us = Some(micros(&key, &value)?),
            "end" => end_us = Some(micros(&key, &value)?),
            "lookback" if value != "custom" => {
                let d = humantime::parse_duration(&value).map_err(|e| {
                    JaegerError::bad_request(format!("cannot parse lookback {value:?} (like 1h or 2d): {e}"))
                })?;
                lookback_us = Some(i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
            }
            "minDuration" => search.store.duration_min_ns = Some(duration_ns(&key, &value)?),
            "maxDuration" => search.store.duration_max_ns = Some(duration_ns(&key, &value)?),
            "limit" => {
                let n: usize = value.parse().map_err(|_| {
                    JaegerError::bad_request(format!("unable to parse param 'limit': {value:?} is not a number"))
                })?;
                limit = Some(n);
            }
            "tags" => {
                let map: serde_json::Map<String, Value> = serde_json::from_str(&value).map_err(|e| {
                    JaegerError::bad_request(format!("malformed 'tags' parameter, expecting a JSON object: {e}"))
                })?;
                for (k, v) in map {
                    let text = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    search.tags.push((k, text));
                }
            }
            "tag" => {
                let (k, v) = value.split_once(':').ok_or_else(|| {
                    JaegerError::bad_request(format!("malformed 'tag' parameter {value:?}, expecting key:value"))
                })?;
                search.tags.push((k.to_owned(), v.to_owned()));
            }
            "traceID" => {
                for id in value.split(',').filter(|s| !s.is_empty()) {
                    search.trace_ids.push(parse_trace_id(id)?);
                }
            }
            "connected" => search.connected = Some(flag(&key, &value)?),
            "raw" => search.raw = flag(&key, &value)?,
            _ => {}
        }
    }
    if search.trace_ids.is_empty() && search.store.service.is_none() {
        return Err(JaegerError::bad_request("parameter 'service' is required"));
    }
    if let (Some(min), Some(max)) = (search.store.duration_min_ns, search.store.duration_max_ns)
        && max < min
    {
        return Err(JaegerError::bad_request("'maxDuration' should be greater than 'minDuration'"));
    }
    let end = end_us.unwrap_or(now_us);
    let start = start_us.unwrap_or_else(|| end.saturating_sub(lookback_us.unwrap_or(DEFAULT_LOOKBACK_US)));
    search.store.start_min_ns = Some(start.saturating_mul(1_000));
    search.store.start_max_ns = Some(end.saturating_mul(1_000));
    search.store.limit = limit.filter(|n| *n > 0).unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    // Tags on an indexed key narrow the store's search; every tag is also
    // matched on the spans, with the service, operation and duration, on
    // one span, as Jaeger's storage backends match them.
    for (k, v) in &search.tags {
        if let Some(kind) = KeyKind::searched_by(k) {
            search.store.attributes.push((kind, v.clone()));
        }
    }
    if search.store.attributes.len() > super::search::MAX_ATTRIBUTE_FILTERS {
        return Err(JaegerError::bad_request(format!(
            "at most {} indexed tags per search",
            super::search::MAX_ATTRIBUTE_FILTERS
        )));
    }
    Ok(search)
}

fn micros(key: &str, value: &str) -> Result<i64, JaegerError> {
    value
        .parse()
        .map_err(|_| JaegerError::bad_request(format!("unable to parse param '{key}': {value:?} is not microseconds")))
}

fn duration_ns(key: &str, value: &str) -> Result<i64, JaegerError> {
    let d = humantime::parse_duration(value).map_err(|e| {
        JaegerError::bad_request(format!(
            "unable to parse param '{key}': {value:?} is no duration like 250ms or 1.2s: {e}"
        ))
    })?;
    Ok(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn flag(key: &str, value: &str) -> Result<bool, JaegerError> {
    // As Go's strconv.ParseBool.
    match value {
        "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(true),
        "false" | "0" | "f" | "F" | "FALSE" | "False" => Ok(false),
        _ => Err(JaegerError::bad_request(format!("'{key}' must be true or false, got {value:?}"))),
    }
}

fn parse_trace_id(text: &str) -> Result<TraceId, JaegerError> {
    super::trace_id_from_text(text).map_err(|e| JaegerError::bad_request(format!("malformed trace ID {e}")))
}

fn now_us() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

async fn find_traces(State(state): State<JaegerState>, RawQuery(raw): RawQuery) -> Result<Response, JaegerError> {
    let search = parse_search(raw.as_deref().unwrap_or(""), now_us())?;
    let connected = search.connected.unwrap_or(state.connected_by_default);
    let doctor = Arc::clone(&state.doctor);
    let (traces, missing) = state
        .store
        .read(move |conn| {
            // By ID: each one missing is said in `errors`, and the answer is still 200.
            if !search.trace_ids.is_empty() {
                let (mut out, mut missing) = (Vec::new(), Vec::new());
                for id in &search.trace_ids {
                    let found = trace_json(conn, &doctor, *id, connected, search.raw)?;
                    if found.is_empty() {
                        missing.push(json!({"msg": "trace not found", "traceID": trace_hex(id.as_bytes())}));
                    }
                    out.extend(found);
                }
                return Ok((out, missing));
            }
            let mut out = Vec::new();
            for (id, request) in search_with_tags(conn, &search.store, &search.tags)? {
                let Ok(trace_id) = TraceId::from_slice(&id) else { continue };
                if connected {
                    out.extend(trace_json(conn, &doctor, trace_id, true, search.raw)?);
                } else {
                    out.extend(to_jaeger(&request, search.raw));
                }
            }
            Ok((out, Vec::new()))
        })
        .await?;
    // (jaeger-query's search answers `total` 0 whatever it found.)
    Ok(envelope_with_errors(Value::Array(traces), 0, missing))
}

async fn get_trace(
    State(state): State<JaegerState>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, JaegerError> {
    let id = parse_trace_id(&trace_id)?;
    let (mut connected, mut raw_order) = (state.connected_by_default, false);
    for (key, value) in form_pairs(raw.as_deref().unwrap_or("")) {
        match key.as_str() {
            _ if value.is_empty() => {}
            "connected" => connected = flag(&key, &value)?,
            "raw" => raw_order = flag(&key, &value)?,
            _ => {}
        }
    }
    let doctor = Arc::clone(&state.doctor);
    let traces = state.store.read(move |conn| trace_json(conn, &doctor, id, connected, raw_order)).await?;
    if traces.is_empty() {
        return Err(JaegerError { status: StatusCode::NOT_FOUND, msg: "trace not found".to_owned() });
    }
    Ok(envelope(Value::Array(traces), 0))
}

/// One trace in Jaeger's model: as it arrived, or the connected view of
/// the request that holds it (every arrived piece under the request's
/// trace ID, the repaired hops as parents).
fn trace_json(conn: &Db, doctor: &Doctor, id: TraceId, connected: bool, raw: bool) -> Result<Vec<Value>, StoreError> {
    if !connected {
        return Ok(to_jaeger(&query::load_traces(conn, &[id.as_bytes().to_vec()])?, raw));
    }
    let spans = crate::store::query::request_context(conn, id.as_bytes())?;
    let Some((diagnosis, view)) = doctor.analyse_request(&spans, id) else { return Ok(Vec::new()) };
    let request = diagnosis.requests.first().map(|r| r.trace_id).unwrap_or(id);
    let mut traces = to_jaeger(&Span::to_request(&view), raw);
    traces.retain(|t| t["traceID"] == json!(trace_hex(request.as_bytes())));
    Ok(traces)
}

/// The traces a search finds, newest first, each loaded: the store's index
/// narrows them (service, operation, times, the indexed keys), and the
/// `tags` it has no index for are matched on the spans themselves, reading
/// up to [`CANDIDATES_PER_RESULT`] recent candidates per trace returned.
/// Jaeger's v1 search and api_v3's both search so.
pub(crate) fn search_with_tags(
    conn: &Db,
    store: &SearchQuery,
    tags: &[(String, String)],
) -> Result<Vec<(Vec<u8>, ExportTraceServiceRequest)>, StoreError> {
    let wanted = store.limit;
    let mut candidates = store.clone();
    if !tags.is_empty() {
        candidates.limit = (wanted * CANDIDATES_PER_RESULT).min(MAX_CANDIDATES);
    }
    let mut out = Vec::new();
    for id in query::search(conn, &candidates)? {
        if out.len() >= wanted {
            break;
        }
        let request = query::load_traces(conn, std::slice::from_ref(&id))?;
        if !tags.is_empty() && !matches(&request, store, tags) {
            continue;
        }
        out.push((id, request));
    }
    Ok(out)
}

/// Whether some span of the trace has every tag of the search, with the
/// search's service, operation and duration.
fn matches(request: &ExportTraceServiceRequest, q: &SearchQuery, tags: &[(String, String)]) -> bool {
    request.resource_spans.iter().any(|rs| {
        let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        let service = resource.iter().find(|kv| kv.key == "service.name").and_then(|kv| kv.value.as_ref());
        if q.service.as_deref().is_some_and(|want| service.map(text).as_deref() != Some(want)) {
            return false;
        }
        rs.scope_spans.iter().flat_map(|ss| &ss.spans).any(|span| {
            let duration = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as i64;
            q.operation.as_deref().is_none_or(|op| span.name == op)
                && q.duration_min_ns.is_none_or(|d| duration >= d)
                && q.duration_max_ns.is_none_or(|d| duration <= d)
                && tags.iter().all(|(k, v)| span_has_tag(span, resource, k, v))
        })
    })
}

/// Whether a span, its resource or one of its events carries `key` with
/// the value `want` as Jaeger shows it, including the tags the translation
/// adds (`span.kind`, `error`, `otel.status_code`, …).
fn span_has_tag(span: &OtlpSpan, resource: &[KeyValue], key: &str, want: &str) -> bool {
    let own = span_tags(span, None, true);
    let found = own
        .iter()
        .chain(resource.iter().map(|kv| tag(&kv.key, kv.value.as_ref())).collect::<Vec<_>>().iter())
        .any(|t| t["key"] == key && tag_text(t) == want);
    found
        || span.events.iter().any(|e| {
            e.attributes.iter().any(|kv| kv.key == key && kv.value.as_ref().map(text).as_deref() == Some(want))
        })
}

fn tag_text(tag: &Value) -> String {
    match &tag["value"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An attribute value as text (arrays and maps as JSON).
fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_)) => json_value(value).to_string(),
        // (A profiles dictionary index: no text in a trace.)
        Some(any_value::Value::StringValueStrindex(_)) | None => String::new(),
    }
}

fn json_value(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::BytesValue(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json_value).collect()),
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(
            kv.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json_value))).collect(),
        ),
        Some(any_value::Value::StringValueStrindex(_)) | None => Value::Null,
    }
}

/// A Jaeger tag (`{"key", "type", "value"}`) for an OTLP attribute: maps
/// and arrays as JSON text, bytes as base64, and an integer beyond what a
/// JSON number holds exactly (2^53 - 1) as its decimal text, as Jaeger's
/// JSON converter writes them.
fn tag(key: &str, value: Option<&AnyValue>) -> Value {
    const EXACT: i64 = (1 << 53) - 1;
    let (kind, value) = match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::BoolValue(b)) => ("bool", json!(b)),
        Some(any_value::Value::IntValue(i)) if (-EXACT..=EXACT).contains(i) => ("int64", json!(i)),
        Some(any_value::Value::IntValue(i)) => ("int64", json!(i.to_string())),
        Some(any_value::Value::DoubleValue(d)) => ("float64", json!(d)),
        Some(any_value::Value::BytesValue(b)) => ("binary", json!(base64::engine::general_purpose::STANDARD.encode(b))),
        Some(_) => ("string", json!(value.map(text).unwrap_or_default())),
        None => ("string", json!("")),
    };
    json!({"key": key, "type": kind, "value": value})
}

fn str_tag(key: &str, value: &str) -> Value {
    json!({"key": key, "type": "string", "value": value})
}

/// Attributes as tags, sorted by key as jaeger-query's adjusters sort
/// them (unless `raw`).
fn tags_of(attributes: &[KeyValue], raw: bool) -> Vec<Value> {
    let mut kvs: Vec<&KeyValue> = attributes.iter().collect();
    if !raw {
        kvs.sort_by(|a, b| a.key.cmp(&b.key));
    }
    kvs.into_iter().map(|kv| tag(&kv.key, kv.value.as_ref())).collect()
}

/// A span's tags in the translator's order: the scope, the span's
/// attributes, then `span.kind`, `otel.status_code`, `error`,
/// `otel.status_description` and `w3c.tracestate`.
fn span_tags(span: &OtlpSpan, scope: Option<(&str, &str)>, raw: bool) -> Vec<Value> {
    let mut tags = Vec::with_capacity(span.attributes.len() + 6);
    if let Some((name, version)) = scope {
        if !name.is_empty() {
            tags.push(str_tag("otel.scope.name", name));
        }
        if !version.is_empty() {
            tags.push(str_tag("otel.scope.version", version));
        }
    }
    tags.extend(tags_of(&span.attributes, raw));
    let kind = match SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Client => Some("client"),
        SpanKind::Server => Some("server"),
        SpanKind::Producer => Some("producer"),
        SpanKind::Consumer => Some("consumer"),
        SpanKind::Internal => Some("internal"),
        SpanKind::Unspecified => None,
    };
    if let Some(kind) = kind {
        tags.push(str_tag("span.kind", kind));
    }
    if let Some(status) = &span.status {
        match OtlpStatus::try_from(status.code).unwrap_or(OtlpStatus::Unset) {
            OtlpStatus::Ok => tags.push(str_tag("otel.status_code", "OK")),
            OtlpStatus::Error => {
                tags.push(str_tag("otel.status_code", "ERROR"));
                tags.push(json!({"key": "error", "type": "bool", "value": true}));
            }
            OtlpStatus::Unset => {}
        }
        if !status.message.is_empty() {
            tags.push(str_tag("otel.status_description", &status.message));
        }
    }
    if !span.trace_state.is_empty() {
        tags.push(str_tag("w3c.tracestate", &span.trace_state));
    }
    tags
}

/// A trace ID as Jaeger prints it: 16 hex digits when its high half is
/// zero, else 32.
fn trace_hex(bytes: &[u8]) -> String {
    match bytes.split_at_checked(8) {
        Some((high, low)) if high.iter().all(|b| *b == 0) => hex(low),
        _ => hex(bytes),
    }
}

fn hex(bytes: &[u8]) -> String {
    agentrace_model::ids::to_hex(bytes)
}

/// An OTLP request as Jaeger traces, one per trace ID, in order of first
/// appearance; each trace's processes are its distinct resources (`p1`,
/// `p2`, … in order of first appearance). `raw` keeps attributes in the
/// order they arrived.
pub(crate) fn to_jaeger(request: &ExportTraceServiceRequest, raw: bool) -> Vec<Value> {
    struct Building {
        spans: Vec<Value>,
        processes: BTreeMap<String, Value>,
        process_of: HashMap<Vec<u8>, String>,
    }
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut traces: HashMap<Vec<u8>, Building> = HashMap::new();
    for rs in &request.resource_spans {
        let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        let service = resource
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(text)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "OTLPResourceNoServiceName".to_owned());
        let others: Vec<KeyValue> = resource.iter().filter(|kv| kv.key != "service.name").cloned().collect();
        let process = json!({"serviceName": service, "tags": tags_of(&others, raw)});
        let process_key = serde_json::to_vec(&process).unwrap_or_default();
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| (s.name.as_str(), s.version.as_str()));
            for span in &ss.spans {
                let trace = traces.entry(span.trace_id.clone()).or_insert_with(|| {
                    order.push(span.trace_id.clone());
                    Building { spans: Vec::new(), processes: BTreeMap::new(), process_of: HashMap::new() }
                });
                let next = format!("p{}", trace.process_of.len() + 1);
                let pid = trace.process_of.entry(process_key.clone()).or_insert(next).clone();
                trace.processes.entry(pid.clone()).or_insert_with(|| process.clone());
                trace.spans.push(span_json(span, scope, &pid, raw));
            }
        }
    }
    order
        .into_iter()
        .filter_map(|id| {
            let t = traces.remove(&id)?;
            Some(json!({
                "traceID": trace_hex(&id),
                "spans": t.spans,
                "processes": t.processes,
                "warnings": null,
            }))
        })
        .collect()
}

fn span_json(span: &OtlpSpan, scope: Option<(&str, &str)>, process_id: &str, raw: bool) -> Value {
    let trace_id = trace_hex(&span.trace_id);
    let mut references: Vec<Value> = Vec::new();
    if !span.parent_span_id.is_empty() {
        references.push(json!({"refType": "CHILD_OF", "traceID": trace_id, "spanID": hex(&span.parent_span_id)}));
    }
    for link in &span.links {
        if link.trace_id.is_empty() || link.trace_id.iter().all(|b| *b == 0) {
            continue;
        }
        let child_of = link
            .attributes
            .iter()
            .any(|kv| kv.key == "opentracing.ref_type" && kv.value.as_ref().map(text).as_deref() == Some("child_of"));
        let ref_type = if child_of { "CHILD_OF" } else { "FOLLOWS_FROM" };
        // A link to the parent itself only says what kind of reference it is.
        if link.trace_id == span.trace_id && link.span_id == span.parent_span_id && !references.is_empty() {
            references[0]["refType"] = json!(ref_type);
            continue;
        }
        references
            .push(json!({"refType": ref_type, "traceID": trace_hex(&link.trace_id), "spanID": hex(&link.span_id)}));
    }
    let logs: Vec<Value> = span
        .events
        .iter()
        .map(|e| {
            let mut fields = Vec::with_capacity(e.attributes.len() + 1);
            if !e.name.is_empty() && !e.attributes.iter().any(|kv| kv.key == "event") {
                fields.push(str_tag("event", &e.name));
            }
            fields.extend(tags_of(&e.attributes, raw));
            json!({"timestamp": e.time_unix_nano / 1_000, "fields": fields})
        })
        .collect();
    json!({
        "traceID": trace_id,
        "spanID": hex(&span.span_id),
        "operationName": span.name,
        "references": references,
        "startTime": span.start_time_unix_nano / 1_000,
        "duration": span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) / 1_000,
        "tags": span_tags(span, scope, raw),
        "logs": logs,
        "processID": process_id,
        "warnings": null,
    })
}

/// Service-to-service calls in the window `endTs - lookback ..= endTs`
/// (milliseconds; default now and a day), of one `service` if given: a span
/// whose parent (as it arrived, or as the live diagnosis repaired it) is of
/// another service. With `graph=agents`, the agent graph instead: the
/// hand-offs between agents in the requests of the window.
async fn dependencies(State(state): State<JaegerState>, RawQuery(raw): RawQuery) -> Result<Response, JaegerError> {
    let (mut end_ms, mut lookback_ms, mut service, mut agents) = (now_us() / 1_000, 24 * 3_600_000, None, false);
    for (key, value) in form_pairs(raw.as_deref().unwrap_or("")) {
        match key.as_str() {
            _ if value.is_empty() => {}
            "endTs" => end_ms = millis(&key, &value)?,
            "lookback" => lookback_ms = millis(&key, &value)?,
            "service" => service = Some(value),
            "graph" => {
                agents = match value.as_str() {
                    "agents" => true,
                    "services" => false,
                    other => return Err(JaegerError::bad_request(format!("graph {other:?}: use services or agents"))),
                }
            }
            _ => {}
        }
    }
    if lookback_ms < 0 {
        return Err(JaegerError::bad_request("unable to parse param 'lookback': it must not be negative"));
    }
    let (from, to) = (end_ms.saturating_sub(lookback_ms).saturating_mul(1_000_000), end_ms.saturating_mul(1_000_000));
    let links = if agents {
        state.store.read(move |conn| query::agent_calls(conn, from, to, MAX_DEPENDENCY_REQUESTS)).await?
    } else {
        state.store.read(move |conn| query::service_calls(conn, from, to, MAX_DEPENDENCY_SPANS)).await?
    };
    let data: Vec<Value> = links
        .into_iter()
        .filter(|((parent, child), _)| service.as_deref().is_none_or(|s| s == parent || s == child))
        .map(|((parent, child), count)| json!({"parent": parent, "child": child, "callCount": count}))
        .collect();
    Ok(envelope(json!(data), 0))
}

fn millis(key: &str, value: &str) -> Result<i64, JaegerError> {
    value
        .parse()
        .map_err(|_| JaegerError::bad_request(format!("unable to parse param '{key}': {value:?} is not milliseconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_needs_a_service_and_says_what_was_wrong() {
        let e = parse_search("operation=x", 10_000_000).unwrap_err();
        assert_eq!(e.msg, "parameter 'service' is required");
        let e = parse_search("service=a&limit=many", 10_000_000).unwrap_err();
        assert!(e.msg.contains("'limit'"), "{}", e.msg);
        let e = parse_search("service=a&minDuration=2s&maxDuration=1s", 10_000_000).unwrap_err();
        assert!(e.msg.contains("maxDuration"), "{}", e.msg);
        let e = parse_search("service=a&tags=%7Bx", 10_000_000).unwrap_err();
        assert!(e.msg.contains("'tags'"), "{}", e.msg);
    }

    #[test]
    fn a_search_reads_jaegers_parameters() {
        let s = parse_search(
            "service=planner&operation=chat&start=1000&end=5000&minDuration=1.2s&maxDuration=2s&limit=5\
             &tags=%7B%22session.id%22%3A%22s-1%22%2C%22http.status_code%22%3A500%7D&tag=error%3Atrue",
            99_000_000,
        )
        .unwrap();
        assert_eq!(s.store.service.as_deref(), Some("planner"));
        assert_eq!(s.store.operation.as_deref(), Some("chat"));
        assert_eq!((s.store.start_min_ns, s.store.start_max_ns), (Some(1_000_000), Some(5_000_000)));
        assert_eq!((s.store.duration_min_ns, s.store.duration_max_ns), (Some(1_200_000_000), Some(2_000_000_000)));
        assert_eq!(s.store.limit, 5);
        assert_eq!(
            s.tags,
            vec![
                ("http.status_code".to_owned(), "500".to_owned()),
                ("session.id".to_owned(), "s-1".to_owned()),
                ("error".to_owned(), "true".to_owned())
            ]
        );
        assert_eq!(s.store.attributes, vec![(KeyKind::Session, "s-1".to_owned())]);
        // No start: the lookback (default one hour) before the end (default now).
        let s = parse_search("service=a&lookback=2h", 10_000_000_000).unwrap();
        assert_eq!(s.store.start_min_ns, Some((10_000_000_000 - 7_200_000_000) * 1_000));
        let s = parse_search("traceID=abc", 0).unwrap();
        assert_eq!(s.trace_ids[0].to_string(), format!("{:0>32}", "abc"));
    }

    #[test]
    fn otlp_is_translated_as_the_collectors_jaeger_translator_does() {
        use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope};
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};
        let kv = |key: &str, value: any_value::Value| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        };
        // A trace ID whose high half is zero, as Zipkin's 64-bit IDs arrive.
        let trace_id = [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8].to_vec();
        let span = OtlpSpan {
            trace_id: trace_id.clone(),
            span_id: vec![0xaa; 8],
            parent_span_id: vec![0xbb; 8],
            name: "step".into(),
            kind: SpanKind::Consumer as i32,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_223_456_789,
            attributes: vec![
                kv("z.big", any_value::Value::IntValue(i64::MAX)),
                kv("a.small", any_value::Value::IntValue(7)),
                kv("m.bytes", any_value::Value::BytesValue(vec![0, 0, 48, 57])),
                kv(
                    "k.list",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue { value: Some(any_value::Value::StringValue("x".into())) }],
                    }),
                ),
            ],
            events: vec![
                Event { time_unix_nano: 1_700_000_000_200_000_000, name: "retry".into(), ..Default::default() },
                Event {
                    name: "ignored".into(),
                    attributes: vec![kv("event", any_value::Value::StringValue("own".into()))],
                    ..Default::default()
                },
            ],
            links: vec![
                Link {
                    trace_id: trace_id.clone(),
                    span_id: vec![0xbb; 8],
                    attributes: vec![kv("opentracing.ref_type", any_value::Value::StringValue("follows_from".into()))],
                    ..Default::default()
                },
                Link { trace_id: vec![9; 16], span_id: vec![0xcc; 8], ..Default::default() },
            ],
            status: Some(Status { code: OtlpStatus::Error as i32, message: "boom".into() }),
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![], ..Default::default() }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: "lib".into(), version: "2".into(), ..Default::default() }),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let traces = to_jaeger(&request, false);
        let t = &traces[0];
        assert_eq!(t["traceID"], "0102030405060708");
        assert_eq!(t["processes"]["p1"], json!({"serviceName": "OTLPResourceNoServiceName", "tags": []}));
        let span = &t["spans"][0];
        assert_eq!(span["startTime"], 1_700_000_000_123_456u64);
        assert_eq!(span["duration"], 100_000);
        let keys: Vec<&str> = span["tags"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "otel.scope.name",
                "otel.scope.version",
                "a.small",
                "k.list",
                "m.bytes",
                "z.big",
                "span.kind",
                "otel.status_code",
                "error",
                "otel.status_description"
            ]
        );
        let tags = span["tags"].as_array().unwrap();
        assert_eq!(tags[3], json!({"key": "k.list", "type": "string", "value": "[\"x\"]"}));
        assert_eq!(tags[4], json!({"key": "m.bytes", "type": "binary", "value": "AAAwOQ=="}));
        assert_eq!(tags[5], json!({"key": "z.big", "type": "int64", "value": i64::MAX.to_string()}));
        assert_eq!(tags[6]["value"], "consumer");
        // The link to the parent says the parent's reference kind; the other follows.
        assert_eq!(
            span["references"],
            json!([
                {"refType": "FOLLOWS_FROM", "traceID": "0102030405060708", "spanID": "bbbbbbbbbbbbbbbb"},
                {"refType": "FOLLOWS_FROM", "traceID": "09090909090909090909090909090909", "spanID": "cccccccccccccccc"},
            ])
        );
        assert_eq!(
            span["logs"][0],
            json!({"timestamp": 1_700_000_000_200_000u64, "fields": [
            {"key": "event", "type": "string", "value": "retry"}]})
        );
        assert_eq!(span["logs"][1]["fields"], json!([{"key": "event", "type": "string", "value": "own"}]));
        // `raw` keeps the attributes as they arrived.
        let raw = to_jaeger(&request, true);
        assert_eq!(raw[0]["spans"][0]["tags"][2]["key"], "z.big");
    }
}
