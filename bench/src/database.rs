//! The benchmark's own database: a SQLite file in a temporary directory, or a
//! fresh database created on the given PostgreSQL server and dropped after.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sqlx::Connection;

pub struct BenchDatabase {
    /// The `DATABASE_URL` chatrelay is given.
    pub url: String,
    /// What the table calls it, e.g. `SQLite` or `PostgreSQL 15.8`.
    pub description: String,
    /// The run's scratch directory (the SQLite file, chatrelay's log, wrk scripts).
    dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl BenchDatabase {
    pub async fn create(postgres_url: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("chatrelay-bench-")
            .tempdir()?;
        let Some(admin_url) = postgres_url else {
            return Ok(Self {
                url: format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("chatrelay.db").display()
                ),
                description: "SQLite".into(),
                dir,
                postgres: None,
            });
        };
        let name = format!("chatrelay_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("cannot connect to {admin_url}"))?;
        let (version,): (String,) = sqlx::query_as("SHOW server_version")
            .fetch_one(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .context("cannot create the benchmark database")?;
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(admin_url).context("PostgreSQL URL")?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            url: url.to_string(),
            description: format!(
                "PostgreSQL {}",
                version.split_whitespace().next().unwrap_or("")
            ),
            dir,
            postgres: Some((admin_url.to_string(), name)),
        })
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Leaves the database and the scratch directory in place, for a look
    /// afterwards; says where they are.
    pub fn keep(self) -> String {
        let dir = self.dir.keep();
        format!(
            "database {} and scratch directory {} kept",
            self.url,
            dir.display()
        )
    }

    /// Drops the PostgreSQL database; the temporary directory goes with `self`.
    pub async fn remove(self) -> anyhow::Result<()> {
        if let Some((admin_url, name)) = &self.postgres {
            let mut admin = sqlx::PgConnection::connect(admin_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .with_context(|| format!("cannot drop database {name}"))?;
            let _ = admin.close().await;
        }
        Ok(())
    }
}
