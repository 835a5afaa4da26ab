//! Live status: clients hear of a request's status change the moment it
//! commits — by long-poll ([`wait`]) or by a stream of events ([`watch`],
//! `ChatService.WatchRequests`, which the edge serves as Server-Sent Events).
//!
//! The source is [`crate::committed::after_commit`], which hands every
//! committed [`StatusChange`] to [`Live::committed`]. That call is cheap when
//! nobody listens: long-polls are woken through a map of the request ids
//! being waited on, and a change is queued for the event feeds only if its
//! account has a [`Feed`]. One publisher task per core turns each queued
//! change into the JSON a `GetRequest` returns — the request as the
//! committing transaction left it where that transaction had it whole
//! (submits and answers, so the hot path reads nothing back), read once
//! otherwise — numbers the event and appends it to its account's feed,
//! which every subscriber of the account reads.
//!
//! Where cores share a database, each core also passes every change on to
//! the others (ids and statuses only, through the store's notifications),
//! which feed them in as [`Live::remote`].
//!
//! Memory is bounded: a feed keeps a window of its account's last
//! [`WINDOW`] events (for `Last-Event-ID` resumption) and its subscribers
//! share one ring of `live_buffer` events; a subscriber that falls further
//! behind than that is sent a final reset. A feed without subscribers is
//! dropped after [`RETAIN`].

mod feed;
mod revocation;
pub mod wait;
pub mod watch;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use tokio::sync::Notify;
use uuid::Uuid;

pub use feed::{Event, Item};
use feed::{Feed, Subscription};

use crate::{
    committed::{Cause, StatusChange},
    model::{AccountId, RequestStatus, RequestView},
    Core,
};

/// Events of an account kept for resumption.
pub const WINDOW: usize = 256;

/// How long a feed outlives its last subscriber, so that a client that
/// reconnects soon can resume where it was.
pub const RETAIN: Duration = Duration::from_secs(300);

/// Changes queued for the publisher (or for other cores) beyond which new
/// ones are dropped and the subscribers told to re-list. Reached only if the
/// database cannot keep up with the reads for minutes on end.
const MAX_QUEUED: usize = 100_000;

/// One request's new status, as the live side carries it: committed here,
/// or by another core.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub account: AccountId,
    pub request: Uuid,
    pub status: RequestStatus,
    /// The request as the change left it, if the committing transaction had
    /// it (never for another core's changes): the publisher reads the rest.
    pub view: Option<Arc<RequestView>>,
}

impl Change {
    /// The change without its view, as other cores are told of it.
    fn ids(&self) -> Self {
        Self {
            view: None,
            ..self.clone()
        }
    }
}

impl From<&StatusChange> for Change {
    fn from(change: &StatusChange) -> Self {
        Self {
            account: change.account,
            request: change.request,
            status: change.status,
            view: change.view.clone(),
        }
    }
}

/// Changes waiting for a task, and whether some had to be dropped.
#[derive(Default)]
struct Queue {
    changes: Vec<Change>,
    overflowed: bool,
}

impl Queue {
    fn push(&mut self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            if self.changes.len() >= MAX_QUEUED {
                self.overflowed = true;
                return;
            }
            self.changes.push(change);
        }
    }
}

