//! The edge's HTTP listener with a connection cap: at most
//! `--http-max-connections` connections (upgraded WebSockets included) are
//! open at once; past the cap, connections wait in the kernel's accept queue
//! until one closes, instead of each costing memory and a task. Accepted
//! connections send each write at once (`TCP_NODELAY`).

use std::{io, net::SocketAddr, sync::Arc};

use chatrelay_net::Capped;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

/// A TCP listener that hands out at most `max` connections at once.
pub struct CappedListener {
    tcp: TcpListener,
    permits: Arc<Semaphore>,
}

impl CappedListener {
    pub fn new(tcp: TcpListener, max: u32) -> Self {
        Self {
            tcp,
            permits: Arc::new(Semaphore::new(max as usize)),
        }
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = Capped<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Capped<TcpStream>, SocketAddr) {
        // Never closed, so acquiring cannot fail; should it, serve uncapped
        // rather than stop serving.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let (io, addr) = axum::serve::Listener::accept(&mut self.tcp).await;
        // Without it, Nagle's algorithm holds a small write (an SSE event,
        // a WebSocket frame) until the peer acknowledges the previous one,
        // which a delayed ACK puts off for up to 40 ms. Failing to set it
        // only costs latency.
        let _ = io.set_nodelay(true);
        (Capped::new(io, permit), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_do_not_delay_small_writes() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("address");
        let mut listener = CappedListener::new(tcp, 1);
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = axum::serve::Listener::accept(&mut listener).await;
        assert!(accepted.get_ref().nodelay().expect("TCP_NODELAY"));
    }
}
