//! Reads: traces by ID, search, services and operations, session and join keys.
//!
//! Every function takes a reader connection (see [`super::Store::read`]) and
//! rebuilds OTLP messages from the stored bytes, so what comes out is what
//! went in.

use std::collections::{BTreeMap, HashMap};

use super::prepare::Chunk;
use super::sql::{Bind, Db};
use super::{KeyKind, StoreError};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// A parameter list built as a query is, each value owned.
type Params = Vec<Box<dyn Bind>>;

fn bound(params: &Params) -> Vec<&dyn Bind> {
    params.iter().map(|p| p.as_ref()).collect()
}

/// A search over stored spans, as Jaeger's `FindTraces` takes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    /// Only traces with a span of this service.
    pub service: Option<String>,
    /// Only traces with a span of this name (with `service`, of that service).
    pub operation: Option<String>,
    /// Earliest span start, Unix nanoseconds.
    pub start_min_ns: Option<i64>,
    /// Latest span start, Unix nanoseconds.
    pub start_max_ns: Option<i64>,
    /// Shortest matching span, nanoseconds.
    pub duration_min_ns: Option<i64>,
    /// Longest matching span, nanoseconds.
    pub duration_max_ns: Option<i64>,
    /// Attributes some span of the trace must have, among the indexed keys
    /// (`session.id`, `gen_ai.conversation.id`, `user.id`,
    /// `messaging.message.id`, `gen_ai.tool.call.id`).
    pub attributes: Vec<(KeyKind, String)>,
    /// Most traces returned, newest first.
    pub limit: usize,
}

/// One row of a trace list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TraceSummary {
    /// Lowercase hex trace ID.
    pub trace_id: String,
    /// Earliest span start, Unix nanoseconds.
    pub start_ns: i64,
    /// Latest span end, Unix nanoseconds.
    pub end_ns: i64,
    /// Spans stored for the trace.
    pub spans: i64,
    /// Spans with status ERROR.
    pub errors: i64,
}

/// Trace IDs matching a search, newest first.
pub fn search(db: &Db, query: &SearchQuery) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut sql = String::from("SELECT s.trace_id, MAX(s.start_ns) AS latest FROM spans s");
    let mut params: Params = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    for (i, (key, value)) in query.attributes.iter().enumerate() {
        sql.push_str(&format!(
            " JOIN span_keys k{i} ON k{i}.trace_id = s.trace_id AND k{i}.key = ?{} AND k{i}.value = ?{}",
            params.len() + 1,
            params.len() + 2
        ));
        params.push(Box::new(*key as i64));
        params.push(Box::new(value.clone()));
    }
    let mut add = |clause: &str, value: Box<dyn Bind>| {
        params.push(value);
        clauses.push(clause.replace('?', &format!("?{}", params.len())));
    };
    if let Some(service) = &query.service {
        add("s.service = ?", Box::new(service.clone()));
    }
    if let Some(operation) = &query.operation {
        add("s.name = ?", Box::new(operation.clone()));
    }
    if let Some(t) = query.start_min_ns {
        add("s.start_ns >= ?", Box::new(t));
    }
    if let Some(t) = query.start_max_ns {
        add("s.start_ns <= ?", Box::new(t));
    }
    if let Some(d) = query.duration_min_ns {
        add("s.end_ns - s.start_ns >= ?", Box::new(d));
    }
    if let Some(d) = query.duration_max_ns {
        add("s.end_ns - s.start_ns <= ?", Box::new(d));
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    params.push(Box::new(query.limit.max(1) as i64));
    sql.push_str(&format!(" GROUP BY s.trace_id ORDER BY latest DESC LIMIT ?{}", params.len()));
    db.blobs(&sql, &bound(&params))
}

/// Summaries of the given traces, in the given order.
pub fn summaries(db: &Db, trace_ids: &[Vec<u8>]) -> Result<Vec<TraceSummary>, StoreError> {
    let mut out = Vec::with_capacity(trace_ids.len());
    for id in trace_ids {
        let r = db.row(
            "SELECT MIN(start_ns), MAX(end_ns), COUNT(*), SUM(CASE WHEN status_code = 2 THEN 1 ELSE 0 END)
             FROM spans WHERE trace_id = ?1",
            &[id],
        )?;
        let summary = TraceSummary {
            trace_id: agentrace_model::ids::to_hex(id),
            start_ns: r.opt_int(0)?.unwrap_or(0),
            end_ns: r.opt_int(1)?.unwrap_or(0),
            spans: r.int(2)?,
            errors: r.opt_int(3)?.unwrap_or(0),
        };
        if summary.spans > 0 {
            out.push(summary);
        }
    }
    Ok(out)
}

