//! Full lifecycles: simulated extensions answer every request at once while
//! REST clients submit, either flat out or paced at a fixed rate. Measures
//! completed lifecycles per second and the dispatch latency, submit →
//! `new_request` at the extension.
//!
//! A session holds at most `CHATRELAY_SESSION_WINDOW` unfinished requests, so
//! a request reaches an extension only once an earlier answer was applied:
//! in steady state the rate of `new_request` arrivals is the rate of
//! completed lifecycles (to within the window's 8 × 16 requests).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::{extension::Extensions, latency::Latencies, rest::RestClient};

#[derive(Clone, Copy, Debug)]
pub struct LifecycleLoad {
    pub extensions: usize,
    /// Submits in flight at once (flat out) or most in flight (paced).
    pub submitters: usize,
    /// Submits per second; `None`: as fast as the submitters can.
    pub pace: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
}

#[derive(Debug, Default)]
pub struct LifecycleReport {
    /// Requests that reached an extension (and were answered) per second.
    pub completed_per_sec: f64,
    pub submitted_per_sec: f64,
    /// Submit → `new_request`, for requests submitted in the measured window.
    pub dispatch: Latencies,
    /// Requests submitted in the window that no extension saw by the end.
    pub not_dispatched: u64,
    pub submit_errors: u64,
    pub frame_errors: usize,
}

/// Submits made by one submitter: (request id, submitted at since epoch).
type Submits = Vec<(String, Duration)>;

/// Most submits one submitter makes: a bound besides the clock.
const MAX_SUBMITS_PER_WORKER: u64 = 10_000_000;
/// How long to wait, at most, for the requests still queued after the
/// submitters stop. Flat out (4a) the submitters can outrun the extensions;
/// the backlog is drained here, by this scenario's extensions, so that it
/// neither counts in the next scenario on the same account nor delays it.
const DRAIN: Duration = Duration::from_secs(30);

impl LifecycleLoad {
    /// Runs from `start`: extensions connect and submitters begin at once;
    /// only the window after the warm-up is measured.
    pub async fn run(
        &self,
        http: SocketAddr,
        api_key: &str,
        start: Instant,
    ) -> anyhow::Result<LifecycleReport> {
        let epoch = start;
        let extensions = Extensions::start(http, api_key, self.extensions, epoch).await?;
        let client = RestClient::new(http, api_key)?;
        let measure_from = start + self.warmup;
        let end = measure_from + self.duration;
        let errors = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(0));
        let mut submitters = tokio::task::JoinSet::new();
        for _ in 0..self.submitters {
            let (client, errors, next, pace) =
                (client.clone(), errors.clone(), next.clone(), self.pace);
            submitters.spawn(async move {
                let mut submits = Submits::new();
                for _ in 0..MAX_SUBMITS_PER_WORKER {
                    if let Some(rate) = pace {
                        let slot = next.fetch_add(1, Ordering::Relaxed);
                        let due = start + Duration::from_secs_f64(slot as f64 / rate);
                        if due >= end {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                    } else if Instant::now() >= end {
                        break;
                    }
                    let at = epoch.elapsed();
                    match client.submit().await {
                        Ok(id) => submits.push((id, at)),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
                submits
            });
        }
        let mut submitted: HashMap<String, Duration> = HashMap::new();
        let mut submitted_total = 0;
        let window = (measure_from - epoch)..(end - epoch);
        while let Some(submits) = submitters.join_next().await {
            for (id, at) in submits? {
                submitted_total += 1;
                if window.contains(&at) {
                    submitted.insert(id, at);
                }
            }
        }
        let drain_until = Instant::now() + DRAIN;
        while extensions.answered() < submitted_total && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = extensions.stop().await?;

        let mut report = LifecycleReport {
            submitted_per_sec: submitted.len() as f64 / self.duration.as_secs_f64(),
            submit_errors: errors.load(Ordering::Relaxed),
            frame_errors: log.errors.len(),
            ..Default::default()
        };
        let mut completed_in_window = 0;
        let mut dispatched = 0;
        for arrival in &log.arrivals {
            if window.contains(&arrival.at) {
                completed_in_window += 1;
            }
            if let Some(submitted_at) = submitted.get(&arrival.request_id) {
                dispatched += 1;
                report
                    .dispatch
                    .record(arrival.at.saturating_sub(*submitted_at));
            }
        }
        report.completed_per_sec = completed_in_window as f64 / self.duration.as_secs_f64();
        report.not_dispatched = (submitted.len() - dispatched) as u64;
        Ok(report)
    }
}
