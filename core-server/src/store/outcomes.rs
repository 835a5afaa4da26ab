//! Settling requests in the database: marking them executing, finishing
//! them with an extension's outcome (their chats named and their webhooks
//! enqueued in the same transaction), and why an outcome was refused. The
//! rules of the lifecycle are in [`crate::lifecycle`]; this is its SQL.

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait,
    FromQueryResult, IdenStatic, Iterable, QueryFilter, Set, Statement, Value,
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
    const NAME: &str = "UPDATE chats \
         SET chatgpt_id = $2, title = COALESCE($3, title), updated_at = $4 \
         WHERE id = $1 AND (chatgpt_id = $2 OR chatgpt_id IS NULL) \
           AND NOT EXISTS (SELECT 1 FROM chats o \
                           WHERE o.account_id = $5 AND o.chatgpt_id = $2 AND o.id <> $1)";
    let at = now();
    let values: [Value; 5] = [
        request.chat_id.into(),
        chatgpt_id.into(),
        title.clone().into(),
        at.into(),
        request.account_id.into(),
    ];
    let named_here = txn
        .execute(Statement::from_sql_and_values(
            txn.get_database_backend(),
            NAME,
            values,
        ))
        .await?;
    if named_here.rows_affected() == 1 {
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

/// The open statuses as a list of SQL literals, for `status IN (…)`: the
/// guard of every statement that finishes a request.
fn open_statuses() -> String {
    RequestStatus::OPEN
        .map(|s| format!("'{}'", s.as_str()))
        .join(", ")
}

/// The guarded update that finishes the requests of the table `v` (columns
/// `v_id`, `v_account`, `v_status`, `v_response`, `v_error`) that are still
/// open, completed at parameter `$completed_at`. The caller may add
/// conditions and its `RETURNING`.
pub(crate) fn finish_sql(completed_at: usize) -> String {
    let open = open_statuses();
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

/// Finishes the requests of `outcomes` (distinct requests) that are still
/// open, each with a guarded statement — of two racing results exactly one
/// wins — and reads each one it finished back; one that is unknown, of
/// another account or already finished is not among those returned.
async fn finish_each(
    txn: &impl ConnectionTrait,
    outcomes: &[(AccountId, Uuid, &Outcome)],
) -> CoreResult<HashMap<Uuid, message_request::Model>> {
    static FINISH: LazyLock<String> = LazyLock::new(|| {
        let open = open_statuses();
        format!(
            "UPDATE message_requests \
             SET status = $3, response = $4, error_message = $5, completed_at = $6, \
                 lease_session = NULL, lease_node = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND account_id = $2 AND status IN ({open})"
        )
    });
    static READ: LazyLock<String> = LazyLock::new(|| {
        let columns = message_request::Column::iter()
            .map(|c| c.as_str().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        format!("SELECT {columns} FROM message_requests WHERE id = $1")
    });
    let backend = txn.get_database_backend();
    let at = now();
    let mut finished = HashMap::with_capacity(outcomes.len());
    for (account, id, outcome) in outcomes {
        let (status, response, error) = match outcome {
            Outcome::Done { response, .. } => (RequestStatus::Done, Some(response), None),
            Outcome::Failed { error } => (RequestStatus::Failed, None, Some(error)),
        };
        let values: [Value; 6] = [
            (*id).into(),
            account.0.into(),
            status.as_str().into(),
            response.cloned().into(),
            error.cloned().into(),
            at.into(),
        ];
        let updated = txn
            .execute(Statement::from_sql_and_values(
                backend,
                FINISH.as_str(),
                values,
            ))
            .await?;
        if updated.rows_affected() == 0 {
            continue;
        }
        let read = Statement::from_sql_and_values(backend, READ.as_str(), [(*id).into()]);
        if let Some(request) = message_request::Model::find_by_statement(read)
            .one(txn)
            .await?
        {
            finished.insert(*id, request);
        }
    }
    Ok(finished)
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

/// [`Finished`] on SQLite (PostgreSQL takes one statement, see
/// `postgres::outcomes`): a statement per request finishes it and one reads
/// it back, and one reads the webhook URLs; the answers' chats are left to
/// [`settle_chat`], one statement each in the common case. Each has one SQL
/// text whatever the batch's size, so it stays prepared, and none needs a
/// temporary table (an `UPDATE … FROM` the batch's rows takes one, and so
/// does a `RETURNING`).
async fn finish_apart(
    txn: &impl ConnectionTrait,
    outcomes: &[(AccountId, Uuid, &Outcome)],
) -> CoreResult<Finished> {
    let requests = finish_each(txn, outcomes).await?;
    let urls = outbox::webhook_urls(txn, requests.values().map(|r| r.account_id)).await?;
    // Finding out would take a statement as well: every chat is advanced.
    let waiting = requests.values().map(|r| r.chat_id).collect();
    Ok(Finished {
        requests,
        named: HashSet::new(),
        waiting,
        urls,
    })
}

/// Applies outcomes inside the caller's transaction: the statements of
/// [`Finished`] finish them, name their chats and read their accounts'
/// webhook URLs (on PostgreSQL a handful however many there are; on SQLite
/// prepared ones, run per request), and the webhooks are enqueued. Each
/// outcome gets its own answer, in order: the finished request, or why it
/// was refused (unknown request, already finished — a refused outcome wrote
/// nothing, so the caller may go on with the transaction). Only a database failure fails them all. After the
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
