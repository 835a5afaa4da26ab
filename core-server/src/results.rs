//! The extension sessions' group commit, the twin of [`crate::intake`]:
//! results and claims from every session queue on one channel, and one
//! writer applies whatever has gathered in a single transaction — so on
//! SQLite's single write connection a transaction carries many results and
//! the claims they make room for, instead of one statement each competing
//! for the connection. Each caller is answered once its write is committed
//! (or refused).

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures::FutureExt;
use sea_orm::{DatabaseTransaction, TransactionTrait};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    batch,
    db::entities::message_request,
    dispatch::claim_in,
    error::{CoreError, CoreResult},
    lifecycle::{self, Outcome},
    model::AccountId,
    Core,
};

/// Most results applied in one transaction.
const MAX_BATCH: usize = 256;
/// Results that may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

/// A write an extension session waits for.
enum Job {
    /// Finish a request as the extension reported.
    Outcome {
        account: AccountId,
        id: Uuid,
        outcome: Outcome,
        reply: oneshot::Sender<CoreResult<message_request::Model>>,
    },
    /// Lease up to `max` claimable requests of the account to a session.
    Claim {
        account: AccountId,
        session: Uuid,
        max: usize,
        reply: oneshot::Sender<CoreResult<Vec<message_request::Model>>>,
    },
}

/// What a job wrote, until its transaction commits.
enum Written {
    Outcome(message_request::Model),
    Claim(Vec<message_request::Model>),
}

impl Job {
    async fn write(&self, core: &Core, txn: &DatabaseTransaction) -> CoreResult<Written> {
        match self {
            Job::Outcome {
                account,
                id,
                outcome,
                ..
            } => lifecycle::apply_in(core, txn, *account, *id, outcome)
                .await
                .map(Written::Outcome),
            Job::Claim {
                account,
                session,
                max,
                ..
            } => claim_in(core, txn, *account, *session, *max)
                .await
                .map(Written::Claim),
        }
    }

    /// Answers the caller (after the commit, for what was written).
    fn answer(self, core: &Core, written: CoreResult<Written>) {
        match (self, written) {
            (
                Job::Outcome {
                    account, id, reply, ..
                },
                Ok(Written::Outcome(request)),
            ) => {
                lifecycle::committed(core, account, id);
                let _ = reply.send(Ok(request));
            }
            (Job::Claim { reply, .. }, Ok(Written::Claim(claimed))) => {
                let _ = reply.send(Ok(claimed));
            }
            (Job::Outcome { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (Job::Claim { reply, .. }, Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (job, Ok(_)) => {
                let _ = job;
                tracing::error!("a session write was answered with another job's result");
            }
        }
    }

    fn is_claim(&self) -> bool {
        matches!(self, Job::Claim { .. })
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
    /// Applies an outcome; resolves once it is committed.
    pub async fn apply(
        &self,
        account: AccountId,
        id: Uuid,
        outcome: Outcome,
    ) -> CoreResult<message_request::Model> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Outcome {
                account,
                id,
                outcome,
                reply,
            })
            .await
            .map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())?
    }

    /// Leases up to `max` of the account's claimable requests to `session`,
    /// oldest first, in the same transaction as the results gathered with it.
    pub async fn claim(
        &self,
        account: AccountId,
        session: Uuid,
        max: usize,
    ) -> CoreResult<Vec<message_request::Model>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Claim {
                account,
                session,
                max,
                reply,
            })
            .await
            .map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())?
    }
}

/// Starts the writer. At shutdown it stops taking results, applies the ones
/// already queued, and ends.
pub fn start_writer(core: &Arc<Core>) {
    let Some(mut rx) = core.results.queue.take_receiver() else {
        return;
    };
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        while let Some(batch) = rx.next(&core.shutdown, MAX_BATCH).await {
            if AssertUnwindSafe(store(&core, batch))
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!("result batch panicked; its callers were answered with an error");
            }
        }
    });
}

/// Applies a batch in one transaction, results before claims so the claims
/// see the slots and chats the results freed. A refused result (unknown
/// request, already finished) wrote nothing and is answered at once; if the
/// transaction itself fails, each job is applied alone so one cannot fail
/// its neighbours.
async fn store(core: &Core, mut batch: Vec<Job>) {
    batch.sort_by_key(Job::is_claim);
    let txn = match core.db.write.begin().await {
        Ok(txn) => txn,
        Err(e) => {
            let error = CoreError::from(e).to_string();
            for job in batch {
                job.answer(core, Err(CoreError::Unavailable(error.clone())));
            }
            return;
        }
    };
    let single = batch.len() == 1;
    let mut written = Vec::with_capacity(batch.len());
    let mut failure = None;
    let mut rest = batch.into_iter();
    for job in rest.by_ref() {
        match job.write(core, &txn).await {
            Ok(done) => written.push((job, done)),
            Err(e @ CoreError::Database(_)) => {
                failure = Some((job, e));
                break;
            }
            Err(refused) => job.answer(core, Err(refused)),
        }
    }
    let committed = match failure {
        None => txn.commit().await.map_err(CoreError::from),
        Some((job, e)) if single => {
            job.answer(core, Err(e));
            return;
        }
        Some((job, e)) => {
            drop(txn);
            tracing::warn!(error = %e, "session write batch failed; applying one by one");
            let retry = written.into_iter().map(|(j, _)| j).chain([job]).chain(rest);
            for job in retry {
                Box::pin(store(core, vec![job])).await;
            }
            return;
        }
    };
    match committed {
        Ok(()) => {
            for (job, done) in written {
                job.answer(core, Ok(done));
            }
        }
        Err(e) if written.len() <= 1 => {
            for (job, _) in written {
                job.answer(core, Err(CoreError::Unavailable(e.to_string())));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "session write batch did not commit; applying one by one");
            for (job, _) in written {
                Box::pin(store(core, vec![job])).await;
            }
        }
    }
}
