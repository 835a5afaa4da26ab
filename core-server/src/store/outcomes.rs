//! Settling requests in the database: marking them executing, finishing
//! them with an extension's outcome (their chats named and their webhooks
//! enqueued in the same transaction), and why an outcome was refused. The
//! rules of the lifecycle are in [`crate::lifecycle`]; this is its SQL.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    sea_query::{Expr, Func, Query, SimpleExpr},
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait,
    IdenStatic, Iterable, QueryFilter, Set, Statement, Value,
};
use uuid::Uuid;

use super::{
    chats,
    entities::{chat, message_request},
    heads, outbox, plans, postgres,
};
use crate::{
    committed::{Cause, Committed},
    error::{CoreError, CoreResult},
    lifecycle::Outcome,
    model::{now, now_millis, AccountId, MessageRequest, RequestStatus, RequestView},
    Core,
};

/// The account's request, if it is still open; the error names why not.
async fn load_open(
    conn: &impl ConnectionTrait,
    account: AccountId,
    id: Uuid,
) -> CoreResult<message_request::Model> {
    let request = message_request::Entity::find_by_id(id)
        .filter(message_request::Column::AccountId.eq(account.0))
        .one(conn)
        .await?
        .ok_or_else(|| CoreError::not_found(format!("unknown request_id {id}")))?;
    if request.status.is_terminal() {
        return Err(CoreError::FailedPrecondition(format!(
            "request {id} is already {}; a finished request never changes",
            request.status.as_str()
        )));
    }
    Ok(request)
}

/// Marks the request `executing`, leased to `session` on this core.
/// Repeating it is harmless; a finished or unknown request is refused.
pub(crate) async fn mark_executing(
    core: &Core,
    account: AccountId,
    id: Uuid,
    session: Uuid,
) -> CoreResult<Committed> {
    let lease_until = now_millis() + core.lease_ttl_millis();
    let updated = message_request::Entity::update_many()
        .col_expr(
            message_request::Column::Status,
            Expr::value(RequestStatus::Executing),
        )
        .col_expr(message_request::Column::StartedAt, Expr::value(now()))
        .col_expr(message_request::Column::LeaseSession, Expr::value(session))
        .col_expr(
            message_request::Column::LeaseNode,
            Expr::value(core.node_id),
        )
        .col_expr(
            message_request::Column::LeaseExpiresAt,
            Expr::value(lease_until),
        )
        .filter(message_request::Column::Id.eq(id))
        .filter(message_request::Column::AccountId.eq(account.0))
        .filter(message_request::Column::Status.eq(RequestStatus::Idle))
        .exec(&core.store.write)
        .await?;
    let mut committed = Committed::default();
    if updated.rows_affected == 0 {
        // Not idle: fine if it is already executing, an error otherwise.
        load_open(&core.store.read, account, id).await?;
    } else {
        committed.changed(account, id, RequestStatus::Executing, Cause::Started);
    }
    Ok(committed)
}

/// Records the chat's ChatGPT id and title. The common cases — the chat
/// already has that id, or is new and no other chat of the account has it —
/// take one statement; the rest find or create the named chat.
async fn settle_chat(
    txn: &impl ConnectionTrait,
    request: &message_request::Model,
    chatgpt_id: &str,
    title: Option<String>,
) -> CoreResult<i64> {
    let at = now();
    let named_here = chat::Entity::update_many()
        .col_expr(chat::Column::ChatgptId, Expr::value(chatgpt_id))
        .col_expr(
            chat::Column::Title,
            SimpleExpr::from(Func::coalesce([
                Expr::value(title.clone()),
                Expr::col(chat::Column::Title).into(),
            ])),
        )
        .col_expr(chat::Column::UpdatedAt, Expr::value(at))
        .filter(chat::Column::Id.eq(request.chat_id))
        .filter(
            Condition::any()
                .add(chat::Column::ChatgptId.eq(chatgpt_id))
                .add(chat::Column::ChatgptId.is_null()),
        )
        .filter(
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(chat::Entity)
                    .and_where(chat::Column::AccountId.eq(request.account_id))
                    .and_where(chat::Column::ChatgptId.eq(chatgpt_id))
                    .and_where(chat::Column::Id.ne(request.chat_id))
                    .to_owned(),
            )
            .not(),
        )
        .exec(txn)
        .await?;
    if named_here.rows_affected == 1 {
        return Ok(request.chat_id);
    }
    // The extension answered in a conversation the account already has
    // under another chat, or in another one than the one asked for.
    let target = chats::find_or_create(txn, AccountId(request.account_id), chatgpt_id).await?;
    let mut active: chat::ActiveModel = target.clone().into();
    if title.is_some() {
        active.title = Set(title);
    }
    active.updated_at = Set(at);
    active.update(txn).await?;
    message_request::Entity::update_many()
        .col_expr(message_request::Column::ChatId, Expr::value(target.id))
        .filter(message_request::Column::Id.eq(request.id))
        .exec(txn)
        .await?;
    Ok(target.id)
}

