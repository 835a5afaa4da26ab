//! Leases: a delivered request belongs to one session on one core until it
//! finishes or the lease ends. A session that ends gives its requests back;
//! a core renews its leases while it lives, and any core gives back the
//! leases of a core that stopped renewing. Each give-back counts as a
//! delivery attempt; past the limit the request fails, with its webhook.

use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use crate::{
    committed::after_commit,
    error::CoreResult,
    model::AccountId,
    store::{heads, idempotency, leases},
    Core,
};

/// Gives back what `which` selects, then applies what that committed.
async fn give_back(core: &Core, which: leases::Which, why: &str) -> CoreResult<()> {
    let committed = leases::give_back(core, which, why).await?;
    after_commit(core, committed);
    Ok(())
}

/// Gives back everything the ended session still held.
pub async fn release_session(core: &Core, session: Uuid) -> CoreResult<()> {
    give_back(
        core,
        leases::Which::Session(session),
        "the extension session ended",
    )
    .await
}

/// Takes back requests leased to a session after it ended, which it never
/// received: no attempt is counted for them (see
/// [`leases::return_undelivered`]). Should that fail, the session's
/// give-back is retried by the lease keeper, which counts the attempt.
pub(crate) async fn return_undelivered(
    core: &Core,
    account: AccountId,
    session: Uuid,
    ids: Vec<Uuid>,
) {
    match leases::return_undelivered(core, account, session, ids).await {
        Ok(committed) => after_commit(core, committed),
        Err(e) => {
            tracing::warn!(%session, error = %e, "could not give back an ended session's claim; retrying");
            core.dispatch.session_ended(session, false);
        }
    }
}

/// Gives back requests whose lease lapsed (their core stopped renewing).
pub async fn reap_expired(core: &Core) -> CoreResult<()> {
    give_back(
        core,
        leases::Which::Lapsed,
        "the extension session was lost",
    )
    .await
}

/// A sole writer owns the database, so leases found at start-up belong to
/// a process that is gone: give them back at once. (Where cores share the
/// database, another core may hold them; they lapse if it is gone.)
pub async fn release_orphans(core: &Core) -> CoreResult<()> {
    if !core.store.sole_writer() {
        return Ok(());
    }
    give_back(core, leases::Which::All, "chatrelay restarted").await
}

/// Extends the leases of the sessions running on this core — only those: a
/// session that ended, even one whose give-back failed, lets its leases
/// lapse, and the reaper (or the retried give-back) returns its requests.
pub async fn renew(core: &Core) -> CoreResult<()> {
    leases::renew(core, &core.dispatch.live_sessions()).await
}

/// Gives back the requests of ended sessions whose give-back failed.
async fn release_unreleased(core: &Core) {
    for session in core.dispatch.take_unreleased() {
        let released = match release_session(core, session).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%session, error = %e, "could not release session's requests; retrying");
                false
            }
        };
        core.dispatch.session_ended(session, released);
    }
}

/// Starts the task that renews this core's leases and reaps lapsed ones,
/// three times per lease lifetime.
pub fn start_keeper(core: &Arc<Core>) {
    let period = Duration::from_millis((core.lease_ttl_millis() / 3).max(100) as u64);
    core.every(period, |core| async move {
        if let Err(e) = renew(&core).await {
            tracing::warn!(error = %e, "could not renew leases");
        }
        // The sessions' rows are marked as seen on the same beat.
        core.dispatch.registry.refresh().await;
        release_unreleased(&core).await;
        if let Err(e) = reap_expired(&core).await {
            tracing::warn!(error = %e, "could not reap lapsed leases");
        }
        // Chats held back by a mark that racing transactions left (a sole
        // writer's transactions never race).
        if !core.store.sole_writer() {
            match heads::repair(&core).await {
                Ok(committed) => after_commit(&core, committed),
                Err(e) => tracing::warn!(error = %e, "could not check the chats' queues"),
            }
        }
        // Housekeeping on the same beat: idempotency keys past their day.
        if let Err(e) = idempotency::forget_expired(&core.store).await {
            tracing::warn!(error = %e, "could not forget expired idempotency keys");
        }
        // And the session rows of cores that are gone.
        if let Err(e) = super::registry::sweep(&core).await {
            tracing::warn!(error = %e, "could not sweep the session rows of stopped cores");
        }
    });
}
