//! The storage seam: every difference between SQLite and PostgreSQL lives
//! under this folder, and nothing outside it asks which one it is on.
//!
//! - `sqlite/`: one write connection drained by one writer task (group
//!   commit of submits, results and standing claims, run on the
//!   connection's handle through rusqlite), WAL checkpoints beside it, and
//!   point reads on rusqlite connections.
//! - `postgres/`: a shared pool, a group-commit writer each for submits and
//!   for sessions, `FOR UPDATE SKIP LOCKED` claims, point reads on
//!   connections of their own, `LISTEN/NOTIFY` wake-ups between cores, and
//!   planner statistics kept current while the hot tables grow.
//! - `entities/`: one sea-orm entity per table; `claim`: the dispatch claim
//!   (`heads`: which requests it reads);
//!   `plans`: the SQL fragments that keep PostgreSQL's plans to lookups by
//!   key whatever its statistics say.
//!
//! The rest of the core sees a [`Store`]: its connections for the
//! statements both back ends share, and the capabilities that differ
//! ([`Store::sole_writer`], [`Store::point_read`], [`Store::postgres_point_reads`],
//! [`publish_work`], …).

pub(crate) mod accounts;
pub(crate) mod batches;
pub(crate) mod cancel;
pub mod chats;
pub mod claim;
mod config;
pub(crate) mod deliveries;
pub mod entities;
pub(crate) mod heads;
pub(crate) mod idempotency;
pub(crate) mod leases;
pub(crate) mod outbox;
pub(crate) mod outcomes;
mod plans;
mod postgres;
pub(crate) mod requests;
pub mod retention;
pub(crate) mod sessions;
mod sqlite;
pub(crate) mod submits;

use std::{path::PathBuf, sync::Arc};

use chatrelay_migrations::{Migrator, MigratorTrait};
pub use config::{DatabaseConfig, SqliteSynchronous};
pub use postgres::publish_work;
use sea_orm::{DatabaseConnection, DbErr};
pub use sqlite::point_reads::{PointReadError, PointReads};

use std::sync::atomic::AtomicUsize;

use uuid::Uuid;

use crate::{
    error::{CoreError, CoreResult},
    model::AccountId,
    results::{Claim, Claimed},
    Core,
};

#[derive(Clone, Debug)]
pub struct Store {
    /// For queries that only read.
    pub read: DatabaseConnection,
    /// For every transaction that writes.
    pub write: DatabaseConnection,
    /// What only one back end has.
    parts: Parts,
}

/// The back end's own parts.
#[derive(Clone, Debug)]
enum Parts {
    Sqlite(sqlite::Parts),
    Postgres(postgres::Parts),
}

