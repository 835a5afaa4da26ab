//! Idle extension sessions: opens many WebSocket sessions of one account
//! that has nothing queued, and keeps them open (reading, so pings are
//! answered) until closed.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::extension;

/// Connection attempts in flight at once while opening the sessions.
const CONNECTING_AT_ONCE: usize = 128;

pub struct IdleSessions {
    pub connected: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    pub connect_time: Duration,
    /// Sessions that the server ended while they were held.
    ended: Arc<AtomicU64>,
    stop: CancellationToken,
    holders: tokio::task::JoinSet<()>,
}

/// Connections that opened and failed so far.
#[derive(Default)]
struct Tally {
    connected: u64,
    failed: u64,
    first_error: Option<String>,
}

type Connecting = Result<anyhow::Result<extension::Socket>, tokio::task::JoinError>;

impl IdleSessions {
    /// Opens `count` sessions, `per_account` of them with each key in turn,
    /// and keeps each one open in a task of its own.
    pub async fn open(
        http: SocketAddr,
        api_keys: &[String],
        per_account: usize,
        count: usize,
    ) -> Self {
        let started = Instant::now();
        let stop = CancellationToken::new();
        let ended = Arc::new(AtomicU64::new(0));
        let permits = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
        let mut tally = Tally::default();
        let mut holders = tokio::task::JoinSet::new();
        let mut connecting = tokio::task::JoinSet::new();
        for n in 0..count {
            let Some(api_key) = api_keys.get(n / per_account.max(1)).cloned() else {
                break;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            connecting.spawn(async move {
                let socket = extension::connect(http, &api_key).await;
                drop(permit);
                socket
            });
            // Hand sessions that are already open to holders as we go.
            while let Some(joined) = connecting.try_join_next() {
                hold(joined, &mut tally, &mut holders, &stop, &ended);
            }
        }
        while let Some(joined) = connecting.join_next().await {
            hold(joined, &mut tally, &mut holders, &stop, &ended);
        }
        Self {
            connected: tally.connected,
            failed: tally.failed,
            first_error: tally.first_error,
            connect_time: started.elapsed(),
            ended,
            stop,
            holders,
        }
    }

    /// Sessions the server ended while they were meant to be idle.
    pub fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }

    pub async fn close(mut self) {
        self.stop.cancel();
        while self.holders.join_next().await.is_some() {}
    }
}

/// Keeps an opened session open, reading so that pings are answered.
fn hold(
    joined: Connecting,
    tally: &mut Tally,
    holders: &mut tokio::task::JoinSet<()>,
    stop: &CancellationToken,
    ended: &Arc<AtomicU64>,
) {
    let mut socket = match joined {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => {
            tally.failed += 1;
            tally.first_error.get_or_insert_with(|| e.to_string());
            return;
        }
        Err(e) => {
            tally.failed += 1;
            tally.first_error.get_or_insert_with(|| e.to_string());
            return;
        }
    };
    tally.connected += 1;
    let (stop, ended) = (stop.clone(), ended.clone());
    holders.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                message = socket.next() => {
                    if !matches!(message, Some(Ok(_))) {
                        ended.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.close(None)).await;
    });
}
