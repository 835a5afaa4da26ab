//! Lookups by primary key on SQLite, without a thread hand-off.
//!
//! sqlx runs every SQLite connection on a thread of its own and passes each
//! statement and each row across channels. For a lookup of one row by its
//! key, those hand-offs cost several times the lookup itself (futex wake-ups
//! and context switches, on either side). Here a few read-only rusqlite
//! connections to the same file wait in a lock-free queue, and the lookup
//! runs on the calling task: in WAL mode a reader never waits for the
//! writer, and the statement touches a handful of cached pages.
//!
//! Only reads of one row through a unique index belong here: the GET of a
//! request and the account of an API key. Anything
//! that scans, and every write, goes through sea-orm. If a lookup here fails
//! for any reason, the caller falls back to the sea-orm query, so this is
//! purely a fast path.

use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, Utc};
use crossbeam_queue::ArrayQueue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use sea_orm::ActiveEnum;
use uuid::Uuid;

use crate::{
    model::RequestView,
    store::{entities::message_request, requests::REQUEST_BY_ID},
};

/// Connections kept for reuse: one per thread that reads at once is enough.
const IDLE: usize = 8;

/// A reader waits at most this long for a lock (in WAL mode that only
/// happens while the WAL is being recovered); then the caller falls back.
const BUSY: Duration = Duration::from_millis(20);

pub struct PointReads {
    path: PathBuf,
    idle: ArrayQueue<Connection>,
}

impl std::fmt::Debug for PointReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointReads")
            .field("path", &self.path)
            .finish()
    }
}

/// Why a lookup did not answer; the caller then asks sea-orm instead.
#[derive(Debug, thiserror::Error)]
pub enum PointReadError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("unexpected value in column {0}")]
    Column(&'static str),
}

type Result<T> = std::result::Result<T, PointReadError>;

impl PointReads {
    /// Point reads on the SQLite file at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: ArrayQueue::new(IDLE),
        }
    }

    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY)?;
        Ok(conn)
    }

    /// Runs `read` on an idle connection (opening one if none is idle) and
    /// puts the connection back.
    fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.idle.pop() {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = read(&conn);
        // A full queue means more readers than needed: let this one close.
        let _ = self.idle.push(conn);
        result
    }

    /// The request `id` with its chat's ChatGPT id, if it belongs to the
    /// account of the API key whose SHA-256 is `key_hash`.
    pub fn request(&self, id: Uuid, key_hash: &str) -> Result<Option<RequestView>> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(REQUEST_BY_ID)?;
            let found = statement
                .query_row(rusqlite::params![id.as_bytes(), key_hash], |row| {
                    Ok(request_view(row))
                })
                .optional()?;
            found.transpose()
        })
    }

    /// The account of the API key whose SHA-256 is `key_hash`.
    pub fn account_of_key(&self, key_hash: &str) -> Result<Option<i64>> {
        self.with(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT account_id FROM api_keys WHERE key_hash = ?1")?;
            Ok(statement
                .query_row([key_hash], |row| row.get(0))
                .optional()?)
        })
    }
}

fn request_view(row: &Row<'_>) -> Result<RequestView> {
    let request = message_request::Model {
        id: uuid(row, 0, "id")?.ok_or(PointReadError::Column("id"))?,
        account_id: row.get(1)?,
        chat_id: row.get(2)?,
        message: row.get(3)?,
        response_type: word(row, 4, "response_type")?,
        thinking_time: word(row, 5, "thinking_time")?,
        status: word(row, 6, "status")?,
        response: row.get(7)?,
        error_message: row.get(8)?,
        queued_at: timestamp(row, 9, "queued_at")?.ok_or(PointReadError::Column("queued_at"))?,
        started_at: timestamp(row, 10, "started_at")?,
        completed_at: timestamp(row, 11, "completed_at")?,
        attempts: row.get(12)?,
        lease_session: uuid(row, 13, "lease_session")?,
        lease_node: uuid(row, 14, "lease_node")?,
        lease_expires_at: row.get(15)?,
    };
    Ok(RequestView {
        request: request.into(),
        chat: row.get(16)?,
    })
}

/// One of the domain's words (status, response type, thinking time), read
/// by the same vocabulary sea-orm writes it with.
fn word<T: ActiveEnum<Value = String>>(
    row: &Row<'_>,
    index: usize,
    name: &'static str,
) -> Result<T> {
    let text = row
        .get_ref(index)?
        .as_str()
        .map_err(|_| PointReadError::Column(name))?;
    T::try_from_value(&text.to_string()).map_err(|_| PointReadError::Column(name))
}

/// A UUID as sqlx stores it on SQLite: 16 bytes.
fn uuid(row: &Row<'_>, index: usize, name: &'static str) -> Result<Option<Uuid>> {
    let value = row.get_ref(index)?.as_blob_or_null();
    match value.map_err(|_| PointReadError::Column(name))? {
        None => Ok(None),
        Some(bytes) => Uuid::from_slice(bytes)
            .map(Some)
            .map_err(|_| PointReadError::Column(name)),
    }
}

/// A timestamp as sqlx stores it on SQLite: RFC 3339 text.
fn timestamp(row: &Row<'_>, index: usize, name: &'static str) -> Result<Option<DateTime<Utc>>> {
    let value = row.get_ref(index)?.as_str_or_null();
    match value.map_err(|_| PointReadError::Column(name))? {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| PointReadError::Column(name)),
    }
}
