//! The writer thread: group commit, then acknowledgements, then retention.
//!
//! The loop ([`run`]) is the same for both engines; what a commit does is
//! the [`Engine`]'s: SQLite's ([`Writer`]) here, PostgreSQL's in
//! [`super::postgres`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};

use super::{WriteJob, WriteOutcome};
use crate::config::RetentionConfig;
use crate::metrics::Metrics;

/// Most spans one transaction takes before it commits and acknowledges.
const MAX_SPANS_PER_COMMIT: usize = 50_000;

pub(crate) fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS resources (
             id INTEGER PRIMARY KEY,
             body BLOB NOT NULL UNIQUE,
             service TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS scopes (
             id INTEGER PRIMARY KEY,
             body BLOB NOT NULL UNIQUE
         );
         CREATE TABLE IF NOT EXISTS spans (
             id INTEGER PRIMARY KEY,
             trace_id BLOB NOT NULL,
             span_id BLOB NOT NULL,
             parent_span_id BLOB,
             resource_id INTEGER NOT NULL,
             scope_id INTEGER NOT NULL,
             service TEXT NOT NULL,
             name TEXT NOT NULL,
             kind INTEGER NOT NULL,
             start_ns INTEGER NOT NULL,
             end_ns INTEGER NOT NULL,
             status_code INTEGER NOT NULL,
             chunk_id INTEGER NOT NULL,
             chunk_index INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS chunks (
             id INTEGER PRIMARY KEY,
             max_start_ns INTEGER NOT NULL,
             body BLOB NOT NULL
         );
         CREATE INDEX IF NOT EXISTS chunks_by_start ON chunks (max_start_ns);
         CREATE UNIQUE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id, span_id);
         CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_ns);
         CREATE INDEX IF NOT EXISTS spans_by_service ON spans (service, start_ns);
         CREATE TABLE IF NOT EXISTS span_keys (
             key INTEGER NOT NULL,
             value TEXT NOT NULL,
             trace_id BLOB NOT NULL,
             span_id BLOB NOT NULL,
             start_ns INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS span_keys_by_value ON span_keys (key, value, trace_id);
         CREATE INDEX IF NOT EXISTS span_keys_by_start ON span_keys (start_ns);
         CREATE TABLE IF NOT EXISTS operations (
             service TEXT NOT NULL,
             name TEXT NOT NULL,
             kind INTEGER NOT NULL,
             PRIMARY KEY (service, name, kind)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS exporters (
             id INTEGER PRIMARY KEY,
             name TEXT NOT NULL UNIQUE
         );
         CREATE TABLE IF NOT EXISTS export_queue (
             id INTEGER PRIMARY KEY,
             exporter INTEGER NOT NULL,
             seq INTEGER NOT NULL,
             spans INTEGER NOT NULL,
             body BLOB NOT NULL
         );
         CREATE INDEX IF NOT EXISTS export_queue_by_exporter ON export_queue (exporter, id);
         -- Batches a backend refused for good, kept for an operator to replay.
         CREATE TABLE IF NOT EXISTS dead_letters (
             id INTEGER PRIMARY KEY,
             exporter INTEGER NOT NULL,
             seq INTEGER NOT NULL,
             spans INTEGER NOT NULL,
             body BLOB NOT NULL,
             reason TEXT NOT NULL,
             at_ns INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS dead_letters_by_exporter ON dead_letters (exporter, id);
         -- Per-trace rows that nothing read (the request rows hold the answer).
         DROP TABLE IF EXISTS trace_analysis;
         CREATE TABLE IF NOT EXISTS requests (
             request_id BLOB NOT NULL,
             root_span_id BLOB NOT NULL,
             start_ns INTEGER NOT NULL,
             duration_ns INTEGER NOT NULL,
             root_service TEXT NOT NULL,
             root_name TEXT NOT NULL,
             session TEXT,
             traces INTEGER NOT NULL,
             spans INTEGER NOT NULL,
             agents TEXT NOT NULL,
             input_tokens INTEGER NOT NULL,
             output_tokens INTEGER NOT NULL,
             cost_usd REAL NOT NULL,
             findings INTEGER NOT NULL,
             broken INTEGER NOT NULL,
             errors INTEGER NOT NULL,
             failed INTEGER NOT NULL,
             repairs INTEGER NOT NULL,
             answer TEXT NOT NULL,
             PRIMARY KEY (request_id, root_span_id)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS requests_by_start ON requests (start_ns);
         CREATE INDEX IF NOT EXISTS requests_by_session ON requests (session, start_ns);
         CREATE INDEX IF NOT EXISTS requests_by_service ON requests (root_service, start_ns);
         CREATE INDEX IF NOT EXISTS requests_with_findings ON requests (start_ns) WHERE findings > 0;
         CREATE INDEX IF NOT EXISTS requests_broken ON requests (start_ns) WHERE broken > 0;
         CREATE INDEX IF NOT EXISTS requests_with_errors ON requests (start_ns) WHERE errors > 0 OR failed;
         CREATE INDEX IF NOT EXISTS requests_by_tokens ON requests (input_tokens + output_tokens, start_ns);
         -- Which request each arrived trace belongs to, and each request's agents.
         CREATE TABLE IF NOT EXISTS request_traces (
             trace_id BLOB PRIMARY KEY,
             request_id BLOB NOT NULL
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS request_traces_by_request ON request_traces (request_id);
         CREATE TABLE IF NOT EXISTS request_agents (
             agent TEXT NOT NULL,
             start_ns INTEGER NOT NULL,
             request_id BLOB NOT NULL,
             PRIMARY KEY (agent, start_ns, request_id)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS request_agents_by_request ON request_agents (request_id);
         CREATE TABLE IF NOT EXISTS request_models (
             model TEXT NOT NULL,
             start_ns INTEGER NOT NULL,
             request_id BLOB NOT NULL,
             PRIMARY KEY (model, start_ns, request_id)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS request_models_by_request ON request_models (request_id);
         CREATE TABLE IF NOT EXISTS span_patches (
             trace_id BLOB NOT NULL,
             span_id BLOB NOT NULL,
             patch TEXT NOT NULL,
             PRIMARY KEY (trace_id, span_id)
         ) WITHOUT ROWID;",
    )?;
    // When each chunk was received (retention's clock, not the spans' own
    // timestamps). Stores made before the column existed get it with the
    // time of the upgrade: nothing they hold is deleted before its time.
    let has_received: bool =
        conn.prepare("SELECT 1 FROM pragma_table_info('chunks') WHERE name = 'received_ns'")?.exists([])?;
    if !has_received {
        conn.execute_batch("ALTER TABLE chunks ADD COLUMN received_ns INTEGER NOT NULL DEFAULT 0")?;
        conn.execute("UPDATE chunks SET received_ns = ?1", [now_ns()])?;
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS chunks_by_received ON chunks (received_ns)")
}

fn now_ns() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

/// What a store engine does for the writer thread.
pub(crate) trait Engine {
    /// Writes the jobs in one transaction; an outcome per job, or why
    /// nothing was written (said to the senders, who retry).
    fn write(&mut self, jobs: &[WriteJob]) -> Result<Vec<WriteOutcome>, String>;
    /// Deletes what retention says must go; how many spans went.
    fn apply_retention(&mut self) -> Result<u64, String>;
    /// Bytes the store takes, for `/metrics`.
    fn store_bytes(&mut self) -> u64;
}

/// The writer thread's loop: takes every job waiting (up to
/// `MAX_SPANS_PER_COMMIT` spans), commits them together, answers each, and
/// runs retention between commits, until the job channel closes.
pub(crate) fn run<E: Engine>(
    mut engine: E,
    jobs: mpsc::Receiver<WriteJob>,
    retention: &RetentionConfig,
    pending: &AtomicU64,
    metrics: &Metrics,
) {
    let mut next_retention = Instant::now();
    let mut next_size = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_retention {
            if retention.max_age.is_some() || retention.max_bytes.is_some() {
                match engine.apply_retention() {
                    Ok(deleted) => {
                        metrics.retention_ran();
                        if deleted > 0 {
                            // Freed space is reused by later writes before the store grows.
                            metrics.retention_deleted(deleted);
                            tracing::info!(deleted, "retention deleted spans");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "retention failed; will retry"),
                }
            }
            next_retention = now + retention.interval;
        }
        if now >= next_size {
            metrics.set_store_bytes(engine.store_bytes());
            next_size = now + Duration::from_secs(1);
        }
        let first = match jobs.recv_timeout(next_retention.min(next_size).saturating_duration_since(now)) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        let mut spans = batch[0].batch.len();
        while spans < MAX_SPANS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => {
                    spans += job.batch.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        commit(&mut engine, batch, spans as u64, pending, metrics);
    }
    metrics.set_store_bytes(engine.store_bytes());
}

/// Commits one group and answers each of its senders.
fn commit<E: Engine>(engine: &mut E, jobs: Vec<WriteJob>, spans: u64, pending: &AtomicU64, metrics: &Metrics) {
    let span =
        tracing::info_span!("store.commit", requests = jobs.len(), spans, otel.status_code = tracing::field::Empty);
    let _entered = span.enter();
    let result = engine.write(&jobs);
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    } else {
        metrics.commit();
    }
    let left = pending.fetch_sub(spans, Ordering::AcqRel) - spans;
    metrics.set_pending(left);
    match result {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                let _ = job.ack.send(Ok(outcome));
            }
        }
        Err(message) => {
            tracing::error!(error = %message, spans, "store write failed; the senders will retry");
            for job in jobs {
                let _ = job.ack.send(Err(message.clone()));
            }
        }
    }
}

/// The writer's maps, keyed by what senders chose (resource and scope
/// bodies, services, span names): foldhash, seeded per map, as the doctor's
/// and the assembler's.
type FoldMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Operations by service or by span name.
type Ops<V> = FoldMap<String, V>;

/// The SQLite engine: one connection in WAL mode.
pub(crate) struct Writer {
    conn: Connection,
    path: PathBuf,
    retention: RetentionConfig,
    resource_ids: FoldMap<Vec<u8>, i64>,
    scope_ids: FoldMap<Vec<u8>, i64>,
    /// The operations written, by service, then span name: their kinds.
    /// Looked up by the span's own strings, so that a span of a known
    /// operation costs no copy of them.
    operations: Ops<Ops<Vec<i32>>>,
    /// How many (service, name, kind) `operations` holds.
    operation_count: usize,
    next_chunk_id: Option<i64>,
}

impl Writer {
    pub(crate) fn new(conn: Connection, path: PathBuf, retention: RetentionConfig) -> Writer {
        Writer {
            conn,
            path,
            retention,
            resource_ids: FoldMap::default(),
            scope_ids: FoldMap::default(),
            operations: Ops::default(),
            operation_count: 0,
            next_chunk_id: None,
        }
    }

    fn write_all(&mut self, jobs: &[WriteJob]) -> rusqlite::Result<Vec<WriteOutcome>> {
        let mut next_chunk_id = match self.next_chunk_id {
            Some(id) => id,
            None => self.conn.query_row("SELECT coalesce(max(id), 0) + 1 FROM chunks", [], |r| r.get(0))?,
        };
        let tx = self.conn.transaction()?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        // Session keys repeat on every span of a trace; one row per
        // (key, value, trace) is all a lookup by key needs.
        let mut keys_written: HashSet<(u8, &str, &[u8]), foldhash::fast::RandomState> = HashSet::default();
        {
            let mut insert_span = tx.prepare_cached(
                "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_span_id, resource_id, scope_id, service, name,
                     kind, start_ns, end_ns, status_code, chunk_id, chunk_index)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            let mut insert_chunk =
                tx.prepare_cached("INSERT INTO chunks (id, max_start_ns, received_ns, body) VALUES (?1, ?2, ?3, ?4)")?;
            let received = now_ns();
            let mut insert_key = tx.prepare_cached(
                "INSERT INTO span_keys (key, value, trace_id, span_id, start_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut insert_resource = tx.prepare_cached(
                "INSERT INTO resources (body, service) VALUES (?1, ?2)
                 ON CONFLICT (body) DO UPDATE SET service = excluded.service RETURNING id",
            )?;
            let mut insert_scope = tx.prepare_cached(
                "INSERT INTO scopes (body) VALUES (?1) ON CONFLICT (body) DO UPDATE SET body = excluded.body RETURNING id",
            )?;
            let mut insert_operation =
                tx.prepare_cached("INSERT OR IGNORE INTO operations (service, name, kind) VALUES (?1, ?2, ?3)")?;
            let mut insert_export =
                tx.prepare_cached("INSERT INTO export_queue (exporter, seq, spans, body) VALUES (?1, ?2, ?3, ?4)")?;
            let mut delete_export = tx.prepare_cached("DELETE FROM export_queue WHERE id = ?1")?;
            let mut keep_dead_letter = tx.prepare_cached(
                "INSERT INTO dead_letters (exporter, seq, spans, body, reason, at_ns)
                 SELECT exporter, seq, spans, body, ?2, ?3 FROM export_queue WHERE id = ?1",
            )?;
            let mut upsert_request = tx.prepare_cached(
                "INSERT OR REPLACE INTO requests (request_id, start_ns, duration_ns, root_service, root_name, session,
                     traces, spans, agents, input_tokens, output_tokens, cost_usd, findings, broken, errors, failed,
                     repairs, answer, root_span_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?;
            let mut drop_request = tx.prepare_cached("DELETE FROM requests WHERE request_id = ?1")?;
            let mut drop_request_agents = tx.prepare_cached("DELETE FROM request_agents WHERE request_id = ?1")?;
            let mut drop_request_models = tx.prepare_cached("DELETE FROM request_models WHERE request_id = ?1")?;
            let mut insert_request_model = tx.prepare_cached(
                "INSERT OR IGNORE INTO request_models (model, start_ns, request_id) VALUES (?1, ?2, ?3)",
            )?;
            let mut drop_request_traces = tx.prepare_cached("DELETE FROM request_traces WHERE request_id = ?1")?;
            let mut insert_request_agent = tx.prepare_cached(
                "INSERT OR IGNORE INTO request_agents (agent, start_ns, request_id) VALUES (?1, ?2, ?3)",
            )?;
            let mut upsert_request_trace =
                tx.prepare_cached("INSERT OR REPLACE INTO request_traces (trace_id, request_id) VALUES (?1, ?2)")?;
            let mut upsert_patch = tx
                .prepare_cached("INSERT OR REPLACE INTO span_patches (trace_id, span_id, patch) VALUES (?1, ?2, ?3)")?;
            let mut clear_patches = tx.prepare_cached("DELETE FROM span_patches WHERE trace_id = ?1")?;
            for job in jobs {
                let batch = &job.batch;
                let mut resource_ids = Vec::with_capacity(batch.resources.len());
                for (body, service) in &batch.resources {
                    let id = match self.resource_ids.get(body) {
                        Some(id) => *id,
                        None => {
                            let id: i64 = insert_resource.query_row(params![body, service], |r| r.get(0))?;
                            if self.resource_ids.len() > 10_000 {
                                self.resource_ids.clear();
                            }
                            self.resource_ids.insert(body.clone(), id);
                            id
                        }
                    };
                    resource_ids.push(id);
                }
                let mut scope_ids = Vec::with_capacity(batch.scopes.len());
                for body in &batch.scopes {
                    let id = match self.scope_ids.get(body) {
                        Some(id) => *id,
                        None => {
                            let id: i64 = insert_scope.query_row(params![body], |r| r.get(0))?;
                            if self.scope_ids.len() > 10_000 {
                                self.scope_ids.clear();
                            }
                            self.scope_ids.insert(body.clone(), id);
                            id
                        }
                    };
                    scope_ids.push(id);
                }
                let mut outcome = WriteOutcome::default();
                let chunk_id = next_chunk_id;
                for span in &batch.spans {
                    let service = &batch.resources[span.resource].1;
                    let inserted = insert_span.execute(params![
                        span.trace_id,
                        span.span_id,
                        span.parent_span_id,
                        resource_ids[span.resource],
                        scope_ids[span.scope],
                        service,
                        span.name,
                        span.kind,
                        span.start_ns,
                        span.end_ns,
                        span.status_code,
                        chunk_id,
                        span.chunk_index,
                    ])?;
                    if inserted == 0 {
                        outcome.duplicates += 1;
                        continue;
                    }
                    outcome.inserted += 1;
                    for (key, value) in &span.keys {
                        if keys_written.insert((*key as u8, value.as_str(), span.trace_id.as_slice())) {
                            insert_key.execute(params![
                                *key as u8,
                                value,
                                span.trace_id,
                                span.span_id,
                                span.start_ns
                            ])?;
                        }
                    }
                    let known = self.operations.get(service.as_str()).and_then(|names| names.get(span.name.as_str()));
                    if !known.is_some_and(|kinds| kinds.contains(&span.kind)) {
                        insert_operation.execute(params![service, span.name, span.kind])?;
                        if self.operation_count >= 100_000 {
                            self.operations.clear();
                            self.operation_count = 0;
                        }
                        let names = self.operations.entry(service.clone()).or_default();
                        names.entry(span.name.clone()).or_default().push(span.kind);
                        self.operation_count += 1;
                    }
                }
                if batch.queued_only > 0 {
                    // Pass-through: nothing to de-duplicate against.
                    outcome.inserted = batch.queued_only as u64;
                    for e in &batch.exports {
                        insert_export.execute(params![e.exporter, e.seq as i64, e.spans, e.body])?;
                    }
                }
                // A request that was all duplicates (a retry) adds no chunk,
                // and was queued for the exporters when it was first stored.
                else if outcome.inserted > 0 {
                    insert_chunk.execute(params![chunk_id, batch.chunk_max_start_ns, received, batch.chunk])?;
                    next_chunk_id += 1;
                    for e in &batch.exports {
                        insert_export.execute(params![e.exporter, e.seq as i64, e.spans, e.body])?;
                    }
                }
                for id in &batch.dequeue {
                    if let Some(reason) = &batch.dead_letter {
                        keep_dead_letter.execute(params![id, reason, now_ns()])?;
                    }
                    delete_export.execute(params![id])?;
                }
                if let Some(exporter) = batch.replay_dead_letters {
                    tx.execute(
                        "INSERT INTO export_queue (exporter, seq, spans, body)
                         SELECT exporter, seq, spans, body FROM dead_letters WHERE exporter = ?1 ORDER BY id",
                        params![exporter],
                    )?;
                    outcome.inserted +=
                        tx.execute("DELETE FROM dead_letters WHERE exporter = ?1", params![exporter])? as u64;
                }
                for t in &batch.repatched {
                    clear_patches.execute(params![t])?;
                }
                for p in &batch.patches {
                    upsert_patch.execute(params![p.trace_id, p.span_id, p.patch])?;
                }
                for id in &batch.retired_requests {
                    drop_request.execute(params![id])?;
                    drop_request_agents.execute(params![id])?;
                    drop_request_models.execute(params![id])?;
                    drop_request_traces.execute(params![id])?;
                }
                // A request's agents and traces are written anew; two
                // requests may share a connected trace ID (a span whose
                // parent never arrived), so each ID is cleared once.
                let mut cleared: Vec<&[u8]> = Vec::new();
                for r in &batch.requests {
                    if !cleared.contains(&r.request_id.as_slice()) {
                        drop_request_agents.execute(params![r.request_id])?;
                        drop_request_models.execute(params![r.request_id])?;
                        drop_request_traces.execute(params![r.request_id])?;
                        cleared.push(&r.request_id);
                    }
                }
                for r in &batch.requests {
                    upsert_request.execute(params![
                        r.request_id,
                        r.start_ns,
                        r.duration_ns,
                        r.root_service,
                        r.root_name,
                        r.session,
                        r.trace_ids.len() as i64,
                        r.spans,
                        serde_json::to_string(&r.agents).unwrap_or_else(|_| "[]".into()),
                        r.input_tokens,
                        r.output_tokens,
                        r.cost_usd,
                        r.findings,
                        r.broken,
                        r.errors,
                        r.failed,
                        r.repairs,
                        r.answer,
                        r.root_span_id,
                    ])?;
                    for agent in &r.agents {
                        insert_request_agent.execute(params![agent, r.start_ns, r.request_id])?;
                    }
                    for model in &r.models {
                        insert_request_model.execute(params![model, r.start_ns, r.request_id])?;
                    }
                    for t in &r.trace_ids {
                        upsert_request_trace.execute(params![t, r.request_id])?;
                    }
                }
                outcomes.push(outcome);
            }
        }
        tx.commit()?;
        self.next_chunk_id = Some(next_chunk_id);
        Ok(outcomes)
    }

    fn file_bytes(&self) -> u64 {
        let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        size(&self.path) + size(&PathBuf::from(wal))
    }

    /// Bytes held by live pages (free pages are reused before the file grows).
    fn used_bytes(&self) -> rusqlite::Result<u64> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self.conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let page_size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(((pages - free).max(0) * page_size) as u64)
    }

    /// Deletes spans that are too old, then the oldest spans while the store
    /// is over its size limit. Runs between commits, in chunks, so it never
    /// holds the write lock for long.
    ///
    /// Age is counted on the collector's clock from when a span was
    /// received (its chunk's `received_ns`), and a span goes only once its
    /// own start is past the cutoff too: a span dated a year back that
    /// arrived a minute ago is kept for `max_age`, like any other.
    fn retain(&mut self) -> rusqlite::Result<u64> {
        let mut deleted = 0u64;
        if let Some(max_age) = self.retention.max_age {
            let cutoff = now_ns().saturating_sub(i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX));
            // Chunk ids grow with time: every chunk up to this one arrived before the cutoff.
            let last: i64 = self.conn.query_row(
                "SELECT coalesce(max(id), 0) FROM chunks WHERE received_ns < ?1",
                [cutoff],
                |r| r.get(0),
            )?;
            loop {
                let (spans, keys) = self.delete_before(cutoff, last)?;
                deleted += spans;
                if spans == 0 && keys == 0 {
                    break;
                }
            }
        }
        if let Some(max_bytes) = self.retention.max_bytes {
            while self.used_bytes()? > max_bytes {
                // Delete the first-received 5% of chunks (at least one) and look again.
                let total: i64 = self.conn.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))?;
                if total == 0 {
                    break;
                }
                let offset = (total / 20).max(1) - 1;
                let last: i64 =
                    self.conn
                        .query_row("SELECT id FROM chunks ORDER BY id LIMIT 1 OFFSET ?1", [offset], |r| r.get(0))?;
                loop {
                    let (spans, keys) = self.delete_before(i64::MAX, last)?;
                    deleted += spans;
                    if spans == 0 && keys == 0 {
                        break;
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Deletes one batch of spans that started before `cutoff` and arrived
    /// in a chunk up to `last`, then the key rows and chunks left without
    /// spans; returns how many spans went, and how many other rows.
    fn delete_before(&mut self, cutoff: i64, last: i64) -> rusqlite::Result<(u64, u64)> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(retention::SPANS, [cutoff, last])?;
        let keys = tx.execute(retention::KEYS, [cutoff])?;
        let chunks = tx.execute(retention::CHUNKS, [cutoff, last])?;
        let gone: Vec<Vec<u8>> = tx
            .prepare(retention::GONE_REQUESTS)?
            .query_map([cutoff], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut analyses = 0;
        {
            let mut rows: Vec<rusqlite::Statement<'_>> =
                retention::REQUEST_ROWS.iter().map(|sql| tx.prepare(sql)).collect::<rusqlite::Result<_>>()?;
            for id in &gone {
                for statement in &mut rows {
                    analyses += statement.execute([id])?;
                }
            }
        }
        tx.commit()?;
        Ok((n as u64, (keys + chunks + analyses) as u64))
    }
}

impl Engine for Writer {
    fn write(&mut self, jobs: &[WriteJob]) -> Result<Vec<WriteOutcome>, String> {
        let result = self.write_all(jobs);
        if let Err(e) = &result {
            // The transaction rolled back: IDs cached during it may not exist.
            self.resource_ids.clear();
            self.scope_ids.clear();
            self.operations.clear();
            self.operation_count = 0;
            self.next_chunk_id = None;
            return Err(write_failure(e));
        }
        result.map_err(|e| write_failure(&e))
    }

    fn apply_retention(&mut self) -> Result<u64, String> {
        self.retain().map_err(|e| e.to_string())
    }

    fn store_bytes(&mut self) -> u64 {
        self.file_bytes()
    }
}

/// Retention's deletes (`?N` placeholders; see [`super::sql::dollars`]).
/// Spans, keys and chunks are SQLite's (PostgreSQL drops whole days and
/// deletes by receipt, [`super::postgres`]); the requests' are both
/// engines'. Each deletes one batch, so no transaction holds the store for
/// long.
pub(crate) mod retention {
    /// Spans that started before `?1` and arrived in a chunk up to `?2`.
    pub(crate) const SPANS: &str = "DELETE FROM spans WHERE id IN
         (SELECT id FROM spans WHERE start_ns < ?1 AND chunk_id <= ?2 ORDER BY start_ns LIMIT 10000)";

    /// Key rows whose span is gone (kept spans keep their keys).
    pub(crate) const KEYS: &str = "DELETE FROM span_keys WHERE rowid IN
         (SELECT k.rowid FROM span_keys k WHERE k.start_ns < ?1 AND NOT EXISTS
             (SELECT 1 FROM spans s WHERE s.trace_id = k.trace_id AND s.span_id = k.span_id)
          ORDER BY k.start_ns LIMIT 100000)";

    /// Chunks every span of which is past both cutoffs, so no remaining
    /// span row can point at a deleted chunk.
    pub(crate) const CHUNKS: &str = "DELETE FROM chunks WHERE id IN
         (SELECT id FROM chunks WHERE max_start_ns < ?1 AND id <= ?2 ORDER BY id LIMIT 1000)";

    /// The live diagnosis goes with its spans: the requests none of whose
    /// arrived traces has a span left (first column), decided once, since
    /// each table of [`REQUEST_ROWS`] deletes the same set.
    pub(crate) const GONE_REQUESTS: &str = "SELECT DISTINCT r.request_id, r.start_ns FROM requests r
         WHERE r.start_ns < ?1 AND NOT EXISTS
             (SELECT 1 FROM request_traces t JOIN spans s ON s.trace_id = t.trace_id
              WHERE t.request_id = r.request_id)
         ORDER BY r.start_ns LIMIT 10000";

    /// A gone request's rows: patches first (their traces are found through
    /// the request they belong to), the request's own row last (the others
    /// find their rows through it).
    pub(crate) const REQUEST_ROWS: [&str; 5] = [
        "DELETE FROM span_patches WHERE trace_id IN (SELECT trace_id FROM request_traces WHERE request_id = ?1)",
        "DELETE FROM request_agents WHERE request_id = ?1",
        "DELETE FROM request_models WHERE request_id = ?1",
        "DELETE FROM request_traces WHERE request_id = ?1",
        "DELETE FROM requests WHERE request_id = ?1",
    ];
}

/// What a failed commit says to senders and operators: a full disk is a
/// full disk, not "corrupt data".
pub(crate) fn write_failure(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => {
            format!("the disk holding the store is full ({e}): free space or lower storage.retention")
        }
        Some(rusqlite::ErrorCode::SystemIoFailure) => format!("the store's disk failed a write ({e})"),
        Some(rusqlite::ErrorCode::ReadOnly) => format!("the store is read-only ({e}): check its permissions"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_from_before_receipt_times_keeps_its_chunks_for_a_full_period() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE chunks (id INTEGER PRIMARY KEY, max_start_ns INTEGER NOT NULL, body BLOB NOT NULL);
             INSERT INTO chunks VALUES (1, 5, x'00');",
        )
        .unwrap();
        let before = now_ns();
        create_schema(&conn).unwrap();
        let received: i64 = conn.query_row("SELECT received_ns FROM chunks WHERE id = 1", [], |r| r.get(0)).unwrap();
        assert!(received >= before, "an old chunk counts as received at the upgrade");
        // Opening again changes nothing.
        create_schema(&conn).unwrap();
        let again: i64 = conn.query_row("SELECT received_ns FROM chunks WHERE id = 1", [], |r| r.get(0)).unwrap();
        assert_eq!(again, received);
    }

    /// A store in a temporary directory, and a runtime to wait on it.
    fn temp_store() -> (tempfile::TempDir, crate::store::Store, tokio::runtime::Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::StorageConfig { data_dir: dir.path().to_owned(), ..Default::default() };
        let store = crate::store::Store::open(&config, 1_000, std::sync::Arc::new(Metrics::default())).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        (dir, store, runtime)
    }

    #[test]
    fn a_trace_diagnosed_again_keeps_only_its_new_patches() {
        use crate::store::{PatchRow, PreparedBatch};
        let (_dir, store, runtime) = temp_store();
        let write = |patches: Vec<PatchRow>, repatched: Vec<Vec<u8>>| {
            let durable = store.submit(PreparedBatch::analysis(patches, repatched, Vec::new(), Vec::new())).unwrap();
            runtime.block_on(durable).unwrap();
        };
        let patch = |trace: u8, span: u8, body: &str| PatchRow {
            trace_id: vec![trace; 16],
            span_id: vec![span; 8],
            patch: body.to_owned(),
        };
        // A first diagnosis moved span 6 of trace 3 and rolled up span 1 of trace 1.
        write(vec![patch(3, 6, "joined"), patch(1, 1, "rollup")], vec![vec![3; 16], vec![1; 16]]);
        // A later one, with more of the picture, left trace 3 as sent.
        write(Vec::new(), vec![vec![3; 16]]);
        let db = crate::store::Db::sqlite(Connection::open(store.path()).unwrap());
        let stored = crate::store::query::patches(&db, &[vec![1; 16], vec![3; 16]]).unwrap();
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert_eq!(stored[&(vec![1; 16], vec![1; 8])], "rollup", "a trace not diagnosed again keeps its patches");
    }

    #[test]
    fn a_session_of_absurd_token_counts_adds_up_without_overflowing() {
        use crate::store::{PreparedBatch, RequestRow};
        let (_dir, store, runtime) = temp_store();
        // What a sender's `gen_ai.usage.input_tokens` of 2^70 is stored as, twice.
        let request = |id: u8| RequestRow {
            request_id: vec![id; 16],
            root_span_id: vec![1; 8],
            start_ns: 1,
            duration_ns: 1,
            root_service: "s".into(),
            root_name: "n".into(),
            session: Some("sess".into()),
            trace_ids: vec![vec![id; 16]],
            spans: 1,
            agents: Vec::new(),
            models: Vec::new(),
            input_tokens: i64::MAX,
            output_tokens: 1,
            cost_usd: 0.0,
            findings: 0,
            broken: 0,
            errors: 0,
            failed: false,
            repairs: 0,
            answer: "{}".into(),
        };
        let batch = PreparedBatch::analysis(Vec::new(), Vec::new(), vec![request(1), request(2)], Vec::new());
        runtime.block_on(store.submit(batch).unwrap()).unwrap();
        let totals = runtime.block_on(store.read(|db| crate::store::query::session_totals(db, "sess"))).unwrap();
        assert_eq!((totals.requests, totals.input_tokens, totals.output_tokens), (2, i64::MAX, 2));
    }

    #[test]
    fn a_full_disk_is_said_to_be_one() {
        // SQLite's own "database or disk is full", made real by a page cap.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA max_page_count = 2; CREATE TABLE t (x BLOB);").unwrap();
        let e = conn.execute("INSERT INTO t VALUES (zeroblob(100000))", []).unwrap_err();
        let message = write_failure(&e);
        assert!(message.starts_with("the disk holding the store is full"), "{message}");
    }
}
