//! Chats: the one home of finding or creating one, and of listing them as
//! clients see them, scoped to the calling account.

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::OnConflict, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entities::chat;
use crate::{
    error::{CoreError, CoreResult},
    model::{now, AccountId, Chat},
    requests::{page_size, Page},
    Core,
};

pub async fn list(
    core: &Core,
    account: AccountId,
    limit: u32,
    cursor: Option<&str>,
) -> CoreResult<Page<Chat>> {
    let limit = page_size(limit);
    let mut query = chat::Entity::find().filter(chat::Column::AccountId.eq(account.0));
    if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
        let before: i64 = cursor
            .parse()
            .map_err(|_| CoreError::invalid("cursor: invalid"))?;
        query = query.filter(chat::Column::Id.lt(before));
    }
    let mut rows = query
        .order_by_desc(chat::Column::Id)
        .limit(u64::from(limit) + 1)
        .all(&core.store.read)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|c| c.id.to_string()))
        .flatten();
    Ok(Page {
        items: rows.into_iter().map(Chat::from).collect(),
        next_cursor,
    })
}

/// The account's chat with this ChatGPT id.
pub async fn get(core: &Core, account: AccountId, chatgpt_id: &str) -> CoreResult<Chat> {
    chat::Entity::find()
        .filter(chat::Column::AccountId.eq(account.0))
        .filter(chat::Column::ChatgptId.eq(chatgpt_id))
        .one(&core.store.read)
        .await?
        .map(Chat::from)
        .ok_or_else(|| CoreError::not_found("chat not found"))
}

/// Checks that the chat with row id `id` is the account's: another
/// account's chat is "not found", like one that does not exist.
pub async fn check_owned(core: &Core, account: AccountId, id: i64) -> CoreResult<()> {
    let found = chat::Entity::find_by_id(id)
        .select_only()
        .column(chat::Column::Id)
        .filter(chat::Column::AccountId.eq(account.0))
        .into_tuple::<i64>()
        .one(&core.store.read)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| CoreError::not_found("chat not found"))
}

/// A new, unnamed chat row of the account, created `at`, to insert.
pub(crate) fn unnamed(account: AccountId, at: DateTime<Utc>) -> chat::ActiveModel {
    chat::ActiveModel {
        account_id: Set(account.0),
        chatgpt_id: Set(None),
        title: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
        ..Default::default()
    }
}

/// The account's chat with this ChatGPT id, created if it has none. Safe
/// when two transactions (two cores) ask at once: the insert yields to the
/// unique index, and both end with the one row that won.
pub(crate) async fn find_or_create(
    conn: &impl ConnectionTrait,
    account: AccountId,
    chatgpt_id: &str,
) -> CoreResult<chat::Model> {
    let existing = || {
        chat::Entity::find()
            .filter(chat::Column::AccountId.eq(account.0))
            .filter(chat::Column::ChatgptId.eq(chatgpt_id))
            .one(conn)
    };
    if let Some(chat) = existing().await? {
        return Ok(chat);
    }
    let mut row = unnamed(account, now());
    row.chatgpt_id = Set(Some(chatgpt_id.to_string()));
    chat::Entity::insert(row)
        .on_conflict(
            // The unique index holds named chats only: the target says so.
            OnConflict::columns([chat::Column::AccountId, chat::Column::ChatgptId])
                .target_and_where(chat::Column::ChatgptId.is_not_null())
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    existing()
        .await?
        .ok_or_else(|| CoreError::Unavailable("chat vanished while naming it".into()))
}
