//! The shared store: PostgreSQL, for several collectors behind one balancer
//! (`storage.backend: postgres`).
//!
//! The same place on the data's road as the SQLite file: the writer thread
//! ([`super::writer::run`]) commits every pending request in one
//! transaction and acknowledges them after `COMMIT` returns, so an
//! acknowledged span is in the database whatever happens to the collector
//! afterwards. Span rows and join-key rows go in by binary `COPY` (spans
//! through a staging table, so that a client's retry of spans already
//! stored, by this collector or another, is counted and skipped as on
//! SQLite); everything else a commit writes is a row per request.
//!
//! The schema is versioned ([`MIGRATIONS`]): each collector applies what
//! is missing at start-up, one at a time under an advisory lock. The
//! columns are SQLite's, with PostgreSQL's types; reads run the same
//! queries ([`super::sql`]).
//!
//! Export queues are shared: a row is leased by the collector that queued
//! it, which sends it, while that collector's heartbeat (`collectors`,
//! renewed every second for `storage.postgres.lease` by a thread of its
//! own, [`Heartbeat`]) is current; then any
//! other collector's exporter takes it over (`FOR UPDATE SKIP LOCKED`, see
//! [`super::query::queue_lease`]). A batch is sent by one collector at a
//! time, and none is stranded by a collector that died.
//!
//! The tables that grow with the traffic are partitioned by day of
//! receipt: retention drops whole days (by `max_age`, and the oldest past
//! `max_bytes`), and deletes rows only in the day the age cutoff falls in.
//! TLS to the server follows the URL's `sslmode` and `sslrootcert`
//! ([`Target`]).

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};
use sha2::{Digest, Sha256};

use super::sql::dollars;
use super::writer::{Engine, retention};
use super::{StoreError, WriteJob, WriteOutcome};
use crate::config::{PostgresConfig, RetentionConfig};

/// Schema versions, applied in order; a collector applies those above the
/// database's version and records each. Never edit one that has shipped:
/// add the next. Text columns sort byte-wise (`COLLATE "C"`), as SQLite
/// does, whatever the database's locale: lists come in the same order from
/// either store. What grows with the traffic (`spans`, `chunks`,
/// `span_keys`) is partitioned by day of receipt ([`PARTITION_NS`]):
/// retention drops a day whole. A span's uniqueness by trace and span ID,
/// which a partitioned table cannot hold as an index across days, is kept
/// by the writer (see `PgWriter::write_all`).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE resources (
         id BIGSERIAL PRIMARY KEY,
         hash BYTEA NOT NULL UNIQUE,
         body BYTEA NOT NULL,
         service TEXT COLLATE \"C\" NOT NULL
     );
     CREATE TABLE scopes (
         id BIGSERIAL PRIMARY KEY,
         hash BYTEA NOT NULL UNIQUE,
         body BYTEA NOT NULL
     );
     CREATE TABLE spans (
         id BIGSERIAL NOT NULL,
         trace_id BYTEA NOT NULL,
         span_id BYTEA NOT NULL,
         parent_span_id BYTEA,
         resource_id BIGINT NOT NULL,
         scope_id BIGINT NOT NULL,
         service TEXT COLLATE \"C\" NOT NULL,
         name TEXT COLLATE \"C\" NOT NULL,
         kind BIGINT NOT NULL,
         start_ns BIGINT NOT NULL,
         end_ns BIGINT NOT NULL,
         status_code BIGINT NOT NULL,
         chunk_id BIGINT NOT NULL,
         chunk_index BIGINT NOT NULL,
         received_ns BIGINT NOT NULL
     ) PARTITION BY RANGE (received_ns);
     CREATE INDEX spans_by_trace ON spans (trace_id, span_id);
     CREATE INDEX spans_by_start ON spans (start_ns);
     CREATE INDEX spans_by_service ON spans (service, start_ns);
     CREATE SEQUENCE chunk_ids;
     CREATE TABLE chunks (
         id BIGINT NOT NULL,
         max_start_ns BIGINT NOT NULL,
         received_ns BIGINT NOT NULL,
         body BYTEA NOT NULL
     ) PARTITION BY RANGE (received_ns);
     CREATE INDEX chunks_by_id ON chunks (id);
     CREATE INDEX chunks_by_start ON chunks (max_start_ns);
     CREATE TABLE span_keys (
         key BIGINT NOT NULL,
         value TEXT COLLATE \"C\" NOT NULL,
         trace_id BYTEA NOT NULL,
         span_id BYTEA NOT NULL,
         start_ns BIGINT NOT NULL,
         received_ns BIGINT NOT NULL
     ) PARTITION BY RANGE (received_ns);
     CREATE INDEX span_keys_by_value ON span_keys (key, value, trace_id);
     CREATE INDEX span_keys_by_start ON span_keys (start_ns);
     CREATE TABLE operations (
         service TEXT COLLATE \"C\" NOT NULL,
         name TEXT COLLATE \"C\" NOT NULL,
         kind BIGINT NOT NULL,
         PRIMARY KEY (service, name, kind)
     );
     CREATE TABLE exporters (
         id BIGSERIAL PRIMARY KEY,
         name TEXT COLLATE \"C\" NOT NULL UNIQUE
     );
     CREATE TABLE export_queue (
         id BIGSERIAL PRIMARY KEY,
         exporter BIGINT NOT NULL,
         seq BIGINT NOT NULL,
         spans BIGINT NOT NULL,
         body BYTEA NOT NULL
     );
     CREATE INDEX export_queue_by_exporter ON export_queue (exporter, id);
     CREATE TABLE dead_letters (
         id BIGSERIAL PRIMARY KEY,
         exporter BIGINT NOT NULL,
         seq BIGINT NOT NULL,
         spans BIGINT NOT NULL,
         body BYTEA NOT NULL,
         reason TEXT COLLATE \"C\" NOT NULL,
         at_ns BIGINT NOT NULL
     );
     CREATE INDEX dead_letters_by_exporter ON dead_letters (exporter, id);
     CREATE TABLE requests (
         request_id BYTEA NOT NULL,
         root_span_id BYTEA NOT NULL,
         start_ns BIGINT NOT NULL,
         duration_ns BIGINT NOT NULL,
         root_service TEXT COLLATE \"C\" NOT NULL,
         root_name TEXT COLLATE \"C\" NOT NULL,
         session TEXT COLLATE \"C\",
         traces BIGINT NOT NULL,
         spans BIGINT NOT NULL,
         agents TEXT COLLATE \"C\" NOT NULL,
         input_tokens BIGINT NOT NULL,
         output_tokens BIGINT NOT NULL,
         cost_usd DOUBLE PRECISION NOT NULL,
         findings BIGINT NOT NULL,
         broken BIGINT NOT NULL,
         errors BIGINT NOT NULL,
         failed BOOLEAN NOT NULL,
         repairs BIGINT NOT NULL,
         answer TEXT COLLATE \"C\" NOT NULL,
         PRIMARY KEY (request_id, root_span_id)
     );
     CREATE INDEX requests_by_start ON requests (start_ns);
     CREATE INDEX requests_by_session ON requests (session, start_ns);
     CREATE INDEX requests_by_service ON requests (root_service, start_ns);
     CREATE INDEX requests_with_findings ON requests (start_ns) WHERE findings > 0;
     CREATE INDEX requests_broken ON requests (start_ns) WHERE broken > 0;
     CREATE INDEX requests_with_errors ON requests (start_ns) WHERE errors > 0 OR failed;
     CREATE INDEX requests_by_tokens ON requests ((input_tokens + output_tokens), start_ns);
     CREATE TABLE request_traces (
         trace_id BYTEA PRIMARY KEY,
         request_id BYTEA NOT NULL
     );
     CREATE INDEX request_traces_by_request ON request_traces (request_id);
     CREATE TABLE request_agents (
         agent TEXT COLLATE \"C\" NOT NULL,
         start_ns BIGINT NOT NULL,
         request_id BYTEA NOT NULL,
         PRIMARY KEY (agent, start_ns, request_id)
     );
     CREATE INDEX request_agents_by_request ON request_agents (request_id);
     CREATE TABLE request_models (
         model TEXT COLLATE \"C\" NOT NULL,
         start_ns BIGINT NOT NULL,
         request_id BYTEA NOT NULL,
         PRIMARY KEY (model, start_ns, request_id)
     );
     CREATE INDEX request_models_by_request ON request_models (request_id);
     CREATE TABLE span_patches (
         trace_id BYTEA NOT NULL,
         span_id BYTEA NOT NULL,
         patch TEXT COLLATE \"C\" NOT NULL,
         PRIMARY KEY (trace_id, span_id)
     );",
    ),
    (
        2,
        // Export queues shared by several collectors: each row is leased by
        // the collector that sends it (at first, the one that queued it),
        // and a collector whose heartbeat has lapsed hands its rows on.
        "CREATE TABLE collectors (id TEXT PRIMARY KEY, alive_until BIGINT NOT NULL);
         ALTER TABLE export_queue ADD COLUMN queued_by TEXT NOT NULL DEFAULT '';
         ALTER TABLE export_queue ADD COLUMN leased_by TEXT NOT NULL DEFAULT '';
         CREATE INDEX export_queue_by_lease ON export_queue (exporter, leased_by, id);",
    ),
];

