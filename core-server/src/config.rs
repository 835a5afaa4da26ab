//! The core's configuration: every setting is a flag and a `CHATRELAY_…`
//! variable, with defaults that need no touching.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

pub use crate::store::{DatabaseConfig, SqliteSynchronous};
use crate::webhooks::WebhookConfig;

/// The core server.
#[derive(clap::Args, Clone, Debug)]
pub struct CoreConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,

    /// The core's gRPC listener.
    #[arg(long, env = "CHATRELAY_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    #[command(flatten)]
    pub grpc_listener: GrpcListenerConfig,

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

    /// Delete finished requests older than this (e.g. `30d`), with their
    /// webhook deliveries and the chats they leave empty; unset, nothing is
    /// ever deleted.
    #[arg(long, env = "CHATRELAY_RETENTION", value_name = "AGE",
          value_parser = crate::retention::parse_age)]
    pub retention: Option<Duration>,
}

impl CoreConfig {
    /// Defaults for everything but the database: what tests and embedders start from.
    pub fn with_database(database_url: impl Into<String>) -> Self {
        Self {
            database: DatabaseConfig::new(database_url),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_listener: GrpcListenerConfig::default(),
            max_message_chars: 100_000,
            session_window: 16,
            max_attempts: 3,
            lease_ttl_secs: 30,
            max_sessions_per_account: 100,
            submit_rate: 0,
            live_buffer: 256,
            webhooks: WebhookConfig::default(),
            retention: None,
        }
    }
}

/// How the gRPC listener treats its connections: keepalive, request
/// timeout, connection cap and TLS.
#[derive(clap::Args, Clone, Debug)]
pub struct GrpcListenerConfig {
    /// Seconds between HTTP/2 pings (and TCP keepalive probes) on idle gRPC
    /// connections; a peer that does not answer a ping within as long again
    /// is dropped, its sessions end and their requests go back to the queue.
    #[arg(long, env = "CHATRELAY_GRPC_KEEPALIVE_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub grpc_keepalive_secs: u64,

    /// Longest a unary gRPC call may take, in seconds (streams are not cut).
    #[arg(long, env = "CHATRELAY_GRPC_REQUEST_TIMEOUT_SECS", default_value_t = 90,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub grpc_request_timeout_secs: u64,

    /// Open gRPC connections at once; further connections wait to be
    /// accepted until one closes.
    #[arg(long, env = "CHATRELAY_GRPC_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_connections: u32,

    /// PEM certificate chain: serve gRPC over TLS (with `--grpc-tls-key`).
    #[arg(long, env = "CHATRELAY_GRPC_TLS_CERT", requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<PathBuf>,

    /// PEM private key of `--grpc-tls-cert`.
    #[arg(long, env = "CHATRELAY_GRPC_TLS_KEY", requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,
}

impl Default for GrpcListenerConfig {
    fn default() -> Self {
        Self {
            grpc_keepalive_secs: 20,
            grpc_request_timeout_secs: 90,
            grpc_max_connections: 10_000,
            grpc_tls_cert: None,
            grpc_tls_key: None,
        }
    }
}

impl GrpcListenerConfig {
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.grpc_keepalive_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.grpc_request_timeout_secs)
    }

    /// Whether the listener serves TLS (its URL is then `https://`).
    pub fn tls(&self) -> bool {
        self.grpc_tls_cert.is_some()
    }
}
