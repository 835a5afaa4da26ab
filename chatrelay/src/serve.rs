//! `chatrelay serve`: the core and the edge in one process. The edge calls the
//! core's gRPC services in-process (the same service stack the listener
//! serves, without the loopback socket), and for a submit, the GET of a
//! request and the frames of extension sessions it calls the core itself;
//! the core's gRPC listener serves everyone else.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use chatrelay_core::{
    grpc::{ChatApi, ExtensionApi, GrpcListener},
    Core, CoreConfig,
};
use chatrelay_edge::{EdgeConfig, EdgeState, LocalCore};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Where a running chatrelay listens.
#[derive(Clone, Copy, Debug)]
pub struct Addresses {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// `https` when the gRPC listener serves TLS.
    pub grpc_scheme: &'static str,
}

/// `core` as the edge calls it without the gRPC stack: its chat service,
/// and its extension sessions, whose frames pass as values.
pub fn local_core(core: &Arc<Core>) -> LocalCore {
    let extensions = ExtensionApi::new(core.clone());
    LocalCore {
        chat: Arc::new(ChatApi::new(core.clone())),
        sessions: Arc::new(move |request| {
            let extensions = extensions.clone();
            Box::pin(async move {
                let (metadata, _, frames) = request.into_parts();
                extensions.open(&metadata, frames).await
            })
        }),
    }
}

/// A chatrelay whose listeners are bound and whose database is ready.
pub struct Running {
    pub addrs: Addresses,
    pub core: Arc<Core>,
    edge: JoinHandle<anyhow::Result<()>>,
    grpc: JoinHandle<anyhow::Result<()>>,
    /// Asks the whole process to stop.
    shutdown: CancellationToken,
    edge_stop: CancellationToken,
}

/// How long each shutdown phase may take before it is cut short.
pub const SHUTDOWN_PHASE: Duration = Duration::from_secs(10);

impl Running {
    /// Binds both listeners, connects and migrates the database, and starts serving.
    pub async fn start(
        core_config: CoreConfig,
        mut edge_config: EdgeConfig,
    ) -> anyhow::Result<Self> {
        let grpc_listener = GrpcListener::bind(&core_config).await?;
        let http_listener = TcpListener::bind(edge_config.http_addr).await?;
        let addrs = Addresses {
            http: http_listener.local_addr()?,
            grpc: grpc_listener.local_addr()?,
            grpc_scheme: grpc_listener.scheme(),
        };
        let core = Core::start(core_config).await?;
        let routes = chatrelay_core::grpc::routes(&core).await?;
        edge_config.core_url = format!("{}://{}", addrs.grpc_scheme, addrs.grpc);
        let edge = EdgeState::in_process(
            edge_config,
            chatrelay_core::grpc::in_process(routes.clone()),
            local_core(&core),
        );
        let edge_stop = CancellationToken::new();
        let grpc = tokio::spawn(chatrelay_core::grpc::serve(
            routes,
            grpc_listener,
            core.shutdown_token(),
        ));
        let edge = tokio::spawn(chatrelay_edge::serve(
            edge,
            http_listener,
            edge_stop.clone(),
        ));
        Ok(Self {
            addrs,
            core,
            edge,
            grpc,
            shutdown: CancellationToken::new(),
            edge_stop,
        })
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until asked to stop (or until a server fails), then stops in
    /// order: the edge stops accepting and finishes its REST calls while the
    /// core still serves them; then the core ends the extension sessions
    /// (their requests go back to the queue, their sockets get a close
    /// frame), stores queued submissions and lets its tasks finish.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        let mut edge_done = false;
        let mut grpc_done = false;
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            joined = &mut self.edge => { edge_done = true; result = flatten(joined); }
            joined = &mut self.grpc => { grpc_done = true; result = flatten(joined); }
        }
        self.edge_stop.cancel();
        if !edge_done {
            match tokio::time::timeout(SHUTDOWN_PHASE, &mut self.edge).await {
                Ok(joined) => result = result.and(flatten(joined)),
                Err(_) => {
                    tracing::warn!(
                        "REST calls still running after the grace period; cutting them off"
                    );
                    self.edge.abort();
                }
            }
        }
        self.core.shutdown_token().cancel();
        if !grpc_done {
            match tokio::time::timeout(SHUTDOWN_PHASE, &mut self.grpc).await {
                Ok(joined) => result = result.and(flatten(joined)),
                Err(_) => self.grpc.abort(),
            }
        }
        if tokio::time::timeout(SHUTDOWN_PHASE, self.core.stop())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running after the grace period");
        }

        result
    }

    /// Stops both servers and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

fn flatten(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    joined.map_err(anyhow::Error::from).and_then(|r| r)
}

pub use chatrelay_core::telemetry::shutdown_signal;
