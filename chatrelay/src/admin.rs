//! Operator commands that work on the database directly through the core's
//! library: accounts, migrations and pruning.

use chatrelay_core::{
    accounts,
    config::DatabaseConfig,
    store::Store,
    webhooks::{destination::redact, Destinations},
};

pub async fn migrate(config: &DatabaseConfig) -> anyhow::Result<()> {
    let db = Store::connect_without_migrating(config).await?;
    db.migrate().await?;
    println!("migrations applied");
    db.close().await;
    Ok(())
}

/// `chatrelay prune --older-than AGE`.
pub async fn prune(config: &DatabaseConfig, older_than: std::time::Duration) -> anyhow::Result<()> {
    let db = Store::connect(config).await?;
    let pruned = chatrelay_core::retention::prune(&db, older_than).await;
    db.close().await;
    let pruned = pruned?;
    println!(
        "deleted {} requests, {} webhook deliveries, {} webhook attempts, {} empty chats",
        pruned.requests, pruned.deliveries, pruned.attempts, pruned.chats
    );
    Ok(())
}

pub async fn account_create(
    config: &DatabaseConfig,
    name: &str,
    webhook_url: Option<&str>,
    destinations: Destinations,
) -> anyhow::Result<()> {
    let db = Store::connect(config).await?;
    let created = accounts::create(&db, name, webhook_url, destinations).await;
    db.close().await;
    let created = created?;
    let account = &created.account;
    println!("created account {:?} (id {})", account.name, account.id);
    println!(
        "webhook URL: {}",
        account.webhook_url.as_deref().unwrap_or("(none)")
    );
    println!("webhook signing secret:");
    println!("{}", account.webhook_secret);
    println!("API key (shown only now; keep it safe):");
    println!("{}", created.api_key);
    Ok(())
}

pub async fn account_list(config: &DatabaseConfig) -> anyhow::Result<()> {
    let db = Store::connect(config).await?;
    let listed = accounts::list(&db).await;
    db.close().await;
    println!("{:<6} {:<24} {:<40} keys", "id", "name", "webhook URL");
    for summary in listed? {
        let a = &summary.account;
        println!(
            "{:<6} {:<24} {:<40} {}",
            a.id,
            a.name,
            // Credentials in a URL's userinfo or query stay off the screen.
            a.webhook_url
                .as_deref()
                .map_or_else(|| "-".to_string(), redact),
            summary.key_prefixes.join(", ")
        );
    }
    Ok(())
}

pub async fn account_set_webhook(
    config: &DatabaseConfig,
    name: &str,
    webhook_url: Option<&str>,
    destinations: Destinations,
) -> anyhow::Result<()> {
    let db = Store::connect(config).await?;
    let updated = accounts::set_webhook(&db, name, webhook_url, destinations).await;
    db.close().await;
    let account = updated?;
    println!(
        "webhook URL of {:?}: {}",
        account.name,
        account.webhook_url.as_deref().unwrap_or("(none)")
    );
    Ok(())
}

pub async fn account_rotate_key(
    config: &DatabaseConfig,
    name: &str,
    keep_existing: bool,
) -> anyhow::Result<()> {
    let db = Store::connect(config).await?;
    let key = accounts::rotate_key(&db, name, keep_existing).await;
    db.close().await;
    let key = key?;
    if keep_existing {
        println!("new API key for {name:?} (older keys still work):");
    } else {
        println!("new API key for {name:?} (older keys no longer work):");
    }
    println!("{key}");
    Ok(())
}

pub async fn account_rotate_webhook_secret(
    config: &DatabaseConfig,
    name: &str,
) -> anyhow::Result<()> {
    let db = Store::connect(config).await?;
    let secret = accounts::rotate_webhook_secret(&db, name).await;
    db.close().await;
    println!("new webhook signing secret for {name:?}:");
    println!("{}", secret?);
    Ok(())
}
