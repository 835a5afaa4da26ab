//! Extension sessions in the database (`extension_sessions`), so that every
//! core sharing it can list an account's sessions, wherever they are open.
//! A core writes only its own rows; which rows it should have is
//! [`crate::dispatch::registry`]'s business. A row whose core stopped
//! refreshing it is no longer listed once a lease lifetime has passed, and
//! is swept later by any core.

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, OnConflict},
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, Set, Statement,
    TransactionTrait,
};
use uuid::Uuid;

use super::{entities::extension_session, Store};
use crate::{
    error::CoreResult,
    model::{now_millis, AccountId, ExtensionSession},
};

/// A session as its row records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionRow {
    pub(crate) id: Uuid,
    pub(crate) account: AccountId,
    pub(crate) connected_at: DateTime<Utc>,
}

/// Rows written in one statement.
const CHUNK: usize = 500;

fn active(node: Uuid, seen_at: i64, row: &SessionRow) -> extension_session::ActiveModel {
    extension_session::ActiveModel {
        id: Set(row.id),
        account_id: Set(row.account.0),
        node: Set(node),
        connected_at: Set(row.connected_at),
        seen_at: Set(seen_at),
    }
}

async fn insert(conn: &impl ConnectionTrait, node: Uuid, rows: &[SessionRow]) -> CoreResult<()> {
    let seen_at = now_millis();
    for chunk in rows.chunks(CHUNK) {
        extension_session::Entity::insert_many(chunk.iter().map(|row| active(node, seen_at, row)))
            .on_conflict(
                OnConflict::column(extension_session::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Inserts the rows of sessions that opened on `node` and deletes those of
/// sessions that ended, in one transaction.
pub(crate) async fn record(
    store: &Store,
    node: Uuid,
    opened: &[SessionRow],
    ended: &[Uuid],
) -> CoreResult<()> {
    if opened.is_empty() && ended.is_empty() {
        return Ok(());
    }
    let txn = store.write.begin().await?;
    insert(&txn, node, opened).await?;
    for chunk in ended.chunks(CHUNK) {
        extension_session::Entity::delete_many()
            .filter(extension_session::Column::Id.is_in(chunk.iter().copied()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Marks every session row of `node` as seen now, in one statement;
/// returns how many rows that was.
pub(crate) async fn refresh(store: &Store, node: Uuid) -> CoreResult<u64> {
    let updated = extension_session::Entity::update_many()
        .col_expr(extension_session::Column::SeenAt, Expr::value(now_millis()))
        .filter(extension_session::Column::Node.eq(node))
        .exec(&store.write)
        .await?;
    Ok(updated.rows_affected)
}

/// Makes `node`'s rows exactly `rows`, seen now: for when they drifted
/// apart (a write that failed, rows swept while the core could not reach
/// the database).
pub(crate) async fn replace(store: &Store, node: Uuid, rows: &[SessionRow]) -> CoreResult<()> {
    let txn = store.write.begin().await?;
    extension_session::Entity::delete_many()
        .filter(extension_session::Column::Node.eq(node))
        .exec(&txn)
        .await?;
    insert(&txn, node, rows).await?;
    txn.commit().await?;
    Ok(())
}

/// Deletes every session row of `node` (the core is stopping).
pub(crate) async fn forget_node(store: &Store, node: Uuid) -> CoreResult<()> {
    extension_session::Entity::delete_many()
        .filter(extension_session::Column::Node.eq(node))
        .exec(&store.write)
        .await?;
    Ok(())
}

/// Deletes every session row (a sole writer's start-up: they are a
/// previous run's).
pub(crate) async fn forget_all(store: &Store) -> CoreResult<()> {
    extension_session::Entity::delete_many()
        .exec(&store.write)
        .await?;
    Ok(())
}

/// Deletes the rows not seen since `before_ms` (their core is gone);
/// returns how many.
pub(crate) async fn sweep(store: &Store, before_ms: i64) -> CoreResult<u64> {
    let deleted = extension_session::Entity::delete_many()
        .filter(extension_session::Column::SeenAt.lt(before_ms))
        .exec(&store.write)
        .await?;
    Ok(deleted.rows_affected)
}

#[derive(FromQueryResult)]
struct Listed {
    id: Uuid,
    node: Uuid,
    connected_at: DateTime<Utc>,
    in_flight: i64,
}

/// The account's sessions seen since `since_ms`, oldest connection first,
/// each with the number of requests leased to it — one grouped query.
pub(crate) async fn list(
    store: &Store,
    account: AccountId,
    since_ms: i64,
) -> CoreResult<Vec<ExtensionSession>> {
    // `$n` parameters work on SQLite too. The join reads the partial lease
    // index (a `lease_session = …` term implies it is not null).
    let sql = "\
SELECT s.id AS id, s.node AS node, s.connected_at AS connected_at, COUNT(r.id) AS in_flight
FROM extension_sessions s
LEFT JOIN message_requests r ON r.lease_session = s.id
WHERE s.account_id = $1 AND s.seen_at >= $2
GROUP BY s.id, s.node, s.connected_at
ORDER BY s.connected_at, s.id";
    let statement = Statement::from_sql_and_values(
        store.read.get_database_backend(),
        sql,
        [account.0.into(), since_ms.into()],
    );
    Ok(Listed::find_by_statement(statement)
        .all(&store.read)
        .await?
        .into_iter()
        .map(|row| ExtensionSession {
            id: row.id,
            node: row.node,
            connected_at: row.connected_at,
            in_flight: u32::try_from(row.in_flight).unwrap_or(u32::MAX),
        })
        .collect())
}
