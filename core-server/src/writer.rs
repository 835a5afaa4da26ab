//! SQLite's one writer. SQLite has a single write connection, so the
//! submit and session writers ([`crate::intake`], [`crate::results`]) would
//! only take turns on it, each paying for its own transaction while the
//! other's callers wait. Here one task drains both queues and writes
//! whatever has gathered in one transaction per cycle: the submits first,
//! then the results, then the claims — so a claim sees the requests
//! submitted in the same transaction and the slots the results freed.
//!
//! A session with room always has a claim here. One that finds nothing
//! *stands*: it waits in the writer, and runs again inside the transaction
//! of the next cycle that gives its account work (submits, results, or a
//! lease given back). The requests a submit creates are thus leased in the
//! transaction that stores them, and the session learns of them as the
//! submitter learns they are stored — not a wake-up and a cycle later.
//!
//! PostgreSQL keeps the two writers apart: its pool writes side by side.

use std::{
    collections::{BTreeSet, HashMap},
    panic::AssertUnwindSafe,
    sync::Arc,
};

use futures::FutureExt;
use sea_orm::TransactionTrait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    let (returned, mut work_returned) = mpsc::unbounded_channel();
    core.dispatch.report_returned_work(returned);
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let mut limits = RateLimits::new(&core);
        let mut standing = Standing::default();
        loop {
            let (pending, jobs, mut returned) = tokio::select! {
                Some(pending) = submits.next(&core.shutdown, intake::MAX_BATCH) => {
                    (pending, sessions.ready(results::MAX_BATCH), Vec::new())
                }
                Some(jobs) = sessions.next(&core.shutdown, results::MAX_BATCH) => {
                    (submits.ready(intake::MAX_BATCH), jobs, Vec::new())
                }
                Some(account) = next_returned(&mut work_returned, &core.shutdown) => {
                    (submits.ready(intake::MAX_BATCH), sessions.ready(results::MAX_BATCH), vec![account])
                }
                else => break,
            };
            returned.extend(std::iter::from_fn(|| work_returned.try_recv().ok()));
            // A bug in one cycle must not stop every later write: its
            // callers get an error (their reply senders are dropped). The
            // gate is shared by cycles; only a WAL restart holds it alone.
            let cycle = AssertUnwindSafe(async {
                let _gate = core.db.write_gate.read().await;
                let accepted = intake::accept(&core, &mut limits, pending).await;
                let (settles, claims) = results::split(jobs);
                cycle(&core, &mut standing, accepted, settles, claims, returned).await;
            });
            if cycle.catch_unwind().await.is_err() {
                tracing::error!("write cycle panicked; its callers were answered with an error");
            }
        }
    });
}

/// The next account whose work came back (a lease given back); `None` once
/// the core stops, so the writer can end when its queues are drained.
async fn next_returned(
    returned: &mut mpsc::UnboundedReceiver<AccountId>,
    shutdown: &CancellationToken,
) -> Option<AccountId> {
    tokio::select! {
        account = returned.recv() => account,
        _ = shutdown.cancelled() => None,
    }
}

/// The claims that found nothing, by account, oldest first.
#[derive(Default)]
struct Standing(HashMap<i64, Vec<Claim>>);

impl Standing {
    /// Takes the claims standing on `accounts`.
    fn take(&mut self, accounts: &BTreeSet<i64>) -> Vec<Claim> {
        accounts
            .iter()
            .filter_map(|account| self.0.remove(account))
            .flatten()
            .collect()
    }

    /// Lets claims that found nothing stand, dropping those of sessions
    /// that went away (so an account keeps no more than its live sessions'
    /// claims and those that ended since its last claim stood).
    fn stand(&mut self, claims: Vec<Claim>) {
        for claim in claims {
            if claim.abandoned() {
                continue;
            }
            let waiting = self.0.entry(claim.account().0).or_default();
            waiting.retain(|c| !c.abandoned());
            waiting.push(claim);
        }
    }
}

/// Writes one cycle in one transaction and answers its callers. The claims
/// standing on an account the cycle gives work run after the new ones. If
/// the transaction fails, the submits and the session writes are retried
/// apart, each batch then one by one, so one bad write cannot fail the rest.
async fn cycle(
    core: &Core,
    standing: &mut Standing,
    accepted: Vec<(AccountId, Pending)>,
    settles: Vec<Settle>,
    mut claims: Vec<Claim>,
    returned: Vec<AccountId>,
) {
    let touched: BTreeSet<i64> = accepted
        .iter()
        .map(|(account, _)| account.0)
        .chain(settles.iter().map(|s| s.account().0))
        .chain(returned.into_iter().map(|account| account.0))
        .collect();
    claims.extend(standing.take(&touched));
    if accepted.is_empty() && settles.is_empty() && claims.is_empty() {
        return;
    }
    match write(core, &accepted, &settles, &claims).await {
        Ok((views, written)) => {
            // Deliveries first: the submitters' answers cannot come sooner
            // than the commit anyway.
            standing.stand(results::answer(core, settles, claims, written));
            intake::answer(core, accepted, views);
        }
        Err(e) => {
            tracing::warn!(error = %e, "write cycle failed; writing its parts apart");
            intake::store(core, accepted).await;
            if !settles.is_empty() || !claims.is_empty() {
                standing.stand(results::store(core, settles, claims).await);
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