/// `WITH v(columns) AS (VALUES …) ` for `rows` of parameters (in
/// `columns`' order), and the parameters in order, numbered from `$1`.
fn values_table(columns: &[&str], rows: Vec<Vec<Value>>) -> (String, Vec<Value>) {
    let mut sql = format!("WITH v({}) AS (VALUES ", columns.join(", "));
    let mut params = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for (j, value) in row.into_iter().enumerate() {
            params.push(value);
            let separator = if j == 0 { "" } else { ", " };
            sql.push_str(&format!("{separator}${}", params.len()));
        }
        sql.push(')');
    }
    sql.push_str(") ");
    (sql, params)
}

/// The guarded update that finishes the requests of the table `v` (columns
/// `v_id`, `v_account`, `v_status`, `v_response`, `v_error`) that are still
/// open, completed at parameter `$completed_at`. The caller may add
/// conditions and its `RETURNING`.
pub(crate) fn finish_sql(completed_at: usize) -> String {
    let open = RequestStatus::OPEN
        .map(|s| format!("'{}'", s.as_str()))
        .join(", ");
    format!(
        "UPDATE message_requests \
         SET status = v.v_status, response = v.v_response, error_message = v.v_error, \
             completed_at = ${completed_at}, lease_session = NULL, lease_node = NULL, \
             lease_expires_at = NULL \
         FROM v \
         WHERE message_requests.id = v.v_id AND message_requests.account_id = v.v_account \
           AND message_requests.status IN ({open})"
    )
}

/// The update that names the chats of the table `names` (columns `chat_id`,
/// `v_name`, `v_title`) where that is the common case: the chat already has
/// that ChatGPT id, or has none and no other chat of the account has it;
/// updated at parameter `$updated_at`. `and` is appended to the conditions
/// on the chat; the caller adds its `RETURNING`.
pub(crate) fn name_sql(
    backend: DatabaseBackend,
    names: &str,
    updated_at: usize,
    and: &str,
) -> String {
    let per_row = plans::per_row(backend);
    format!(
        "UPDATE chats \
         SET chatgpt_id = n.v_name, title = COALESCE(n.v_title, chats.title), \
             updated_at = ${updated_at} \
         FROM {names} AS n \
         WHERE chats.id = n.chat_id{and} \
           AND (chats.chatgpt_id = n.v_name OR chats.chatgpt_id IS NULL) \
           AND NOT EXISTS (SELECT 1 FROM chats o \
                           WHERE o.account_id = chats.account_id AND o.chatgpt_id = n.v_name \
                             AND o.id <> chats.id{per_row})"
    )
}

/// Writes the terminal statuses of `outcomes` (distinct requests) in one
/// guarded statement — of two racing results exactly one wins — and
/// returns the requests it finished; one that is unknown, of another
/// account or already finished is not among them.
async fn finish_all(
    txn: &impl ConnectionTrait,
    outcomes: &[(AccountId, Uuid, &Outcome)],
) -> CoreResult<HashMap<Uuid, message_request::Model>> {
    if outcomes.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = outcomes
        .iter()
        .map(|(account, id, outcome)| {
            let (status, response, error) = match outcome {
                Outcome::Done { response, .. } => (RequestStatus::Done, Some(response), None),
                Outcome::Failed { error } => (RequestStatus::Failed, None, Some(error)),
            };
            vec![
                (*id).into(),
                account.0.into(),
                status.as_str().into(),
                response.cloned().into(),
                error.cloned().into(),
            ]
        })
        .collect();
    let backend = txn.get_database_backend();
    let (values, mut params) = values_table(
        &["v_id", "v_account", "v_status", "v_response", "v_error"],
        rows,
    );
    params.push(now().into());
    let finish = finish_sql(params.len());
    let returning = message_request::Column::iter()
        .map(|c| c.as_str().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("{values}{finish} RETURNING {returning}");
    let finished = message_request::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(backend, sql, params))
        .all(txn)
        .await?;
    Ok(finished.into_iter().map(|r| (r.id, r)).collect())
}

