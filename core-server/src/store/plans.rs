//! SQL fragments that keep PostgreSQL's plans sound whatever its statistics
//! say. A prepared statement's plan may be made while a table is nearly
//! empty and then kept (see `postgres::statistics`), and `json_to_recordset`
//! always looks like 100 rows to the planner. A join it chose then could
//! read a whole table for each row it wrote; these fragments give it only
//! the plans that look rows up by key. SQLite, which plans the same
//! statements by their indexes, gets nothing.

use sea_orm::{DatabaseBackend, Value};

/// Ends a correlated `EXISTS` subquery so that PostgreSQL runs it for each
/// row, through the index its correlation names: `OFFSET 0` keeps the
/// planner from turning it into a join.
pub(crate) fn per_row(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => " OFFSET 0",
        _ => "",
    }
}

/// ` AND {column} = ANY($n::{ty}[])` on PostgreSQL, with `keys` pushed as
/// parameter `$n`: the rows of a batch are then found by key, as many as
/// there are, instead of the table being read to join them to the batch.
pub(crate) fn by_keys(
    backend: DatabaseBackend,
    column: &str,
    ty: &str,
    keys: impl FnOnce() -> Value,
    params: &mut Vec<Value>,
) -> String {
    if backend != DatabaseBackend::Postgres {
        return String::new();
    }
    params.push(keys());
    format!(" AND {column} = ANY(${}::{ty}[])", params.len())
}
