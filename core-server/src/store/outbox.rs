//! The outbox table's rules: a delivery is written with its terminal
//! transition, claimed by one core per attempt, and settled with the
//! attempt's outcome.
//!
//! A claim pushes `next_attempt_at` to the claim's expiry and takes the next
//! attempt number. The core that claimed settles the delivery only if that
//! number is still current, so a core that died mid-attempt simply lets the
//! delivery fall due again, and a late answer never overwrites a newer claim.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::{
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict, Query},
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Set, TransactionTrait,
};
use uuid::Uuid;

use crate::webhooks::payload;
use crate::{
    error::{CoreError, CoreResult},
    model::{now, MessageRequest},
    store::entities::{
        account, webhook_attempt,
        webhook_delivery::{self, DeliveryStatus},
    },
    Core,
};

/// Milliseconds since the epoch, as `next_attempt_at` stores time.
pub fn epoch_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// See [`crate::webhooks::enqueue`]: one query for the accounts' webhook URLs, one
/// multi-row insert.
pub async fn enqueue(conn: &impl ConnectionTrait, requests: &[&MessageRequest]) -> CoreResult<()> {
    let bodies = requests
        .iter()
        .map(|request| {
            payload::render(request).ok_or_else(|| {
                CoreError::FailedPrecondition(format!(
                    "request {} is {}, not finished: no webhook",
                    request.id,
                    request.status.as_str()
                ))
            })
        })
        .collect::<CoreResult<Vec<_>>>()?;
    let accounts: BTreeSet<i64> = requests.iter().map(|r| r.account_id).collect();
    if accounts.is_empty() {
        return Ok(());
    }
    let urls: HashMap<i64, String> = account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .column(account::Column::WebhookUrl)
        .filter(account::Column::Id.is_in(accounts))
        .filter(account::Column::WebhookUrl.is_not_null())
        .into_tuple::<(i64, String)>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    let at = now();
    let deliveries: Vec<webhook_delivery::ActiveModel> = requests
        .iter()
        .zip(bodies)
        .filter_map(|(request, body)| {
            let url = urls.get(&request.account_id)?;
            Some(webhook_delivery::ActiveModel {
                id: Set(Uuid::now_v7()),
                account_id: Set(request.account_id),
                request_id: Set(request.id),
                url: Set(url.clone()),
                payload: Set(body),
                status: Set(DeliveryStatus::Pending),
                attempts: Set(0),
                retry_from: Set(0),
                next_attempt_at: Set(epoch_millis(at)),
                claimed_by: Set(None),
                created_at: Set(at),
                updated_at: Set(at),
                last_attempt_at: Set(None),
            })
        })
        .collect();
    if deliveries.is_empty() {
        return Ok(());
    }
    // A request has one webhook: a second enqueue for it changes nothing.
    webhook_delivery::Entity::insert_many(deliveries)
        .on_conflict(
            OnConflict::column(webhook_delivery::Column::RequestId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// When the earliest pending delivery falls due (in the past if one is due).
pub async fn next_due(core: &Core) -> CoreResult<Option<i64>> {
    let due = webhook_delivery::Entity::find()
        .select_only()
        .column_as(webhook_delivery::Column::NextAttemptAt.min(), "due")
        .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending))
        .into_tuple::<Option<i64>>()
        .one(&core.store.read)
        .await?;
    Ok(due.flatten())
}

/// Fails due deliveries whose schedule is used up: their last attempt's
/// claim lapsed (the core died mid-attempt) or the schedule was shortened.
pub async fn fail_exhausted(core: &Core, now_ms: i64) -> CoreResult<u64> {
    let schedule = &core.config.webhooks.retry_schedule;
    let exhausted = webhook_delivery::Entity::update_many()
        .col_expr(
            webhook_delivery::Column::Status,
            Expr::value(DeliveryStatus::Failed),
        )
        .col_expr(
            webhook_delivery::Column::ClaimedBy,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now()))
        .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now_ms))
        .filter(
            Expr::col(webhook_delivery::Column::Attempts)
                .sub(Expr::col(webhook_delivery::Column::RetryFrom))
                .gte(schedule.max_attempts()),
        )
        .exec(&core.store.write)
        .await?;
    Ok(exhausted.rows_affected)
}

/// Claims up to `limit` due deliveries for this core, each for one attempt.
pub async fn claim_due(
    core: &Core,
    now_ms: i64,
    limit: u64,
) -> CoreResult<Vec<webhook_delivery::Model>> {
    let config = &core.config.webhooks;
    let claim = Claim {
        node: core.node_id,
        now_ms,
        ttl_ms: i64::try_from(config.claim_ttl().as_millis()).unwrap_or(i64::MAX),
        max_attempts: config.retry_schedule.max_attempts(),
        limit,
    };
    let statement = core.store.statement(&claim.query());
    Ok(webhook_delivery::Entity::find()
        .from_raw_sql(statement)
        .all(&core.store.write)
        .await?)
}

