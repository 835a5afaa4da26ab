//! Accounts and their API keys in the database. Keys are stored only as
//! their SHA-256; every lookup is by that hash. The rules (key format,
//! webhook URLs, what a caller must present) are [`crate::accounts`]'s.

use std::collections::{BTreeSet, HashMap};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, SqlErr,
    TransactionTrait,
};

use super::{
    entities::{account, api_key},
    Store,
};
use crate::{
    error::{CoreError, CoreResult},
    model::{now, AccountId},
};

/// A key row: its hash, and the prefix operators see.
pub(crate) struct NewKey {
    pub hash: String,
    pub prefix: String,
}

fn key_row(account_id: i64, key: NewKey) -> api_key::ActiveModel {
    api_key::ActiveModel {
        account_id: Set(account_id),
        key_hash: Set(key.hash),
        key_prefix: Set(key.prefix),
        created_at: Set(now()),
        ..Default::default()
    }
}

/// Inserts an account with its first key, in one transaction.
pub(crate) async fn insert(
    store: &Store,
    name: &str,
    webhook_url: Option<String>,
    webhook_secret: String,
    key: NewKey,
) -> CoreResult<account::Model> {
    let txn = store.write.begin().await?;
    let inserted = account::ActiveModel {
        name: Set(name.to_string()),
        webhook_url: Set(webhook_url),
        webhook_secret: Set(webhook_secret),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(&txn)
    .await;
    let account = match inserted {
        Ok(account) => account,
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Err(CoreError::AlreadyExists(format!(
                "an account named {name:?} already exists"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    key_row(account.id, key).insert(&txn).await?;
    txn.commit().await?;
    Ok(account)
}

/// Every account, oldest first, with the prefixes of its keys.
pub(crate) async fn list(store: &Store) -> CoreResult<Vec<(account::Model, Vec<String>)>> {
    let accounts = account::Entity::find()
        .order_by_asc(account::Column::Id)
        .all(&store.read)
        .await?;
    let keys = api_key::Entity::find()
        .order_by_asc(api_key::Column::Id)
        .all(&store.read)
        .await?;
    Ok(accounts
        .into_iter()
        .map(|account| {
            let prefixes = keys
                .iter()
                .filter(|k| k.account_id == account.id)
                .map(|k| k.key_prefix.clone())
                .collect();
            (account, prefixes)
        })
        .collect())
}

pub(crate) async fn find_by_name(store: &Store, name: &str) -> CoreResult<Option<account::Model>> {
    Ok(account::Entity::find()
        .filter(account::Column::Name.eq(name))
        .one(&store.read)
        .await?)
}

pub(crate) async fn find(store: &Store, id: AccountId) -> CoreResult<Option<account::Model>> {
    Ok(account::Entity::find_by_id(id.0).one(&store.read).await?)
}

/// Saves the account's webhook URL and signing secret as given.
pub(crate) async fn update_webhook(
    store: &Store,
    account: account::Model,
    url: Option<String>,
    secret: String,
) -> CoreResult<account::Model> {
    let mut active: account::ActiveModel = account.into();
    active.webhook_url = Set(url);
    active.webhook_secret = Set(secret);
    Ok(active.update(&store.write).await?)
}

/// Adds a key to the account; unless `keep_existing`, its other keys are
/// deleted in the same transaction.
pub(crate) async fn add_key(
    store: &Store,
    account: AccountId,
    key: NewKey,
    keep_existing: bool,
) -> CoreResult<()> {
    let txn = store.write.begin().await?;
    if !keep_existing {
        api_key::Entity::delete_many()
            .filter(api_key::Column::AccountId.eq(account.0))
            .exec(&txn)
            .await?;
    }
    key_row(account.0, key).insert(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// The accounts of the keys whose SHA-256 are `hashes`: by point reads
/// where the store has them (SQLite's or PostgreSQL's), else (or if those
/// fail) in one query. A hash
/// of no key is absent from the answer.
pub(crate) async fn of_key_hashes(
    store: &Store,
    hashes: &BTreeSet<&str>,
) -> CoreResult<HashMap<String, AccountId>> {
    let found = store.point_read(|reads| {
        hashes
            .iter()
            .map(|hash| Ok((*hash, reads.account_of_key(hash)?)))
            .collect::<Result<Vec<_>, _>>()
    });
    if let Some(found) = found {
        return Ok(found
            .into_iter()
            .filter_map(|(hash, account)| Some((hash.to_string(), AccountId(account?))))
            .collect());
    }
    if let Some(reads) = store.postgres_point_reads() {
        let hashes: Vec<&str> = hashes.iter().copied().collect();
        match reads.accounts_of_keys(&hashes).await {
            Ok(found) => {
                return Ok(found
                    .into_iter()
                    .map(|(hash, account)| (hash, AccountId(account)))
                    .collect())
            }
            Err(e) => tracing::debug!(error = %e, "point read failed; asking sea-orm"),
        }
    }
    Ok(api_key::Entity::find()
        .filter(api_key::Column::KeyHash.is_in(hashes.iter().copied()))
        .all(&store.read)
        .await?
        .into_iter()
        .map(|k| (k.key_hash, AccountId(k.account_id)))
        .collect())
}

/// Accounts named in one key query.
const KEYS_CHUNK: usize = 500;

/// The SHA-256s of the keys that work for `accounts`, with their accounts.
pub(crate) async fn key_hashes_of(
    store: &Store,
    accounts: &[AccountId],
) -> CoreResult<Vec<(AccountId, String)>> {
    let mut found = Vec::new();
    for chunk in accounts.chunks(KEYS_CHUNK) {
        found.extend(
            api_key::Entity::find()
                .filter(api_key::Column::AccountId.is_in(chunk.iter().map(|a| a.0)))
                .all(&store.read)
                .await?
                .into_iter()
                .map(|k| (AccountId(k.account_id), k.key_hash)),
        );
    }
    Ok(found)
}
