//! chatrelay's schema, one sea-orm migration per step. The core applies the
//! pending ones at start-up; `chatrelay migrate` applies them on demand.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_core_tables;
mod m20261124_000002_webhooks;
mod m20261125_000003_partial_lease_indexes;
mod m20261201_000004_idempotency_keys;
mod m20261201_000005_retention_index;
mod m20261202_000006_extension_sessions;
mod m20261202_000007_webhook_claim_indexes;
mod m20261202_000008_one_lease_index;
mod m20261203_000009_queue_heads;
mod m20261203_000010_named_chats_index;
mod m20261203_000011_executing_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_core_tables::Migration),
            Box::new(m20261124_000002_webhooks::Migration),
            Box::new(m20261125_000003_partial_lease_indexes::Migration),
            Box::new(m20261201_000004_idempotency_keys::Migration),
            Box::new(m20261201_000005_retention_index::Migration),
            Box::new(m20261202_000006_extension_sessions::Migration),
            Box::new(m20261202_000007_webhook_claim_indexes::Migration),
            Box::new(m20261202_000008_one_lease_index::Migration),
            Box::new(m20261203_000009_queue_heads::Migration),
            Box::new(m20261203_000010_named_chats_index::Migration),
            Box::new(m20261203_000011_executing_index::Migration),
        ]
    }
}
