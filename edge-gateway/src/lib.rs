//! chatrelay's edge: stateless translation between the outside world and the
//! core. REST JSON ⇄ gRPC unary calls, WebSocket frames ⇄ the
//! `ExtensionSession` stream, gRPC status ⇄ HTTP status. It holds no rule and
//! no database handle, so any number of edges can front any number of cores.

pub mod config;
pub mod console;
pub mod error;
pub mod health;
pub mod listener;
pub mod observe;
pub mod rest;
pub mod ws;

use std::{pin::Pin, sync::Arc};

use chatrelay_proto::v1::{
    self as pb, chat_service_client::ChatServiceClient, chat_service_server::ChatService,
    extension_service_client::ExtensionServiceClient,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tower::{util::BoxCloneSyncService, ServiceExt};

pub use config::EdgeConfig;
pub use error::ApiError;

/// How the edge reaches the core's gRPC API: a channel over the network, or,
/// in `chatrelay serve`, the core's service stack in the same process.
pub type CoreChannel = BoxCloneSyncService<
    axum::http::Request<tonic::body::Body>,
    axum::http::Response<tonic::body::Body>,
    tonic::transport::Error,
>;

/// The core's chat service itself, where the core runs in this process
/// (`chatrelay serve`): a call hands it the `tonic::Request` as a value,
/// without the protobuf encoding, the HTTP request and the bodies of the
/// in-process gRPC stack. Its answers and errors are the gRPC call's.
pub type LocalChat = Arc<
    dyn ChatService<
        WatchRequestsStream = Pin<
            Box<dyn futures::Stream<Item = Result<pb::RequestEvent, tonic::Status>> + Send>,
        >,
    >,
>;

/// An extension's frames on their way to the core.
pub type ExtensionFrames = Pin<Box<dyn futures::Stream<Item = pb::ExtensionFrame> + Send>>;

/// The core's frames for an extension; the stream ends with the session, or
/// with the status that ended it.
pub type ServerFrames =
    Pin<Box<dyn futures::Stream<Item = Result<pb::ServerFrame, tonic::Status>> + Send>>;

/// Opens an extension session on the core in this process: the request
/// carries the `ExtensionSession` call's metadata and the extension's frames
/// as values. It answers as the gRPC call does.
pub type LocalSessions = Arc<
    dyn Fn(
            tonic::Request<ExtensionFrames>,
        ) -> futures::future::BoxFuture<'static, Result<ServerFrames, tonic::Status>>
        + Send
        + Sync,
>;

/// The core in this process (`chatrelay serve`), called without the gRPC
/// stack where that stack cost the most: a submit, the GET of a request and
/// the frames of every extension session. The stack cost a GET about a
/// fifth of its CPU and a submit about a third, and an idle session a
/// quarter of its memory (`bench/results/sqlite-get-2026-12-03-night.md`,
/// `bench/results/in-process-calls-2026-12-04.md`).
#[derive(Clone)]
pub struct LocalCore {
    pub chat: LocalChat,
    pub sessions: LocalSessions,
}

/// What every handler shares: the gRPC clients of the core. Cloned for
/// every call, so it is one reference-counted pointer.
#[derive(Clone)]
pub struct EdgeState(Arc<Shared>);

impl std::ops::Deref for EdgeState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The largest gRPC message the edge takes from or sends to the core: the
/// core's own limit (a page of requests is cut well below it).
pub const MAX_GRPC_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// The fields of [`EdgeState`].
pub struct Shared {
    pub chat: ChatServiceClient<CoreChannel>,
    /// In `chatrelay serve`, the core itself, for the calls that skip the
    /// gRPC stack.
    pub local: Option<LocalCore>,
    pub extension: ExtensionServiceClient<CoreChannel>,
    pub health: tonic_health::pb::health_client::HealthClient<CoreChannel>,
    pub config: Arc<EdgeConfig>,
    /// The WebSocket bridges, which outlive the HTTP server's graceful stop
    /// (they end when the core ends their sessions): shutdown waits on them
    /// so every extension gets its close frame.
    pub bridges: tokio_util::task::TaskTracker,
    /// Cancelled when the edge stops: each bridge then ends its session.
    pub stopping: CancellationToken,
}

impl EdgeState {
    /// Builds the state for a core at `config.core_url`; the channel connects lazily, so the edge starts (and
    /// answers 503) while the core is down. The connection is pinged while
    /// idle too, so a core host that vanished without closing is noticed
    /// within two keepalive periods (the WebSocket sessions bridged over it
    /// then end) and the next call connects anew. An `https://` URL speaks
    /// TLS, trusting `config.core_ca_cert` or else the public web roots.
    pub fn new(config: EdgeConfig) -> anyhow::Result<Self> {
        let keepalive = config.core_keepalive();
        let mut endpoint = Endpoint::from_shared(config.core_url.clone())?
            .tcp_nodelay(true)
            .tcp_keepalive(Some(keepalive))
            .http2_keep_alive_interval(keepalive)
            .keep_alive_timeout(keepalive)
            .keep_alive_while_idle(true);
        if config.core_url.starts_with("https://") {
            let tls = match &config.core_ca_cert {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        anyhow::anyhow!("reading the core's CA certificate {path:?}: {e}")
                    })?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_webpki_roots(),
            };
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint.connect_lazy();
        Ok(Self::with_core(
            config,
            BoxCloneSyncService::new(channel),
            None,
        ))
    }

    /// The state for an edge that calls the core in this process: through
    /// `core`, its gRPC service stack (`config.core_url` is not used), and
    /// for the hottest calls through `local`, the core itself. Such a call
    /// cannot fail to reach the core, hence the infallible service.
    pub fn in_process<S>(config: EdgeConfig, core: S, local: LocalCore) -> Self
    where
        S: tower::Service<
                axum::http::Request<tonic::body::Body>,
                Response = axum::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let core = core.map_err(|never| match never {});
        Self::with_core(config, BoxCloneSyncService::new(core), Some(local))
    }

    fn with_core(config: EdgeConfig, core: CoreChannel, local: Option<LocalCore>) -> Self {
        Self(Arc::new(Shared {
            chat: ChatServiceClient::new(core.clone())
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
            local,
            extension: ExtensionServiceClient::new(core.clone())
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
            health: tonic_health::pb::health_client::HealthClient::new(core),
            config: Arc::new(config),
            bridges: tokio_util::task::TaskTracker::new(),
            stopping: CancellationToken::new(),
        }))
    }
}

/// The edge's HTTP application.
pub fn app(state: EdgeState) -> axum::Router {
    let cors = cors(&state.config.cors_origins);
    let timeout = state.config.http_request_timeout();
    let docs = !state.config.no_docs;
    let metrics = observe::metrics_router(state.config.metrics_token.clone());
    let app = rest::router(state.clone())
        .merge(ws::router(state.clone()))
        .merge(health::router(state))
        .merge(rest::openapi::router(docs))
        .merge(console::router())
        .merge(metrics);
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    observe::layers(app.layer(axum::middleware::from_fn(move |request, next| {
        observe::time_limit(timeout, request, next)
    })))
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
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("idempotency-key"),
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
    let listener = listener::CappedListener::new(listener, state.config.http_max_connections);
    // Served as a `Router`, axum would clone the route table with every
    // layer of every route for each connection (~44 KiB each); made into a
    // service once, a connection shares it.
    let app = app(state).with_state(()).into_make_service();
    axum::serve(listener, app)
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
