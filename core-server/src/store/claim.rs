//! Claiming idle requests for a session: one statement that picks, oldest
//! first, requests whose chat has nothing in flight (and only the oldest idle
//! one of each chat), and leases them to the session.

use sea_orm::{ConnectionTrait, DatabaseBackend, EntityTrait, Statement};
use uuid::Uuid;

use crate::{
    error::CoreResult,
    model::{now_millis, AccountId, MessageRequest, RequestStatus},
    store::entities::message_request,
    Core,
};

/// The claim, for both back ends (`$n` parameters work in SQLite too).
/// SKIP LOCKED lets PostgreSQL cores claim side by side: a row another core
/// is claiming is passed over, and since only the oldest idle request of a
/// chat is eligible, a chat never gets two requests in flight.
fn claim_sql(backend: DatabaseBackend) -> String {
    let lock = match backend {
        DatabaseBackend::Postgres => "FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let per_row = super::plans::per_row(backend);
    let (idle, executing) = (
        RequestStatus::Idle.as_str(),
        RequestStatus::Executing.as_str(),
    );
    format!(
        "
UPDATE message_requests
SET lease_session = $1, lease_node = $2, lease_expires_at = $3, attempts = attempts + 1
WHERE id IN (
  SELECT r.id FROM message_requests r
  WHERE r.account_id = $4 AND r.status = '{idle}' AND r.lease_session IS NULL
    AND NOT EXISTS (SELECT 1 FROM message_requests o
                    WHERE o.chat_id = r.chat_id
                      AND (o.lease_session IS NOT NULL OR o.status = '{executing}'){per_row})
    AND NOT EXISTS (SELECT 1 FROM message_requests o
                    WHERE o.chat_id = r.chat_id AND o.status = '{idle}' AND o.id < r.id{per_row})
  ORDER BY r.id
  LIMIT $5
  {lock})
RETURNING *"
    )
}

/// Leases up to `max` of the account's claimable requests to `session`,
/// oldest first.
pub async fn claim_in(
    core: &Core,
    conn: &impl ConnectionTrait,
    account: AccountId,
    session: Uuid,
    max: usize,
) -> CoreResult<Vec<MessageRequest>> {
    let backend = core.store.write.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        claim_sql(backend),
        [
            session.into(),
            core.node_id.into(),
            (now_millis() + core.lease_ttl_millis()).into(),
            account.0.into(),
            (max as i64).into(),
        ],
    );
    let mut claimed = message_request::Entity::find()
        .from_raw_sql(statement)
        .all(conn)
        .await?;
    // RETURNING gives no order guarantee.
    claimed.sort_by_key(|r| r.id);
    Ok(claimed.into_iter().map(MessageRequest::from).collect())
}
