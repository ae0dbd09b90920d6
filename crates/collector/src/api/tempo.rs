//! Grafana Tempo's HTTP API, so that Grafana's Tempo data source and other
//! Tempo clients (the Perses Tempo plugin) read agentrace unmodified. It is
//! served under `/tempo` (a Tempo data source's URL is
//! `http://HOST:4380/tempo`): Tempo's `/api/traces/{id}` is also Jaeger's,
//! which answers at the root.
//!
//! | route (under `/tempo`) | answer |
//! |---|---|
//! | `GET /api/echo` | `echo` |
//! | `GET /api/status/buildinfo` | `{"version", "revision", "branch", "buildUser", "buildDate", "goVersion"}` |
//! | `GET /api/traces/{id}` | `{"batches": [ResourceSpans]}`, or OTLP `TracesData` protobuf when `Accept` asks for `application/protobuf`; 404 when unknown |
//! | `GET /api/v2/traces/{id}` | `{"trace": {"resourceSpans"}, "metrics"}`, or `TraceByIDResponse` protobuf; `{"trace": {}}` when unknown |
//! | `GET /api/search?q=TraceQL&tags=logfmt&minDuration=&maxDuration=&limit=20&start=s&end=s&spss=3` | `{"traces": [TraceSearchMetadata], "metrics"}`, newest first |
//! | `GET /api/search/tags?scope=`, `GET /api/v2/search/tags?scope=` | `{"tagNames"}`, `{"scopes": [{"name", "tags"}]}` |
//! | `GET /api/search/tag/{tag}/values`, `GET /api/v2/search/tag/{tag}/values?q=` | `{"tagValues": ["…"]}`, `{"tagValues": [{"type", "value"}]}` |
//!
//! Encoded as Tempo encodes them (protobuf JSON): 64-bit numbers as
//! strings, zero values left out, enums by name (`SPAN_KIND_SERVER`,
//! `STATUS_CODE_ERROR`); lists a client reads are always present, if empty.
//!
//! Search reads the TraceQL subset of [`super::traceql`] (what Grafana's
//! search builder writes) and matches it against the newest stored traces
//! of the window, at most [`MAX_CANDIDATES`] of them; tags and their values
//! are read from the newest [`TAG_SAMPLE`] traces of the window (Tempo too
//! answers them from recent data). Errors are plain text with status 400,
//! as Tempo's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use agentrace_model::TraceId;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span as OtlpSpan, TracesData};
use prost::Message;
use serde_json::{Value as Json, json};

use super::search::form_pairs;
use super::traceql::{self, Expr, Field, Query, SpanFacts, Value};
use crate::store::query::{self, SearchQuery};
use crate::store::{Store, StoreError};

/// Traces a search returns when it does not say (`limit`), as Tempo.
const DEFAULT_LIMIT: usize = 20;
/// Matching spans shown per spanset when the search does not say (`spss`).
const DEFAULT_SPSS: usize = 3;
/// Newest traces of the window a search looks at, at most.
const MAX_CANDIDATES: usize = 5_000;
/// Newest traces of the window that tags and tag values are read from.
const TAG_SAMPLE: usize = 500;
/// The Tempo version reported: Grafana turns features on by it (2.2 and
/// later have TraceQL search and the v2 tag routes).
const TEMPO_VERSION: &str = "2.9.0";

/// Tempo's intrinsics, as `/api/v2/search/tags` lists them.
const INTRINSICS: [&str; 10] = [
    "duration",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "status",
    "statusMessage",
    "traceDuration",
    "span:name",
    "span:status",
];

/// The Tempo routes.
pub(crate) fn router(store: Store) -> Router {
    Router::new()
        .route("/api/echo", get(|| async { (StatusCode::OK, text_headers(), "echo\n") }))
        .route("/api/status/buildinfo", get(buildinfo))
        .route("/api/traces/{trace_id}", get(trace_v1))
        .route("/api/v2/traces/{trace_id}", get(trace_v2))
        .route("/api/search", get(search))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tag/{tag}/values", get(values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(values_v2))
        .with_state(store)
}

fn text_headers() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")]
}

/// A Tempo error: plain text, with a status.
struct TempoError(StatusCode, String);

impl IntoResponse for TempoError {
    fn into_response(self) -> Response {
        (self.0, text_headers(), self.1).into_response()
    }
}