/// Trace IDs having a span whose indexed `key` is one of `keys` with `value`.
pub fn trace_ids_by_key(db: &Db, keys: &[KeyKind], value: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for key in keys {
        for id in db.blobs(
            "SELECT trace_id, MIN(start_ns) AS first FROM span_keys WHERE key = ?1 AND value = ?2
             GROUP BY trace_id ORDER BY first",
            &[&(*key as i64), &value],
        )? {
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    Ok(out)
}

/// Most traces one session lookup follows join keys to.
const MAX_SESSION_TRACES: usize = 1000;

/// The traces of a session: those carrying its ID under one of `keys`,
/// then, repeatedly, the traces that share a join key with them
/// (`messaging.message.id`, an MCP request, `gen_ai.tool.call.id`). A hop
/// that lost trace context usually lost the session baggage with it, so
/// without this the orphaned half of a hand-off would never be found by
/// session. Bounded at `MAX_SESSION_TRACES` traces.
pub fn session_trace_ids(db: &Db, keys: &[KeyKind], session: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    let traces = trace_ids_by_key(db, keys, session)?;
    follow_join_keys(db, traces)
}

/// The traces one trace belongs with: itself, the traces of the sessions
/// it carries (`sessions`, values of one of `keys`, read from its spans by
/// the caller), and the traces joined to any of those by a shared message,
/// MCP request or tool call ID. An orphan that lost the session baggage is
/// still found from its producer's side, and the other way round. Bounded
/// like [`session_trace_ids`].
pub fn related_trace_ids(
    db: &Db,
    keys: &[KeyKind],
    trace_id: &[u8],
    sessions: &[String],
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut traces = vec![trace_id.to_vec()];
    for session in sessions {
        for id in trace_ids_by_key(db, keys, session)? {
            if !traces.contains(&id) && traces.len() < MAX_SESSION_TRACES {
                traces.push(id);
            }
        }
    }
    follow_join_keys(db, traces)
}

/// The arrived traces of the request that holds `trace_id`, as the live
/// pipeline last stored it; just the trace when no request holds it yet.
pub fn request_members(db: &Db, trace_id: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = db.blobs(
        "SELECT m.trace_id FROM request_traces t JOIN request_traces m ON m.request_id = t.request_id
         WHERE t.trace_id = ?1 ORDER BY m.trace_id",
        &[&trace_id],
    )?;
    if !out.iter().any(|t| t == trace_id) {
        out.push(trace_id.to_vec());
    }
    Ok(out)
}

/// Traces with a span that started between `from_ns` and `to_ns`, those
/// starting nearest `near_ns` first, at most `limit`: what ran beside a
/// request, for a diagnosis on read that looks where the live one looked.
pub fn traces_near(db: &Db, from_ns: i64, to_ns: i64, near_ns: i64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
    db.blobs(
        "SELECT trace_id FROM
             (SELECT trace_id, start_ns FROM spans WHERE start_ns BETWEEN ?1 AND ?2 LIMIT 50000) AS beside
         GROUP BY trace_id ORDER BY ABS(MIN(start_ns) - ?3) LIMIT ?4",
        &[&from_ns, &to_ns, &near_ns, &(limit as i64)],
    )
}

/// The traces that share a join key (message, MCP request or tool call
/// ID) with `trace_id`, not counting itself.
pub fn join_partners(db: &Db, trace_id: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    db.blobs(
        "SELECT DISTINCT other.trace_id FROM span_keys mine
         JOIN span_keys other ON other.key = mine.key AND other.value = mine.value
         WHERE mine.trace_id = ?1 AND mine.key IN (?2, ?3, ?4) AND other.trace_id != ?1",
        &[&trace_id, &(KeyKind::Message as i64), &(KeyKind::McpRequest as i64), &(KeyKind::ToolCall as i64)],
    )
}

/// For each of `traces`, the stored traces at the other end of its
/// hand-offs: those sharing a message, MCP request or tool call ID with it,
/// those it links to and those linking to it. As (trace, partner) pairs,
/// in a few queries whatever the number of traces.
pub fn hand_off_partners(db: &Db, traces: &[Vec<u8>]) -> Result<Vec<Membership>, StoreError> {
    let mut out: Vec<Membership> = Vec::new();
    let link = KeyKind::Link as i64;
    for part in traces.chunks(200) {
        let marks = |from: usize| (from..from + part.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let ids: Vec<&dyn Bind> = part.iter().map(|t| t as &dyn Bind).collect();
        let keys = [KeyKind::Message as i64, KeyKind::McpRequest as i64, KeyKind::ToolCall as i64];
        let mut params = ids.clone();
        params.extend(keys.iter().map(|k| k as &dyn Bind));
        let n = part.len();
        for r in db.rows(
            &format!(
                "SELECT DISTINCT mine.trace_id, other.trace_id FROM span_keys mine
                 JOIN span_keys other ON other.key = mine.key AND other.value = mine.value
                 WHERE mine.trace_id IN ({}) AND mine.key IN (?{}, ?{}, ?{}) AND other.trace_id != mine.trace_id",
                marks(1),
                n + 1,
                n + 2,
                n + 3
            ),
            &params,
        )? {
            out.push((r.blob(0)?, r.blob(1)?));
        }
        // Linking to one of them: the link's value is the linked trace, in hex.
        let hexes: Vec<String> = part.iter().map(|t| agentrace_model::ids::to_hex(t)).collect();
        let mut params: Vec<&dyn Bind> = hexes.iter().map(|h| h as &dyn Bind).collect();
        params.push(&link);
        for r in db.rows(
            &format!(
                "SELECT DISTINCT value, trace_id FROM span_keys WHERE value IN ({}) AND key = ?{}",
                marks(1),
                n + 1
            ),
            &params,
        )? {
            if let Ok(t) = agentrace_model::TraceId::from_hex(&r.text(0)?) {
                out.push((t.as_bytes().to_vec(), r.blob(1)?));
            }
        }
        // Linked from one of them, when the linked trace is stored.
        let mut params = ids.clone();
        params.push(&link);
        let mut targets: Vec<Membership> = Vec::new();
        for r in db.rows(
            &format!(
                "SELECT DISTINCT trace_id, value FROM span_keys WHERE trace_id IN ({}) AND key = ?{}",
                marks(1),
                n + 1
            ),
            &params,
        )? {
            if let Ok(t) = agentrace_model::TraceId::from_hex(&r.text(1)?) {
                targets.push((r.blob(0)?, t.as_bytes().to_vec()));
            }
        }
        for (from, to) in targets {
            if db.opt_row("SELECT 1 FROM spans WHERE trace_id = ?1 LIMIT 1", &[&to])?.is_some() {
                out.push((from, to));
            }
        }
    }
    out.retain(|(a, b)| a != b);
    out.sort();
    out.dedup();
    Ok(out)
}

/// A trace ID and the ID of the request it was stored as part of.
pub type Membership = (Vec<u8>, Vec<u8>);

/// The request each of `traces` was last stored as part of; a trace no
/// request holds yet is left out.
pub fn stored_requests(db: &Db, traces: &[Vec<u8>]) -> Result<Vec<Membership>, StoreError> {
    let mut out = Vec::new();
    for t in traces {
        if let Some(row) = db.opt_row("SELECT request_id FROM request_traces WHERE trace_id = ?1", &[t])? {
            out.push((t.clone(), row.blob(0)?));
        }
    }
    Ok(out)
}

/// Adds, repeatedly, the traces that share a join key with one already in
/// `traces`, up to [`MAX_SESSION_TRACES`].
fn follow_join_keys(db: &Db, mut traces: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut next = 0;
    while next < traces.len() && traces.len() < MAX_SESSION_TRACES {
        let found = join_partners(db, &traces[next])?;
        for id in found {
            if !traces.contains(&id) && traces.len() < MAX_SESSION_TRACES {
                traces.push(id);
            }
        }
        next += 1;
    }
    Ok(traces)
}

/// The session a span carries (`session.id`, or `gen_ai.conversation.id`: `true`).
pub fn session_of(span: &agentrace_model::Span) -> Option<(String, bool)> {
    agentrace_model::keys::KeySet::of_span(span).session().map(|(s, conversation)| (s.to_owned(), conversation))
}

/// The spans of the given traces, in the model's form.
pub fn spans_of(conn: &Db, ids: &[Vec<u8>]) -> Result<Vec<agentrace_model::Span>, StoreError> {
    Ok(agentrace_model::Span::from_request(&load_traces(conn, ids)?))
}

/// How far before a request a trace that ran beside it may have started,
/// and how many such traces a diagnosis on read looks at, as the live
/// pipeline does (`assemble`).
const NEAR_BEFORE_NS: i64 = 90_000_000_000;
const NEAR_AFTER_NS: i64 = 1_000_000_000;
const MAX_NEAR_TRACES: usize = 128;

/// The spans a diagnosis of trace `key`'s request reads: the request's
/// traces as the live pipeline stored it, their sessions' and join keys'
/// traces, and the traces that ran beside them.
pub fn request_context(conn: &Db, key: &[u8]) -> Result<Vec<agentrace_model::Span>, StoreError> {
    let members = request_members(conn, key)?;
    let mut spans = spans_of(conn, &members)?;
    if spans.is_empty() {
        return Ok(spans);
    }
    let mut sessions: Vec<String> = Vec::new();
    for span in &spans {
        if let Some((v, _)) = session_of(span).filter(|(v, _)| !sessions.contains(v)) {
            sessions.push(v);
        }
    }
    let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0) as i64;
    let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0) as i64;
    let mut others = related_trace_ids(conn, &KeyKind::SESSIONS, key, &sessions)?;
    others.extend(traces_near(
        conn,
        start.saturating_sub(NEAR_BEFORE_NS),
        end.saturating_add(NEAR_AFTER_NS),
        start,
        MAX_NEAR_TRACES,
    )?);
    others.sort();
    others.dedup();
    others.retain(|id| !members.contains(id));
    // The doctor's answer does not depend on the order of its input.
    spans.extend(spans_of(conn, &others)?);
    Ok(spans)
}

/// Every service that has sent a span, sorted.
pub fn services(db: &Db) -> Result<Vec<String>, StoreError> {
    db.texts("SELECT DISTINCT service FROM operations ORDER BY service", &[])
}

/// Span names and kinds of one service, sorted.
pub fn operations(db: &Db, service: &str) -> Result<Vec<(String, i32)>, StoreError> {
    db.rows("SELECT name, kind FROM operations WHERE service = ?1 ORDER BY name, kind", &[&service])?
        .iter()
        .map(|r| Ok((r.text(0)?, r.int(1)? as i32)))
        .collect()
}

/// What a trace list needs of a span, without decoding it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanOutline {
    /// The span's ID.
    pub span_id: Vec<u8>,
    /// Its parent's, if it has one.
    pub parent_span_id: Option<Vec<u8>>,
    /// Its service.
    pub service: String,
    /// Its name.
    pub name: String,
    /// Start, Unix nanoseconds.
    pub start_ns: i64,
    /// End, Unix nanoseconds.
    pub end_ns: i64,
    /// Whether its status is ERROR.
    pub error: bool,
}

