//! A webhook receiver for tests that need one beside the API calls they
//! make: a real HTTP server on an ephemeral loopback port that records every
//! request and answers each with the next scripted status (200 once the
//! script is used up). A status can be held back until the test releases it,
//! to keep an attempt in flight.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    Router,
};
use serde_json::Value;
use tokio::{
    net::TcpListener,
    sync::{mpsc, Semaphore},
    task::JoinHandle,
};

/// How long a test waits for a webhook before it fails.
pub const WEBHOOK_WAIT: Duration = Duration::from_secs(20);

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    /// Answers with this status at once.
    Status(u16),
    /// Answers 200 once the test calls [`Receiver::release`].
    Held,
}

/// A webhook the receiver got.
#[derive(Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }

    /// The `webhook-id` header: the delivery's id.
    pub fn webhook_id(&self) -> String {
        self.headers["webhook-id"]
            .to_str()
            .expect("ASCII webhook-id")
            .to_string()
    }
}

#[derive(Clone)]
struct Shared {
    seen: mpsc::UnboundedSender<Received>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    released: Arc<Semaphore>,
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let reply = shared
        .script
        .lock()
        .expect("script")
        .pop_front()
        .unwrap_or(Reply::Status(200));
    let _ = shared.seen.send(Received {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).expect("status"),
        Reply::Held => {
            let _ = shared.released.acquire().await.map(|p| p.forget());
            StatusCode::OK
        }
    }
}

pub struct Receiver {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Received>,
    shared: Shared,
    server: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (tx, seen) = mpsc::unbounded_channel();
        let shared = Shared {
            seen: tx,
            script: Arc::default(),
            released: Arc::new(Semaphore::new(0)),
        };
        let app = Router::new().fallback(receive).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            seen,
            shared,
            server,
        }
    }

    /// The URL to give the account.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().expect("script").extend(replies);
    }

    /// Lets one held request be answered.
    pub fn release(&self) {
        self.shared.released.add_permits(1);
    }

    /// The next webhook, waiting for it (the server pushes it; no polling).
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WEBHOOK_WAIT, self.seen.recv())
            .await
            .expect("a webhook within the wait")
            .expect("receiver running")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
