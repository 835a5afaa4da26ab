//! Cancelling an idle request in the database: one guarded statement makes
//! it `failed` ("cancelled") and ends its lease, and the same transaction
//! enqueues its webhook. The lifecycle's rule (only `idle` can be
//! cancelled) is the statement's guard.

use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use uuid::Uuid;

use super::{
    entities::{chat, message_request},
    heads, publish_work,
};
use crate::{
    committed::{Cause, Committed},
    error::{CoreError, CoreResult},
    model::{now, AccountId, RequestStatus, RequestView},
    webhooks, Core,
};

/// The error message of a cancelled request.
pub const CANCELLED: &str = "cancelled";

/// Cancels the account's request `id` if it is idle (delivered to a session
/// or not); returns it as it now is and what the transaction committed.
pub(crate) async fn cancel(
    core: &Core,
    account: AccountId,
    id: Uuid,
) -> CoreResult<(RequestView, Committed)> {
    // Where cores share the database, a request given back to the queue
    // between the guarded update and the read may look idle yet not have
    // been cancelled: then the cancel is simply tried again.
    for _ in 0..3 {
        if let Some(cancelled) = try_cancel(core, account, id).await? {
            return Ok(cancelled);
        }
    }
    Err(CoreError::Unavailable(
        "the request kept changing while being cancelled; try again".into(),
    ))
}

/// One try of [`cancel`]: `None` if the request became idle only after
/// the update passed it over.
async fn try_cancel(
    core: &Core,
    account: AccountId,
    id: Uuid,
) -> CoreResult<Option<(RequestView, Committed)>> {
    let txn = core.store.write.begin().await?;
    let updated = message_request::without_lease(message_request::Entity::update_many())
        .col_expr(
            message_request::Column::Status,
            Expr::value(RequestStatus::Failed),
        )
        .col_expr(
            message_request::Column::ErrorMessage,
            Expr::value(CANCELLED),
        )
        .col_expr(message_request::Column::CompletedAt, Expr::value(now()))
        .filter(message_request::Column::Id.eq(id))
        .filter(message_request::Column::AccountId.eq(account.0))
        .filter(message_request::Column::Status.eq(RequestStatus::Idle))
        .exec(&txn)
        .await?;
    let (row, chat) = message_request::Entity::find_by_id(id)
        .filter(message_request::Column::AccountId.eq(account.0))
        .find_also_related(chat::Entity)
        .one(&txn)
        .await?
        .ok_or_else(|| CoreError::not_found("request not found"))?;
    if updated.rows_affected == 0 {
        return match row.status {
            RequestStatus::Idle => Ok(None),
            RequestStatus::Executing => Err(CoreError::FailedPrecondition(
                "request is executing; only an idle request can be cancelled".into(),
            )),
            status => Err(CoreError::FailedPrecondition(format!(
                "request is already {}",
                status.as_str()
            ))),
        };
    }
    // Its chat's next request is no longer behind it.
    heads::advance(&txn, [row.chat_id]).await?;
    let view = message_request::view(row, chat);
    webhooks::enqueue(&txn, &[&view.request]).await?;
    // Its chat's next request may go now: other cores' sessions hear of it.
    publish_work(&txn, core, account).await?;
    txn.commit().await?;

    let mut committed = Committed::default();
    committed.changed(account, id, RequestStatus::Failed, Cause::Cancelled);
    committed.returned.insert(account);
    committed.webhooks = true;
    Ok(Some((view, committed)))
}
