//! Accounts and their API keys. Keys are random, shown once, and stored only
//! as their SHA-256 (a key has 192 bits of entropy, so a fast hash is enough);
//! every lookup goes through the hash.

use base64::Engine as _;
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, SqlErr,
    TransactionTrait,
};
use sha2::{Digest, Sha256};

use crate::{
    error::{CoreError, CoreResult},
    model::{now, AccountId},
    store::{
        entities::{account, api_key},
        Store,
    },
};

/// A new account, with the secrets that are shown only at creation.
#[derive(Debug)]
pub struct CreatedAccount {
    pub account: account::Model,
    pub api_key: String,
}

/// An account as operators list it.
#[derive(Debug)]
pub struct AccountSummary {
    pub account: account::Model,
    pub key_prefixes: Vec<String>,
}

const KEY_PREFIX_LEN: usize = 11;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn new_api_key() -> String {
    format!("cr_{}", hex::encode(random_bytes::<24>()))
}

/// A Standard Webhooks signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_webhook_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
    )
}

pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn validate_webhook_url(url: Option<&str>) -> CoreResult<Option<String>> {
    let Some(raw) = url.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let parsed = url::Url::parse(raw)
        .map_err(|e| CoreError::invalid(format!("webhook URL {raw:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(CoreError::invalid(format!(
            "webhook URL {raw:?} must be an http:// or https:// URL"
        )));
    }
    Ok(Some(parsed.to_string()))
}

fn key_model(account_id: i64, key: &str) -> api_key::ActiveModel {
    api_key::ActiveModel {
        account_id: Set(account_id),
        key_hash: Set(hash_api_key(key)),
        key_prefix: Set(key[..KEY_PREFIX_LEN].to_string()),
        created_at: Set(now()),
        ..Default::default()
    }
}

pub async fn create(
    db: &Store,
    name: &str,
    webhook_url: Option<&str>,
) -> CoreResult<CreatedAccount> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CoreError::invalid("account name must not be empty"));
    }
    let webhook_url = validate_webhook_url(webhook_url)?;
    let api_key = new_api_key();
    let txn = db.write.begin().await?;
    let inserted = account::ActiveModel {
        name: Set(name.to_string()),
        webhook_url: Set(webhook_url),
        webhook_secret: Set(new_webhook_secret()),
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
    key_model(account.id, &api_key).insert(&txn).await?;
    txn.commit().await?;
    Ok(CreatedAccount { account, api_key })
}

pub async fn list(db: &Store) -> CoreResult<Vec<AccountSummary>> {
    let accounts = account::Entity::find()
        .order_by_asc(account::Column::Id)
        .all(&db.read)
        .await?;
    let keys = api_key::Entity::find()
        .order_by_asc(api_key::Column::Id)
        .all(&db.read)
        .await?;
    Ok(accounts
        .into_iter()
        .map(|account| AccountSummary {
            key_prefixes: keys
                .iter()
                .filter(|k| k.account_id == account.id)
                .map(|k| format!("{}…", k.key_prefix))
                .collect(),
            account,
        })
        .collect())
}

pub async fn find_by_name(db: &Store, name: &str) -> CoreResult<account::Model> {
    account::Entity::find()
        .filter(account::Column::Name.eq(name))
        .one(&db.read)
        .await?
        .ok_or_else(|| CoreError::not_found(format!("no account named {name:?}")))
}

/// Sets (or with `None`, clears) the account's webhook URL.
pub async fn set_webhook(
    db: &Store,
    name: &str,
    webhook_url: Option<&str>,
) -> CoreResult<account::Model> {
    let webhook_url = validate_webhook_url(webhook_url)?;
    let account = find_by_name(db, name).await?;
    let mut active: account::ActiveModel = account.into();
    active.webhook_url = Set(webhook_url);
    Ok(active.update(&db.write).await?)
}

/// Issues a new API key. Unless `keep_existing`, every older key of the
/// account stops working in the same transaction.
pub async fn rotate_key(db: &Store, name: &str, keep_existing: bool) -> CoreResult<String> {
    let account = find_by_name(db, name).await?;
    let key = new_api_key();
    let txn = db.write.begin().await?;
    if !keep_existing {
        api_key::Entity::delete_many()
            .filter(api_key::Column::AccountId.eq(account.id))
            .exec(&txn)
            .await?;
    }
    key_model(account.id, &key).insert(&txn).await?;
    txn.commit().await?;
    Ok(key)
}

/// Replaces the account's webhook signing secret and returns the new one.
pub async fn rotate_webhook_secret(db: &Store, name: &str) -> CoreResult<String> {
    let account = find_by_name(db, name).await?;
    let secret = new_webhook_secret();
    let mut active: account::ActiveModel = account.into();
    active.webhook_secret = Set(secret.clone());
    active.update(&db.write).await?;
    Ok(secret)
}

/// Resolves an API key to its account.
/// The API key the caller sent, if it sent one.
pub fn present_key(key: Option<&str>) -> CoreResult<&str> {
    key.map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(CoreError::Unauthenticated(
            "missing API key (X-API-Key header)",
        ))
}

pub async fn authenticate(db: &Store, key: Option<&str>) -> CoreResult<AccountId> {
    authenticate_hash(db, &hash_api_key(present_key(key)?)).await
}

/// Resolves the SHA-256 of an API key to its account.
pub async fn authenticate_hash(db: &Store, key_hash: &str) -> CoreResult<AccountId> {
    api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(key_hash))
        .one(&db.read)
        .await?
        .map(|k| AccountId(k.account_id))
        .ok_or(CoreError::Unauthenticated("invalid API key"))
}
