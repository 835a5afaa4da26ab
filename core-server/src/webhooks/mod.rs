//! Webhooks that are never lost. Each terminal transition writes its
//! delivery into an outbox table in the same transaction ([`enqueue`]); a
//! worker in the core ([`start_worker`]) claims due deliveries, POSTs them
//! signed the Standard Webhooks way, records every attempt, and retries on a
//! schedule until the receiver answers 2xx or the schedule is used up.
//!
//! - `config`: the retry schedule, per-attempt timeout and concurrency.
//! - `destination`: which addresses a webhook may go to; URL redaction.
//! - `payload`: the JSON body of `api-spec.md`.
//! - `signature`: `webhook-signature` (HMAC-SHA256 over `id.timestamp.body`).
//! - `store::outbox`: enqueue, claim and settle — the table's rules.
//! - `worker`: the delivery loop and the HTTP attempt.
//! - `store::deliveries`: what operators list and retry.
//! - `deliveries`: an account's own list and retry, for its API calls.

mod config;
pub mod deliveries;
pub mod destination;
pub(crate) mod payload;
mod signature;
mod worker;

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use tokio::sync::Notify;

pub use crate::store::deliveries::{get, list, retry, DeliveryView, MAX_LIST};
pub use config::{
    parse_duration, RetrySchedule, WebhookConfig, DEFAULT_CONCURRENCY, DEFAULT_RETRY_SCHEDULE,
    DEFAULT_TIMEOUT,
};
pub use destination::Destinations;
pub use signature::{sign, InvalidSecret};

use crate::{error::CoreResult, model::MessageRequest, Core};

/// The webhook worker's state that lives in [`Core`].
#[derive(Debug, Default)]
pub struct Webhooks {
    /// Wakes the worker: a delivery was committed or an attempt settled.
    wake: Notify,
}

/// Records the webhook deliveries for requests that have just become
/// terminal. Called inside the transaction that made them terminal, so the
/// deliveries and the transitions commit together or not at all. An account
/// without a webhook URL gets no delivery; a second call for the same
/// request changes nothing.
pub async fn enqueue(conn: &impl ConnectionTrait, requests: &[&MessageRequest]) -> CoreResult<()> {
    crate::store::outbox::enqueue(conn, requests).await
}

/// Tells the worker that a transaction which enqueued a delivery has
/// committed, so the webhook goes out now rather than at the worker's next
/// periodic look (at most a second later).
pub fn notify_committed(core: &Core) {
    core.webhooks.wake.notify_one();
}

/// Starts the delivery worker on `core.tasks`; it stops when `core.shutdown`
/// is cancelled, after the attempts in flight have finished.
pub fn start_worker(core: &Arc<Core>) {
    core.tasks.spawn(worker::run(core.clone()));
}
