//! SQLite: an embedded file with one writer. The write pool has a single
//! connection (queueing writers in the pool avoids `SQLITE_BUSY` on lock
//! upgrades), drained by [`writer`], which runs its cycles on that
//! connection's handle itself ([`inline`]); reads go through a pool of their own
//! and, for lookups by key, through [`point_reads`]; [`checkpoint`] keeps
//! the WAL in check beside the writer.

pub(super) mod checkpoint;
mod inline;
pub(super) mod point_reads;
pub(super) mod writer;

use std::{path::PathBuf, str::FromStr, sync::Arc, time::Duration};

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
    /// Held shared by each write cycle and alone by the checkpoint that
    /// starts the WAL over (see [`checkpoint`]), so neither waits in
    /// SQLite's busy handler for the other.
    pub(super) write_gate: Arc<tokio::sync::RwLock<()>>,
}

/// The SQLite parts of `core`'s store.
pub(super) fn parts(core: &Core) -> &Parts {
    match &core.store.parts {
        StoreParts::Sqlite(parts) => parts,
        StoreParts::Postgres(_) => unreachable!("SQLite tasks run on SQLite stores only"),
    }
}

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
    // It never checkpoints: a checkpoint syncs the database file,
    // which would stall every write queued behind it (see
    // `checkpoint`, which does that work beside the writer). When it
    // starts the WAL over, it cuts the file back to the limit.
    let writer = options.clone().pragma("wal_autocheckpoint", "0").pragma(
        "journal_size_limit",
        config.sqlite_wal_limit_bytes().to_string(),
    );
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
        write_gate: Default::default(),
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
