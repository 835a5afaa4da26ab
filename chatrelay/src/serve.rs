//! `chatrelay serve`: the core and the edge in one process, the edge talking
//! to the core over loopback gRPC exactly as a split deployment would.

use std::net::SocketAddr;

use chatrelay_core::{Core, CoreConfig};
use chatrelay_edge::{EdgeConfig, EdgeState};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where a running chatrelay listens.
#[derive(Clone, Copy, Debug)]
pub struct Addresses {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

/// A chatrelay whose listeners are bound and whose database is ready.
pub struct Running {
    pub addrs: Addresses,
    pub core: std::sync::Arc<Core>,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
}

impl Running {
    /// Binds both listeners, connects and migrates the database, and starts serving.
    pub async fn start(
        core_config: CoreConfig,
        mut edge_config: EdgeConfig,
    ) -> anyhow::Result<Self> {
        let grpc_listener = TcpListener::bind(core_config.grpc_addr).await?;
        let http_listener = TcpListener::bind(edge_config.http_addr).await?;
        let addrs = Addresses {
            http: http_listener.local_addr()?,
            grpc: grpc_listener.local_addr()?,
        };
        let core = Core::start(core_config).await?;
        edge_config.core_url = format!("http://{}", addrs.grpc);
        let edge = EdgeState::new(edge_config)?;
        // Stopping the servers stops the core's sessions and tasks too.
        let shutdown = core.shutdown.clone();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(chatrelay_core::grpc::serve(
            core.clone(),
            grpc_listener,
            shutdown.clone(),
        ));
        tasks.spawn(chatrelay_edge::serve(edge, http_listener, shutdown.clone()));
        Ok(Self {
            addrs,
            core,
            tasks,
            shutdown,
        })
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until shut down or until a server fails.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            // One server ending (even cleanly) ends the process: stop the other.
            self.shutdown.cancel();
            if let Err(e) = joined? {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        self.core.stop().await;
        result
    }

    /// Stops both servers and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
