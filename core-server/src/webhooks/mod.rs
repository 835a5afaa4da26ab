//! Webhook deliveries (outbox, retries, signatures). Stub: the interface the
//! rest of the core relies on.

use std::sync::Arc;

use sea_orm::ConnectionTrait;

use crate::{db::entities::message_request, error::CoreResult, Core};

/// Webhook settings.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct WebhookConfig {}

/// Records the webhook delivery for a request that has just become terminal.
/// Called inside the transaction that made it terminal, so the delivery and
/// the transition commit together or not at all.
pub async fn enqueue(
    _conn: &impl ConnectionTrait,
    _request: &message_request::Model,
) -> CoreResult<()> {
    Ok(())
}

/// Starts the delivery worker; it stops when `core.shutdown` is cancelled.
pub fn start_worker(_core: &Arc<Core>) {}
