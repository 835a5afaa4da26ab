//! SQLite's one writer. SQLite has a single write connection, so the
//! submit and session writers ([`crate::intake`], [`crate::results`]) would
//! only take turns on it, each paying for its own transaction while the
//! other's callers wait. Here one task drains both queues and writes
//! whatever has gathered in one transaction per cycle: the submits first,
//! then the results, then the claims — so a claim sees the requests
//! submitted in the same transaction and the slots the results freed.
//!
//! PostgreSQL keeps the two writers apart: its pool writes side by side.

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures::FutureExt;
use sea_orm::TransactionTrait;

use crate::{
    error::CoreError,
    intake::{self, Pending, RateLimits},
    model::{AccountId, RequestView},
    results::{self, Claim, Settle, Written},
    Core,
};

/// Starts the writer in place of the submit and session writers. At
/// shutdown it stops taking new work, writes what is already queued, and
/// ends.
pub fn start(core: &Arc<Core>) {
    let (Some(mut submits), Some(mut sessions)) =
        (core.intake.take_receiver(), core.results.take_receiver())
    else {
        return;
    };
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let mut limits = RateLimits::new(&core);
        loop {
            let (pending, jobs) = tokio::select! {
                Some(pending) = submits.next(&core.shutdown, intake::MAX_BATCH) => {
                    (pending, sessions.ready(results::MAX_BATCH))
                }
                Some(jobs) = sessions.next(&core.shutdown, results::MAX_BATCH) => {
                    (submits.ready(intake::MAX_BATCH), jobs)
                }
                else => break,
            };
            // A bug in one cycle must not stop every later write: its
            // callers get an error (their reply senders are dropped). The
            // gate is shared by cycles; only a WAL restart holds it alone.
            let cycle = AssertUnwindSafe(async {
                let _gate = core.db.write_gate.read().await;
                let accepted = intake::accept(&core, &mut limits, pending).await;
                let (settles, claims) = results::split(jobs);
                cycle(&core, accepted, settles, claims).await;
            });
            if cycle.catch_unwind().await.is_err() {
                tracing::error!("write cycle panicked; its callers were answered with an error");
            }
        }
    });
}

/// Writes one cycle in one transaction and answers its callers. If the
/// transaction fails, the submits and the session writes are retried
/// apart, each batch then one by one, so one bad write cannot fail the rest.
async fn cycle(
    core: &Core,
    accepted: Vec<(AccountId, Pending)>,
    settles: Vec<Settle>,
    claims: Vec<Claim>,
) {
    if accepted.is_empty() && settles.is_empty() && claims.is_empty() {
        return;
    }
    match write(core, &accepted, &settles, &claims).await {
        Ok((views, written)) => {
            intake::answer(core, accepted, views);
            results::answer(core, settles, claims, written);
        }
        Err(e) => {
            tracing::warn!(error = %e, "write cycle failed; writing its parts apart");
            intake::store(core, accepted).await;
            if !settles.is_empty() || !claims.is_empty() {
                results::store(core, settles, claims).await;
            }
        }
    }
}

async fn write(
    core: &Core,
    accepted: &[(AccountId, Pending)],
    settles: &[Settle],
    claims: &[Claim],
) -> Result<(Vec<RequestView>, Written), CoreError> {
    let txn = core.db.write.begin().await?;
    let views = intake::insert_in(core, &txn, accepted).await?;
    let written = results::write_in(core, &txn, settles, claims).await?;
    txn.commit().await?;
    Ok((views, written))
}
