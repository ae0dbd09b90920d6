//! The embedded store: SQLite (bundled) in WAL mode under `--data-dir`.
//!
//! The last stop on the data's road before the API. One writer thread owns
//! the write connection and commits every pending request in one
//! transaction (group commit); a request is acknowledged only after the
//! transaction holding its spans has committed, so an acknowledged span
//! survives `kill -9` (WAL with `synchronous=NORMAL`; `full` for power loss).
//! Readers use their own connections, which WAL lets run beside the writer.
//!
//! The store must never hold more than the configured number of pending
//! spans in memory: [`Store::submit`] refuses past it, and the receivers turn
//! that into a retryable answer.
//!
//! What is kept is lossless: every span's protobuf as it arrived, its
//! resource and scope once each, plus indexed columns (trace ID, time,
//! service, name) and an index of session and join keys.

mod checkpoint;
mod postgres;
mod prepare;
pub mod query;
pub mod sql;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub use agentrace_model::keys::KeyKind;
pub use postgres::Target as PostgresTarget;
pub use prepare::{AnalysisRow, PatchRow, PreparedBatch, QueuedExport, RequestRow};
pub use query::{SearchQuery, TraceSummary};
use rusqlite::Connection;
pub use sql::Db;
use tokio::sync::oneshot;

use crate::config::{PostgresConfig, StorageBackend, StorageConfig, Synchronous};
use crate::metrics::Metrics;

/// Why the store failed. Receivers answer a retryable "unavailable"; the API
/// answers 500. Nothing already committed is affected.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (disk full, I/O error, corrupt file…).
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error (connection lost, a constraint, a full disk…).
    #[error("store error (PostgreSQL): {}", postgres_message(.0))]
    Postgres(#[from] ::postgres::Error),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The writer thread has stopped (shutdown, or a fatal error earlier).
    #[error("the store's writer has stopped")]
    WriterGone,
    /// A stored row could not be decoded: the file was changed by something
    /// other than agentrace.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The writer could not commit a batch (a full disk, an I/O error):
    /// nothing of it was acknowledged, and the senders retry.
    #[error("the store could not write: {0}")]
    Write(String),
}

/// A PostgreSQL error with what the server or the driver said under it
/// (the driver's own text names only the step that failed).
fn postgres_message(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Why a batch was not taken. Retryable: the sender should wait and resend.
#[derive(Debug, thiserror::Error)]
#[error("{pending} spans are waiting to be written (limit {limit}); retry shortly")]
pub struct Backpressure {
    /// Spans pending when the batch was refused.
    pub pending: u64,
    /// The configured limit.
    pub limit: u64,
}

/// What a committed batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    /// Spans newly written.
    pub inserted: u64,
    /// Spans already stored (a client retry), acknowledged but not written again.
    pub duplicates: u64,
}

pub(crate) struct WriteJob {
    batch: PreparedBatch,
    ack: oneshot::Sender<Result<WriteOutcome, String>>,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The shared database, when the store is PostgreSQL.
    postgres: Option<PostgresConfig>,
    /// This collector's name among those sharing it (export leases).
    instance: String,
    /// Keeps that name alive in the shared store (PostgreSQL).
    heartbeat: Mutex<Option<postgres::Heartbeat>>,
    /// Reads running at once, at most (PostgreSQL: `pool_size`, so that
    /// API load cannot take every connection the server allows).
    read_slots: Option<Arc<tokio::sync::Semaphore>>,
    jobs: Mutex<Option<mpsc::SyncSender<WriteJob>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
    readers: Mutex<Vec<Db>>,
    pending: Arc<AtomicU64>,
    max_pending: u64,
    metrics: Arc<Metrics>,
}

