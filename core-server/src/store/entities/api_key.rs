//! `api_keys`: an account's keys, kept only as SHA-256 hashes.

use sea_orm::entity::prelude::*;

/// An API key, stored only as the SHA-256 of the key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    #[sea_orm(unique)]
    pub key_hash: String,
    /// The first characters of the key, enough to tell keys apart in listings.
    pub key_prefix: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
