//! What a transaction committed, and the one step that turns it into
//! effects. Every write of the request lifecycle — submits, results, status
//! updates, give-backs, cancels — returns a [`Committed`] once its transaction has
//! committed; [`after_commit`] then wakes sessions, frees their slots,
//! wakes the webhook worker, counts metrics and publishes live status.
//! Callers' replies are the writers' own business; everything else that
//! follows a commit is here.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use uuid::Uuid;

use crate::{
    model::{AccountId, RequestStatus, RequestView},
    webhooks, Core,
};

/// One request's new status, as a transaction left it.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    pub account: AccountId,
    pub request: Uuid,
    pub status: RequestStatus,
    pub cause: Cause,
    /// The request as a `GetRequest` returns it right after the commit,
    /// where the transaction had it whole (submits, and answers with their
    /// chat): live status then shows it without reading it back.
    pub view: Option<Arc<RequestView>>,
}

/// What moved a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A client submitted it (`idle`).
    Submitted,
    /// The extension started running it (`executing`).
    Started,
    /// The extension answered, or it failed (`done` / `failed`).
    Finished,
    /// Its session ended or its lease lapsed: back in the queue (`idle`).
    Requeued,
    /// A client cancelled it while it was idle (`failed`). A session that
    /// was sent it keeps its slot until the extension answers for it.
    Cancelled,
}

/// What one transaction committed.
#[derive(Clone, Debug, Default)]
pub struct Committed {
    /// Every request whose status the transaction set, in order.
    pub changes: Vec<StatusChange>,
    /// Accounts with new claimable work that the transaction's own claims
    /// have already seen (a sole writer runs standing claims in it).
    pub work: BTreeSet<AccountId>,
    /// Accounts whose work came back outside the writer (give-backs): the
    /// claims standing in the writer must hear of it too.
    pub returned: BTreeSet<AccountId>,
    /// The transaction wrote webhook deliveries.
    pub webhooks: bool,
}

impl Committed {
    /// Records a status change.
    pub fn changed(
        &mut self,
        account: AccountId,
        request: Uuid,
        status: RequestStatus,
        cause: Cause,
    ) {
        self.changes.push(StatusChange {
            account,
            request,
            status,
            cause,
            view: None,
        });
    }

    /// Records a status change with the request as the transaction left it
    /// (shared, so a writer that answers with it too need not copy it).
    pub fn changed_to(&mut self, view: Arc<RequestView>, cause: Cause) {
        let request = &view.request;
        self.changes.push(StatusChange {
            account: AccountId(request.account_id),
            request: request.id,
            status: request.status,
            cause,
            view: Some(view),
        });
    }

    /// Adds what another transaction (or part of one) committed.
    pub fn merge(&mut self, other: Committed) {
        self.changes.extend(other.changes);
        self.work.extend(other.work);
        self.returned.extend(other.returned);
        self.webhooks |= other.webhooks;
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.work.is_empty()
            && self.returned.is_empty()
            && !self.webhooks
    }
}

/// Applies what a transaction committed: the one place effects happen.
pub(crate) fn after_commit(core: &Core, committed: Committed) {
    if committed.is_empty() {
        return;
    }
    let (mut stored, mut cancelled) = (0, 0);
    let mut finished: BTreeMap<AccountId, Vec<Uuid>> = BTreeMap::new();
    for change in &committed.changes {
        match change.cause {
            Cause::Submitted => stored += 1,
            Cause::Finished | Cause::Cancelled => {
                metrics::counter!(
                    "chatrelay_requests_finished_total",
                    "status" => change.status.as_str()
                )
                .increment(1);
                if change.cause == Cause::Cancelled {
                    // Its session (if any) frees the slot when it answers.
                    cancelled += 1;
                } else {
                    finished
                        .entry(change.account)
                        .or_default()
                        .push(change.request);
                }
            }
            Cause::Started | Cause::Requeued => {}
        }
    }
    core.open_requests.stored(stored);
    core.open_requests
        .finished(cancelled + finished.values().map(Vec::len).sum::<usize>());
    // Slots first: a session freed by a result may then take the new work.
    for (account, ids) in finished {
        core.dispatch.finished_local(account, ids.into());
    }
    for account in &committed.work {
        core.dispatch.submitted(*account);
    }
    for account in &committed.returned {
        core.dispatch.wake_local(*account);
    }
    if committed.webhooks {
        webhooks::notify_committed(core);
    }
    core.live.committed(&committed.changes);
}
