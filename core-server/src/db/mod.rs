//! Database connections and schema. SQLite gets a single-connection write
//! pool (SQLite has one writer; queueing writers in the pool avoids
//! `SQLITE_BUSY` on lock upgrades) beside a read pool; PostgreSQL shares one
//! pool for both.

pub mod checkpoint;
pub mod entities;
pub mod point_reads;

use std::{path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use chatrelay_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    SqlxSqliteConnector,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::config::DatabaseConfig;

#[derive(Clone, Debug)]
pub struct Db {
    /// For queries that only read.
    pub read: DatabaseConnection,
    /// For every transaction that writes.
    pub write: DatabaseConnection,
    /// SQLite files only: lookups by key without sqlx's thread hand-off.
    pub point_reads: Option<Arc<point_reads::PointReads>>,
    /// The SQLite database file, if that is the back end.
    pub sqlite_file: Option<PathBuf>,
    /// SQLite: held shared by each write cycle and alone by the checkpoint
    /// that starts the WAL over (see [`checkpoint`]), so neither waits in
    /// SQLite's busy handler for the other.
    pub write_gate: Arc<tokio::sync::RwLock<()>>,
}

impl Db {
    /// Connects to the configured database and applies pending migrations.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, DbErr> {
        let db = Self::connect_without_migrating(config).await?;
        db.migrate().await?;
        Ok(db)
    }

    pub async fn connect_without_migrating(config: &DatabaseConfig) -> Result<Self, DbErr> {
        let url = config.database_url.as_str();
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| DbErr::Custom(format!("invalid DATABASE_URL: {e}")))?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
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
            Ok(Self {
                read: SqlxSqliteConnector::from_sqlx_sqlite_pool(read),
                write: SqlxSqliteConnector::from_sqlx_sqlite_pool(write),
                point_reads: file
                    .clone()
                    .map(|file| Arc::new(point_reads::PointReads::new(file))),
                sqlite_file: file,
                write_gate: Default::default(),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut options = ConnectOptions::new(url);
            options
                .max_connections(config.db_max_connections.max(2))
                .acquire_timeout(Duration::from_secs(30))
                .sqlx_logging(false);
            let conn = Database::connect(options).await?;
            Ok(Self {
                read: conn.clone(),
                write: conn,
                point_reads: None,
                sqlite_file: None,
                write_gate: Default::default(),
            })
        } else {
            Err(DbErr::Custom(
                "DATABASE_URL must start with sqlite: or postgres:".into(),
            ))
        }
    }

    /// `read` on SQLite's point reads; `None` on PostgreSQL or if the read
    /// failed (logged), and the caller then asks sea-orm.
    pub fn point_read<T>(
        &self,
        read: impl FnOnce(&point_reads::PointReads) -> Result<T, point_reads::PointReadError>,
    ) -> Option<T> {
        match read(self.point_reads.as_deref()?) {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::debug!(error = %e, "point read failed; asking sea-orm");
                None
            }
        }
    }

    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.write, None).await
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.write.get_database_backend()
    }

    pub async fn close(self) {
        let sqlite = self.backend() == DatabaseBackend::Sqlite;
        let _ = self.read.close().await;
        if sqlite {
            let _ = self.write.close().await;
        }
    }
}

fn sqlx_err(e: sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))
}
