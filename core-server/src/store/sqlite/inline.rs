//! The writer's statements, run on the writer's own task.
//!
//! sqlx runs an SQLite connection on a thread of its own: every statement
//! is a message to that thread and every row a message back, and on a busy
//! machine each of those hand-offs costs more than the statement (see
//! `bench/results/sqlite-live-latency-2026-12-02.md`). A write cycle runs a
//! handful of statements, so it paid a handful of hand-offs before its
//! callers heard back.
//!
//! Here the writer borrows the database handle from sqlx's connection
//! (one hand-off, and it keeps it for as many cycles as keep coming) and
//! runs each cycle's statements itself through rusqlite, with prepared
//! statements kept while it holds the handle. [`Inline`] is a sea-orm
//! connection, so the cycle is the same sea-orm code every other writer
//! runs; only the last step differs. Values are bound as sqlx binds them
//! (UUIDs as 16 bytes, times as RFC 3339 text), so rows read the same
//! whichever wrote them.
//!
//! Rows come back to sea-orm as typed values, typed by the column's declared
//! type (integers by the entities' column types, as SQLite declares `i32`
//! and `i64` keys alike). A column it cannot type is an error, and the
//! writer then writes the cycle through sqlx instead: a failure here costs
//! time, never a wrong value. Rows are read by name; a read by position
//! (a tuple) sees the columns in name order, so the cycle's only tuple
//! reads columns already in that order.

use std::{
    collections::{BTreeMap, HashSet},
    ptr::NonNull,
    sync::{LazyLock, Mutex},
};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{
    types::{Value as Sqlite, ValueRef},
    Connection,
};
use sea_orm::{
    sea_query::Value, ColumnTrait, ColumnType, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    ExecResult, IdenStatic, Iterable, ProxyExecResult, ProxyRow, QueryResult, RuntimeErr,
    Statement,
};
use uuid::Uuid;

use crate::store::entities::{
    account, api_key, chat, extension_session, idempotency_key, message_request, webhook_attempt,
    webhook_delivery,
};

/// The write connection's handle, borrowed from sqlx. Rolls back a
/// transaction left open when it is dropped, so the connection goes back to
/// sqlx as it came.
pub(super) struct Inline {
    conn: Mutex<Connection>,
}

impl Inline {
    /// Wraps the handle of a connection that sqlx has handed over.
    ///
    /// # Safety
    /// Nothing else may use `handle` until the returned value is dropped,
    /// and it must stay open until then (sqlx's `LockedSqliteHandle`, held
    /// for that long, promises both).
    pub(super) unsafe fn borrow(handle: NonNull<rusqlite::ffi::sqlite3>) -> Result<Self, DbErr> {
        let conn = Connection::from_handle(handle.as_ptr()).map_err(error)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, run: impl FnOnce(&Connection) -> Result<T, DbErr>) -> Result<T, DbErr> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| DbErr::Custom("the write connection was poisoned".into()))?;
        run(&conn)
    }

    /// Begins a transaction that writes: it takes the write lock now, so a
    /// statement cannot find it taken halfway through.
    pub(super) fn begin(&self) -> Result<(), DbErr> {
        self.with(|conn| conn.execute_batch("BEGIN IMMEDIATE").map_err(error))
    }

    pub(super) fn commit(&self) -> Result<(), DbErr> {
        self.with(|conn| conn.execute_batch("COMMIT").map_err(error))
    }

    /// A passive checkpoint, between transactions: the frames in the WAL
    /// and those copied.
    pub(super) fn checkpoint(&self) -> Result<(i64, i64), DbErr> {
        self.with(|conn| super::checkpoint::passive(conn).map_err(error))
    }

    /// Rolls back the transaction in progress, if there is one.
    pub(super) fn roll_back(&self) {
        let _ = self.with(|conn| {
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK").map_err(error)?;
            }
            Ok(())
        });
    }

    fn query(&self, statement: &Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.with(|conn| query(conn, statement))
    }
}

/// Runs `statement` and reads its rows as sea-orm's typed values.
fn query(conn: &Connection, statement: &Statement) -> Result<Vec<QueryResult>, DbErr> {
    let mut prepared = conn.prepare_cached(&statement.sql).map_err(error)?;
    bind(&mut prepared, statement)?;
    let columns: Vec<(String, Kind)> = prepared
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), Kind::of(c.name(), c.decl_type())))
        .collect();
    let mut rows = prepared.raw_query();
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(error)? {
        let mut values = BTreeMap::new();
        for (i, (name, kind)) in columns.iter().enumerate() {
            values.insert(
                name.clone(),
                kind.read(name, row.get_ref(i).map_err(error)?)?,
            );
        }
        found.push(ProxyRow::new(values).into());
    }
    Ok(found)
}

