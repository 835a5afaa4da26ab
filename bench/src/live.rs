//! Live status (issue 15): how soon a client hears of an answer. Simulated
//! extensions answer every request at once while REST clients submit at a
//! fixed rate; for each request a long-poll (`?wait=60`) is open, and one
//! Server-Sent Events stream follows the account. Measures, per request,
//! the extension's `response` frame → the SSE `done` event, and → the
//! long-poll's answer (all clocks in this one process). The stream and the
//! long-polls may be on another core than the extensions and submits, to
//! measure the hop between cores.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::StreamExt;

use crate::{extension::Extensions, latency::Latencies, rest::RestClient};

#[derive(Clone, Copy, Debug)]
pub struct LiveLoad {
    pub extensions: usize,
    /// Most submits (and long-polls) in flight at once.
    pub submitters: usize,
    /// Submits per second.
    pub pace: f64,
    pub warmup: Duration,
    pub duration: Duration,
}

#[derive(Debug, Default)]
pub struct LiveReport {
    pub submitted_per_sec: f64,
    /// The `response` frame → the SSE event that shows the request done.
    pub to_event: Latencies,
    /// The `response` frame → the long-poll's answer.
    pub to_long_poll: Latencies,
    /// Requests of the window whose event, or long-poll, never came.
    pub missing_events: u64,
    pub missing_polls: u64,
    pub errors: u64,
}

/// When something happened to a request, since the run's epoch.
type Times = Arc<Mutex<HashMap<String, Duration>>>;

/// How long to wait for stragglers after the submitters stop.
const DRAIN: Duration = Duration::from_secs(3);

impl LiveLoad {
    /// Extensions and submits go to `http`, the SSE stream and the
    /// long-polls to `watched` (the same core, or another on its database).
    pub async fn run(
        &self,
        http: SocketAddr,
        watched: SocketAddr,
        api_key: &str,
        start: Instant,
    ) -> anyhow::Result<LiveReport> {
        let epoch = start;
        let events: Times = Arc::default();
        let follow = tokio::spawn(follow_events(
            watched,
            api_key.to_string(),
            epoch,
            events.clone(),
        ));
        let extensions = Extensions::start(http, api_key, self.extensions, epoch).await?;
        let client = RestClient::new(http, api_key)?;
        let watcher = RestClient::new(watched, api_key)?;
        let polls: Times = Arc::default();
        let errors = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(0));
        let measure_from = start + self.warmup;
        let end = measure_from + self.duration;
        let mut submitters = tokio::task::JoinSet::new();
        for _ in 0..self.submitters {
            let (client, watcher, polls, errors, next, pace) = (
                client.clone(),
                watcher.clone(),
                polls.clone(),
                errors.clone(),
                next.clone(),
                self.pace,
            );
            submitters.spawn(async move {
                let mut submitted = Vec::new();
                loop {
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    let due = start + Duration::from_secs_f64(slot as f64 / pace);
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    let at = epoch.elapsed();
                    let Ok(id) = client.submit().await else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    match watcher.long_poll(&id, 60).await {
                        Ok(status) if status == "done" => {
                            polls.lock().unwrap().insert(id.clone(), epoch.elapsed());
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    submitted.push((id, at));
                }
                submitted
            });
        }
        let window = (measure_from - epoch)..(end - epoch);
        let mut in_window = Vec::new();
        let mut total = 0;
        while let Some(submitted) = submitters.join_next().await {
            for (id, at) in submitted? {
                total += 1;
                if window.contains(&at) {
                    in_window.push(id);
                }
            }
        }
        let drain_until = Instant::now() + DRAIN;
        while events.lock().unwrap().len() < total && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        follow.abort();
        let log = extensions.stop().await?;
        let answered: HashMap<String, Duration> = log
            .arrivals
            .into_iter()
            .map(|a| (a.request_id, a.at))
            .collect();

        let mut report = LiveReport {
            submitted_per_sec: in_window.len() as f64 / self.duration.as_secs_f64(),
            errors: errors.load(Ordering::Relaxed),
            ..Default::default()
        };
        let (events, polls) = (events.lock().unwrap(), polls.lock().unwrap());
        for id in &in_window {
            let Some(answered) = answered.get(id) else {
                continue;
            };
            match events.get(id) {
                Some(at) => report.to_event.record(at.saturating_sub(*answered)),
                None => report.missing_events += 1,
            }
            match polls.get(id) {
                Some(at) => report.to_long_poll.record(at.saturating_sub(*answered)),
                None => report.missing_polls += 1,
            }
        }
        Ok(report)
    }
}

/// Follows the account's SSE stream and notes when each request's `done`
/// event arrived.
async fn follow_events(
    http: SocketAddr,
    api_key: String,
    epoch: Instant,
    done: Times,
) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .get(format!("http://{http}/api/chat/events/"))
        .header("X-API-Key", api_key)
        .send()
        .await?
        .error_for_status()?;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        let at = epoch.elapsed();
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let Ok(request) = serde_json::from_str::<serde_json::Value>(data) else {
                continue;
            };
            if let (Some(id), Some("done")) = (request["id"].as_str(), request["status"].as_str()) {
                done.lock().unwrap().insert(id.to_string(), at);
            }
        }
    }
    Ok(())
}

/// Open SSE streams and pending long-polls, held until dropped: what the
/// memory scenario measures chatrelay with.
pub struct HeldOpen {
    pub streams: usize,
    pub polls: usize,
    pub failed: usize,
    tasks: tokio::task::JoinSet<()>,
}

impl HeldOpen {
    /// `streams` event streams of `stream_key`'s account, and a long-poll
    /// (`?wait=60`) on each of `ids` of `poll_key`'s account (which no
    /// extension answers).
    pub async fn open(
        http: SocketAddr,
        stream_key: &str,
        streams: usize,
        poll_key: &str,
        ids: &[String],
    ) -> anyhow::Result<Self> {
        let mut tasks = tokio::task::JoinSet::new();
        let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<bool>(streams.max(1));
        for _ in 0..streams {
            let (key, opened) = (stream_key.to_string(), opened_tx.clone());
            tasks.spawn(async move {
                // A client of its own: one connection per stream, as browsers.
                let response = reqwest::Client::new()
                    .get(format!("http://{http}/api/chat/events/"))
                    .header("X-API-Key", key)
                    .send()
                    .await;
                let Ok(response) = response.and_then(|r| r.error_for_status()) else {
                    let _ = opened.send(false).await;
                    return;
                };
                let _ = opened.send(true).await;
                let mut body = response.bytes_stream();
                while let Some(Ok(_)) = body.next().await {}
            });
        }
        let mut held = Self {
            streams: 0,
            polls: 0,
            failed: 0,
            tasks,
        };
        // Each stream's task keeps its sender: count the answers instead.
        for _ in 0..streams {
            let Some(ok) = opened_rx.recv().await else {
                break;
            };
            if ok {
                held.streams += 1;
            } else {
                held.failed += 1;
            }
        }
        let client = RestClient::new(http, poll_key)?;
        for id in ids {
            let (client, id) = (client.clone(), id.clone());
            held.tasks.spawn(async move {
                let _ = client.long_poll(&id, 60).await;
            });
            held.polls += 1;
        }
        Ok(held)
    }

    pub async fn close(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
