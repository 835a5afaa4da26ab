//! An account's own view of its webhooks: its deliveries with their
//! attempts, a page at a time, and sending a finished one again — the
//! operations of `chatrelay webhook list|retry`, scoped to the caller's
//! account. The statements are in [`crate::store::deliveries`].

use uuid::Uuid;

use super::notify_committed;
use crate::{
    error::{CoreError, CoreResult},
    model::AccountId,
    requests::{Page, DEFAULT_PAGE, MAX_PAGE},
    store::deliveries::{self, DeliveryView},
    Core,
};

/// A page size: unset is the default page; otherwise 1 to [`MAX_PAGE`].
fn page_size(limit: Option<u32>) -> CoreResult<u32> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(CoreError::invalid(format!(
            "limit: must be a whole number from 1 to {MAX_PAGE}"
        ))),
    }
}

/// A page of the account's deliveries, newest first, starting after the
/// delivery named by `cursor` (the previous page's `next_cursor`).
pub async fn page(
    core: &Core,
    account: AccountId,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> CoreResult<Page<DeliveryView>> {
    let limit = page_size(limit)?;
    let before = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
        Some(cursor) => {
            Some(Uuid::parse_str(cursor).map_err(|_| CoreError::invalid("cursor: invalid"))?)
        }
        None => None,
    };
    let mut items =
        deliveries::list(&core.store, Some(account), before, u64::from(limit) + 1).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = more
        .then(|| items.last().map(|view| view.delivery.id.to_string()))
        .flatten();
    Ok(Page { items, next_cursor })
}

/// Sends the account's delivery `id` again, now (see
/// [`deliveries::retry`]); a pending one is refused, it is retried anyway.
pub async fn retry(core: &Core, account: AccountId, id: &str) -> CoreResult<DeliveryView> {
    let id = Uuid::parse_str(id.trim())
        .map_err(|_| CoreError::not_found("webhook delivery not found"))?;
    let view = deliveries::retry(&core.store, Some(account), id).await?;
    // Due now: the worker need not wait for its next look.
    notify_committed(core);
    Ok(view)
}
