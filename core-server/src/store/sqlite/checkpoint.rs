//! WAL checkpoints on SQLite, beside the writer rather than inside it.
//!
//! By default SQLite checkpoints from whichever connection commits the page
//! that fills the WAL past 1,000 pages: that commit then copies the WAL into
//! the database file and syncs it, and every write queued behind the single
//! writer waits (submit p99 went from ~5 ms to 10–40 ms). The write
//! connection has automatic checkpoints turned off (`super::connect`);
//! instead this task runs a passive checkpoint on a connection of its own,
//! on a blocking thread, once a second. A passive checkpoint never waits for
//! readers or the writer; a page written many times in that second is
//! copied once.
//!
//! The WAL starts over from the beginning only when a write begins with
//! every frame copied, and under steady writes that never happens by itself:
//! each passive checkpoint misses what was written while it ran, and the
//! WAL grew past a gigabyte in a 12-second benchmark. So once the WAL is
//! past `CHATRELAY_SQLITE_WAL_LIMIT_MIB`, the passive checkpoint is followed
//! by a second one (which copies what was written during the first), and
//! the writer ([`super::writer`]) copies the few frames left itself, on its
//! own connection between two of its transactions, where no write can come
//! in between and nothing needs holding back: with every frame copied, its
//! next write starts the WAL over. (A reader still on the WAL at that
//! moment defers it to a later round; a restarting checkpoint would wait
//! for such readers with the writer held.) That pass copies a few dozen
//! frames and syncs both files, 1–14 ms every two seconds at 5,000
//! lifecycles a second. The file is not cut back to the limit (see
//! `super::WAL_FILE_LIMIT`).

use std::{
    path::Path,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use rusqlite::Connection;

use crate::Core;

/// How often the WAL is checkpointed.
const EVERY: Duration = Duration::from_secs(1);

/// The checkpoint task's own connection, used on blocking threads.
type Shared = Arc<Mutex<Connection>>;

/// Starts the checkpoint task if the database is an SQLite file.
pub fn start(core: &Arc<Core>) {
    let Some(file) = super::parts(core).file.clone() else {
        return;
    };
    let conn: Shared = match open(&file) {
        Ok(conn) => Arc::new(Mutex::new(conn)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a checkpoint connection; the WAL will grow until restart");
            return;
        }
    };
    core.every(EVERY, move |core| {
        let conn = conn.clone();
        async move {
            if let Err(e) = checkpoint(&core, &conn).await {
                tracing::warn!(error = format!("{e:#}"), "WAL checkpoint failed");
            }
        }
    });
}

fn open(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(file)?;
    conn.busy_timeout(Duration::from_secs(1))?;
    Ok(conn)
}

/// Copies what it can of the WAL into the database file without waiting;
/// if the WAL is past the limit, then makes the next write start it over.
async fn checkpoint(core: &Core, conn: &Shared) -> anyhow::Result<()> {
    let limit = core.config.database.sqlite_wal_limit_bytes();
    let size = blocking(conn, |conn| {
        let (frames, _) = passive(conn)?;
        let page: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        Ok(u64::try_from(frames.max(0) * page.max(0)).unwrap_or(u64::MAX))
    })
    .await?;
    if size <= limit {
        return Ok(());
    }
    // It copies up to the frame that was last when it began; the writer
    // copies those written since.
    blocking(conn, passive).await?;
    super::parts(core).finish_wal.store(true, Ordering::Relaxed);
    Ok(())
}

/// A passive checkpoint; returns the frames in the WAL and those copied.
pub(super) fn passive(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    // (busy, frames in the WAL, frames copied)
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

/// Runs `step` on the checkpoint connection on a blocking thread.
async fn blocking<T: Send + 'static>(
    conn: &Shared,
    step: fn(&Connection) -> rusqlite::Result<T>,
) -> anyhow::Result<T> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let conn = conn
            .lock()
            .map_err(|_| anyhow::anyhow!("connection poisoned"))?;
        step(&conn).context("checkpoint statement")
    })
    .await
    .context("checkpoint thread")?
}
