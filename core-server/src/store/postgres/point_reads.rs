//! Lookups by key on PostgreSQL, on connections of their own.
//!
//! sqlx's pool pings every connection it takes back (sqlx 0.8,
//! `PoolConnection::return_to_pool`), whatever the pool's options: a second
//! round trip after each one-statement query, which costs the database as
//! much CPU as the lookup itself. A GET, or the key check of a submit batch,
//! is one statement, so here a few connections wait in a queue instead: a
//! lookup takes one, runs its statement (prepared once per connection: the
//! SQL text never varies) and puts it back. The ping is there to keep
//! connections left in an unknown state out of the pool; here a lookup that
//! fails or is dropped midway closes its connection instead of putting it
//! back. Any failure makes the caller ask sea-orm, as with SQLite's point
//! reads, so this is purely a fast path.

use std::collections::HashMap;

use crossbeam_queue::ArrayQueue;
use sea_orm::{DbErr, FromQueryResult, QueryResult};
use sqlx::{
    postgres::{PgConnectOptions, PgConnection},
    Connection,
};
use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use crate::{
    model::RequestView,
    store::{entities::message_request, requests::REQUEST_BY_ID},
};

/// Connections, at most; more lookups at once wait for one. Each is a
/// server process, so they are few; a lookup holds one for one round trip.
const CONNECTIONS: usize = 8;

/// Why a lookup did not answer; the caller then asks sea-orm instead.
#[derive(Debug, thiserror::Error)]
pub enum PointReadError {
    #[error(transparent)]
    Postgres(#[from] sqlx::Error),
    #[error(transparent)]
    Decode(#[from] DbErr),
}

type Result<T> = std::result::Result<T, PointReadError>;

pub struct PointReads {
    options: PgConnectOptions,
    idle: ArrayQueue<PgConnection>,
    /// One per connection that may be open.
    permits: Semaphore,
}

impl std::fmt::Debug for PointReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointReads")
            .field("idle", &self.idle.len())
            .finish()
    }
}

/// A connection taken from the queue. Dropped without [`Lent::give_back`]
/// (a failed or abandoned lookup), it closes.
struct Lent<'a> {
    conn: PgConnection,
    reads: &'a PointReads,
    _permit: SemaphorePermit<'a>,
}

impl Lent<'_> {
    fn give_back(self) {
        // Never full: there are no more connections than places.
        let _ = self.reads.idle.push(self.conn);
    }
}

impl PointReads {
    /// Point reads on the database of `options`; connections open as they
    /// are first needed.
    pub fn new(options: PgConnectOptions) -> Self {
        Self {
            options,
            idle: ArrayQueue::new(CONNECTIONS),
            permits: Semaphore::new(CONNECTIONS),
        }
    }

    async fn lend(&self) -> Result<Lent<'_>> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let conn = match self.idle.pop() {
            Some(conn) => conn,
            None => PgConnection::connect_with(&self.options).await?,
        };
        Ok(Lent {
            conn,
            reads: self,
            _permit: permit,
        })
    }

    /// Closes the idle connections.
    pub async fn close(&self) {
        while let Some(conn) = self.idle.pop() {
            let _ = conn.close().await;
        }
    }

    /// The request `id` with its chat's ChatGPT id, if it belongs to the
    /// account of the API key whose SHA-256 is `key_hash`.
    pub async fn request(&self, id: Uuid, key_hash: &str) -> Result<Option<RequestView>> {
        let mut lent = self.lend().await?;
        let row = sqlx::query(REQUEST_BY_ID)
            .bind(id)
            .bind(key_hash)
            .fetch_optional(&mut lent.conn)
            .await?;
        lent.give_back();
        let Some(row) = row else {
            return Ok(None);
        };
        let row = QueryResult::from(row);
        let request = message_request::Model::from_query_result(&row, "")?;
        Ok(Some(RequestView {
            request: request.into(),
            chat: row.try_get("", "chatgpt_id")?,
        }))
    }

    /// The accounts of the API keys whose SHA-256 are `hashes`; a hash of no
    /// key is absent from the answer.
    pub async fn accounts_of_keys(&self, hashes: &[&str]) -> Result<HashMap<String, i64>> {
        let mut lent = self.lend().await?;
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT key_hash, account_id FROM api_keys WHERE key_hash = ANY($1)")
                .bind(hashes)
                .fetch_all(&mut lent.conn)
                .await?;
        lent.give_back();
        Ok(rows.into_iter().collect())
    }
}
