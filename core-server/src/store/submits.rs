//! Storing submissions inside the writer's transaction: their idempotency
//! keys, the chats they name, then their new chats and the requests (on
//! PostgreSQL in one statement, with the same SQL text whatever the batch
//! size; on SQLite a row per statement).

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, IdenStatic, Iterable, ModelTrait,
    QueryFilter, Statement,
};
use uuid::Uuid;

use super::{
    chats,
    entities::{chat, message_request},
    heads, idempotency, postgres,
};
use crate::{
    committed::{Cause, Committed},
    error::{CoreError, CoreResult},
    model::{new_request_id, now, AccountId, RequestStatus, RequestView, Submission, Submitted},
    Core,
};

/// What storing a batch of submissions did.
#[derive(Default)]
pub(crate) struct Stored {
    /// Each submission's answer, in order.
    pub(crate) answers: Vec<CoreResult<Submitted>>,
    /// What their transaction commits.
    pub(crate) committed: Committed,
    /// On PostgreSQL, the sessions the new requests were leased to as they
    /// were stored (see [`postgres::claims::lease_new`]), to be answered
    /// once the transaction commits.
    pub(crate) leased: Option<postgres::claims::Leased>,
}

/// Writes accepted submissions inside the caller's transaction (or alone,
/// when [`one_statement`] says so): their idempotency keys first, the chats
/// they name, then their new chats and the requests, and (on PostgreSQL)
/// the new chats' requests are leased to the sessions waiting for work and
/// the other cores are told of the rest. A submission whose key an earlier
/// one (in this batch, on another core, or within the day) already took
/// creates nothing: it is answered with that request, or refused if it
/// submitted something else.
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
    let named = named_chats(txn, &fresh_items).await?;
    let at = now();
    let mut requests: Vec<(message_request::Model, Option<i64>)> = fresh
        .iter()
        .zip(&named)
        .map(|(i, chat)| {
            let (account, submission) = items[*i];
            let chat_id = chat.as_ref().map(|c| c.id);
            let request = message_request::Model {
                id: ids[*i],
                account_id: account.0,
                // Known once the chat is stored, if it is a new one.
                chat_id: chat_id.unwrap_or_default(),
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
            };
            (request, chat_id)
        })
        .collect();
    let mut leased = None;
    let new_chats = if requests.is_empty() {
        Vec::new()
    } else if let Some(claims) = core.store.postgres_claims() {
        leased = Some(postgres::claims::lease_new(core, claims, &mut requests));
        postgres::submits::insert(core, txn, &requests, at).await?
    } else {
        insert_rows(txn, &requests, at).await?
    };
    // A request in a new chat is its chat's first; one in a named chat may
    // queue behind an older one.
    let in_named_chats = requests
        .iter()
        .filter(|(_, chat)| chat.is_some())
        .map(|(request, _)| request.id)
        .collect();
    heads::mark_behind(txn, in_named_chats).await?;
    let mut new_chats = new_chats.into_iter();
    let mut committed = Committed::default();
    let mut created = HashMap::with_capacity(requests.len());
    for ((mut request, _), chat) in requests.into_iter().zip(named) {
        let chat = match chat {
            Some(chat) => chat,
            None => {
                let id = new_chats.next().ok_or_else(too_few_chats)?;
                request.chat_id = id;
                unnamed_chat(id, request.account_id, at)
            }
        };
        let view = Arc::new(message_request::view(request, Some(chat)));
        if !leased.as_mut().is_some_and(|leased| leased.stored(&view)) {
            committed.work.insert(AccountId(view.request.account_id));
        }
        committed.changed_to(view.clone(), Cause::Submitted);
        created.insert(view.request.id, view);
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
    Ok(Stored {
        answers,
        committed,
        leased,
    })
}

