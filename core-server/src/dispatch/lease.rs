//! Leases: a delivered request belongs to one session on one core until it
//! finishes or the lease ends. A session that ends gives its requests back;
//! a core renews its leases while it lives, and any core gives back the
//! leases of a core that stopped renewing. Each give-back counts as a
//! delivery attempt; past the limit the request fails, with its webhook.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use sea_orm::{
    sea_query::{Expr, LockBehavior, LockType},
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use crate::{
    error::CoreResult,
    lifecycle,
    model::{now_millis, AccountId, RequestStatus},
    store,
    store::entities::message_request,
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
            store::outcomes::apply_in(
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
        store::publish_work(txn, core, AccountId(*account)).await?;
    }
    Ok((accounts, failed))
}

/// Whether a give-back passes over rows another transaction holds
/// (where the store has row locks): right for the reaper, which any core may run at once;
/// wrong for a session's own give-back, which must not leave any behind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Locked {
    Skip,
    Wait,
}

async fn give_back_where(
    core: &Core,
    filter: sea_orm::Condition,
    locked: Locked,
    why: &str,
) -> CoreResult<()> {
    let txn = core.store.write.begin().await?;
    // Only a leased request matches `filter`, and finishing a request ends
    // its lease, so the lease indexes (which hold leased requests only)
    // answer this. A status condition in the query would let the planner
    // pick the status index instead and read every open request — with the
    // write connection held.
    let mut query = message_request::Entity::find().filter(filter);
    // Where the back end has row locks (several cores may give back at once).
    query = match locked {
        Locked::Skip => query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked),
        Locked::Wait => query.lock(LockType::Update),
    };
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
        Locked::Wait,
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
        Locked::Skip,
        "the extension session was lost",
    )
    .await
}

/// A sole writer owns the database, so leases found at start-up belong to
/// a process that is gone: give them back at once. (Where cores share the
/// database, another core may hold them; they lapse if it is gone.)
pub async fn release_orphans(core: &Core) -> CoreResult<()> {
    if !core.store.sole_writer() {
        return Ok(());
    }
    give_back_where(
        core,
        sea_orm::Condition::all().add(message_request::Column::LeaseSession.is_not_null()),
        Locked::Wait,
        "chatrelay restarted",
    )
    .await
}

/// Sessions named in one renewal statement.
const RENEW_CHUNK: usize = 500;

/// Extends the leases of the sessions running on this core — only those: a
/// session that ended, even one whose give-back failed, lets its leases
/// lapse, and the reaper (or the retried give-back) returns its requests.
pub async fn renew(core: &Core) -> CoreResult<()> {
    let until = now_millis() + core.lease_ttl_millis();
    for sessions in core.dispatch.live_sessions().chunks(RENEW_CHUNK) {
        message_request::Entity::update_many()
            .col_expr(message_request::Column::LeaseExpiresAt, Expr::value(until))
            .filter(message_request::Column::LeaseNode.eq(core.node_id))
            .filter(message_request::Column::LeaseSession.is_in(sessions.iter().copied()))
            .exec(&core.store.write)
            .await?;
    }
    Ok(())
}

/// Gives back the requests of ended sessions whose give-back failed.
async fn release_unreleased(core: &Core) {
    for session in core.dispatch.take_unreleased() {
        let released = match release_session(core, session).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%session, error = %e, "could not release session's requests; retrying");
                false
            }
        };
        core.dispatch.session_ended(session, released);
    }
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
            release_unreleased(&core).await;
            if let Err(e) = reap_expired(&core).await {
                tracing::warn!(error = %e, "could not reap lapsed leases");
            }
        }
    });
}
