//! `edge-gateway`: the REST/WebSocket half of a split deployment.

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "edge-gateway",
    version,
    about = "chatrelay edge: REST and WebSocket in front of the core"
)]
struct Cli {
    #[command(flatten)]
    edge: chatrelay_edge::EdgeConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let listener = tokio::net::TcpListener::bind(cli.edge.http_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, core = %cli.edge.core_url, "edge listening");
    let state = chatrelay_edge::EdgeState::new(cli.edge)?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        signal.cancel();
    });
    chatrelay_edge::serve(state, listener, shutdown).await
}
