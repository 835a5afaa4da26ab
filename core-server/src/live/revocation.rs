//! A key that stops working ends the streams it opened, as it ends the
//! extension sessions it opened (`dispatch::revocation`): every few seconds
//! the core reads which keys work for the accounts with open streams (one
//! query) and ends each stream whose key no longer does.

use std::{
    collections::HashSet,
    sync::{atomic::Ordering, Arc},
};

use tokio_util::sync::CancellationToken;

use super::{lock, Live};
use crate::{dispatch::revocation::EVERY, model::AccountId, store::accounts, Core};

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

/// Starts the task that ends streams whose key stopped working.
pub(super) fn start(core: &Arc<Core>) {
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = core.shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let mut watched: Vec<AccountId> = lock(&core.live.watchers)
                .values()
                .map(|w| w.account)
                .collect();
            if watched.is_empty() {
                continue;
            }
            watched.sort_unstable();
            watched.dedup();
            match accounts::key_hashes_of(&core.store, &watched).await {
                Ok(valid) => {
                    let valid: HashSet<(AccountId, String)> = valid.into_iter().collect();
                    for watcher in lock(&core.live.watchers).values() {
                        if !valid.contains(&(watcher.account, watcher.key_hash.clone())) {
                            watcher.revoked.cancel();
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read API keys to check streams"),
            }
        }
    });
}
