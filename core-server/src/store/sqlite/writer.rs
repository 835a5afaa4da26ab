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
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    batch,
    error::CoreError,
    intake::{self, Pending, RateLimits},
    model::AccountId,
    results::{self, Claim, Job, Settle},
    store::{
        batches::{self, Written},
        submits,
    },
    Core,
};

/// Cycles in a row that may keep the write connection; then it goes back to
/// the pool, so the database's other writers (lease renewal, webhook
/// outcomes, status updates) get their turn.
const MAX_HELD_CYCLES: u32 = 16;

/// Starts the writer in place of the submit and session writers. At
/// shutdown it stops taking new work, writes what is already queued, and
/// ends.
pub fn start(core: &Arc<Core>) {
    let (Some(submits), Some(sessions)) =
        (core.intake.take_receiver(), core.results.take_receiver())
    else {
        return;
    };
    let (report, returned) = mpsc::unbounded_channel();
    core.dispatch.report_returned_work(report);
    let writer = Writer {
        limits: RateLimits::new(core),
        core: core.clone(),
        standing: Standing::default(),
        submits,
        sessions,
        returned,
    };
    core.tasks.spawn(writer.run());
}

/// What one cycle writes.
struct Work {
    pending: Vec<Pending>,
    jobs: Vec<Job>,
    /// Accounts whose work came back, for the claims standing on them.
    returned: Vec<AccountId>,
}

struct Writer {
    core: Arc<Core>,
    limits: RateLimits,
    standing: Standing,
    submits: batch::Receiver<Pending>,
    sessions: batch::Receiver<Job>,
    returned: mpsc::UnboundedReceiver<AccountId>,
}

impl Writer {
    async fn run(mut self) {
        while let Some(work) = self.next().await {
            // While more work waits when a cycle commits, the next cycle
            // begins its transaction on the same connection (see `write`).
            let (mut work, mut held, mut cycles) = (Some(work), None, 0);
            while let Some(this) = work.take() {
                cycles += 1;
                // A bug in one cycle must not stop every later write: its
                // callers get an error (their reply senders are dropped).
                let cycle =
                    AssertUnwindSafe(self.cycle(this, held.take(), cycles < MAX_HELD_CYCLES));
                match cycle.catch_unwind().await {
                    Ok(Some(txn)) => {
                        held = Some(txn);
                        work = Some(self.ready());
                    }
                    Ok(None) => {}
                    Err(_) => tracing::error!(
                        "write cycle panicked; its callers were answered with an error"
                    ),
                }
            }
        }
    }

    /// Waits for work; `None` once the core stopped and the queues are drained.
    async fn next(&mut self) -> Option<Work> {
        let shutdown = &self.core.shutdown;
        let mut work = tokio::select! {
            Some(pending) = self.submits.next(shutdown, intake::MAX_BATCH) => Work {
                pending,
                jobs: self.sessions.ready(results::MAX_BATCH),
                returned: Vec::new(),
            },
            Some(jobs) = self.sessions.next(shutdown, results::MAX_BATCH) => Work {
                pending: self.submits.ready(intake::MAX_BATCH),
                jobs,
                returned: Vec::new(),
            },
            Some(account) = next_returned(&mut self.returned, shutdown) => Work {
                pending: self.submits.ready(intake::MAX_BATCH),
                jobs: self.sessions.ready(results::MAX_BATCH),
                returned: vec![account],
            },
            else => return None,
        };
        work.returned
            .extend(std::iter::from_fn(|| self.returned.try_recv().ok()));
        Some(work)
    }

    /// Whatever is queued now.
    fn ready(&mut self) -> Work {
        Work {
            pending: self.submits.ready(intake::MAX_BATCH),
            jobs: self.sessions.ready(results::MAX_BATCH),
            returned: std::iter::from_fn(|| self.returned.try_recv().ok()).collect(),
        }
    }

    fn more_ready(&self) -> bool {
        !(self.submits.is_empty() && self.sessions.is_empty() && self.returned.is_empty())
    }

    /// Writes one cycle in one transaction (begun on `held`, if given) and
    /// answers its callers. The claims standing on an account the cycle
    /// gives work run after the new ones. If the transaction fails, the
    /// submits and the session writes are retried apart, each batch then one
    /// by one, so one bad write cannot fail the rest. Returns the next
    /// cycle's transaction if this one kept the connection.
    async fn cycle(
        &mut self,
        work: Work,
        held: Option<DatabaseTransaction>,
        may_keep: bool,
    ) -> Option<DatabaseTransaction> {
        let core = self.core.clone();
        // The gate is shared by cycles; only a WAL restart holds it alone.
        let _gate = super::parts(&core).write_gate.read().await;
        let accepted = intake::accept(&core, &mut self.limits, work.pending).await;
        let (settles, mut claims) = batches::split(work.jobs);
        let touched: BTreeSet<i64> = accepted
            .iter()
            .map(|(account, _)| account.0)
            .chain(settles.iter().map(|s| s.account().0))
            .chain(work.returned.into_iter().map(|account| account.0))
            .collect();
        claims.extend(self.standing.take(&touched));
        if accepted.is_empty() && settles.is_empty() && claims.is_empty() {
            // A held transaction that wrote nothing is rolled back on drop.
            return None;
        }
        let keep = || may_keep && self.more_ready();
        match write(&core, held, &accepted, &settles, &claims, keep).await {
            Ok((views, written, next)) => {
                // Deliveries first: the submitters' answers cannot come
                // sooner than the commit anyway.
                self.standing.stand(batches::answer_session_writes(
                    &core, settles, claims, written,
                ));
                batches::answer_submits(&core, accepted, views);
                next
            }
            Err(e) => {
                tracing::warn!(error = %e, "write cycle failed; writing its parts apart");
                batches::store_submits(&core, accepted).await;
                if !settles.is_empty() || !claims.is_empty() {
                    self.standing
                        .stand(batches::store_session_writes(&core, settles, claims).await);
                }
                None
            }
        }
    }
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

/// Writes a cycle in a transaction, begun on `held` if given, and commits
/// it. If `keep` says more work waits, the connection stays with the writer:
/// the next transaction begins on it at once (one `COMMIT` and one `BEGIN`),
/// instead of the connection going back to the pool — which tests it in a
/// task of its own that waits its turn behind every request in the runtime
/// — and being acquired again.
async fn write(
    core: &Core,
    held: Option<DatabaseTransaction>,
    accepted: &[(AccountId, Pending)],
    settles: &[Settle],
    claims: &[Claim],
    keep: impl FnOnce() -> bool,
) -> Result<(submits::Stored, Written, Option<DatabaseTransaction>), CoreError> {
    let txn = match held {
        Some(txn) => txn,
        None => core.store.write.begin().await?,
    };
    let views = submits::insert_submissions(core, &txn, &intake::submissions(accepted)).await?;
    let written = batches::write_session_writes_in(core, &txn, settles, claims).await?;
    if !keep() {
        txn.commit().await?;
        return Ok((views, written, None));
    }
    txn.execute_unprepared("COMMIT").await?;
    // A deferred BEGIN takes no lock and reads nothing, so the held
    // transaction stops neither checkpoints nor readers. It cannot fail
    // short of a broken connection, which the next cycle then reports.
    let next = match txn.execute_unprepared("BEGIN").await {
        Ok(_) => Some(txn),
        Err(e) => {
            tracing::warn!(error = %e, "could not begin the next write cycle");
            None
        }
    };
    Ok((views, written, next))
}
