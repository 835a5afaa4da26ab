//! The gRPC listener's socket: bound with its TLS identity loaded (a bad
//! certificate stops the start, not the first call), TCP keepalive on every
//! accepted connection, and at most `--grpc-max-connections` connections
//! open at once (past the cap, connections wait in the kernel's accept queue
//! until one closes).

use std::{io, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use chatrelay_net::Capped;
use futures::{Stream, StreamExt};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tonic::transport::{server::TcpIncoming, Identity, ServerTlsConfig};

use crate::config::{CoreConfig, GrpcListenerConfig};

/// A bound gRPC listener, ready for [`super::serve`].
pub struct GrpcListener {
    pub(super) tcp: TcpListener,
    pub(super) tls: Option<ServerTlsConfig>,
    pub(super) config: GrpcListenerConfig,
}

impl GrpcListener {
    /// Binds `config.grpc_addr` and loads the TLS identity, if configured.
    pub async fn bind(config: &CoreConfig) -> anyhow::Result<Self> {
        let settings = config.grpc_listener.clone();
        let tls = match (&settings.grpc_tls_cert, &settings.grpc_tls_key) {
            (Some(cert), Some(key)) => {
                let cert = std::fs::read(cert)
                    .with_context(|| format!("reading the gRPC TLS certificate {cert:?}"))?;
                let key = std::fs::read(key)
                    .with_context(|| format!("reading the gRPC TLS key {key:?}"))?;
                Some(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            }
            _ => None,
        };
        let tcp = TcpListener::bind(config.grpc_addr).await?;
        Ok(Self {
            tcp,
            tls,
            config: settings,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// `http` or `https`, as clients must address this listener.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Accepted connections, each holding one of the cap's permits until it
    /// closes.
    pub(super) fn incoming(
        tcp: TcpListener,
        config: &GrpcListenerConfig,
    ) -> impl Stream<Item = io::Result<Capped<TcpStream>>> + Send + 'static {
        let incoming = TcpIncoming::from(tcp)
            .with_nodelay(Some(true))
            .with_keepalive(Some(config.keepalive()))
            .with_keepalive_interval(Some(config.keepalive()));
        let permits = Arc::new(Semaphore::new(config.grpc_max_connections as usize));
        futures::stream::unfold((incoming, permits), |(mut incoming, permits)| async move {
            let permit = permits.clone().acquire_owned().await.ok()?;
            let accepted = incoming.next().await?;
            let item = accepted.map(|io| Capped::new(io, Some(permit)));
            Some((item, (incoming, permits)))
        })
    }
}