/// The advisory lock collectors take to migrate one at a time ("agentrace" in ASCII).
const MIGRATION_LOCK: i64 = 0x6167_656e_7472_6163;

/// The advisory lock taken to add or drop partitions.
const PARTITION_LOCK: i64 = MIGRATION_LOCK + 1;

/// Width of a partition of the tables that grow: a day of receipt.
pub(crate) const PARTITION_NS: i64 = 86_400_000_000_000;

/// The advisory locks that keep a span unique across days: this key space
/// ("ar" in ASCII), and this many buckets of traces.
const TRACE_LOCK_SPACE: i32 = 0x6172;
const TRACE_LOCK_BUCKETS: i64 = 256;

/// Longer than a commit takes from stamping its rows with their time of
/// receipt to acknowledging them: retention's margin.
const COMMIT_SLACK_NS: i64 = 5_000_000_000;

/// The tables partitioned by day of receipt; a day's partition of each is
/// `{table}_d{day}` (days since 1970-01-01, UTC).
const PARTITIONED: [&str; 3] = ["spans", "chunks", "span_keys"];

/// Runs `f` on a thread of its own. The synchronous PostgreSQL client runs
/// its own small runtime, which cannot start on a thread that is already
/// inside the collector's (start-up, shutdown and exporter registration are
/// called from async code).
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
}

/// A new connection to the configured database.
pub(crate) fn connect(config: &PostgresConfig) -> Result<Client, StoreError> {
    let url = config.url.as_deref().ok_or_else(|| StoreError::Corrupt("storage.postgres.url is not set".into()))?;
    let target = Target::parse(url).map_err(|e| StoreError::Corrupt(format!("storage.postgres.url: {e}")))?;
    Ok(match target.tls {
        Some(tls) => target.config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))?,
        None => target.config.connect(NoTls)?,
    })
}

/// Where to connect and how to secure it, from a libpq URL or key/value
/// string. TLS is used when `sslmode` is `require`, `verify-ca` or
/// `verify-full`, or when `sslrootcert` names the server's CA: the
/// server's certificate is then always verified (against `sslrootcert`, or
/// the system's roots), so `require` is as strict as libpq's `verify-full`.
/// `disable`, `allow` and `prefer` (libpq's default) connect without TLS.
pub struct Target {
    /// The driver's connection settings.
    pub config: postgres::Config,
    /// The TLS client settings, when the connection is encrypted.
    pub tls: Option<tokio_rustls::rustls::ClientConfig>,
}