impl Drop for Inline {
    fn drop(&mut self) {
        // Even after a panic mid-statement: sqlx must not get the
        // connection back inside a transaction.
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Inline {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    async fn execute(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        self.with(|conn| {
            let mut prepared = conn.prepare_cached(&statement.sql).map_err(error)?;
            bind(&mut prepared, &statement)?;
            let rows_affected = prepared.raw_execute().map_err(error)? as u64;
            Ok(ProxyExecResult::new(conn.last_insert_rowid() as u64, rows_affected).into())
        })
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.with(|conn| {
            conn.execute_batch(sql).map_err(error)?;
            Ok(ProxyExecResult::new(conn.last_insert_rowid() as u64, conn.changes()).into())
        })
    }

    async fn query_one(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.query(&statement)?.into_iter().next())
    }

    async fn query_all(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.query(&statement)
    }
}

fn error(e: rusqlite::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::Internal(format!("sqlite: {e}")))
}

fn mismatch(name: &str, what: impl std::fmt::Display) -> DbErr {
    DbErr::Exec(RuntimeErr::Internal(format!(
        "sqlite: column {name}: {what}"
    )))
}

/// Binds the statement's values as sqlx does: `$n` and `?n` by number,
/// plain `?` in order.
fn bind(prepared: &mut rusqlite::Statement<'_>, statement: &Statement) -> Result<(), DbErr> {
    let values = statement
        .values
        .as_ref()
        .map(|v| v.0.as_slice())
        .unwrap_or_default();
    let mut next = 0;
    for index in 1..=prepared.parameter_count() {
        let numbered = prepared
            .parameter_name(index)
            .and_then(|name| name.strip_prefix(['$', '?']))
            .and_then(|n| n.parse::<usize>().ok());
        let position = match numbered {
            Some(n) => n.checked_sub(1),
            None => {
                next += 1;
                Some(next - 1)
            }
        };
        let value = position
            .and_then(|p| values.get(p))
            .ok_or_else(|| mismatch("?", format!("no value for parameter {index}")))?;
        prepared
            .raw_bind_parameter(index, sqlite_value(value)?)
            .map_err(error)?;
    }
    Ok(())
}

/// A parameter as sqlx's SQLite driver encodes it.
fn sqlite_value(value: &Value) -> Result<Sqlite, DbErr> {
    let integer = |n: Option<i64>| n.map_or(Sqlite::Null, Sqlite::Integer);
    Ok(match value {
        Value::Bool(b) => integer(b.map(i64::from)),
        Value::TinyInt(n) => integer(n.map(i64::from)),
        Value::SmallInt(n) => integer(n.map(i64::from)),
        Value::Int(n) => integer(n.map(i64::from)),
        Value::BigInt(n) => integer(*n),
        Value::TinyUnsigned(n) => integer(n.map(i64::from)),
        Value::SmallUnsigned(n) => integer(n.map(i64::from)),
        Value::Unsigned(n) => integer(n.map(i64::from)),
        Value::BigUnsigned(n) => match n {
            Some(n) => Sqlite::Integer(
                i64::try_from(*n).map_err(|_| mismatch("?", "unsigned value out of range"))?,
            ),
            None => Sqlite::Null,
        },
        Value::Float(x) => x.map_or(Sqlite::Null, |x| Sqlite::Real(f64::from(x))),
        Value::Double(x) => x.map_or(Sqlite::Null, Sqlite::Real),
        Value::String(s) => s
            .as_ref()
            .map_or(Sqlite::Null, |s| Sqlite::Text(s.to_string())),
        Value::Char(c) => c.map_or(Sqlite::Null, |c| Sqlite::Text(c.to_string())),
        Value::Bytes(b) => b
            .as_ref()
            .map_or(Sqlite::Null, |b| Sqlite::Blob(b.to_vec())),
        Value::ChronoDateTimeUtc(t) => t.as_ref().map_or(Sqlite::Null, |t| {
            Sqlite::Text(t.to_rfc3339_opts(SecondsFormat::AutoSi, false))
        }),
        Value::Uuid(id) => id
            .as_ref()
            .map_or(Sqlite::Null, |id| Sqlite::Blob(id.as_bytes().to_vec())),
        other => return Err(mismatch("?", format!("no SQLite form for {other:?}"))),
    })
}

/// How a column's values are typed for sea-orm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Uuid,
    Time,
    Text,
    Bool,
    Int,
    BigInt,
    /// Not a table's column (an expression): typed by what SQLite holds,
    /// and a NULL cannot be typed.
    Untyped,
}

