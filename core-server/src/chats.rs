//! Chats as clients see them, scoped to the calling account.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::{
    db::entities::chat,
    error::{CoreError, CoreResult},
    model::AccountId,
    requests::{page_size, Page},
    Core,
};

pub async fn list(
    core: &Core,
    account: AccountId,
    limit: u32,
    cursor: Option<&str>,
) -> CoreResult<Page<chat::Model>> {
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
        .all(&core.db.read)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|c| c.id.to_string()))
        .flatten();
    Ok(Page {
        items: rows,
        next_cursor,
    })
}

/// The account's chat with this ChatGPT id.
pub async fn get(core: &Core, account: AccountId, chatgpt_id: &str) -> CoreResult<chat::Model> {
    chat::Entity::find()
        .filter(chat::Column::AccountId.eq(account.0))
        .filter(chat::Column::ChatgptId.eq(chatgpt_id))
        .one(&core.db.read)
        .await?
        .ok_or_else(|| CoreError::not_found("chat not found"))
}
