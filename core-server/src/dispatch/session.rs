//! One extension session: it receives the account's idle backlog oldest
//! first, then live requests as they come, never more than its window
//! undelivered-unfinished at once, and applies the frames the extension
//! sends back. When it ends, what it still held goes back to the queue.

use std::{
    collections::HashSet,
    fmt::Display,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use uuid::Uuid;

use super::{lease, AccountHub};
use crate::{
    error::CoreError,
    lifecycle::{self, Outcome},
    model::{AccountId, MessageRequest},
    results::Claimed,
    store::{requests, Store},
    Core,
};

/// A frame from the extension, already decoded from its wire form.
#[derive(Clone, Debug)]
pub enum ClientFrame {
    Executing {
        request_id: String,
    },
    Response {
        request_id: String,
        response: String,
        chat_id: String,
        chat_title: Option<String>,
    },
    Error {
        request_id: String,
        error: String,
    },
    /// The bridge's socket is open: deliveries may start.
    Ready,
    /// A frame that could not be decoded; answered with an error frame.
    Invalid {
        request_id: Option<String>,
        error: String,
    },
}

/// A request handed to the extension.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub request: MessageRequest,
    /// The chat's ChatGPT id, `None` for a new chat.
    pub chatgpt_id: Option<String>,
}

/// A frame to the extension.
#[derive(Debug)]
pub enum ServerFrame {
    /// Boxed: a session's channel allocates room for 32 frames when it is
    /// made, and a delivery is several times the size of the other frames.
    NewRequest(Box<Delivery>),
    Error {
        request_id: Option<String>,
        error: String,
    },
    /// The core ends the session for this reason (the last frame).
    End(CoreError),
}

/// Frames taken from the extension in one go.
const MAX_FRAMES_AT_ONCE: usize = 64;

/// After a claim fails (the database refused it, say), the session claims
/// again after this long, doubling up to [`CLAIM_RETRY_MAX`] while claims
/// keep failing. Nothing else may wake it: a backlog with no new submits
/// would otherwise wait for one.
const CLAIM_RETRY_FIRST: Duration = Duration::from_millis(250);
const CLAIM_RETRY_MAX: Duration = Duration::from_secs(5);

struct Session {
    core: Arc<Core>,
    account: AccountId,
    id: Uuid,
    hub: Arc<AccountHub>,
    window: usize,
    /// Requests this session holds: delivered (or taken over) and not finished.
    held: HashSet<Uuid>,
    /// `window - held.len()`, for a claim that stands in the store.
    room: Arc<AtomicUsize>,
    /// The session's claim, until it is answered (see `Store::claim`).
    claim: Option<Claimed>,
    /// When to claim again after a claim failed.
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The wait before the next retry.
    retry_after: Duration,
    out: mpsc::Sender<ServerFrame>,
    /// The extension's side is gone.
    closed: bool,
    /// Deliveries may start (at once, or once the bridge's socket is open).
    ready: bool,
}

