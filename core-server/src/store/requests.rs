//! Reading requests: by id for the holder of a key, the account's pages,
//! counts by status (of every account, or of one account or chat), and
//! what a session holds.

use sea_orm::{
    sea_query::{Asterisk, Expr, Query},
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use uuid::Uuid;

use super::{
    entities::{account, api_key, chat, message_request},
    Store,
};
use crate::{
    error::CoreResult,
    model::{AccountId, RequestCounts, RequestStatus, RequestView},
};

/// The point reads' GET on both back ends: the columns of
/// `message_request::Model` in declaration order, then the chat's ChatGPT
/// id (what `find_also_related(chat)` reads), of request `$1` if it belongs
/// to the account of the key whose SHA-256 is `$2`. SQLite reads `$1` and
/// `$2` as its first and second parameters.
pub(super) const REQUEST_BY_ID: &str = "\
    SELECT r.id, r.account_id, r.chat_id, r.message, r.response_type, \
           r.thinking_time, r.status, r.response, r.error_message, r.queued_at, \
           r.started_at, r.completed_at, r.attempts, r.lease_session, \
           r.lease_node, r.lease_expires_at, c.chatgpt_id \
    FROM message_requests r LEFT JOIN chats c ON c.id = r.chat_id \
    WHERE r.id = $1 \
      AND r.account_id IN (SELECT account_id FROM api_keys WHERE key_hash = $2)";

/// The request `id`, if it belongs to the account of the key whose SHA-256
/// is `key_hash` (one query checks both).
pub(crate) async fn get_for_key(
    store: &Store,
    id: Uuid,
    key_hash: &str,
) -> CoreResult<Option<RequestView>> {
    if let Some(reads) = store.postgres_point_reads() {
        match reads.request(id, key_hash).await {
            Ok(found) => return Ok(found),
            Err(e) => tracing::debug!(error = %e, "point read failed; asking sea-orm"),
        }
    }
    Ok(message_request::Entity::find_by_id(id)
        .filter(
            message_request::Column::AccountId.in_subquery(
                Query::select()
                    .column(api_key::Column::AccountId)
                    .from(api_key::Entity)
                    .and_where(api_key::Column::KeyHash.eq(key_hash))
                    .to_owned(),
            ),
        )
        .find_also_related(chat::Entity)
        .one(&store.read)
        .await?
        .map(|(request, chat)| message_request::view(request, chat)))
}

/// Up to `limit` of the account's requests, newest first, with `status`
/// if given, of the chat (row id) `chat` if given, older than `before` if
/// given.
pub(crate) async fn list(
    store: &Store,
    account: AccountId,
    status: Option<RequestStatus>,
    chat: Option<i64>,
    before: Option<Uuid>,
    limit: u32,
) -> CoreResult<Vec<RequestView>> {
    let mut query =
        message_request::Entity::find().filter(message_request::Column::AccountId.eq(account.0));
    if let Some(chat) = chat {
        query = query.filter(message_request::Column::ChatId.eq(chat));
    }
    if let Some(status) = status {
        query = query.filter(message_request::Column::Status.eq(status));
    }
    if let Some(before) = before {
        query = query.filter(message_request::Column::Id.lt(before));
    }
    Ok(query
        .order_by_desc(message_request::Column::Id)
        .limit(u64::from(limit))
        .find_also_related(chat::Entity)
        .all(&store.read)
        .await?
        .into_iter()
        .map(|(request, chat)| message_request::view(request, chat))
        .collect())
}

/// Requests with one of `statuses`, from an index alone. PostgreSQL reads
/// its index on `status`. SQLite's holds executing requests only, which it
/// takes for `status = 'executing'` (not for `IN` of one value); other
/// statuses it counts account by account from the accounts' status index
/// rather than by reading every request.
pub(crate) async fn count(store: &Store, statuses: &[RequestStatus]) -> Result<i64, DbErr> {
    let backend = store.read.get_database_backend();
    let counted = counting(backend, statuses)
        .into_tuple::<i64>()
        .one(&store.read)
        .await?;
    Ok(counted.unwrap_or(0))
}

/// [`count`]'s query on `backend`.
pub(super) fn counting(
    backend: DatabaseBackend,
    statuses: &[RequestStatus],
) -> Select<message_request::Entity> {
    let query = message_request::Entity::find()
        .select_only()
        // COUNT(*), not COUNT(id): the index alone answers it, without
        // reading each row (5× faster at 400k idle).
        .column_as(Expr::col(Asterisk).count(), "n");
    let query = match statuses {
        [one] => query.filter(message_request::Column::Status.eq(*one)),
        _ => query.filter(message_request::Column::Status.is_in(statuses.iter().copied())),
    };
    if backend == DatabaseBackend::Sqlite && statuses != [RequestStatus::Executing] {
        let accounts = Query::select()
            .column(account::Column::Id)
            .from(account::Entity)
            .to_owned();
        return query.filter(message_request::Column::AccountId.in_subquery(accounts));
    }
    query
}

/// The account's requests per status, of the chat (row id) `chat` if
/// given: one grouped query, which the account's (or chat's) status index
/// answers alone.
pub(crate) async fn counts(
    store: &Store,
    account: AccountId,
    chat: Option<i64>,
) -> CoreResult<RequestCounts> {
    let mut query = message_request::Entity::find()
        .select_only()
        .column(message_request::Column::Status)
        .column_as(Expr::col(Asterisk).count(), "n")
        .filter(message_request::Column::AccountId.eq(account.0));
    if let Some(chat) = chat {
        query = query.filter(message_request::Column::ChatId.eq(chat));
    }
    let mut counts = RequestCounts::default();
    for (status, n) in query
        .group_by(message_request::Column::Status)
        .into_tuple::<(RequestStatus, i64)>()
        .all(&store.read)
        .await?
    {
        let n = u64::try_from(n).unwrap_or(0);
        match status {
            RequestStatus::Idle => counts.idle = n,
            RequestStatus::Executing => counts.executing = n,
            RequestStatus::Done => counts.done = n,
            RequestStatus::Failed => counts.failed = n,
        }
    }
    Ok(counts)
}

/// The open requests leased to `session`.
pub(crate) async fn held_by(store: &Store, session: Uuid) -> CoreResult<Vec<Uuid>> {
    Ok(message_request::Entity::find()
        .select_only()
        .column(message_request::Column::Id)
        .filter(message_request::Column::LeaseSession.eq(session))
        .filter(message_request::Column::Status.is_in(RequestStatus::OPEN))
        .into_tuple::<Uuid>()
        .all(&store.read)
        .await?)
}

/// Ids per query of [`views_of`].
const VIEWS_CHUNK: usize = 500;

/// The account's requests among `ids`, with their chats, by id: the row
/// and chat a GET reads, for many ids at once (the live events' read).
pub(crate) async fn views_of(
    store: &Store,
    account: AccountId,
    ids: &[Uuid],
) -> CoreResult<std::collections::HashMap<Uuid, RequestView>> {
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut views = std::collections::HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(VIEWS_CHUNK) {
        let rows = message_request::Entity::find()
            .filter(message_request::Column::AccountId.eq(account.0))
            .filter(message_request::Column::Id.is_in(chunk.iter().copied()))
            .find_also_related(chat::Entity)
            .all(&store.read)
            .await?;
        for (request, chat) in rows {
            views.insert(request.id, message_request::view(request, chat));
        }
    }
    Ok(views)
}
