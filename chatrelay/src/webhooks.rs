//! `chatrelay webhook …`: operators look at webhook deliveries and send a
//! failed one again. The rules live in `chatrelay_core::webhooks`.

use chatrelay_core::{
    accounts,
    config::DatabaseConfig,
    model::AccountId,
    store::{entities::webhook_attempt, Store},
    webhooks::{self, DeliveryView},
};
use chrono::{DateTime, SecondsFormat, Utc};

#[derive(clap::Subcommand)]
pub enum WebhookCommand {
    /// Show recent webhook deliveries, newest first, with every attempt.
    List {
        /// Only this account's deliveries.
        #[arg(long)]
        account: Option<String>,
        /// How many deliveries to show (at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// Send a delivery again (usually a failed one): it becomes pending, due
    /// now, with a fresh retry schedule. A running server picks it up within
    /// a second.
    Retry {
        /// The delivery's id (its `webhook-id`).
        id: uuid::Uuid,
    },
}

pub async fn run(config: &DatabaseConfig, command: WebhookCommand) -> anyhow::Result<()> {
    let db = Store::connect(config).await?;
    let result = match command {
        WebhookCommand::List { account, limit } => list(&db, account.as_deref(), limit).await,
        WebhookCommand::Retry { id } => retry(&db, id).await,
    };
    db.close().await;
    result
}

async fn list(db: &Store, account: Option<&str>, limit: u64) -> anyhow::Result<()> {
    let account = match account {
        Some(name) => Some(AccountId(accounts::find_by_name(db, name).await?.id)),
        None => None,
    };
    let deliveries = webhooks::list(db, account, None, limit.clamp(1, webhooks::MAX_LIST)).await?;
    if deliveries.is_empty() {
        println!("no webhook deliveries");
    }
    for view in &deliveries {
        print_delivery(view);
    }
    Ok(())
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn print_delivery(view: &DeliveryView) {
    let d = &view.delivery;
    let next = match DateTime::<Utc>::from_timestamp_millis(d.next_attempt_at) {
        Some(at) if d.status.as_str() == "pending" => format!(" next attempt {}", timestamp(at)),
        _ => String::new(),
    };
    println!(
        "{}  {:<9}  account {:?}  request {}  created {}  {} attempt(s){}",
        d.id,
        d.status.as_str(),
        view.account_name,
        d.request_id,
        timestamp(d.created_at),
        d.attempts,
        next
    );
    println!("    {}", d.url);
    let mut recorded = view.attempts.iter().peekable();
    for number in 1..=d.attempts {
        match recorded.next_if(|a| a.attempt == number) {
            Some(attempt) => println!("    #{number} {}", describe(attempt)),
            None if d.claimed_by.is_some() && number == d.attempts => {
                println!("    #{number} in flight")
            }
            None => {
                println!("    #{number} no outcome recorded (the sending core stopped mid-attempt)")
            }
        }
        // A lapsed claim's late report shares its number with the retry.
        while let Some(attempt) = recorded.next_if(|a| a.attempt == number) {
            println!("    #{number} {}", describe(attempt));
        }
    }
}

fn describe(attempt: &webhook_attempt::Model) -> String {
    let result = match (&attempt.error, attempt.status_code) {
        (None, Some(code)) => format!("HTTP {code} ok"),
        (Some(error), _) => error.clone(),
        (None, None) => "ok".into(),
    };
    format!(
        "{}  {result}  ({} ms)",
        timestamp(attempt.attempted_at),
        attempt.duration_ms
    )
}

async fn retry(db: &Store, id: uuid::Uuid) -> anyhow::Result<()> {
    let view = webhooks::retry(db, None, id)
        .await
        .map_err(|e| anyhow::anyhow!("webhook delivery {id}: {e}"))?;
    println!(
        "webhook delivery {} is pending again; it will be sent now (same webhook-id)",
        view.delivery.id
    );
    Ok(())
}
