//! One account's feed of events: the window of its recent events (for
//! resumption) and the ring its subscribers read from. Both are bounded; a
//! subscriber that falls behind the ring is reset, and never holds up the
//! others.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::broadcast;

use super::{lock, WINDOW};
use crate::model::RequestView;

/// One status change of a request, as its subscribers see it.
#[derive(Debug)]
pub struct Event {
    /// Orders the events of a core; `id` is its outward form.
    pub seq: u64,
    pub id: String,
    /// The request as a `GetRequest` returned it when the event was made.
    pub view: RequestView,
}

/// What a subscriber receives.
#[derive(Clone, Debug)]
pub enum Item {
    Event(Arc<Event>),
    /// Events may have been missed: list the requests again. `id` (possibly
    /// empty) is where a later resumption may start.
    Reset {
        id: String,
        reason: &'static str,
    },
    /// The key the stream was opened with stopped working; the stream ends.
    Revoked,
}

struct Window {
    events: VecDeque<Arc<Event>>,
    /// Every event of the account after this one is in `events`.
    floor: u64,
    /// The newest event (or `floor` when there is none).
    last: u64,
}

pub(super) struct Feed {
    window: Mutex<Window>,
    ring: broadcast::Sender<Item>,
    /// Since when the feed has had no subscriber.
    unused_since: Mutex<Option<Instant>>,
}

/// A new subscriber's start: what it missed (or a reset), then the ring.
pub(super) struct Subscription {
    pub backlog: Vec<Item>,
    pub receiver: broadcast::Receiver<Item>,
}

impl Feed {
    /// A feed whose events will all come after event number `seq`.
    pub fn new(buffer: usize, seq: u64) -> Self {
        Self {
            window: Mutex::new(Window {
                events: VecDeque::new(),
                floor: seq,
                last: seq,
            }),
            ring: broadcast::channel(buffer).0,
            unused_since: Mutex::new(None),
        }
    }

    pub fn push(&self, event: Event) {
        let mut window = lock(&self.window);
        let event = Arc::new(event);
        if window.events.len() >= WINDOW {
            if let Some(old) = window.events.pop_front() {
                window.floor = old.seq;
            }
        }
        window.last = event.seq;
        window.events.push_back(event.clone());
        // No receiver is not an error: the window keeps it for resumption.
        let _ = self.ring.send(Item::Event(event));
    }

    /// Tells every subscriber to re-list, and forgets the window: what it
    /// holds may have gaps now.
    pub fn reset(&self, reason: &'static str) {
        let mut window = lock(&self.window);
        window.events.clear();
        window.floor = window.last;
        let _ = self.ring.send(Item::Reset {
            id: String::new(),
            reason,
        });
    }

    /// Subscribes. `after`: `None` for live events only; `Some(Some(seq))`
    /// to resume after event `seq`; `Some(None)` for an id this core cannot
    /// resume from.
    pub fn subscribe(
        &self,
        after: Option<Option<u64>>,
        event_id: impl Fn(u64) -> String,
    ) -> Subscription {
        let window = lock(&self.window);
        let receiver = self.ring.subscribe();
        *lock(&self.unused_since) = None;
        let backlog = match after {
            None => Vec::new(),
            Some(Some(seq)) if seq >= window.floor => window
                .events
                .iter()
                .filter(|e| e.seq > seq)
                .map(|e| Item::Event(e.clone()))
                .collect(),
            Some(_) => vec![Item::Reset {
                id: event_id(window.last),
                reason:
                    "the events after Last-Event-ID are no longer kept; list the requests again",
            }],
        };
        Subscription { backlog, receiver }
    }

    /// The feed has had no subscriber for `period`.
    pub fn unused_for(&self, period: Duration) -> bool {
        let mut since = lock(&self.unused_since);
        if self.ring.receiver_count() > 0 {
            *since = None;
            return false;
        }
        since.get_or_insert_with(Instant::now).elapsed() >= period
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::model::{MessageRequest, RequestStatus, ResponseType, ThinkingTime};

    fn event(seq: u64) -> Event {
        let request = MessageRequest {
            id: Uuid::now_v7(),
            account_id: 1,
            chat_id: 1,
            message: format!("m{seq}"),
            response_type: ResponseType::Auto,
            thinking_time: ThinkingTime::Standard,
            status: RequestStatus::Idle,
            response: None,
            error_message: None,
            queued_at: Utc::now(),
            started_at: None,
            completed_at: None,
            attempts: 0,
        };
        Event {
            seq,
            id: seq.to_string(),
            view: RequestView {
                request,
                chat: None,
            },
        }
    }

    fn seqs(items: &[Item]) -> Vec<Option<u64>> {
        items
            .iter()
            .map(|item| match item {
                Item::Event(e) => Some(e.seq),
                Item::Reset { .. } | Item::Revoked => None,
            })
            .collect()
    }

    #[test]
    fn resuming_inside_the_window_replays_what_followed() {
        let feed = Feed::new(8, 10);
        for seq in 11..=15 {
            feed.push(event(seq));
        }
        let resumed = feed.subscribe(Some(Some(12)), |s| s.to_string());
        assert_eq!(seqs(&resumed.backlog), [Some(13), Some(14), Some(15)]);
        let caught_up = feed.subscribe(Some(Some(15)), |s| s.to_string());
        assert!(caught_up.backlog.is_empty());
        // The feed's start counts as inside: nothing was missed.
        let from_start = feed.subscribe(Some(Some(10)), |s| s.to_string());
        assert_eq!(from_start.backlog.len(), 5);
    }

    #[test]
    fn resuming_before_the_window_or_from_elsewhere_is_a_reset() {
        let feed = Feed::new(8, 0);
        for seq in 1..=(WINDOW as u64 + 10) {
            feed.push(event(seq));
        }
        let too_old = feed.subscribe(Some(Some(5)), |s| format!("x-{s}"));
        match too_old.backlog.as_slice() {
            [Item::Reset { id, .. }] => assert_eq!(id, &format!("x-{}", WINDOW + 10)),
            other => panic!("{other:?}"),
        }
        let elsewhere = feed.subscribe(Some(None), |s| s.to_string());
        assert_eq!(seqs(&elsewhere.backlog), [None]);
        let live_only = feed.subscribe(None, |s| s.to_string());
        assert!(live_only.backlog.is_empty());
    }

    #[test]
    fn a_reset_forgets_the_window() {
        let feed = Feed::new(8, 0);
        feed.push(event(1));
        feed.push(event(2));
        feed.reset("gap");
        let resumed = feed.subscribe(Some(Some(1)), |s| s.to_string());
        assert_eq!(seqs(&resumed.backlog), [None]);
    }
}
