//! `chatrelay-bench`: parses the command line and calls the library.

use std::net::SocketAddr;

use chatrelay_bench::{reference, suite};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chatrelay-bench",
    about = "Benchmarks a release chatrelay against a bare axum handler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole suite and print the table (what `bash bench/run` does).
    Run(suite::RunOptions),
    /// The references: a bare axum handler that parses and returns the
    /// submit JSON body, and with --database-url one that reads a request as
    /// chatrelay's GET does, with plain sqlx. The suite starts it as a
    /// process of its own.
    ReferenceServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// A PostgreSQL database with chatrelay's tables.
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(options) => suite::run(options).await,
        Command::ReferenceServer { addr, database_url } => {
            reference::serve(addr, database_url.as_deref()).await
        }
    }
}
