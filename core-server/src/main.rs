//! `core-server`: the core half of a split deployment.

use clap::Parser;

/// mimalloc: markedly cheaper than the system allocator for the many small,
/// short-lived allocations of request handling across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "core-server",
    version,
    about = "chatrelay core: state, rules and gRPC API"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "CHATRELAY_LOG_JSON")]
    log_json: bool,

    #[command(flatten)]
    core: chatrelay_core::CoreConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    chatrelay_core::telemetry::init_logging(cli.log_json);
    let listener = tokio::net::TcpListener::bind(cli.core.grpc_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "core gRPC listening");
    let core = chatrelay_core::Core::start(cli.core).await?;
    let signal = core.shutdown_token();
    tokio::spawn(async move {
        chatrelay_core::telemetry::shutdown_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    let routes = chatrelay_core::grpc::routes(&core).await?;
    let served = chatrelay_core::grpc::serve(routes, listener, core.shutdown_token()).await;
    core.stop().await;
    served
}
