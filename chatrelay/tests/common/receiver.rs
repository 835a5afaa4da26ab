//! The webhook receiver of the tests: a real HTTP server on an ephemeral
//! loopback port that records every request and answers each with the next
//! scripted reply, then with the standing one (200 unless changed). A reply
//! can be a status, a redirect, a slow 200, or a 200 held back until the
//! test releases it (to keep an attempt in flight).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
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
    /// 302 to another path of the receiver.
    Redirect(&'static str),
    /// Answers 200, but only after this long.
    Slow(Duration),
}

/// A request the receiver got.
#[derive(Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .expect("ASCII header")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }

    /// The `webhook-id` header: the delivery's id.
    pub fn webhook_id(&self) -> String {
        self.header("webhook-id").to_string()
    }

    /// The `webhook-id` header as the delivery's UUID.
    pub fn delivery_id(&self) -> uuid::Uuid {
        self.header("webhook-id")
            .parse()
            .expect("webhook-id is a UUID")
    }
}

#[derive(Clone)]
struct Shared {
    seen: mpsc::UnboundedSender<Received>,
    /// Replies for the next requests, in order; then `otherwise`.
    script: Arc<Mutex<VecDeque<Reply>>>,
    otherwise: Arc<Mutex<Reply>>,
    released: Arc<Semaphore>,
}

async fn receive(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = shared
        .script
        .lock()
        .expect("script")
        .pop_front()
        .unwrap_or_else(|| *shared.otherwise.lock().expect("otherwise"));
    let _ = shared.seen.send(Received {
        path: uri.path().to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).expect("status").into_response(),
        Reply::Redirect(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
        Reply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK.into_response()
        }
        Reply::Held => {
            let _ = shared.released.acquire().await.map(|p| p.forget());
            StatusCode::OK.into_response()
        }
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Received>,
    shared: Shared,
    server: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.expect("bind")).await
    }

    /// A receiver on `listener` (a port the test chose, or took back).
    pub async fn start_on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("address");
        let (tx, seen) = mpsc::unbounded_channel();
        let shared = Shared {
            seen: tx,
            script: Arc::default(),
            otherwise: Arc::new(Mutex::new(Reply::Status(200))),
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

    /// The reply once the script is used up.
    pub fn otherwise(&self, reply: Reply) {
        *self.shared.otherwise.lock().expect("otherwise") = reply;
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

    /// Requests that have already arrived and were not taken yet.
    pub fn already_received(&mut self) -> Vec<Received> {
        std::iter::from_fn(|| self.seen.try_recv().ok()).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
