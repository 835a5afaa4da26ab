//! The result path's group commit, the twin of [`crate::intake`]: results
//! from every extension session queue on one channel, and one writer applies
//! whatever has gathered in a single transaction — so on SQLite's single
//! write connection a transaction carries many results instead of one.
//! Each caller is answered once its result is committed (or refused).

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures::FutureExt;
use sea_orm::TransactionTrait;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    batch,
    db::entities::message_request,
    error::{CoreError, CoreResult},
    lifecycle::{self, Outcome},
    model::AccountId,
    Core,
};

/// Most results applied in one transaction.
const MAX_BATCH: usize = 256;
/// Results that may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

struct Pending {
    account: AccountId,
    id: Uuid,
    outcome: Outcome,
    reply: oneshot::Sender<CoreResult<message_request::Model>>,
}

pub struct Results {
    queue: batch::Queue<Pending>,
}

impl Default for Results {
    fn default() -> Self {
        Self {
            queue: batch::Queue::new(QUEUE),
        }
    }
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
        let unavailable = || CoreError::Unavailable("the result could not be stored".into());
        self.queue
            .send(Pending {
                account,
                id,
                outcome,
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

/// Applies a batch in one transaction. A refused result (unknown request,
/// already finished) wrote nothing and is answered at once; if the
/// transaction itself fails, each result is applied alone so one cannot
/// fail its neighbours.
async fn store(core: &Core, batch: Vec<Pending>) {
    let txn = match core.db.write.begin().await {
        Ok(txn) => txn,
        Err(e) => {
            let error = CoreError::from(e);
            for pending in batch {
                let _ = pending
                    .reply
                    .send(Err(CoreError::Unavailable(error.to_string())));
            }
            return;
        }
    };
    let single = batch.len() == 1;
    let mut applied = Vec::with_capacity(batch.len());
    let mut failure = None;
    let mut rest = batch.into_iter();
    for pending in rest.by_ref() {
        match lifecycle::apply_in(core, &txn, pending.account, pending.id, &pending.outcome).await {
            Ok(request) => applied.push((pending, request)),
            Err(e @ CoreError::Database(_)) => {
                failure = Some((pending, e));
                break;
            }
            Err(refused) => {
                let _ = pending.reply.send(Err(refused));
            }
        }
    }
    let committed = match failure {
        None => txn.commit().await.map_err(CoreError::from),
        Some((pending, e)) if single => {
            let _ = pending.reply.send(Err(e));
            return;
        }
        Some((pending, e)) => {
            drop(txn);
            tracing::warn!(error = %e, "result batch failed; applying one by one");
            let retry = applied
                .into_iter()
                .map(|(p, _)| p)
                .chain([pending])
                .chain(rest);
            for pending in retry {
                Box::pin(store(core, vec![pending])).await;
            }
            return;
        }
    };
    match committed {
        Ok(()) => {
            for (pending, request) in applied {
                lifecycle::committed(core, pending.account, pending.id);
                let _ = pending.reply.send(Ok(request));
            }
        }
        Err(e) if applied.len() <= 1 => {
            for (pending, _) in applied {
                let _ = pending
                    .reply
                    .send(Err(CoreError::Unavailable(e.to_string())));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "result batch did not commit; applying one by one");
            for (pending, _) in applied {
                Box::pin(store(core, vec![pending])).await;
            }
        }
    }
}
