//! A key that stops working ends what it opened. Every few seconds the core
//! reads which keys work for the accounts with sessions on it (one query,
//! however many sessions) and ends each session opened with a key that no
//! longer does — rotated out by `chatrelay account rotate-key`, from any
//! process. Every core runs this over its own sessions, so it holds on
//! every core sharing a database.

use std::{collections::HashSet, sync::Arc, time::Duration};

use crate::{store::accounts, Core};

/// How often the keys are read: a revoked key's sessions end within this.
pub const EVERY: Duration = Duration::from_secs(2);

/// Starts the task that ends sessions whose key stopped working.
pub fn start(core: &Arc<Core>) {
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
            let watched = core.dispatch.accounts_with_sessions();
            if watched.is_empty() {
                continue;
            }
            match accounts::key_hashes_of(&core.store, &watched).await {
                Ok(valid) => {
                    let valid: HashSet<_> = valid.into_iter().collect();
                    let ended = core.dispatch.revoke_unless(&valid);
                    if ended > 0 {
                        tracing::info!(
                            sessions = ended,
                            "ending sessions opened with a key that no longer works"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read API keys to check sessions"),
            }
        }
    });
}
