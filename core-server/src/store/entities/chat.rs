//! `chats`: ChatGPT conversations, named by the extension once it knows them.

use sea_orm::entity::prelude::*;

/// A ChatGPT conversation. `chatgpt_id` and `title` stay null until the
/// extension reports them.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chats")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub chatgpt_id: Option<String>,
    pub title: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl From<Model> for crate::model::Chat {
    fn from(c: Model) -> Self {
        Self {
            id: c.id,
            account_id: c.account_id,
            chatgpt_id: c.chatgpt_id,
            title: c.title,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}