impl Target {
    /// Reads a connection string; an error says what was wrong with it.
    pub fn parse(url: &str) -> Result<Target, String> {
        // Two options the driver does not know: the CA file, and the
        // verifying modes (it knows disable, prefer and require).
        let mut root: Option<String> = None;
        let mut mode: Option<String> = None;
        let rewritten = if let Some((base, query)) = url.split_once('?') {
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned();
                match k {
                    "sslrootcert" => root = Some(v),
                    "sslmode" => mode = Some(v),
                    _ => kept.push(pair.to_owned()),
                }
            }
            if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
        } else if url.contains("://") {
            url.to_owned()
        } else {
            let mut kept = Vec::new();
            for word in url.split_whitespace() {
                match word.split_once('=') {
                    Some(("sslrootcert", v)) => root = Some(v.trim_matches('\'').to_owned()),
                    Some(("sslmode", v)) => mode = Some(v.trim_matches('\'').to_owned()),
                    _ => kept.push(word),
                }
            }
            kept.join(" ")
        };
        let mut config: postgres::Config =
            rewritten.parse().map_err(|e| format!("not a PostgreSQL connection string: {e}"))?;
        // A form of the option this reading did not see (`sslmode = require`
        // in a key/value string) is the driver's: it is not weakened.
        if mode.is_none() && config.get_ssl_mode() == postgres::config::SslMode::Require {
            mode = Some("require".into());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let encrypt = match mode.as_deref() {
            None | Some("prefer") | Some("allow") => root.is_some(),
            Some("disable") => false,
            Some("require") | Some("verify-ca") | Some("verify-full") => true,
            Some(other) => {
                return Err(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        };
        if !encrypt {
            config.ssl_mode(postgres::config::SslMode::Disable);
            return Ok(Target { config, tls: None });
        }
        config.ssl_mode(postgres::config::SslMode::Require);
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        match &root {
            Some(path) => {
                use rustls_pki_types::pem::PemObject;
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                    roots.add(cert).map_err(|e| format!("sslrootcert {path}: {e}"))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        if roots.is_empty() {
            return Err(match root {
                Some(path) => format!("sslrootcert {path} holds no certificate"),
                None => "TLS is asked for but this machine has no CA certificates: set sslrootcert".into(),
            });
        }
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let tls = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Target { config, tls: Some(tls) })
    }
}

/// Applies the migrations the database has not had yet.
pub(crate) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS agentrace_migrations (version BIGINT PRIMARY KEY, applied_ns BIGINT NOT NULL)",
    )?;
    let done: i64 = tx.query_one("SELECT coalesce(max(version), 0) FROM agentrace_migrations", &[])?.get(0);
    let newest = MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0);
    if done > newest {
        return Err(StoreError::Corrupt(format!(
            "the database's schema is version {done}, newer than this collector's {newest}: upgrade the collector"
        )));
    }
    if done >= 1 {
        let partitioned: bool =
            tx.query_one("SELECT relkind = 'p' FROM pg_class WHERE oid = 'spans'::regclass", &[])?.get(0);
        if !partitioned {
            return Err(StoreError::Corrupt(
                "this database's schema comes from a development build of agentrace (spans not partitioned by day): create a new database".into(),
            ));
        }
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > done) {
        tx.batch_execute(sql)?;
        tx.execute("INSERT INTO agentrace_migrations (version, applied_ns) VALUES ($1, $2)", &[version, &now_ns()])?;
        tracing::info!(version, "applied a schema migration to the PostgreSQL store");
    }
    tx.commit()?;
    Ok(())
}

/// Says this collector is alive for another `lease`: its export queue rows
/// stay its own until then.
fn heartbeat(client: &mut Client, me: &str, config: &PostgresConfig) -> Result<(), postgres::Error> {
    // On the database's clock, which every collector reads the leases by:
    // collectors' own clocks may disagree by more than a lease.
    let lease = i64::try_from(config.lease.as_nanos()).unwrap_or(i64::MAX);
    client.execute(
        &format!(
            "INSERT INTO collectors (id, alive_until) VALUES ($1, {DB_NOW_NS} + $2)
             ON CONFLICT (id) DO UPDATE SET alive_until = excluded.alive_until"
        ),
        &[&me, &lease],
    )?;
    Ok(())
}

/// The database server's clock, Unix nanoseconds, in SQL.
pub(crate) const DB_NOW_NS: &str = "CAST(extract(epoch FROM clock_timestamp()) * 1000000000 AS BIGINT)";

/// The thread that keeps this collector's heartbeat current, on a
/// connection of its own: "alive" means the process runs, however long a
/// commit takes. Dropping it says the collector stopped, so the rows it
/// leases go to the others at once.
pub(crate) struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub(crate) fn spawn(config: PostgresConfig, me: String) -> std::io::Result<Heartbeat> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("agentrace-heartbeat".into()).spawn(move || {
            let mut client: Option<Client> = None;
            loop {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = match connect(&config) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot reach PostgreSQL to renew this collector's export leases");
                            None
                        }
                    };
                }
                if let Some(c) = client.as_mut()
                    && let Err(e) = heartbeat(c, &me, &config)
                {
                    tracing::warn!(error = %StoreError::Postgres(e), "cannot renew this collector's export leases");
                }
                match stopped.recv_timeout(std::time::Duration::from_secs(1)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
            if let Some(c) = client.as_mut() {
                let _ = c.execute("UPDATE collectors SET alive_until = 0 WHERE id = $1", &[&me]);
            }
        })?;
        Ok(Heartbeat { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A name for this collector among those sharing the database, new at
/// every start: the host, the process and the time.
pub(crate) fn instance_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!("{}-{}-{:x}", if host.is_empty() { "agentrace" } else { &host }, std::process::id(), now_ns())
}

fn now_ns() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

/// PostgreSQL's text cannot hold NUL; a name or key that carried one is
/// kept with U+FFFD in the columns (the span's own bytes keep it as sent).
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}")) } else { std::borrow::Cow::Borrowed(s) }
}

