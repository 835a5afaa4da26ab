//! chatrelay's edge: stateless translation between the outside world and the
//! core. REST JSON ⇄ gRPC unary calls, WebSocket frames ⇄ the
//! `ExtensionSession` stream, gRPC status ⇄ HTTP status. It holds no rule and
//! no database handle, so any number of edges can front any number of cores.

pub mod config;
pub mod error;
pub mod rest;
pub mod ws;

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
    pub config: EdgeConfig,
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
            extension: ExtensionServiceClient::new(channel),
            config,
        })
    }
}

/// The edge's HTTP application.
pub fn app(state: EdgeState) -> axum::Router {
    rest::router(state.clone()).merge(ws::router(state))
}

/// Serves the edge on `listener` until `shutdown` is cancelled.
pub async fn serve(
    state: EdgeState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
