//! Where the core keeps its state, and the back ends' settings.

/// Where the core keeps its state.
#[derive(clap::Args, Clone, Debug)]
pub struct DatabaseConfig {
    /// `sqlite://FILE?mode=rwc` (embedded) or `postgres://…` (shared).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://chatrelay.db?mode=rwc"
    )]
    pub database_url: String,

    /// Connections in the read pool (PostgreSQL: the whole pool).
    #[arg(long, env = "CHATRELAY_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// SQLite: the WAL size, in MiB, past which the writer, between two
    /// of its transactions, copies the WAL's last frames so that it starts
    /// over; the WAL file keeps up to four times this on disk (see
    /// `store::sqlite::checkpoint`).
    #[arg(long, env = "CHATRELAY_SQLITE_WAL_LIMIT_MIB", default_value_t = 64)]
    pub sqlite_wal_limit_mib: u64,

    /// SQLite: when a commit reaches the disk. `full` (the default) syncs
    /// the WAL at every commit, so an answered submit survives an
    /// operating-system crash or power loss; `normal` syncs only at
    /// checkpoints: faster, and still safe against a crash of chatrelay
    /// itself, but the last commits can be lost with the machine.
    #[arg(
        long,
        env = "CHATRELAY_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value_t = SqliteSynchronous::Full
    )]
    pub sqlite_synchronous: SqliteSynchronous,
}

/// SQLite's `synchronous` setting, of the two that suit a WAL database.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSynchronous {
    Normal,
    #[default]
    Full,
}

impl DatabaseConfig {
    /// The defaults, on the database at `database_url`.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            db_max_connections: 16,
            sqlite_wal_limit_mib: 64,
            sqlite_synchronous: SqliteSynchronous::Full,
        }
    }

    /// [`Self::sqlite_wal_limit_mib`] in bytes (at least one MiB).
    pub fn sqlite_wal_limit_bytes(&self) -> u64 {
        self.sqlite_wal_limit_mib.clamp(1, u64::MAX >> 20) << 20
    }
}
