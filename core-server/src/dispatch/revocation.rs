//! A key that stops working ends what it opened. Every few seconds the core
//! reads which keys work for the accounts with sessions or live-status
//! streams on it (one query, however many) and ends each session or stream
//! opened with a key that no longer does — rotated out by `chatrelay
//! account rotate-key`, from any process. Every core runs this over its
//! own sessions and streams, so it holds on every core sharing a database.

use std::{collections::HashSet, sync::Arc, time::Duration};

use crate::{store::accounts, Core};

/// How often the keys are read: a revoked key's sessions end within this.
pub const EVERY: Duration = Duration::from_secs(2);

/// Starts the task that ends sessions whose key stopped working.
pub fn start(core: &Arc<Core>) {
    core.every(EVERY, |core| async move {
        // Extension sessions and live-status streams, in one query.
        let mut watched = core.dispatch.accounts_with_sessions();
        watched.extend(core.live.accounts_with_streams());
        if watched.is_empty() {
            return;
        }
        watched.sort_unstable();
        watched.dedup();
        match accounts::key_hashes_of(&core.store, &watched).await {
            Ok(valid) => {
                let valid: HashSet<_> = valid.into_iter().collect();
                core.live.revoke_unless(&valid);
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
    });
}
