//! chatrelay's core: it owns every rule and all state — accounts and API keys,
//! the request queue, chats, dispatch to extension sessions, webhooks — and
//! serves them over gRPC (`chatrelay.v1`). Nothing else touches the database.

pub mod accounts;
pub mod chats;
pub mod config;
pub mod db;
pub mod dispatch;
pub mod error;
pub mod grpc;
pub mod model;
pub mod requests;

use std::sync::Arc;

pub use config::CoreConfig;
pub use error::{CoreError, CoreResult};

/// The core's shared state, handed to every gRPC service.
pub struct Core {
    pub db: db::Db,
    pub config: CoreConfig,
    pub dispatch: dispatch::Dispatch,
}

impl Core {
    /// Connects to the database (applying migrations) and builds the core.
    pub async fn start(config: CoreConfig) -> anyhow::Result<Arc<Self>> {
        let db = db::Db::connect(&config.database).await?;
        Ok(Arc::new(Self {
            db,
            config,
            dispatch: dispatch::Dispatch::default(),
        }))
    }
}
