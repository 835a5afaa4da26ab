//! Storing submissions inside the writer's transaction: their idempotency
//! keys, their new chats in one insert, the requests in another (on
//! PostgreSQL with the same SQL text whatever the batch size).

use std::{collections::HashMap, sync::Arc};

use sea_orm::{
    ActiveEnum, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, IdenStatic, Iterable,
    QueryFilter, Statement,
};
use uuid::Uuid;

use super::{
    chats,
    entities::{chat, message_request},
    idempotency, publish_work,
};
use crate::{
    committed::{Cause, Committed},
    error::{CoreError, CoreResult},
    model::{new_request_id, now, AccountId, RequestStatus, RequestView, Submission, Submitted},
    Core,
};

/// Each submission's answer, in order, and what their transaction commits.
pub(crate) type Stored = (Vec<CoreResult<Submitted>>, Committed);

/// Writes accepted submissions inside the caller's transaction: their
/// idempotency keys first, then their new chats in one insert and the
/// requests in another. A submission whose key an earlier one (in this
/// batch, on another core, or within the day) already took creates nothing:
/// it is answered with that request, or refused if it submitted something
/// else.
pub(crate) async fn insert_submissions(
    core: &Core,
    txn: &impl ConnectionTrait,
    items: &[(AccountId, &Submission)],
) -> CoreResult<Stored> {
    if items.is_empty() {
        return Ok(Default::default());
    }
    let ids: Vec<Uuid> = items.iter().map(|_| new_request_id()).collect();
    let keyed = idempotency::claim_keys(txn, items, &ids).await?;
    let fresh: Vec<usize> = (0..items.len())
        .filter(|i| matches!(keyed[*i], Keyed::New))
        .collect();
    let fresh_items: Vec<(AccountId, &Submission)> = fresh.iter().map(|i| items[*i]).collect();
    let chats = chats_for(txn, &fresh_items).await?;
    let at = now();
    let requests: Vec<message_request::Model> = fresh
        .iter()
        .zip(&chats)
        .map(|(i, chat)| {
            let (account, submission) = items[*i];
            message_request::Model {
                id: ids[*i],
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
            }
        })
        .collect();
    insert_requests(txn, &requests).await?;
    let mut committed = Committed::default();
    let mut created = HashMap::with_capacity(requests.len());
    for (request, chat) in requests.into_iter().zip(chats) {
        let view = Arc::new(message_request::view(request, Some(chat)));
        committed.work.insert(AccountId(view.request.account_id));
        committed.changed_to(view.clone(), Cause::Submitted);
        created.insert(view.request.id, view);
    }
    for account in &committed.work {
        publish_work(txn, core, *account).await?;
    }
    let earlier: Vec<Uuid> = keyed
        .iter()
        .filter_map(|k| match k {
            Keyed::Repeat(id) if !created.contains_key(id) => Some(*id),
            _ => None,
        })
        .collect();
    let earlier = views_of(txn, earlier).await?;
    let answers = keyed
        .into_iter()
        .zip(&ids)
        .map(|(keyed, id)| match keyed {
            Keyed::New => created
                .get(id)
                .map(|view| RequestView::clone(view))
                .map(|view| Submitted {
                    view,
                    created: true,
                })
                .ok_or_else(|| CoreError::Unavailable("a stored request went missing".into())),
            Keyed::Repeat(first) => created
                .get(&first)
                .map(|view| &**view)
                .or_else(|| earlier.get(&first))
                .cloned()
                .map(|view| Submitted {
                    view,
                    created: false,
                })
                .ok_or_else(|| {
                    CoreError::Unavailable("the idempotency key's request is gone".into())
                }),
            Keyed::Conflict => Err(CoreError::AlreadyExists(
                "Idempotency-Key: already used for a different submission within the last 24 hours"
                    .into(),
            )),
        })
        .collect();
    Ok((answers, committed))
}

/// What a submission's idempotency key decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keyed {
    /// No key, or a key first used now: store the request.
    New,
    /// The key created this request earlier, for the same submission.
    Repeat(Uuid),
    /// The key created a request for a different submission.
    Conflict,
}

