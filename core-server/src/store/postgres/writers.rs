//! PostgreSQL's writers: submit writers take batches of submits, the
//! session writer batches of the sessions' results, and each writes its
//! batch in one transaction on the shared pool, side by side with the
//! others (and with other cores). A batch begun while no other core
//! listens sends no notifications ([`Audience::quiet`]). At shutdown each
//! stops taking new work, writes what is already queued, and ends.

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures::FutureExt;
use tokio::sync::Mutex;

use super::audience::Audience;
use crate::{intake, results, store::batches, Core};

/// Submit batches written at once. A commit waits for its WAL to reach the
/// disk, and PostgreSQL flushes the WAL of concurrent commits together: while
/// one batch waits for its flush, the next is already being written.
const SUBMIT_WRITERS: usize = 2;

/// Starts the submit writers. They take batches from the one queue in turn;
/// the rate limits are checked as a batch is taken, so every writer applies
/// the same limits. At shutdown they stop taking new submissions, store the
/// ones already queued, and end.
pub(super) fn start_submit_writer(core: &Arc<Core>, audience: &Arc<Audience>) {
    let Some(rx) = core.intake.take_receiver() else {
        return;
    };
    let queue = Arc::new(Mutex::new((rx, intake::RateLimits::new(core))));
    for _ in 0..SUBMIT_WRITERS {
        let (core, queue, audience) = (core.clone(), queue.clone(), audience.clone());
        let tracker = core.tasks.clone();
        tracker.spawn(async move {
            loop {
                // A bug in one batch must not stop every later submit: its
                // callers get an error (their reply senders are dropped) and
                // the writer goes on.
                let accepted = {
                    let mut queue = queue.lock().await;
                    let (rx, limits) = &mut *queue;
                    let Some(batch) = rx.next(&core.shutdown, intake::MAX_BATCH).await else {
                        return;
                    };
                    AssertUnwindSafe(intake::accept(&core, limits, batch))
                        .catch_unwind()
                        .await
                };
                let stored = match accepted {
                    Ok(accepted) => {
                        let stored = audience.quiet(batches::store_submits(&core, accepted));
                        AssertUnwindSafe(stored).catch_unwind().await
                    }
                    Err(panic) => Err(panic),
                };
                if stored.is_err() {
                    tracing::error!(
                        "submit batch panicked; its callers were answered with an error"
                    );
                }
            }
        });
    }
}

/// Starts the writer. At shutdown it stops taking results, applies the ones
/// already queued, and ends.
pub(super) fn start_session_writer(core: &Arc<Core>, audience: &Arc<Audience>) {
    let Some(mut rx) = core.results.take_receiver() else {
        return;
    };
    let (core, audience) = (core.clone(), audience.clone());
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        while let Some(batch) = rx.next(&core.shutdown, results::MAX_BATCH).await {
            let (settles, claims) = batches::split(batch);
            let stored = audience.quiet(batches::store_session_writes(&core, settles, claims));
            match AssertUnwindSafe(stored).catch_unwind().await {
                // `Store::claim` sends claims to the claimer, where those
                // that find nothing stand, so no claim is queued on this
                // writer; should one be, it is answered (empty) rather than
                // left waiting for a wake-up nothing would give it here.
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
