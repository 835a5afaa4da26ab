//! The webhook claim's indexes (`store::outbox::claim_sql`): each account's
//! pending deliveries in due order, so a claim steps from account to
//! account and reads only the first due deliveries of each; and the
//! deliveries claimed right now, so an account's attempts in flight are
//! counted without reading its backlog. Without them a claim ranked every
//! pending delivery, once per delivery sent. Both are partial: a delivery
//! that succeeded or failed leaves them, and the earliest due time is still
//! read from `webhook_deliveries_status_due`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each index: its name and what follows `ON` (the same SQL on SQLite and
/// PostgreSQL).
const INDEXES: [(&str, &str); 2] = [
    (
        "webhook_deliveries_pending_by_account",
        "webhook_deliveries (account_id, next_attempt_at, id) WHERE status = 'pending'",
    ),
    (
        "webhook_deliveries_claimed",
        "webhook_deliveries (account_id, next_attempt_at) WHERE claimed_by IS NOT NULL",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, on) in INDEXES {
            db.execute_unprepared(&format!("CREATE INDEX IF NOT EXISTS {name} ON {on}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }
}
