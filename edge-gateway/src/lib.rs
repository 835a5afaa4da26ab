//! chatrelay's edge: stateless translation between the outside world and the
//! core. REST JSON ⇄ gRPC unary calls, WebSocket frames ⇄ the
//! `ExtensionSession` stream, gRPC status ⇄ HTTP status. It holds no rule and
//! no database handle, so any number of edges can front any number of cores.

pub mod config;
pub mod error;
pub mod health;
pub mod observe;
pub mod rest;
pub mod ws;

use std::sync::Arc;

use chatrelay_proto::v1::{
    chat_service_client::ChatServiceClient, extension_service_client::ExtensionServiceClient,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

pub use config::EdgeConfig;
pub use error::ApiError;

/// What every handler shares: the gRPC clients of the core.
#[derive(Clone)]
pub struct EdgeState {
    pub chat: ChatServiceClient<Channel>,
    pub extension: ExtensionServiceClient<Channel>,
    pub health: tonic_health::pb::health_client::HealthClient<Channel>,
    pub config: Arc<EdgeConfig>,
    /// The WebSocket bridges, which outlive the HTTP server's graceful stop
    /// (they end when the core ends their sessions): shutdown waits on them
    /// so every extension gets its close frame.
    pub bridges: tokio_util::task::TaskTracker,
    /// Cancelled when the edge stops: each bridge then ends its session.
    pub stopping: CancellationToken,
}

impl EdgeState {
    /// Builds the state; the channel connects lazily, so the edge starts (and
    /// answers 503) while the core is down.
    pub fn new(config: EdgeConfig) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(config.core_url.clone())?
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            chat: ChatServiceClient::new(channel.clone()),
            extension: ExtensionServiceClient::new(channel.clone()),
            health: tonic_health::pb::health_client::HealthClient::new(channel),
            config: Arc::new(config),
            bridges: tokio_util::task::TaskTracker::new(),
            stopping: CancellationToken::new(),
        })
    }
}

/// The edge's HTTP application.
pub fn app(state: EdgeState) -> axum::Router {
    let cors = cors(&state.config.cors_origins);
    let metrics = axum::Router::new()
        .route("/metrics", axum::routing::get(observe::metrics_text))
        .with_state(observe::prometheus());
    let app = rest::router(state.clone())
        .merge(ws::router(state.clone()))
        .merge(health::router(state))
        .merge(rest::openapi::router())
        .merge(metrics);
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    observe::layers(app)
}

/// CORS for the configured origins; none configured, no CORS headers at all.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};

    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                HeaderName::from_static("x-api-key"),
                observe::REQUEST_ID,
            ])
            .expose_headers([
                observe::REQUEST_ID,
                HeaderName::from_static("x-next-cursor"),
                header::RETRY_AFTER,
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// Serves the edge on `listener` until `shutdown` is cancelled.
pub async fn serve(
    state: EdgeState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (bridges, stopping) = (state.bridges.clone(), state.stopping.clone());
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            stopping.cancel();
        })
        .await?;
    // Upgraded sockets outlive the HTTP server: wait until every bridge has
    // ended its session and sent its close frame.
    bridges.close();
    if tokio::time::timeout(BRIDGES_GRACE, bridges.wait())
        .await
        .is_err()
    {
        tracing::warn!("WebSocket bridges still open after the grace period");
    }
    Ok(())
}

/// How long a stopping edge waits for its WebSocket bridges.
const BRIDGES_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