impl From<StoreError> for TempoError {
    fn from(e: StoreError) -> TempoError {
        tracing::error!(error = %e, "Tempo API read failed");
        TempoError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

fn bad(message: impl Into<String>) -> TempoError {
    TempoError(StatusCode::BAD_REQUEST, message.into())
}

async fn buildinfo() -> Response {
    axum::Json(json!({
        "version": TEMPO_VERSION,
        "revision": format!("agentrace-{}", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
    .into_response()
}

/// The query's decoded pairs.
fn params(raw: Option<&str>) -> Vec<(String, String)> {
    form_pairs(raw.unwrap_or("")).collect()
}

fn trace_id(text: &str) -> Result<TraceId, TempoError> {
    // Tempo left-pads a short ID with zeros, as the helper does.
    super::trace_id_from_text(text).map_err(|e| bad(format!("invalid trace id {e}")))
}

fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/protobuf"))
}

async fn load(store: &Store, id: TraceId) -> Result<ExportTraceServiceRequest, StoreError> {
    let key = id.as_bytes().to_vec();
    store.read(move |conn| query::load_traces(conn, &[key])).await
}

fn protobuf(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/protobuf")], bytes).into_response()
}

async fn trace_v1(
    State(store): State<Store>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let request = load(&store, trace_id(&id)?).await?;
    if request.resource_spans.is_empty() {
        // As Tempo: not found is a 404 with no body.
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    if wants_protobuf(&headers) {
        return Ok(protobuf(TracesData { resource_spans: request.resource_spans }.encode_to_vec()));
    }
    Ok(axum::Json(json!({ "batches": resource_spans_json(&request) })).into_response())
}

async fn trace_v2(
    State(store): State<Store>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let request = load(&store, trace_id(&id)?).await?;
    if wants_protobuf(&headers) {
        // TraceByIDResponse { trace = 1 } with the trace as TracesData.
        let trace = TracesData { resource_spans: request.resource_spans }.encode_to_vec();
        let mut body = Vec::with_capacity(trace.len() + 8);
        if !trace.is_empty() {
            prost::encoding::bytes::encode(1, &trace, &mut body);
        }
        return Ok(protobuf(body));
    }
    // An unknown trace is an empty one, with 200, as Tempo answers v2.
    let trace = if request.resource_spans.is_empty() {
        json!({})
    } else {
        json!({ "resourceSpans": resource_spans_json(&request) })
    };
    Ok(axum::Json(json!({ "trace": trace, "metrics": {} })).into_response())
}

/// OTLP JSON with Tempo's enum names for span kinds and status codes.
fn resource_spans_json(request: &ExportTraceServiceRequest) -> Json {
    let mut value = serde_json::to_value(&request.resource_spans).unwrap_or(Json::Array(Vec::new()));
    for rs in value.as_array_mut().into_iter().flatten() {
        for ss in rs["scopeSpans"].as_array_mut().into_iter().flatten() {
            for span in ss["spans"].as_array_mut().into_iter().flatten() {
                if let Some(kind) = span.get("kind").and_then(Json::as_i64) {
                    span["kind"] = json!(
                        [
                            "SPAN_KIND_UNSPECIFIED",
                            "SPAN_KIND_INTERNAL",
                            "SPAN_KIND_SERVER",
                            "SPAN_KIND_CLIENT",
                            "SPAN_KIND_PRODUCER",
                            "SPAN_KIND_CONSUMER"
                        ]
                        .get(kind as usize)
                        .copied()
                        .unwrap_or("SPAN_KIND_UNSPECIFIED")
                    );
                }
                if let Some(code) = span.pointer("/status/code").and_then(Json::as_i64) {
                    span["status"]["code"] = json!(
                        ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]
                            .get(code as usize)
                            .copied()
                            .unwrap_or("STATUS_CODE_UNSET")
                    );
                }
            }
        }
    }
    value
}

/// An attribute value as a TraceQL literal.
fn literal(value: Option<&AnyValue>) -> Option<Value> {
    Some(match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Value::Str(s.clone()),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => Value::Num(*i as f64),
        any_value::Value::DoubleValue(d) => Value::Num(*d),
        _ => return None,
    })
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref())
}

fn status_of(span: &OtlpSpan) -> &'static str {
    match span.status.as_ref().map_or(0, |s| s.code) {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}

fn kind_of(span: &OtlpSpan) -> &'static str {
    match span.kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// One stored trace, read for search: its spans with their resources, its
/// root and its extent.
struct Trace<'a> {
    spans: Vec<(&'a OtlpSpan, &'a [KeyValue])>,
    root_name: String,
    root_service: String,
    start_ns: u64,
    end_ns: u64,
}

fn service_of(resource: &[KeyValue]) -> String {
    match literal(attr(resource, "service.name")) {
        Some(Value::Str(s)) => s,
        _ => String::new(),
    }
}

impl<'a> Trace<'a> {
    fn of(request: &'a ExportTraceServiceRequest) -> Option<Trace<'a>> {
        let mut spans = Vec::new();
        for rs in &request.resource_spans {
            let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                spans.push((span, resource));
            }
        }
        let ids: BTreeSet<&[u8]> = spans.iter().map(|(s, _)| s.span_id.as_slice()).collect();
        let root = spans
            .iter()
            .filter(|(s, _)| s.parent_span_id.is_empty() || !ids.contains(s.parent_span_id.as_slice()))
            .min_by_key(|(s, _)| s.start_time_unix_nano)
            .copied();
        let start_ns = spans.iter().map(|(s, _)| s.start_time_unix_nano).min()?;
        let end_ns = spans.iter().map(|(s, _)| s.end_time_unix_nano).max()?;
        let (root_name, root_service) = match root {
            Some((s, r)) if s.parent_span_id.is_empty() => (s.name.clone(), service_of(r)),
            // As Tempo says of a trace whose root has not arrived.
            _ => (String::new(), "<root span not yet received>".to_owned()),
        };
        Some(Trace { spans, root_name, root_service, start_ns, end_ns })
    }

    fn matching(&self, expr: &Expr) -> Vec<usize> {
        (0..self.spans.len())
            .filter(|&i| {
                let (span, resource) = self.spans[i];
                let span_attr = |k: &str| literal(attr(&span.attributes, k));
                let resource_attr = |k: &str| literal(attr(resource, k));
                expr.matches(&self.facts(i, &span_attr, &resource_attr))
            })
            .collect()
    }

    fn facts<'b>(
        &'b self,
        i: usize,
        span_attr: &'b dyn Fn(&str) -> Option<Value>,
        resource_attr: &'b dyn Fn(&str) -> Option<Value>,
    ) -> SpanFacts<'b> {
        let span = self.spans[i].0;
        SpanFacts {
            name: &span.name,
            status: status_of(span),
            status_message: span.status.as_ref().map_or("", |s| s.message.as_str()),
            kind: kind_of(span),
            duration_ns: span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano),
            root_name: &self.root_name,
            root_service: &self.root_service,
            trace_duration_ns: self.end_ns.saturating_sub(self.start_ns),
            span_attr,
            resource_attr,
        }
    }
}

