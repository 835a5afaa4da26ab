//! The rows of this core's extension sessions in the database, which let
//! any core sharing it list an account's sessions ([`list`]).
//!
//! One task writes them all: sessions that open and end queue here, and
//! whatever has gathered is written in one transaction — a thousand
//! extensions reconnecting at once cost a handful of transactions, not a
//! thousand. The task also knows exactly which rows this core should have,
//! so on each lease-renewal beat it refreshes them in one statement and,
//! should their number differ from what it expects (a write failed, or the
//! rows were swept while the core could not reach the database), rewrites
//! them. When the core stops it deletes its rows.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    batch,
    error::CoreResult,
    model::{now_millis, AccountId, ExtensionSession},
    store::sessions::{self, SessionRow},
    Core,
};

/// Changes gathered for one transaction at most.
const MAX_BATCH: usize = 1024;
/// Changes that may wait before sessions wait to enqueue theirs.
const QUEUE: usize = 4096;
/// A row unseen for this many lease lifetimes belongs to a core that is
/// gone: any core deletes it.
const SWEEP_AFTER_LEASES: i64 = 10;

enum Change {
    /// A session opened; answered once its row is written (or was not).
    Opened(SessionRow, oneshot::Sender<()>),
    Ended(Uuid),
    /// The lease-renewal beat: mark this core's rows as seen.
    Refresh,
}

pub(crate) struct Registry {
    queue: batch::Queue<Change>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            queue: batch::Queue::new(QUEUE),
        }
    }
}

impl Registry {
    /// Records that a session opened; returns once its row is written, so
    /// that it is listed before it is sent anything. A failed write is
    /// logged and repaired on the next beat.
    pub(crate) async fn opened(&self, id: Uuid, account: AccountId) {
        let (done, written) = oneshot::channel();
        let row = SessionRow {
            id,
            account,
            connected_at: crate::model::now(),
        };
        if self.queue.send(Change::Opened(row, done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Records that a session ended.
    pub(crate) async fn ended(&self, id: Uuid) {
        let _ = self.queue.send(Change::Ended(id)).await;
    }

    /// Asks for this core's rows to be marked as seen.
    pub(crate) async fn refresh(&self) {
        let _ = self.queue.send(Change::Refresh).await;
    }
}

/// The account's extension sessions on every core sharing the database,
/// oldest connection first: those whose core refreshed them within the
/// lease lifetime.
pub async fn list(core: &Core, account: AccountId) -> CoreResult<Vec<ExtensionSession>> {
    sessions::list(&core.store, account, now_millis() - core.lease_ttl_millis()).await
}

/// A sole writer owns the database, so session rows found at start-up are
/// a previous run's: delete them at once. (Where cores share the database,
/// the rows of a core that is gone lapse, and are swept.)
pub(crate) async fn forget_orphans(core: &Core) -> CoreResult<()> {
    if !core.store.sole_writer() {
        return Ok(());
    }
    sessions::forget_all(&core.store).await
}

/// Deletes the rows of cores that have been gone for a while.
pub(crate) async fn sweep(core: &Core) -> CoreResult<u64> {
    let before = now_millis() - core.lease_ttl_millis().saturating_mul(SWEEP_AFTER_LEASES);
    sessions::sweep(&core.store, before).await
}

/// Starts the task that writes this core's session rows. At shutdown it
/// writes what is queued, deletes the core's rows and ends.
pub(crate) fn start(core: &Arc<Core>) {
    let Some(mut rx) = core.dispatch.registry.queue.take_receiver() else {
        return;
    };
    let mut writer = Writer {
        core: core.clone(),
        rows: HashMap::new(),
        drifted: false,
    };
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        while let Some(batch) = rx.next(&writer.core.shutdown, MAX_BATCH).await {
            writer.apply(batch).await;
        }
        if let Err(e) = sessions::forget_node(&writer.core.store, writer.core.node_id).await {
            tracing::warn!(error = %e, "could not delete this core's session rows; they lapse by themselves");
        }
    });
}

struct Writer {
    core: Arc<Core>,
    /// The rows this core should have.
    rows: HashMap<Uuid, SessionRow>,
    /// A write failed since the rows were last known right.
    drifted: bool,
}

impl Writer {
    /// Writes a batch: the rows of sessions that opened and of those that
    /// ended in one transaction, then the refresh if one was asked for.
    async fn apply(&mut self, batch: Vec<Change>) {
        let mut opened: HashMap<Uuid, SessionRow> = HashMap::new();
        let mut ended = Vec::new();
        let mut waiting = Vec::new();
        let mut refresh = false;
        for change in batch {
            match change {
                Change::Opened(row, done) => {
                    opened.insert(row.id, row);
                    waiting.push(done);
                }
                // A session that opened and ended within the batch writes nothing.
                Change::Ended(id) => {
                    if opened.remove(&id).is_none() {
                        ended.push(id);
                    }
                }
                Change::Refresh => refresh = true,
            }
        }
        let opened: Vec<SessionRow> = opened.into_values().collect();
        for id in &ended {
            self.rows.remove(id);
        }
        self.rows.extend(opened.iter().map(|row| (row.id, *row)));
        let core = &self.core;
        if let Err(e) = sessions::record(&core.store, core.node_id, &opened, &ended).await {
            tracing::warn!(error = %e, "could not record extension sessions; repairing on the next beat");
            self.drifted = true;
        }
        for done in waiting {
            let _ = done.send(());
        }
        if refresh {
            self.refresh().await;
        }
    }

    /// Marks this core's rows as seen; rewrites them if they are not the
    /// ones it should have.
    async fn refresh(&mut self) {
        let core = &self.core;
        match sessions::refresh(&core.store, core.node_id).await {
            Ok(found) if found == self.rows.len() as u64 && !self.drifted => return,
            Ok(found) => tracing::info!(
                found,
                expected = self.rows.len(),
                "this core's session rows drifted; rewriting them"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh this core's session rows");
                return;
            }
        }
        let rows: Vec<SessionRow> = self.rows.values().copied().collect();
        match sessions::replace(&core.store, core.node_id, &rows).await {
            Ok(()) => self.drifted = false,
            Err(e) => tracing::warn!(error = %e, "could not rewrite this core's session rows"),
        }
    }
}
