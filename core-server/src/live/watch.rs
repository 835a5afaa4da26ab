//! A subscriber's stream of events (`ChatService.WatchRequests`): what it
//! missed since its last event, if the feed still has it, then every new
//! event of its account, optionally of one request only. It ends with the
//! core, after a reset that says the subscriber fell behind, or with
//! [`Item::Revoked`] once the key it was opened with stops working.

use std::{collections::VecDeque, sync::Arc};

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::{revocation::Registration, Item};
use crate::{model::AccountId, Core};

/// Why a subscriber that fell behind is reset.
const FELL_BEHIND: &str = "this stream fell behind and was closed; list the requests again";

struct State {
    core: Arc<Core>,
    backlog: VecDeque<Item>,
    receiver: tokio::sync::broadcast::Receiver<Item>,
    request: Option<Uuid>,
    ended: bool,
    registration: Registration,
}

impl State {
    fn wanted(&self, item: &Item) -> bool {
        match (item, self.request) {
            (Item::Event(event), Some(id)) => event.view.request.id == id,
            _ => true,
        }
    }

    async fn next(&mut self) -> Option<Item> {
        if self.ended {
            return None;
        }
        while let Some(item) = self.backlog.pop_front() {
            if self.wanted(&item) {
                return Some(item);
            }
        }
        loop {
            let received = tokio::select! {
                _ = self.core.shutdown.cancelled() => return None,
                _ = self.registration.revoked.cancelled() => {
                    self.ended = true;
                    return Some(Item::Revoked);
                }
                received = self.receiver.recv() => received,
            };
            match received {
                Ok(item @ Item::Reset { .. }) => {
                    self.ended = true;
                    return Some(item);
                }
                Ok(item) if self.wanted(&item) => return Some(item),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    self.ended = true;
                    return Some(Item::Reset {
                        id: String::new(),
                        reason: FELL_BEHIND,
                    });
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// The events of `account` (of `request` only, if given), after the event
/// `after` if given, for a stream opened with the key whose SHA-256 is
/// `key_hash`.
pub fn watch(
    core: &Arc<Core>,
    account: AccountId,
    key_hash: String,
    request: Option<Uuid>,
    after: Option<&str>,
) -> impl Stream<Item = Item> + Send + 'static {
    let registration = super::Live::register(core, account, key_hash);
    let subscription = core.live.subscribe(account, after);
    let state = State {
        core: core.clone(),
        backlog: subscription.backlog.into(),
        receiver: subscription.receiver,
        request,
        ended: false,
        registration,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
}
