//! What operators and accounts see and do: recent deliveries with their
//! attempts, a page at a time, and sending a finished delivery again. Each
//! operation takes the account it is scoped to (an account's API calls) or
//! `None` (an operator's `chatrelay webhook …`); another account's delivery
//! is "not found", exactly like one that does not exist.

use std::collections::HashMap;

use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::outbox::epoch_millis;
use crate::{
    error::{CoreError, CoreResult},
    model::{now, AccountId},
    store::{
        entities::{
            account, webhook_attempt,
            webhook_delivery::{self, DeliveryStatus},
        },
        Store,
    },
};

/// Most deliveries an operator's listing shows.
pub const MAX_LIST: u64 = 1000;

/// A delivery, its account's name and its attempts (oldest first).
#[derive(Clone, Debug)]
pub struct DeliveryView {
    pub delivery: webhook_delivery::Model,
    pub account_name: String,
    pub attempts: Vec<webhook_attempt::Model>,
}

fn not_found() -> CoreError {
    CoreError::not_found("webhook delivery not found")
}

/// Up to `limit` of the most recent deliveries, newest first, of one
/// account or all; those older than the delivery `before` (ids are UUIDv7)
/// if given.
pub async fn list(
    db: &Store,
    account: Option<AccountId>,
    before: Option<Uuid>,
    limit: u64,
) -> CoreResult<Vec<DeliveryView>> {
    let mut query = webhook_delivery::Entity::find()
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(limit.max(1));
    if let Some(account) = account {
        query = query.filter(webhook_delivery::Column::AccountId.eq(account.0));
    }
    if let Some(before) = before {
        query = query.filter(webhook_delivery::Column::Id.lt(before));
    }
    let deliveries = query.all(&db.read).await?;
    views(db, deliveries).await
}

/// One delivery (of `account`, if given) with its attempts.
pub async fn get(db: &Store, account: Option<AccountId>, id: Uuid) -> CoreResult<DeliveryView> {
    let mut query = webhook_delivery::Entity::find_by_id(id);
    if let Some(account) = account {
        query = query.filter(webhook_delivery::Column::AccountId.eq(account.0));
    }
    let delivery = query.one(&db.read).await?.ok_or_else(not_found)?;
    views(db, vec![delivery]).await?.pop().ok_or_else(not_found)
}

async fn views(
    db: &Store,
    deliveries: Vec<webhook_delivery::Model>,
) -> CoreResult<Vec<DeliveryView>> {
    let ids: Vec<Uuid> = deliveries.iter().map(|d| d.id).collect();
    let mut account_ids: Vec<i64> = deliveries.iter().map(|d| d.account_id).collect();
    account_ids.sort_unstable();
    account_ids.dedup();
    let names: HashMap<i64, String> = account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .column(account::Column::Name)
        .filter(account::Column::Id.is_in(account_ids))
        .into_tuple::<(i64, String)>()
        .all(&db.read)
        .await?
        .into_iter()
        .collect();
    let mut attempts: HashMap<Uuid, Vec<webhook_attempt::Model>> = HashMap::new();
    for attempt in webhook_attempt::Entity::find()
        .filter(webhook_attempt::Column::DeliveryId.is_in(ids))
        .order_by_asc(webhook_attempt::Column::Attempt)
        .order_by_asc(webhook_attempt::Column::Id)
        .all(&db.read)
        .await?
    {
        attempts
            .entry(attempt.delivery_id)
            .or_default()
            .push(attempt);
    }
    Ok(deliveries
        .into_iter()
        .map(|delivery| DeliveryView {
            account_name: names.get(&delivery.account_id).cloned().unwrap_or_default(),
            attempts: attempts.remove(&delivery.id).unwrap_or_default(),
            delivery,
        })
        .collect())
}

/// Sends a finished (usually failed) delivery (of `account`, if given)
/// again: it becomes pending, due now, with a fresh retry schedule. Its
/// `webhook-id` stays the same. Returns it as it now is.
pub async fn retry(db: &Store, account: Option<AccountId>, id: Uuid) -> CoreResult<DeliveryView> {
    let at = now();
    let mut update = webhook_delivery::Entity::update_many()
        .col_expr(
            webhook_delivery::Column::Status,
            Expr::value(DeliveryStatus::Pending),
        )
        .col_expr(
            webhook_delivery::Column::NextAttemptAt,
            Expr::value(epoch_millis(at)),
        )
        .col_expr(
            webhook_delivery::Column::RetryFrom,
            Expr::col(webhook_delivery::Column::Attempts).into(),
        )
        .col_expr(
            webhook_delivery::Column::ClaimedBy,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(at))
        .filter(webhook_delivery::Column::Id.eq(id))
        .filter(webhook_delivery::Column::Status.ne(DeliveryStatus::Pending));
    if let Some(account) = account {
        update = update.filter(webhook_delivery::Column::AccountId.eq(account.0));
    }
    let updated = update.exec(&db.write).await?;
    let mut found = webhook_delivery::Entity::find_by_id(id);
    if let Some(account) = account {
        found = found.filter(webhook_delivery::Column::AccountId.eq(account.0));
    }
    let delivery = found.one(&db.write).await?.ok_or_else(not_found)?;
    if updated.rows_affected == 0 {
        return Err(CoreError::FailedPrecondition(
            "delivery is pending; it will be attempted again by itself".into(),
        ));
    }
    views(db, vec![delivery]).await?.pop().ok_or_else(not_found)
}
