//! The request lifecycle as extensions drive it: `idle` → `executing` →
//! `done` | `failed` (or straight from `idle` to a result). Terminal requests
//! never change again. Every terminal transition enqueues its webhook in the
//! same transaction.

use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    EntityTrait, QueryFilter, Set, TransactionTrait,
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

/// Points the request at the chat the extension reported and records the
/// chat's ChatGPT id and title.
async fn settle_chat(
    txn: &DatabaseTransaction,
    request: &message_request::Model,
    chatgpt_id: &str,
    title: Option<String>,
) -> CoreResult<i64> {
    let at = now();
    let current = chat::Entity::find_by_id(request.chat_id)
        .one(txn)
        .await?
        .ok_or_else(|| CoreError::Unavailable("request's chat is missing".into()))?;
    let named = if current.chatgpt_id.as_deref() == Some(chatgpt_id) {
        Some(current.clone())
    } else {
        chat::Entity::find()
            .filter(chat::Column::AccountId.eq(request.account_id))
            .filter(chat::Column::ChatgptId.eq(chatgpt_id))
            .one(txn)
            .await?
    };
    let target = match named {
        Some(chat) => chat,
        // A new chat learns its ChatGPT id now.
        None if current.chatgpt_id.is_none() => current,
        // The extension answered in another conversation than the one asked for.
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
    active.chatgpt_id = Set(Some(chatgpt_id.to_string()));
    if title.is_some() {
        active.title = Set(title);
    }
    active.updated_at = Set(at);
    active.update(txn).await?;
    Ok(target.id)
}

/// Writes a terminal status, guarded so that of two racing results exactly
/// one wins, then enqueues the webhook in the same transaction.
async fn finish(
    core: &Core,
    txn: &DatabaseTransaction,
    mut request: message_request::Model,
) -> CoreResult<message_request::Model> {
    request.lease_session = None;
    request.lease_node = None;
    request.lease_expires_at = None;
    let updated = message_request::without_lease(message_request::Entity::update_many())
        .col_expr(message_request::Column::Status, Expr::value(request.status))
        .col_expr(
            message_request::Column::Response,
            Expr::value(request.response.clone()),
        )
        .col_expr(
            message_request::Column::ErrorMessage,
            Expr::value(request.error_message.clone()),
        )
        .col_expr(
            message_request::Column::CompletedAt,
            Expr::value(request.completed_at),
        )
        .col_expr(
            message_request::Column::ChatId,
            Expr::value(request.chat_id),
        )
        .filter(message_request::Column::Id.eq(request.id))
        .filter(message_request::Column::Status.is_in(RequestStatus::OPEN))
        .exec(txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(CoreError::FailedPrecondition(format!(
            "request {} is already finished; a finished request never changes",
            request.id
        )));
    }
    webhooks::enqueue(txn, &request).await?;
    metrics::counter!("chatrelay_requests_finished_total", "status" => request.status.as_str())
        .increment(1);
    dispatch::publish_finished(txn, core, AccountId(request.account_id), request.id).await?;
    Ok(request)
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
    if chatgpt_id.trim().is_empty() {
        return Err(CoreError::invalid("chat_id: must not be empty"));
    }
    let txn = core.db.write.begin().await?;
    let mut request = load_open(&txn, account, id).await?;
    let chat_title = chat_title.filter(|t| !t.trim().is_empty());
    request.chat_id = settle_chat(&txn, &request, &chatgpt_id, chat_title).await?;
    request.status = RequestStatus::Done;
    request.response = Some(response);
    request.error_message = None;
    request.completed_at = Some(now());
    let request = finish(core, &txn, request).await?;
    txn.commit().await?;
    core.dispatch.finished_local(account, id);
    webhooks::notify_committed(core);
    Ok(request)
}

/// The extension could not run the request: it is `failed`.
pub async fn fail(
    core: &Core,
    account: AccountId,
    id: Uuid,
    error: String,
) -> CoreResult<message_request::Model> {
    let txn = core.db.write.begin().await?;
    let request = load_open(&txn, account, id).await?;
    let request = fail_in(core, &txn, request, error).await?;
    txn.commit().await?;
    core.dispatch.finished_local(account, id);
    webhooks::notify_committed(core);
    Ok(request)
}

/// Fails an open request inside the caller's transaction.
pub(crate) async fn fail_in(
    core: &Core,
    txn: &DatabaseTransaction,
    mut request: message_request::Model,
    error: String,
) -> CoreResult<message_request::Model> {
    request.status = RequestStatus::Failed;
    request.response = None;
    request.error_message = Some(error);
    request.completed_at = Some(now());
    finish(core, txn, request).await
}