/// Names the chats of `named` (request, ChatGPT id, title) in one
/// statement, where that is the common case: the chat already has that id,
/// or has none and no other chat of the account has it. Returns the chats
/// it named; the rest are left to [`settle_chat`].
async fn name_chats(
    txn: &impl ConnectionTrait,
    named: &[(&message_request::Model, &str, Option<&str>)],
) -> CoreResult<HashSet<i64>> {
    if named.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = named
        .iter()
        .map(|(request, chatgpt_id, title)| {
            vec![
                request.chat_id.into(),
                (*chatgpt_id).into(),
                title.map(str::to_string).into(),
            ]
        })
        .collect();
    let backend = txn.get_database_backend();
    let (values, mut params) = values_table(&["chat_id", "v_name", "v_title"], rows);
    params.push(now().into());
    let name = name_sql(backend, "v", params.len(), "");
    let sql = format!("{values}{name} RETURNING chats.id");
    let rows = txn
        .query_all(Statement::from_sql_and_values(backend, sql, params))
        .await?;
    rows.iter()
        .map(|row| row.try_get_by_index::<i64>(0).map_err(CoreError::from))
        .collect()
}

/// Why the result for `id` was not applied: unknown to the account, or
/// already finished. Only a database failure is an `Err`.
async fn refusal(
    txn: &impl ConnectionTrait,
    account: AccountId,
    id: Uuid,
) -> CoreResult<CoreError> {
    match load_open(txn, account, id).await {
        Err(e @ CoreError::Database(_)) => Err(e),
        Err(refused) => Ok(refused),
        Ok(_) => Ok(CoreError::FailedPrecondition(format!(
            "request {id} is already finished; a finished request never changes"
        ))),
    }
}

/// What the first writes of a result batch did: the requests they
/// finished, by id; the chats they named; the chats of those requests that
/// may have a request queued behind them; the webhook URL of each finished
/// request's account that has one.
#[derive(Default)]
pub(crate) struct Finished {
    pub(crate) requests: HashMap<Uuid, message_request::Model>,
    pub(crate) named: HashSet<i64>,
    pub(crate) waiting: HashSet<i64>,
    pub(crate) urls: HashMap<i64, String>,
}

/// [`Finished`] in three statements (PostgreSQL takes one, see
/// `postgres::outcomes`): one finishes the requests, one names the chats
/// of the answers whose chat and ChatGPT id no other answer of the batch
/// shares (where that is the common case, see [`name_chats`]), one reads
/// the webhook URLs.
async fn finish_apart(
    txn: &impl ConnectionTrait,
    outcomes: &[(AccountId, Uuid, &Outcome)],
) -> CoreResult<Finished> {
    let requests = finish_all(txn, outcomes).await?;
    let mut per_chat: HashMap<i64, usize> = HashMap::new();
    let mut per_name: HashMap<(i64, &str), usize> = HashMap::new();
    let answers: Vec<_> = outcomes
        .iter()
        .filter_map(|(_, id, outcome)| match outcome {
            Outcome::Done {
                chatgpt_id,
                chat_title,
                ..
            } => Some((
                requests.get(id)?,
                chatgpt_id.as_str(),
                chat_title.as_deref(),
            )),
            Outcome::Failed { .. } => None,
        })
        .collect();
    for (request, chatgpt_id, _) in &answers {
        *per_chat.entry(request.chat_id).or_default() += 1;
        *per_name
            .entry((request.account_id, chatgpt_id))
            .or_default() += 1;
    }
    let unique: Vec<_> = answers
        .into_iter()
        .filter(|(request, chatgpt_id, _)| {
            per_chat[&request.chat_id] == 1 && per_name[&(request.account_id, *chatgpt_id)] == 1
        })
        .collect();
    let named = name_chats(txn, &unique).await?;
    let urls = outbox::webhook_urls(txn, requests.values().map(|r| r.account_id)).await?;
    // Finding out would take a statement as well: every chat is advanced.
    let waiting = requests.values().map(|r| r.chat_id).collect();
    Ok(Finished {
        requests,
        named,
        waiting,
        urls,
    })
}