/// The ID of a resource or scope row: from `cache` (bounded), else
/// `upsert`ed and remembered.
fn row_id(
    cache: &mut HashMap<Vec<u8>, i64>,
    body: &[u8],
    upsert: impl FnOnce() -> Result<i64, postgres::Error>,
) -> Result<i64, postgres::Error> {
    if let Some(id) = cache.get(body) {
        return Ok(*id);
    }
    let id = upsert()?;
    if cache.len() > 10_000 {
        cache.clear();
    }
    cache.insert(body.to_vec(), id);
    Ok(id)
}

fn hash(body: &[u8]) -> Vec<u8> {
    Sha256::digest(body).to_vec()
}

/// The PostgreSQL engine of the writer thread.
pub(crate) struct PgWriter {
    client: Client,
    config: PostgresConfig,
    /// This collector's name among those sharing the database.
    me: String,
    retention: RetentionConfig,
    resource_ids: HashMap<Vec<u8>, i64>,
    scope_ids: HashMap<Vec<u8>, i64>,
    operations: HashSet<(String, String, i32)>,
    /// Days whose partitions are known to exist.
    days: HashSet<i64>,
}

const STAGE_SPANS: &str = "CREATE TEMP TABLE IF NOT EXISTS stage_spans (
    ord BIGINT NOT NULL, trace_id BYTEA NOT NULL, span_id BYTEA NOT NULL, parent_span_id BYTEA,
    resource_id BIGINT NOT NULL, scope_id BIGINT NOT NULL, service TEXT NOT NULL, name TEXT NOT NULL,
    kind BIGINT NOT NULL, start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL, status_code BIGINT NOT NULL,
    chunk_id BIGINT NOT NULL, chunk_index BIGINT NOT NULL
) ON COMMIT DELETE ROWS";

const SPAN_TYPES: [Type; 14] = [
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
];

impl PgWriter {
    pub(crate) fn new(
        mut client: Client,
        config: PostgresConfig,
        me: String,
        retention: RetentionConfig,
    ) -> Result<Self, StoreError> {
        client.batch_execute(STAGE_SPANS)?;
        heartbeat(&mut client, &me, &config)?;
        Ok(PgWriter {
            client,
            config,
            me,
            retention,
            resource_ids: HashMap::new(),
            scope_ids: HashMap::new(),
            operations: HashSet::new(),
            days: HashSet::new(),
        })
    }

