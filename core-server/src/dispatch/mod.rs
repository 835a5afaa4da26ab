//! Dispatch of queued requests to extension sessions.
//!
//! The database is the queue and the only source of truth: a request is
//! delivered by *claiming* it (a lease naming the session and this core), so
//! the rules hold however many cores share one database. This module adds
//! what makes it event-driven: per-account wake-ups in this process, fed by
//! local submits and results and, where cores share the database, by the
//! other cores (see [`crate::store`]). No session ever polls with a sleep.

pub mod lease;
pub mod registry;
pub mod revocation;
pub mod session;

use std::sync::{Arc, OnceLock};

use dashmap::{DashMap, DashSet};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::model::AccountId;

/// What the sessions of one account, in this process, share.
pub struct AccountHub {
    /// New claimable work: wakes one waiting session, which passes it on if
    /// it could not take everything. (A session whose claim stands in the
    /// store, in its writer or PostgreSQL's claimer, needs no wake-up.)
    pub work: Notify,
    /// Requests of the account that reached a terminal status, so the session
    /// holding one frees its slot even when the result came another way. One
    /// message per committed batch: each session wakes once per batch, not
    /// once per request.
    pub finished: broadcast::Sender<Arc<[Uuid]>>,
    /// Sessions of the account open on this core.
    pub sessions: std::sync::atomic::AtomicUsize,
}

impl Default for AccountHub {
    fn default() -> Self {
        Self {
            work: Notify::new(),
            finished: broadcast::channel(1024).0,
            sessions: Default::default(),
        }
    }
}

/// A session's place in its account's count; given back when dropped.
pub struct SessionSlot(Arc<AccountHub>);