/// The outline of every span of a trace, from the store's columns.
pub fn span_outlines(db: &Db, trace_id: &[u8]) -> Result<Vec<SpanOutline>, StoreError> {
    db.rows(
        "SELECT span_id, parent_span_id, service, name, start_ns, end_ns, status_code FROM spans WHERE trace_id = ?1",
        &[&trace_id],
    )?
    .iter()
    .map(|r| {
        Ok(SpanOutline {
            span_id: r.blob(0)?,
            parent_span_id: r.opt_blob(1)?,
            service: r.text(2)?,
            name: r.text(3)?,
            start_ns: r.int(4)?,
            end_ns: r.int(5)?,
            error: r.int(6)? == 2,
        })
    })
    .collect()
}

/// Calls between services among the spans that started in
/// `[from_ns, to_ns]` (the newest `max_spans` of them): a span whose parent,
/// as it arrived or as an applied repair of the live diagnosis joined it,
/// is of another service. Keyed by (caller's service, callee's service).
pub fn service_calls(
    db: &Db,
    from_ns: i64,
    to_ns: i64,
    max_spans: i64,
) -> Result<BTreeMap<(String, String), u64>, StoreError> {
    let mut out: BTreeMap<(String, String), u64> = BTreeMap::new();
    let arrived = db.rows(
        "SELECT p.service, c.service, COUNT(*) FROM
             (SELECT trace_id, parent_span_id, service FROM spans
              WHERE start_ns BETWEEN ?1 AND ?2 AND parent_span_id IS NOT NULL
              ORDER BY start_ns DESC LIMIT ?3) c
         JOIN spans p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
         WHERE p.service != c.service
         GROUP BY p.service, c.service",
        &[&from_ns, &to_ns, &max_spans],
    )?;
    for row in arrived {
        let (parent, child, n) = (row.text(0)?, row.text(1)?, row.int(2)?);
        *out.entry((parent, child)).or_default() += n.max(0) as u64;
    }
    // The hops that lost their context: the repairs each request's answer applied.
    let service_of = |trace: &serde_json::Value, span: &serde_json::Value| -> Result<Option<String>, StoreError> {
        let (Some(trace), Some(span)) = (trace.as_str(), span.as_str()) else { return Ok(None) };
        let (Ok(trace), Ok(span)) =
            (agentrace_model::TraceId::from_hex(trace), agentrace_model::SpanId::from_hex(span))
        else {
            return Ok(None);
        };
        db.opt_row(
            "SELECT service FROM spans WHERE trace_id = ?1 AND span_id = ?2",
            &[&trace.as_bytes().as_slice(), &span.as_bytes().as_slice()],
        )?
        .map(|r| r.text(0))
        .transpose()
    };
    for answer in stored_answers(db, from_ns, to_ns, max_spans, true)? {
        for repair in answer["repairs"].as_array().into_iter().flatten().filter(|r| r["applied"] == true) {
            let child = service_of(&repair["trace_id"], &repair["span_id"])?;
            let parent = service_of(&repair["parent_trace_id"], &repair["parent_span_id"])?;
            if let (Some(parent), Some(child)) = (parent, child)
                && parent != child
            {
                *out.entry((parent, child)).or_default() += 1;
            }
        }
    }
    Ok(out)
}

/// The stored answers of the requests that started in `[from_ns, to_ns]`,
/// newest first, at most `max` (only those with an applied repair when
/// `repaired`).
fn stored_answers(
    db: &Db,
    from_ns: i64,
    to_ns: i64,
    max: i64,
    repaired: bool,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let texts = db.texts(
        "SELECT answer FROM requests WHERE start_ns BETWEEN ?1 AND ?2 AND (CAST(?4 AS BIGINT) = 0 OR repairs > 0)
         ORDER BY start_ns DESC LIMIT ?3",
        &[&from_ns, &to_ns, &max, &i64::from(repaired)],
    )?;
    Ok(texts.into_iter().filter_map(|t| serde_json::from_str(&t).ok()).collect())
}