/// Whether storing `items` is one statement, which needs no transaction
/// around it: on PostgreSQL, when none has an idempotency key or names a
/// chat.
pub(crate) fn one_statement(
    conn: &impl ConnectionTrait,
    items: &[(AccountId, &Submission)],
) -> bool {
    conn.get_database_backend() == DatabaseBackend::Postgres
        && items
            .iter()
            .all(|(_, s)| s.idempotency_key.is_none() && s.chat_id.is_none())
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

fn too_few_chats() -> CoreError {
    CoreError::Unavailable("chat insert returned too few rows".into())
}

/// A new chat as stored: unnamed, created and updated `at`.
fn unnamed_chat(id: i64, account_id: i64, at: DateTime<Utc>) -> chat::Model {
    chat::Model {
        id,
        account_id,
        chatgpt_id: None,
        title: None,
        created_at: at,
        updated_at: at,
    }
}

/// SQLite's way of storing `requests` (each with its chat, or `None` for a
/// new one): a row per statement, each request after its new chat. A
/// statement of one row keeps one SQL text whatever the batch's size, so it
/// stays prepared, and SQLite keeps no statement journal for it (for an
/// insert of many rows it copies every page the statement first changes, in
/// case a later row fails). The SQL is written once, from the entities'
/// columns; a row's values are bound in their order. The new chats' ids
/// come back in the order of their requests.
async fn insert_rows(
    txn: &impl ConnectionTrait,
    requests: &[(message_request::Model, Option<i64>)],
    at: DateTime<Utc>,
) -> CoreResult<Vec<i64>> {
    static CHAT_ROW: LazyLock<String> =
        LazyLock::new(|| one_row_insert::<chat::Entity>(|c| !matches!(c, chat::Column::Id)));
    static REQUEST_ROW: LazyLock<String> =
        LazyLock::new(|| one_row_insert::<message_request::Entity>(|_| true));
    let mut new_chats = Vec::new();
    for (request, chat) in requests {
        let chat_id = match chat {
            Some(id) => *id,
            None => {
                let row = unnamed_chat(0, request.account_id, at);
                let values = chat::Column::iter()
                    .filter(|c| !matches!(c, chat::Column::Id))
                    .map(|c| row.get(c));
                let stored = txn.execute(sqlite_row(&CHAT_ROW, values)).await?;
                let id = i64::try_from(stored.last_insert_id())
                    .map_err(|_| CoreError::Unavailable("a chat id out of range".into()))?;
                new_chats.push(id);
                id
            }
        };
        let values = message_request::Column::iter().map(|c| match c {
            message_request::Column::ChatId => chat_id.into(),
            c => request.get(c),
        });
        txn.execute(sqlite_row(&REQUEST_ROW, values)).await?;
    }
    Ok(new_chats)
}

/// `INSERT INTO "table" ("a", "b", …) VALUES (?, ?, …)`: one row of `E`'s
/// columns that `keep` keeps, in the entity's order.
fn one_row_insert<E: EntityTrait>(keep: impl Fn(&E::Column) -> bool) -> String {
    let columns: Vec<String> = E::Column::iter()
        .filter(|c| keep(c))
        .map(|c| format!("\"{}\"", c.as_str()))
        .collect();
    format!(
        "INSERT INTO \"{}\" ({}) VALUES ({})",
        E::default().table_name(),
        columns.join(", "),
        vec!["?"; columns.len()].join(", ")
    )
}

fn sqlite_row(sql: &str, values: impl Iterator<Item = sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DatabaseBackend::Sqlite, sql, values)
}

/// The chat of each submission that names one, found or created; `None`
/// for the others, whose new chats are stored with their requests.
async fn named_chats(
    txn: &impl ConnectionTrait,
    items: &[(AccountId, &Submission)],
) -> CoreResult<Vec<Option<chat::Model>>> {
    let mut chats = Vec::with_capacity(items.len());
    for (account, submission) in items {
        chats.push(match submission.chat_id.as_deref() {
            None => None,
            Some(chatgpt_id) => Some(chats::find_or_create(txn, *account, chatgpt_id).await?),
        });
    }
    Ok(chats)
}