/// The core's live-status hub (one per core, in [`Core`]).
pub struct Live {
    /// Identifies this core's event ids (and this run of it).
    tag: String,
    /// The last event number given out; event ids increase with it.
    seq: AtomicU64,
    /// Events a subscriber may fall behind before it is reset.
    buffer: usize,
    feeds: Mutex<HashMap<AccountId, Arc<Feed>>>,
    feed_count: AtomicUsize,
    /// Long-polls, by the request they wait for.
    waiters: Mutex<HashMap<Uuid, Arc<Notify>>>,
    waiter_count: AtomicUsize,
    /// Changes of accounts with a feed, for the publisher task.
    pending: Mutex<Queue>,
    pending_ready: Notify,
    /// Every change, for other cores (only once something sends them on).
    outbound: Mutex<Queue>,
    outbound_ready: Notify,
    outbound_on: AtomicBool,
    /// Open streams, with the key each was opened with (see [`revocation`]).
    watchers: Mutex<HashMap<u64, revocation::Watcher>>,
    next_watcher: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Live {
    pub fn new(buffer: usize) -> Self {
        Self {
            tag: Uuid::new_v4().simple().to_string()[..8].to_string(),
            seq: AtomicU64::new(0),
            buffer: buffer.max(1),
            feeds: Mutex::default(),
            feed_count: AtomicUsize::new(0),
            waiters: Mutex::default(),
            waiter_count: AtomicUsize::new(0),
            pending: Mutex::default(),
            pending_ready: Notify::new(),
            outbound: Mutex::default(),
            outbound_ready: Notify::new(),
            outbound_on: AtomicBool::new(false),
            watchers: Mutex::default(),
            next_watcher: AtomicU64::new(0),
        }
    }

    /// What this core committed: wakes long-polls, queues events, and
    /// queues the changes for other cores.
    pub(crate) fn committed(&self, changes: &[StatusChange]) {
        if changes.is_empty() {
            return;
        }
        if self.outbound_on.load(Ordering::Relaxed) {
            // A submit's and an answer's changes reached the other cores
            // with their commit (`postgres::notify`: the submit statement's
            // `s` payloads, the `f` notification of the answer's
            // transaction).
            let outbound = changes
                .iter()
                .filter(|c| !matches!(c.cause, Cause::Submitted | Cause::Finished));
            let mut queue = lock(&self.outbound);
            let before = queue.changes.len();
            queue.push(outbound.map(|c| Change::from(c).ids()));
            if queue.changes.len() > before || queue.overflowed {
                self.outbound_ready.notify_one();
            }
        }
        self.arrived(changes.iter().map(Change::from));
    }

    /// What another core committed.
    pub fn remote(&self, changes: impl IntoIterator<Item = Change> + Clone) {
        self.arrived(changes);
    }

    fn arrived(&self, changes: impl IntoIterator<Item = Change> + Clone) {
        if self.waiter_count.load(Ordering::Relaxed) > 0 {
            let waiters = lock(&self.waiters);
            for change in changes.clone() {
                if change.status.is_terminal() {
                    if let Some(waiter) = waiters.get(&change.request) {
                        waiter.notify_waiters();
                    }
                }
            }
        }
        if self.feed_count.load(Ordering::Relaxed) > 0 {
            let feeds = lock(&self.feeds);
            let mut pending = lock(&self.pending);
            let before = pending.changes.len();
            pending.push(
                changes
                    .into_iter()
                    .filter(|change| feeds.contains_key(&change.account)),
            );
            let queued = pending.changes.len() > before || pending.overflowed;
            drop(pending);
            drop(feeds);
            if queued {
                self.pending_ready.notify_one();
            }
        }
    }

    /// Events from other cores may have been missed (their notifications
    /// were lost): every subscriber is told to re-list, and every long-poll
    /// looks again.
    pub fn lost(&self) {
        self.reset_all("events from other cores may have been missed; list the requests again");
        for waiter in lock(&self.waiters).values() {
            waiter.notify_waiters();
        }
    }

    fn reset_all(&self, reason: &'static str) {
        for feed in lock(&self.feeds).values() {
            feed.reset(reason);
        }
    }

    /// Turns on the queue of changes for other cores (see
    /// [`Self::take_outbound`]); a core alone on its database never does.
    pub fn send_to_other_cores(&self) {
        self.outbound_on.store(true, Ordering::Relaxed);
    }

    /// Waits for changes to pass on to other cores and takes them; `true`
    /// with them if some had to be dropped.
    pub async fn take_outbound(&self) -> (Vec<Change>, bool) {
        loop {
            {
                let mut queue = lock(&self.outbound);
                if !queue.changes.is_empty() || queue.overflowed {
                    let taken = std::mem::take(&mut *queue);
                    return (taken.changes, taken.overflowed);
                }
            }
            self.outbound_ready.notified().await;
        }
    }

    /// The id of event number `seq` of this core.
    fn event_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.tag)
    }

    /// The event number of `id`, if it is one of this core's run.
    fn parse_event_id(&self, id: &str) -> Option<u64> {
        let (tag, seq) = id.trim().split_once('-')?;
        if tag != self.tag {
            return None;
        }
        seq.parse()
            .ok()
            .filter(|seq| *seq <= self.seq.load(Ordering::Relaxed))
    }

    /// Subscribes to the account's events, after the event `after` if given.
    fn subscribe(&self, account: AccountId, after: Option<&str>) -> Subscription {
        let feed = {
            let mut feeds = lock(&self.feeds);
            let feed = feeds
                .entry(account)
                .or_insert_with(|| {
                    Arc::new(Feed::new(self.buffer, self.seq.load(Ordering::Relaxed)))
                })
                .clone();
            self.feed_count.store(feeds.len(), Ordering::Relaxed);
            feed
        };
        let after = after.map(|id| self.parse_event_id(id));
        feed.subscribe(after, |seq| self.event_id(seq))
    }

    /// A long-poll's registration for changes of `request`.
    fn waiter(&self, request: Uuid) -> Waiter<'_> {
        let mut waiters = lock(&self.waiters);
        let notify = waiters.entry(request).or_default().clone();
        self.waiter_count.store(waiters.len(), Ordering::Relaxed);
        Waiter {
            live: self,
            request,
            notify,
        }
    }

    /// Drops the feeds that have had no subscriber for [`RETAIN`].
    fn sweep(&self) {
        let mut feeds = lock(&self.feeds);
        feeds.retain(|_, feed| !feed.unused_for(RETAIN));
        self.feed_count.store(feeds.len(), Ordering::Relaxed);
    }

    fn take_pending(&self) -> Queue {
        std::mem::take(&mut *lock(&self.pending))
    }

    fn feed(&self, account: AccountId) -> Option<Arc<Feed>> {
        lock(&self.feeds).get(&account).cloned()
    }
}