/// Hand-offs between agents in the requests that started in
/// `[from_ns, to_ns]` (the newest `max_requests` of them), as each
/// request's stored answer records them. Keyed by (from, to).
pub fn agent_calls(
    db: &Db,
    from_ns: i64,
    to_ns: i64,
    max_requests: i64,
) -> Result<BTreeMap<(String, String), u64>, StoreError> {
    let mut out: BTreeMap<(String, String), u64> = BTreeMap::new();
    for answer in stored_answers(db, from_ns, to_ns, max_requests, false)? {
        for d in answer["request"]["delegations"].as_array().into_iter().flatten() {
            if let (Some(from), Some(to)) = (d["from"].as_str(), d["to"].as_str()) {
                *out.entry((from.to_owned(), to.to_owned())).or_default() += d["count"].as_u64().unwrap_or(1);
            }
        }
    }
    Ok(out)
}

/// Rebuilds the given traces as one export request: per trace, one
/// `ResourceSpans` per resource and one `ScopeSpans` per scope, spans in
/// arrival order.
pub fn load_traces(db: &Db, trace_ids: &[Vec<u8>]) -> Result<ExportTraceServiceRequest, StoreError> {
    let mut out = ExportTraceServiceRequest::default();
    let mut resources: HashMap<i64, ResourceSpans> = HashMap::new();
    let mut scopes: HashMap<i64, ScopeSpans> = HashMap::new();
    let mut chunks: HashMap<i64, Chunk> = HashMap::new();
    for trace_id in trace_ids {
        // (resource id) -> index in out.resource_spans, for this trace.
        let mut resource_index: HashMap<i64, usize> = HashMap::new();
        let mut scope_index: HashMap<(i64, i64), usize> = HashMap::new();
        let rows = db.rows(
            "SELECT resource_id, scope_id, chunk_id, chunk_index FROM spans WHERE trace_id = ?1 ORDER BY id",
            &[trace_id],
        )?;
        for row in rows {
            let (resource_id, scope_id, chunk_id, chunk_index) = (row.int(0)?, row.int(1)?, row.int(2)?, row.int(3)?);
            let chunk = match chunks.entry(chunk_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    // A chunk retention deleted since the span rows were
                    // read: those spans are gone too.
                    let Some(body) = db.opt_row("SELECT body FROM chunks WHERE id = ?1", &[&chunk_id])? else {
                        continue;
                    };
                    e.insert(
                        Chunk::open(&body.blob(0)?)
                            .map_err(|e| StoreError::Corrupt(format!("chunk {chunk_id}: {e}")))?,
                    )
                }
            };
            let bytes = usize::try_from(chunk_index)
                .ok()
                .and_then(|i| chunk.span(i))
                .ok_or_else(|| StoreError::Corrupt(format!("chunk {chunk_id} has no span {chunk_index}")))?;
            let span =
                Span::decode(bytes).map_err(|e| StoreError::Corrupt(format!("span in chunk {chunk_id}: {e}")))?;
            let ri = match resource_index.get(&resource_id) {
                Some(i) => *i,
                None => {
                    let shell = match resources.get(&resource_id) {
                        Some(r) => r.clone(),
                        None => {
                            let r = load_shell::<ResourceSpans>(db, "resources", resource_id)?;
                            resources.insert(resource_id, r.clone());
                            r
                        }
                    };
                    out.resource_spans.push(shell);
                    resource_index.insert(resource_id, out.resource_spans.len() - 1);
                    out.resource_spans.len() - 1
                }
            };
            let si = match scope_index.get(&(resource_id, scope_id)) {
                Some(i) => *i,
                None => {
                    let shell = match scopes.get(&scope_id) {
                        Some(s) => s.clone(),
                        None => {
                            let s = load_shell::<ScopeSpans>(db, "scopes", scope_id)?;
                            scopes.insert(scope_id, s.clone());
                            s
                        }
                    };
                    let list = &mut out.resource_spans[ri].scope_spans;
                    list.push(shell);
                    scope_index.insert((resource_id, scope_id), list.len() - 1);
                    list.len() - 1
                }
            };
            out.resource_spans[ri].scope_spans[si].spans.push(span);
        }
    }
    Ok(out)
}

/// A resource or scope row: the encoded `ResourceSpans` or `ScopeSpans`
/// shell that spans are put back into.
fn load_shell<T: Message + Default>(db: &Db, table: &str, id: i64) -> Result<T, StoreError> {
    let body = db.row(&format!("SELECT body FROM {table} WHERE id = ?1"), &[&id])?.blob(0)?;
    T::decode(body.as_slice()).map_err(|e| StoreError::Corrupt(format!("{table} row {id}: {e}")))
}

/// The trace list's filters that the store answers from its indexes,
/// span by span: a trace matches when one of its spans does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentFilter {
    /// Only traces with a span of this service.
    pub service: Option<String>,
    /// Earliest span start, Unix nanoseconds.
    pub start_min_ns: Option<i64>,
    /// Latest span start, Unix nanoseconds.
    pub start_max_ns: Option<i64>,
    /// Only traces with a span whose status is ERROR.
    pub errors_only: bool,
    /// Only traces with a span whose name contains this text (ASCII case
    /// folded, as SQLite's `LIKE` does).
    pub name_contains: Option<String>,
    /// Only among these traces (a session's, say).
    pub within: Option<Vec<Vec<u8>>>,
}

/// Most span rows one list query reads. A filter that matches rarely
/// (a text that no recent span name holds) stops here rather than read
/// the whole store; the answer then holds what was found so far.
pub const MAX_SCAN_SPANS: usize = 200_000;

/// Up to `want` trace IDs having a span that matches `filter`, newest
/// first (by their latest matching span start). Walks the spans newest
/// first along `spans_by_start` or `spans_by_service` and stops as soon as
/// it has `want` traces, so a list page costs the spans of its traces, not
/// the store's size; bounded at [`MAX_SCAN_SPANS`] rows.
pub fn recent_trace_ids(db: &Db, filter: &RecentFilter, want: usize) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut params: Params = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    let like = db.like();
    let mut add = |clause: &str, value: Box<dyn Bind>| {
        params.push(value);
        clauses.push(clause.replace('?', &format!("?{}", params.len())));
    };
    if let Some(service) = &filter.service {
        add("service = ?", Box::new(service.clone()));
    }
    if let Some(t) = filter.start_min_ns {
        add("start_ns >= ?", Box::new(t));
    }
    if let Some(t) = filter.start_max_ns {
        add("start_ns <= ?", Box::new(t));
    }
    if filter.errors_only {
        add("status_code = ?", Box::new(2_i64));
    }
    if let Some(text) = &filter.name_contains {
        let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        add(&format!("name {like} ? ESCAPE '\\'"), Box::new(format!("%{escaped}%")));
    }
    if let Some(within) = &filter.within {
        if within.is_empty() {
            return Ok(Vec::new());
        }
        let mut marks = Vec::with_capacity(within.len());
        for id in within {
            params.push(Box::new(id.clone()));
            marks.push(format!("?{}", params.len()));
        }
        clauses.push(format!("trace_id IN ({})", marks.join(",")));
    }
    let mut sql = String::from("SELECT trace_id FROM spans");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY start_ns DESC LIMIT {MAX_SCAN_SPANS}"));
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    if want > 0 {
        db.each(&sql, &bound(&params), |row| {
            let id = row.blob(0)?;
            if seen.insert(id.clone()) {
                out.push(id);
            }
            Ok(out.len() < want)
        })?;
    }
    Ok(out)
}

