//! The core's configuration: every setting is a flag and a `CHATRELAY_…`
//! variable, with defaults that need no touching.

use std::net::SocketAddr;

pub use crate::store::DatabaseConfig;
use crate::webhooks::WebhookConfig;

/// The core server.
#[derive(clap::Args, Clone, Debug)]
pub struct CoreConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,

    /// The core's gRPC listener.
    #[arg(long, env = "CHATRELAY_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// Longest accepted message, in characters.
    #[arg(long, env = "CHATRELAY_MAX_MESSAGE_CHARS", default_value_t = 100_000)]
    pub max_message_chars: usize,

    /// Delivered-but-unfinished requests one extension session may hold.
    #[arg(long, env = "CHATRELAY_SESSION_WINDOW", default_value_t = 16)]
    pub session_window: u32,

    /// Deliveries of one request before it is failed.
    #[arg(long, env = "CHATRELAY_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: i32,

    /// How long a delivered request stays leased to its session without the
    /// owning core renewing it, in seconds (a crashed core's requests are
    /// given back to the queue after this).
    #[arg(long, env = "CHATRELAY_LEASE_TTL_SECS", default_value_t = 30)]
    pub lease_ttl_secs: u64,

    /// Extension sessions one account may hold open on this core.
    #[arg(
        long,
        env = "CHATRELAY_MAX_SESSIONS_PER_ACCOUNT",
        default_value_t = 100
    )]
    pub max_sessions_per_account: usize,

    /// Submits per second one account may make (0: unlimited); bursts of up
    /// to one second's worth are allowed.
    #[arg(long, env = "CHATRELAY_SUBMIT_RATE", default_value_t = 0)]
    pub submit_rate: u32,

    /// Live-status events one subscriber may fall behind before its stream
    /// is closed with a final `reset`.
    #[arg(long, env = "CHATRELAY_LIVE_BUFFER", default_value_t = 256)]
    pub live_buffer: usize,

    #[command(flatten)]
    pub webhooks: WebhookConfig,
}

impl CoreConfig {
    /// Defaults for everything but the database: what tests and embedders start from.
    pub fn with_database(database_url: impl Into<String>) -> Self {
        Self {
            database: DatabaseConfig::new(database_url),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_message_chars: 100_000,
            session_window: 16,
            max_attempts: 3,
            lease_ttl_secs: 30,
            max_sessions_per_account: 100,
            submit_rate: 0,
            live_buffer: 256,
            webhooks: WebhookConfig::default(),
        }
    }
}
