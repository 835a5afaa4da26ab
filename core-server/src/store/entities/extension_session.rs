//! `extension_sessions`: the extension sessions open on every core, so that
//! any core can list an account's sessions.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "extension_sessions")]
pub struct Model {
    /// The session's id: `lease_session` of the requests it holds.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: i64,
    /// The core holding the session (its `node_id`, as in `lease_node`).
    pub node: Uuid,
    pub connected_at: DateTimeUtc,
    /// Milliseconds since the epoch when its core last said it was open.
    pub seen_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
