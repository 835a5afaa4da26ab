//! The queue-depth gauges: how many requests are idle and executing.
//!
//! Where cores share the database, both are counted from it (the only
//! truth, whichever core queued them) every few seconds, with the
//! `message_requests_status` index. A core that is its database's sole
//! writer (`Store::sole_writer`) keeps the number of open requests itself:
//! counted once at start-up, then moved as it stores and finishes requests.
//! Every few seconds it counts only the executing ones (no more than the
//! sessions hold), from SQLite's index of executing requests, and takes
//! idle as the rest. Counting a large idle backlog reads every entry of the
//! index (38 ms at 1.2M idle requests), a burst of CPU that showed in the
//! latency of everything else.

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use sea_orm::DbErr;

use crate::{model::RequestStatus, store::requests, Core};

const PERIOD: Duration = Duration::from_secs(5);

/// Open (idle or executing) requests, as this core moved them since it
/// started; for a sole writer, plus the count at start-up.
#[derive(Default)]
pub struct OpenRequests(AtomicI64);

impl OpenRequests {
    /// `n` requests were stored (after the commit).
    pub(crate) fn stored(&self, n: usize) {
        self.0.fetch_add(n as i64, Ordering::Relaxed);
    }

    /// `n` requests reached a terminal status (after the commit).
    pub(crate) fn finished(&self, n: usize) {
        self.0.fetch_sub(n as i64, Ordering::Relaxed);
    }
}

/// Requests with one of `statuses`.
async fn count(core: &Core, statuses: &[RequestStatus]) -> Result<i64, DbErr> {
    requests::count(&core.store, statuses).await
}

/// Starts the gauges. For a sole writer, call it before anything stores or
/// finishes requests: it counts the open ones first.
pub async fn start(core: &Arc<Core>) {
    let kept = core.store.sole_writer()
        && match count(core, &RequestStatus::OPEN).await {
            Ok(open) => {
                core.open_requests.0.fetch_add(open, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not count open requests; counting idle ones every time");
                false
            }
        };
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let mut ticks = tokio::time::interval(PERIOD);
        loop {
            tokio::select! {
                _ = core.shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let Ok(executing) = count(&core, &[RequestStatus::Executing]).await else {
                continue;
            };
            let idle = if kept {
                Ok(core.open_requests.0.load(Ordering::Relaxed) - executing)
            } else {
                count(&core, &[RequestStatus::Idle]).await
            };
            let Ok(idle) = idle else {
                continue;
            };
            for (status, n) in [
                (RequestStatus::Idle, idle),
                (RequestStatus::Executing, executing),
            ] {
                metrics::gauge!("chatrelay_queue_depth", "status" => status.as_str())
                    .set(n.max(0) as f64);
            }
        }
    });
}