impl AccountHub {
    /// Takes a session slot unless the account already holds `limit`.
    pub fn take_slot(self: &Arc<Self>, limit: usize) -> Option<SessionSlot> {
        use std::sync::atomic::Ordering;
        let before = self.sessions.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.sessions.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(SessionSlot(self.clone()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0
            .sessions
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Claims that found nothing and wait, outside the sessions, for work.
pub(crate) trait StandingClaims: Send + Sync {
    /// The account may have claimable work: its claims run again.
    fn woken(&self, account: AccountId);
    /// Anything may have been missed: every account's claims run again.
    fn woken_all(&self);
}

/// A session running on this core.
pub(crate) struct LiveSession {
    pub(crate) account: AccountId,
    /// SHA-256 of the API key the session was opened with.
    pub(crate) key_hash: String,
    /// Cancelled when that key stops working.
    pub(crate) revoked: CancellationToken,
}

#[derive(Default)]
pub struct Dispatch {
    accounts: DashMap<i64, Arc<AccountHub>>,
    /// Where the sessions' claims stand in the store's writer: the
    /// accounts whose work came back other than by a submit or a result.
    returned: OnceLock<mpsc::UnboundedSender<AccountId>>,
    /// Where the sessions' claims stand in a claimer beside the writers
    /// (PostgreSQL): every account that may have new claimable work.
    claimer: OnceLock<Arc<dyn StandingClaims>>,
    /// Sessions running on this core: the only ones whose leases it renews,
    /// with what [`revocation`] needs to end them when their key goes.
    live: DashMap<Uuid, LiveSession>,
    /// Sessions that ended but whose requests could not be given back yet;
    /// the lease keeper tries again (see [`lease`]).
    unreleased: DashSet<Uuid>,
    /// The rows of this core's sessions in the database, which every core
    /// lists (see [`registry`]).
    pub(crate) registry: registry::Registry,
}

impl Dispatch {
    /// The hub of an account, created on first use.
    pub fn account(&self, account: AccountId) -> Arc<AccountHub> {
        self.accounts.entry(account.0).or_default().clone()
    }

    /// Work for the account appeared in this process. (Claims waiting in
    /// the writer saw it already, in the transaction that stored it.)
    pub fn submitted(&self, account: AccountId) {
        self.notify(account);
    }

    /// Work for the account came back (a lease was given back) or appeared
    /// on another core.
    pub(crate) fn wake_local(&self, account: AccountId) {
        self.notify(account);
        if let Some(returned) = self.returned.get() {
            let _ = returned.send(account);
        }
    }

    /// Where [`Self::wake_local`] also reports the accounts it wakes.
    pub(crate) fn report_returned_work(&self, to: mpsc::UnboundedSender<AccountId>) {
        let _ = self.returned.set(to);
    }

    /// Where [`Self::notify`] and [`Self::wake_all`] also reach the
    /// claims standing in a claimer.
    pub(crate) fn report_work_to(&self, claimer: Arc<dyn StandingClaims>) {
        let _ = self.claimer.set(claimer);
    }

    fn notify(&self, account: AccountId) {
        if let Some(claimer) = self.claimer.get() {
            claimer.woken(account);
        }
        if let Some(hub) = self.accounts.get(&account.0) {
            hub.work.notify_one();
        }
    }

    /// Requests of the account finished: free their holders' slots and let
    /// their chats' next requests go. (Other cores hear of it through
    /// `notify`.)
    pub(crate) fn finished_local(&self, account: AccountId, requests: Arc<[Uuid]>) {
        if let Some(hub) = self.accounts.get(&account.0) {
            let _ = hub.finished.send(requests);
        }
        self.notify(account);
    }

    /// A session started on this core: its leases are renewed while it runs.
    /// The token is cancelled if the key it was opened with stops working.
    pub(crate) fn session_started(
        &self,
        session: Uuid,
        account: AccountId,
        key_hash: String,
    ) -> CancellationToken {
        let revoked = CancellationToken::new();
        self.live.insert(
            session,
            LiveSession {
                account,
                key_hash,
                revoked: revoked.clone(),
            },
        );
        revoked
    }

    /// A session ended: its leases are no longer renewed. If `released` is
    /// false its requests could not be given back, and the lease keeper
    /// tries again until they are.
    pub(crate) fn session_ended(&self, session: Uuid, released: bool) {
        self.live.remove(&session);
        if !released {
            self.unreleased.insert(session);
        }
    }

    /// The sessions running on this core.
    pub(crate) fn live_sessions(&self) -> Vec<Uuid> {
        self.live.iter().map(|s| *s.key()).collect()
    }

    /// The accounts with sessions on this core.
    pub(crate) fn accounts_with_sessions(&self) -> Vec<AccountId> {
        let mut accounts: Vec<AccountId> = self.live.iter().map(|s| s.account).collect();
        accounts.sort_unstable();
        accounts.dedup();
        accounts
    }

    /// Ends the sessions whose key is not among `valid` (SHA-256s of keys
    /// that work) for their account; returns how many.
    pub(crate) fn revoke_unless(
        &self,
        valid: &std::collections::HashSet<(AccountId, String)>,
    ) -> usize {
        let mut revoked = 0;
        for session in self.live.iter() {
            if !session.revoked.is_cancelled()
                && !valid.contains(&(session.account, session.key_hash.clone()))
            {
                session.revoked.cancel();
                revoked += 1;
            }
        }
        revoked
    }

    /// Takes the ended sessions whose requests are still to be given back.
    pub(crate) fn take_unreleased(&self) -> Vec<Uuid> {
        let sessions: Vec<Uuid> = self.unreleased.iter().map(|s| *s).collect();
        for session in &sessions {
            self.unreleased.remove(session);
        }
        sessions
    }

    /// Wakes every local session: after a lost notification connection,
    /// when anything may have been missed.
    pub(crate) fn wake_all(&self) {
        if let Some(claimer) = self.claimer.get() {
            claimer.woken_all();
        }
        for hub in self.accounts.iter() {
            hub.work.notify_one();
        }
    }
}
