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
//! The cycles run their statements on the write connection's handle,
//! borrowed from sqlx for a turn of cycles ([`super::inline`]), not one
//! hand-off to sqlx's thread per statement.
//!
//! PostgreSQL keeps the two writers apart: its pool writes side by side.

use std::{
    collections::{BTreeSet, HashMap},
    panic::AssertUnwindSafe,
    sync::{atomic::Ordering, Arc},
};

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::inline::Inline;
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

/// A cycle's writes, gathered before it needs the connection.
struct Cycle {
    accepted: Vec<(AccountId, Pending)>,
    settles: Vec<Settle>,
    claims: Vec<Claim>,
}

impl Writer {
    async fn run(mut self) {
        while let Some(work) = self.next().await {
            self.turn(work).await;
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

    /// What `work` writes: its accepted submits, its results, and its
    /// claims with those standing on an account it gives work. `None` if
    /// that is nothing.
    async fn gather(&mut self, work: Work) -> Option<Cycle> {
        let accepted = intake::accept(&self.core, &mut self.limits, work.pending).await;
        let (settles, mut claims) = batches::split(work.jobs);
        let touched: BTreeSet<i64> = accepted
            .iter()
            .map(|(account, _)| account.0)
            .chain(settles.iter().map(|s| s.account().0))
            .chain(work.returned.into_iter().map(|account| account.0))
            .collect();
        claims.extend(self.standing.take(&touched));
        let empty = accepted.is_empty() && settles.is_empty() && claims.is_empty();
        (!empty).then_some(Cycle {
            accepted,
            settles,
            claims,
        })
    }

    /// One turn with the write connection: cycles, each in a transaction of
    /// its own, as long as more work is waiting when one commits (up to
    /// [`MAX_HELD_CYCLES`]), on the connection's handle borrowed from sqlx
    /// once for all of them (see [`inline`]). If a cycle fails, the turn
    /// gives the connection back and writes that cycle's parts apart
    /// through sqlx, each batch then one by one, so one bad write cannot
    /// fail the rest.
    async fn turn(&mut self, work: Work) {
        let Some(mut cycle) = self.gather(work).await else {
            return;
        };
        let core = self.core.clone();
        let mut conn = match core
            .store
            .write
            .get_sqlite_connection_pool()
            .acquire()
            .await
        {
            Ok(conn) => conn,
            Err(e) => return self.write_apart(cycle, &super::sqlx_err(e)).await,
        };
        let mut handle = match conn.lock_handle().await {
            Ok(handle) => handle,
            Err(e) => return self.write_apart(cycle, &super::sqlx_err(e)).await,
        };
        // SAFETY: sqlx leaves the handle alone while `handle` is held (and
        // the connection stays open while `conn` is out of the pool); both
        // outlive `inline`, which is declared after them and so dropped
        // first.
        let inline = match unsafe { Inline::borrow(handle.as_raw_handle()) } {
            Ok(inline) => inline,
            Err(e) => return self.write_apart(cycle, &e).await,
        };
        let mut cycles = 0;
        loop {
            cycles += 1;
            // A bug in one cycle must not stop every later write: its
            // callers get an error (their reply senders are dropped), and
            // dropping `inline` rolls back what it began.
            let written = AssertUnwindSafe(self.cycle(&inline, cycle)).catch_unwind();
            match written.await {
                Ok(Ok(())) => {}
                Ok(Err((failed, e))) => {
                    drop(inline);
                    drop(handle);
                    drop(conn);
                    return self.write_apart(failed, &e).await;
                }
                Err(_) => {
                    tracing::error!(
                        "write cycle panicked; its callers were answered with an error"
                    );
                    return;
                }
            }
            if cycles >= MAX_HELD_CYCLES || !self.more_ready() {
                return;
            }
            let work = self.ready();
            cycle = match self.gather(work).await {
                Some(next) => next,
                None => return,
            };
        }
    }

    /// Writes one cycle in one transaction on `inline` and answers its
    /// callers; if the transaction fails, hands the cycle back unanswered.
    async fn cycle(&mut self, inline: &Inline, cycle: Cycle) -> Result<(), (Cycle, CoreError)> {
        let core = self.core.clone();
        finish_wal(&core, inline);
        match write(&core, inline, &cycle).await {
            Ok((views, written)) => {
                // Deliveries first: the submitters' answers cannot come
                // sooner than the commit anyway.
                let Cycle {
                    accepted,
                    settles,
                    claims,
                } = cycle;
                self.standing.stand(batches::answer_session_writes(
                    &core, settles, claims, written,
                ));
                batches::answer_submits(&core, accepted, views);
                Ok(())
            }
            Err(e) => {
                inline.roll_back();
                Err((cycle, e))
            }
        }
    }

    /// Writes a cycle that failed through sqlx: the submits and the session
    /// writes apart, each batch then one by one.
    async fn write_apart(&mut self, cycle: Cycle, e: &(dyn std::fmt::Display + Sync)) {
        tracing::warn!(error = %e, "write cycle failed; writing its parts apart");
        let core = self.core.clone();
        batches::store_submits(&core, cycle.accepted).await;
        if !cycle.settles.is_empty() || !cycle.claims.is_empty() {
            self.standing
                .stand(batches::store_session_writes(&core, cycle.settles, cycle.claims).await);
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

/// If the checkpoint task asked for it, copies the WAL's last frames into
/// the database file, between two transactions of the only writer, so that
/// the next write starts the WAL over (see [`super::checkpoint`]).
fn finish_wal(core: &Core, inline: &Inline) {
    if !super::parts(core).finish_wal.swap(false, Ordering::Relaxed) {
        return;
    }
    let started = std::time::Instant::now();
    match inline.checkpoint() {
        Ok((frames, copied)) => tracing::debug!(
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            caught_up = frames == copied,
            "WAL copied in full for the next write to start it over"
        ),
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}

/// Writes a cycle in one transaction on `inline` and commits it.
async fn write(
    core: &Core,
    inline: &Inline,
    cycle: &Cycle,
) -> Result<(submits::Stored, Written), CoreError> {
    inline.begin()?;
    let views =
        submits::insert_submissions(core, inline, &intake::submissions(&cycle.accepted)).await?;
    let written =
        batches::write_session_writes_in(core, inline, &cycle.settles, &cycle.claims).await?;
    inline.commit()?;
    Ok((views, written))
}
