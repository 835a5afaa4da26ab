//! PostgreSQL's claims: one statement at a time per account on this core,
//! for every session of the account that asked meanwhile. A claim that
//! finds no other of its account running goes at once; those that come
//! while one runs wait for it and then go together, each session given its
//! share of the oldest requests (see `claim::claim_slots_in`). Sessions
//! that each claimed for themselves made one statement, and one commit,
//! per 1.6 requests in the lifecycle benchmark, all reading the head of
//! the same queue.
//!
//! A claim that finds nothing stands here, as a sole writer's stands in
//! its writer, until something may have given its account work: a submit,
//! a result, a give-back, another core's notification (see
//! [`crate::dispatch::StandingClaims`]); then it runs again. Until then the
//! account is known to have nothing claimable, so a claim that comes
//! meanwhile stands at once, without a statement, and a submit batch leases
//! the new chats' requests it stores to the standing claims in its own
//! statement ([`Claims::lease_at_submit`]): the requests reach sessions at
//! the batch's commit, with no claim after it.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use dashmap::DashMap;
use futures::{stream::FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    dispatch::{lease, session::Delivery, StandingClaims},
    error::CoreError,
    model::{now_millis, AccountId, RequestView},
    results::Claim,
    store::{claim, entities::message_request},
    Core,
};

/// The queue of this core's claims, and the claims standing. It holds at
/// most one claim per session (a session waits for its claim's answer
/// before it claims again).
pub(crate) struct Claims {
    queue: mpsc::UnboundedSender<Queued>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Queued>>>,
    accounts: DashMap<AccountId, Standing>,
}

impl Default for Claims {
    fn default() -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        Self {
            queue,
            receiver: Mutex::new(Some(receiver)),
            accounts: DashMap::new(),
        }
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("accounts", &self.accounts.len())
            .finish_non_exhaustive()
    }
}

/// What the claimer is sent.
enum Queued {
    /// A session's claim, to run or stand.
    Claim(Claim),
    /// A claim a submit batch took, whose batch failed: its requests are
    /// taken back, should the batch have committed after all, and it runs
    /// again.
    Undo { claim: Claim, requests: Vec<Uuid> },
}

/// What this core knows of one account's claims.
#[derive(Default)]
struct Standing {
    /// Claims that found nothing, oldest first.
    claims: Vec<Claim>,
    /// The account's last claim statement found less than it wanted, and
    /// nothing has woken the account since: nothing of it is claimable.
    drained: bool,
    /// Wake-ups so far. A statement that ran across one may have missed
    /// the work it announced: its claims that found nothing run again.
    woken: u64,
}

impl Standing {
    /// Lets `claims` stand, dropping those of sessions that went away (so
    /// an account keeps no more than its live sessions' claims).
    fn stand(&mut self, claims: impl IntoIterator<Item = Claim>) {
        self.claims.retain(|c| !c.abandoned());
        self.claims
            .extend(claims.into_iter().filter(|c| !c.abandoned()));
    }

    /// Marks a wake-up; returns the claims standing, to run again.
    fn wake(&mut self) -> Vec<Claim> {
        self.drained = false;
        self.woken += 1;
        std::mem::take(&mut self.claims)
    }
}

impl Claims {
    /// Queues a claim; `false` if the claimer has stopped.
    pub(crate) fn send(&self, claim: Claim) -> bool {
        self.queue.send(Queued::Claim(claim)).is_ok()
    }

    /// Queues claims to run again.
    fn run_again(&self, claims: Vec<Claim>) {
        for claim in claims.into_iter().filter(|c| !c.abandoned()) {
            let _ = self.queue.send(Queued::Claim(claim));
        }
    }

    /// Lets `claims` stand if their account has nothing claimable;
    /// otherwise hands them back to run, with the account's wake-ups so far.
    fn stand_or_run(&self, account: AccountId, claims: Vec<Claim>) -> Option<(u64, Vec<Claim>)> {
        let mut standing = self.accounts.entry(account).or_default();
        if standing.drained {
            standing.stand(claims);
            None
        } else {
            Some((standing.woken, claims))
        }
    }

    /// After a statement that ran from wake-up `generation`: the claims that
    /// found nothing stand, and the account is drained if the statement
    /// found less than it wanted — unless a wake-up came meanwhile: then
    /// they are handed back to run again.
    fn settle(
        &self,
        account: AccountId,
        generation: u64,
        short: bool,
        empty: Vec<Claim>,
    ) -> Vec<Claim> {
        let mut standing = self.accounts.entry(account).or_default();
        if standing.woken != generation {
            return empty;
        }
        standing.drained |= short;
        standing.stand(empty);
        Vec::new()
    }

