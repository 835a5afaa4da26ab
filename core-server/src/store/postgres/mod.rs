//! PostgreSQL: one pool shared by reads and writes, written side by side by
//! the submit writers and the session writer ([`writers`]); several cores
//! share the database and hear of each other's events through [`notify`].

mod audience;
pub(crate) mod claims;
mod notify;
pub(crate) mod outcomes;
mod point_reads;
pub(crate) mod statistics;
pub(crate) mod submits;
mod writers;

use std::{sync::Arc, time::Duration};

use sea_orm::{DatabaseConnection, DbErr, SqlxPostgresConnector};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    ConnectOptions, Connection,
};

pub use notify::publish_work;
pub use point_reads::PointReads;

use self::audience::Audience;
use crate::{config::DatabaseConfig, Core};

/// A pooled connection idle for longer than this is pinged before it is
/// used again, so one the server or a proxy closed meanwhile is replaced
/// instead of failing a query.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// The PostgreSQL parts of a store.
#[derive(Clone, Debug)]
pub(super) struct Parts {
    pub(super) point_reads: Arc<PointReads>,
    /// This core's sessions' claims, on their way to the claimer.
    pub(super) claims: Arc<claims::Claims>,
    /// Whether other cores listen (the writers notify them only if so).
    audience: Arc<Audience>,
}

/// Opens the pool and sets up the point reads.
pub(super) async fn connect(config: &DatabaseConfig) -> Result<(DatabaseConnection, Parts), DbErr> {
    let options: PgConnectOptions = config
        .database_url
        .parse()
        .map_err(|e| DbErr::Custom(format!("invalid DATABASE_URL: {e}")))?;
    let pool = PgPoolOptions::new()
        .max_connections(config.db_max_connections.max(2))
        .acquire_timeout(Duration::from_secs(30))
        // sqlx's default pings every connection before every use: a round
        // trip to the server per query or transaction, as many as the work
        // itself. A busy pool's connections were in use a moment ago.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options.clone().disable_statement_logging())
        .await
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?;
    let parts = Parts {
        point_reads: Arc::new(PointReads::new(options.disable_statement_logging())),
        claims: Arc::default(),
        audience: Arc::default(),
    };
    Ok((SqlxPostgresConnector::from_sqlx_postgres_pool(pool), parts))
}

/// How long a starting core waits to hear the other cores before it
/// serves anyway.
const HEAR_OTHERS_WITHIN: Duration = Duration::from_secs(5);

/// Starts the writers, the claimer, the listener for other cores' events
/// (which also looks for the other cores), the publisher of this core's
/// status changes to them, and the upkeep of the planner's statistics.
/// Returns once the listener listens and every other core it found has
/// answered its hello (so each notifies it from then on), or after
/// [`HEAR_OTHERS_WITHIN`].
pub(super) async fn start(core: &Arc<Core>, parts: &Parts) {
    writers::start_submit_writer(core, &parts.audience);
    claims::start(core, &parts.claims);
    writers::start_session_writer(core, &parts.audience);
    let heard = notify::start_listener(core, &parts.audience);
    notify::start_status_publisher(core, &parts.audience);
    statistics::start(core);
    if tokio::time::timeout(HEAR_OTHERS_WITHIN, heard)
        .await
        .is_err()
    {
        tracing::warn!(
            "not all other cores answered within {} s; serving anyway",
            HEAR_OTHERS_WITHIN.as_secs()
        );
    }
}
