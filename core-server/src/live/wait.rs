//! The long-poll: `GetRequest` with `wait` holds its answer until the
//! request is done or failed, or the wait is over.

use std::time::Duration;

use tokio::time::Instant;

use crate::{
    error::{CoreError, CoreResult},
    model::RequestView,
    requests, Core,
};

/// The longest a long-poll may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// A requested wait in seconds: more than 0 and at most [`MAX_WAIT`].
pub fn parse_wait(seconds: f64) -> CoreResult<Duration> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_WAIT.as_secs_f64() {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(CoreError::invalid(format!(
            "wait: must be a number of seconds more than 0 and at most {}",
            MAX_WAIT.as_secs()
        )))
    }
}

/// The request `id` of the holder of `api_key`, once it is done or failed
/// or `wait` has passed (at once without `wait`). Errors (an unknown id,
/// another account's request, a bad key) come at once.
pub async fn get(
    core: &Core,
    api_key: Option<&str>,
    id: &str,
    wait: Option<Duration>,
) -> CoreResult<RequestView> {
    let view = requests::get(core, api_key, id).await?;
    let Some(wait) = wait else {
        return Ok(view);
    };
    if view.request.status.is_terminal() {
        return Ok(view);
    }
    let deadline = Instant::now() + wait;
    let waiter = core.live.waiter(view.request.id);
    loop {
        // Registered before the read: a change that commits after it wakes us.
        let woken = waiter.notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let view = requests::get(core, api_key, id).await?;
        if view.request.status.is_terminal() || Instant::now() >= deadline {
            return Ok(view);
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = core.shutdown.cancelled() => return requests::get(core, api_key, id).await,
        }
    }
}
