//! Which requests a claim reads: those that may be their chat's turn.
//!
//! A chat runs one request at a time, oldest first, so of a chat's queued
//! requests only the oldest can be claimed. A request stored while an older
//! request of its chat is open is marked `queued_behind`, and the claim's
//! index (`message_requests_claimable`) leaves it out; when one of a chat's
//! requests finishes, the chat's oldest idle request loses the mark. A
//! claim thus reads one entry per waiting chat, however many requests each
//! has queued. The mark only narrows what a claim reads: the claim still
//! checks that a request is its chat's oldest and that nothing of its chat
//! is in flight, so a mark missing where it belongs never lets two requests
//! of a chat run at once.
//!
//! A mark left where it no longer belongs would hold a chat back, so where
//! it could be: on SQLite every write goes through one connection, one
//! transaction after another, and each sees what the last one did. On
//! PostgreSQL two transactions can miss each other's uncommitted work (a
//! submit into a chat whose last open request is finishing, two requests of
//! a chat finishing at once); [`repair`] clears such marks on the lease
//! keeper's beat.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};
use uuid::Uuid;

use super::{plans, publish_work};
use crate::{
    committed::Committed,
    error::CoreResult,
    model::{AccountId, RequestStatus},
    Core,
};

/// `$1, $2, …` for `n` parameters, for SQLite (PostgreSQL takes an array).
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `column IN (…)` for `values`, and its parameters: on PostgreSQL one
/// array (one statement text whatever their number), on SQLite a list.
fn any_of<T>(backend: DatabaseBackend, column: &str, values: Vec<T>) -> (String, Vec<Value>)
where
    T: Into<Value>,
    Vec<T>: Into<Value>,
{
    match backend {
        DatabaseBackend::Postgres => (format!("{column} = ANY($1)"), vec![values.into()]),
        _ => (
            format!("{column} IN ({})", placeholders(values.len())),
            values.into_iter().map(Into::into).collect(),
        ),
    }
}

/// The request `alias` is queued and marked behind (the condition of
/// PostgreSQL's `message_requests_behind` index).
pub(crate) fn marked(alias: &str) -> String {
    let idle = RequestStatus::Idle.as_str();
    format!("{alias}.queued_behind AND {alias}.status = '{idle}'")
}

/// An open request of the chat of `message_requests` older than it.
fn older_open(backend: DatabaseBackend) -> String {
    let (idle, executing) = (
        RequestStatus::Idle.as_str(),
        RequestStatus::Executing.as_str(),
    );
    format!(
        "EXISTS (SELECT 1 FROM message_requests o \
                 WHERE o.chat_id = message_requests.chat_id \
                   AND o.status IN ('{idle}', '{executing}') \
                   AND o.id < message_requests.id{})",
        plans::per_row(backend)
    )
}

/// The id of the oldest idle request of the chat `chat` (an SQL
/// expression), or NULL: the first entry of the chat's status index at or
/// after (chat, idle), a lookup however many the chat has queued. It is
/// asked for in the index's own order, so that no planner walks the
/// primary key to it instead.
fn oldest_idle(chat: &str) -> String {
    let idle = RequestStatus::Idle.as_str();
    format!(
        "(SELECT f.id FROM (SELECT o.id, o.chat_id, o.status FROM message_requests o \
                           WHERE (o.chat_id, o.status) >= ({chat}, '{idle}') \
                           ORDER BY o.chat_id, o.status, o.id LIMIT 1) AS f \
          WHERE f.chat_id = {chat} AND f.status = '{idle}')"
    )
}

/// Marks the requests `ids`, just stored in chats that may have other
/// requests, behind where an older request of their chat is open (one
/// stored earlier in the same transaction included).
pub(crate) async fn mark_behind(conn: &impl ConnectionTrait, ids: Vec<Uuid>) -> CoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    let (which, values) = any_of(backend, "id", ids);
    let sql = format!(
        "UPDATE message_requests SET queued_behind = TRUE WHERE {which} AND {}",
        older_open(backend)
    );
    conn.execute(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

/// After requests of `chats` finished in this transaction: each chat's
/// oldest idle request is no longer behind. On PostgreSQL the finishing
/// statement names only the chats where it saw a request marked, and a
/// request another transaction holds is passed over rather than waited for
/// (two finishes in one chat would otherwise wait on each other); a mark
/// either leaves behind is what [`repair`] is for.
pub(crate) async fn advance(
    conn: &impl ConnectionTrait,
    chats: impl IntoIterator<Item = i64>,
) -> CoreResult<()> {
    let mut chats: Vec<i64> = chats.into_iter().collect();
    chats.sort_unstable();
    chats.dedup();
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        return advance_chats(conn, chats).await;
    }
    // On SQLite a chat per statement: one SQL text, which stays prepared,
    // where a list's text changes with its length.
    for chat in chats {
        advance_chats(conn, vec![chat]).await?;
    }
    Ok(())
}

async fn advance_chats(conn: &impl ConnectionTrait, chats: Vec<i64>) -> CoreResult<()> {
    if chats.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    let (which, values) = any_of(backend, "b.chat_id", chats);
    let skip_locked = match backend {
        DatabaseBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    // The chats with a request marked behind (one lookup each, which finds
    // nothing where none queued behind: a chat's only request finished),
    // then each one's oldest idle request.
    let sql = format!(
        "UPDATE message_requests SET queued_behind = FALSE \
         WHERE id IN (SELECT r.id FROM message_requests r \
                      WHERE r.queued_behind AND r.id IN ( \
                          SELECT {} \
                          FROM (SELECT DISTINCT b.chat_id FROM message_requests b \
                                WHERE {which} AND {}) AS c){skip_locked})",
        oldest_idle("c.chat_id"),
        marked("b")
    );
    conn.execute(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

/// Clears the marks that no open request of the chat accounts for any more
/// (see the module's note) and says whose: their sessions are to be woken.
/// Only a chat's oldest idle request is looked at, one per chat with
/// requests marked, however many each has queued. Only needed where the
/// store has more than one writer.
pub(crate) async fn repair(core: &Core) -> CoreResult<Committed> {
    let mut committed = Committed::default();
    let conn = &core.store.write;
    let backend = conn.get_database_backend();
    let sql = format!(
        "UPDATE message_requests SET queued_behind = FALSE \
         WHERE id IN (SELECT {} FROM (SELECT DISTINCT b.chat_id FROM message_requests b \
                                      WHERE {}) AS c) \
           AND queued_behind AND NOT {} RETURNING account_id",
        oldest_idle("c.chat_id"),
        marked("b"),
        older_open(backend)
    );
    let rows = conn.query_all(Statement::from_string(backend, sql)).await?;
    metrics::counter!("chatrelay_held_back_requests_released_total").increment(rows.len() as u64);
    for row in rows {
        committed
            .returned
            .insert(AccountId(row.try_get_by_index::<i64>(0)?));
    }
    for account in &committed.returned {
        tracing::info!(
            account = account.0,
            "a chat's next request was held back; released it"
        );
        publish_work(conn, core, *account).await?;
    }
    Ok(committed)
}
