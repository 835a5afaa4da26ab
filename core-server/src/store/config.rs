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

    /// SQLite: the WAL size, in MiB, past which the checkpoint task briefly
    /// holds writes back to start the WAL over (see `db::checkpoint`).
    #[arg(long, env = "CHATRELAY_SQLITE_WAL_LIMIT_MIB", default_value_t = 64)]
    pub sqlite_wal_limit_mib: u64,
}

impl DatabaseConfig {
    /// The defaults, on the database at `database_url`.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            db_max_connections: 16,
            sqlite_wal_limit_mib: 64,
        }
    }

    /// [`Self::sqlite_wal_limit_mib`] in bytes (at least one MiB).
    pub fn sqlite_wal_limit_bytes(&self) -> u64 {
        self.sqlite_wal_limit_mib.clamp(1, u64::MAX >> 20) << 20
    }
}
