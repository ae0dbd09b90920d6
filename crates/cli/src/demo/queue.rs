//! The durable queue between the orchestrator and its specialists: by default an embedded job
//! table (a SQLite file, the article's "database row" carrier: nothing to install), or a real
//! broker with `--queue nats://…` or `--queue redis://…`.
//!
//! A message is a job id and a body; the body is the JSON envelope `Traced<Job>` of the SDK, so
//! the trace context rides inside the row or message exactly where a real system would put it
//! when the transport has no headers. The queue itself knows nothing about tracing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
#[cfg(feature = "brokers")]
use futures::StreamExt as _;
use tokio::sync::watch;

/// How often an idle consumer of the job table looks for a new row.
const TABLE_POLL: Duration = Duration::from_millis(10);
/// How long an idle Redis consumer blocks before it checks whether to stop.
#[cfg(feature = "brokers")]
const REDIS_BLOCK_SECS: f64 = 0.25;

/// One message taken from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The producer-assigned job id (`messaging.message.id` on both sides).
    pub id: String,
    /// The envelope, as JSON text.
    pub body: String,
}

/// Where jobs travel.
#[derive(Clone)]
pub enum Queue {
    /// A table in a SQLite file, polled by the consumers.
    Table {
        /// The connection (one for the whole process; every statement is short).
        conn: Arc<Mutex<rusqlite::Connection>>,
        /// The file, removed when the demo ends.
        path: PathBuf,
    },
    /// NATS subjects (core NATS: consumers subscribe before anything is sent).
    #[cfg(feature = "brokers")]
    Nats(async_nats::Client),
    /// Redis lists (`LPUSH` / `BRPOP`).
    #[cfg(feature = "brokers")]
    Redis(redis::Client),
}

/// A consumer of one destination.
pub enum Receiver {
    /// Polls the job table.
    Table(Arc<Mutex<rusqlite::Connection>>, String),
    /// A NATS subscription.
    #[cfg(feature = "brokers")]
    Nats(async_nats::Subscriber),
    /// A Redis connection of its own (a blocking pop holds the connection).
    #[cfg(feature = "brokers")]
    Redis(redis::aio::MultiplexedConnection, String),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.system())
    }
}