/// A long-poll's wake-up; unregistered when dropped.
struct Waiter<'a> {
    live: &'a Live,
    request: Uuid,
    notify: Arc<Notify>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut waiters = lock(&self.live.waiters);
        // The map's reference and ours: no other long-poll waits for it.
        if Arc::strong_count(&self.notify) <= 2 {
            waiters.remove(&self.request);
        }
        self.live
            .waiter_count
            .store(waiters.len(), Ordering::Relaxed);
    }
}

/// How often feeds without subscribers are looked for.
const SWEEP: Duration = Duration::from_secs(30);

/// Starts the publisher: it turns queued changes into events.
pub fn start(core: &Arc<Core>) {
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let live = &core.live;
        let mut sweep = tokio::time::interval(SWEEP);
        loop {
            tokio::select! {
                _ = core.shutdown.cancelled() => return,
                _ = sweep.tick() => {
                    live.sweep();
                    continue;
                }
                _ = live.pending_ready.notified() => {}
            }
            let queue = live.take_pending();
            if queue.overflowed {
                tracing::warn!("live events dropped: the core fell behind");
                live.reset_all("events were dropped; list the requests again");
            }
            publish(&core, queue.changes).await;
        }
    });
}

/// Appends one event per change to its account's feed, in commit order,
/// reading (account by account, in one query each) the changed requests
/// that came without their view.
async fn publish(core: &Core, changes: Vec<Change>) {
    let mut by_account: Vec<(AccountId, VecDeque<Change>)> = Vec::new();
    for change in changes {
        match by_account.iter_mut().find(|(a, _)| *a == change.account) {
            Some((_, list)) => list.push_back(change),
            None => by_account.push((change.account, VecDeque::from([change]))),
        }
    }
    for (account, changes) in by_account {
        let Some(feed) = core.live.feed(account) else {
            continue;
        };
        // Only the changes that came without the request are read.
        let ids: Vec<Uuid> = changes
            .iter()
            .filter(|c| c.view.is_none())
            .map(|c| c.request)
            .collect();
        let read = if ids.is_empty() {
            Default::default()
        } else {
            match crate::store::requests::views_of(&core.store, account, &ids).await {
                Ok(views) => views,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read changed requests; resetting their subscribers");
                    feed.reset(
                        "the server could not read a changed request; list the requests again",
                    );
                    continue;
                }
            }
        };
        for change in changes {
            // Gone only if deleted since; there is nothing to show.
            let view = match change.view {
                Some(view) => Arc::unwrap_or_clone(view),
                None => match read.get(&change.request) {
                    Some(view) => view.clone(),
                    None => continue,
                },
            };
            let seq = core.live.seq.fetch_add(1, Ordering::Relaxed) + 1;
            feed.push(Event {
                seq,
                id: core.live.event_id(seq),
                view,
            });
        }
    }
}