/// What `/api/search` asks.
struct Search {
    query: Query,
    /// Trace duration bounds of the legacy search, nanoseconds.
    min_ns: Option<u64>,
    max_ns: Option<u64>,
    limit: usize,
    spss: usize,
    start_s: Option<i64>,
    end_s: Option<i64>,
}

fn parse_search(raw: Option<&str>) -> Result<Search, TempoError> {
    let mut s = Search {
        query: Query::Set(Expr::True),
        min_ns: None,
        max_ns: None,
        limit: DEFAULT_LIMIT,
        spss: DEFAULT_SPSS,
        start_s: None,
        end_s: None,
    };
    let (mut q, mut tags) = (None, None);
    let number = |key: &str, value: &str| -> Result<i64, TempoError> {
        value.parse().map_err(|_| bad(format!("invalid {key}: {value:?} is not a whole number")))
    };
    let duration = |key: &str, value: &str| -> Result<u64, TempoError> {
        humantime::parse_duration(value)
            .map(|d| d.as_nanos() as u64)
            .map_err(|e| bad(format!("invalid {key}: {value:?} is no duration like 100ms: {e}")))
    };
    for (key, value) in params(raw) {
        if value.is_empty() {
            continue;
        }
        match key.as_str() {
            "q" => q = Some(value),
            "tags" => tags = Some(value),
            "minDuration" => s.min_ns = Some(duration(&key, &value)?),
            "maxDuration" => s.max_ns = Some(duration(&key, &value)?),
            "limit" => {
                let n = number(&key, &value)?;
                if n <= 0 {
                    return Err(bad("invalid limit: must be a positive number"));
                }
                s.limit = n as usize;
            }
            "spss" => s.spss = number(&key, &value)?.max(1) as usize,
            "start" => s.start_s = Some(number(&key, &value)?),
            "end" => s.end_s = Some(number(&key, &value)?),
            _ => {}
        }
    }
    if let (Some(start), Some(end)) = (s.start_s, s.end_s)
        && end < start
    {
        return Err(bad(format!("http parameter start must be before end. received start={start} end={end}")));
    }
    if let (Some(min), Some(max)) = (s.min_ns, s.max_ns)
        && max < min
    {
        return Err(bad("invalid maxDuration: must be greater than minDuration"));
    }
    s.query = match (q, tags) {
        (Some(_), Some(_)) => return Err(bad("invalid request: can't specify tags and q in the same query")),
        (Some(q), None) => traceql::parse(&q).map_err(|e| bad(e.to_string()))?,
        (None, Some(tags)) => Query::Set(logfmt_filter(&tags)?),
        (None, None) => Query::Set(Expr::True),
    };
    Ok(s)
}

