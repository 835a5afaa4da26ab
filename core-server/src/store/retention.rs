//! Retention's statements: one batch deletes up to `limit` finished requests
//! that finished before a cutoff, their webhook deliveries and attempts, and
//! the chats they leave empty (and the Idempotency-Keys that named them).
//!
//! The batch is found on the read pool, outside any write transaction (on
//! SQLite a scan inside it would hold the only writer); the deletes, by key,
//! then run in one short transaction. A finished request never changes
//! again, so the rows found are still prunable when they are deleted. A
//! request whose webhook is still pending (being retried) is kept until its
//! delivery ends.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Alias, Expr, Query},
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::{
    entities::{
        chat, idempotency_key, message_request, webhook_attempt,
        webhook_delivery::{self, DeliveryStatus},
    },
    Store,
};
use crate::{error::CoreResult, model::RequestStatus};

/// What one batch (or a whole prune) deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub requests: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub chats: u64,
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, other: Self) {
        self.requests += other.requests;
        self.deliveries += other.deliveries;
        self.attempts += other.attempts;
        self.chats += other.chats;
    }
}

/// The request has a webhook delivery still pending.
fn has_pending_delivery() -> sea_orm::sea_query::SimpleExpr {
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(webhook_delivery::Entity)
            .and_where(
                Expr::col((
                    webhook_delivery::Entity,
                    webhook_delivery::Column::RequestId,
                ))
                .equals((message_request::Entity, message_request::Column::Id)),
            )
            .and_where(
                Expr::col((webhook_delivery::Entity, webhook_delivery::Column::Status))
                    .eq(DeliveryStatus::Pending),
            )
            .to_owned(),
    )
}

/// Deletes one batch of at most `limit` requests finished before `cutoff`.
pub async fn prune_batch(store: &Store, cutoff: DateTime<Utc>, limit: u64) -> CoreResult<Pruned> {
    let prunable = Condition::all()
        .add(message_request::Column::Status.is_in([RequestStatus::Done, RequestStatus::Failed]))
        .add(message_request::Column::CompletedAt.lt(cutoff))
        .add(has_pending_delivery().not());
    let found: Vec<(Uuid, i64)> = message_request::Entity::find()
        .select_only()
        .column(message_request::Column::Id)
        .column(message_request::Column::ChatId)
        .filter(prunable.clone())
        .order_by_asc(message_request::Column::CompletedAt)
        .limit(limit)
        .into_tuple()
        .all(&store.read)
        .await?;
    if found.is_empty() {
        return Ok(Pruned::default());
    }
    let ids: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
    let chats: BTreeSet<i64> = found.iter().map(|(_, chat)| *chat).collect();

    let txn = store.write.begin().await?;
    let deliveries_of_batch = Query::select()
        .column(webhook_delivery::Column::Id)
        .from(webhook_delivery::Entity)
        .and_where(webhook_delivery::Column::RequestId.is_in(ids.clone()))
        .and_where(webhook_delivery::Column::Status.ne(DeliveryStatus::Pending))
        .to_owned();
    let attempts = webhook_attempt::Entity::delete_many()
        .filter(webhook_attempt::Column::DeliveryId.in_subquery(deliveries_of_batch))
        .exec(&txn)
        .await?
        .rows_affected;
    let deliveries = webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::RequestId.is_in(ids.clone()))
        .filter(webhook_delivery::Column::Status.ne(DeliveryStatus::Pending))
        .exec(&txn)
        .await?
        .rows_affected;
    // Rechecked in the transaction: an operator may have sent a webhook of
    // the batch again (`webhook retry`) since it was found.
    let requests = message_request::Entity::delete_many()
        .filter(message_request::Column::Id.is_in(ids.clone()))
        .filter(prunable)
        .exec(&txn)
        .await?
        .rows_affected;
    // An Idempotency-Key of a deleted request no longer names anything.
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::RequestId.is_in(ids))
        .filter(
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(message_request::Entity)
                    .and_where(
                        Expr::col((message_request::Entity, message_request::Column::Id))
                            .equals((idempotency_key::Entity, idempotency_key::Column::RequestId)),
                    )
                    .to_owned(),
            )
            .not(),
        )
        .exec(&txn)
        .await?;
    let chats = chat::Entity::delete_many()
        .filter(chat::Column::Id.is_in(chats))
        .filter(
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from_as(message_request::Entity, Alias::new("r"))
                    .and_where(
                        Expr::col((Alias::new("r"), message_request::Column::ChatId))
                            .equals((chat::Entity, chat::Column::Id)),
                    )
                    .to_owned(),
            )
            .not(),
        )
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    Ok(Pruned {
        requests,
        deliveries,
        attempts,
        chats,
    })
}
