//! The core's configuration: every setting is a flag and a `CHATRELAY_…`
//! variable, with defaults that need no touching.

use std::net::SocketAddr;

use crate::webhooks::WebhookConfig;

/// Where the core keeps its state.
#[derive(clap::Args, Clone, Debug)]
pub struct DatabaseConfig {
    /// `sqlite://FILE?mode=rwc` (embedded) or `postgres://…` (shared).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://chatrelay.db?mode=rwc"
    )]
    pub database_url: String,

    /// Connections in the read pool (PostgreSQL: the whole pool).
    #[arg(long, env = "CHATRELAY_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// SQLite: the WAL size, in MiB, past which the checkpoint task briefly
    /// holds writes back to start the WAL over (see `db::checkpoint`).
    #[arg(long, env = "CHATRELAY_SQLITE_WAL_LIMIT_MIB", default_value_t = 64)]
    pub sqlite_wal_limit_mib: u64,
}

impl DatabaseConfig {
    /// [`Self::sqlite_wal_limit_mib`] in bytes (at least one MiB).
    pub fn sqlite_wal_limit_bytes(&self) -> u64 {
        self.sqlite_wal_limit_mib.clamp(1, u64::MAX >> 20) << 20
    }
}

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

    #[command(flatten)]
    pub webhooks: WebhookConfig,
}

impl CoreConfig {
    /// Defaults for everything but the database: what tests and embedders start from.
    pub fn with_database(database_url: impl Into<String>) -> Self {
        Self {
            database: DatabaseConfig {
                database_url: database_url.into(),
                db_max_connections: 16,
                sqlite_wal_limit_mib: 64,
            },
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_message_chars: 100_000,
            session_window: 16,
            max_attempts: 3,
            lease_ttl_secs: 30,
            max_sessions_per_account: 100,
            submit_rate: 0,
            webhooks: WebhookConfig::default(),
        }
    }
}