/// One row of the session list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionRow {
    /// The session ID (`session.id` or `gen_ai.conversation.id`).
    pub id: String,
    /// Earliest span start carrying it, Unix nanoseconds.
    pub start_unix_nano: i64,
    /// Latest span start carrying it, Unix nanoseconds.
    pub last_unix_nano: i64,
    /// Traces carrying it (not counting traces joined by key).
    pub traces: i64,
    /// Its requests as the live pipeline stored them, added up (all zero
    /// without a live pipeline).
    #[serde(flatten)]
    pub totals: SessionTotals,
}

/// A session's requests added up.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SessionTotals {
    /// Connected requests (turns).
    pub requests: i64,
    /// From the first request's start to the end of the last one's work.
    pub duration_ms: f64,
    /// LLM input tokens.
    pub input_tokens: i64,
    /// LLM output tokens.
    pub output_tokens: i64,
    /// Cost of its LLM calls, USD.
    pub cost_usd: f64,
    /// Requests that failed or hold a causal error.
    pub errors: i64,
    /// Findings on its requests.
    pub findings: i64,
    /// Findings that say trace context broke.
    pub broken: i64,
}

/// A session's requests added up, along the requests' session index.
pub fn session_totals(db: &Db, session: &str) -> Result<SessionTotals, StoreError> {
    // Added up as floating point (SQLite's TOTAL), which cannot overflow
    // where an integer SUM would (a sender's absurd token count is stored
    // as i64::MAX), and read back saturating.
    let r = db.row(
        "SELECT COUNT(*), MIN(start_ns), MAX(start_ns + duration_ns),
                COALESCE(SUM(CAST(input_tokens AS DOUBLE PRECISION)), 0.0),
                COALESCE(SUM(CAST(output_tokens AS DOUBLE PRECISION)), 0.0), COALESCE(SUM(cost_usd), 0.0),
                COALESCE(SUM(CAST(CASE WHEN errors > 0 OR failed THEN 1 ELSE 0 END AS DOUBLE PRECISION)), 0.0),
                COALESCE(SUM(CAST(findings AS DOUBLE PRECISION)), 0.0),
                COALESCE(SUM(CAST(broken AS DOUBLE PRECISION)), 0.0)
         FROM requests WHERE session = ?1",
        &[&session],
    )?;
    let (first, last) = (r.opt_int(1)?, r.opt_int(2)?);
    Ok(SessionTotals {
        requests: r.int(0)?,
        duration_ms: match (first, last) {
            (Some(a), Some(b)) => ((b - a) as f64 / 1e3).round() / 1e3,
            _ => 0.0,
        },
        input_tokens: r.real(3)? as i64,
        output_tokens: r.real(4)? as i64,
        cost_usd: r.real(5)?,
        errors: r.real(6)? as i64,
        findings: r.real(7)? as i64,
        broken: r.real(8)? as i64,
    })
}

/// The root services, agents and models of stored requests, for the
/// list's pickers: at most `max` of each, in name order.
pub fn request_facets(db: &Db, max: usize) -> Result<RequestFacets, StoreError> {
    let max = max as i64;
    let services = db.texts("SELECT DISTINCT root_service FROM requests ORDER BY root_service LIMIT ?1", &[&max])?;
    let agents = db.texts("SELECT DISTINCT agent FROM request_agents ORDER BY agent LIMIT ?1", &[&max])?;
    let models = db.texts("SELECT DISTINCT model FROM request_models ORDER BY model LIMIT ?1", &[&max])?;
    Ok(RequestFacets { services, agents, models })
}

/// The names the request list's pickers offer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RequestFacets {
    /// Root services.
    pub services: Vec<String>,
    /// Agents.
    pub agents: Vec<String>,
    /// LLM models.
    pub models: Vec<String>,
}

/// Up to `want` sessions, most recently active first. Walks `span_keys`
/// newest first along its start index, bounded at [`MAX_SCAN_SPANS`] rows.
pub fn recent_sessions(db: &Db, keys: &[KeyKind], want: usize) -> Result<Vec<SessionRow>, StoreError> {
    let marks: Vec<String> = keys.iter().map(|k| (*k as u8).to_string()).collect();
    let sql = format!(
        "SELECT value FROM span_keys WHERE key IN ({}) ORDER BY start_ns DESC LIMIT {MAX_SCAN_SPANS}",
        marks.join(",")
    );
    let mut ids: Vec<String> = Vec::new();
    if want > 0 {
        db.each(&sql, &[], |row| {
            let id = row.text(0)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
            Ok(ids.len() < want)
        })?;
    }
    let detail_sql = format!(
        "SELECT MIN(start_ns), MAX(start_ns), COUNT(DISTINCT trace_id) FROM span_keys
         WHERE key IN ({}) AND value = ?1",
        marks.join(",")
    );
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let r = db.row(&detail_sql, &[&id])?;
        out.push(SessionRow {
            start_unix_nano: r.opt_int(0)?.unwrap_or(0),
            last_unix_nano: r.opt_int(1)?.unwrap_or(0),
            traces: r.int(2)?,
            totals: session_totals(db, &id)?,
            id,
        });
    }
    Ok(out)
}

/// A request waiting in an exporter's disk queue.
#[derive(Debug, Clone)]
pub struct QueueRow {
    /// Row ID, to delete it once the backend acknowledged it.
    pub id: i64,
    /// Its place in the live pipeline's order.
    pub seq: u64,
    /// Spans it holds.
    pub spans: u64,
    /// The redacted request, encoded (protobuf).
    pub encoded: Vec<u8>,
    /// Bytes it took in the queue.
    pub size: u64,
}

