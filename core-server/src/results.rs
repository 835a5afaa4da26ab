//! The extension sessions' group commit, the twin of [`crate::intake`]:
//! results and claims from every session queue on one channel, and one
//! writer applies whatever has gathered in a single transaction — so a
//! transaction carries many results and the claims they make room for,
//! instead of one statement each competing for a connection. Each caller is
//! answered once its write is committed (or refused). The store's writer
//! drains this queue (`store::batches` holds the transactions); a sole
//! writer does it in one transaction with the submits, and keeps the claims
//! that found nothing waiting for work.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    batch,
    dispatch::session::Delivery,
    error::{CoreError, CoreResult},
    lifecycle::Outcome,
    model::{AccountId, MessageRequest},
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
    pub(crate) account: AccountId,
    pub(crate) id: Uuid,
    pub(crate) outcome: Outcome,
    pub(crate) reply: oneshot::Sender<CoreResult<MessageRequest>>,
}

impl Settle {
    pub(crate) fn account(&self) -> AccountId {
        self.account
    }
}

pub(crate) struct Claim {
    pub(crate) account: AccountId,
    pub(crate) session: Uuid,
    /// The session's free slots, kept current by the session: a claim that
    /// waits for work takes as many as there are when it runs.
    room: Arc<AtomicUsize>,
    pub(crate) reply: oneshot::Sender<CoreResult<Vec<Delivery>>>,
}

impl Claim {
    /// A claim of `session`'s, and where its answer will come.
    pub(crate) fn new(
        account: AccountId,
        session: Uuid,
        room: Arc<AtomicUsize>,
    ) -> (Self, Claimed) {
        let (reply, answer) = oneshot::channel();
        let claim = Self {
            account,
            session,
            room,
            reply,
        };
        (claim, answer)
    }

    pub(crate) fn account(&self) -> AccountId {
        self.account
    }

    /// The session went away: its claim must not lease anything.
    pub(crate) fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    /// How many requests to lease now.
    pub(crate) fn wanted(&self) -> usize {
        if self.abandoned() {
            0
        } else {
            self.room.load(Ordering::Acquire)
        }
    }
}

/// A claim's answer, to come: the requests leased to the session, once a
/// transaction leased some (or the writer gave up on the claim).
pub type Claimed = oneshot::Receiver<CoreResult<Vec<Delivery>>>;

impl Job {
    /// Answers the caller with an error: nothing of its job was written.
    pub(crate) fn fail(self, error: CoreError) {
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
    /// only with requests. (Where cores share the database, `Store::claim`
    /// sends claims to PostgreSQL's claimer instead, where they stand.)
    pub async fn claim(
        &self,
        account: AccountId,
        session: Uuid,
        room: Arc<AtomicUsize>,
    ) -> CoreResult<Claimed> {
        let (claim, answer) = Claim::new(account, session, room);
        self.queue
            .send(Job::Claim(claim))
            .await
            .map_err(|_| unavailable())?;
        Ok(answer)
    }
}