impl Store {
    /// Connects to the configured database and applies pending migrations.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, DbErr> {
        let store = Self::connect_without_migrating(config).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn connect_without_migrating(config: &DatabaseConfig) -> Result<Self, DbErr> {
        let url = config.database_url.as_str();
        if url.starts_with("sqlite:") {
            let (read, write, parts) = sqlite::connect(config).await?;
            Ok(Self {
                read,
                write,
                parts: Parts::Sqlite(parts),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let (conn, parts) = postgres::connect(config).await?;
            Ok(Self {
                read: conn.clone(),
                write: conn,
                parts: Parts::Postgres(parts),
            })
        } else {
            Err(DbErr::Custom(
                "DATABASE_URL must start with sqlite: or postgres:".into(),
            ))
        }
    }

    /// Starts the back end's background tasks: its writers, and SQLite's
    /// checkpoints or PostgreSQL's listener for other cores' events. On
    /// PostgreSQL, returns once this core hears the others (see
    /// `postgres::start`).
    pub(crate) async fn start(core: &Arc<Core>) {
        match &core.store.parts {
            Parts::Sqlite(_) => sqlite::start(core),
            Parts::Postgres(parts) => postgres::start(core, parts).await,
        }
    }

    /// This core is the only writer of the database (an SQLite file), so
    /// leases found at start-up are orphans, and the core can keep counts
    /// of its own rather than ask the database.
    pub fn sole_writer(&self) -> bool {
        matches!(self.parts, Parts::Sqlite(_))
    }

    /// The database file, where the store is one (SQLite).
    pub fn file(&self) -> Option<PathBuf> {
        match &self.parts {
            Parts::Sqlite(parts) => parts.file.clone(),
            Parts::Postgres(_) => None,
        }
    }

    /// The point reads, where the store has them (SQLite files).
    pub fn point_reads(&self) -> Option<Arc<PointReads>> {
        match &self.parts {
            Parts::Sqlite(parts) => parts.point_reads.clone(),
            Parts::Postgres(_) => None,
        }
    }

    /// Point reads (SQLite files): `read` on them, or `None` where there are
    /// none or the read failed (logged), and the caller then asks sea-orm.
    pub fn point_read<T>(
        &self,
        read: impl FnOnce(&PointReads) -> Result<T, PointReadError>,
    ) -> Option<T> {
        let Parts::Sqlite(parts) = &self.parts else {
            return None;
        };
        match read(parts.point_reads.as_deref()?) {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::debug!(error = %e, "point read failed; asking sea-orm");
                None
            }
        }
    }

    /// PostgreSQL's point reads, where the store has them: lookups by key
    /// on connections kept off the pool. Their callers fall back to sea-orm
    /// when one fails.
    pub(crate) fn postgres_point_reads(&self) -> Option<&postgres::PointReads> {
        match &self.parts {
            Parts::Postgres(parts) => Some(&parts.point_reads),
            Parts::Sqlite(_) => None,
        }
    }

    /// PostgreSQL's claimer, where the store has one.
    pub(crate) fn postgres_claims(&self) -> Option<&Arc<postgres::claims::Claims>> {
        match &self.parts {
            Parts::Postgres(parts) => Some(&parts.claims),
            Parts::Sqlite(_) => None,
        }
    }

    /// Leases up to `room` of the account's claimable requests to
    /// `session`, oldest first; the answer comes through the returned
    /// [`Claimed`], and only with requests: a claim that finds nothing
    /// stands until something gives the account work, then runs again. A
    /// sole writer's claim goes to its writer, and stands there. Where
    /// cores share the database the claim goes to this core's claimer,
    /// which runs it at once or, if a claim of the account is running, with
    /// the others that came meanwhile; it stands in the claimer, where a
    /// submit batch may lease its new requests to it (see
    /// `postgres::claims`).
    pub(crate) async fn claim(
        core: &Core,
        account: AccountId,
        session: Uuid,
        room: Arc<AtomicUsize>,
    ) -> CoreResult<Claimed> {
        match &core.store.parts {
            Parts::Sqlite(_) => core.results.claim(account, session, room).await,
            Parts::Postgres(parts) => {
                let (claim, claimed) = Claim::new(account, session, room);
                if parts.claims.send(claim) {
                    Ok(claimed)
                } else {
                    Err(CoreError::Unavailable("the core is stopping".into()))
                }
            }
        }
    }

    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.write, None).await
    }

    pub async fn close(self) {
        let _ = self.read.close().await;
        match self.parts {
            Parts::Sqlite(_) => {
                let _ = self.write.close().await;
            }
            Parts::Postgres(parts) => parts.point_reads.close().await,
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod statement_tests {
    use sea_orm::{
        sea_query::{LockBehavior, LockType},
        DatabaseBackend, EntityTrait, QuerySelect, QueryTrait,
    };

    use super::entities::webhook_delivery;

    /// What the claims of outbox rows and the lease reaper rely on.
    fn locked_select(backend: DatabaseBackend) -> String {
        let query = webhook_delivery::Entity::find()
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .into_query();
        backend.build(&query).sql
    }

    #[test]
    fn postgres_claims_skip_rows_other_cores_are_claiming() {
        let sql = locked_select(DatabaseBackend::Postgres);
        assert!(sql.ends_with("FOR UPDATE SKIP LOCKED"), "{sql}");
    }

    #[test]
    fn sqlite_claims_without_a_lock_clause() {
        let sql = locked_select(DatabaseBackend::Sqlite);
        assert!(!sql.contains("FOR UPDATE"), "{sql}");
    }
}
