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
    sea_query::{Expr, ExprTrait, OnConflict},
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    QueryFilter, QuerySelect, Set, Statement, TransactionTrait,
};
use uuid::Uuid;

use crate::webhooks::{destination::redact, payload};
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
    let urls = webhook_urls(conn, requests.iter().map(|r| r.account_id)).await?;
    enqueue_to(conn, requests, &urls).await
}

/// [`enqueue`] where the accounts' webhook URLs are already read, in the
/// same transaction: an account not in `urls` has none.
pub async fn enqueue_to(
    conn: &impl ConnectionTrait,
    requests: &[&MessageRequest],
    urls: &HashMap<i64, String>,
) -> CoreResult<()> {
    let at = now();
    let mut deliveries = Vec::new();
    for request in requests {
        let Some(url) = urls.get(&request.account_id) else {
            continue;
        };
        let body = payload::render(request).ok_or_else(|| {
            CoreError::FailedPrecondition(format!(
                "request {} is {}, not finished: no webhook",
                request.id,
                request.status.as_str()
            ))
        })?;
        deliveries.push(webhook_delivery::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(request.account_id),
            request_id: Set(request.id),
            url: Set(redact(url)),
            payload: Set(body),
            status: Set(DeliveryStatus::Pending),
            attempts: Set(0),
            retry_from: Set(0),
            next_attempt_at: Set(epoch_millis(at)),
            claimed_by: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
            last_attempt_at: Set(None),
        });
    }
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

/// The webhook URL of each of `accounts` that has one, by account id.
pub async fn webhook_urls(
    conn: &impl ConnectionTrait,
    accounts: impl IntoIterator<Item = i64>,
) -> CoreResult<HashMap<i64, String>> {
    let accounts: BTreeSet<i64> = accounts.into_iter().collect();
    if accounts.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .column(account::Column::WebhookUrl)
        .filter(account::Column::Id.is_in(accounts))
        .filter(account::Column::WebhookUrl.is_not_null())
        .into_tuple::<(i64, String)>()
        .all(conn)
        .await?
        .into_iter()
        .collect())
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

/// Claims up to `limit` due deliveries for this core, each for one attempt,
/// and no more of one account's than leave it `per_account` attempts in
/// flight (counting every core's claims that have not lapsed).
pub async fn claim_due(
    core: &Core,
    now_ms: i64,
    limit: u64,
) -> CoreResult<Vec<webhook_delivery::Model>> {
    let config = &core.config.webhooks;
    let ttl_ms = i64::try_from(config.claim_ttl().as_millis()).unwrap_or(i64::MAX);
    let backend = core.store.write.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        claim_sql(backend),
        [
            now_ms.into(),
            i64::from(config.concurrency_per_account).into(),
            config.retry_schedule.max_attempts().into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
            now_ms.saturating_add(ttl_ms).into(),
            core.node_id.into(),
            now().into(),
        ],
    );
    Ok(webhook_delivery::Model::find_by_statement(statement)
        .all(&core.store.write)
        .await?)
}

