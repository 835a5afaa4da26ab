//! The submit path's group commit. Submissions queue on a bounded channel; one
//! writer takes whatever has gathered (up to a batch) and stores it in a
//! single transaction with multi-row inserts, then answers each caller. Under
//! load the batches grow while the previous one commits; when idle a lone
//! submission is written at once. Callers see exactly what a transaction per
//! request would give them — their request is durable when they get an answer.
//! The store's writer drains this queue (a sole writer in one transaction
//! with the extension sessions' writes).

use std::{
    collections::{BTreeSet, HashMap},
    panic::AssertUnwindSafe,
    sync::Arc,
    time::Instant,
};

use futures::FutureExt;
use sea_orm::TransactionTrait;
use tokio::sync::oneshot;

use crate::{
    accounts, batch,
    committed::after_commit,
    error::{CoreError, CoreResult},
    model::{AccountId, RequestView, Submission},
    requests::validate,
    store::submits,
    Core,
};

/// Most submissions stored in one transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Submissions that may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

pub(crate) struct Pending {
    /// SHA-256 of the caller's API key: the batch resolves all its keys in
    /// one query, so authenticating costs no round trip of its own.
    key_hash: String,
    submission: Submission,
    reply: oneshot::Sender<CoreResult<RequestView>>,
}

pub struct Intake {
    queue: batch::Queue<Pending>,
}

/// A token bucket per account, for `CHATRELAY_SUBMIT_RATE`. Only the writer
/// task touches it.
pub(crate) struct RateLimits {
    rate: f64,
    buckets: HashMap<i64, (f64, Instant)>,
}

impl RateLimits {
    pub(crate) fn new(core: &Core) -> Self {
        Self {
            rate: f64::from(core.config.submit_rate),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `account`, or says how many seconds until one is due.
    fn take(&mut self, account: AccountId) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let (tokens, at) = self.buckets.entry(account.0).or_insert((self.rate, now));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

impl Default for Intake {
    fn default() -> Self {
        Self {
            queue: batch::Queue::new(QUEUE),
        }
    }
}

impl Intake {
    /// The writer's end of the queue; `None` once a writer took it.
    pub(crate) fn take_receiver(&self) -> Option<batch::Receiver<Pending>> {
        self.queue.take_receiver()
    }

    /// Authenticates, validates and stores a submission; resolves once it is
    /// committed.
    pub async fn submit(
        &self,
        key_hash: String,
        submission: Submission,
    ) -> CoreResult<RequestView> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                key_hash,
                submission,
                reply,
            })
            .await
            .map_err(|_| CoreError::Unavailable("chatrelay is shutting down".into()))?;
        answer
            .await
            .map_err(|_| CoreError::Unavailable("the submission could not be stored".into()))?
    }
}

/// Starts the writer. At shutdown it stops taking new submissions, stores
/// the ones already queued, and ends.
pub fn start_writer(core: &Arc<Core>) {
    let Some(mut rx) = core.intake.take_receiver() else {
        return;
    };
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let mut limits = RateLimits::new(&core);
        while let Some(batch) = rx.next(&core.shutdown, MAX_BATCH).await {
            // A bug in one batch must not stop every later submit: its callers
            // get an error (their reply senders are dropped) and the writer goes on.
            let stored = AssertUnwindSafe(async {
                let accepted = accept(&core, &mut limits, batch).await;
                store(&core, accepted).await
            })
            .catch_unwind();
            if stored.await.is_err() {
                tracing::error!("submit batch panicked; its callers were answered with an error");
            }
        }
    });
}

/// The accounts of the batch's keys, in one lookup.
async fn accounts_of(core: &Core, batch: &[Pending]) -> CoreResult<HashMap<String, AccountId>> {
    let hashes: BTreeSet<&str> = batch.iter().map(|p| p.key_hash.as_str()).collect();
    accounts::authenticate_hashes(&core.store, &hashes).await
}

/// Answers the submissions that fail authentication, the rate limit or
/// validation; returns the rest with their accounts, to be stored.
pub(crate) async fn accept(
    core: &Core,
    limits: &mut RateLimits,
    batch: Vec<Pending>,
) -> Vec<(AccountId, Pending)> {
    metrics::histogram!("chatrelay_submit_batch_size").record(batch.len() as f64);
    let accounts = match accounts_of(core, &batch).await {
        Ok(accounts) => accounts,
        Err(e) => {
            tracing::warn!(error = %e, "could not resolve API keys");
            for pending in batch {
                let _ = pending
                    .reply
                    .send(Err(CoreError::Unavailable("database unavailable".into())));
            }
            return Vec::new();
        }
    };
    let mut valid = Vec::with_capacity(batch.len());
    for pending in batch {
        let checked = match accounts.get(&pending.key_hash) {
            None => Err(CoreError::Unauthenticated("invalid API key")),
            Some(account) => limits
                .take(*account)
                .map_err(CoreError::RateLimited)
                .and_then(|()| validate(core, &pending.submission))
                .map(|()| *account),
        };
        match checked {
            Ok(account) => valid.push((account, pending)),
            Err(e) => {
                let _ = pending.reply.send(Err(e));
            }
        }
    }
    valid
}

/// Stores accepted submissions in one transaction; if that fails, each
/// alone, so one bad submission cannot fail its neighbours.
pub(crate) async fn store(core: &Core, batch: Vec<(AccountId, Pending)>) {
    if batch.is_empty() {
        return;
    }
    let written = async {
        let txn = core.store.write.begin().await?;
        let views = submits::insert_submissions(core, &txn, &submissions(&batch)).await?;
        txn.commit().await?;
        Ok::<_, CoreError>(views)
    };
    match written.await {
        Ok(views) => answer(core, batch, views),
        Err(e) if batch.len() == 1 => {
            let (_, pending) = batch.into_iter().next().expect("one");
            let _ = pending.reply.send(Err(e));
        }
        Err(e) => {
            tracing::warn!(error = %e, size = batch.len(), "batch failed; storing one by one");
            for item in batch {
                Box::pin(store(core, vec![item])).await;
            }
        }
    }
}

/// Answers the callers of a committed batch, then applies what it
/// committed (its accounts' sessions wake).
pub(crate) fn answer(
    core: &Core,
    batch: Vec<(AccountId, Pending)>,
    (views, committed): submits::Stored,
) {
    for ((_, pending), view) in batch.into_iter().zip(views) {
        let _ = pending.reply.send(Ok(view));
    }
    after_commit(core, committed);
}

/// The submissions of an accepted batch, with their accounts, to store.
pub(crate) fn submissions(batch: &[(AccountId, Pending)]) -> Vec<(AccountId, &Submission)> {
    batch.iter().map(|(a, p)| (*a, &p.submission)).collect()
}
