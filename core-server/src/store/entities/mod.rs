//! One sea-orm entity per table.

pub mod account;
pub mod api_key;
pub mod chat;
pub mod extension_session;
pub mod idempotency_key;
pub mod message_request;
pub mod webhook_attempt;
pub mod webhook_delivery;
