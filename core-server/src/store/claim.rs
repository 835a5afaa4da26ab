//! Claiming idle requests for a session (or, on PostgreSQL, for several of
//! an account's sessions at once): one statement that picks, oldest first,
//! requests whose chat has nothing in flight (and only the oldest idle one
//! of each chat), and leases them.

use sea_orm::{ConnectionTrait, DatabaseBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use crate::{
    dispatch::session::Delivery,
    error::CoreResult,
    model::{now_millis, AccountId, RequestStatus},
    store::entities::message_request,
    Core,
};

/// The requests a claim may lease, oldest first: the account's idle ones
/// whose chat has nothing in flight (and only the oldest idle one of each
/// chat). `$4` is the account, `$5` how many. SKIP LOCKED lets PostgreSQL
/// cores claim side by side: a row another core is claiming is passed
/// over, and since only the oldest idle request of a chat is eligible, a
/// chat never gets two requests in flight.
///
/// The requests read are those not marked behind an older one of their
/// chat (the claimable index, see [`super::heads`]): one per waiting chat,
/// however many each has queued. The two checks stay, since a mark is
/// cleared rather than set where transactions race, and each reads only
/// the chat's open requests: an older idle one, by the chat's status index
/// (from the index alone), and one in flight, executing or leased (on
/// PostgreSQL by an index of requests in flight keyed by chat, on SQLite
/// by the chat's status index). A leased one is open (finishing a request
/// ends its lease) and may be newer, where cores committed a chat's
/// submits out of id order. A chat's finished requests are never read,
/// nor other chats' requests in flight.
pub(super) fn claimable(backend: DatabaseBackend) -> String {
    let (idle, executing) = (
        RequestStatus::Idle.as_str(),
        RequestStatus::Executing.as_str(),
    );
    // SQLite's planner, without statistics, may take the status index,
    // which holds every idle request, marked or not. PostgreSQL reads the
    // requests in flight from an index of its own, keyed by chat; SQLite
    // reads the chat's idle and executing ones by the chat's status index.
    let (lock, index, in_flight) = match backend {
        DatabaseBackend::Postgres => (
            "FOR UPDATE SKIP LOCKED",
            "",
            format!("(o.status = '{executing}' OR o.lease_session IS NOT NULL)"),
        ),
        _ => (
            "",
            " INDEXED BY message_requests_claimable",
            format!(
                "o.status IN ('{idle}', '{executing}') \
                 AND (o.lease_session IS NOT NULL OR o.status = '{executing}')"
            ),
        ),
    };
    let per_row = super::plans::per_row(backend);
    format!(
        "
  SELECT r.id FROM message_requests r{index}
  WHERE r.account_id = $4 AND r.status = '{idle}' AND r.lease_session IS NULL
    AND NOT r.queued_behind
    AND NOT EXISTS (SELECT 1 FROM message_requests o
                    WHERE o.chat_id = r.chat_id AND o.status = '{idle}' AND o.id < r.id{per_row})
    AND NOT EXISTS (SELECT 1 FROM message_requests o
                    WHERE o.chat_id = r.chat_id AND {in_flight}{per_row})
  ORDER BY r.id
  LIMIT $5
  {lock}"
    )
}

/// What a claim returns of each row leased: the row, and its chat's
/// ChatGPT id (the extension needs it, and no answer can change it while
/// the request is leased: the chat has nothing else in flight).
const RETURNING: &str =
    "RETURNING *, (SELECT c.chatgpt_id FROM chats c WHERE c.id = message_requests.chat_id) AS chat_chatgpt_id";

/// The claim for one session, on both back ends (`$n` parameters work in
/// SQLite too): `$1` the session, `$2` this core, `$3` the lease's end.
fn claim_sql(backend: DatabaseBackend) -> String {
    format!(
        "
UPDATE message_requests
SET lease_session = $1, lease_node = $2, lease_expires_at = $3, attempts = attempts + 1
WHERE id IN ({})
{RETURNING}",
        claimable(backend)
    )
}

/// The claim for several sessions at once, on PostgreSQL: `$1` is an array
/// naming a session per slot, and the n-th oldest claimable request goes to
/// the session of slot n. The requests are found by key (`ANY(ARRAY(…))`),
/// whatever the planner thinks of the claimable rows' number.
fn claim_slots_sql() -> String {
    format!(
        "
WITH picked AS MATERIALIZED ({})
UPDATE message_requests
SET lease_session = ($1::uuid[])[array_position(ARRAY(SELECT id FROM picked ORDER BY id), id)],
    lease_node = $2, lease_expires_at = $3, attempts = attempts + 1
WHERE id = ANY(ARRAY(SELECT id FROM picked))
{RETURNING}",
        claimable(DatabaseBackend::Postgres)
    )
}

/// A row a claim leased, with its chat's ChatGPT id.
pub(crate) type LeasedRow = (message_request::Model, Option<String>);

/// Runs a claim statement: `$1` names who gets the requests (`to`), `$5`
/// how many at most. Returns the rows leased, oldest first.
async fn lease(
    core: &Core,
    conn: &impl ConnectionTrait,
    backend: DatabaseBackend,
    sql: String,
    to: Value,
    account: AccountId,
    max: usize,
) -> CoreResult<Vec<LeasedRow>> {
    let statement = Statement::from_sql_and_values(
        backend,
        sql,
        [
            to,
            core.node_id.into(),
            (now_millis() + core.lease_ttl_millis()).into(),
            account.0.into(),
            (max as i64).into(),
        ],
    );
    let mut claimed = Vec::new();
    for row in conn.query_all(statement).await? {
        let request = message_request::Model::from_query_result(&row, "")?;
        let chatgpt_id = row.try_get::<Option<String>>("", "chat_chatgpt_id")?;
        claimed.push((request, chatgpt_id));
    }
    // RETURNING gives no order guarantee.
    claimed.sort_by_key(|(r, _)| r.id);
    Ok(claimed)
}

/// Leases up to `max` of the account's claimable requests to `session`,
/// oldest first, each ready to deliver.
pub async fn claim_in(
    core: &Core,
    conn: &impl ConnectionTrait,
    account: AccountId,
    session: Uuid,
    max: usize,
) -> CoreResult<Vec<Delivery>> {
    let backend = core.store.write.get_database_backend();
    let claimed = lease(
        core,
        conn,
        backend,
        claim_sql(backend),
        session.into(),
        account,
        max,
    )
    .await?;
    Ok(claimed.into_iter().map(delivery).collect())
}

/// A leased row as the session sends it.
pub(crate) fn delivery((request, chatgpt_id): LeasedRow) -> Delivery {
    Delivery {
        request: request.into(),
        chatgpt_id,
    }
}

/// Leases to several sessions of the account in one statement, on
/// PostgreSQL: `slots` names a session per request wanted, and the oldest
/// claimable request goes to the session of the first slot, the next to the
/// second, and so on. Returns the requests leased, oldest first; each names
/// its session in `lease_session`.
pub(crate) async fn claim_slots_in(
    core: &Core,
    conn: &impl ConnectionTrait,
    account: AccountId,
    slots: Vec<Uuid>,
) -> CoreResult<Vec<LeasedRow>> {
    let wanted = slots.len();
    let backend = DatabaseBackend::Postgres;
    lease(
        core,
        conn,
        backend,
        claim_slots_sql(),
        slots.into(),
        account,
        wanted,
    )
    .await
}
