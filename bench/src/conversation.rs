//! One long conversation: requests queued in one chat reach an extension
//! one at a time, each once the previous one's answer was applied (a chat
//! never has two requests in flight). Measures turns per second and the
//! gap between one `new_request` and the next, while the chat's history
//! grows by a request a turn.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::{extension::Extensions, latency::Latencies, rest::RestClient};

/// The chat every request of the scenario goes to.
const CHAT: &str = "bench-conversation";

#[derive(Debug, Default)]
pub struct ConversationReport {
    /// Requests that reached the extension (and were answered).
    pub answered: u64,
    pub turns_per_sec: f64,
    /// One `new_request` → the next.
    pub gap: Latencies,
    pub submit_errors: u64,
    pub frame_errors: usize,
}

/// Queues `requests` in one chat (`submitters` at a time), then connects
/// one extension and waits for it to answer them all, for `limit` at most.
pub async fn run(
    http: SocketAddr,
    api_key: &str,
    requests: usize,
    submitters: usize,
    limit: Duration,
) -> anyhow::Result<ConversationReport> {
    let client = RestClient::new(http, api_key)?;
    let mut report = ConversationReport::default();
    let submitters = submitters.max(1);
    let mut submits = tokio::task::JoinSet::new();
    for worker in 0..submitters {
        let client = client.clone();
        let count = requests / submitters + usize::from(worker < requests % submitters);
        submits.spawn(async move {
            let mut failed = 0;
            for _ in 0..count {
                if client.submit_in_chat(CHAT).await.is_err() {
                    failed += 1;
                }
            }
            failed
        });
    }
    while let Some(failed) = submits.join_next().await {
        report.submit_errors += failed?;
    }
    let queued = requests as u64 - report.submit_errors;

    let epoch = Instant::now();
    let extension = Extensions::start(http, api_key, 1, epoch).await?;
    let until = epoch + limit;
    while extension.answered() < queued && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = extension.stop().await?;
    report.frame_errors = log.errors.len();
    report.answered = log.arrivals.len() as u64;
    let (Some(first), Some(last)) = (log.arrivals.first(), log.arrivals.last()) else {
        return Ok(report);
    };
    let span = last.at.saturating_sub(first.at).as_secs_f64();
    if span > 0.0 {
        report.turns_per_sec = (report.answered - 1) as f64 / span;
    }
    for pair in log.arrivals.windows(2) {
        report.gap.record(pair[1].at.saturating_sub(pair[0].at));
    }
    Ok(report)
}
