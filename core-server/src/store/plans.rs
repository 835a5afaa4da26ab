//! SQL fragments that keep PostgreSQL's plans sound whatever its statistics
//! say. A prepared statement's plan may be made while a table is nearly
//! empty and then kept (see `postgres::statistics`); a join it chose then
//! could read a whole table for each row it wrote. These fragments give it
//! only the plans that look rows up by key. SQLite, which plans the same
//! statements by their indexes, gets nothing.

use sea_orm::DatabaseBackend;

/// Ends a correlated `EXISTS` subquery so that PostgreSQL runs it for each
/// row, through the index its correlation names: `OFFSET 0` keeps the
/// planner from turning it into a join.
pub(crate) fn per_row(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => " OFFSET 0",
        _ => "",
    }
}
