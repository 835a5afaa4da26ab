//! Cross-core wake-ups on PostgreSQL: events are published with `pg_notify`
//! inside the transaction that causes them (so they are sent on commit and
//! only then), and every core listens and wakes its own sessions. On SQLite
//! there is one core per database file, and local wake-ups are all there is.

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::{error::CoreResult, model::AccountId, Core};

const CHANNEL: &str = "chatrelay_dispatch";

async fn publish(conn: &impl ConnectionTrait, core: &Core, payload: String) -> CoreResult<()> {
    if conn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    conn.execute(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), format!("{}:{payload}", core.node_id).into()],
    ))
    .await?;
    Ok(())
}

/// Tells the other cores that the account has claimable work.
pub async fn publish_work(
    conn: &impl ConnectionTrait,
    core: &Core,
    account: AccountId,
) -> CoreResult<()> {
    publish(conn, core, format!("w:{}", account.0)).await
}

/// Tells the other cores that a request of the account finished.
pub async fn publish_finished(
    conn: &impl ConnectionTrait,
    core: &Core,
    account: AccountId,
    request: Uuid,
) -> CoreResult<()> {
    publish(conn, core, format!("f:{}:{request}", account.0)).await
}

fn apply(core: &Core, payload: &str) {
    let mut parts = payload.split(':');
    let (Some(node), Some(kind), Some(account)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    if node == core.node_id.to_string() {
        return; // our own event, already applied locally
    }
    let Ok(account) = account.parse::<i64>().map(AccountId) else {
        return;
    };
    match (kind, parts.next().and_then(|r| Uuid::parse_str(r).ok())) {
        ("w", _) => core.dispatch.wake_local(account),
        ("f", Some(request)) => core.dispatch.finished_local(account, Arc::from([request])),
        _ => {}
    }
}

/// On PostgreSQL, starts the task that turns other cores' events into local
/// wake-ups. It reconnects by itself and, since events may have been missed
/// while disconnected, wakes every local session after a reconnect.
pub fn start_listener(core: &Arc<Core>) {
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let url = core.config.database.database_url.clone();
        while !core.shutdown.is_cancelled() {
            let mut listener = match PgListener::connect(&url).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "dispatch listener cannot connect; retrying");
                    tokio::select! {
                        _ = core.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %e, "dispatch listener cannot LISTEN; retrying");
                continue;
            }
            core.dispatch.wake_all();
            loop {
                tokio::select! {
                    _ = core.shutdown.cancelled() => return,
                    received = listener.try_recv() => match received {
                        Ok(Some(notification)) => apply(&core, notification.payload()),
                        // The connection dropped and came back: anything may be missed.
                        Ok(None) => core.dispatch.wake_all(),
                        Err(e) => {
                            tracing::warn!(error = %e, "dispatch listener lost its connection");
                            break;
                        }
                    }
                }
            }
        }
    });
}