impl Kind {
    /// The kind of the column `name` declared as `declared`. SQLite declares
    /// `i32` columns and `i64` keys alike, so integers take the entities'
    /// word for their width.
    fn of(name: &str, declared: Option<&str>) -> Self {
        let Some(declared) = declared else {
            return Self::Untyped;
        };
        let declared = declared.to_ascii_lowercase();
        match declared.as_str() {
            "uuid_text" => Self::Uuid,
            "timestamp_with_timezone_text" => Self::Time,
            "boolean" => Self::Bool,
            "integer" | "bigint" if i32_column(name) => Self::Int,
            "integer" | "bigint" => Self::BigInt,
            "text" | "enum_text" => Self::Text,
            _ if declared.starts_with("varchar") || declared.starts_with("char") => Self::Text,
            _ => Self::Untyped,
        }
    }

    fn read(self, name: &str, raw: ValueRef<'_>) -> Result<Value, DbErr> {
        let text = |raw: ValueRef<'_>| {
            raw.as_str()
                .map(str::to_string)
                .map_err(|e| mismatch(name, e))
        };
        Ok(match (self, raw) {
            (Self::Uuid, ValueRef::Null) => Value::Uuid(None),
            (Self::Uuid, ValueRef::Blob(bytes)) => Uuid::from_slice(bytes)
                .map_err(|e| mismatch(name, e))?
                .into(),
            (Self::Time, ValueRef::Null) => Value::ChronoDateTimeUtc(None),
            (Self::Time, ValueRef::Text(_)) => DateTime::parse_from_rfc3339(&text(raw)?)
                .map_err(|e| mismatch(name, e))?
                .with_timezone(&Utc)
                .into(),
            (Self::Text, ValueRef::Null) => Value::String(None),
            (Self::Text | Self::Untyped, ValueRef::Text(_)) => text(raw)?.into(),
            (Self::Bool, ValueRef::Null) => Value::Bool(None),
            (Self::Bool, ValueRef::Integer(n)) => (n != 0).into(),
            (Self::Int, ValueRef::Null) => Value::Int(None),
            (Self::Int, ValueRef::Integer(n)) => {
                i32::try_from(n).map_err(|e| mismatch(name, e))?.into()
            }
            (Self::BigInt, ValueRef::Null) => Value::BigInt(None),
            (Self::BigInt | Self::Untyped, ValueRef::Integer(n)) => n.into(),
            (Self::Untyped, ValueRef::Real(x)) => x.into(),
            (Self::Untyped, ValueRef::Blob(bytes)) => bytes.to_vec().into(),
            (kind, raw) => {
                return Err(mismatch(
                    name,
                    format!("{:?} where {kind:?} was declared", raw.data_type()),
                ))
            }
        })
    }
}

/// Whether `name` is an `i32` column of an entity.
fn i32_column(name: &str) -> bool {
    fn int<E: EntityTrait>() -> impl Iterator<Item = String> {
        E::Column::iter()
            .filter(|c| matches!(c.def().get_column_type(), ColumnType::Integer))
            .map(|c| c.as_str().to_string())
    }
    static NAMES: LazyLock<HashSet<String>> = LazyLock::new(|| {
        int::<message_request::Entity>()
            .chain(int::<chat::Entity>())
            .chain(int::<account::Entity>())
            .chain(int::<api_key::Entity>())
            .chain(int::<idempotency_key::Entity>())
            .chain(int::<extension_session::Entity>())
            .chain(int::<webhook_delivery::Entity>())
            .chain(int::<webhook_attempt::Entity>())
            .collect()
    });
    NAMES.contains(name)
}

#[cfg(test)]
mod tests {
    use chrono::{DurationRound, TimeDelta};
    use sea_orm::{ActiveModelTrait, IntoActiveModel, QueryFilter, QuerySelect};

    use super::*;
    use crate::{
        model::{now, RequestStatus, ResponseType, ThinkingTime},
        store::{DatabaseConfig, Store},
    };

    /// Runs `body` on the store's write connection's handle, borrowed as
    /// the writer borrows it.
    async fn on_handle(store: &Store, body: impl AsyncFnOnce(&Inline)) {
        let mut conn = store
            .write
            .get_sqlite_connection_pool()
            .acquire()
            .await
            .expect("acquire");
        let mut handle = conn.lock_handle().await.expect("lock");
        // SAFETY: as in the writer's turn: `handle` and `conn` outlive it.
        let inline = unsafe { Inline::borrow(handle.as_raw_handle()) }.expect("borrow");
        body(&inline).await;
    }

