//! `core-server`: the core half of a split deployment.

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "core-server",
    version,
    about = "chatrelay core: state, rules and gRPC API"
)]
struct Cli {
    #[command(flatten)]
    core: chatrelay_core::CoreConfig,
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
    let listener = tokio::net::TcpListener::bind(cli.core.grpc_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "core gRPC listening");
    let core = chatrelay_core::Core::start(cli.core).await?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        signal.cancel();
    });
    chatrelay_core::grpc::serve(core, listener, shutdown).await
}