impl Queue {
    /// Opens the queue named by `url`: `None` for a fresh job table in `dir`.
    pub async fn open(url: Option<&str>, dir: &Path) -> anyhow::Result<Queue> {
        match url {
            None => {
                let path = dir.join(format!("agentrace-demo-jobs-{}.sqlite", std::process::id()));
                let _ = std::fs::remove_file(&path);
                let conn = rusqlite::Connection::open(&path)
                    .with_context(|| format!("cannot create the job table at {}", path.display()))?;
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL;
                     CREATE TABLE jobs (
                         seq INTEGER PRIMARY KEY,
                         destination TEXT NOT NULL,
                         id TEXT NOT NULL,
                         body TEXT NOT NULL,
                         claimed INTEGER NOT NULL DEFAULT 0
                     );",
                )
                .context("cannot create the job table")?;
                Ok(Queue::Table { conn: Arc::new(Mutex::new(conn)), path })
            }
            #[cfg(feature = "brokers")]
            Some(url) if url.starts_with("nats://") => {
                let client =
                    async_nats::connect(url).await.with_context(|| format!("cannot connect to NATS at {url}"))?;
                Ok(Queue::Nats(client))
            }
            #[cfg(feature = "brokers")]
            Some(url) if url.starts_with("redis://") => {
                let client = redis::Client::open(url).with_context(|| format!("bad Redis URL {url}"))?;
                // Fail now, not in the middle of the first request.
                let mut con = client
                    .get_multiplexed_async_connection()
                    .await
                    .with_context(|| format!("cannot connect to Redis at {url}"))?;
                let _: String = redis::cmd("PING").query_async(&mut con).await.context("Redis PING failed")?;
                Ok(Queue::Redis(client))
            }
            #[cfg(not(feature = "brokers"))]
            Some(url) if url.starts_with("nats://") || url.starts_with("redis://") => bail!(
                "this agentrace was built without broker clients: build it with `--features brokers` \
                 (`cargo run --release --features brokers -- demo --queue {url}`), or leave --queue out for the \
                 embedded job table"
            ),
            Some(other) => bail!(
                "unsupported queue {other:?}: use nats://HOST:PORT or redis://HOST:PORT (or nothing, for the job table)"
            ),
        }
    }

    /// `messaging.system` of this queue.
    pub fn system(&self) -> &'static str {
        match self {
            // Not a registered value: the conventions allow a custom one for a custom system.
            Queue::Table { .. } => "sqlite_job_table",
            #[cfg(feature = "brokers")]
            Queue::Nats(_) => agentrace::messaging::system::NATS,
            #[cfg(feature = "brokers")]
            Queue::Redis(_) => agentrace::messaging::system::REDIS,
        }
    }

    /// Starts consuming `destination`.
    pub async fn subscribe(&self, destination: &str) -> anyhow::Result<Receiver> {
        Ok(match self {
            Queue::Table { conn, .. } => Receiver::Table(Arc::clone(conn), destination.to_owned()),
            #[cfg(feature = "brokers")]
            Queue::Nats(client) => Receiver::Nats(
                client
                    .subscribe(destination.to_owned())
                    .await
                    .with_context(|| format!("cannot subscribe to {destination}"))?,
            ),
            #[cfg(feature = "brokers")]
            Queue::Redis(client) => Receiver::Redis(
                client.get_multiplexed_async_connection().await.context("cannot open a Redis connection")?,
                destination.to_owned(),
            ),
        })
    }

    /// Sends one message to `destination`.
    pub async fn send(&self, destination: &str, message: &Message) -> anyhow::Result<()> {
        match self {
            Queue::Table { conn, .. } => {
                let conn = conn.lock().map_err(|_| anyhow::anyhow!("job table lock poisoned"))?;
                conn.execute(
                    "INSERT INTO jobs (destination, id, body) VALUES (?1, ?2, ?3)",
                    (destination, &message.id, &message.body),
                )
                .context("cannot insert the job row")?;
            }
            #[cfg(feature = "brokers")]
            Queue::Nats(client) => {
                // The job id travels as the body's own field; NATS needs nothing else.
                client
                    .publish(destination.to_owned(), message.body.clone().into())
                    .await
                    .context("cannot publish to NATS")?;
                client.flush().await.context("cannot flush NATS")?;
            }
            #[cfg(feature = "brokers")]
            Queue::Redis(client) => {
                let mut con =
                    client.get_multiplexed_async_connection().await.context("cannot open a Redis connection")?;
                let _: i64 = redis::cmd("LPUSH")
                    .arg(destination)
                    .arg(&message.body)
                    .query_async(&mut con)
                    .await
                    .context("Redis LPUSH failed")?;
            }
        }
        Ok(())
    }

    /// Removes what the queue left on disk.
    pub fn close(&self) {
        #[cfg_attr(not(feature = "brokers"), allow(irrefutable_let_patterns))]
        if let Queue::Table { path, .. } = self {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
}

/// The job id inside an envelope body, for transports that carry only the body.
#[cfg(feature = "brokers")]
fn job_id(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["payload"]["id"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Receiver {
    /// The next message, or `None` once `stop` turns true.
    pub async fn next(&mut self, stop: &mut watch::Receiver<bool>) -> anyhow::Result<Option<Message>> {
        loop {
            if *stop.borrow() {
                return Ok(None);
            }
            match self {
                Receiver::Table(conn, destination) => {
                    let row = {
                        let conn = conn.lock().map_err(|_| anyhow::anyhow!("job table lock poisoned"))?;
                        // Claim the oldest unclaimed row in one statement, so two consumers of a
                        // destination never take the same job.
                        let mut stmt = conn.prepare_cached(
                            "UPDATE jobs SET claimed = 1 WHERE seq = (
                                 SELECT seq FROM jobs WHERE destination = ?1 AND claimed = 0 ORDER BY seq LIMIT 1
                             ) RETURNING id, body",
                        )?;
                        let mut rows = stmt.query([destination.as_str()])?;
                        match rows.next()? {
                            Some(row) => Some(Message { id: row.get(0)?, body: row.get(1)? }),
                            None => None,
                        }
                    };
                    match row {
                        Some(message) => return Ok(Some(message)),
                        None => {
                            tokio::select! {
                                _ = tokio::time::sleep(TABLE_POLL) => {}
                                _ = stop.changed() => {}
                            }
                        }
                    }
                }
                #[cfg(feature = "brokers")]
                Receiver::Nats(sub) => {
                    tokio::select! {
                        msg = sub.next() => match msg {
                            Some(msg) => {
                                let body = String::from_utf8_lossy(&msg.payload).into_owned();
                                return Ok(Some(Message { id: job_id(&body), body }));
                            }
                            None => bail!("the NATS subscription closed"),
                        },
                        _ = stop.changed() => {}
                    }
                }
                #[cfg(feature = "brokers")]
                Receiver::Redis(con, key) => {
                    let popped: Option<(String, String)> = redis::cmd("BRPOP")
                        .arg(key.as_str())
                        .arg(REDIS_BLOCK_SECS)
                        .query_async(con)
                        .await
                        .context("Redis BRPOP failed")?;
                    if let Some((_, body)) = popped {
                        return Ok(Some(Message { id: job_id(&body), body }));
                    }
                }
            }
        }
    }
}