/// One claim of due deliveries.
struct Claim {
    node: Uuid,
    now_ms: i64,
    ttl_ms: i64,
    max_attempts: i32,
    limit: u64,
}

impl Claim {
    /// One statement: `UPDATE … WHERE id IN (due rows) RETURNING *`. The
    /// due rows are selected `FOR UPDATE SKIP LOCKED` where the store has
    /// row locks, so cores sharing the table skip each other's rows instead
    /// of waiting for them.
    fn query(&self) -> sea_orm::sea_query::UpdateStatement {
        let due = webhook_delivery::Entity::find()
            .select_only()
            .column(webhook_delivery::Column::Id)
            .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending))
            .filter(webhook_delivery::Column::NextAttemptAt.lte(self.now_ms))
            .filter(
                Expr::col(webhook_delivery::Column::Attempts)
                    .sub(Expr::col(webhook_delivery::Column::RetryFrom))
                    .lt(self.max_attempts),
            )
            .order_by_asc(webhook_delivery::Column::NextAttemptAt)
            .limit(self.limit)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .into_query();
        Query::update()
            .table(webhook_delivery::Entity)
            .value(
                webhook_delivery::Column::NextAttemptAt,
                self.now_ms.saturating_add(self.ttl_ms),
            )
            .value(
                webhook_delivery::Column::Attempts,
                Expr::col(webhook_delivery::Column::Attempts).add(1),
            )
            .value(webhook_delivery::Column::ClaimedBy, self.node)
            .value(webhook_delivery::Column::UpdatedAt, now())
            .and_where(Expr::col(webhook_delivery::Column::Id).in_subquery(due))
            .returning_all()
            .to_owned()
    }
}

/// How one attempt went.
#[derive(Debug)]
pub struct Outcome {
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// The URL the attempt went to (empty if the account had none).
    pub url: String,
    pub status_code: Option<i32>,
    /// `None` exactly when the receiver answered 2xx.
    pub error: Option<String>,
}

/// Records the attempt of a claimed delivery and decides what comes next:
/// succeeded, another attempt after the schedule's delay, or failed.
/// Returns the delivery's new status, or `None` if the claim had lapsed and
/// another attempt has taken over (the attempt is still recorded).
pub async fn settle(
    core: &Core,
    claimed: &webhook_delivery::Model,
    outcome: Outcome,
) -> CoreResult<Option<DeliveryStatus>> {
    let schedule = &core.config.webhooks.retry_schedule;
    let settled_at = now();
    let (status, next_attempt_at) = match &outcome.error {
        None => (DeliveryStatus::Succeeded, claimed.next_attempt_at),
        Some(_) => match schedule.delay_after(claimed.attempts - claimed.retry_from) {
            Some(delay) => (
                DeliveryStatus::Pending,
                epoch_millis(settled_at).saturating_add(jittered_millis(delay)),
            ),
            None => (DeliveryStatus::Failed, claimed.next_attempt_at),
        },
    };
    let txn = core.store.write.begin().await?;
    webhook_attempt::ActiveModel {
        delivery_id: Set(claimed.id),
        attempt: Set(claimed.attempts),
        attempted_at: Set(outcome.attempted_at),
        duration_ms: Set(outcome.duration_ms),
        status_code: Set(outcome.status_code),
        error: Set(outcome.error),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let mut update = webhook_delivery::Entity::update_many()
        .col_expr(webhook_delivery::Column::Status, Expr::value(status))
        .col_expr(
            webhook_delivery::Column::NextAttemptAt,
            Expr::value(next_attempt_at),
        )
        .col_expr(
            webhook_delivery::Column::ClaimedBy,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(settled_at))
        .col_expr(
            webhook_delivery::Column::LastAttemptAt,
            Expr::value(outcome.attempted_at),
        );
    if !outcome.url.is_empty() {
        update = update.col_expr(webhook_delivery::Column::Url, Expr::value(outcome.url));
    }
    let updated = update
        .filter(webhook_delivery::Column::Id.eq(claimed.id))
        .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending))
        .filter(webhook_delivery::Column::Attempts.eq(claimed.attempts))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok((updated.rows_affected > 0).then_some(status))
}

/// The delay in milliseconds, scaled by a random factor in [0.9, 1.1] so
/// that deliveries which failed together do not come back in lockstep.
fn jittered_millis(delay: std::time::Duration) -> i64 {
    let ms = delay.as_millis() as f64;
    let factor: f64 = rand::rng().random_range(0.9..=1.1);
    (ms * factor).round() as i64
}