    /// How many claims stand on the account.
    #[cfg(test)]
    pub(crate) fn standing(&self, account: AccountId) -> usize {
        self.accounts.get(&account).map_or(0, |s| s.claims.len())
    }

    /// Takes standing claims of an account with nothing claimable, to lease
    /// `count` new requests to, taking turns (each claim's first request
    /// before any claim's second) as far as their room goes. Returns the
    /// session of each request leased, in order (fewer than `count` where
    /// the room runs out), and the claims taken.
    fn take_for_submit(&self, account: AccountId, count: usize) -> (Vec<Uuid>, Vec<Claim>) {
        let Some(mut standing) = self.accounts.get_mut(&account) else {
            return Default::default();
        };
        if !standing.drained {
            return Default::default();
        }
        standing.claims.retain(|c| !c.abandoned());
        let mut sessions = slots(&standing.claims);
        sessions.truncate(count);
        let used: HashSet<Uuid> = sessions.iter().copied().collect();
        let (taken, left) = std::mem::take(&mut standing.claims)
            .into_iter()
            .partition(|c| used.contains(&c.session));
        standing.claims = left;
        (sessions, taken)
    }
}

impl StandingClaims for Claims {
    fn woken(&self, account: AccountId) {
        let claims = match self.accounts.get_mut(&account) {
            Some(mut standing) => standing.wake(),
            None => return,
        };
        self.run_again(claims);
    }

    fn woken_all(&self) {
        let mut claims = Vec::new();
        for mut standing in self.accounts.iter_mut() {
            claims.extend(standing.wake());
        }
        self.run_again(claims);
    }
}

/// Starts the claimer, and has the core's wake-ups reach the claims
/// standing in it. At shutdown it answers no more claims (their sessions
/// are ending) and lets the statements under way finish.
pub(super) fn start(core: &Arc<Core>, claims: &Arc<Claims>) {
    let Some(mut queue) = claims.receiver.lock().expect("claims").take() else {
        return;
    };
    core.dispatch.report_work_to(claims.clone());
    let (core, claims) = (core.clone(), claims.clone());
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let mut waiting: HashMap<AccountId, Vec<Claim>> = HashMap::new();
        let mut running = FuturesUnordered::new();
        let mut busy: HashSet<AccountId> = HashSet::new();
        loop {
            tokio::select! {
                _ = core.shutdown.cancelled() => break,
                queued = queue.recv() => {
                    let Some(queued) = queued else { break };
                    for queued in std::iter::once(queued).chain(std::iter::from_fn(|| queue.try_recv().ok())) {
                        let claim = match queued {
                            Queued::Claim(claim) => claim,
                            Queued::Undo { claim, requests } => {
                                undo(&core, &claim, requests);
                                claim
                            }
                        };
                        waiting.entry(claim.account()).or_default().push(claim);
                    }
                }
                Some(ran) = running.next(), if !running.is_empty() => {
                    let Ran { account, generation, short, empty } = ran;
                    busy.remove(&account);
                    let again = claims.settle(account, generation, short, empty);
                    if !again.is_empty() {
                        waiting.entry(account).or_default().extend(again);
                    }
                }
            }
            let free: Vec<AccountId> = waiting
                .keys()
                .filter(|account| !busy.contains(account))
                .copied()
                .collect();
            for account in free {
                let mine = waiting.remove(&account).expect("listed");
                if let Some((generation, mine)) = claims.stand_or_run(account, mine) {
                    busy.insert(account);
                    running.push(claim_together(core.clone(), account, generation, mine));
                }
            }
        }
        while running.next().await.is_some() {}
    });
}

/// Takes back, in a task of its own, requests a failed submit batch
/// leased to `claim`'s session, in case the batch committed after all
/// (its commit was lost on the way back, say): without an attempt counted,
/// and waking the account if there were any.
fn undo(core: &Arc<Core>, claim: &Claim, requests: Vec<Uuid>) {
    let (core, account, session) = (core.clone(), claim.account, claim.session);
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        lease::return_undelivered(&core, account, session, requests).await;
    });
}

/// What a statement of one account's claims left.
struct Ran {
    account: AccountId,
    /// The account's wake-ups when it began.
    generation: u64,
    /// It leased fewer requests than it wanted.
    short: bool,
    /// The claims that got nothing, unanswered.
    empty: Vec<Claim>,
}

