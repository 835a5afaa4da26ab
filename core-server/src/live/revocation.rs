//! A key that stops working ends the streams it opened, as it ends the
//! extension sessions it opened: the check in `dispatch::revocation` reads
//! the keys for both (one query every few seconds) and ends each stream
//! whose key no longer works.

use std::{
    collections::HashSet,
    sync::{atomic::Ordering, Arc},
};

use tokio_util::sync::CancellationToken;

use super::{lock, Live};
use crate::{model::AccountId, Core};

pub(super) struct Watcher {
    account: AccountId,
    key_hash: String,
    revoked: CancellationToken,
}

/// An open stream's registration; unregistered when dropped.
pub(super) struct Registration {
    live: Arc<Core>,
    id: u64,
    pub revoked: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.live.live.watchers).remove(&self.id);
    }
}

impl Live {
    /// Registers a stream opened by `account` with the key whose SHA-256
    /// is `key_hash`.
    pub(super) fn register(core: &Arc<Core>, account: AccountId, key_hash: String) -> Registration {
        let live = &core.live;
        let id = live.next_watcher.fetch_add(1, Ordering::Relaxed);
        let revoked = CancellationToken::new();
        lock(&live.watchers).insert(
            id,
            Watcher {
                account,
                key_hash,
                revoked: revoked.clone(),
            },
        );
        Registration {
            live: core.clone(),
            id,
            revoked,
        }
    }
}

impl Live {
    /// The accounts with open streams.
    pub(crate) fn accounts_with_streams(&self) -> Vec<AccountId> {
        lock(&self.watchers).values().map(|w| w.account).collect()
    }

    /// Ends the streams whose key is not among `valid` (account, SHA-256 of
    /// a key that works); `dispatch::revocation` reads the keys for both
    /// sessions and streams in one query.
    pub(crate) fn revoke_unless(&self, valid: &HashSet<(AccountId, String)>) {
        for watcher in lock(&self.watchers).values() {
            if !valid.contains(&(watcher.account, watcher.key_hash.clone())) {
                watcher.revoked.cancel();
            }
        }
    }
}
