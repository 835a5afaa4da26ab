//! The chats' unique index holds named chats only. Every submit without a
//! `chat_id` creates a chat that the extension names later; its `NULL`
//! ChatGPT id put an entry in `chats_account_chatgpt_id` that no lookup
//! reads (every lookup names an id, and `NULL`s never collide), and on
//! SQLite each such entry costs every write cycle a page of WAL. The index
//! is now partial, with the same rule: one chat per account and ChatGPT id.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "chats_account_chatgpt_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // The same SQL on SQLite and PostgreSQL.
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {INDEX}"))
            .await?;
        db.execute_unprepared(&format!(
            "CREATE UNIQUE INDEX {INDEX} ON chats (account_id, chatgpt_id) \
             WHERE chatgpt_id IS NOT NULL"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {INDEX}"))
            .await?;
        db.execute_unprepared(&format!(
            "CREATE UNIQUE INDEX {INDEX} ON chats (account_id, chatgpt_id)"
        ))
        .await?;
        Ok(())
    }
}