/// How much of an exporter's queue to read at once.
#[derive(Debug, Clone, Copy)]
pub struct QueueWindow {
    /// Only rows after this row ID.
    pub after: i64,
    /// Only rows with `seq` at most this.
    pub max_seq: u64,
    /// About this many spans at most (at least one row).
    pub max_spans: u64,
    /// About this many encoded bytes at most (at least one row).
    pub max_bytes: u64,
}

/// The oldest rows of exporter `exporter` within `window`.
pub fn queue_peek(db: &Db, exporter: i64, window: QueueWindow) -> Result<Vec<QueueRow>, StoreError> {
    let max_seq = i64::try_from(window.max_seq).unwrap_or(i64::MAX);
    // Read row by row and stop once the window is full: a queue that fell
    // behind holds up to a thousand rows here, and reading every body to
    // send a window of them cost the pass-through a fifth of its CPU.
    let mut out = QueueWindowRows::new(window);
    db.each(
        "SELECT id, seq, spans, body FROM export_queue WHERE exporter = ?1 AND id > ?2 AND seq <= ?3 ORDER BY id LIMIT 1000",
        &[&exporter, &window.after, &max_seq],
        |row| out.push(&row),
    )?;
    Ok(out.rows)
}

/// Queue rows (id, seq, spans, body) in order, up to the window's size
/// (at least one).
struct QueueWindowRows {
    window: QueueWindow,
    rows: Vec<QueueRow>,
    spans: u64,
    bytes: u64,
}

impl QueueWindowRows {
    fn new(window: QueueWindow) -> Self {
        QueueWindowRows { window, rows: Vec::new(), spans: 0, bytes: 0 }
    }

    /// Takes the next row if it fits; says whether to read on.
    fn push(&mut self, row: &super::sql::Row) -> Result<bool, StoreError> {
        let id = row.int(0)?;
        let n = row.int(2)? as u64;
        if !self.rows.is_empty() && self.spans + n > self.window.max_spans {
            return Ok(false);
        }
        let body = row.blob(3)?;
        let encoded = lz4_flex::block::decompress_size_prepended(&body)
            .map_err(|e| StoreError::Corrupt(format!("export queue row {id}: {e}")))?;
        if !self.rows.is_empty() && self.bytes + encoded.len() as u64 > self.window.max_bytes {
            return Ok(false);
        }
        self.spans += n;
        self.bytes += encoded.len() as u64;
        self.rows.push(QueueRow { id, seq: row.int(1)? as u64, spans: n, encoded, size: body.len() as u64 });
        Ok(true)
    }
}

/// The oldest rows of exporter `exporter` that collector `me` may send,
/// leased to it (a shared store): its own rows within `window` (`seq` is its
/// own pipeline's numbering), and any row whose collector's heartbeat has
/// lapsed, which it takes over. Rows another collector is leasing right
/// now are skipped, not waited for (`FOR UPDATE SKIP LOCKED`).
pub fn queue_lease(db: &Db, exporter: i64, window: QueueWindow, me: &str) -> Result<Vec<QueueRow>, StoreError> {
    let max_seq = i64::try_from(window.max_seq).unwrap_or(i64::MAX);
    let now = super::postgres::DB_NOW_NS;
    let mut rows = db.rows(
        // Leases are read on the database's clock. The lessee is checked
        // again on the row as it is when updated: a row another collector
        // took over since this statement's snapshot is not taken from it.
        // A collector whose own heartbeat has lapsed takes nothing: the
        // others may already be sending its rows.
        &format!(
            "UPDATE export_queue SET leased_by = ?4 WHERE id IN (
                 SELECT id FROM export_queue WHERE exporter = ?1 AND id > ?2
                     AND ((leased_by = ?4 AND (queued_by != ?4 OR seq <= ?3))
                          OR leased_by NOT IN (SELECT id FROM collectors WHERE alive_until >= {now}))
                 ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)
               AND (leased_by = ?4 OR leased_by NOT IN (SELECT id FROM collectors WHERE alive_until >= {now}))
               AND EXISTS (SELECT 1 FROM collectors WHERE id = ?4 AND alive_until >= {now})
             RETURNING id, seq, spans, body"
        ),
        &[&exporter, &window.after, &max_seq, &me],
    )?;
    rows.sort_by_key(|r| r.int(0).unwrap_or(i64::MAX));
    let mut out = QueueWindowRows::new(window);
    for row in &rows {
        if !out.push(row)? {
            break;
        }
    }
    Ok(out.rows)
}

/// Spans and bytes waiting in exporter `exporter`'s queue.
pub fn queue_totals(db: &Db, exporter: i64) -> Result<(u64, u64), StoreError> {
    totals(db, "export_queue", exporter)
}

/// Spans and bytes of an exporter's rows in `table` (its queue or its dead letters).
fn totals(db: &Db, table: &str, exporter: i64) -> Result<(u64, u64), StoreError> {
    let r = db.row(
        &format!(
            "SELECT coalesce(sum(CAST(spans AS DOUBLE PRECISION)), 0.0),
                    coalesce(sum(CAST(length(body) AS DOUBLE PRECISION)), 0.0)
             FROM {table} WHERE exporter = ?1"
        ),
        &[&exporter],
    )?;
    let (spans, bytes) = (r.real(0)? as i64, r.real(1)? as i64);
    Ok((spans as u64, bytes as u64))
}

/// What an exporter's dead letters hold: requests (as they were received
/// and queued), spans, when the oldest and newest were refused, and the
/// first few reasons.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetters {
    /// The exporter's name (endpoint and protocol).
    pub exporter: String,
    /// Received requests kept.
    pub requests: u64,
    /// Spans in them.
    pub spans: u64,
    /// When the oldest was refused, Unix nanoseconds.
    pub oldest_unix_nano: i64,
    /// When the newest was refused, Unix nanoseconds.
    pub newest_unix_nano: i64,
    /// What the backend said, up to five distinct answers.
    pub reasons: Vec<String>,
}

/// Every exporter's dead letters, by exporter name.
pub fn dead_letters(db: &Db) -> Result<Vec<DeadLetters>, StoreError> {
    let rows = db.rows(
        "SELECT e.name, d.exporter, count(*), coalesce(sum(CAST(d.spans AS DOUBLE PRECISION)), 0.0), min(d.at_ns), max(d.at_ns)
         FROM dead_letters d JOIN exporters e ON e.id = d.exporter GROUP BY d.exporter, e.name ORDER BY e.name",
        &[],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (exporter, id, requests, spans, oldest, newest) =
            (r.text(0)?, r.int(1)?, r.int(2)?, r.real(3)? as i64, r.int(4)?, r.int(5)?);
        out.push(DeadLetters {
            exporter,
            requests: requests.max(0) as u64,
            spans: spans.max(0) as u64,
            oldest_unix_nano: oldest,
            newest_unix_nano: newest,
            reasons: db.texts("SELECT DISTINCT reason FROM dead_letters WHERE exporter = ?1 LIMIT 5", &[&id])?,
        });
    }
    Ok(out)
}

