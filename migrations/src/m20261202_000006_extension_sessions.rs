//! Extension sessions, as every core sharing the database sees them: one
//! row per open session, inserted when it opens and deleted when it ends.
//! The core holding the session refreshes `seen_at` for all of its sessions
//! on its lease-renewal beat, so the rows of a core that died stop being
//! listed once the lease lifetime passes (and are swept later).
//!
//! `seen_at` has no index on purpose: every renewal beat rewrites it for
//! each of a core's sessions, and an index on it would turn each of those
//! small in-place updates into an index write too.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ExtensionSessions {
    Table,
    Id,
    AccountId,
    Node,
    ConnectedAt,
    SeenAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ExtensionSessions::Table)
                    .col(
                        ColumnDef::new(ExtensionSessions::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ExtensionSessions::AccountId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ExtensionSessions::Node).uuid().not_null())
                    .col(
                        ColumnDef::new(ExtensionSessions::ConnectedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // Milliseconds since the epoch, like the lease expiries.
                    .col(
                        ColumnDef::new(ExtensionSessions::SeenAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ExtensionSessions::Table, ExtensionSessions::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Listing an account's sessions, oldest first; refreshing a core's.
        for (name, cols) in [
            (
                "extension_sessions_account_connected_at",
                vec![ExtensionSessions::AccountId, ExtensionSessions::ConnectedAt],
            ),
            ("extension_sessions_node", vec![ExtensionSessions::Node]),
        ] {
            let mut index = Index::create();
            index.name(name).table(ExtensionSessions::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ExtensionSessions::Table).to_owned())
            .await
    }
}
