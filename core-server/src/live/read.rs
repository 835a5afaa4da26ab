//! The changed requests, read for their events: the same row and chat a
//! `GetRequest` reads, for many ids of one account at once.
//!
//! (One query; it belongs with the store's reads once they have a home for
//! it.)

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::{
    error::CoreResult,
    model::{AccountId, RequestView},
    store::entities::{chat, message_request},
    Core,
};

/// Ids per query.
const CHUNK: usize = 500;

pub(super) async fn requests(
    core: &Core,
    account: AccountId,
    ids: &[Uuid],
) -> CoreResult<HashMap<Uuid, RequestView>> {
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut views = HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(CHUNK) {
        let rows = message_request::Entity::find()
            .filter(message_request::Column::AccountId.eq(account.0))
            .filter(message_request::Column::Id.is_in(chunk.iter().copied()))
            .find_also_related(chat::Entity)
            .all(&core.store.read)
            .await?;
        for (request, chat) in rows {
            views.insert(request.id, message_request::view(request, chat));
        }
    }
    Ok(views)
}