/// Spans and bytes in an exporter's dead letters.
pub fn dead_letter_totals(db: &Db, exporter: i64) -> Result<(u64, u64), StoreError> {
    totals(db, "dead_letters", exporter)
}

/// Highest `seq` in any queue (0 when empty), so a restarted collector
/// numbers on from there.
pub fn queue_max_seq(db: &Db) -> Result<u64, StoreError> {
    let seq = db.row("SELECT coalesce(max(seq), 0) FROM export_queue", &[])?.int(0)?;
    Ok(seq as u64)
}

/// Stored patches: (trace ID, span ID) → patch JSON.
pub type Patches = HashMap<(Vec<u8>, Vec<u8>), String>;

/// Patches of the given traces' spans.
pub fn patches(db: &Db, trace_ids: &[Vec<u8>]) -> Result<Patches, StoreError> {
    let mut out = HashMap::new();
    for trace_id in trace_ids {
        for row in db.rows("SELECT span_id, patch FROM span_patches WHERE trace_id = ?1", &[trace_id])? {
            out.insert((trace_id.clone(), row.blob(0)?), row.text(1)?);
        }
    }
    Ok(out)
}

impl QueueRow {
    /// The request, decoded.
    pub fn request(&self) -> Result<ExportTraceServiceRequest, StoreError> {
        ExportTraceServiceRequest::decode(self.encoded.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("export queue row {}: {e}", self.id)))
    }
}

/// Which requests a request list wants: every condition must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFilter {
    /// The root's service.
    pub service: Option<String>,
    /// An agent that worked in the request.
    pub agent: Option<String>,
    /// A model one of its LLM calls used.
    pub model: Option<String>,
    /// The request's session.
    pub session: Option<String>,
    /// Only requests with findings.
    pub findings: bool,
    /// Only requests where trace context broke.
    pub broken: bool,
    /// Only requests that failed or hold a causal error.
    pub errors: bool,
    /// Shortest, nanoseconds.
    pub min_duration_ns: Option<i64>,
    /// Fewest tokens (input and output).
    pub min_tokens: Option<i64>,
    /// Earliest root start, Unix nanoseconds.
    pub start_min_ns: Option<i64>,
    /// Latest root start, Unix nanoseconds.
    pub start_max_ns: Option<i64>,
    /// The root's name contains this.
    pub name_contains: Option<String>,
    /// The request holding this arrived trace.
    pub trace_id: Option<Vec<u8>>,
    /// Requests that come after this one (start, request ID, root span ID)
    /// newest first: the next page.
    pub before: Option<(i64, Vec<u8>, Vec<u8>)>,
    /// The order of the list (newest first by default).
    pub sort: RequestSort,
    /// Smallest first instead of largest (newest) first.
    pub ascending: bool,
    /// Rows of the order skipped: a later page of a sorted list.
    pub offset: usize,
}

/// What the request list is ordered by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RequestSort {
    /// The root's start.
    #[default]
    Start,
    /// From the root's start to the end of its last work.
    Duration,
    /// Cost of the LLM calls.
    Cost,
    /// Input and output tokens.
    Tokens,
    /// Spans stored.
    Spans,
    /// Findings on its spans.
    Findings,
}

impl RequestSort {
    /// The names the API takes, as `sort=`.
    pub const NAMES: [&'static str; 6] = ["start", "duration", "cost", "tokens", "spans", "findings"];

    /// From its API name.
    pub fn parse(name: &str) -> Option<RequestSort> {
        Some(match name {
            "start" => RequestSort::Start,
            "duration" => RequestSort::Duration,
            "cost" => RequestSort::Cost,
            "tokens" => RequestSort::Tokens,
            "spans" => RequestSort::Spans,
            "findings" => RequestSort::Findings,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            RequestSort::Start => "r.start_ns",
            RequestSort::Duration => "r.duration_ns",
            RequestSort::Cost => "r.cost_usd",
            RequestSort::Tokens => "r.input_tokens + r.output_tokens",
            RequestSort::Spans => "r.spans",
            RequestSort::Findings => "r.findings",
        }
    }
}

/// How many findings of one kind a request has.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FindingKindCount {
    /// The kind, as the doctor names it (`orphan_root`, `timing_gap`, …).
    pub kind: String,
    /// Whether it says trace context broke (not a slow or unexplained gap).
    pub broken: bool,
    /// How many.
    pub count: i64,
    /// The first one's message.
    pub message: String,
}

/// A stored answer's findings by kind and its failure's summary, read
/// without building the whole answer.
fn answer_outline(answer: &str) -> (Vec<FindingKindCount>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Outline {
        #[serde(default)]
        findings: Vec<agentrace_doctor::Finding>,
        #[serde(default)]
        failure: Option<FailureLine>,
    }
    #[derive(serde::Deserialize)]
    struct FailureLine {
        summary: String,
    }
    let Ok(outline) = serde_json::from_str::<Outline>(answer) else { return (Vec::new(), None) };
    let mut kinds: Vec<FindingKindCount> = Vec::new();
    for f in outline.findings {
        match kinds.iter_mut().find(|k| k.kind == f.kind.as_str()) {
            Some(k) => k.count += 1,
            None => kinds.push(FindingKindCount {
                kind: f.kind.as_str().to_owned(),
                broken: f.kind.is_broken(),
                count: 1,
                message: f.message,
            }),
        }
    }
    (kinds, outline.failure.map(|f| f.summary))
}

/// A later page than this is asked for by a narrower filter, not an offset.
pub const MAX_OFFSET: usize = 10_000;

/// One row of the request list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RequestListRow {
    /// Lowercase hex connected trace ID.
    pub request_id: String,
    /// Its root span (a trace holding a span whose parent never arrived
    /// holds two requests).
    pub root_span_id: String,
    /// The arrived trace IDs joined into it.
    pub trace_ids: Vec<String>,
    /// The root's start, Unix nanoseconds.
    pub start_unix_nano: i64,
    /// From the root's start to the end of the last work it caused.
    pub duration_ms: f64,
    /// The root's service.
    pub root_service: String,
    /// The root's name.
    pub root_name: String,
    /// Its session, if any.
    pub session: Option<String>,
    /// Spans stored for it.
    pub spans: i64,
    /// Agents that worked in it.
    pub agents: Vec<String>,
    /// LLM input tokens.
    pub input_tokens: i64,
    /// LLM output tokens.
    pub output_tokens: i64,
    /// Cost of its LLM calls, USD.
    pub cost_usd: f64,
    /// Findings on its spans.
    pub findings: i64,
    /// Findings that say trace context broke.
    pub broken: i64,
    /// Causal errors.
    pub errors: i64,
    /// Whether it failed.
    pub failed: bool,
    /// Repairs applied.
    pub repairs: i64,
    /// Its findings by kind, each with how many and the first one's message.
    pub finding_kinds: Vec<FindingKindCount>,
    /// What failed, in one line, if it failed.
    pub failure: Option<String>,
    /// The doctor's answer for the request, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<serde_json::Value>,
}

