//! A result batch's writes in one statement: the requests finished, their
//! chats named where that is the common case, the other cores told, and
//! the accounts' webhook URLs read. With `BEGIN` and `COMMIT` that is three
//! round trips instead of six; the chats it could not name and the webhook
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
    store::{entities::message_request, outcomes::Finished},
    Core,
};

/// Finishes the open requests among `outcomes` (distinct requests), names
/// the chat of each answer whose chat and ChatGPT id no other answer of the
/// batch shares, if the chat has that id already or none and no other chat
/// of the account has it, and sends the other cores an `f` notification
/// per finished request.
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
        if let Some(url) = row.try_get::<Option<String>>("", "webhook_url")? {
            finished.urls.insert(request.account_id, url);
        }
        finished.requests.insert(request.id, request);
    }
    Ok(finished)
}

/// The statement, the same text for every batch (prepared once per
/// connection). `finished` is guarded as the portable statement is: of two
/// racing results exactly one finds the request open. The requests are
/// found by key (`= ANY($3)`), and so are the chats (`= ANY(ARRAY(…))`,
/// evaluated once), whatever the planner guesses of `json_to_recordset`'s
/// rows. A `WITH` query that only reads runs only if the result reads it,
/// so the notifications are counted into the one row the result always
/// has.
static SQL: LazyLock<String> = LazyLock::new(|| {
    let open = RequestStatus::OPEN
        .map(|s| format!("'{}'", s.as_str()))
        .join(", ");
    let payload = finished_payload_sql(5, "f");
    format!(
        "WITH v AS ( \
             SELECT * FROM json_to_recordset($1::json) AS v( \
                 v_id uuid, v_account bigint, v_status text, v_response text, v_error text, \
                 v_name text, v_title text) \
         ), finished AS ( \
             UPDATE message_requests \
             SET status = v.v_status, response = v.v_response, error_message = v.v_error, \
                 completed_at = $2, lease_session = NULL, lease_node = NULL, \
                 lease_expires_at = NULL \
             FROM v \
             WHERE message_requests.id = v.v_id AND message_requests.account_id = v.v_account \
               AND message_requests.status IN ({open}) AND message_requests.id = ANY($3::uuid[]) \
             RETURNING message_requests.*, v.v_name, v.v_title \
         ), to_name AS ( \
             SELECT chat_id, v_name, v_title FROM ( \
                 SELECT chat_id, v_name, v_title, \
                        count(*) OVER (PARTITION BY chat_id) AS per_chat, \
                        count(*) OVER (PARTITION BY account_id, v_name) AS per_name \
                 FROM finished WHERE v_name IS NOT NULL) AS n \
             WHERE per_chat = 1 AND per_name = 1 \
         ), named AS ( \
             UPDATE chats \
             SET chatgpt_id = n.v_name, title = COALESCE(n.v_title, chats.title), \
                 updated_at = $2 \
             FROM to_name AS n \
             WHERE chats.id = n.chat_id AND chats.id = ANY(ARRAY(SELECT chat_id FROM to_name)) \
               AND (chats.chatgpt_id = n.v_name OR chats.chatgpt_id IS NULL) \
               AND NOT EXISTS (SELECT 1 FROM chats o \
                               WHERE o.account_id = chats.account_id \
                                 AND o.chatgpt_id = n.v_name AND o.id <> chats.id OFFSET 0) \
             RETURNING chats.id \
         ), told AS ( \
             SELECT count(*) AS sent FROM (SELECT pg_notify($4, {payload}) FROM finished f) AS s \
         ) \
         SELECT f.*, f.chat_id IN (SELECT id FROM named) AS chat_named, \
                (SELECT a.webhook_url FROM accounts a WHERE a.id = f.account_id) AS webhook_url \
         FROM told LEFT JOIN finished f ON true"
    )
});
