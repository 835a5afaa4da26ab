//! The extension sessions' group commit, the twin of [`crate::intake`]:
//! results and claims from every session queue on one channel, and one
//! writer applies whatever has gathered in a single transaction — so a
//! transaction carries many results and the claims they make room for,
//! instead of one statement each competing for a connection. Each caller is
//! answered once its write is committed (or refused). The store's writer
//! drains this queue; a sole writer does it in one transaction with the
//! submits, and keeps the claims that found nothing waiting for work.

use std::{
    collections::HashSet,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use futures::FutureExt;
use sea_orm::{DatabaseTransaction, TransactionTrait};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    batch,
    committed::{after_commit, Cause, Committed},
    error::{CoreError, CoreResult},
    lifecycle::Outcome,
    model::{AccountId, MessageRequest},
    store::{claim::claim_in, outcomes},
    Core,
};

/// Most results applied in one transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Results that may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

/// A write an extension session waits for.
pub(crate) enum Job {
    /// Finish a request as the extension reported.
    Settle(Settle),
    /// Lease claimable requests of the account to a session, as many as it
    /// has room for.
    Claim(Claim),
}

pub(crate) struct Settle {
    account: AccountId,
    id: Uuid,
    outcome: Outcome,
    reply: oneshot::Sender<CoreResult<MessageRequest>>,
}

impl Settle {
    pub(crate) fn account(&self) -> AccountId {
        self.account
    }
}

pub(crate) struct Claim {
    account: AccountId,
    session: Uuid,
    /// The session's free slots, kept current by the session: a claim that
    /// waits for work takes as many as there are when it runs.
    room: Arc<AtomicUsize>,
    reply: oneshot::Sender<CoreResult<Vec<MessageRequest>>>,
}

impl Claim {
    pub(crate) fn account(&self) -> AccountId {
        self.account
    }

    /// The session went away: its claim must not lease anything.
    pub(crate) fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    /// How many requests to lease now.
    fn wanted(&self) -> usize {
        if self.abandoned() {
            0
        } else {
            self.room.load(Ordering::Acquire)
        }
    }
}

/// A claim's answer, to come: the requests leased to the session, once a
/// transaction leased some (or the writer gave up on the claim).
pub type Claimed = oneshot::Receiver<CoreResult<Vec<MessageRequest>>>;

impl Job {
    /// Answers the caller with an error: nothing of its job was written.
    fn fail(self, error: CoreError) {
        match self {
            Job::Settle(settle) => {
                let _ = settle.reply.send(Err(error));
            }
            Job::Claim(claim) => {
                let _ = claim.reply.send(Err(error));
            }
        }
    }
}

pub struct Results {
    queue: batch::Queue<Job>,
}

impl Default for Results {
    fn default() -> Self {
        Self {
            queue: batch::Queue::new(QUEUE),
        }
    }
}

fn unavailable() -> CoreError {
    CoreError::Unavailable("the session's write could not be stored".into())
}

impl Results {
    /// The writer's end of the queue; `None` once a writer took it.
    pub(crate) fn take_receiver(&self) -> Option<batch::Receiver<Job>> {
        self.queue.take_receiver()
    }

    /// Applies an outcome; resolves once it is committed.
    pub async fn apply(
        &self,
        account: AccountId,
        id: Uuid,
        outcome: Outcome,
    ) -> CoreResult<MessageRequest> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Settle(Settle {
                account,
                id,
                outcome,
                reply,
            }))
            .await
            .map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())?
    }

    /// Asks to lease the account's claimable requests to `session`, oldest
    /// first and as many as `room` says when the claim runs, in the same
    /// transaction as the writes gathered with it. A sole writer's claim
    /// that finds nothing waits in its writer and runs again in the
    /// transaction of whatever gives the account work, so it is answered
    /// only with requests; elsewhere it is answered at once, perhaps empty.
    pub async fn claim(
        &self,
        account: AccountId,
        session: Uuid,
        room: Arc<AtomicUsize>,
    ) -> CoreResult<Claimed> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Claim(Claim {
                account,
                session,
                room,
                reply,
            }))
            .await
            .map_err(|_| unavailable())?;
        Ok(answer)
    }
}