/// The requests the live pipeline stored, newest first, one page. Each
/// filter is served by an index (start, session, service, agent, partial
/// indexes for findings and errors), so a page never scans the table.
pub fn requests(
    db: &Db,
    filter: &RequestFilter,
    limit: usize,
    with_answer: bool,
) -> Result<Vec<RequestListRow>, StoreError> {
    let mut sql = String::from(
        "SELECT r.request_id, r.start_ns, r.duration_ns, r.root_service, r.root_name, r.session, r.spans, r.agents,
                r.input_tokens, r.output_tokens, r.cost_usd, r.findings, r.broken, r.errors, r.failed, r.repairs,
                r.answer, r.root_span_id
         FROM requests r",
    );
    let mut params: Params = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    let bind = |params: &mut Params, v: Box<dyn Bind>| {
        params.push(v);
        params.len()
    };
    if let Some(agent) = &filter.agent {
        let n = bind(&mut params, Box::new(agent.clone()));
        sql.push_str(&format!(" JOIN request_agents a ON a.request_id = r.request_id AND a.agent = ?{n}"));
    }
    if let Some(t) = &filter.trace_id {
        let n = bind(&mut params, Box::new(t.clone()));
        clauses.push(format!(
            "(r.request_id = ?{n} OR r.request_id IN (SELECT request_id FROM request_traces WHERE trace_id = ?{n}))"
        ));
    }
    if let Some(v) = &filter.service {
        let n = bind(&mut params, Box::new(v.clone()));
        clauses.push(format!("r.root_service = ?{n}"));
    }
    if let Some(v) = &filter.model {
        let n = bind(&mut params, Box::new(v.clone()));
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM request_models m WHERE m.request_id = r.request_id AND m.model = ?{n})"
        ));
    }
    if let Some(v) = &filter.session {
        let n = bind(&mut params, Box::new(v.clone()));
        clauses.push(format!("r.session = ?{n}"));
    }
    if filter.findings {
        clauses.push("r.findings > 0".into());
    }
    if filter.broken {
        clauses.push("r.broken > 0".into());
    }
    if filter.errors {
        clauses.push("(r.errors > 0 OR r.failed)".into());
    }
    if let Some(v) = filter.min_duration_ns {
        let n = bind(&mut params, Box::new(v));
        clauses.push(format!("r.duration_ns >= ?{n}"));
    }
    if let Some(v) = filter.min_tokens {
        let n = bind(&mut params, Box::new(v));
        clauses.push(format!("r.input_tokens + r.output_tokens >= ?{n}"));
    }
    if let Some(v) = filter.start_min_ns {
        let n = bind(&mut params, Box::new(v));
        clauses.push(format!("r.start_ns >= ?{n}"));
    }
    if let Some(v) = filter.start_max_ns {
        let n = bind(&mut params, Box::new(v));
        clauses.push(format!("r.start_ns <= ?{n}"));
    }
    if let Some(v) = &filter.name_contains {
        let n = bind(&mut params, Box::new(format!("%{}%", v.replace('%', "\\%").replace('_', "\\_"))));
        clauses.push(format!("r.root_name {} ?{n} ESCAPE '\\'", db.like()));
    }
    if let Some((start, id, root)) = &filter.before {
        let a = bind(&mut params, Box::new(*start));
        let b = bind(&mut params, Box::new(id.clone()));
        let c = bind(&mut params, Box::new(root.clone()));
        let by = if filter.agent.is_some() { "a" } else { "r" };
        clauses.push(format!(
            "({by}.start_ns < ?{a} OR ({by}.start_ns = ?{a} AND ({by}.request_id < ?{b} OR ({by}.request_id = ?{b} AND r.root_span_id < ?{c}))))"
        ));
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    let n = bind(&mut params, Box::new(limit as i64));
    let offset = bind(&mut params, Box::new(filter.offset.min(MAX_OFFSET) as i64));
    let dir = if filter.ascending { "ASC" } else { "DESC" };
    if filter.sort == RequestSort::Start {
        // With an agent, the walk is down that agent's index (agent, start,
        // request), which is already in the page's order; else down the
        // requests' own start index.
        let by = if filter.agent.is_some() { "a" } else { "r" };
        sql.push_str(&format!(
            " ORDER BY {by}.start_ns {dir}, {by}.request_id {dir}, r.root_span_id {dir} LIMIT ?{n} OFFSET ?{offset}"
        ));
    } else {
        // Ties newest first, so that a page boundary is stable.
        sql.push_str(&format!(
            " ORDER BY {} {dir}, r.start_ns DESC, r.request_id DESC, r.root_span_id DESC LIMIT ?{n} OFFSET ?{offset}",
            filter.sort.column()
        ));
    }
    let rows = db.rows(&sql, &bound(&params))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id = r.blob(0)?;
        let agents = r.text(7)?;
        let answer = r.text(16)?;
        let root = r.blob(17)?;
        let (finding_kinds, failure) = answer_outline(&answer);
        let trace_ids = db
            .blobs("SELECT trace_id FROM request_traces WHERE request_id = ?1 ORDER BY trace_id", &[&id])?
            .iter()
            .map(|t| hex(t))
            .collect();
        out.push(RequestListRow {
            request_id: hex(&id),
            root_span_id: hex(&root),
            trace_ids,
            start_unix_nano: r.int(1)?,
            duration_ms: (r.int(2)? as f64 / 1e3).round() / 1e3,
            root_service: r.text(3)?,
            root_name: r.text(4)?,
            session: r.opt_text(5)?,
            spans: r.int(6)?,
            agents: serde_json::from_str(&agents).unwrap_or_default(),
            input_tokens: r.int(8)?,
            output_tokens: r.int(9)?,
            cost_usd: r.real(10)?,
            findings: r.int(11)?,
            broken: r.int(12)?,
            errors: r.int(13)?,
            failed: r.bool(14)?,
            repairs: r.int(15)?,
            finding_kinds,
            failure,
            answer: if with_answer { serde_json::from_str(&answer).ok() } else { None },
        });
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    agentrace_model::ids::to_hex(bytes)
}
