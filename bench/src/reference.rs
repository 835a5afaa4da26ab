//! The references chatrelay is measured against, served by a process of
//! their own (`chatrelay-bench reference-server`) so they do not share a
//! runtime with the load generator:
//!
//! - the physical reference: a bare axum handler that parses the submit
//!   JSON body and returns it, with no database and no gRPC hop, driven by
//!   the same wrk script and settings as chatrelay's REST submit;
//! - the database reference (`ref-db`): a bare axum handler that does what
//!   chatrelay's `GET /api/chat/requests/{id}/` asks of the database, with
//!   a plain sqlx pool on chatrelay's database (SQLite file or PostgreSQL),
//!   driven like chatrelay's GET. It tells how close that GET is to what
//!   the database, through sqlx, allows;
//! - on SQLite, the read-path reference (`ref-rusqlite`): the same lookup
//!   the way chatrelay's own GET reads it, on a few read-only rusqlite
//!   connections kept in a lock-free queue, run on the calling task with a
//!   cached statement. It tells what this VM allows a GET that reads SQLite
//!   at all, with nothing of chatrelay's around it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use axum::{
    extract::{Path as UrlPath, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
    Json, Router,
};
use chrono::{DateTime, Utc};
use crossbeam_queue::ArrayQueue;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
    PgPool, SqlitePool,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use uuid::Uuid;

/// api-spec.md's submit body.
#[derive(Deserialize, Serialize)]
struct SubmitBody {
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thinking_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chat_id: Option<String>,
}

async fn submit(Json(body): Json<SubmitBody>) -> (StatusCode, Json<SubmitBody>) {
    (StatusCode::CREATED, Json(body))
}

/// The lookup of chatrelay's GET: the request and its chat's ChatGPT id,
/// by id, if the request is of the account of the key with this SHA-256
/// (one query through the primary key and the key-hash index).
const REQUEST_BY_ID: &str = "\
    SELECT r.id, r.message, r.response_type, r.thinking_time, r.status, r.response, \
           r.error_message, c.chatgpt_id AS chat, r.queued_at, r.started_at, r.completed_at \
    FROM message_requests r LEFT JOIN chats c ON c.id = r.chat_id \
    WHERE r.id = $1 \
      AND r.account_id IN (SELECT account_id FROM api_keys WHERE key_hash = $2)";

