//! The edge's configuration: flags and `CHATRELAY_…` variables.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

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

    /// Seconds between HTTP/2 pings (and TCP keepalive probes) on the
    /// connection to the core; a core that does not answer within as long
    /// again is taken for gone and the connection is made anew.
    #[arg(long, env = "CHATRELAY_CORE_KEEPALIVE_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub core_keepalive_secs: u64,

    /// PEM file of the certificate authority that signed the core's TLS
    /// certificate, for an `https://` core URL (without it, the public web
    /// roots are trusted).
    #[arg(long, env = "CHATRELAY_CORE_CA_CERT")]
    pub core_ca_cert: Option<PathBuf>,

    /// Longest a REST call may take, in seconds (504 past it); WebSocket
    /// sessions are not cut.
    #[arg(long, env = "CHATRELAY_HTTP_REQUEST_TIMEOUT_SECS", default_value_t = 90,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub http_request_timeout_secs: u64,

    /// Open HTTP connections (WebSockets included) at once; further
    /// connections wait to be accepted until one closes. Each idle extension
    /// holds one, so the default leaves room for tens of thousands of them
    /// beside the REST clients.
    #[arg(long, env = "CHATRELAY_HTTP_MAX_CONNECTIONS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,

    /// A bearer token `/metrics` requires (`Authorization: Bearer …`);
    /// unset, `/metrics` is open.
    #[arg(long, env = "CHATRELAY_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Do not serve the interactive API docs (`/api/docs/`); the OpenAPI
    /// document stays at `/api/openapi.json`.
    #[arg(long, env = "CHATRELAY_NO_DOCS")]
    pub no_docs: bool,
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
            core_keepalive_secs: 20,
            core_ca_cert: None,
            http_request_timeout_secs: 90,
            http_max_connections: 100_000,
            metrics_token: None,
            no_docs: false,
        }
    }

    pub fn core_keepalive(&self) -> Duration {
        Duration::from_secs(self.core_keepalive_secs)
    }

    pub fn http_request_timeout(&self) -> Duration {
        Duration::from_secs(self.http_request_timeout_secs)
    }
}
