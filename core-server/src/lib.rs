//! chatrelay's core: it owns every rule and all state — accounts and API keys,
//! the request queue, chats, dispatch to extension sessions, webhooks — and
//! serves them over gRPC (`chatrelay.v1`). Nothing else touches the database.

pub mod accounts;
pub mod batch;
pub mod committed;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod grpc;
pub mod intake;
pub mod lifecycle;
pub mod live;
pub mod model;
pub mod queue_depth;
pub mod requests;
pub mod results;
pub mod retention;
mod retry;
pub mod store;
pub mod telemetry;
pub mod webhooks;

use std::{future::Future, sync::Arc, time::Duration};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use config::CoreConfig;
pub use error::{CoreError, CoreResult};

/// The core: built by [`Core::start`], served by [`grpc::routes`], stopped
/// by [`Core::stop`]. Its parts are private; the modules of the core reach
/// them, callers outside use the functions of [`accounts`], [`requests`],
/// [`lifecycle`] and [`webhooks`].
pub struct Core {
    pub(crate) store: store::Store,
    pub(crate) config: CoreConfig,
    pub(crate) dispatch: dispatch::Dispatch,
    /// The submit path's group commit (drained by the store's writer).
    pub(crate) intake: intake::Intake,
    /// The sessions' group commit: results and claims (drained by the
    /// store's writer).
    pub(crate) results: results::Results,
    /// This process's identity in leases, so other cores can tell its
    /// requests from their own.
    pub(crate) node_id: uuid::Uuid,
    /// Cancelled when the core stops; every background task watches it.
    pub(crate) shutdown: CancellationToken,
    /// The core's background tasks, awaited on stop.
    pub(crate) tasks: TaskTracker,
    /// Wakes the webhook worker (`webhooks::notify_committed`).
    pub(crate) webhooks: webhooks::Webhooks,
    /// For the queue-depth gauge of a sole writer (see [`queue_depth`]).
    pub(crate) open_requests: queue_depth::OpenRequests,
    /// Live status: long-polls and event streams (see [`live`]).
    pub(crate) live: live::Live,
}

impl Core {
    /// Connects to the database (applying migrations) and builds the core.
    pub async fn start(config: CoreConfig) -> anyhow::Result<Arc<Self>> {
        let store = store::Store::connect(&config.database).await?;
        let live = live::Live::new(config.live_buffer);
        let core = Arc::new(Self {
            store,
            config,
            dispatch: dispatch::Dispatch::default(),
            intake: intake::Intake::default(),
            results: results::Results::default(),
            node_id: uuid::Uuid::new_v4(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            webhooks: webhooks::Webhooks::default(),
            open_requests: Default::default(),
            live,
        });
        dispatch::lease::release_orphans(&core).await?;
        dispatch::registry::forget_orphans(&core).await?;
        // Counts the open requests before anything moves them.
        queue_depth::start(&core).await;
        dispatch::lease::start_keeper(&core);
        dispatch::registry::start(&core);
        dispatch::revocation::start(&core);
        store::Store::start(&core).await;
        webhooks::start_worker(&core);
        retention::start(&core);
        live::start(&core);
        Ok(core)
    }

    /// The store, for operators' tools and tests that read what the core
    /// wrote (the core itself changes it only through its own paths).
    pub fn store(&self) -> &store::Store {
        &self.store
    }

    /// This process's identity: the `node` of its extension sessions.
    pub fn node_id(&self) -> uuid::Uuid {
        self.node_id
    }

    /// Cancelled when the core stops (or to make it stop).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub(crate) fn lease_ttl_millis(&self) -> i64 {
        i64::try_from(self.config.lease_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
    }

    /// Runs `beat` at once and then every `period` until the core stops, as
    /// one of its background tasks; a beat that overruns delays the next
    /// rather than bunching them up.
    pub(crate) fn every<F, Fut>(self: &Arc<Self>, period: Duration, mut beat: F)
    where
        F: FnMut(Arc<Self>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let core = self.clone();
        self.tasks.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = core.shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                beat(core.clone()).await;
            }
        });
    }

    /// Stops the background tasks and waits for them.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
