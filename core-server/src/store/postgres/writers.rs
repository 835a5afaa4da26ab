//! PostgreSQL's two writers: one takes batches of submits, the other
//! batches of the sessions' results and claims, and each writes its batch in one
//! transaction on the shared pool, side by side with the other (and with
//! other cores). At shutdown each stops taking new work, writes what is
//! already queued, and ends.

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures::FutureExt;

use crate::{intake, results, store::batches, Core};

/// Starts the writer. At shutdown it stops taking new submissions, stores
/// the ones already queued, and ends.
pub(super) fn start_submit_writer(core: &Arc<Core>) {
    let Some(mut rx) = core.intake.take_receiver() else {
        return;
    };
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let mut limits = intake::RateLimits::new(&core);
        while let Some(batch) = rx.next(&core.shutdown, intake::MAX_BATCH).await {
            // A bug in one batch must not stop every later submit: its callers
            // get an error (their reply senders are dropped) and the writer goes on.
            let stored = AssertUnwindSafe(async {
                let accepted = intake::accept(&core, &mut limits, batch).await;
                batches::store_submits(&core, accepted).await
            })
            .catch_unwind();
            if stored.await.is_err() {
                tracing::error!("submit batch panicked; its callers were answered with an error");
            }
        }
    });
}

/// Starts the writer. At shutdown it stops taking results, applies the ones
/// already queued, and ends.
pub(super) fn start_session_writer(core: &Arc<Core>) {
    let Some(mut rx) = core.results.take_receiver() else {
        return;
    };
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        while let Some(batch) = rx.next(&core.shutdown, results::MAX_BATCH).await {
            let (settles, claims) = batches::split(batch);
            match AssertUnwindSafe(batches::store_session_writes(&core, settles, claims))
                .catch_unwind()
                .await
            {
                // A claim that found nothing is answered empty rather than
                // left waiting: claims stand only in a sole writer, and here
                // other cores' writes wake the session instead.
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
