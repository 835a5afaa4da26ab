//! The submit path's group commit. Submissions queue on a bounded channel; one
//! writer takes whatever has gathered (up to a batch) and stores it in a
//! single transaction with multi-row inserts, then answers each caller. Under
//! load the batches grow while the previous one commits; when idle a lone
//! submission is written at once. Callers see exactly what a transaction per
//! request would give them — their request is durable when they get an answer.
//! The store's writer drains this queue (`store::batches` holds the
//! transaction; a sole writer writes it with the extension sessions' writes).

use std::{
    collections::{BTreeSet, HashMap},
    time::Instant,
};

use tokio::sync::oneshot;

use crate::{
    accounts, batch,
    error::{CoreError, CoreResult},
    model::{AccountId, Submission, Submitted},
    requests::validate,
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
    pub(crate) submission: Submission,
    pub(crate) reply: oneshot::Sender<CoreResult<Submitted>>,
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
    pub async fn submit(&self, key_hash: String, submission: Submission) -> CoreResult<Submitted> {
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

/// The submissions of an accepted batch, with their accounts, to store.
pub(crate) fn submissions(batch: &[(AccountId, Pending)]) -> Vec<(AccountId, &Submission)> {
    batch.iter().map(|(a, p)| (*a, &p.submission)).collect()
}
