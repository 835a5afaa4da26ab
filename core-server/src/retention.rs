//! Retention: finished requests older than `CHATRELAY_RETENTION` are deleted,
//! with their webhook deliveries and attempts and the chats they leave
//! empty. Off by default: nothing is ever deleted unless asked.
//!
//! A background task prunes at start-up and then every
//! [`INTERVAL`], in batches of [`BATCH`] requests, each batch one short
//! transaction, with a pause between batches so the writer (a sole writer's
//! only one) serves submits and results in between. `chatrelay prune
//! --older-than 30d` runs the same batches once, for operators. The
//! statements are in [`crate::store::retention`].

use std::{sync::Arc, time::Duration};

use chrono::Utc;

pub use crate::store::retention::Pruned;
use crate::{error::CoreResult, store::Store, Core};

/// Requests deleted per transaction.
pub const BATCH: u64 = 256;
/// The pause between two batches.
const BETWEEN_BATCHES: Duration = Duration::from_millis(50);
/// How often the background task looks for expired requests.
pub const INTERVAL: Duration = Duration::from_secs(600);

/// Parses an age: a whole number with a unit, `s`, `m`, `h` or `d` (`30d`).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: add a unit (s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a whole number followed by s, m, h or d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use s, m, h or d)"
            ))
        }
    };
    // A century is plenty, and keeps date arithmetic far from overflow.
    number
        .checked_mul(seconds)
        .filter(|s| *s <= 100 * 366 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?}: longer than a century"))
}

/// Deletes, batch by batch, what finished more than `older_than` ago.
pub async fn prune(store: &Store, older_than: Duration) -> CoreResult<Pruned> {
    prune_until(store, older_than, || false).await
}

async fn prune_until(
    store: &Store,
    older_than: Duration,
    stop: impl Fn() -> bool,
) -> CoreResult<Pruned> {
    let age = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(age)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let mut total = Pruned::default();
    loop {
        let batch = crate::store::retention::prune_batch(store, cutoff, BATCH).await?;
        total += batch;
        if batch.requests < BATCH || stop() {
            return Ok(total);
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
}

/// Starts the retention task on `core.tasks` when retention is configured.
pub fn start(core: &Arc<Core>) {
    let Some(older_than) = core.config.retention else {
        return;
    };
    let core = core.clone();
    let tasks = core.tasks.clone();
    tasks.spawn(async move {
        loop {
            let stopping = || core.shutdown.is_cancelled();
            match prune_until(&core.store, older_than, stopping).await {
                Ok(pruned) if pruned.requests > 0 => tracing::info!(
                    requests = pruned.requests,
                    deliveries = pruned.deliveries,
                    attempts = pruned.attempts,
                    chats = pruned.chats,
                    "retention: deleted finished requests past CHATRELAY_RETENTION"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "retention: pruning failed; trying again later")
                }
            }
            tokio::select! {
                _ = core.shutdown.cancelled() => return,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        for bad in ["30", "d", "30x", "-1d", "1.5d", "99999d"] {
            assert!(parse_age(bad).is_err(), "{bad:?} parsed");
        }
    }
}
