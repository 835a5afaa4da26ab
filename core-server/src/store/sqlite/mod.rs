//! SQLite: an embedded file with one writer. The write pool has a single
//! connection (queueing writers in the pool avoids `SQLITE_BUSY` on lock
//! upgrades), drained by [`writer`], which runs its cycles on that
//! connection's handle itself ([`inline`]); reads go through a pool of their own
//! and, for lookups by key, through [`point_reads`]; [`checkpoint`] keeps
//! the WAL in check beside the writer.

pub(super) mod checkpoint;
mod inline;
pub(super) mod point_reads;
mod wal_writes;
pub(super) mod writer;

use std::{
    path::PathBuf,
    str::FromStr,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use sea_orm::{DatabaseConnection, DbErr, SqlxSqliteConnector};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::Parts as StoreParts;
use crate::{config::DatabaseConfig, store::config::SqliteSynchronous as Synchronous, Core};

/// What only the SQLite store has.
#[derive(Clone, Debug)]
pub(super) struct Parts {
    /// The database file (`None` for an in-memory database).
    pub(super) file: Option<PathBuf>,
    /// Lookups by key without sqlx's thread hand-off (files only).
    pub(super) point_reads: Option<Arc<point_reads::PointReads>>,
    /// Set by the checkpoint task when the WAL is past its limit and
    /// copied all but the last moment's frames; the writer copies those
    /// between two of its transactions, so its next write starts the WAL
    /// over (see [`checkpoint`]).
    pub(super) finish_wal: Arc<AtomicBool>,
}

/// The SQLite parts of `core`'s store.
pub(super) fn parts(core: &Core) -> &Parts {
    match &core.store.parts {
        StoreParts::Sqlite(parts) => parts,
        StoreParts::Postgres(_) => unreachable!("SQLite tasks run on SQLite stores only"),
    }
}

/// The WAL file may keep this many times `CHATRELAY_SQLITE_WAL_LIMIT_MIB`
/// on disk between restarts. Frames past the limit arrive while the
/// checkpoints catch up, so the file outgrows the limit before each
/// restart (85–140 MB at 5,000 lifecycles a second under the default 64
/// MiB). Cut back to the limit, it had its blocks freed in the writer's
/// next commit, 9–17 ms each time, every two seconds, and grew again; kept,
/// it is written over in place.
const WAL_FILE_LIMIT: u64 = 4;

/// Opens the read pool, the one-connection write pool and the point reads.
pub(super) async fn connect(
    config: &DatabaseConfig,
) -> Result<(DatabaseConnection, DatabaseConnection, Parts), DbErr> {
    let url = config.database_url.as_str();
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| DbErr::Custom(format!("invalid DATABASE_URL: {e}")))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match config.sqlite_synchronous {
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = |max: u32, options: SqliteConnectOptions| {
        SqlitePoolOptions::new()
            .max_connections(max)
            // An in-process file: pinging it before each use only
            // costs a trip to the connection's thread.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
    };
    // The writer first: it creates the file and switches it to WAL.
    // It never checkpoints by itself: a checkpoint syncs the database
    // file, which would stall every write queued behind it (see
    // `checkpoint`, which does that work beside the writer). When it
    // starts the WAL over, it cuts the file back only if a burst left it
    // past `WAL_FILE_LIMIT` times the limit.
    let mut writer = options.clone().pragma("wal_autocheckpoint", "0").pragma(
        "journal_size_limit",
        (config.sqlite_wal_limit_bytes() * WAL_FILE_LIMIT).to_string(),
    );
    // Each commit's WAL frames in one write, where each commit syncs.
    if config.sqlite_synchronous == Synchronous::Full {
        match wal_writes::register() {
            Ok(()) => writer = writer.vfs(wal_writes::NAME),
            Err(e) => tracing::warn!(error = %e, "WAL writes go out frame by frame"),
        }
    }
    let write = pool(1, writer).await.map_err(sqlx_err)?;
    let read = pool(config.db_max_connections.max(1), options.clone())
        .await
        .map_err(sqlx_err)?;
    // An in-memory database lives inside sqlx's connections only.
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let file = (!in_memory).then(|| options.get_filename().to_path_buf());
    let parts = Parts {
        point_reads: file
            .clone()
            .map(|file| Arc::new(point_reads::PointReads::new(file))),
        file,
        finish_wal: Default::default(),
    };
    Ok((
        SqlxSqliteConnector::from_sqlx_sqlite_pool(read),
        SqlxSqliteConnector::from_sqlx_sqlite_pool(write),
        parts,
    ))
}

/// Starts the one writer and the checkpoint task.
pub(super) fn start(core: &Arc<Core>) {
    writer::start(core);
    checkpoint::start(core);
}

fn sqlx_err(e: sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))
}
