//! Leases: a delivered request belongs to one session on one core until it
//! finishes or the lease ends. A session that ends gives its requests back;
//! a core renews its leases while it lives, and any core gives back the
//! leases of a core that stopped renewing. Each give-back counts as a
//! delivery attempt; past the limit the request fails, with its webhook.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use sea_orm::{
    sea_query::{Expr, LockBehavior, LockType},
    ColumnTrait, DatabaseBackend, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

use super::notify;
use crate::{
    db::entities::message_request,
    error::CoreResult,
    lifecycle,
    model::{now_millis, AccountId, RequestStatus},
    webhooks, Core,
};

/// Requeues or fails `held`, all open and leased, inside `txn`; returns the
/// accounts that have work again and how many requests failed.
async fn give_back(
    core: &Core,
    txn: &DatabaseTransaction,
    held: Vec<message_request::Model>,
    why: &str,
) -> CoreResult<(BTreeSet<i64>, usize)> {
    let max = core.config.max_attempts;
    let mut accounts = BTreeSet::new();
    let mut requeue = Vec::new();
    let mut failed = 0;
    for request in held {
        accounts.insert(request.account_id);
        if request.attempts >= max {
            let error = format!(
                "gave up after {} delivery attempts: {why} before finishing the request",
                request.attempts
            );
            lifecycle::apply_in(
                core,
                txn,
                AccountId(request.account_id),
                request.id,
                &lifecycle::Outcome::Failed { error },
            )
            .await?;
            failed += 1;
        } else {
            requeue.push(request.id);
        }
    }
    if !requeue.is_empty() {
        message_request::without_lease(message_request::Entity::update_many())
            .col_expr(
                message_request::Column::Status,
                Expr::value(RequestStatus::Idle),
            )
            .col_expr(
                message_request::Column::StartedAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .filter(message_request::Column::Id.is_in(requeue))
            .exec(txn)
            .await?;
    }
    for account in &accounts {
        notify::publish_work(txn, core, AccountId(*account)).await?;
    }
    Ok((accounts, failed))
}

async fn give_back_where(core: &Core, filter: sea_orm::Condition, why: &str) -> CoreResult<()> {
    let txn = core.db.write.begin().await?;
    // Only a leased request matches `filter`, and finishing a request ends
    // its lease, so the lease indexes (which hold leased requests only)
    // answer this. A status condition in the query would let the planner
    // pick the status index instead and read every open request — with the
    // write connection held.
    let mut query = message_request::Entity::find().filter(filter);
    if core.db.backend() == DatabaseBackend::Postgres {
        query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let mut held = query.all(&txn).await?;
    held.retain(|request| RequestStatus::OPEN.contains(&request.status));
    if held.is_empty() {
        return Ok(());
    }
    let (accounts, failed) = give_back(core, &txn, held, why).await?;
    txn.commit().await?;
    lifecycle::count_finished(core, std::iter::repeat_n(RequestStatus::Failed, failed));
    webhooks::notify_committed(core);
    for account in accounts {
        core.dispatch.wake_local(AccountId(account));
    }
    Ok(())
}

/// Gives back everything the ended session still held.
pub async fn release_session(core: &Core, session: Uuid) -> CoreResult<()> {
    give_back_where(
        core,
        sea_orm::Condition::all().add(message_request::Column::LeaseSession.eq(session)),
        "the extension session ended",
    )
    .await
}

/// Gives back requests whose lease lapsed (their core stopped renewing).
pub async fn reap_expired(core: &Core) -> CoreResult<()> {
    give_back_where(
        core,
        sea_orm::Condition::all()
            .add(message_request::Column::LeaseSession.is_not_null())
            .add(message_request::Column::LeaseExpiresAt.lt(now_millis())),
        "the extension session was lost",
    )
    .await
}

/// On SQLite one core owns the database file, so leases found at start-up
/// belong to a process that is gone: give them back at once.
pub async fn release_orphans(core: &Core) -> CoreResult<()> {
    if core.db.backend() == DatabaseBackend::Postgres {
        return Ok(());
    }
    give_back_where(
        core,
        sea_orm::Condition::all().add(message_request::Column::LeaseSession.is_not_null()),
        "chatrelay restarted",
    )
    .await
}

/// Extends every lease this core holds.
pub async fn renew(core: &Core) -> CoreResult<()> {
    message_request::Entity::update_many()
        .col_expr(
            message_request::Column::LeaseExpiresAt,
            Expr::value(now_millis() + core.lease_ttl_millis()),
        )
        .filter(message_request::Column::LeaseNode.eq(core.node_id))
        .filter(message_request::Column::LeaseSession.is_not_null())
        .exec(&core.db.write)
        .await?;
    Ok(())
}

/// Starts the task that renews this core's leases and reaps lapsed ones,
/// three times per lease lifetime.
pub fn start_keeper(core: &Arc<Core>) {
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let period = Duration::from_millis((core.lease_ttl_millis() / 3).max(100) as u64);
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = core.shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(e) = renew(&core).await {
                tracing::warn!(error = %e, "could not renew leases");
            }
            if let Err(e) = reap_expired(&core).await {
                tracing::warn!(error = %e, "could not reap lapsed leases");
            }
        }
    });
}
