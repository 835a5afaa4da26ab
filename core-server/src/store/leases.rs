//! Leases in the database: giving requests back to the queue (or failing
//! them past the attempt limit) and renewing the leases of live sessions.
//! The policy — when to give back, which sessions live — is
//! [`crate::dispatch::lease`]'s.

use sea_orm::{
    sea_query::{Expr, LockBehavior, LockType, Query},
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::{entities::message_request, outcomes, publish_work};
use crate::{
    committed::{Cause, Committed},
    error::CoreResult,
    lifecycle::Outcome,
    model::{now_millis, AccountId, RequestStatus},
    Core,
};

/// Which leased requests to give back.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Which {
    /// Those of a session that ended: wait for rows another transaction
    /// holds, so none is left behind.
    Session(Uuid),
    /// Those whose lease lapsed: any core may reap at once, so rows another
    /// core is reaping are passed over (where the store has row locks).
    Lapsed,
    /// Every leased request (a sole writer's start-up: they are orphans).
    All,
}

/// Requeues or fails `held`, all open and leased, inside `txn`.
async fn requeue_or_fail(
    core: &Core,
    txn: &DatabaseTransaction,
    held: Vec<message_request::Model>,
    why: &str,
) -> CoreResult<Committed> {
    let max = core.config.max_attempts;
    let mut committed = Committed::default();
    let mut requeue = Vec::new();
    for request in held {
        let account = AccountId(request.account_id);
        committed.returned.insert(account);
        if request.attempts >= max {
            let error = format!(
                "gave up after {} delivery attempts: {why} before finishing the request",
                request.attempts
            );
            let failed =
                outcomes::apply_in(core, txn, account, request.id, &Outcome::Failed { error })
                    .await?;
            committed.changed(account, failed.id, failed.status, Cause::Finished);
            committed.webhooks = true;
        } else {
            committed.changed(account, request.id, RequestStatus::Idle, Cause::Requeued);
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
    for account in &committed.returned {
        publish_work(txn, core, *account).await?;
    }
    Ok(committed)
}

/// Gives back the open requests `which` selects, in one transaction.
pub(crate) async fn give_back(core: &Core, which: Which, why: &str) -> CoreResult<Committed> {
    let txn = core.store.write.begin().await?;
    // Only a leased request matches, and finishing a request ends its
    // lease, so the lease index (which holds leased requests only) answers
    // this. A status condition in the query would let the planner pick the
    // status index instead and read every open request — with the write
    // connection held.
    let leased = message_request::Column::LeaseSession;
    let query = message_request::Entity::find();
    let query = match which {
        Which::Session(session) => query.filter(leased.eq(session)).lock(LockType::Update),
        Which::Lapsed => query
            .filter(leased.is_not_null())
            .filter(message_request::Column::LeaseExpiresAt.lt(now_millis()))
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked),
        Which::All => query.filter(leased.is_not_null()).lock(LockType::Update),
    };
    let mut held = query.all(&txn).await?;
    held.retain(|request| RequestStatus::OPEN.contains(&request.status));
    if held.is_empty() {
        return Ok(Committed::default());
    }
    let committed = requeue_or_fail(core, &txn, held, why).await?;
    txn.commit().await?;
    Ok(committed)
}

/// Takes back requests of `account` leased to `session` that never reached
/// it: the session ended while the claim that leased them ran. Their leases
/// end and the attempt the claim counted is undone, since no delivery
/// happened; the account's sessions are woken after the commit.
pub(crate) async fn return_undelivered(
    core: &Core,
    account: AccountId,
    session: Uuid,
    ids: Vec<Uuid>,
) -> CoreResult<Committed> {
    let txn = core.store.write.begin().await?;
    let attempts = message_request::Column::Attempts;
    let returned = message_request::without_lease(message_request::Entity::update_many())
        .col_expr(attempts, Expr::col(attempts).sub(1))
        .filter(message_request::Column::Id.is_in(ids))
        .filter(message_request::Column::LeaseSession.eq(session))
        .filter(message_request::Column::Status.eq(RequestStatus::Idle))
        .exec(&txn)
        .await?;
    let mut committed = Committed::default();
    if returned.rows_affected > 0 {
        committed.returned.insert(account);
        publish_work(&txn, core, account).await?;
    }
    txn.commit().await?;
    Ok(committed)
}

/// Sessions named in one renewal statement.
const RENEW_CHUNK: usize = 500;

/// Extends the leases this core holds for `sessions`. A row another
/// transaction holds (a result finishing it, say) is passed over rather
/// than waited for: two updates of many rows that lock them in different
/// orders could each wait for the other, until PostgreSQL aborts one after
/// its deadlock timeout (a second, with every write behind them waiting).
/// A lease passed over is renewed on the next beat, two beats before it
/// would lapse.
pub(crate) async fn renew(core: &Core, sessions: &[Uuid]) -> CoreResult<()> {
    let until = now_millis() + core.lease_ttl_millis();
    for sessions in sessions.chunks(RENEW_CHUNK) {
        let held = Query::select()
            .column(message_request::Column::Id)
            .from(message_request::Entity)
            .and_where(message_request::Column::LeaseNode.eq(core.node_id))
            .and_where(message_request::Column::LeaseSession.is_in(sessions.iter().copied()))
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .to_owned();
        message_request::Entity::update_many()
            .col_expr(message_request::Column::LeaseExpiresAt, Expr::value(until))
            .filter(message_request::Column::Id.in_subquery(held))
            .exec(&core.store.write)
            .await?;
    }
    Ok(())
}