impl Store {
    /// Opens (creating if needed) the store under `config.data_dir`, and
    /// starts its writer thread.
    pub fn open(config: &StorageConfig, max_pending_spans: usize, metrics: Arc<Metrics>) -> Result<Store, StoreError> {
        if config.backend == StorageBackend::Postgres {
            return Store::open_postgres(config, max_pending_spans, metrics);
        }
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| StoreError::DataDir { path: config.data_dir.clone(), source })?;
        let path = config.data_dir.join("agentrace.db");
        let conn = open_connection(&path, config.synchronous)?;
        writer::create_schema(&conn)?;
        // Checkpoints run on their own thread and connection: done inline
        // (SQLite's default) they stall every commit that crosses the
        // threshold, fsync included, and acknowledgements with it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = checkpoint::spawn(open_connection(&path, config.synchronous)?)
            .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
        let writer = writer::Writer::new(conn, path.clone(), config.retention.clone());
        let (tx, handle, pending) = spawn_writer(writer, config, max_pending_spans, &metrics)?;
        let store = Store {
            inner: Arc::new(Inner {
                path,
                postgres: None,
                instance: String::new(),
                heartbeat: Mutex::new(None),
                read_slots: None,
                jobs: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                checkpointer: Mutex::new(Some(checkpointer)),
                readers: Mutex::new(Vec::new()),
                pending,
                max_pending: max_pending_spans as u64,
                metrics,
            }),
        };
        Ok(store)
    }

    /// Connects to the shared PostgreSQL database, brings its schema up to
    /// date, and starts the writer thread on a connection of its own.
    fn open_postgres(
        config: &StorageConfig,
        max_pending_spans: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        let pg = config.postgres.clone();
        let instance = postgres::instance_name();
        let client = postgres::off_runtime(|| -> Result<_, StoreError> {
            let mut client = postgres::connect(&pg)?;
            postgres::migrate(&mut client)?;
            postgres::PgWriter::new(client, pg.clone(), instance.clone(), config.retention.clone())
        })?;
        let (tx, handle, pending) = spawn_writer(client, config, max_pending_spans, &metrics)?;
        let slots = pg.pool_size;
        let heartbeat = postgres::Heartbeat::spawn(pg.clone(), instance.clone())
            .map_err(|e| StoreError::Corrupt(format!("cannot start the heartbeat thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: config.data_dir.join("agentrace.db"),
                postgres: Some(pg),
                instance,
                heartbeat: Mutex::new(Some(heartbeat)),
                read_slots: Some(Arc::new(tokio::sync::Semaphore::new(slots))),
                jobs: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                checkpointer: Mutex::new(None),
                readers: Mutex::new(Vec::new()),
                pending,
                max_pending: max_pending_spans as u64,
                metrics,
            }),
        })
    }

    /// The database file (SQLite).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Hands a batch to the writer. The returned future resolves once the
    /// batch is durable. Refuses at once when too many spans are pending.
    pub fn submit(
        &self,
        batch: PreparedBatch,
    ) -> Result<impl Future<Output = Result<WriteOutcome, StoreError>> + use<>, SubmitError> {
        let n = batch.len() as u64;
        let before = self.inner.pending.fetch_add(n, Ordering::AcqRel);
        // One request is always let through on an idle store, whatever its
        // size, or a request bigger than the budget could never be taken.
        if before > 0 && before + n > self.inner.max_pending {
            self.inner.pending.fetch_sub(n, Ordering::AcqRel);
            return Err(SubmitError::Backpressure(Backpressure { pending: before, limit: self.inner.max_pending }));
        }
        self.inner.metrics.set_pending(before + n);
        let (ack, done) = oneshot::channel();
        let sent = {
            let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            match jobs.as_ref() {
                Some(tx) => tx.try_send(WriteJob { batch, ack }).map_err(|_| ()),
                None => Err(()),
            }
        };
        if sent.is_err() {
            self.inner.pending.fetch_sub(n, Ordering::AcqRel);
            return Err(SubmitError::Store(StoreError::WriterGone));
        }
        Ok(async move {
            match done.await {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(message)) => Err(StoreError::Write(message)),
                Err(_) => Err(StoreError::WriterGone),
            }
        })
    }

    /// Runs a read on a pooled reader connection, off the async runtime.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        let slot = match &inner.read_slots {
            Some(slots) => Some(
                Arc::clone(slots)
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Corrupt("the store is closed".into()))?,
            ),
            None => None,
        };
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let pooled = inner.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match (pooled, &inner.postgres) {
                (Some(c), _) => c,
                (None, None) => Db::sqlite(open_reader(&inner.path)?),
                (None, Some(pg)) => Db::postgres(sql::PgConn::new(postgres::connect(pg)?)),
            };
            let result = conn.snapshot(f);
            let keep = inner.postgres.as_ref().map(|pg| pg.pool_size).unwrap_or(8);
            // A connection the server closed is not kept.
            if !conn.is_closed() {
                let mut readers = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
                if readers.len() < keep {
                    readers.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("reader task failed: {e}")))?
    }

    /// Stops accepting writes, lets the writer commit what it has, and waits for it.
    pub fn close(&self) {
        self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.inner.drop_readers();
        if let Some(handle) = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
        if let Some((stop, handle)) = self.inner.checkpointer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            drop(stop);
            let _ = handle.join();
        }
        // Last: the rows this collector leases go to the others once it has stopped.
        drop(self.inner.heartbeat.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    /// The ID under which exporter `name` keeps its queue, created on first use.
    pub fn register_exporter(&self, name: &str) -> Result<i64, StoreError> {
        if let Some(pg) = &self.inner.postgres {
            return postgres::off_runtime(|| {
                let mut client = postgres::connect(pg)?;
                client.execute("INSERT INTO exporters (name) VALUES ($1) ON CONFLICT DO NOTHING", &[&name])?;
                Ok(client.query_one("SELECT id FROM exporters WHERE name = $1", &[&name])?.get(0))
            });
        }
        let conn = open_connection(&self.inner.path, Synchronous::Normal)?;
        conn.execute("INSERT OR IGNORE INTO exporters (name) VALUES (?1)", [name])?;
        Ok(conn.query_row("SELECT id FROM exporters WHERE name = ?1", [name], |r| r.get(0))?)
    }

    /// Whether several collectors share the store (PostgreSQL): each
    /// pipeline then looks in it for the sides of its requests that others
    /// received.
    pub fn is_shared(&self) -> bool {
        self.inner.postgres.is_some()
    }

    /// This collector's name among those sharing the store (empty on SQLite).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Spans currently pending.
    pub fn pending(&self) -> u64 {
        self.inner.pending.load(Ordering::Acquire)
    }
}

