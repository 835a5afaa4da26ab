//! The lease indexes cover leased requests only. Every request is stored
//! without a lease, so full indexes took three index entries per submit
//! (three more pages written per transaction) that no query reads: each
//! lease lookup names a session or asks for `lease_session IS NOT NULL`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each lease index: its name and column.
const LEASE_INDEXES: [(&str, &str); 3] = [
    ("message_requests_lease_session", "lease_session"),
    ("message_requests_lease_node", "lease_node"),
    ("message_requests_lease_expires_at", "lease_expires_at"),
];

/// The same SQL on SQLite and PostgreSQL.
async fn recreate(manager: &SchemaManager<'_>, condition: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for (name, column) in LEASE_INDEXES {
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
            .await?;
        db.execute_unprepared(&format!(
            "CREATE INDEX {name} ON message_requests ({column}){condition}"
        ))
        .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        recreate(manager, " WHERE lease_session IS NOT NULL").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        recreate(manager, "").await
    }
}