/// Applies outcomes inside the caller's transaction with a handful of
/// statements however many there are: they finish them all, name their
/// chats and read their accounts' webhook URLs (see [`Finished`]), and
/// enqueue the webhooks. Each outcome gets its own answer, in order: the
/// finished request, or why it was refused (unknown request, already
/// finished — a refused outcome wrote nothing, so the caller may go on with
/// the transaction). Only a database failure fails them all. After the
/// commit the caller passes the finished requests to [`committed`].
pub(crate) async fn apply_all_in(
    core: &Core,
    txn: &impl ConnectionTrait,
    outcomes: &[(AccountId, Uuid, &Outcome)],
) -> CoreResult<Applied> {
    // A request named twice: its first outcome counts, the later ones find
    // it finished.
    let mut seen = HashSet::new();
    let first: Vec<_> = outcomes
        .iter()
        .filter(|(_, id, _)| seen.insert(*id))
        .copied()
        .collect();
    let Finished {
        mut requests,
        named,
        waiting,
        urls,
    } = if txn.get_database_backend() == DatabaseBackend::Postgres {
        postgres::outcomes::finish(core, txn, &first).await?
    } else {
        finish_apart(txn, &first).await?
    };
    // Their chats' next requests are no longer behind them.
    heads::advance(txn, waiting).await?;
    let mut applied = Vec::with_capacity(outcomes.len());
    for (account, id, outcome) in outcomes {
        let Some(mut request) = requests.remove(id) else {
            applied.push(Err(refusal(txn, *account, *id).await?));
            continue;
        };
        // The chats the first statements could not name, one by one.
        if let Outcome::Done {
            chatgpt_id,
            chat_title,
            ..
        } = outcome
        {
            if !named.contains(&request.chat_id) {
                request.chat_id =
                    settle_chat(txn, &request, chatgpt_id, chat_title.clone()).await?;
            }
        }
        applied.push(Ok(MessageRequest::from(request)));
    }
    let finished: Vec<&MessageRequest> = applied.iter().filter_map(|r| r.as_ref().ok()).collect();
    outbox::enqueue_to(txn, &finished, &urls).await?;
    let webhooks = finished.iter().any(|r| urls.contains_key(&r.account_id));
    Ok(Applied {
        answers: applied,
        webhooks,
    })
}

/// What [`apply_all_in`] wrote.
pub(crate) struct Applied {
    /// Each outcome's answer, in order.
    pub(crate) answers: Vec<CoreResult<MessageRequest>>,
    /// It enqueued webhook deliveries (an account had a webhook URL): the
    /// worker has something to send.
    pub(crate) webhooks: bool,
}

/// The request as [`apply_all_in`] left it finished by `outcome`, as a
/// `GetRequest` returns it, where that is known without reading it back: an
/// answer leaves the request in the chat that its ChatGPT id names. (A
/// failure leaves the chat as it was, which the request does not carry.)
pub(crate) fn view_after(request: &MessageRequest, outcome: &Outcome) -> Option<RequestView> {
    match outcome {
        Outcome::Done { chatgpt_id, .. } => Some(RequestView {
            request: request.clone(),
            chat: Some(chatgpt_id.clone()),
        }),
        Outcome::Failed { .. } => None,
    }
}

/// [`apply_all_in`] for one outcome.
pub(crate) async fn apply_in(
    core: &Core,
    txn: &impl ConnectionTrait,
    account: AccountId,
    id: Uuid,
    outcome: &Outcome,
) -> CoreResult<MessageRequest> {
    apply_all_in(core, txn, &[(account, id, outcome)])
        .await?
        .answers
        .pop()
        .unwrap_or_else(|| {
            Err(CoreError::Unavailable(
                "the outcome was not answered".into(),
            ))
        })
}
