//! A submit batch's rows in one statement: the new chats, the requests
//! (each in its named chat or in the new chat made for it, some already
//! leased: see `claims::lease_new`), and the wake-up and the requests'
//! status changes for the other cores. A batch
//! without idempotency keys or named chats needs nothing else, so it
//! commits on its own: one round trip instead of five (BEGIN, two inserts,
//! the notification, COMMIT).

use std::{collections::BTreeSet, sync::LazyLock};

use chrono::{DateTime, Utc};
use sea_orm::{ActiveEnum, ConnectionTrait, DatabaseBackend, IdenStatic, Iterable, Statement};

use super::notify::{submitted_notices, work_notices};
use crate::{error::CoreResult, model::AccountId, store::entities::message_request, Core};

/// Inserts `requests`, each with its chat's id, or `None` for one that gets
/// a new, unnamed chat created `at`; the new chats' ids come back in the
/// order of their requests. The accounts' sessions on every core are woken,
/// and the other cores' live status hears of the requests.
pub(crate) async fn insert(
    core: &Core,
    conn: &impl ConnectionTrait,
    requests: &[(message_request::Model, Option<i64>)],
    at: DateTime<Utc>,
) -> CoreResult<Vec<i64>> {
    let mut unnamed = Vec::new();
    let rows: Vec<serde_json::Value> = requests
        .iter()
        .map(|(r, chat)| {
            if chat.is_none() {
                unnamed.push(r.account_id);
            }
            serde_json::json!({
                "id": r.id,
                "account_id": r.account_id,
                "chat_id": chat,
                // The new chat's place among the batch's new chats, from 1.
                "new_chat": chat.is_none().then_some(unnamed.len()),
                "message": r.message,
                "response_type": r.response_type.to_value(),
                "thinking_time": r.thinking_time.to_value(),
                "status": r.status.to_value(),
                "response": r.response,
                "error_message": r.error_message,
                "queued_at": r.queued_at,
                "started_at": r.started_at,
                "completed_at": r.completed_at,
                "attempts": r.attempts,
                "lease_session": r.lease_session,
                "lease_node": r.lease_node,
                "lease_expires_at": r.lease_expires_at,
            })
        })
        .collect();
    // Requests leased as they are stored are no other core's work.
    let accounts: BTreeSet<i64> = requests
        .iter()
        .filter(|(r, _)| r.lease_session.is_none())
        .map(|(r, _)| r.account_id)
        .collect();
    let (channel, mut notices) = work_notices(core, accounts.into_iter().map(AccountId));
    notices.extend(submitted_notices(
        core,
        requests
            .iter()
            .map(|(r, _)| (AccountId(r.account_id), r.id)),
    ));
    let statement = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        SQL.as_str(),
        [
            unnamed.into(),
            at.into(),
            serde_json::Value::Array(rows).to_string().into(),
            channel.into(),
            notices.into(),
        ],
    );
    let mut ids = Vec::with_capacity(requests.len());
    for row in conn.query_all(statement).await? {
        // The one row of a batch without new chats has no id.
        if let Some(id) = row.try_get::<Option<i64>>("", "id")? {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The statement, the same text for every batch. New chats get their ids
/// in the order they are inserted (`ORDER BY n`), so the n-th smallest id
/// is the n-th new chat. The notifications are counted in the one row the
/// result always has, which makes PostgreSQL send them (a `WITH` query
/// nobody reads is not run; one that writes always is).
static SQL: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<String> = message_request::Column::iter()
        .map(|c| c.as_str().to_string())
        .collect();
    let values = columns
        .iter()
        .map(|c| match c.as_str() {
            "chat_id" => "COALESCE(r.chat_id, c.id)".to_string(),
            c => format!("r.{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let columns = columns.join(", ");
    format!(
        "WITH new_chats AS ( \
             INSERT INTO chats (account_id, created_at, updated_at) \
             SELECT a, $2, $2 FROM unnest($1::bigint[]) WITH ORDINALITY AS u(a, n) ORDER BY n \
             RETURNING id \
         ), numbered AS ( \
             SELECT id, row_number() OVER (ORDER BY id) AS n FROM new_chats \
         ), stored AS ( \
             INSERT INTO message_requests ({columns}) \
             SELECT {values} \
             FROM json_array_elements($3::json) AS e(j) \
             CROSS JOIN LATERAL json_populate_record(NULL::message_requests, e.j) AS r \
             LEFT JOIN numbered AS c ON c.n = (e.j ->> 'new_chat')::bigint \
         ), woken AS ( \
             SELECT count(*) AS sent FROM (SELECT pg_notify($4, p) FROM unnest($5::text[]) AS p) AS s \
         ) \
         SELECT c.id FROM woken LEFT JOIN numbered AS c ON true ORDER BY c.id"
    )
});
