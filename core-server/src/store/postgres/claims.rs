//! PostgreSQL's claims: one statement at a time per account on this core,
//! for every session of the account that asked meanwhile. A claim that
//! finds no other of its account running goes at once; those that come
//! while one runs wait for it and then go together, each session given its
//! share of the oldest requests (see `claim::claim_slots_in`). Sessions
//! that each claimed for themselves made one statement, and one commit,
//! per 1.6 requests in the lifecycle benchmark, all reading the head of
//! the same queue.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use futures::{stream::FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    dispatch::lease,
    error::CoreError,
    model::{AccountId, MessageRequest},
    results::Claim,
    store::{claim, entities::message_request},
    Core,
};

/// The queue of this core's claims. It holds at most one claim per session
/// (a session waits for its claim's answer before it claims again).
#[derive(Debug)]
pub(crate) struct Claims {
    queue: mpsc::UnboundedSender<Claim>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Claim>>>,
}

impl Default for Claims {
    fn default() -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        Self {
            queue,
            receiver: Mutex::new(Some(receiver)),
        }
    }
}

impl Claims {
    /// Queues a claim; `false` if the claimer has stopped.
    pub(crate) fn send(&self, claim: Claim) -> bool {
        self.queue.send(claim).is_ok()
    }
}

/// Starts the claimer. At shutdown it answers no more claims (their
/// sessions are ending) and lets the statements under way finish.
pub(super) fn start(core: &Arc<Core>, claims: &Claims) {
    let Some(mut queue) = claims.receiver.lock().expect("claims").take() else {
        return;
    };
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let mut waiting: HashMap<AccountId, Vec<Claim>> = HashMap::new();
        let mut running = FuturesUnordered::new();
        let mut busy: HashSet<AccountId> = HashSet::new();
        loop {
            tokio::select! {
                _ = core.shutdown.cancelled() => break,
                claim = queue.recv() => {
                    let Some(claim) = claim else { break };
                    waiting.entry(claim.account()).or_default().push(claim);
                    while let Ok(claim) = queue.try_recv() {
                        waiting.entry(claim.account()).or_default().push(claim);
                    }
                }
                Some(account) = running.next(), if !running.is_empty() => {
                    busy.remove(&account);
                }
            }
            let free: Vec<AccountId> = waiting
                .keys()
                .filter(|account| !busy.contains(account))
                .copied()
                .collect();
            for account in free {
                let claims = waiting.remove(&account).expect("listed");
                busy.insert(account);
                running.push(claim_together(core.clone(), account, claims));
            }
        }
        while running.next().await.is_some() {}
    });
}

/// Runs the claims of one account's sessions as one statement and answers
/// each with its share; resolves to the account.
async fn claim_together(core: Arc<Core>, account: AccountId, claims: Vec<Claim>) -> AccountId {
    let slots = slots(&claims);
    if slots.is_empty() {
        for claim in claims {
            let _ = claim.reply.send(Ok(Vec::new()));
        }
        return account;
    }
    match claim::claim_slots_in(&core, &core.store.write, account, slots).await {
        Ok(leased) => answer(&core, account, claims, leased).await,
        Err(e) => {
            for claim in claims {
                let error = CoreError::Unavailable(format!("claim failed: {e}"));
                let _ = claim.reply.send(Err(error));
            }
        }
    }
    account
}

/// A session per request wanted, taking turns: each session's first slot
/// comes before any session's second, so the oldest requests spread over
/// the sessions rather than filling the first one's window.
fn slots(claims: &[Claim]) -> Vec<Uuid> {
    let wanted: Vec<usize> = claims.iter().map(Claim::wanted).collect();
    let rounds = wanted.iter().copied().max().unwrap_or(0);
    let mut slots = Vec::with_capacity(wanted.iter().sum());
    for round in 0..rounds {
        for (claim, wanted) in claims.iter().zip(&wanted) {
            if round < *wanted {
                slots.push(claim.session);
            }
        }
    }
    slots
}

/// Answers each claim with the requests leased to its session. A session
/// that went away while the statement ran dropped its end first, then gave
/// back what it held; what was leased to it since never reached it, and is
/// taken back here without counting an attempt.
async fn answer(
    core: &Core,
    account: AccountId,
    claims: Vec<Claim>,
    leased: Vec<message_request::Model>,
) {
    let mut by_session: HashMap<Uuid, Vec<MessageRequest>> = HashMap::new();
    for request in leased {
        if let Some(session) = request.lease_session {
            by_session
                .entry(session)
                .or_default()
                .push(MessageRequest::from(request));
        }
    }
    for claim in claims {
        let session = claim.session;
        let mine = by_session.remove(&session).unwrap_or_default();
        if let Err(Ok(undelivered)) = claim.reply.send(Ok(mine)) {
            if !undelivered.is_empty() {
                let ids = undelivered.iter().map(|r| r.id).collect();
                lease::return_undelivered(core, account, session, ids).await;
            }
        }
    }
}