/// The requests `ids` with their chats, by id.
async fn views_of(
    txn: &impl ConnectionTrait,
    ids: Vec<Uuid>,
) -> CoreResult<HashMap<Uuid, RequestView>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(message_request::Entity::find()
        .filter(message_request::Column::Id.is_in(ids))
        .find_also_related(chat::Entity)
        .all(txn)
        .await?
        .into_iter()
        .map(|(request, chat)| (request.id, message_request::view(request, chat)))
        .collect())
}

/// Inserts `requests` in one statement. PostgreSQL takes them as one JSON
/// parameter, so the statement's text (and each connection's prepared
/// statement) is the same for every batch size; SQLite takes a multi-row
/// insert.
async fn insert_requests(
    txn: &impl ConnectionTrait,
    requests: &[message_request::Model],
) -> CoreResult<()> {
    if requests.is_empty() {
        return Ok(());
    }
    if txn.get_database_backend() != DatabaseBackend::Postgres {
        message_request::Entity::insert_many(
            requests
                .iter()
                .cloned()
                .map(message_request::ActiveModel::from),
        )
        .exec_without_returning(txn)
        .await?;
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "account_id": r.account_id,
                "chat_id": r.chat_id,
                "message": r.message,
                "response_type": r.response_type.to_value(),
                "thinking_time": r.thinking_time.to_value(),
                "status": r.status.to_value(),
                "response": r.response,
                "error_message": r.error_message,
                "queued_at": r.queued_at,
                "started_at": r.started_at,
                "completed_at": r.completed_at,
                "attempts": r.attempts,
                "lease_session": r.lease_session,
                "lease_node": r.lease_node,
                "lease_expires_at": r.lease_expires_at,
            })
        })
        .collect();
    let columns = message_request::Column::iter()
        .map(|c| c.as_str().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO message_requests ({columns}) \
         SELECT {columns} FROM json_populate_recordset(NULL::message_requests, $1::json)"
    );
    txn.execute(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        sql,
        [serde_json::Value::Array(rows).to_string().into()],
    ))
    .await?;
    Ok(())
}

/// New, unnamed chats of `accounts`, in one insert; their ids are assigned
/// in order. On PostgreSQL the accounts go as one array, so the statement's
/// text is the same for every batch size.
async fn insert_unnamed_chats(
    txn: &impl ConnectionTrait,
    accounts: Vec<AccountId>,
) -> CoreResult<Vec<chat::Model>> {
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let mut chats = if txn.get_database_backend() == DatabaseBackend::Postgres {
        let accounts: Vec<i64> = accounts.iter().map(|a| a.0).collect();
        let statement = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "INSERT INTO chats (account_id, created_at, updated_at) \
             SELECT a, $2, $2 FROM unnest($1::bigint[]) WITH ORDINALITY AS u(a, n) ORDER BY n \
             RETURNING id, account_id, chatgpt_id, title, created_at, updated_at",
            [accounts.into(), now().into()],
        );
        chat::Entity::find()
            .from_raw_sql(statement)
            .all(txn)
            .await?
    } else {
        chat::Entity::insert_many(accounts.into_iter().map(chats::unnamed))
            .exec_with_returning_many(txn)
            .await?
    };
    // Ids are assigned in row order; RETURNING's order is not promised.
    chats.sort_by_key(|c| c.id);
    Ok(chats)
}

/// The chat of each submission, in order: new chats are created with one
/// multi-row insert, named chats found or created one by one.
async fn chats_for(
    txn: &impl ConnectionTrait,
    items: &[(AccountId, &Submission)],
) -> CoreResult<Vec<chat::Model>> {
    let fresh: Vec<AccountId> = items
        .iter()
        .filter(|(_, s)| s.chat_id.is_none())
        .map(|(account, _)| *account)
        .collect();
    let mut fresh = insert_unnamed_chats(txn, fresh).await?.into_iter();
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