/// Starts the writer. At shutdown it stops taking results, applies the ones
/// already queued, and ends.
pub fn start_writer(core: &Arc<Core>) {
    let Some(mut rx) = core.results.take_receiver() else {
        return;
    };
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        while let Some(batch) = rx.next(&core.shutdown, MAX_BATCH).await {
            let (settles, claims) = split(batch);
            match AssertUnwindSafe(store(&core, settles, claims))
                .catch_unwind()
                .await
            {
                // No claim waits here: one that found nothing hears so.
                Ok(empty) => {
                    for claim in empty {
                        let _ = claim.reply.send(Ok(Vec::new()));
                    }
                }
                Err(_) => tracing::error!(
                    "result batch panicked; its callers were answered with an error"
                ),
            }
        }
    });
}

/// A batch's results and claims, apart.
pub(crate) fn split(batch: Vec<Job>) -> (Vec<Settle>, Vec<Claim>) {
    let mut settles = Vec::new();
    let mut claims = Vec::new();
    for job in batch {
        match job {
            Job::Settle(settle) => settles.push(settle),
            Job::Claim(claim) => claims.push(claim),
        }
    }
    (settles, claims)
}

/// Applies a batch in one transaction (see [`write_in`]). If the
/// transaction fails, each job is applied alone so one cannot fail its
/// neighbours. Returns the claims that found nothing, unanswered.
pub(crate) async fn store(core: &Core, settles: Vec<Settle>, claims: Vec<Claim>) -> Vec<Claim> {
    let single = settles.len() + claims.len() == 1;
    let written = async {
        let txn = core.store.write.begin().await?;
        let written = write_in(core, &txn, &settles, &claims).await?;
        txn.commit().await?;
        Ok::<_, CoreError>(written)
    };
    match written.await {
        Ok(written) => answer(core, settles, claims, written),
        Err(e) if single => {
            let mut jobs = settles.into_iter().map(Job::Settle);
            if let Some(job) = jobs
                .next()
                .or_else(|| claims.into_iter().next().map(Job::Claim))
            {
                job.fail(e);
            }
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "session write batch failed; applying one by one");
            let mut empty = Vec::new();
            for settle in settles {
                Box::pin(store(core, vec![settle], Vec::new())).await;
            }
            for claim in claims {
                empty.extend(Box::pin(store(core, Vec::new(), vec![claim])).await);
            }
            empty
        }
    }
}

/// What a batch wrote: each result's answer, each claim's requests, and
/// what the transaction commits.
pub(crate) type Written = (
    Vec<CoreResult<MessageRequest>>,
    Vec<Vec<MessageRequest>>,
    Committed,
);

/// Writes a batch inside the caller's transaction: the results together and
/// before the claims, so the claims see the slots and chats the results
/// freed. A refused result (unknown request, already finished) wrote
/// nothing; its answer says why. Once a claim leaves work of its account
/// unclaimed the account has none left, and its later claims do not run.
pub(crate) async fn write_in(
    core: &Core,
    txn: &DatabaseTransaction,
    settles: &[Settle],
    claims: &[Claim],
) -> CoreResult<Written> {
    let outcomes: Vec<_> = settles
        .iter()
        .map(|s| (s.account, s.id, &s.outcome))
        .collect();
    let settled = outcomes::apply_all_in(core, txn, &outcomes).await?;
    let mut committed = Committed::default();
    for request in settled.iter().flatten() {
        let account = AccountId(request.account_id);
        committed.changed(account, request.id, request.status, Cause::Finished);
        committed.webhooks = true;
    }
    let mut claimed = Vec::with_capacity(claims.len());
    let mut drained = HashSet::new();
    for claim in claims {
        let wanted = claim.wanted();
        if wanted == 0 || drained.contains(&claim.account.0) {
            claimed.push(Vec::new());
            continue;
        }
        let leased = claim_in(core, txn, claim.account, claim.session, wanted).await?;
        if leased.len() < wanted {
            drained.insert(claim.account.0);
        }
        claimed.push(leased);
    }
    Ok((settled, claimed, committed))
}

/// Answers the callers of a committed batch, except the claims that found
/// nothing: those are returned, unanswered.
pub(crate) fn answer(
    core: &Core,
    settles: Vec<Settle>,
    claims: Vec<Claim>,
    written: Written,
) -> Vec<Claim> {
    let (settled, claimed, committed) = written;
    for (settle, result) in settles.into_iter().zip(settled) {
        let _ = settle.reply.send(result);
    }
    after_commit(core, committed);
    let mut empty = Vec::new();
    for (claim, claimed) in claims.into_iter().zip(claimed) {
        if claimed.is_empty() {
            empty.push(claim);
        } else {
            // If the session went away since the claim ran, it gives back
            // what it holds after this commit, these requests included: it
            // drops its end of the claim before it does.
            let _ = claim.reply.send(Ok(claimed));
        }
    }
    empty
}
