//! The request lifecycle as extensions drive it: `idle` → `executing` →
//! `done` | `failed` (or straight from `idle` to a result). Terminal requests
//! never change again. Every terminal transition enqueues its webhook in the
//! same transaction.

use sea_orm::{
    sea_query::{Expr, Func, Query, SimpleExpr},
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, Set,
};
use uuid::Uuid;

use crate::{
    db::entities::{chat, message_request},
    dispatch,
    error::{CoreError, CoreResult},
    model::{now, now_millis, AccountId, RequestStatus},
    webhooks, Core,
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

/// The extension started running the request. It now holds the request's
/// lease (so it comes back to the queue if this session ends). Repeating it
/// is harmless.
pub async fn mark_executing(
    core: &Core,
    account: AccountId,
    id: Uuid,
    session: Uuid,
) -> CoreResult<()> {
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
        .exec(&core.db.write)
        .await?;
    if updated.rows_affected == 0 {
        // Not idle: fine if it is already executing, an error otherwise.
        load_open(&core.db.read, account, id).await?;
    }
    Ok(())
}

/// Records the chat's ChatGPT id and title. The common cases — the chat
/// already has that id, or is new and no other chat of the account has it —
/// take one statement; the rest find or create the named chat.
async fn settle_chat(
    txn: &DatabaseTransaction,
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
    let target = match chat::Entity::find()
        .filter(chat::Column::AccountId.eq(request.account_id))
        .filter(chat::Column::ChatgptId.eq(chatgpt_id))
        .one(txn)
        .await?
    {
        Some(chat) => chat,
        None => {
            chat::ActiveModel {
                account_id: Set(request.account_id),
                chatgpt_id: Set(Some(chatgpt_id.to_string())),
                title: Set(None),
                created_at: Set(at),
                updated_at: Set(at),
                ..Default::default()
            }
            .insert(txn)
            .await?
        }
    };
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

/// Writes a terminal status in one guarded statement — of two racing
/// results exactly one wins — and returns the finished request; on a miss,
/// says why.
async fn finish(
    txn: &DatabaseTransaction,
    account: AccountId,
    id: Uuid,
    status: RequestStatus,
    response: Option<String>,
    error: Option<String>,
) -> CoreResult<message_request::Model> {
    let finished = message_request::without_lease(message_request::Entity::update_many())
        .col_expr(message_request::Column::Status, Expr::value(status))
        .col_expr(message_request::Column::Response, Expr::value(response))
        .col_expr(message_request::Column::ErrorMessage, Expr::value(error))
        .col_expr(message_request::Column::CompletedAt, Expr::value(now()))
        .filter(message_request::Column::Id.eq(id))
        .filter(message_request::Column::AccountId.eq(account.0))
        .filter(message_request::Column::Status.is_in(RequestStatus::OPEN))
        .exec_with_returning(txn)
        .await?;
    match finished.into_iter().next() {
        Some(request) => Ok(request),
        None => {
            load_open(txn, account, id).await?;
            Err(CoreError::FailedPrecondition(format!(
                "request {id} is already finished; a finished request never changes"
            )))
        }
    }
}

/// What every terminal transition does in its transaction besides the
/// status: the webhook, the count, the word to other cores.
async fn finished(
    core: &Core,
    txn: &DatabaseTransaction,
    request: &message_request::Model,
) -> CoreResult<()> {
    webhooks::enqueue(txn, request).await?;
    metrics::counter!("chatrelay_requests_finished_total", "status" => request.status.as_str())
        .increment(1);
    dispatch::publish_finished(txn, core, AccountId(request.account_id), request.id).await
}

/// Tells this process's sessions and the webhook worker, after the commit.
pub(crate) fn committed(core: &Core, account: AccountId, id: Uuid) {
    core.dispatch.finished_local(account, id);
    webhooks::notify_committed(core);
}

/// How an extension finished a request.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// ChatGPT answered, in the chat with this ChatGPT id.
    Done {
        response: String,
        chatgpt_id: String,
        chat_title: Option<String>,
    },
    /// The request could not be run.
    Failed { error: String },
}

/// Finishes a request as the extension reported; resolves once committed.
pub async fn settle_outcome(
    core: &Core,
    account: AccountId,
    id: Uuid,
    outcome: Outcome,
) -> CoreResult<message_request::Model> {
    let outcome = match outcome {
        Outcome::Done { chatgpt_id, .. } if chatgpt_id.trim().is_empty() => {
            return Err(CoreError::invalid("chat_id: must not be empty"))
        }
        Outcome::Done {
            response,
            chatgpt_id,
            chat_title,
        } => Outcome::Done {
            response,
            chatgpt_id,
            chat_title: chat_title.filter(|t| !t.trim().is_empty()),
        },
        failed => failed,
    };
    core.results.apply(account, id, outcome).await
}

/// ChatGPT answered: the request is `done`, its chat named.
pub async fn complete(
    core: &Core,
    account: AccountId,
    id: Uuid,
    response: String,
    chatgpt_id: String,
    chat_title: Option<String>,
) -> CoreResult<message_request::Model> {
    let outcome = Outcome::Done {
        response,
        chatgpt_id,
        chat_title,
    };
    settle_outcome(core, account, id, outcome).await
}

/// The extension could not run the request: it is `failed`.
pub async fn fail(
    core: &Core,
    account: AccountId,
    id: Uuid,
    error: String,
) -> CoreResult<message_request::Model> {
    settle_outcome(core, account, id, Outcome::Failed { error }).await
}

/// Applies an outcome inside the caller's transaction. A request that is
/// unknown or already finished is refused before anything is written, so
/// the caller may go on with the transaction; after the commit the caller
/// calls [`committed`].
pub(crate) async fn apply_in(
    core: &Core,
    txn: &DatabaseTransaction,
    account: AccountId,
    id: Uuid,
    outcome: &Outcome,
) -> CoreResult<message_request::Model> {
    let request = match outcome {
        Outcome::Done {
            response,
            chatgpt_id,
            chat_title,
        } => {
            let mut request = finish(
                txn,
                account,
                id,
                RequestStatus::Done,
                Some(response.clone()),
                None,
            )
            .await?;
            request.chat_id = settle_chat(txn, &request, chatgpt_id, chat_title.clone()).await?;
            request
        }
        Outcome::Failed { error } => {
            finish(
                txn,
                account,
                id,
                RequestStatus::Failed,
                None,
                Some(error.clone()),
            )
            .await?
        }
    };
    finished(core, txn, &request).await?;
    Ok(request)
}
