//! Whether any other core listens on this database, and the writes a core
//! made while none did.
//!
//! A notification costs more than its bytes: PostgreSQL serialises the
//! commits of every transaction that notifies, each holding one lock through
//! its WAL flush. A core alone on its database has no one to tell, so its
//! writers send nothing until another core's listener appears.
//!
//! No core may miss a wake-up for it. Each core's listener connects under
//! one `application_name` ([`LISTENER_NAME`]) and, once it listens, says
//! hello; a core looks for other listeners every [`LOOK_EVERY`], and goes
//! quiet when it finds none. A quiet core that hears a hello, or finds a
//! listener it had not heard from, speaks again: from then on its writers
//! notify, it waits until every write begun while it was quiet has
//! committed ([`Audience::speak`]), and then says hello itself, marked as
//! coming from a core that was quiet. Whoever hears such a hello looks at
//! the database again (every local session woken, every subscriber told to
//! re-list): what the quiet core wrote before its hello is committed by
//! then, and what it writes after is notified to a core already listening.
//! A core also starts speaking, and says hello, whenever its own listener
//! connects again, since a hello may have been missed meanwhile.
//!
//! Only the writers' batches ([`Audience::quiet`], around the submit and
//! session writers' transactions) go quiet; any other write notifies as it
//! always did, so a write path that does not ask can only notify too often.

use std::{
    future::Future,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    time::Duration,
};

use tokio::sync::Notify;

/// The `application_name` of every core's listener connection: how cores
/// find each other (`pg_stat_activity` shows it to every role).
pub(super) const LISTENER_NAME: &str = "chatrelay listener";

/// How often a core looks for other cores' listeners: a core that stopped
/// is noticed within this, and so is a listener whose hello was missed.
pub(super) const LOOK_EVERY: Duration = Duration::from_secs(2);

/// The other listeners on this database, not counting the asking one.
pub(super) const OTHER_LISTENERS: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()";

tokio::task_local! {
    /// Set around a writer's batch begun while this core was alone.
    static ALONE: bool;
}

/// Whether the write in progress tells the other cores: every write does,
/// except a batch begun while this core was alone.
pub(super) fn heard() -> bool {
    !ALONE.try_with(|alone| *alone).unwrap_or(false)
}

/// Whether other cores listen, as this core last found, and the writes in
/// progress that were begun while none did.
#[derive(Debug, Default)]
pub(crate) struct Audience {
    /// No other core listens: the writers' batches send no notifications.
    /// A core starts out assuming others do.
    alone: AtomicBool,
    /// Batches in progress that were begun while this core was alone, each
    /// counted until it has committed (and, for a moment, every batch as it
    /// begins).
    quiet: AtomicUsize,
    /// Woken when `quiet` falls to zero.
    drained: Notify,
}

impl Audience {
    /// Runs a writer's batch, without notifications if this core is alone.
    /// A quiet batch is counted from before it looks until it returns
    /// (committed), so that [`Self::speak`] can wait for it; any other is
    /// counted only while it looks, so that under a steady load speaking
    /// waits for the quiet batches alone.
    pub(super) async fn quiet<T>(&self, batch: impl Future<Output = T>) -> T {
        self.quiet.fetch_add(1, SeqCst);
        // Read after counting: a core that speaks after this reads `alone`
        // finds the batch counted.
        let alone = self.alone.load(SeqCst);
        let _counted = alone.then_some(Counted(self));
        ALONE.scope(alone, batch).await
    }

    /// Whether this core is quiet.
    pub(super) fn alone(&self) -> bool {
        self.alone.load(SeqCst)
    }

    /// Goes quiet: no other core listens.
    pub(super) fn hush(&self) {
        self.alone.store(true, SeqCst);
    }

    /// Notifies from now on, and returns once every batch begun while quiet
    /// has committed; whether this core was quiet.
    pub(super) async fn speak(&self) -> bool {
        let was_alone = self.alone.swap(false, SeqCst);
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.quiet.load(SeqCst) == 0 {
                return was_alone;
            }
            drained.await;
        }
    }
}

/// A batch counted by [`Audience::quiet`], uncounted when dropped (also
/// if the batch panics or is dropped unfinished).
struct Counted<'a>(&'a Audience);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if self.0.quiet.fetch_sub(1, SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::oneshot;

    use super::*;

    /// A batch in progress on its own task: whether it notifies, once it
    /// began, and the sender that lets it commit.
    fn batch_in_progress(
        audience: &Arc<Audience>,
    ) -> (
        oneshot::Receiver<bool>,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (commit, committed) = oneshot::channel::<()>();
        let (began, begun) = oneshot::channel();
        let audience = audience.clone();
        let batch = tokio::spawn(async move {
            audience
                .quiet(async {
                    began.send(heard()).unwrap();
                    committed.await.unwrap();
                })
                .await
        });
        (begun, commit, batch)
    }

    #[tokio::test]
    async fn speaking_waits_for_the_batches_begun_alone_and_no_others() {
        let audience = Arc::new(Audience::default());
        assert!(
            audience.quiet(async { heard() }).await,
            "a new core notifies"
        );
        audience.hush();
        assert!(!audience.quiet(async { heard() }).await);
        assert!(heard(), "outside a batch every write notifies");

        let (begun, commit, batch) = batch_in_progress(&audience);
        assert!(!begun.await.unwrap(), "begun alone: quiet");
        let speaking = tokio::spawn({
            let audience = audience.clone();
            async move { audience.speak().await }
        });
        while audience.alone() {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        assert!(
            !speaking.is_finished(),
            "speaking waits for the quiet batch"
        );
        assert!(
            audience.quiet(async { heard() }).await,
            "later batches notify"
        );
        commit.send(()).unwrap();
        batch.await.unwrap();
        assert!(speaking.await.unwrap(), "it was alone");
        assert!(!audience.speak().await, "already speaking");

        // A batch begun while speaking does not hold back a later speak.
        let (begun, commit, batch) = batch_in_progress(&audience);
        assert!(begun.await.unwrap(), "begun while speaking: it notifies");
        audience.hush();
        let spoke = tokio::time::timeout(Duration::from_secs(10), audience.speak()).await;
        assert_eq!(spoke.ok(), Some(true), "it was alone, and nothing held it");
        commit.send(()).unwrap();
        batch.await.unwrap();
    }
}
