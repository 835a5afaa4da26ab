//! `message_requests`: the queue — every submitted message, its status, and its lease while delivered.

use sea_orm::{entity::prelude::*, sea_query::Expr};

use crate::model::{MessageRequest, RequestStatus, RequestView, ResponseType, ThinkingTime};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_requests")]
pub struct Model {
    /// UUIDv7: ordering by id is ordering by submission.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: i64,
    pub chat_id: i64,
    pub message: String,
    pub response_type: ResponseType,
    pub thinking_time: ThinkingTime,
    pub status: RequestStatus,
    pub response: Option<String>,
    pub error_message: Option<String>,
    pub queued_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
    /// Deliveries to extension sessions so far.
    pub attempts: i32,
    /// The extension session holding the request, while it is delivered.
    pub lease_session: Option<Uuid>,
    /// The core process that holds the lease (it renews it while alive).
    pub lease_node: Option<Uuid>,
    /// Milliseconds since the epoch after which an unrenewed lease lapses.
    pub lease_expires_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::chat::Entity",
        from = "Column::ChatId",
        to = "super::chat::Column::Id"
    )]
    Chat,
}

impl Related<super::chat::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Chat.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

/// Clears the lease columns in an update: the request is no longer held by
/// any session.
pub fn without_lease(update: sea_orm::UpdateMany<Entity>) -> sea_orm::UpdateMany<Entity> {
    update
        .col_expr(Column::LeaseSession, Expr::value(Option::<Uuid>::None))
        .col_expr(Column::LeaseNode, Expr::value(Option::<Uuid>::None))
        .col_expr(Column::LeaseExpiresAt, Expr::value(Option::<i64>::None))
}

impl From<Model> for MessageRequest {
    fn from(r: Model) -> Self {
        Self {
            id: r.id,
            account_id: r.account_id,
            chat_id: r.chat_id,
            message: r.message,
            response_type: r.response_type,
            thinking_time: r.thinking_time,
            status: r.status,
            response: r.response,
            error_message: r.error_message,
            queued_at: r.queued_at,
            started_at: r.started_at,
            completed_at: r.completed_at,
            attempts: r.attempts,
        }
    }
}

/// The request with its chat's ChatGPT id, as callers see it.
pub fn view(request: Model, chat: Option<super::chat::Model>) -> RequestView {
    RequestView {
        request: request.into(),
        chat: chat.and_then(|c| c.chatgpt_id),
    }
}
