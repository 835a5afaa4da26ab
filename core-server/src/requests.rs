//! Message requests as clients see them: submit, get, list. Every query is
//! scoped to the calling account; another account's request is "not found".

use sea_orm::{sea_query::Query, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::{
    accounts,
    error::{CoreError, CoreResult},
    model::{AccountId, RequestStatus, RequestView, Submission},
    store::entities::{api_key, chat, message_request},
    Core,
};

/// Page sizes for listings.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;
const MAX_CHAT_ID_CHARS: usize = 256;

/// A page of a listing, newest first.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

pub fn page_size(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

pub(crate) fn validate(core: &Core, submission: &Submission) -> CoreResult<()> {
    if submission.message.trim().is_empty() {
        return Err(CoreError::invalid("message: must not be empty"));
    }
    let max = core.config.max_message_chars;
    if submission.message.chars().count() > max {
        return Err(CoreError::invalid(format!(
            "message: longer than {max} characters"
        )));
    }
    if let Some(chat_id) = &submission.chat_id {
        if chat_id.trim().is_empty() {
            return Err(CoreError::invalid("chat_id: must not be empty"));
        }
        if chat_id.chars().count() > MAX_CHAT_ID_CHARS {
            return Err(CoreError::invalid(format!(
                "chat_id: longer than {MAX_CHAT_ID_CHARS} characters"
            )));
        }
    }
    Ok(())
}

/// Submits a message for the holder of `api_key`.
pub async fn submit(
    core: &Core,
    api_key: Option<&str>,
    submission: Submission,
) -> CoreResult<RequestView> {
    let key = accounts::present_key(api_key)?;
    core.intake
        .submit(accounts::hash_api_key(key), submission)
        .await
}

fn parse_id(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id.trim()).ok()
}

/// The request `id` of the holder of `api_key`. The key is checked in the
/// same query; only a miss asks which of key and id was wrong.
pub async fn get(core: &Core, api_key: Option<&str>, id: &str) -> CoreResult<RequestView> {
    let key = accounts::present_key(api_key)?;
    let key_hash = accounts::hash_api_key(key);
    let not_found = || CoreError::not_found("request not found");
    let found = match parse_id(id) {
        None => None,
        Some(id) => match fast_get(core, id, &key_hash) {
            Some(view) => return Ok(view),
            None => {
                message_request::Entity::find_by_id(id)
                    .filter(
                        message_request::Column::AccountId.in_subquery(
                            Query::select()
                                .column(api_key::Column::AccountId)
                                .from(api_key::Entity)
                                .and_where(api_key::Column::KeyHash.eq(key_hash.as_str()))
                                .to_owned(),
                        ),
                    )
                    .find_also_related(chat::Entity)
                    .one(&core.store.read)
                    .await?
            }
        },
    };
    match found {
        Some((request, chat)) => Ok(RequestView::new(request, chat)),
        None => {
            accounts::authenticate_hash(&core.store, &key_hash).await?;
            Err(not_found())
        }
    }
}

/// The request from the store's point reads, when it has them. `None` when
/// they do not apply or did not find it: the sea-orm query then decides
/// between "not found" and "invalid API key", and covers any read error.
fn fast_get(core: &Core, id: Uuid, key_hash: &str) -> Option<RequestView> {
    core.store
        .point_read(|reads| reads.request(id, key_hash))
        .flatten()
}

pub async fn list(
    core: &Core,
    account: AccountId,
    status: Option<RequestStatus>,
    limit: u32,
    cursor: Option<&str>,
) -> CoreResult<Page<RequestView>> {
    let limit = page_size(limit);
    let mut query =
        message_request::Entity::find().filter(message_request::Column::AccountId.eq(account.0));
    if let Some(status) = status {
        query = query.filter(message_request::Column::Status.eq(status));
    }
    if let Some(cursor) = cursor.filter(|c| !c.is_empty()) {
        let before = parse_id(cursor).ok_or_else(|| CoreError::invalid("cursor: invalid"))?;
        query = query.filter(message_request::Column::Id.lt(before));
    }
    let mut rows = query
        .order_by_desc(message_request::Column::Id)
        .limit(u64::from(limit) + 1)
        .find_also_related(chat::Entity)
        .all(&core.store.read)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|(r, _)| r.id.to_string()))
        .flatten();
    Ok(Page {
        items: rows
            .into_iter()
            .map(|(request, chat)| RequestView::new(request, chat))
            .collect(),
        next_cursor,
    })
}