/// The fields of chatrelay's answer to a GET, as the lookup reads them.
#[derive(Serialize, sqlx::FromRow)]
struct RequestBody {
    id: Uuid,
    message: String,
    response_type: String,
    thinking_time: String,
    status: String,
    response: Option<String>,
    error_message: Option<String>,
    chat: Option<String>,
    queued_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

/// The database the lookup runs on.
#[derive(Clone)]
enum Lookup {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The request id and the SHA-256 of the API key a GET asks with, as
/// chatrelay reads them.
fn asked(id: &str, headers: &HeaderMap) -> Result<(Uuid, String), StatusCode> {
    let key = headers
        .get("x-api-key")
        .and_then(|key| key.to_str().ok())
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let id = Uuid::parse_str(id).map_err(|_| StatusCode::NOT_FOUND)?;
    Ok((id, hex::encode(Sha256::digest(key.as_bytes()))))
}

async fn get_request(
    State(lookup): State<Lookup>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Json<RequestBody>, StatusCode> {
    let (id, key_hash) = asked(&id, &headers)?;
    let row: Option<RequestBody> = match &lookup {
        Lookup::Postgres(pool) => {
            let query = sqlx::query_as(REQUEST_BY_ID).bind(id).bind(&key_hash);
            query.fetch_optional(pool).await
        }
        Lookup::Sqlite(pool) => {
            let query = sqlx::query_as(REQUEST_BY_ID).bind(id).bind(&key_hash);
            query.fetch_optional(pool).await
        }
    }
    .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    row.map(Json).ok_or(StatusCode::NOT_FOUND)
}

/// Where the rusqlite lookup serves: the GET's path under this prefix.
pub const RUSQLITE_PREFIX: &str = "/rusqlite";

/// Read-only connections to the SQLite file, reused as chatrelay's point
/// reads reuse theirs.
struct Readers {
    path: PathBuf,
    idle: ArrayQueue<rusqlite::Connection>,
}

impl Readers {
    fn lookup(&self, id: Uuid, key_hash: &str) -> rusqlite::Result<Option<RequestBody>> {
        let conn = match self.idle.pop() {
            Some(conn) => conn,
            None => rusqlite::Connection::open_with_flags(
                &self.path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
        };
        let found = conn
            .prepare_cached(REQUEST_BY_ID)?
            .query_row(rusqlite::params![id.as_bytes(), key_hash], |row| {
                Ok(RequestBody {
                    id: Uuid::from_slice(row.get_ref(0)?.as_blob()?)
                        .map_err(|e| conversion(0, e))?,
                    message: row.get(1)?,
                    response_type: row.get(2)?,
                    thinking_time: row.get(3)?,
                    status: row.get(4)?,
                    response: row.get(5)?,
                    error_message: row.get(6)?,
                    chat: row.get(7)?,
                    queued_at: timestamp(row, 8)?.ok_or(rusqlite::Error::InvalidColumnIndex(8))?,
                    started_at: timestamp(row, 9)?,
                    completed_at: timestamp(row, 10)?,
                })
            })
            .optional();
        let _ = self.idle.push(conn);
        found
    }
}

fn conversion(column: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

/// A timestamp as sqlx stores it on SQLite: RFC 3339 text.
fn timestamp(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get_ref(column)?
        .as_str_or_null()?
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| conversion(column, e))
        })
        .transpose()
}

async fn get_request_rusqlite(
    State(readers): State<Arc<Readers>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Json<RequestBody>, StatusCode> {
    let (id, key_hash) = asked(&id, &headers)?;
    readers
        .lookup(id, &key_hash)
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
        .map(Json)
        .ok_or(StatusCode::NOT_FOUND)
}

/// Serves `POST /api/chat/submit/` until killed, and with `database_url`
/// (a `postgres:` or `sqlite:` URL) also `GET /api/chat/requests/{id}/`,
/// and on SQLite the same under [`RUSQLITE_PREFIX`] through rusqlite;
/// prints its address first. The pool is sized and set up as chatrelay's
/// is by default (16 connections, no ping before each use).
pub async fn serve(addr: SocketAddr, database_url: Option<&str>) -> anyhow::Result<()> {
    let app = app(database_url).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("reference listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The reference server's routes (see [`serve`]).
async fn app(database_url: Option<&str>) -> anyhow::Result<Router> {
    let mut app = Router::new().route("/api/chat/submit/", post(submit));
    if let Some(url) = database_url {
        let lookup = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?.read_only(true);
            let readers = Readers {
                path: options.get_filename().to_path_buf(),
                idle: ArrayQueue::new(16),
            };
            app = app.merge(
                Router::new()
                    .route(
                        &format!("{RUSQLITE_PREFIX}/api/chat/requests/{{id}}/"),
                        get(get_request_rusqlite),
                    )
                    .with_state(Arc::new(readers)),
            );
            SqlitePoolOptions::new()
                .max_connections(16)
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map(Lookup::Sqlite)
        } else {
            PgPoolOptions::new()
                .max_connections(16)
                .test_before_acquire(false)
                .connect(url)
                .await
                .map(Lookup::Postgres)
        }
        .with_context(|| format!("cannot connect to {url}"))?;
        app = app.merge(
            Router::new()
                .route("/api/chat/requests/{id}/", get(get_request))
                .with_state(lookup),
        );
    }
    Ok(app)
}

/// The reference server process.
pub struct ReferenceServer {
    child: Child,
    pub addr: SocketAddr,
}

impl ReferenceServer {
    /// Starts `<this binary> reference-server` on an ephemeral port, with
    /// the database reference if given a database URL.
    pub async fn start(bench_binary: &Path, database_url: Option<&str>) -> anyhow::Result<Self> {
        let mut command = Command::new(bench_binary);
        command.arg("reference-server");
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("reference server did not start")??
            .context("reference server exited")?;
        let addr = line
            .rsplit("http://")
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("unexpected line from the reference server: {line:?}"))?;
        Ok(Self { child, addr })
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use chatrelay_migrations::{Migrator, MigratorTrait};
    use chrono::TimeZone;

    use super::*;

    /// One account with the key "key-1", and one answered request in a named
    /// chat, stored with sqlx's encodings as chatrelay stores them.
    async fn database(url: &str) -> Uuid {
        let conn = sea_orm::Database::connect(url).await.expect("connect");
        Migrator::up(&conn, None).await.expect("migrate");
        let pool = conn.get_sqlite_connection_pool();
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 22, 47, 32).unwrap()
            + chrono::Duration::microseconds(707_700);
        let id = Uuid::now_v7();
        let statements = [
            sqlx::query("INSERT INTO accounts (id, name, webhook_secret, created_at) VALUES (1, 'a', 's', ?)")
                .bind(at),
            sqlx::query("INSERT INTO api_keys (account_id, key_hash, key_prefix, created_at) VALUES (1, ?, 'key', ?)")
                .bind(hex::encode(Sha256::digest(b"key-1")))
                .bind(at),
            sqlx::query("INSERT INTO chats (id, account_id, chatgpt_id, created_at, updated_at) VALUES (7, 1, 'c-7', ?, ?)")
                .bind(at)
                .bind(at),
            sqlx::query(
                "INSERT INTO message_requests (id, account_id, chat_id, message, response_type, \
                 thinking_time, status, response, queued_at, started_at, completed_at) \
                 VALUES (?, 1, 7, 'hi \"there\"', 'auto', 'standard', 'completed', 'hello', ?, ?, ?)",
            )
            .bind(id)
            .bind(at)
            .bind(at + chrono::Duration::seconds(1))
            .bind(at + chrono::Duration::seconds(2)),
        ];
        for statement in statements {
            statement.execute(pool).await.expect("insert");
        }
        id
    }

    #[tokio::test]
    async fn both_sqlite_references_answer_the_request_alike() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("db").display());
        let id = database(&url).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = app(Some(&url)).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let http = reqwest::Client::new();
        let get = |prefix: &str, key: &str| {
            http.get(format!("http://{addr}{prefix}/api/chat/requests/{id}/"))
                .header("x-api-key", key)
                .send()
        };
        let expected = serde_json::json!({
            "id": id.to_string(),
            "message": "hi \"there\"",
            "response_type": "auto",
            "thinking_time": "standard",
            "status": "completed",
            "response": "hello",
            "error_message": null,
            "chat": "c-7",
            "queued_at": "2026-12-03T22:47:32.707700Z",
            "started_at": "2026-12-03T22:47:33.707700Z",
            "completed_at": "2026-12-03T22:47:34.707700Z",
        });
        for prefix in ["", RUSQLITE_PREFIX] {
            let found = get(prefix, "key-1").await.unwrap();
            assert_eq!(found.status(), 200, "{prefix}");
            let body: serde_json::Value = found.json().await.unwrap();
            assert_eq!(body, expected, "{prefix}");
            let other = get(prefix, "key-2").await.unwrap();
            assert_eq!(other.status(), 404, "{prefix}");
        }
    }
}