impl Inner {
    /// Closes the pooled readers. A PostgreSQL client must not be dropped
    /// on a thread of the async runtime (it stops a runtime of its own).
    fn drop_readers(&self) {
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|p| p.into_inner()));
        if self.postgres.is_some() && !readers.is_empty() {
            postgres::off_runtime(move || drop(readers));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.drop_readers();
    }
}

/// Why [`Store::submit`] refused a batch.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Too many spans pending: retry later.
    #[error(transparent)]
    Backpressure(#[from] Backpressure),
    /// The store cannot write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Spawned = (mpsc::SyncSender<WriteJob>, std::thread::JoinHandle<()>, Arc<AtomicU64>);

/// Starts the writer thread on `engine`: the job channel it reads, its
/// handle, and the count of spans pending in it.
fn spawn_writer<E: writer::Engine + Send + 'static>(
    engine: E,
    config: &StorageConfig,
    max_pending_spans: usize,
    metrics: &Arc<Metrics>,
) -> Result<Spawned, StoreError> {
    // Jobs are counted in requests, spans in `pending`; the channel only
    // needs to be big enough never to be the limit.
    let (tx, rx) = mpsc::sync_channel::<WriteJob>(max_pending_spans.max(1024));
    let pending = Arc::new(AtomicU64::new(0));
    let (retention, writer_pending, writer_metrics) =
        (config.retention.clone(), Arc::clone(&pending), Arc::clone(metrics));
    let handle = std::thread::Builder::new()
        .name("agentrace-store-writer".into())
        .spawn(move || writer::run(engine, rx, &retention, &writer_pending, &writer_metrics))
        .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
    Ok((tx, handle, pending))
}

fn open_connection(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        },
    )?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Enough cache for the upper levels of every index; the default 2 MB
    // made inserts re-read B-tree pages from the file.
    conn.pragma_update(None, "cache_size", -32_000)?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}