/// The legacy `tags=k=v k2="v w"` search: every pair on one span (its own
/// attributes or its resource's).
fn logfmt_filter(text: &str) -> Result<Expr, TempoError> {
    let mut expr = Expr::True;
    let mut rest = text.trim();
    let mut pairs = 0;
    while !rest.is_empty() {
        pairs += 1;
        if pairs > 256 {
            return Err(bad("invalid tags: more than 256 pairs"));
        }
        let (key, after) =
            rest.split_once('=').ok_or_else(|| bad(format!("invalid tags: {rest:?} is not key=value")))?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').ok_or_else(|| bad("invalid tags: a quoted value is not closed"))?;
                (quoted[..end].to_owned(), &quoted[end + 1..])
            }
            None => {
                let end = after.find(' ').unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            }
        };
        let cmp = Expr::Cmp(Field::Any(key.trim().to_owned()), traceql::Op::Eq, Value::Str(value));
        expr = match expr {
            Expr::True => cmp,
            e => Expr::And(Box::new(e), Box::new(cmp)),
        };
        rest = after.trim();
    }
    Ok(expr)
}

/// The attribute keys a query refers to, as Tempo names them in results.
fn referenced(expr: &Expr, out: &mut Vec<(String, Field)>) {
    match expr {
        Expr::True => {}
        Expr::And(a, b) | Expr::Or(a, b) => {
            referenced(a, out);
            referenced(b, out);
        }
        Expr::Cmp(field, _, _) => {
            let key = match field {
                Field::Span(k) | Field::Resource(k) | Field::Any(k) => k.clone(),
                Field::Status => "status".to_owned(),
                Field::Kind => "kind".to_owned(),
                Field::StatusMessage => "statusMessage".to_owned(),
                _ => return,
            };
            if !out.iter().any(|(k, _)| *k == key) {
                out.push((key, field.clone()));
            }
        }
    }
}

