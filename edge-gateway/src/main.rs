//! `edge-gateway`: the REST/WebSocket half of a split deployment.

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// mimalloc: markedly cheaper than the system allocator for the many small,
/// short-lived allocations of request handling across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "edge-gateway",
    version,
    about = "chatrelay edge: REST and WebSocket in front of the core"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "CHATRELAY_LOG_JSON")]
    log_json: bool,

    #[command(flatten)]
    edge: chatrelay_edge::EdgeConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_json {
        true => logs.json().init(),
        false => logs.init(),
    }
    let listener = tokio::net::TcpListener::bind(cli.edge.http_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, core = %cli.edge.core_url, "edge listening");
    let state = chatrelay_edge::EdgeState::new(cli.edge)?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = terminate.recv() => {},
        }
        stop.cancel();
    });
    chatrelay_edge::serve(state, listener, shutdown).await
}
