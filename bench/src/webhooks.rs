//! Webhook deliveries per second: a local receiver (axum, in the harness)
//! notes every POST; an account whose webhook URL points at it has `requests`
//! requests completed by simulated extensions; the rate is distinct requests
//! delivered per second, first delivery to last, and the latency is from the
//! extension's answer to the webhook's arrival.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use axum::{extract::State, http::StatusCode, routing::post, Router};
use tokio_util::sync::CancellationToken;

use crate::{
    extension::Extensions,
    latency::Latencies,
    observe::{Observer, Usage},
    rest::RestClient,
};

#[derive(Default)]
struct Received {
    /// When the first webhook for each request arrived.
    request_ids: HashMap<String, Instant>,
    posts: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// The receiver: answers 200 to every POST and remembers which request each was for.
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    stop: CancellationToken,
}

#[derive(serde::Deserialize)]
struct Payload {
    request_id: String,
}

async fn receive(
    State(received): State<Arc<Mutex<Received>>>,
    body: axum::body::Bytes,
) -> StatusCode {
    let now = Instant::now();
    let Ok(payload) = serde_json::from_slice::<Payload>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
    received.posts += 1;
    received
        .request_ids
        .entry(payload.request_id)
        .or_insert(now);
    received.first.get_or_insert(now);
    received.last = Some(now);
    StatusCode::OK
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(received.clone());
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        Ok(Self {
            addr,
            received,
            stop,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn delivered(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .request_ids
            .len()
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

#[derive(Debug, Default)]
pub struct WebhookReport {
    pub requests: usize,
    /// Distinct requests whose webhook arrived before the deadline.
    pub delivered: usize,
    /// POSTs received (more than `delivered` if some were sent twice).
    pub posts: u64,
    /// Distinct deliveries per second, first delivery to last.
    pub per_sec: f64,
    /// First submit to last delivery.
    pub total: Duration,
    /// The extension's answer → the webhook's arrival.
    pub latency: Latencies,
    /// From the first submit until the last webhook arrived.
    pub cpu: Option<Usage>,
}

/// How long the scenario waits for every webhook.
const DEADLINE: Duration = Duration::from_secs(60);

/// Completes `requests` requests of the account (whose webhook URL is the
/// receiver's) with `extensions` simulated extensions and `submitters`
/// concurrent REST submits, and waits until every webhook arrived.
pub async fn run(
    http: SocketAddr,
    observer: &Observer,
    receiver: &Receiver,
    api_key: &str,
    requests: usize,
    extensions: usize,
    submitters: usize,
) -> anyhow::Result<WebhookReport> {
    let epoch = Instant::now();
    let extensions = Extensions::start(http, api_key, extensions, epoch).await?;
    let client = RestClient::new(http, api_key)?;
    let cpu_before = observer.snapshot().await;
    let started = Instant::now();
    let tickets = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..submitters {
        let (client, tickets) = (client.clone(), tickets.clone());
        workers.spawn(async move {
            while tickets.fetch_add(1, Ordering::Relaxed) < requests as u64 {
                if started.elapsed() > DEADLINE {
                    break;
                }
                client.submit().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(worker) = workers.join_next().await {
        worker??;
    }
    while receiver.delivered() < requests && started.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_after = observer.snapshot().await;
    let answered = extensions.stop().await?;

    let received = receiver.received.lock().unwrap_or_else(|e| e.into_inner());
    let (first, last) = (
        received.first.unwrap_or(started),
        received.last.unwrap_or(started),
    );
    let span = last.duration_since(first).as_secs_f64();
    let total = last.duration_since(started);
    let mut latency = Latencies::default();
    for arrival in &answered.arrivals {
        if let Some(delivered) = received.request_ids.get(&arrival.request_id) {
            latency.record(delivered.duration_since(epoch).saturating_sub(arrival.at));
        }
    }
    Ok(WebhookReport {
        requests,
        delivered: received.request_ids.len(),
        posts: received.posts,
        per_sec: if span > 0.0 {
            received.request_ids.len() as f64 / span
        } else {
            0.0
        },
        total,
        latency,
        cpu: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| observer.usage(&before, &after)),
    })
}
