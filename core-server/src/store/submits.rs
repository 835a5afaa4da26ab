//! Storing submissions: their new chats in one insert, the requests in
//! another, inside the writer's transaction.

use sea_orm::{DatabaseTransaction, EntityTrait};

use super::{
    chats,
    entities::{chat, message_request},
    publish_work,
};
use crate::{
    committed::{Cause, Committed},
    error::{CoreError, CoreResult},
    model::{new_request_id, now, AccountId, RequestStatus, RequestView, Submission},
    Core,
};

/// Writes accepted submissions inside the caller's transaction: their new
/// chats in one insert, the requests in another.
/// The stored requests, in order, and what their transaction commits.
pub(crate) type Stored = (Vec<RequestView>, Committed);

pub(crate) async fn insert_submissions(
    core: &Core,
    txn: &DatabaseTransaction,
    items: &[(AccountId, &Submission)],
) -> CoreResult<Stored> {
    if items.is_empty() {
        return Ok(Default::default());
    }
    let chats = chats_for(txn, items).await?;
    let at = now();
    let requests: Vec<message_request::Model> = items
        .iter()
        .zip(&chats)
        .map(|((account, submission), chat)| message_request::Model {
            id: new_request_id(),
            account_id: account.0,
            chat_id: chat.id,
            message: submission.message.clone(),
            response_type: submission.response_type,
            thinking_time: submission.thinking_time,
            status: RequestStatus::Idle,
            response: None,
            error_message: None,
            queued_at: at,
            started_at: None,
            completed_at: None,
            attempts: 0,
            lease_session: None,
            lease_node: None,
            lease_expires_at: None,
        })
        .collect();
    message_request::Entity::insert_many(
        requests
            .iter()
            .cloned()
            .map(message_request::ActiveModel::from),
    )
    .exec_without_returning(txn)
    .await?;
    let mut committed = Committed::default();
    for request in &requests {
        let account = AccountId(request.account_id);
        committed.changed(account, request.id, RequestStatus::Idle, Cause::Submitted);
        committed.work.insert(account);
    }
    for account in &committed.work {
        publish_work(txn, core, *account).await?;
    }
    let views = requests
        .into_iter()
        .zip(chats)
        .map(|(request, chat)| message_request::view(request, Some(chat)))
        .collect();
    Ok((views, committed))
}

/// The chat of each submission, in order: new chats are created with one
/// multi-row insert, named chats found or created one by one.
async fn chats_for(
    txn: &DatabaseTransaction,
    items: &[(AccountId, &Submission)],
) -> CoreResult<Vec<chat::Model>> {
    let fresh: Vec<chat::ActiveModel> = items
        .iter()
        .filter(|(_, s)| s.chat_id.is_none())
        .map(|(account, _)| chats::unnamed(*account))
        .collect();
    let mut fresh = if fresh.is_empty() {
        Vec::new()
    } else {
        chat::Entity::insert_many(fresh)
            .exec_with_returning_many(txn)
            .await?
    };
    // Ids are assigned in VALUES order; RETURNING's order is not promised.
    fresh.sort_by_key(|c| c.id);
    let mut fresh = fresh.into_iter();
    let mut chats = Vec::with_capacity(items.len());
    for (account, submission) in items {
        let chat = match submission.chat_id.as_deref() {
            None => fresh.next().ok_or_else(|| {
                CoreError::Unavailable("chat insert returned too few rows".into())
            })?,
            Some(chatgpt_id) => chats::find_or_create(txn, *account, chatgpt_id).await?,
        };
        chats.push(chat);
    }
    Ok(chats)
}
