//! Planner statistics for the hot tables, kept current while they grow.
//!
//! PostgreSQL plans a statement from its tables' statistics, and after a few
//! runs of a prepared statement keeps one generic plan per connection. A
//! table that grows from empty (a new database, or one that retention
//! emptied) has no statistics until autovacuum first analyzes it — up to
//! `autovacuum_naptime` (a minute) later — and the plans cached meanwhile
//! were made for a table of a few rows. The claim's then read every idle
//! request of the database for each one it leased, and finishing a batch
//! read every request: lifecycles fell from thousands per second to about
//! 200 (`bench/results/postgres-statistics-2026-12-02.md`).
//!
//! So every few seconds each core analyzes the hot tables whose rows changed
//! at least as often as the table has rows (and [`AT_LEAST`] times) since
//! their last analysis: while a table grows from empty that is each time it
//! doubles; afterwards autovacuum's own, earlier threshold rules. An analyze
//! also makes every connection plan its statements again.

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};

use crate::{error::CoreResult, Core};

/// The tables every request writes to.
const HOT: [&str; 4] = [
    "message_requests",
    "chats",
    "webhook_deliveries",
    "idempotency_keys",
];

/// Changes since the last analysis below which a table is left alone.
const AT_LEAST: i64 = 1_000;

/// How often the tables are looked at.
const EVERY: Duration = Duration::from_secs(5);

/// Starts the task.
pub(super) fn start(core: &Arc<Core>) {
    core.every(EVERY, |core| async move {
        if let Err(e) = analyze_grown(&core).await {
            tracing::warn!(error = %e, "could not bring the planner statistics up to date");
        }
    });
}

/// Analyzes the hot tables that changed at least as much as they hold since
/// their last analysis; returns their names.
pub(crate) async fn analyze_grown(core: &Core) -> CoreResult<Vec<String>> {
    let grown = core
        .store
        .write
        .query_all(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            // `reltuples` is -1 until the first analysis.
            "SELECT s.relname::text FROM pg_stat_user_tables s \
             JOIN pg_class c ON c.oid = s.relid \
             WHERE s.schemaname = current_schema() AND s.relname = ANY($1) \
               AND s.n_mod_since_analyze >= GREATEST($2, c.reltuples)",
            [HOT.map(str::to_string).to_vec().into(), AT_LEAST.into()],
        ))
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    // The statement names only tables of `HOT`, never what the query read.
    for table in HOT.iter().filter(|hot| grown.iter().any(|g| g == *hot)) {
        let txn = core.store.write.begin().await?;
        // Autovacuum (or another core) working on the table holds the lock
        // an analysis needs: leave the table to it rather than wait.
        txn.execute_unprepared("SET LOCAL lock_timeout = '1s'")
            .await?;
        txn.execute_unprepared(&format!("ANALYZE {table}")).await?;
        txn.commit().await?;
        tracing::debug!(table, "analyzed a grown table");
    }
    Ok(grown)
}