/// Runs the claims of one account's sessions as one statement and answers
/// each that got requests with its share.
async fn claim_together(
    core: Arc<Core>,
    account: AccountId,
    generation: u64,
    claims: Vec<Claim>,
) -> Ran {
    let slots = slots(&claims);
    let mut ran = Ran {
        account,
        generation,
        short: false,
        empty: Vec::new(),
    };
    if slots.is_empty() {
        ran.empty = claims;
        return ran;
    }
    let wanted = slots.len();
    match claim::claim_slots_in(&core, &core.store.write, account, slots).await {
        Ok(leased) => {
            ran.short = leased.len() < wanted;
            ran.empty = answer(&core, claims, leased).await;
        }
        Err(e) => {
            for claim in claims {
                let error = CoreError::Unavailable(format!("claim failed: {e}"));
                let _ = claim.reply.send(Err(error));
            }
        }
    }
    ran
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

/// Answers each claim with the requests leased to its session; returns the
/// claims that got none, unanswered.
async fn answer(core: &Core, claims: Vec<Claim>, leased: Vec<claim::LeasedRow>) -> Vec<Claim> {
    let mut by_session: HashMap<Uuid, Vec<Delivery>> = HashMap::new();
    for leased in leased {
        if let Some(session) = leased.0.lease_session {
            by_session
                .entry(session)
                .or_default()
                .push(claim::delivery(leased));
        }
    }
    let mut empty = Vec::new();
    for claim in claims {
        match by_session.remove(&claim.session) {
            Some(mine) => deliver(core, claim, mine).await,
            None => empty.push(claim),
        }
    }
    empty
}

/// Answers a claim with the requests leased to its session. A session that
/// went away meanwhile dropped its end first, then gave back what it held;
/// what was leased to it since never reached it, and is taken back here
/// without counting an attempt.
async fn deliver(core: &Core, claim: Claim, requests: Vec<Delivery>) {
    let (account, session) = (claim.account, claim.session);
    if let Err(Ok(undelivered)) = claim.reply.send(Ok(requests)) {
        let ids = undelivered.iter().map(|d| d.request.id).collect();
        lease::return_undelivered(core, account, session, ids).await;
    }
}

/// Leases the requests of new chats among a submit batch's `requests`
/// (each with its named chat, `None` for a new one) to the claims standing
/// on their accounts, where the account has nothing else claimable: a new
/// chat's request is claimable at once, and would be the account's only
/// one. The rows are stored leased; the claims are answered once the batch
/// commits ([`Leased::deliver`]).
pub(crate) fn lease_new(
    core: &Core,
    claims: &Arc<Claims>,
    requests: &mut [(message_request::Model, Option<i64>)],
) -> Leased {
    let mut leased = Leased {
        claims: claims.clone(),
        taken: HashMap::new(),
        of: HashMap::new(),
    };
    let mut new: HashMap<AccountId, Vec<usize>> = HashMap::new();
    for (i, (request, chat)) in requests.iter().enumerate() {
        if chat.is_none() {
            new.entry(AccountId(request.account_id))
                .or_default()
                .push(i);
        }
    }
    let expires = now_millis() + core.lease_ttl_millis();
    for (account, indexes) in new {
        let (sessions, taken) = claims.take_for_submit(account, indexes.len());
        for (i, session) in indexes.into_iter().zip(sessions) {
            let request = &mut requests[i].0;
            request.lease_session = Some(session);
            request.lease_node = Some(core.node_id);
            request.lease_expires_at = Some(expires);
            request.attempts = 1;
            leased.of.insert(request.id, session);
        }
        for claim in taken {
            leased.taken.insert(claim.session, (claim, Vec::new()));
        }
    }
    leased
}

/// The standing claims a submit batch leased requests to. Answered with
/// them once the batch commits; dropped unanswered (the batch failed),
/// they run again, and their requests are taken back should they exist.
pub(crate) struct Leased {
    claims: Arc<Claims>,
    /// Each claim taken, by session, with its requests as stored.
    taken: HashMap<Uuid, (Claim, Vec<Delivery>)>,
    /// The session each leased request went to.
    of: HashMap<Uuid, Uuid>,
}

impl Leased {
    /// Notes a request as the batch stored it, with its chat's ChatGPT
    /// id; `false` if it was not leased.
    pub(crate) fn stored(&mut self, view: &RequestView) -> bool {
        let Some(session) = self.of.get(&view.request.id) else {
            return false;
        };
        if let Some((_, requests)) = self.taken.get_mut(session) {
            requests.push(Delivery {
                request: view.request.clone(),
                chatgpt_id: view.chat.clone(),
            });
        }
        true
    }

    /// The batch committed: answers each claim with its requests.
    pub(crate) async fn deliver(mut self, core: &Core) {
        for (_, (claim, requests)) in std::mem::take(&mut self.taken) {
            if requests.is_empty() {
                self.claims.run_again(vec![claim]);
            } else {
                deliver(core, claim, requests).await;
            }
        }
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        for (session, (claim, _)) in self.taken.drain() {
            let requests = self
                .of
                .iter()
                .filter(|(_, of)| **of == session)
                .map(|(request, _)| *request)
                .collect();
            let _ = self.claims.queue.send(Queued::Undo { claim, requests });
        }
    }
}
