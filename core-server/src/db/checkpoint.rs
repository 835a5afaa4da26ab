//! WAL checkpoints on SQLite, beside the writer rather than inside it.
//!
//! By default SQLite checkpoints from whichever connection commits the page
//! that fills the WAL past 1,000 pages: that commit then copies the WAL into
//! the database file and syncs it, and every write queued behind the single
//! writer waits (submit p99 went from ~5 ms to 10–40 ms). The write
//! connection has automatic checkpoints turned off (`db::Db::connect`);
//! instead this task runs a passive checkpoint on a connection of its own,
//! on a blocking thread, once a second. A passive checkpoint never waits for
//! readers or the writer, and once the WAL is copied in full the next write
//! starts it over from the beginning, so the WAL holds about a second of
//! writes. A page written many times in that second is copied once.

use std::{path::Path, sync::Arc, time::Duration};

use rusqlite::Connection;

use crate::Core;

/// How often the WAL is checkpointed.
const EVERY: Duration = Duration::from_secs(1);

/// Starts the checkpoint task if the database is an SQLite file.
pub fn start(core: &Arc<Core>) {
    let Some(file) = core.db.sqlite_file.clone() else {
        return;
    };
    let shutdown = core.shutdown.clone();
    core.tasks.spawn(async move {
        let mut conn = match open(&file) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a checkpoint connection; the WAL will grow until restart");
                return;
            }
        };
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let done = tokio::task::spawn_blocking(move || {
                let result = passive(&conn);
                (conn, result)
            })
            .await;
            match done {
                Ok((back, result)) => {
                    conn = back;
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "WAL checkpoint task failed");
                    return;
                }
            }
        }
    });
}

fn open(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(file)?;
    conn.busy_timeout(Duration::from_secs(1))?;
    Ok(conn)
}

/// Copies what it can of the WAL into the database file without waiting.
fn passive(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