    /// Makes the partitions of day `day` (and of the next, so that midnight
    /// waits for nothing) unless they are known to exist; one collector at
    /// a time, in a transaction of its own.
    fn ensure_partitions(&mut self, day: i64) -> Result<(), postgres::Error> {
        for d in [day, day + 1] {
            if self.days.contains(&d) {
                continue;
            }
            // Adding a partition locks its parent table: not for long, and
            // not behind a long reader (it would hold every writer up).
            let made = (|| {
                let mut tx = self.client.transaction()?;
                tx.batch_execute("SET LOCAL lock_timeout = '2s'")?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])?;
                for table in PARTITIONED {
                    tx.batch_execute(&format!(
                        "CREATE TABLE IF NOT EXISTS {table}_d{d} PARTITION OF {table} FOR VALUES FROM ({}) TO ({})",
                        d * PARTITION_NS,
                        (d + 1) * PARTITION_NS
                    ))?;
                }
                tx.commit()
            })();
            match made {
                Ok(()) => {
                    self.days.insert(d);
                }
                // Today's is needed now; tomorrow's is tried again at the next commit.
                Err(e) if d == day => return Err(e),
                Err(e) => tracing::warn!(error = %StoreError::Postgres(e), "cannot add tomorrow's partitions yet"),
            }
        }
        Ok(())
    }

    /// After a rollback: IDs cached during it may not exist.
    fn forget_ids(&mut self) {
        self.resource_ids.clear();
        self.scope_ids.clear();
        self.operations.clear();
    }

    /// A new connection when the server closed the last one (a restart, a
    /// failover): the commit that found it closed failed and was retried by
    /// its senders; the next one goes to the new connection.
    fn reconnect_if_closed(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() {
            let mut client = connect(&self.config)?;
            client.batch_execute(STAGE_SPANS)?;
            self.client = client;
            tracing::info!("reconnected to PostgreSQL");
        }
        Ok(())
    }

    fn write_all(&mut self, jobs: &[WriteJob]) -> Result<Vec<WriteOutcome>, postgres::Error> {
        // Receipt times on the database's clock, which every collector and
        // retention read alike (collectors' clocks may disagree).
        let started: i64 = self.client.query_one(&format!("SELECT {DB_NOW_NS}"), &[])?.get(0);
        self.ensure_partitions(started / PARTITION_NS)?;
        // Read committed whatever the database's default: the look before
        // each insert (below) must see what committed while it waited.
        let mut tx =
            self.client.build_transaction().isolation_level(postgres::IsolationLevel::ReadCommitted).start()?;
        // Resources and scopes, once each (by the hash of their bytes: a
        // B-tree entry cannot hold a large resource).
        let mut resource_ids: Vec<Vec<i64>> = Vec::with_capacity(jobs.len());
        let mut scope_ids: Vec<Vec<i64>> = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut ids = Vec::with_capacity(job.batch.resources.len());
            for (body, service) in &job.batch.resources {
                ids.push(row_id(&mut self.resource_ids, body, || {
                    Ok(tx
                        .query_one(
                            "INSERT INTO resources (hash, body, service) VALUES ($1, $2, $3)
                             ON CONFLICT (hash) DO UPDATE SET service = excluded.service RETURNING id",
                            &[&hash(body), body, &text(service)],
                        )?
                        .get(0))
                })?);
            }
            resource_ids.push(ids);
            let mut ids = Vec::with_capacity(job.batch.scopes.len());
            for body in &job.batch.scopes {
                ids.push(row_id(&mut self.scope_ids, body, || {
                    Ok(tx
                        .query_one(
                            "INSERT INTO scopes (hash, body) VALUES ($1, $2)
                             ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash RETURNING id",
                            &[&hash(body), body],
                        )?
                        .get(0))
                })?);
            }
            scope_ids.push(ids);
        }
        // A chunk ID for each job with spans, from the shared sequence.
        let with_spans = jobs.iter().filter(|j| !j.batch.spans.is_empty()).count() as i64;
        let mut fresh = tx
            .query("SELECT nextval('chunk_ids') FROM generate_series(1, $1::BIGINT)", &[&with_spans])?
            .into_iter()
            .map(|r| r.get::<_, i64>(0));
        let chunk_ids: Vec<Option<i64>> =
            jobs.iter().map(|j| if j.batch.spans.is_empty() { None } else { fresh.next() }).collect();
        // Every span into the staging table, then into `spans` where it is
        // new; the ones that went in say which jobs were retries.
        let mut places: Vec<(usize, usize)> = Vec::new();
        {
            let sink = tx.copy_in(
                "COPY stage_spans (ord, trace_id, span_id, parent_span_id, resource_id, scope_id, service, name, kind,
                     start_ns, end_ns, status_code, chunk_id, chunk_index) FROM STDIN BINARY",
            )?;
            let mut w = BinaryCopyInWriter::new(sink, &SPAN_TYPES);
            for (j, job) in jobs.iter().enumerate() {
                let batch = &job.batch;
                let Some(chunk_id) = chunk_ids[j] else { continue };
                for (i, span) in batch.spans.iter().enumerate() {
                    let ord = places.len() as i64;
                    places.push((j, i));
                    let service = text(&batch.resources[span.resource].1);
                    let name = text(&span.name);
                    let row: [&(dyn ToSql + Sync); 14] = [
                        &ord,
                        &span.trace_id,
                        &span.span_id,
                        &span.parent_span_id,
                        &resource_ids[j][span.resource],
                        &scope_ids[j][span.scope],
                        &service,
                        &name,
                        &i64::from(span.kind),
                        &span.start_ns,
                        &span.end_ns,
                        &i64::from(span.status_code),
                        &chunk_id,
                        &i64::from(span.chunk_index),
                    ];
                    w.write(&row)?;
                }
            }
            w.finish()?;
        }
        // A span is stored once whichever collector got it first, and on
        // whichever day: no index across a partitioned table's days can
        // say so, so the commits that hold a trace's spans take that
        // trace's lock (in one order, so that two never wait on each other)
        // and look before they insert.
        // Locks by bucket of traces (at most TRACE_LOCK_BUCKETS a commit, so a
        // commit of many traces cannot fill the server's lock table), in
        // bucket order.
        tx.execute(
            &format!(
                "SELECT pg_advisory_xact_lock({TRACE_LOCK_SPACE}, bucket) FROM
                     (SELECT DISTINCT (hashtextextended(encode(trace_id, 'hex'), 0) & {}) :: INT AS bucket
                      FROM stage_spans ORDER BY bucket) AS buckets",
                TRACE_LOCK_BUCKETS - 1
            ),
            &[],
        )?;
        // Stamped once the waits are over, so that a row's age is counted
        // from as near its acknowledgement as can be.
        let received: i64 = tx.query_one(&format!("SELECT {DB_NOW_NS}"), &[])?.get(0);
        let inserted: Vec<i64> = tx
            .query(
                "WITH pick AS (SELECT DISTINCT ON (trace_id, span_id) * FROM stage_spans ORDER BY trace_id, span_id, ord),
                 fresh AS (SELECT * FROM pick p
                           WHERE NOT EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = p.trace_id AND s.span_id = p.span_id)),
                 ins AS (INSERT INTO spans (trace_id, span_id, parent_span_id, resource_id, scope_id, service, name, kind,
                             start_ns, end_ns, status_code, chunk_id, chunk_index, received_ns)
                         SELECT trace_id, span_id, parent_span_id, resource_id, scope_id, service, name, kind,
                             start_ns, end_ns, status_code, chunk_id, chunk_index, $1 FROM fresh ORDER BY ord
                         RETURNING 1)
                 SELECT ord FROM fresh",
                &[&received],
            )?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let mut outcomes = vec![WriteOutcome::default(); jobs.len()];
        let mut is_new = vec![false; places.len()];
        for ord in inserted {
            if let Some(slot) = usize::try_from(ord).ok().and_then(|o| is_new.get_mut(o)) {
                *slot = true;
            }
        }
        // Join keys of the new spans (one row per key, value and trace).
        {
            let sink =
                tx.copy_in("COPY span_keys (key, value, trace_id, span_id, start_ns, received_ns) FROM STDIN BINARY")?;
            let mut w = BinaryCopyInWriter::new(
                sink,
                &[Type::INT8, Type::TEXT, Type::BYTEA, Type::BYTEA, Type::INT8, Type::INT8],
            );
            let mut written: HashSet<(u8, &str, &[u8])> = HashSet::new();
            for (&(j, i), &new) in places.iter().zip(&is_new) {
                if !new {
                    outcomes[j].duplicates += 1;
                    continue;
                }
                outcomes[j].inserted += 1;
                let span = &jobs[j].batch.spans[i];
                for (key, value) in &span.keys {
                    if written.insert((*key as u8, value.as_str(), span.trace_id.as_slice())) {
                        w.write(&[
                            &(*key as i64),
                            &text(value),
                            &span.trace_id,
                            &span.span_id,
                            &span.start_ns,
                            &received,
                        ])?;
                    }
                }
            }
            w.finish()?;
        }
        for (j, job) in jobs.iter().enumerate() {
            let batch = &job.batch;
            for span in &batch.spans {
                let op = (batch.resources[span.resource].1.clone(), span.name.clone(), span.kind);
                if !self.operations.contains(&op) {
                    tx.execute(
                        "INSERT INTO operations (service, name, kind) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        &[&text(&op.0), &text(&op.1), &i64::from(op.2)],
                    )?;
                    if self.operations.len() > 100_000 {
                        self.operations.clear();
                    }
                    self.operations.insert(op);
                }
            }
            if let Some(chunk_id) = chunk_ids[j]
                && outcomes[j].inserted > 0
            {
                tx.execute(
                    "INSERT INTO chunks (id, max_start_ns, received_ns, body) VALUES ($1, $2, $3, $4)",
                    &[&chunk_id, &batch.chunk_max_start_ns, &received, &batch.chunk],
                )?;
            }
            // Queued for the exporters with the spans (or alone, for a
            // pass-through), leased by this collector, which sends them.
            if batch.queued_only > 0 {
                outcomes[j].inserted = batch.queued_only as u64;
            }
            if batch.queued_only > 0 || outcomes[j].inserted > 0 {
                for e in &batch.exports {
                    tx.execute(
                        "INSERT INTO export_queue (exporter, seq, spans, body, queued_by, leased_by)
                         VALUES ($1, $2, $3, $4, $5, $5)",
                        &[&e.exporter, &(e.seq as i64), &i64::from(e.spans), &e.body, &self.me],
                    )?;
                }
            }
            for id in &batch.dequeue {
                if let Some(reason) = &batch.dead_letter {
                    tx.execute(
                        "INSERT INTO dead_letters (exporter, seq, spans, body, reason, at_ns)
                         SELECT exporter, seq, spans, body, $2, $3 FROM export_queue WHERE id = $1",
                        &[id, &text(reason), &now_ns()],
                    )?;
                }
                tx.execute("DELETE FROM export_queue WHERE id = $1", &[id])?;
            }
            if let Some(exporter) = batch.replay_dead_letters {
                // Moved in one statement: a dead letter another collector
                // adds meanwhile is either moved or left, never deleted
                // unmoved, and two replays at once do not both move a row.
                outcomes[j].inserted += tx.execute(
                    "WITH moved AS (DELETE FROM dead_letters WHERE exporter = $1 RETURNING id, exporter, seq, spans, body)
                     INSERT INTO export_queue (exporter, seq, spans, body, queued_by, leased_by)
                     SELECT exporter, seq, spans, body, $2, $2 FROM moved ORDER BY id",
                    &[&exporter, &self.me],
                )?;
            }
            for t in &batch.repatched {
                tx.execute("DELETE FROM span_patches WHERE trace_id = $1", &[t])?;
            }
            for p in &batch.patches {
                tx.execute(
                    "INSERT INTO span_patches (trace_id, span_id, patch) VALUES ($1, $2, $3)
                     ON CONFLICT (trace_id, span_id) DO UPDATE SET patch = excluded.patch",
                    &[&p.trace_id, &p.span_id, &text(&p.patch)],
                )?;
            }
            let mut cleared: Vec<&[u8]> = Vec::new();
            for id in batch.retired_requests.iter().chain(batch.requests.iter().map(|r| &r.request_id)) {
                if cleared.contains(&id.as_slice()) {
                    continue;
                }
                cleared.push(id);
                for table in ["request_agents", "request_models", "request_traces"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE request_id = $1"), &[id])?;
                }
            }
            for id in &batch.retired_requests {
                tx.execute("DELETE FROM requests WHERE request_id = $1", &[id])?;
            }
            for r in &batch.requests {
                let agents = serde_json::to_string(&r.agents).unwrap_or_else(|_| "[]".into());
                tx.execute(
                    "INSERT INTO requests (request_id, start_ns, duration_ns, root_service, root_name, session,
                         traces, spans, agents, input_tokens, output_tokens, cost_usd, findings, broken, errors, failed,
                         repairs, answer, root_span_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
                     ON CONFLICT (request_id, root_span_id) DO UPDATE SET start_ns = excluded.start_ns,
                         duration_ns = excluded.duration_ns, root_service = excluded.root_service,
                         root_name = excluded.root_name, session = excluded.session, traces = excluded.traces,
                         spans = excluded.spans, agents = excluded.agents, input_tokens = excluded.input_tokens,
                         output_tokens = excluded.output_tokens, cost_usd = excluded.cost_usd,
                         findings = excluded.findings, broken = excluded.broken, errors = excluded.errors,
                         failed = excluded.failed, repairs = excluded.repairs, answer = excluded.answer",
                    &[
                        &r.request_id,
                        &r.start_ns,
                        &r.duration_ns,
                        &text(&r.root_service),
                        &text(&r.root_name),
                        &r.session.as_deref().map(text),
                        &(r.trace_ids.len() as i64),
                        &r.spans,
                        &text(&agents),
                        &r.input_tokens,
                        &r.output_tokens,
                        &r.cost_usd,
                        &r.findings,
                        &r.broken,
                        &r.errors,
                        &r.failed,
                        &r.repairs,
                        &text(&r.answer),
                        &r.root_span_id,
                    ],
                )?;
                for agent in &r.agents {
                    tx.execute(
                        "INSERT INTO request_agents (agent, start_ns, request_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        &[&text(agent), &r.start_ns, &r.request_id],
                    )?;
                }
                for model in &r.models {
                    tx.execute(
                        "INSERT INTO request_models (model, start_ns, request_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        &[&text(model), &r.start_ns, &r.request_id],
                    )?;
                }
                for t in &r.trace_ids {
                    tx.execute(
                        "INSERT INTO request_traces (trace_id, request_id) VALUES ($1, $2)
                         ON CONFLICT (trace_id) DO UPDATE SET request_id = excluded.request_id",
                        &[t, &r.request_id],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// Deletes, in batches, the spans received more than `max_age` ago that
    /// also started before it, then key rows and chunks left without spans,
    /// then the requests none of whose traces has a span left.
    /// The days that have partitions, oldest first.
    fn partition_days(&mut self) -> Result<Vec<i64>, postgres::Error> {
        let mut days: Vec<i64> = self
            .client
            .query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'spans'::regclass",
                &[],
            )?
            .iter()
            .filter_map(|r| r.get::<_, String>(0).strip_prefix("spans_d").and_then(|d| d.parse().ok()))
            .collect();
        days.sort_unstable();
        Ok(days)
    }

    /// Drops day `day`'s partitions; how many spans went with them.
    fn drop_day(&mut self, day: i64) -> Result<u64, postgres::Error> {
        // Counted first, outside the locks (a day nobody writes any more).
        let exists =
            self.client.query_opt("SELECT 1 FROM pg_class WHERE relname = $1", &[&format!("spans_d{day}")])?.is_some();
        let spans: i64 =
            if exists { self.client.query_one(&format!("SELECT count(*) FROM spans_d{day}"), &[])?.get(0) } else { 0 };
        let mut tx = self.client.transaction()?;
        // Dropping a partition locks its parent: not behind a long reader.
        tx.batch_execute("SET LOCAL lock_timeout = '2s'")?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])?;
        for table in PARTITIONED {
            tx.batch_execute(&format!("DROP TABLE IF EXISTS {table}_d{day}"))?;
        }
        tx.commit()?;
        self.days.remove(&day);
        Ok(spans.max(0) as u64)
    }

    /// Retention: every day of receipt wholly older than `max_age` is
    /// dropped, partition by partition (no row deletes, no bloat left); in
    /// the day the cutoff falls in, the spans received and started before
    /// it are deleted in batches, as on SQLite. Past `max_bytes` the oldest
    /// days go, never today's. Then the requests none of whose traces has a
    /// span left. A span dated after the cutoff that arrived before it goes
    /// with its day (SQLite keeps it until its own start is past too).
    fn retain(&mut self) -> Result<u64, postgres::Error> {
        let now: i64 = self.client.query_one(&format!("SELECT {DB_NOW_NS}"), &[])?.get(0);
        let today = now / PARTITION_NS;
        let mut deleted = 0u64;
        let mut cutoff = i64::MIN;
        if let Some(max_age) = self.retention.max_age {
            // A commit stamps its rows with its time of receipt before it
            // writes them and is acknowledged after: the age is counted
            // with that much to spare, so nothing goes before it is
            // `max_age` old from its acknowledgement.
            let age = i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX).saturating_add(COMMIT_SLACK_NS);
            cutoff = now.saturating_sub(age);
            for day in self.partition_days()? {
                if (day + 1).saturating_mul(PARTITION_NS) <= cutoff {
                    deleted += self.drop_day(day)?;
                }
            }
            loop {
                let mut tx = self.client.transaction()?;
                let spans = tx.execute(
                    // The outer condition too, so that only the cutoff's day is read.
                    "DELETE FROM spans WHERE received_ns < $1 AND start_ns < $1 AND id IN
                         (SELECT id FROM spans WHERE received_ns < $1 AND start_ns < $1 LIMIT 10000)",
                    &[&cutoff],
                )?;
                tx.commit()?;
                deleted += spans;
                if spans == 0 {
                    break;
                }
            }
            // A key row and a chunk go with their spans: same receipt, and
            // no span of the chunk started after its latest start.
            self.client.execute("DELETE FROM span_keys WHERE received_ns < $1 AND start_ns < $1", &[&cutoff])?;
            self.client.execute("DELETE FROM chunks WHERE received_ns < $1 AND max_start_ns < $1", &[&cutoff])?;
        }
        if let Some(max_bytes) = self.retention.max_bytes {
            loop {
                let size: i64 = self.client.query_one("SELECT pg_database_size(current_database())", &[])?.get(0);
                let oldest = self.partition_days()?.into_iter().next();
                match oldest {
                    Some(day) if size.max(0) as u64 > max_bytes && day < today => deleted += self.drop_day(day)?,
                    _ => break,
                }
            }
        }
        if deleted == 0 {
            return Ok(0);
        }
        // The live diagnosis goes with its spans: requests that started
        // before what is left (by the cutoff, or the oldest day kept).
        let bound = if cutoff > i64::MIN {
            cutoff
        } else {
            self.partition_days()?.first().map_or(now, |d| d.saturating_mul(PARTITION_NS))
        };
        loop {
            let mut tx = self.client.transaction()?;
            let gone: Vec<Vec<u8>> =
                tx.query(&dollars(retention::GONE_REQUESTS), &[&bound])?.into_iter().map(|r| r.get(0)).collect();
            for id in &gone {
                for sql in retention::REQUEST_ROWS {
                    tx.execute(&dollars(sql), &[id])?;
                }
            }
            tx.commit()?;
            if gone.is_empty() {
                return Ok(deleted);
            }
        }
    }
}

