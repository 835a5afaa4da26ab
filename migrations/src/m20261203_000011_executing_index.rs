//! On SQLite the status index holds executing requests only. The index on
//! `status` was read by one statement there: the queue-depth gauge's count
//! of executing requests every few seconds (a sole writer keeps the number
//! of open requests itself, see `core-server`'s `queue_depth`). Yet every
//! submit put an idle entry in it, and every answer a done or failed one,
//! each costing its write cycle a page of WAL. PostgreSQL keeps the index
//! whole: its cores count idle requests from it too.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const STATUS: &str = "message_requests_status";
const EXECUTING: &str = "message_requests_executing";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "CREATE INDEX IF NOT EXISTS {EXECUTING} ON message_requests (status) \
             WHERE status = 'executing'"
        ))
        .await?;
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {STATUS}"))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "CREATE INDEX IF NOT EXISTS {STATUS} ON message_requests (status)"
        ))
        .await?;
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {EXECUTING}"))
            .await?;
        Ok(())
    }
}
