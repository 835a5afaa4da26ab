//! One lease index, not three. Every lease lookup names a session or asks
//! for every leased request: a session's give-back (`lease_session = $1`),
//! a renewal (`lease_session IN (...)` on this core), the reaper and the
//! start-up release (`lease_session IS NOT NULL`, then the expiry read from
//! the row, as many as are in flight). `message_requests_lease_session`
//! answers all of them. The indexes on `lease_node` and `lease_expires_at`
//! were read by none, yet each lease set and cleared both (four index
//! entries per lifecycle), and each renewal rewrote the expiry's entry —
//! which on PostgreSQL also kept a renewal from ever being a HOT update.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The indexes dropped: their names and columns.
const DROPPED: [(&str, &str); 2] = [
    ("message_requests_lease_node", "lease_node"),
    ("message_requests_lease_expires_at", "lease_expires_at"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // The same SQL on SQLite and PostgreSQL.
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in DROPPED {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, column) in DROPPED {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON message_requests ({column}) \
                 WHERE lease_session IS NOT NULL"
            ))
            .await?;
        }
        Ok(())
    }
}