impl Engine for PgWriter {
    fn write(&mut self, jobs: &[WriteJob]) -> Result<Vec<WriteOutcome>, String> {
        self.reconnect_if_closed().map_err(|e| format!("{e}; cannot reach PostgreSQL"))?;
        // Two collectors' commits can take the same rows' locks in opposite
        // orders (a resource both upsert, a request both rewrite): the
        // server aborts one, which is tried again here rather than refused.
        let mut attempt = 0;
        let result = loop {
            let result = self.write_all(jobs);
            let code = result.as_ref().err().and_then(|e| e.code()).cloned();
            // A partition this collector thought was there, dropped by
            // another's retention: known partitions are looked up again.
            if code.as_ref() == Some(&postgres::error::SqlState::CHECK_VIOLATION) {
                self.days.clear();
            }
            let retry = code.is_some_and(|c| {
                c == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                    || c == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                    || c == postgres::error::SqlState::CHECK_VIOLATION
            });
            attempt += 1;
            if !retry || attempt >= 3 {
                break result;
            }
            self.forget_ids();
            tracing::info!(attempt, "a commit met another collector's; trying it again");
        };
        result.map_err(|e| {
            self.forget_ids();
            let e = StoreError::Postgres(e);
            if self.client.is_closed() { format!("{e}; the connection to PostgreSQL is closed") } else { e.to_string() }
        })
    }