fn any_json(value: &Value) -> Json {
    match value {
        Value::Str(s) => json!({ "stringValue": s }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Num(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => json!({ "intValue": (*n as i64).to_string() }),
        Value::Num(n) | Value::Nanos(n) => json!({ "doubleValue": n }),
        Value::Re(p) => json!({ "stringValue": format!("{p:?}") }),
    }
}

/// The time window a search or tag lookup covers (unix seconds; none: all).
fn window(start_s: Option<i64>, end_s: Option<i64>, limit: usize) -> SearchQuery {
    SearchQuery {
        start_min_ns: start_s.filter(|s| *s > 0).map(|s| s.saturating_mul(1_000_000_000)),
        start_max_ns: end_s.filter(|s| *s > 0).map(|s| s.saturating_mul(1_000_000_000)),
        limit,
        ..SearchQuery::default()
    }
}

async fn search(State(store): State<Store>, RawQuery(raw): RawQuery) -> Result<Response, TempoError> {
    let s = parse_search(raw.as_deref())?;
    let candidates = window(s.start_s, s.end_s, (s.limit * 20).min(MAX_CANDIDATES));
    let (traces, inspected) = store
        .read(move |conn| {
            let ids = query::search(conn, &candidates)?;
            let inspected = ids.len();
            let mut out = Vec::new();
            for id in ids {
                if out.len() >= s.limit {
                    break;
                }
                let request = query::load_traces(conn, std::slice::from_ref(&id))?;
                if let Some(found) = search_one(&id, &request, &s) {
                    out.push(found);
                }
            }
            Ok::<_, StoreError>((out, inspected))
        })
        .await?;
    Ok(axum::Json(json!({
        "traces": traces,
        "metrics": { "inspectedTraces": inspected, "completedJobs": 1, "totalJobs": 1 },
    }))
    .into_response())
}

/// A trace's search result, if it matches.
fn search_one(id: &[u8], request: &ExportTraceServiceRequest, s: &Search) -> Option<Json> {
    let trace = Trace::of(request)?;
    let duration = trace.end_ns.saturating_sub(trace.start_ns);
    if s.min_ns.is_some_and(|m| duration < m) || s.max_ns.is_some_and(|m| duration > m) {
        return None;
    }
    let sets = s.query.sets();
    let matched: Vec<Vec<usize>> = sets.iter().map(|e| trace.matching(e)).collect();
    let by_set: HashMap<*const Expr, bool> =
        sets.iter().zip(&matched).map(|(e, m)| (*e as *const Expr, !m.is_empty())).collect();
    if !s.query.matches_trace(&|e| by_set.get(&(e as *const Expr)).copied().unwrap_or(false)) {
        return None;
    }
    let mut keys = Vec::new();
    for e in &sets {
        referenced(e, &mut keys);
    }
    let mut spans: Vec<usize> = matched.into_iter().flatten().collect();
    spans.sort_unstable();
    spans.dedup();
    let total = spans.len();
    let shown: Vec<Json> = spans
        .iter()
        .take(s.spss)
        .map(|&i| {
            let (span, resource) = trace.spans[i];
            let attributes: Vec<Json> = keys
                .iter()
                .filter_map(|(key, field)| {
                    let v = match field {
                        Field::Status => Some(Value::Str(status_of(span).to_owned())),
                        Field::Kind => Some(Value::Str(kind_of(span).to_owned())),
                        Field::StatusMessage => span.status.as_ref().map(|st| Value::Str(st.message.clone())),
                        Field::Resource(k) => literal(attr(resource, k)),
                        Field::Span(k) => literal(attr(&span.attributes, k)),
                        _ => literal(attr(&span.attributes, key)).or_else(|| literal(attr(resource, key))),
                    }?;
                    Some(json!({ "key": key, "value": any_json(&v) }))
                })
                .collect();
            let mut out = json!({
                "spanID": agentrace_model::ids::to_hex(&span.span_id),
                "name": span.name,
                "startTimeUnixNano": span.start_time_unix_nano.to_string(),
                "durationNanos": span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano).to_string(),
            });
            if !attributes.is_empty() {
                out["attributes"] = Json::Array(attributes);
            }
            out
        })
        .collect();
    let spanset = json!({ "spans": shown, "matched": total });
    let mut stats: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (span, resource) in &trace.spans {
        let e = stats.entry(service_of(resource)).or_default();
        e.0 += 1;
        e.1 += u64::from(status_of(span) == "error");
    }
    let stats: serde_json::Map<String, Json> = stats
        .into_iter()
        .map(|(service, (n, errors))| {
            let mut v = json!({ "spanCount": n });
            if errors > 0 {
                v["errorCount"] = json!(errors);
            }
            (service, v)
        })
        .collect();
    // Tempo trims the leading zeros of a search result's trace ID.
    let hex = agentrace_model::ids::to_hex(id);
    let trimmed = hex.trim_start_matches('0');
    let mut out = json!({
        "traceID": if trimmed.is_empty() { "0" } else { trimmed },
        "rootServiceName": trace.root_service,
        "startTimeUnixNano": trace.start_ns.to_string(),
        "spanSet": spanset,
        "spanSets": [spanset],
        "serviceStats": stats,
    });
    if !trace.root_name.is_empty() {
        out["rootTraceName"] = json!(trace.root_name);
    }
    let ms = duration / 1_000_000;
    if ms > 0 {
        out["durationMs"] = json!(ms);
    }
    Some(out)
}

/// Attribute names and values of the newest traces of a window, per scope.
#[derive(Default)]
struct Seen {
    span: BTreeMap<String, BTreeMap<String, &'static str>>,
    resource: BTreeMap<String, BTreeMap<String, &'static str>>,
    names: BTreeSet<String>,
}

fn value_text(value: &AnyValue) -> Option<(String, &'static str)> {
    Some(match value.value.as_ref()? {
        any_value::Value::StringValue(s) => (s.clone(), "string"),
        any_value::Value::BoolValue(b) => (b.to_string(), "bool"),
        any_value::Value::IntValue(i) => (i.to_string(), "int"),
        any_value::Value::DoubleValue(d) => (d.to_string(), "float"),
        _ => return None,
    })
}

/// Reads the tags of the sample, the spans `filter` keeps only.
async fn sample(store: &Store, raw: Option<&str>, filter: Option<Query>) -> Result<Seen, TempoError> {
    let mut start_s = None;
    let mut end_s = None;
    for (k, v) in params(raw) {
        match k.as_str() {
            "start" => start_s = v.parse().ok(),
            "end" => end_s = v.parse().ok(),
            _ => {}
        }
    }
    let candidates = window(start_s, end_s, TAG_SAMPLE);
    Ok(store
        .read(move |conn| {
            let ids = query::search(conn, &candidates)?;
            let mut seen = Seen::default();
            for id in ids {
                let request = query::load_traces(conn, std::slice::from_ref(&id))?;
                let Some(trace) = Trace::of(&request) else { continue };
                let keep: Vec<usize> = match &filter {
                    Some(q) => q.sets().iter().flat_map(|e| trace.matching(e)).collect(),
                    None => (0..trace.spans.len()).collect(),
                };
                for i in keep {
                    let (span, resource) = trace.spans[i];
                    seen.names.insert(span.name.clone());
                    for (kvs, into) in [(&span.attributes[..], &mut seen.span), (resource, &mut seen.resource)] {
                        for kv in kvs {
                            let values = into.entry(kv.key.clone()).or_default();
                            if values.len() < 1_000
                                && let Some((text, kind)) = kv.value.as_ref().and_then(value_text)
                            {
                                values.insert(text, kind);
                            }
                        }
                    }
                }
            }
            Ok::<_, StoreError>(seen)
        })
        .await?)
}

fn scope_param(raw: Option<&str>) -> Result<String, TempoError> {
    let scope = params(raw).into_iter().find(|(k, _)| k == "scope").map(|(_, v)| v).unwrap_or_default();
    match scope.as_str() {
        "" | "span" | "resource" | "intrinsic" | "none" => Ok(scope),
        // Scopes agentrace keeps no tags for answer nothing.
        "event" | "link" | "instrumentation" => Ok(scope),
        other => Err(bad(format!("invalid scope: {other}"))),
    }
}

async fn tags_v1(State(store): State<Store>, RawQuery(raw): RawQuery) -> Result<Response, TempoError> {
    let scope = scope_param(raw.as_deref())?;
    let seen = sample(&store, raw.as_deref(), None).await?;
    let mut names: BTreeSet<String> = BTreeSet::new();
    if matches!(scope.as_str(), "" | "span" | "none") {
        names.extend(seen.span.keys().cloned());
    }
    if matches!(scope.as_str(), "" | "resource" | "none") {
        names.extend(seen.resource.keys().cloned());
    }
    if scope == "intrinsic" {
        names.extend(INTRINSICS.iter().map(|s| (*s).to_owned()));
    }
    Ok(axum::Json(json!({ "tagNames": names, "metrics": {} })).into_response())
}

async fn tags_v2(State(store): State<Store>, RawQuery(raw): RawQuery) -> Result<Response, TempoError> {
    let scope = scope_param(raw.as_deref())?;
    let seen = sample(&store, raw.as_deref(), None).await?;
    let mut scopes = Vec::new();
    if matches!(scope.as_str(), "" | "resource" | "none") {
        scopes.push(json!({ "name": "resource", "tags": seen.resource.keys().collect::<Vec<_>>() }));
    }
    if matches!(scope.as_str(), "" | "span" | "none") {
        scopes.push(json!({ "name": "span", "tags": seen.span.keys().collect::<Vec<_>>() }));
    }
    if matches!(scope.as_str(), "" | "intrinsic" | "none") {
        let mut intrinsics = INTRINSICS.to_vec();
        intrinsics.sort_unstable();
        scopes.push(json!({ "name": "intrinsic", "tags": intrinsics }));
    }
    Ok(axum::Json(json!({ "scopes": scopes, "metrics": {} })).into_response())
}

async fn values_v1(
    State(store): State<Store>,
    Path(tag): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, TempoError> {
    let seen = sample(&store, raw.as_deref(), None).await?;
    let mut values: BTreeSet<String> = BTreeSet::new();
    for map in [&seen.span, &seen.resource] {
        values.extend(map.get(&tag).into_iter().flat_map(|v| v.keys().cloned()));
    }
    if tag == "status.code" {
        values.extend(["error", "ok", "unset"].map(String::from));
    }
    Ok(axum::Json(json!({ "tagValues": values, "metrics": {} })).into_response())
}

async fn values_v2(
    State(store): State<Store>,
    Path(tag): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, TempoError> {
    // Statuses and kinds are keywords: Grafana writes them unquoted.
    let keywords = |values: &[&str]| {
        let list: Vec<Json> = values.iter().map(|v| json!({ "type": "keyword", "value": v })).collect();
        axum::Json(json!({ "tagValues": list, "metrics": {} })).into_response()
    };
    match tag.trim_start_matches("span:") {
        "status" => return Ok(keywords(&["error", "ok", "unset"])),
        "kind" => return Ok(keywords(&["client", "consumer", "internal", "producer", "server", "unspecified"])),
        "duration" | "traceDuration" => {
            return Ok(axum::Json(json!({ "tagValues": [], "metrics": {} })).into_response());
        }
        _ => {}
    }
    let field = match traceql::parse(&format!("{{{tag}=\"\"}}")) {
        Ok(Query::Set(Expr::Cmp(field, _, _))) => field,
        _ => return Err(bad(format!("please provide a valid tagName: {tag:?}"))),
    };
    // A filter that does not parse is ignored, as Tempo ignores it.
    let filter = params(raw.as_deref()).into_iter().find(|(k, _)| k == "q").and_then(|(_, q)| traceql::parse(&q).ok());
    let seen = sample(&store, raw.as_deref(), filter).await?;
    let mut values: BTreeMap<String, &'static str> = BTreeMap::new();
    match &field {
        Field::Span(k) => values.extend(seen.span.get(k).cloned().unwrap_or_default()),
        Field::Resource(k) => values.extend(seen.resource.get(k).cloned().unwrap_or_default()),
        Field::Any(k) => {
            values.extend(seen.resource.get(k).cloned().unwrap_or_default());
            values.extend(seen.span.get(k).cloned().unwrap_or_default());
        }
        Field::Name => values.extend(seen.names.iter().map(|n| (n.clone(), "string"))),
        _ => {}
    }
    let list: Vec<Json> = values.into_iter().map(|(value, kind)| json!({ "type": kind, "value": value })).collect();
    Ok(axum::Json(json!({ "tagValues": list, "metrics": {} })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_parameters_are_read_as_tempo_reads_them() {
        let s =
            parse_search(Some("q=%7Bstatus%3Derror%7D&limit=5&spss=2&start=10&end=20&minDuration=100ms")).ok().unwrap();
        assert_eq!((s.limit, s.spss, s.start_s, s.end_s, s.min_ns), (5, 2, Some(10), Some(20), Some(100_000_000)));
        let err = |raw: &str| match parse_search(Some(raw)) {
            Err(TempoError(status, message)) => (status.as_u16(), message),
            Ok(_) => panic!("{raw} parsed"),
        };
        assert_eq!(err("start=20&end=10").1, "http parameter start must be before end. received start=20 end=10");
        assert_eq!(err("limit=0").1, "invalid limit: must be a positive number");
        assert_eq!(err("q=%7B%7D&tags=a%3Db").1, "invalid request: can't specify tags and q in the same query");
        assert!(err("q=%7Bname%3D%7D").1.contains("invalid TraceQL"));
        let s = parse_search(Some("tags=service.name%3Dfrontend%20http.method%3D%22GET%22")).ok().unwrap();
        assert!(matches!(s.query, Query::Set(Expr::And(_, _))));
        let many = format!("tags={}", "a%3Db%20".repeat(100_000));
        assert_eq!(err(&many).1, "invalid tags: more than 256 pairs");
    }
}