    fn request(account_id: i64, chat_id: i64, nulls: bool) -> message_request::Model {
        fn some<T>(nulls: bool, value: T) -> Option<T> {
            (!nulls).then_some(value)
        }
        let at = now();
        message_request::Model {
            id: Uuid::now_v7(),
            account_id,
            chat_id,
            message: "héllo, \"world\"".into(),
            response_type: ResponseType::Thinking,
            thinking_time: ThinkingTime::Extended,
            status: RequestStatus::Executing,
            response: some(nulls, "{\"a\": 1}".to_string()),
            error_message: some(nulls, "late".to_string()),
            queued_at: at,
            started_at: some(nulls, at + TimeDelta::milliseconds(3)),
            // A time on a whole second: sqlx writes it without a fraction.
            completed_at: some(
                nulls,
                at.duration_trunc(TimeDelta::seconds(1)).expect("trunc"),
            ),
            attempts: 3,
            lease_session: some(nulls, Uuid::new_v4()),
            lease_node: some(nulls, Uuid::new_v4()),
            lease_expires_at: some(nulls, 1_700_000_000_123),
        }
    }

    /// Rows written through sqlx read back the same through the borrowed
    /// handle, and rows written through it read back the same through
    /// sqlx: every column kind the writer's tables have, set and NULL.
    #[tokio::test]
    async fn rows_read_and_write_as_through_sqlx() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&DatabaseConfig::new(url))
            .await
            .expect("store");
        let account = account::ActiveModel {
            name: sea_orm::Set("a".into()),
            webhook_url: sea_orm::Set(Some("https://example.com/hook".into())),
            webhook_secret: sea_orm::Set("s".into()),
            created_at: sea_orm::Set(now()),
            ..Default::default()
        }
        .insert(&store.write)
        .await
        .expect("account");
        let chat =
            crate::store::chats::unnamed(crate::model::AccountId(account.id), crate::model::now())
                .insert(&store.write)
                .await
                .expect("chat");
        let by_sqlx = [
            request(account.id, chat.id, false),
            request(account.id, chat.id, true),
        ];
        for row in &by_sqlx {
            row.clone()
                .into_active_model()
                .insert(&store.write)
                .await
                .expect("insert through sqlx");
        }
        let by_inline = [
            request(account.id, chat.id, false),
            request(account.id, chat.id, true),
        ];

        on_handle(&store, async |inline| {
            inline.begin().expect("begin");
            for row in &by_inline {
                message_request::Entity::insert(row.clone().into_active_model())
                    .exec_without_returning(inline)
                    .await
                    .expect("insert through the handle");
            }
            let mut read = message_request::Entity::find()
                .filter(message_request::Column::Id.is_in(by_sqlx.iter().map(|r| r.id)))
                .all(inline)
                .await
                .expect("read through the handle");
            read.sort_by_key(|r| r.id);
            assert_eq!(read, by_sqlx);
            let chats = chat::Entity::find().all(inline).await.expect("chats");
            assert_eq!(chats, vec![chat.clone()]);
            // The one tuple the cycle reads, by position.
            let urls: Vec<(i64, String)> = account::Entity::find()
                .select_only()
                .column(account::Column::Id)
                .column(account::Column::WebhookUrl)
                .into_tuple()
                .all(inline)
                .await
                .expect("tuple");
            assert_eq!(
                urls,
                vec![(account.id, "https://example.com/hook".to_string())]
            );
            inline.commit().expect("commit");
        })
        .await;

        let mut read = message_request::Entity::find()
            .filter(message_request::Column::Id.is_in(by_inline.iter().map(|r| r.id)))
            .all(&store.read)
            .await
            .expect("read through sqlx");
        read.sort_by_key(|r| r.id);
        assert_eq!(read, by_inline);
    }

    /// A statement the handle cannot run is an error, and what the
    /// transaction wrote before it is rolled back.
    #[tokio::test]
    async fn a_failed_cycle_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&DatabaseConfig::new(url))
            .await
            .expect("store");
        on_handle(&store, async |inline| {
            inline.begin().expect("begin");
            inline
                .execute_unprepared(
                    "INSERT INTO accounts (name, webhook_secret, created_at) VALUES ('x', 's', '2026-12-02T00:00:00+00:00')",
                )
                .await
                .expect("insert");
            let e = inline
                .query_all(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT NULL AS untyped",
                ))
                .await
                .expect_err("an untyped NULL");
            assert!(e.to_string().contains("untyped"), "{e}");
            inline.roll_back();
        })
        .await;
        // A transaction left open is rolled back when the handle goes back,
        // and sqlx's next transaction on the connection begins as usual.
        on_handle(&store, async |inline| {
            inline.begin().expect("begin");
            inline
                .execute_unprepared(
                    "INSERT INTO accounts (name, webhook_secret, created_at) VALUES ('y', 's', '2026-12-02T00:00:00+00:00')",
                )
                .await
                .expect("insert");
        })
        .await;
        let txn = sea_orm::TransactionTrait::begin(&store.write)
            .await
            .expect("sqlx begins");
        txn.commit().await.expect("and commits");
        let accounts = account::Entity::find()
            .all(&store.read)
            .await
            .expect("read");
        assert!(accounts.is_empty(), "{accounts:?}");
    }
}
