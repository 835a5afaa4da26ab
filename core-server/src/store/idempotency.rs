//! Idempotency keys. A submission with a key takes it by inserting
//! (account, key) — the primary key decides between racing submits, on one
//! core or several — and a submission that finds the key taken is answered
//! with the request the key created, or refused if it submitted something
//! else. A key older than a day gives way to the next submission with it.

use std::collections::{BTreeSet, HashMap};

use sea_orm::{
    sea_query::{OnConflict, Query},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set,
};
use uuid::Uuid;

use super::{entities::idempotency_key, submits::Keyed, Store};
use crate::{
    error::CoreResult,
    model::{now_millis, AccountId, Submission, IDEMPOTENCY_WINDOW_MS},
};

/// Takes the keys of `items` (whose new requests would be `ids`) and says
/// what each key decided; an item without a key is [`Keyed::New`].
pub(crate) async fn claim_keys(
    txn: &impl ConnectionTrait,
    items: &[(AccountId, &Submission)],
    ids: &[Uuid],
) -> CoreResult<Vec<Keyed>> {
    let keyed: Vec<(usize, AccountId, &str, String)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, (account, submission))| {
            let key = submission.idempotency_key.as_deref()?;
            Some((i, *account, key, submission.fingerprint()))
        })
        .collect();
    let mut decided = vec![Keyed::New; items.len()];
    if keyed.is_empty() {
        return Ok(decided);
    }
    let now_ms = now_millis();
    let accounts: BTreeSet<i64> = keyed.iter().map(|(_, a, _, _)| a.0).collect();
    let keys: BTreeSet<&str> = keyed.iter().map(|(_, _, k, _)| *k).collect();
    let these = || {
        idempotency_key::Column::AccountId
            .is_in(accounts.iter().copied())
            .and(idempotency_key::Column::Key.is_in(keys.iter().copied()))
    };
    // A key past its day gives way.
    idempotency_key::Entity::delete_many()
        .filter(these())
        .filter(idempotency_key::Column::CreatedMs.lt(now_ms - IDEMPOTENCY_WINDOW_MS))
        .exec(txn)
        .await?;
    // The first submission of each key in the batch takes it, unless an
    // earlier one (committed, or racing on another core) has.
    idempotency_key::Entity::insert_many(keyed.iter().map(|(i, account, key, fingerprint)| {
        idempotency_key::ActiveModel {
            account_id: Set(account.0),
            key: Set(key.to_string()),
            request_id: Set(ids[*i]),
            fingerprint: Set(fingerprint.clone()),
            created_ms: Set(now_ms),
        }
    }))
    .on_conflict(
        OnConflict::columns([
            idempotency_key::Column::AccountId,
            idempotency_key::Column::Key,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    let taken: HashMap<(i64, String), idempotency_key::Model> = idempotency_key::Entity::find()
        .filter(these())
        .all(txn)
        .await?
        .into_iter()
        .map(|row| ((row.account_id, row.key.clone()), row))
        .collect();
    for (i, account, key, fingerprint) in keyed {
        let Some(row) = taken.get(&(account.0, key.to_string())) else {
            continue; // cannot happen: the insert or an earlier one took it
        };
        decided[i] = if row.request_id == ids[i] {
            Keyed::New
        } else if row.fingerprint == fingerprint {
            Keyed::Repeat(row.request_id)
        } else {
            Keyed::Conflict
        };
    }
    Ok(decided)
}

/// Most expired keys deleted in one statement.
const FORGET_BATCH: u64 = 1_000;

/// Deletes up to a batch of keys past their day; returns how many.
pub(crate) async fn forget_expired(store: &Store) -> CoreResult<u64> {
    let cutoff = now_millis() - IDEMPOTENCY_WINDOW_MS;
    let oldest = Query::select()
        .column(idempotency_key::Column::Key)
        .from(idempotency_key::Entity)
        .and_where(idempotency_key::Column::CreatedMs.lt(cutoff))
        .limit(FORGET_BATCH)
        .to_owned();
    let deleted = idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::CreatedMs.lt(cutoff))
        .filter(idempotency_key::Column::Key.in_subquery(oldest))
        .exec(&store.write)
        .await?;
    Ok(deleted.rows_affected)
}
