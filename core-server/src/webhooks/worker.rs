//! The delivery worker: claims due deliveries, sends each one signed, with a
//! bounded number in flight (in all, and per account so that one account's
//! hanging receiver cannot hold up the others), and settles it with the
//! outcome — the attempts that finish together in one transaction.
//!
//! It sleeps until the earliest pending delivery falls due, but never longer
//! than [`IDLE_RECHECK`] (deliveries enqueued by other cores, an operator's
//! retry, or a lapsed claim are noticed within that), and wakes at once when
//! this core commits a terminal transition ([`super::notify_committed`]) or
//! an attempt finishes.

use std::{error::Error as _, sync::Arc, time::Duration};

use chrono::Utc;
use reqwest::{header, redirect, Client};
use tokio::{
    sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use super::{config::WebhookConfig, destination::redact, signature};
use crate::{
    error::CoreResult,
    model::now,
    model::AccountId,
    store,
    store::entities::webhook_delivery::{self, DeliveryStatus},
    store::outbox::{self, epoch_millis, Outcome},
    Core,
};

/// The longest the worker sleeps without looking at the table.
const IDLE_RECHECK: Duration = Duration::from_secs(1);
/// After a claim that took fewer deliveries than it could (it skipped rows
/// another core is claiming), a short pause instead of a busy loop.
const PARTIAL_CLAIM_PAUSE: Duration = Duration::from_millis(25);
/// Most deliveries claimed in one statement.
const MAX_BATCH: usize = 64;

enum Next {
    /// A full batch was claimed: more may be due.
    Now,
    At(Instant),
}

fn http_client(config: &WebhookConfig) -> reqwest::Result<Client> {
    let mut builder = Client::builder();
    if let Some(resolver) = config.destinations().resolver() {
        builder = builder.dns_resolver(resolver);
    }
    builder
        .redirect(redirect::Policy::none())
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("chatrelay-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Runs until `core.shutdown` is cancelled. Attempts already in flight then
/// finish (each within the per-attempt timeout) and are recorded; `Core::stop`
/// waits for them.
pub async fn run(core: Arc<Core>) {
    let client = match http_client(&core.config.webhooks) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhook worker cannot build its HTTP client; webhooks stay pending");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(core.config.webhooks.concurrency as usize));
    // Each attempt holds a sender; the recorder ends after the last.
    let (settle, finished) = mpsc::unbounded_channel();
    core.tasks.spawn(settle_batches(core.clone(), finished));
    // When due deliveries whose schedule is used up are next failed.
    let mut sweep_at = Instant::now();
    loop {
        let permit = tokio::select! {
            _ = core.shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let wake_at = match claim_and_send(&core, &client, &settle, &permits, permit, &mut sweep_at)
            .await
        {
            Ok(Next::Now) => continue,
            Ok(Next::At(at)) => at,
            Err(e) => {
                tracing::warn!(error = %e, "webhook worker could not read the outbox; trying again");
                Instant::now() + IDLE_RECHECK
            }
        };
        tokio::select! {
            _ = core.shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = core.webhooks.wake.notified() => {}
        }
    }
}

/// One round: if something is due, claim as many deliveries as there are
/// free permits and start an attempt for each (and, once a recheck, fail
/// the due deliveries whose schedule is used up).
async fn claim_and_send(
    core: &Arc<Core>,
    client: &Client,
    settle: &mpsc::UnboundedSender<Settling>,
    permits: &Arc<Semaphore>,
    first: OwnedSemaphorePermit,
    sweep_at: &mut Instant,
) -> CoreResult<Next> {
    let now_ms = epoch_millis(Utc::now());
    let recheck = Instant::now() + IDLE_RECHECK;
    match outbox::next_due(core).await? {
        None => return Ok(Next::At(recheck)),
        Some(due) if due > now_ms => {
            let wait = Duration::from_millis(u64::try_from(due - now_ms).unwrap_or(0));
            return Ok(Next::At(recheck.min(Instant::now() + wait)));
        }
        Some(_) => {}
    }
    // The claim passes over deliveries whose schedule is used up; failing
    // them reads every due delivery, so it runs once a recheck at most.
    if Instant::now() >= *sweep_at {
        *sweep_at = recheck;
        let exhausted = outbox::fail_exhausted(core, now_ms).await?;
        if exhausted > 0 {
            tracing::warn!(
                deliveries = exhausted,
                "webhook deliveries failed: their last attempt never reported back"
            );
        }
    }
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match permits.clone().try_acquire_owned() {
            Ok(permit) => batch.push(permit),
            Err(_) => break,
        }
    }
    let claimed = outbox::claim_due(core, now_ms, batch.len() as u64).await?;
    let full = claimed.len() == batch.len();
    // Nothing claimable although something is due: every due delivery
    // belongs to an account already at its share. An attempt that ends
    // (or a new commit) wakes the worker; until then, the usual recheck.
    let none = claimed.is_empty();
    for (delivery, permit) in claimed.into_iter().zip(batch) {
        let task_core = core.clone();
        let client = client.clone();
        let settle = settle.clone();
        core.tasks.spawn(async move {
            attempt(&task_core, &client, delivery, &settle).await;
            drop(permit);
            // The delivery's next due time moved: let the worker re-plan.
            task_core.webhooks.wake.notify_one();
        });
    }
    Ok(if full {
        Next::Now
    } else if none {
        Next::At(recheck)
    } else {
        Next::At(Instant::now() + PARTIAL_CLAIM_PAUSE)
    })
}

/// An attempt that went out, on its way to be recorded.
struct Settling {
    delivery: webhook_delivery::Model,
    outcome: Outcome,
    /// Told once it is recorded.
    recorded: oneshot::Sender<()>,
}

/// Records attempts as they finish, together: everything that finished
/// while the last batch was being recorded goes in one transaction (one
/// commit, one sync of the database) instead of one each. Runs until every
/// attempt that could still finish has been recorded.
async fn settle_batches(core: Arc<Core>, mut finished: mpsc::UnboundedReceiver<Settling>) {
    let mut batch = Vec::new();
    while finished.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let attempts: Vec<_> = batch.iter().map(|s| (&s.delivery, &s.outcome)).collect();
        let settled = outbox::settle_all(&core, &attempts).await;
        for (settling, settled) in batch.drain(..).zip(settled) {
            report(&settling.delivery, settled, &settling.outcome);
            let _ = settling.recorded.send(());
        }
    }
}

/// Sends one claimed delivery and has it recorded.
async fn attempt(
    core: &Core,
    client: &Client,
    delivery: webhook_delivery::Model,
    settle: &mpsc::UnboundedSender<Settling>,
) {
    let attempted_at = now();
    let started = Instant::now();
    let sent = send(core, client, &delivery).await;
    let outcome = Outcome {
        attempted_at,
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        url: sent.url,
        status_code: sent.status_code,
        error: sent.error,
    };
    let result = if outcome.error.is_none() {
        "success"
    } else {
        "failure"
    };
    metrics::counter!("chatrelay_webhook_attempts_total", "outcome" => result).increment(1);
    metrics::histogram!("chatrelay_webhook_attempt_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    let (recorded, done) = oneshot::channel();
    let settling = Settling {
        delivery,
        outcome,
        recorded,
    };
    if let Err(mpsc::error::SendError(settling)) = settle.send(settling) {
        // Only if the recorder ended, which it does after every attempt.
        let settled = outbox::settle(core, &settling.delivery, &settling.outcome).await;
        report(&settling.delivery, settled, &settling.outcome);
        return;
    }
    let _ = done.await;
}

/// Logs how recording an attempt went.
fn report(
    delivery: &webhook_delivery::Model,
    settled: CoreResult<Option<DeliveryStatus>>,
    outcome: &Outcome,
) {
    let error = outcome.error.as_deref().unwrap_or_default();
    match settled {
        Ok(Some(DeliveryStatus::Succeeded)) => tracing::info!(
            webhook_id = %delivery.id,
            request_id = %delivery.request_id,
            attempt = delivery.attempts,
            "webhook delivered"
        ),
        Ok(Some(DeliveryStatus::Pending)) => tracing::info!(
            webhook_id = %delivery.id,
            request_id = %delivery.request_id,
            attempt = delivery.attempts,
            error,
            "webhook attempt failed; it will be retried"
        ),
        Ok(Some(DeliveryStatus::Failed)) => tracing::warn!(
            webhook_id = %delivery.id,
            request_id = %delivery.request_id,
            attempt = delivery.attempts,
            error,
            "webhook failed: its last attempt failed (`chatrelay webhook retry` sends it again)"
        ),
        Ok(None) => tracing::warn!(
            webhook_id = %delivery.id,
            attempt = delivery.attempts,
            "webhook attempt finished after its claim lapsed; a newer attempt owns the delivery"
        ),
        Err(e) => tracing::error!(
            webhook_id = %delivery.id,
            attempt = delivery.attempts,
            error = %e,
            "could not record a webhook attempt; the delivery falls due again when its claim expires"
        ),
    }
}

/// What sending produced.
struct Sent {
    url: String,
    status_code: Option<i32>,
    error: Option<String>,
}

impl Sent {
    fn not_sent(url: String, error: impl Into<String>) -> Self {
        Self {
            url,
            status_code: None,
            error: Some(error.into()),
        }
    }
}

/// POSTs the payload to the account's current URL, signed with its current
/// secret (so a rotated secret or a corrected URL applies to retries too).
async fn send(core: &Core, client: &Client, delivery: &webhook_delivery::Model) -> Sent {
    let account = match store::accounts::find(&core.store, AccountId(delivery.account_id)).await {
        Ok(Some(account)) => account,
        Ok(None) => return Sent::not_sent(String::new(), "the account no longer exists"),
        Err(e) => return Sent::not_sent(String::new(), format!("database error: {e}")),
    };
    let Some(full_url) = account.webhook_url else {
        return Sent::not_sent(
            String::new(),
            "the account has no webhook URL any more; not sent",
        );
    };
    // What is recorded and logged: never the userinfo or query string.
    let url = redact(&full_url);
    let destinations = core.config.webhooks.destinations();
    match reqwest::Url::parse(&full_url) {
        Ok(parsed) => {
            if let Err(why) = destinations.check_literal(&parsed) {
                return Sent::not_sent(url, format!("not sent: {why}"));
            }
        }
        Err(e) => return Sent::not_sent(url, format!("not sent: not a URL: {e}")),
    }
    let id = delivery.id.to_string();
    let timestamp = Utc::now().timestamp();
    let signature =
        match signature::sign(&account.webhook_secret, &id, timestamp, &delivery.payload) {
            Ok(signature) => signature,
            Err(e) => return Sent::not_sent(url, e.to_string()),
        };
    let result = client
        .post(&full_url)
        .header(header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.payload.clone())
        .send()
        .await;
    match result {
        Ok(response) => {
            let status = response.status();
            let error = if status.is_success() {
                None
            } else if status.is_redirection() {
                Some(format!("HTTP {status}: redirects are not followed"))
            } else {
                Some(format!("HTTP {status}"))
            };
            Sent {
                url,
                status_code: Some(i32::from(status.as_u16())),
                error,
            }
        }
        Err(e) if e.is_timeout() => {
            let timeout = core.config.webhooks.timeout;
            Sent::not_sent(url, format!("timed out after {timeout:?}"))
        }
        // Without the URL: reqwest's errors name it, query string and all.
        Err(e) => Sent::not_sent(url, describe(&e.without_url())),
    }
}

/// The error and its causes on one line ("connection refused" is a cause).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