/// Runs a session until the extension goes away or the core stops.
pub async fn run<S>(
    core: Arc<Core>,
    account: AccountId,
    key_hash: String,
    ready: bool,
    mut inbound: S,
    out: mpsc::Sender<ServerFrame>,
) where
    S: Stream<Item = ClientFrame> + Unpin,
{
    let hub = core.dispatch.account(account);
    let mut finished = hub.finished.subscribe();
    // UUIDv7: ordering sessions by id is ordering them by connection.
    let id = Uuid::now_v7();
    // Listed (on every core) before it is sent anything.
    core.dispatch.registry.opened(id, account).await;
    let mut session = Session {
        window: core.config.session_window.max(1) as usize,
        id,
        core: core.clone(),
        account,
        hub: hub.clone(),
        held: HashSet::new(),
        room: Arc::default(),
        claim: None,
        retry: None,
        retry_after: CLAIM_RETRY_FIRST,
        out,
        closed: false,
        ready,
    };
    let revoked = core.dispatch.session_started(session.id, account, key_hash);
    tracing::debug!(session = %session.id, account = account.0, "extension session started");
    metrics::gauge!("chatrelay_extension_sessions").increment(1.0);
    // What the session does once woken is boxed (`Box::pin`), database
    // calls included: the task then keeps only what it waits with, not room
    // for its largest call, while it sits idle.
    Box::pin(session.fill()).await;
    while !session.closed {
        // A session whose claim stands in the store needs no wake-up.
        let wake = session.held.len() < session.window && session.claim.is_none();
        tokio::select! {
            _ = core.shutdown.cancelled() => break,
            _ = revoked.cancelled() => {
                session.send(ServerFrame::End(CoreError::Unauthenticated(
                    "the API key this session was opened with no longer works",
                )))
                .await;
                break;
            }
            frame = inbound.next() => match frame {
                Some(frame) => {
                    // Take every frame already waiting, so results can share a transaction.
                    let mut frames = vec![frame];
                    while frames.len() < MAX_FRAMES_AT_ONCE {
                        match inbound.next().now_or_never() {
                            Some(Some(frame)) => frames.push(frame),
                            _ => break,
                        }
                    }
                    Box::pin(session.handle_all(frames)).await
                }
                None => break,
            },
            _ = hub.work.notified(), if wake => Box::pin(session.fill()).await,
            _ = async { session.retry.as_mut().expect("guarded").await }, if session.retry.is_some() => {
                session.retry = None;
                Box::pin(session.fill()).await
            }
            claimed = async { session.claim.as_mut().expect("guarded").await }, if session.claim.is_some() => {
                session.claim = None;
                if matches!(claimed, Ok(Ok(_))) {
                    session.retry_after = CLAIM_RETRY_FIRST;
                }
                match claimed {
                    Ok(Ok(claimed)) if !claimed.is_empty() => {
                        if claimed.len() >= session.window.saturating_sub(session.held.len()) {
                            // There may be more than this session can take:
                            // pass the wake-up on to another.
                            session.hub.work.notify_one();
                        }
                        Box::pin(session.deliver_and_refill(claimed)).await;
                    }
                    // Nothing: a wake-up claims again.
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => session.claim_failed(&e),
                    Err(_) => session.claim_failed(&"the writer dropped the claim"),
                }
            }
            done = finished.recv() => match done {
                Ok(ids) => {
                    let freed = ids.iter().filter(|id| session.held.remove(id)).count();
                    if freed > 0 {
                        Box::pin(session.fill()).await;
                    }
                }
                Err(RecvError::Lagged(_)) => Box::pin(session.resync()).await,
                Err(RecvError::Closed) => break,
            },
        }
    }
    // First let go of the claim, so the writer leases nothing more to this
    // session: what it leased before is given back here.
    session.claim = None;
    let released = match Box::pin(lease::release_session(&core, session.id)).await {
        Ok(()) => true,
        Err(e) => {
            // The lease keeper tries again (and no core renews the leases).
            tracing::warn!(session = %session.id, error = %e, "could not release session's requests; retrying");
            false
        }
    };
    core.dispatch.session_ended(session.id, released);
    core.dispatch.registry.ended(session.id).await;
    metrics::gauge!("chatrelay_extension_sessions").decrement(1.0);
    tracing::debug!(session = %session.id, "extension session ended");
}

impl Session {
    async fn send(&mut self, frame: ServerFrame) {
        if self.out.send(frame).await.is_err() {
            self.closed = true;
        }
    }

    async fn reject(&mut self, request_id: Option<String>, error: impl Into<String>) {
        self.send(ServerFrame::Error {
            request_id,
            error: error.into(),
        })
        .await;
    }

    /// Keeps `room` true to `held`; returns it.
    fn held_changed(&self) -> usize {
        let room = self.window.saturating_sub(self.held.len());
        self.room.store(room, Ordering::Release);
        room
    }

    /// Claims as many requests as the window allows (see [`Store::claim`]);
    /// the answer arrives in the session's loop.
    async fn fill(&mut self) {
        let room = self.held_changed();
        if room == 0 || self.closed || !self.ready || self.claim.is_some() {
            return;
        }
        match Store::claim(&self.core, self.account, self.id, self.room.clone()).await {
            Ok(claim) => {
                self.claim = Some(claim);
                self.retry = None;
            }
            Err(e) => self.claim_failed(&e),
        }
    }

    /// A claim failed: claim again after a while (see [`CLAIM_RETRY_FIRST`]).
    fn claim_failed(&mut self, error: &dyn Display) {
        if self.core.shutdown.is_cancelled() {
            return;
        }
        metrics::counter!("chatrelay_claim_failures_total").increment(1);
        tracing::warn!(
            session = %self.id,
            error = %error,
            retry_in_ms = self.retry_after.as_millis() as u64,
            "claim failed; claiming again"
        );
        self.retry = Some(Box::pin(tokio::time::sleep(self.retry_after)));
        self.retry_after = (self.retry_after * 2).min(CLAIM_RETRY_MAX);
    }