/// The claim, for both back ends (`$n` parameters work in SQLite too):
/// `$1` now, `$2` the share per account, `$3` the schedule's attempts,
/// `$4` the limit; then what a claim sets: `$5` the claim's expiry (as
/// `next_attempt_at`), `$6` this core, `$7` the time.
///
/// It reads no more rows than the accounts with pending deliveries times
/// the share, however long the backlog: `accounts` walks the accounts with
/// pending deliveries one index step each (account ids are positive); `heads` takes each one's first
/// due deliveries, at most a share, and ranks them after its attempts in
/// flight (those claimed, claim not lapsed: the partial index of claimed
/// rows); the earliest due within their account's share are claimed.
/// The outer conditions are written so that no index answers them
/// (`|| ''`, `+ 0`): the rows are found by key from the short list, and
/// the conditions are checked again on the row PostgreSQL locks. SKIP
/// LOCKED lets cores claim side by side, passing over each other's rows.
/// Two cores claiming at the same instant may each see the same free
/// share, so the cap is a share, not a hard limit, across cores.
fn claim_sql(backend: DatabaseBackend) -> String {
    let pending = DeliveryStatus::Pending.as_str();
    // The next account with a pending delivery, in the order of the index
    // of pending deliveries (which no other index gives, so that is the
    // one read, and only its first entry).
    let next_account = format!(
        "SELECT w.account_id FROM webhook_deliveries w
          WHERE w.status = '{pending}' AND w.account_id"
    );
    let in_order = "
          ORDER BY w.account_id, w.next_attempt_at, w.id LIMIT 1";
    let first_due = |columns: &str| {
        format!(
            "SELECT {columns} FROM webhook_deliveries h
    WHERE h.status = '{pending}' AND h.account_id = accounts.id AND h.next_attempt_at <= $1
    ORDER BY h.next_attempt_at, h.id
    LIMIT $2"
        )
    };
    // Each account's first due deliveries: PostgreSQL joins them laterally
    // and takes the list as an array, looked up by key; SQLite, which has
    // neither, reads the same through `IN` lists, which it looks up by key.
    let (heads_from, (chosen, chosen_end), lock) = match backend {
        DatabaseBackend::Postgres => (
            format!(
                "accounts CROSS JOIN LATERAL ({}) d",
                first_due("h.id, h.account_id, h.next_attempt_at")
            ),
            ("id = ANY(ARRAY(", "))"),
            "FOR UPDATE SKIP LOCKED",
        ),
        _ => (
            format!(
                "accounts JOIN webhook_deliveries d ON d.id IN (
    {}
  )",
                first_due("h.id")
            ),
            ("id IN (", ")"),
            "",
        ),
    };
    format!(
        "
WITH RECURSIVE accounts(id) AS (
  SELECT ({next_account} > -1{in_order})
  UNION ALL
  SELECT ({next_account} > accounts.id{in_order})
  FROM accounts WHERE accounts.id IS NOT NULL
),
heads AS (
  SELECT d.id, d.next_attempt_at,
    ROW_NUMBER() OVER (PARTITION BY d.account_id ORDER BY d.next_attempt_at, d.id)
    + (SELECT COUNT(*) FROM webhook_deliveries f
       WHERE f.account_id = d.account_id AND f.claimed_by IS NOT NULL
         AND f.next_attempt_at > $1) AS account_rank
  FROM {heads_from}
)
UPDATE webhook_deliveries
SET next_attempt_at = $5, attempts = attempts + 1, claimed_by = $6, updated_at = $7
WHERE id IN (
  SELECT id FROM webhook_deliveries
  WHERE status || '' = '{pending}' AND next_attempt_at + 0 <= $1
    AND attempts - retry_from < $3
    AND {chosen}SELECT id FROM heads WHERE account_rank <= $2
               ORDER BY next_attempt_at, id LIMIT $4{chosen_end}
  {lock})
RETURNING *"
    )
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
    outcome: &Outcome,
) -> CoreResult<Option<DeliveryStatus>> {
    let txn = core.store.write.begin().await?;
    let settled = settle_in(core, &txn, claimed, outcome).await?;
    txn.commit().await?;
    Ok(settled)
}

/// [`settle`] for several attempts, in one transaction (one commit, one
/// sync); if that fails, each alone, so one cannot fail the others.
pub async fn settle_all(
    core: &Core,
    attempts: &[(&webhook_delivery::Model, &Outcome)],
) -> Vec<CoreResult<Option<DeliveryStatus>>> {
    if let [(claimed, outcome)] = attempts {
        return vec![settle(core, claimed, outcome).await];
    }
    let together = async {
        let txn = core.store.write.begin().await?;
        let mut settled = Vec::with_capacity(attempts.len());
        for (claimed, outcome) in attempts {
            settled.push(settle_in(core, &txn, claimed, outcome).await?);
        }
        txn.commit().await?;
        Ok::<_, CoreError>(settled)
    };
    match together.await {
        Ok(settled) => settled.into_iter().map(Ok).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "settling webhook attempts together failed; one by one");
            let mut settled = Vec::with_capacity(attempts.len());
            for (claimed, outcome) in attempts {
                settled.push(settle(core, claimed, outcome).await);
            }
            settled
        }
    }
}

/// [`settle`] inside the caller's transaction.
async fn settle_in(
    core: &Core,
    txn: &impl ConnectionTrait,
    claimed: &webhook_delivery::Model,
    outcome: &Outcome,
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
    webhook_attempt::ActiveModel {
        delivery_id: Set(claimed.id),
        attempt: Set(claimed.attempts),
        attempted_at: Set(outcome.attempted_at),
        duration_ms: Set(outcome.duration_ms),
        status_code: Set(outcome.status_code),
        error: Set(outcome.error.clone()),
        ..Default::default()
    }
    .insert(txn)
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
        update = update.col_expr(
            webhook_delivery::Column::Url,
            Expr::value(outcome.url.clone()),
        );
    }
    let updated = update
        .filter(webhook_delivery::Column::Id.eq(claimed.id))
        .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending))
        .filter(webhook_delivery::Column::Attempts.eq(claimed.attempts))
        .exec(txn)
        .await?;
    Ok((updated.rows_affected > 0).then_some(status))
}

/// The delay in milliseconds, scaled by a random factor in [0.9, 1.1] so
/// that deliveries which failed together do not come back in lockstep.
fn jittered_millis(delay: std::time::Duration) -> i64 {
    let ms = delay.as_millis() as f64;
    let factor: f64 = rand::rng().random_range(0.9..=1.1);
    (ms * factor).round() as i64
}
