//! The checkpoint thread: moves committed pages from the WAL into the
//! database file, beside the writer rather than in its way.
//!
//! A passive checkpoint every second never blocks the writer. If the WAL
//! still grows past [`TRUNCATE_AT_BYTES`] (a reader held it, or writes
//! outran the checkpoints), a truncating checkpoint bounds it; that one
//! waits briefly for the writer, which is the price of a bounded disk.

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

const EVERY: Duration = Duration::from_secs(1);
const TRUNCATE_AT_BYTES: u64 = 512 * 1024 * 1024;

/// Starts the thread; dropping the returned sender stops it after one last checkpoint.
pub(crate) fn spawn(conn: Connection) -> std::io::Result<(mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new().name("agentrace-store-checkpoint".into()).spawn(move || {
        loop {
            let last = matches!(stopped.recv_timeout(EVERY), Err(mpsc::RecvTimeoutError::Disconnected));
            let wal_bytes = wal_size(&conn);
            let mode = if last || wal_bytes > TRUNCATE_AT_BYTES { "TRUNCATE" } else { "PASSIVE" };
            if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
                tracing::warn!(error = %e, mode, "checkpoint failed; will retry");
            }
            if last {
                break;
            }
        }
    })?;
    Ok((stop, handle))
}

fn wal_size(conn: &Connection) -> u64 {
    let Some(path) = conn.path() else { return 0 };
    std::fs::metadata(format!("{path}-wal")).map(|m| m.len()).unwrap_or(0)
}
