//! The edge's configuration: flags and `CHATRELAY_…` variables.

use std::net::SocketAddr;

#[derive(clap::Args, Clone, Debug)]
pub struct EdgeConfig {
    /// The REST + WebSocket listener.
    #[arg(long, env = "CHATRELAY_HTTP_ADDR", default_value = "127.0.0.1:8000")]
    pub http_addr: SocketAddr,

    /// Where the core's gRPC API is (ignored by `chatrelay serve`, which
    /// runs its own core).
    #[arg(
        long,
        env = "CHATRELAY_CORE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub core_url: String,

    /// Largest accepted REST request body, in bytes.
    #[arg(long, env = "CHATRELAY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest accepted WebSocket message from an extension, in bytes.
    #[arg(long, env = "CHATRELAY_WS_MAX_FRAME_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_ws_frame_bytes: usize,

    /// Seconds between WebSocket pings; a peer silent for three periods is dropped.
    #[arg(long, env = "CHATRELAY_WS_PING_SECS", default_value_t = 20)]
    pub ws_ping_secs: u64,

    /// Seconds between the comment lines that keep an idle event stream
    /// (`/api/chat/events/`) open through proxies.
    #[arg(long, env = "CHATRELAY_SSE_KEEP_ALIVE_SECS", default_value_t = 15)]
    pub sse_keep_alive_secs: u64,

    /// Browser origins allowed to call the REST API (comma-separated, `*` for
    /// any); none by default.
    #[arg(long, env = "CHATRELAY_CORS_ORIGINS", value_delimiter = ',', num_args = 0..)]
    pub cors_origins: Vec<String>,
}

impl EdgeConfig {
    /// Defaults, pointing at the core at `core_url`: what tests and embedders start from.
    pub fn for_core(core_url: impl Into<String>) -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            core_url: core_url.into(),
            max_body_bytes: 1024 * 1024,
            max_ws_frame_bytes: 4 * 1024 * 1024,
            ws_ping_secs: 20,
            sse_keep_alive_secs: 15,
            cors_origins: Vec::new(),
        }
    }
}
