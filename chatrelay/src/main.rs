//! `chatrelay`: parses the command line and calls the library.

use chatrelay::{admin, serve, simulate, watch, webhooks};
use chatrelay_core::{config::DatabaseConfig, webhooks::Destinations, CoreConfig};
use chatrelay_edge::EdgeConfig;
use clap::{Parser, Subcommand};

/// mimalloc: markedly cheaper than the system allocator for the many small,
/// short-lived allocations of request handling across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "chatrelay",
    version,
    about = "Use ChatGPT's web UI as an API: a durable queue, a browser-extension bridge, webhooks"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "CHATRELAY_LOG_JSON")]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the `serve` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the core and the edge in one process.
    Serve {
        #[command(flatten)]
        core: CoreConfig,
        #[command(flatten)]
        edge: EdgeConfig,
    },
    /// Manage accounts and their API keys.
    Account {
        #[command(flatten)]
        db: DatabaseConfig,
        /// Accept webhook URLs whose host is, or resolves to, a loopback,
        /// private, link-local or cloud-metadata address.
        #[arg(
            long = "allow-private-webhook-urls",
            env = "CHATRELAY_ALLOW_PRIVATE_WEBHOOK_URLS",
            global = true
        )]
        allow_private_webhook_urls: bool,
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Apply pending database migrations.
    Migrate {
        #[command(flatten)]
        db: DatabaseConfig,
    },
    /// Tools that act as the browser extension.
    Extension {
        #[command(subcommand)]
        command: ExtensionCommand,
    },
    /// Inspect webhook deliveries and send failed ones again.
    Webhook {
        #[command(flatten)]
        db: DatabaseConfig,
        #[command(subcommand)]
        command: webhooks::WebhookCommand,
    },
    /// Delete finished requests older than an age, with their webhook
    /// deliveries and the chats they leave empty (as CHATRELAY_RETENTION does).
    Prune {
        #[command(flatten)]
        db: DatabaseConfig,
        /// e.g. `30d`, `12h`.
        #[arg(long, value_name = "AGE", value_parser = chatrelay_core::retention::parse_age)]
        older_than: std::time::Duration,
    },
    /// Print the status changes of an account's requests as they happen,
    /// one JSON line per event.
    Watch(watch::WatchOptions),
    /// Print the REST API's OpenAPI 3.1 document (the one served at /api/openapi.json).
    Openapi,
}

#[derive(Subcommand)]
enum ExtensionCommand {
    /// Connect like the browser extension and answer every request.
    Simulate(simulate::SimulateOptions),
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account; prints its webhook signing secret and, on the last line, its API key.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        webhook_url: Option<String>,
    },
    /// List accounts.
    List,
    /// Set the webhook URL of an account (omit --url to clear it).
    SetWebhook {
        #[arg(long)]
        name: String,
        #[arg(long)]
        url: Option<String>,
    },
    /// Issue a new API key; older keys stop working unless --keep-existing.
    RotateKey {
        #[arg(long)]
        name: String,
        #[arg(long)]
        keep_existing: bool,
    },
    /// Replace the account's webhook signing secret.
    RotateWebhookSecret {
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    chatrelay_core::telemetry::init_logging(cli.log_json);
    match cli.command {
        Command::Serve { core, edge } => {
            let running = serve::Running::start(core, edge).await?;
            let addrs = running.addrs;
            tracing::info!(http = %addrs.http, grpc = %addrs.grpc, "chatrelay is serving");
            println!(
                "chatrelay listening: REST and WebSocket on http://{}, gRPC on {}://{}",
                addrs.http, addrs.grpc_scheme, addrs.grpc
            );
            let token = running.shutdown_token();
            tokio::spawn(async move {
                serve::shutdown_signal().await;
                tracing::info!("shutting down");
                token.cancel();
            });
            running.wait().await
        }
        Command::Migrate { db } => admin::migrate(&db).await,
        Command::Prune { db, older_than } => admin::prune(&db, older_than).await,
        Command::Openapi => {
            println!("{}", chatrelay_edge::rest::openapi::document_json());
            Ok(())
        }
        Command::Webhook { db, command } => webhooks::run(&db, command).await,
        Command::Watch(options) => {
            tokio::select! {
                watched = watch::run(options, std::io::stdout()) => watched,
                _ = serve::shutdown_signal() => Ok(()),
            }
        }
        Command::Extension {
            command: ExtensionCommand::Simulate(options),
        } => {
            let shutdown = tokio_util::sync::CancellationToken::new();
            let token = shutdown.clone();
            tokio::spawn(async move {
                serve::shutdown_signal().await;
                token.cancel();
            });
            let stats = simulate::run(options, shutdown).await?;
            println!(
                "answered {} requests ({} with an error frame); {} error frames received",
                stats.answered, stats.failed, stats.errors_received
            );
            Ok(())
        }
        Command::Account {
            db,
            allow_private_webhook_urls,
            command,
        } => {
            let destinations = Destinations::new(allow_private_webhook_urls);
            account(db, destinations, command).await
        }
    }
}

async fn account(
    db: DatabaseConfig,
    destinations: Destinations,
    command: AccountCommand,
) -> anyhow::Result<()> {
    match command {
        AccountCommand::Create { name, webhook_url } => {
            admin::account_create(&db, &name, webhook_url.as_deref(), destinations).await
        }
        AccountCommand::List => admin::account_list(&db).await,
        AccountCommand::SetWebhook { name, url } => {
            admin::account_set_webhook(&db, &name, url.as_deref(), destinations).await
        }
        AccountCommand::RotateKey {
            name,
            keep_existing,
        } => admin::account_rotate_key(&db, &name, keep_existing).await,
        AccountCommand::RotateWebhookSecret { name } => {
            admin::account_rotate_webhook_secret(&db, &name).await
        }
    }
}