    /// Sends claimed requests to the extension; the session holds them.
    async fn deliver(&mut self, claimed: Vec<Delivery>) {
        if claimed.is_empty() {
            return;
        }
        for delivery in claimed {
            let request = &delivery.request;
            self.held.insert(request.id);
            if request.attempts == 1 {
                // Submit → frame sent, for first deliveries only.
                let waited = (chrono::Utc::now() - request.queued_at)
                    .to_std()
                    .unwrap_or_default();
                metrics::histogram!("chatrelay_dispatch_latency_seconds")
                    .record(waited.as_secs_f64());
            }
            self.send(ServerFrame::NewRequest(Box::new(delivery))).await;
        }
        self.held_changed();
    }

    /// Delivers a claim's requests, then claims again if room is left.
    async fn deliver_and_refill(&mut self, claimed: Vec<Delivery>) {
        self.deliver(claimed).await;
        self.fill().await;
    }

    /// Rebuilds `held` from the database after missing finish events.
    async fn resync(&mut self) {
        match requests::held_by(&self.core.store, self.id).await {
            Ok(held) => {
                self.held = held.into_iter().collect();
                self.fill().await;
            }
            Err(e) => tracing::warn!(session = %self.id, error = %e, "resync failed"),
        }
    }

    /// Applies frames in order. Consecutive results go to the result
    /// writer together, so they can share a transaction.
    async fn handle_all(&mut self, frames: Vec<ClientFrame>) {
        let mut results = Vec::new();
        let mut freed = false;
        for frame in frames {
            let (request_id, outcome) = match frame {
                ClientFrame::Response {
                    request_id,
                    response,
                    chat_id,
                    chat_title,
                } => (
                    request_id,
                    Outcome::Done {
                        response,
                        chatgpt_id: chat_id,
                        chat_title,
                    },
                ),
                ClientFrame::Error { request_id, error } => (request_id, Outcome::Failed { error }),
                ClientFrame::Invalid { request_id, error } => {
                    freed |= self.apply_results(std::mem::take(&mut results)).await;
                    self.reject(request_id, error).await;
                    continue;
                }
                ClientFrame::Ready => {
                    freed |= !std::mem::replace(&mut self.ready, true);
                    continue;
                }
                ClientFrame::Executing { request_id } => {
                    freed |= self.apply_results(std::mem::take(&mut results)).await;
                    self.executing(request_id).await;
                    continue;
                }
            };
            if let Some(id) = self.parse_id(&request_id).await {
                results.push((request_id, id, outcome));
            }
        }
        freed |= self.apply_results(results).await;
        if freed {
            self.fill().await;
        }
    }

    /// Applies results concurrently and answers the refused ones in order;
    /// says whether a slot of this session was freed.
    async fn apply_results(&mut self, results: Vec<(String, Uuid, Outcome)>) -> bool {
        let (core, account) = (&self.core, self.account);
        let applied = futures::future::join_all(results.into_iter().map(
            |(request_id, id, outcome)| async move {
                let result = lifecycle::settle_outcome(core, account, id, outcome).await;
                (request_id, id, result)
            },
        ))
        .await;
        let mut freed = false;
        for (request_id, id, result) in applied {
            match result {
                Ok(_) => freed |= self.held.remove(&id),
                Err(e) => {
                    // A request that is finished (cancelled while this
                    // session held it, say) or gone is no longer this
                    // session's: its answer frees the slot it kept.
                    if matches!(e, CoreError::FailedPrecondition(_) | CoreError::NotFound(_)) {
                        freed |= self.held.remove(&id);
                    }
                    self.refused(request_id, e).await
                }
            }
        }
        freed
    }

    /// Answers a frame the core refused with an error frame. A database
    /// failure reaches here only once the core has given up retrying it
    /// (see `retry`): it is logged, and the request stays with this session
    /// until it ends and gives the request back.
    async fn refused(&mut self, request_id: String, error: CoreError) {
        let message = match &error {
            CoreError::Database(_) => {
                tracing::error!(session = %self.id, error = %error, "frame not applied");
                "internal error: the frame could not be stored".to_string()
            }
            _ => error.to_string(),
        };
        self.reject(Some(request_id), message).await;
    }

    /// `status_update: executing`: the session now holds the request.
    async fn executing(&mut self, request_id: String) {
        let Some(id) = self.parse_id(&request_id).await else {
            return;
        };
        match lifecycle::mark_executing(&self.core, self.account, id, self.id).await {
            Ok(()) => {
                self.held.insert(id);
                self.held_changed();
            }
            Err(e) => self.refused(request_id, e).await,
        }
    }

    async fn parse_id(&mut self, raw: &str) -> Option<Uuid> {
        match Uuid::parse_str(raw.trim()) {
            Ok(id) => Some(id),
            Err(_) => {
                self.reject(
                    Some(raw.to_string()),
                    format!("unknown request_id {raw:?}: not a request id"),
                )
                .await;
                None
            }
        }
    }
}
