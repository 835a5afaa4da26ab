//! A result batch's writes in one statement: the requests finished, their
//! chats named where that is the common case, the other cores told, and
//! the accounts' webhook URLs read, and which of the chats have a request
//! queued behind (only those need `store::heads::advance`). With `BEGIN`
//! and `COMMIT` that is three round trips instead of six; the chats it could not name and the webhook
//! deliveries follow in the same transaction (see
//! `store::outcomes::apply_all_in`).

use std::sync::LazyLock;

use sea_orm::{ConnectionTrait, DatabaseBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::notify::{finished_notices, finished_payload_sql};
use crate::{
    error::CoreResult,
    lifecycle::Outcome,
    model::{now, AccountId, RequestStatus},
    store::{
        entities::message_request,
        heads,
        outcomes::{finish_sql, name_sql, Finished},
    },
    Core,
};

/// Finishes the open requests among `outcomes` (distinct requests), names
/// the chat of each answer whose chat and ChatGPT id no other answer of the
/// batch shares, if the chat has that id already or none and no other chat
/// of the account has it, and sends the other cores (if any listen) an `f`
/// notification per finished request.
pub(crate) async fn finish(
    core: &Core,
    conn: &impl ConnectionTrait,
    outcomes: &[(AccountId, Uuid, &Outcome)],
) -> CoreResult<Finished> {
    let mut finished = Finished::default();
    if outcomes.is_empty() {
        return Ok(finished);
    }
    let rows: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|(account, id, outcome)| match outcome {
            Outcome::Done {
                response,
                chatgpt_id,
                chat_title,
            } => serde_json::json!({
                "v_id": id,
                "v_account": account.0,
                "v_status": RequestStatus::Done.as_str(),
                "v_response": response,
                "v_name": chatgpt_id,
                "v_title": chat_title,
            }),
            Outcome::Failed { error } => serde_json::json!({
                "v_id": id,
                "v_account": account.0,
                "v_status": RequestStatus::Failed.as_str(),
                "v_error": error,
            }),
        })
        .collect();
    let ids: Vec<Uuid> = outcomes.iter().map(|(_, id, _)| *id).collect();
    let (channel, prefix) = finished_notices(core);
    let statement = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        SQL.as_str(),
        [
            serde_json::Value::Array(rows).to_string().into(),
            now().into(),
            ids.into(),
            channel.into(),
            prefix.into(),
        ],
    );
    for row in conn.query_all(statement).await? {
        // A batch that finished nothing has one row, of nulls.
        if row.try_get::<Option<Uuid>>("", "id")?.is_none() {
            continue;
        }
        let request = message_request::Model::from_query_result(&row, "")?;
        if row.try_get::<bool>("", "chat_named")? {
            finished.named.insert(request.chat_id);
        }
        if row.try_get::<bool>("", "chat_waits")? {
            finished.waiting.insert(request.chat_id);
        }
        if let Some(url) = row.try_get::<Option<String>>("", "webhook_url")? {
            finished.urls.insert(request.account_id, url);
        }
        finished.requests.insert(request.id, request);
    }
    Ok(finished)
}

/// The statement, the same text for every batch (prepared once per
/// connection). `finished` and `named` are the updates SQLite runs apart
/// ([`finish_sql`], [`name_sql`]): of two racing results exactly one finds
/// the request open. The requests are
/// found by key (`= ANY($3)`), and so are the chats (`= ANY(ARRAY(…))`,
/// evaluated once), whatever the planner guesses of `json_to_recordset`'s
/// rows. A `WITH` query that only reads runs only if the result reads it,
/// so the notifications are counted into the one row the result always
/// has. `chat_waits` reads the index of requests marked behind.
static SQL: LazyLock<String> = LazyLock::new(|| {
    let finish = finish_sql(2);
    let name = name_sql(
        DatabaseBackend::Postgres,
        "to_name",
        2,
        " AND chats.id = ANY(ARRAY(SELECT chat_id FROM to_name))",
    );
    let payload = finished_payload_sql(5, "f");
    let marked = heads::marked("b");
    format!(
        "WITH v AS ( \
             SELECT * FROM json_to_recordset($1::json) AS v( \
                 v_id uuid, v_account bigint, v_status text, v_response text, v_error text, \
                 v_name text, v_title text) \
         ), finished AS ( \
             {finish} AND message_requests.id = ANY($3::uuid[]) \
             RETURNING message_requests.*, v.v_name, v.v_title \
         ), to_name AS ( \
             SELECT chat_id, v_name, v_title FROM ( \
                 SELECT chat_id, v_name, v_title, \
                        count(*) OVER (PARTITION BY chat_id) AS per_chat, \
                        count(*) OVER (PARTITION BY account_id, v_name) AS per_name \
                 FROM finished WHERE v_name IS NOT NULL) AS n \
             WHERE per_chat = 1 AND per_name = 1 \
         ), named AS ( \
             {name} RETURNING chats.id \
         ), told AS ( \
             SELECT count(*) AS sent FROM (SELECT pg_notify($4, {payload}) FROM finished f \
                                           WHERE $5::text IS NOT NULL) AS s \
         ) \
         SELECT f.*, f.chat_id IN (SELECT id FROM named) AS chat_named, \
                EXISTS (SELECT 1 FROM message_requests b \
                        WHERE b.chat_id = f.chat_id AND {marked}) AS chat_waits, \
                (SELECT a.webhook_url FROM accounts a WHERE a.id = f.account_id) AS webhook_url \
         FROM told LEFT JOIN finished f ON true"
    )
});
