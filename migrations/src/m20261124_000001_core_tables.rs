//! Accounts, their hashed API keys, chats and message requests.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Name,
    WebhookUrl,
    WebhookSecret,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    AccountId,
    KeyHash,
    KeyPrefix,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Chats {
    Table,
    Id,
    AccountId,
    ChatgptId,
    Title,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MessageRequests {
    Table,
    Id,
    AccountId,
    ChatId,
    Message,
    ResponseType,
    ThinkingTime,
    Status,
    Response,
    ErrorMessage,
    QueuedAt,
    StartedAt,
    CompletedAt,
    Attempts,
    LeaseSession,
    LeaseNode,
    LeaseExpiresAt,
}

fn big_pk<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn timestamp<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(big_pk(Accounts::Id))
                    .col(
                        ColumnDef::new(Accounts::Name)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Accounts::WebhookUrl).text().null())
                    .col(ColumnDef::new(Accounts::WebhookSecret).string().not_null())
                    .col(timestamp(Accounts::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(big_pk(ApiKeys::Id))
                    .col(ColumnDef::new(ApiKeys::AccountId).big_integer().not_null())
                    .col(
                        ColumnDef::new(ApiKeys::KeyHash)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::KeyPrefix).string().not_null())
                    .col(timestamp(ApiKeys::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_keys_account")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::AccountId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Chats::Table)
                    .col(big_pk(Chats::Id))
                    .col(ColumnDef::new(Chats::AccountId).big_integer().not_null())
                    .col(ColumnDef::new(Chats::ChatgptId).string().null())
                    .col(ColumnDef::new(Chats::Title).text().null())
                    .col(timestamp(Chats::CreatedAt))
                    .col(timestamp(Chats::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Chats::Table, Chats::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One chat per ChatGPT id and account; NULL ids (chats the extension
        // has not named yet) are distinct in both SQLite and PostgreSQL.
        manager
            .create_index(
                Index::create()
                    .name("chats_account_chatgpt_id")
                    .table(Chats::Table)
                    .col(Chats::AccountId)
                    .col(Chats::ChatgptId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("chats_account_id")
                    .table(Chats::Table)
                    .col(Chats::AccountId)
                    .col(Chats::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MessageRequests::Table)
                    .col(
                        ColumnDef::new(MessageRequests::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(MessageRequests::AccountId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MessageRequests::ChatId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(MessageRequests::Message).text().not_null())
                    .col(
                        ColumnDef::new(MessageRequests::ResponseType)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MessageRequests::ThinkingTime)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(MessageRequests::Status).string().not_null())
                    .col(ColumnDef::new(MessageRequests::Response).text().null())
                    .col(ColumnDef::new(MessageRequests::ErrorMessage).text().null())
                    .col(timestamp(MessageRequests::QueuedAt))
                    .col(
                        ColumnDef::new(MessageRequests::StartedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(MessageRequests::CompletedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(MessageRequests::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(MessageRequests::LeaseSession).uuid().null())
                    .col(ColumnDef::new(MessageRequests::LeaseNode).uuid().null())
                    // Milliseconds since the epoch: compared in SQL on both back ends.
                    .col(
                        ColumnDef::new(MessageRequests::LeaseExpiresAt)
                            .big_integer()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(MessageRequests::Table, MessageRequests::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(MessageRequests::Table, MessageRequests::ChatId)
                            .to(Chats::Table, Chats::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Listing newest first (ids are UUIDv7, so id order is submit order),
        // with and without a status filter; dispatch scans idle by account.
        for (name, cols) in [
            (
                "message_requests_account_id",
                vec![MessageRequests::AccountId, MessageRequests::Id],
            ),
            (
                "message_requests_account_status_id",
                vec![
                    MessageRequests::AccountId,
                    MessageRequests::Status,
                    MessageRequests::Id,
                ],
            ),
            (
                "message_requests_chat_status_id",
                vec![
                    MessageRequests::ChatId,
                    MessageRequests::Status,
                    MessageRequests::Id,
                ],
            ),
            ("message_requests_status", vec![MessageRequests::Status]),
            (
                "message_requests_lease_session",
                vec![MessageRequests::LeaseSession],
            ),
            (
                "message_requests_lease_node",
                vec![MessageRequests::LeaseNode],
            ),
            (
                "message_requests_lease_expires_at",
                vec![MessageRequests::LeaseExpiresAt],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(MessageRequests::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MessageRequests::Table.into_iden(),
            Chats::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Accounts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
