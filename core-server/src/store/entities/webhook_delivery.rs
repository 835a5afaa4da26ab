//! `webhook_deliveries`: the outbox — one webhook per finished request, with its retry state.

use sea_orm::entity::prelude::*;

/// Where a webhook delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in flight).
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The receiver answered 2xx.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// Every attempt of the retry schedule failed.
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// One webhook for one terminal request: the outbox row the worker sends.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    /// UUIDv7, sent as `webhook-id`: stable across attempts, so receivers
    /// can de-duplicate.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: i64,
    #[sea_orm(unique)]
    pub request_id: Uuid,
    /// Where the latest attempt went (the account's URL at that time).
    pub url: String,
    /// The JSON body, fixed when the request finished.
    pub payload: String,
    pub status: DeliveryStatus,
    /// Attempts started so far; each claim takes the next number.
    pub attempts: i32,
    /// `attempts` when the current retry schedule began (an operator's
    /// retry starts a fresh schedule).
    pub retry_from: i32,
    /// Milliseconds since the epoch when the delivery is next due. While an
    /// attempt is in flight this is the claim's expiry: if the claiming core
    /// dies, the delivery falls due again by itself.
    pub next_attempt_at: i64,
    /// The core that holds the claim of the attempt in flight.
    pub claimed_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub last_attempt_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::webhook_attempt::Entity")]
    Attempts,
}

impl Related<super::webhook_attempt::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Attempts.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
