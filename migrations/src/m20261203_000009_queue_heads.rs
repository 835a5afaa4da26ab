//! A claim reads only the requests that may be their chat's turn. A request
//! stored while an older request of its chat was open is marked
//! `queued_behind`; the mark is cleared on the chat's oldest idle request
//! when one of the chat's requests finishes (see `core-server`'s
//! `store::heads`). The claim's index holds idle, unleased requests that are
//! not behind, so a chat with a thousand queued requests costs a claim one
//! entry, not a thousand.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "message_requests_claimable";
const IN_FLIGHT: &str = "message_requests_in_flight";
/// PostgreSQL's only: the queued requests marked behind, for the sweep
/// that clears a mark two transactions left behind each other's back.
const BEHIND: &str = "message_requests_behind";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // The column, its backfill and the claim's index are the same SQL on
    // SQLite and PostgreSQL; two indexes are PostgreSQL's only.
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "ALTER TABLE message_requests \
             ADD COLUMN queued_behind BOOLEAN NOT NULL DEFAULT FALSE",
        )
        .await?;
        // Requests queued before this migration: behind if an older
        // request of their chat is open.
        db.execute_unprepared(
            "UPDATE message_requests SET queued_behind = TRUE \
             WHERE status IN ('idle', 'executing') \
               AND EXISTS (SELECT 1 FROM message_requests o \
                           WHERE o.chat_id = message_requests.chat_id \
                             AND o.status IN ('idle', 'executing') \
                             AND o.id < message_requests.id)",
        )
        .await?;
        // Keyed as the status index is, so that PostgreSQL's planner, given
        // the same conditions on both, takes the one with nothing to filter.
        db.execute_unprepared(&format!(
            "CREATE INDEX {INDEX} ON message_requests (account_id, status, id) \
             WHERE status = 'idle' AND lease_session IS NULL AND NOT queued_behind"
        ))
        .await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            // The claim's "nothing of the chat in flight" check, by chat:
            // PostgreSQL's planner would read it from the status and lease
            // indexes, every request in flight of every chat, once per
            // request the claim looks at. (SQLite reads the chat's open
            // requests by the chat's status index, and is spared the
            // index's upkeep on every lease.)
            db.execute_unprepared(&format!(
                "CREATE INDEX {IN_FLIGHT} ON message_requests (chat_id) \
                 WHERE status = 'executing' OR lease_session IS NOT NULL"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "CREATE INDEX {BEHIND} ON message_requests (chat_id) \
                 WHERE queued_behind AND status = 'idle'"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for index in [INDEX, IN_FLIGHT, BEHIND] {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
                .await?;
        }
        db.execute_unprepared("ALTER TABLE message_requests DROP COLUMN queued_behind")
            .await?;
        Ok(())
    }
}
