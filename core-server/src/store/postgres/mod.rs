//! PostgreSQL: one pool shared by reads and writes, written side by side by
//! the submit writer and the session writer ([`writers`]); several cores
//! share the database and hear of each other's events through [`notify`].

mod notify;
mod writers;

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

pub use notify::{publish_finished, publish_work};

use crate::{config::DatabaseConfig, Core};

pub(super) async fn connect(config: &DatabaseConfig) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(config.database_url.as_str());
    options
        .max_connections(config.db_max_connections.max(2))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(options).await
}

/// Starts the two writers, the listener for other cores' events and the
/// publisher of this core's status changes to them.
pub(super) fn start(core: &Arc<Core>) {
    writers::start_submit_writer(core);
    writers::start_session_writer(core);
    notify::start_listener(core);
    notify::start_status_publisher(core);
}
