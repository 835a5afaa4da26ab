//! Accounts and their API keys. Keys are random, shown once, and stored only
//! as their SHA-256 (a key has 192 bits of entropy, so a fast hash is enough);
//! every lookup goes through the hash. This module is the one home of API-key
//! resolution; the statements are in [`crate::store::accounts`].

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{
    error::{CoreError, CoreResult},
    model::AccountId,
    store::{accounts, entities::account, Store},
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

/// The stored form of a new key.
fn stored(key: &str) -> accounts::NewKey {
    accounts::NewKey {
        hash: hash_api_key(key),
        prefix: key[..KEY_PREFIX_LEN].to_string(),
    }
}

pub async fn create(
    store: &Store,
    name: &str,
    webhook_url: Option<&str>,
) -> CoreResult<CreatedAccount> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CoreError::invalid("account name must not be empty"));
    }
    let webhook_url = validate_webhook_url(webhook_url)?;
    let api_key = new_api_key();
    let account = accounts::insert(
        store,
        name,
        webhook_url,
        new_webhook_secret(),
        stored(&api_key),
    )
    .await?;
    Ok(CreatedAccount { account, api_key })
}

pub async fn list(store: &Store) -> CoreResult<Vec<AccountSummary>> {
    Ok(accounts::list(store)
        .await?
        .into_iter()
        .map(|(account, prefixes)| AccountSummary {
            key_prefixes: prefixes.into_iter().map(|p| format!("{p}…")).collect(),
            account,
        })
        .collect())
}

pub async fn find_by_name(store: &Store, name: &str) -> CoreResult<account::Model> {
    accounts::find_by_name(store, name)
        .await?
        .ok_or_else(|| CoreError::not_found(format!("no account named {name:?}")))
}

/// Sets (or with `None`, clears) the account's webhook URL.
pub async fn set_webhook(
    store: &Store,
    name: &str,
    webhook_url: Option<&str>,
) -> CoreResult<account::Model> {
    let webhook_url = validate_webhook_url(webhook_url)?;
    let account = find_by_name(store, name).await?;
    let secret = account.webhook_secret.clone();
    accounts::update_webhook(store, account, webhook_url, secret).await
}

/// Issues a new API key. Unless `keep_existing`, every older key of the
/// account stops working in the same transaction.
pub async fn rotate_key(store: &Store, name: &str, keep_existing: bool) -> CoreResult<String> {
    let account = find_by_name(store, name).await?;
    let key = new_api_key();
    accounts::add_key(store, AccountId(account.id), stored(&key), keep_existing).await?;
    Ok(key)
}

/// Replaces the account's webhook signing secret and returns the new one.
pub async fn rotate_webhook_secret(store: &Store, name: &str) -> CoreResult<String> {
    let account = find_by_name(store, name).await?;
    let secret = new_webhook_secret();
    let url = account.webhook_url.clone();
    accounts::update_webhook(store, account, url, secret.clone()).await?;
    Ok(secret)
}

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
pub async fn authenticate_hash(store: &Store, key_hash: &str) -> CoreResult<AccountId> {
    let hashes = BTreeSet::from([key_hash]);
    accounts::of_key_hashes(store, &hashes)
        .await?
        .remove(key_hash)
        .ok_or(CoreError::Unauthenticated("invalid API key"))
}

/// Resolves the SHA-256s of many API keys at once (a submit batch's); a
/// hash of no key is absent from the answer.
pub async fn authenticate_hashes(
    store: &Store,
    key_hashes: &BTreeSet<&str>,
) -> CoreResult<HashMap<String, AccountId>> {
    accounts::of_key_hashes(store, key_hashes).await
}
