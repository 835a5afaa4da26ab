//! A simulated browser extension for the benchmarks: connects to
//! `/ws/extension/`, answers every `new_request` at once (no status update)
//! and notes when each one arrived, so dispatch latency can be measured
//! against the time the request was submitted.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{protocol::WebSocketConfig, Message},
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::CancellationToken;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A `new_request` that reached the extension, `at` after the run's epoch.
pub struct Arrival {
    pub request_id: String,
    pub at: Duration,
}

#[derive(Deserialize)]
struct ServerFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    chat_id: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Opens one extension session. Small buffers: the idle-session scenario
/// holds ten thousand of these in the harness.
pub async fn connect(http: SocketAddr, api_key: &str) -> anyhow::Result<Socket> {
    let url = format!("ws://{http}/ws/extension/?api_key={api_key}");
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    Ok(socket)
}

/// What one session saw.
#[derive(Default)]
pub struct SessionLog {
    pub arrivals: Vec<Arrival>,
    /// Error frames the server sent (a result it did not apply).
    pub errors: Vec<String>,
}

/// Answers until `stop` or until the server ends the session; counts each
/// answer in `answered`.
pub async fn answer(
    mut socket: Socket,
    epoch: Instant,
    stop: CancellationToken,
    answered: Arc<AtomicU64>,
) -> anyhow::Result<SessionLog> {
    let mut log = SessionLog::default();
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            message = socket.next() => match message {
                Some(message) => message?,
                None => break,
            },
        };
        let Message::Text(text) = message else {
            continue;
        };
        let at = epoch.elapsed();
        let Ok(frame) = serde_json::from_str::<ServerFrame>(text.as_str()) else {
            continue;
        };
        match (frame.kind.as_str(), frame.request_id) {
            ("new_request", Some(request_id)) => {
                let chat_id = frame
                    .chat_id
                    .unwrap_or_else(|| format!("bench-{request_id}"));
                let reply = json!({
                    "type": "response",
                    "request_id": request_id,
                    "response": "ok",
                    "chat_id": chat_id,
                    "chat_title": "bench",
                });
                socket.send(Message::Text(reply.to_string().into())).await?;
                answered.fetch_add(1, Ordering::Relaxed);
                log.arrivals.push(Arrival { request_id, at });
            }
            ("error", _) => log.errors.push(frame.error.unwrap_or_default()),
            _ => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
    Ok(log)
}

/// `count` answering sessions of one account.
pub struct Extensions {
    pub answered: Arc<AtomicU64>,
    stop: CancellationToken,
    sessions: tokio::task::JoinSet<anyhow::Result<SessionLog>>,
}

impl Extensions {
    pub async fn start(
        http: SocketAddr,
        api_key: &str,
        count: usize,
        epoch: Instant,
    ) -> anyhow::Result<Self> {
        let answered = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let mut sessions = tokio::task::JoinSet::new();
        for _ in 0..count {
            let socket = connect(http, api_key).await?;
            sessions.spawn(answer(socket, epoch, stop.clone(), answered.clone()));
        }
        Ok(Self {
            answered,
            stop,
            sessions,
        })
    }

    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Closes every session and returns what they saw together.
    pub async fn stop(mut self) -> anyhow::Result<SessionLog> {
        self.stop.cancel();
        let mut all = SessionLog::default();
        while let Some(log) = self.sessions.join_next().await {
            let log = log??;
            all.arrivals.extend(log.arrivals);
            all.errors.extend(log.errors);
        }
        Ok(all)
    }
}
