//! The queue behind each group-commit writer ([`crate::intake`] for
//! submits, [`crate::results`] for extension results, drained by the
//! store's writers): callers enqueue on a bounded channel, and
//! the one writer takes whatever has gathered — at once when idle, larger
//! batches while the previous one commits.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub struct Queue<T> {
    tx: mpsc::Sender<T>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<T>>>,
}

impl<T> Queue<T> {
    /// A queue holding up to `capacity` items before senders wait.
    pub fn new(capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity);
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// Enqueues an item; fails once the writer has stopped.
    pub async fn send(&self, item: T) -> Result<(), ()> {
        self.tx.send(item).await.map_err(|_| ())
    }

    /// The writer's end; `None` if a writer already took it.
    pub fn take_receiver(&self) -> Option<Receiver<T>> {
        let rx = self.rx.lock().ok()?.take()?;
        Some(Receiver { rx })
    }
}

pub struct Receiver<T> {
    rx: mpsc::Receiver<T>,
}

impl<T> Receiver<T> {
    /// The next batch of at most `max` items. Once `shutdown` is cancelled
    /// it takes no new items, hands out those already queued, then `None`.
    pub async fn next(&mut self, shutdown: &CancellationToken, max: usize) -> Option<Vec<T>> {
        let first = tokio::select! {
            first = self.rx.recv() => first,
            _ = shutdown.cancelled() => {
                self.rx.close();
                self.rx.recv().await
            }
        }?;
        let mut batch = vec![first];
        batch.extend(self.ready(max.saturating_sub(1)));
        Some(batch)
    }

    /// Nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// What is queued now, up to `max` items, without waiting.
    pub fn ready(&mut self, max: usize) -> Vec<T> {
        let mut batch = Vec::new();
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        batch
    }
}
