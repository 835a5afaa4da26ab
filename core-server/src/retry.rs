//! Writes that carry an extension's data are retried through database
//! failures instead of being handed back: an answer is applied once its
//! frame is valid, however long the database takes to accept it (within
//! reason), and in order, since the session waits for each write.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use crate::{error::CoreResult, CoreError};

/// The first pause after a failed write; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(10);
/// The longest pause between two tries.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// How long a write is retried before the failure is reported.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// Runs `write` until it succeeds, fails for a reason other than the
/// database (unknown request, already finished: those are answers), the
/// core stops, or [`GIVE_UP_AFTER`] passes. Each retry is counted in
/// `chatrelay_write_retries_total{write}`.
pub(crate) async fn until_stored<T, F, Fut>(
    shutdown: &tokio_util::sync::CancellationToken,
    write: &'static str,
    mut attempt: F,
) -> CoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = CoreResult<T>>,
{
    let started = Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        match attempt().await {
            Err(CoreError::Database(e))
                if started.elapsed() < GIVE_UP_AFTER && !shutdown.is_cancelled() =>
            {
                metrics::counter!("chatrelay_write_retries_total", "write" => write).increment(1);
                tracing::warn!(
                    write,
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "write failed; retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => {}
                }
                delay = (delay * 2).min(MAX_DELAY);
            }
            other => return other,
        }
    }
}