    fn apply_retention(&mut self) -> Result<u64, String> {
        self.reconnect_if_closed().map_err(|e| e.to_string())?;
        self.retain().map_err(|e| StoreError::Postgres(e).to_string())
    }

    fn store_bytes(&mut self) -> u64 {
        self.client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .map(|r| r.get::<_, i64>(0).max(0) as u64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of its own on the test server (`scripts/services.sh`).
    fn database(name: &str) -> PostgresConfig {
        let server = std::env::var("AGENTRACE_POSTGRES_URL").expect("AGENTRACE_POSTGRES_URL names the test server");
        let name = format!("{name}_{}", std::process::id());
        let mut admin = Client::connect(&server, NoTls).unwrap();
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = server.rsplit_once('/').unwrap().0;
        PostgresConfig { url: Some(format!("{base}/{name}")), ..PostgresConfig::default() }
    }

    /// A span (and its chunk and key) received at `received_ns`, written as
    /// the writer writes them.
    fn stored(client: &mut Client, id: u8, received_ns: i64, start_ns: i64) {
        let trace = vec![id; 16];
        client
            .execute(
                "INSERT INTO spans (trace_id, span_id, resource_id, scope_id, service, name, kind, start_ns, end_ns,
                     status_code, chunk_id, chunk_index, received_ns)
                 VALUES ($1, $2, 1, 1, 's', 'n', 1, $3, $3, 0, $4, 0, $5)",
                &[&trace, &vec![1u8; 8], &start_ns, &i64::from(id), &received_ns],
            )
            .unwrap();
        client
            .execute(
                "INSERT INTO chunks (id, max_start_ns, received_ns, body) VALUES ($1, $2, $3, '\\x00')",
                &[&i64::from(id), &start_ns, &received_ns],
            )
            .unwrap();
        client
            .execute(
                "INSERT INTO span_keys (key, value, trace_id, span_id, start_ns, received_ns) VALUES (1, 'sess', $1, $2, $3, $4)",
                &[&trace, &vec![1u8; 8], &start_ns, &received_ns],
            )
            .unwrap();
    }

    #[test]
    #[ignore = "needs PostgreSQL (scripts/services.sh start); the README's test command runs it"]
    fn retention_drops_whole_days_and_deletes_rows_only_where_the_cutoff_falls() {
        let config = database("retention");
        let mut client = connect(&config).unwrap();
        migrate(&mut client).unwrap();
        let retention = RetentionConfig {
            max_age: Some(std::time::Duration::from_secs(3600)),
            max_bytes: None,
            interval: std::time::Duration::from_secs(30),
        };
        let mut writer = PgWriter::new(client, config.clone(), "test".into(), retention).unwrap();
        let now = now_ns();
        let today = now / PARTITION_NS;
        let hour = 3_600_000_000_000;
        // Three days back, received then; one received two hours ago; one
        // received a minute ago but dated a year back (kept: age counts
        // from receipt).
        writer.ensure_partitions(today - 3).unwrap();
        writer.ensure_partitions((now - 2 * hour) / PARTITION_NS).unwrap();
        writer.ensure_partitions(today).unwrap();
        let mut admin = connect(&config).unwrap();
        stored(&mut admin, 1, (today - 3) * PARTITION_NS + hour, (today - 3) * PARTITION_NS + hour);
        stored(&mut admin, 2, now - 2 * hour, now - 2 * hour);
        stored(&mut admin, 3, now - 60_000_000_000, now - 365 * 24 * hour);
        let deleted = writer.retain().unwrap();
        assert_eq!(deleted, 2, "the old day's span and the two-hour-old one");
        let left: Vec<Vec<u8>> = admin
            .query("SELECT trace_id FROM spans ORDER BY trace_id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(left, vec![vec![3u8; 16]]);
        let keys: i64 = admin.query_one("SELECT count(*) FROM span_keys", &[]).unwrap().get(0);
        let chunks: i64 = admin.query_one("SELECT count(*) FROM chunks", &[]).unwrap().get(0);
        assert_eq!((keys, chunks), (1, 1), "keys and chunks go with their spans");
        // The old day is gone as tables, not as rows left to vacuum.
        let old_day: Option<postgres::Row> =
            admin.query_opt("SELECT 1 FROM pg_class WHERE relname = $1", &[&format!("spans_d{}", today - 3)]).unwrap();
        assert!(old_day.is_none(), "the partition of a day past max_age is dropped");
        assert!(writer.partition_days().unwrap().contains(&today));
        drop(writer);
        drop(admin);
        let server = std::env::var("AGENTRACE_POSTGRES_URL").unwrap();
        let mut c = Client::connect(&server, NoTls).unwrap();
        let name = config.url.unwrap().rsplit_once('/').unwrap().1.to_owned();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    }
}
