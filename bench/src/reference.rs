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
//!   the database, through sqlx, allows.

use std::{net::SocketAddr, path::Path, process::Stdio, str::FromStr, time::Duration};

use anyhow::Context;
use axum::{
    extract::{Path as UrlPath, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
    Json, Router,
};
use chrono::{DateTime, Utc};
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

async fn get_request(
    State(lookup): State<Lookup>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Json<RequestBody>, StatusCode> {
    let key = headers
        .get("x-api-key")
        .and_then(|key| key.to_str().ok())
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let id = Uuid::parse_str(&id).map_err(|_| StatusCode::NOT_FOUND)?;
    let key_hash = hex::encode(Sha256::digest(key.as_bytes()));
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

/// Serves `POST /api/chat/submit/` until killed, and with `database_url`
/// (a `postgres:` or `sqlite:` URL) also `GET /api/chat/requests/{id}/`;
/// prints its address first. The pool is sized and set up as chatrelay's
/// is by default (16 connections, no ping before each use).
pub async fn serve(addr: SocketAddr, database_url: Option<&str>) -> anyhow::Result<()> {
    let mut app = Router::new().route("/api/chat/submit/", post(submit));
    if let Some(url) = database_url {
        let lookup = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?.read_only(true);
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
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("reference listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
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
