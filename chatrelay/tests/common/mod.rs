//! The integration-test harness: a fresh database per test (a temporary
//! SQLite file, or a new PostgreSQL database when
//! `CHATRELAY_TEST_DATABASE_URL` is set) and a real chatrelay — core and edge
//! — on ephemeral loopback ports.
//!
//! Most tests begin with [`TestApp::with_account`]. Whatever a test does to
//! the core past its APIs goes through [`core`]; what several REST tests
//! assert lives in [`rest`].

#![allow(dead_code)]

pub mod core;
pub mod grpc;
pub mod process;
pub mod receiver;
pub mod rest;
pub mod sse;
pub mod ws;

use std::sync::Arc;

use chatrelay::serve::Running;
use chatrelay_core::CoreConfig;
use chatrelay_edge::EdgeConfig;
use reqwest::StatusCode;
use serde_json::Value;

/// The variable that selects PostgreSQL for the tests: a URL of a server and
/// database the tests may connect to and create databases from.
pub const PG_URL_VAR: &str = "CHATRELAY_TEST_DATABASE_URL";

/// A database of the test's own, dropped (PostgreSQL) or deleted (SQLite) after it.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn new() -> Self {
        match std::env::var(PG_URL_VAR).ok().filter(|u| !u.is_empty()) {
            Some(admin_url) => Self::postgres(admin_url).await,
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("chatrelay.db").display()
                );
                Self {
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
        }
    }

    async fn postgres(admin_url: String) -> Self {
        use sqlx::Connection;
        let name = format!("chatrelay_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to CHATRELAY_TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("PostgreSQL URL");
        url.set_path(&format!("/{name}"));
        Self {
            url: url.to_string(),
            _dir: None,
            pg: Some((admin_url, name)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.pg.take() else {
            return;
        };
        // Drop runs outside any runtime we may block: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        })
        .join();
    }
}

/// A running chatrelay (core + edge) on ephemeral ports.
pub struct TestApp {
    /// Private: what a test needs of the core goes through [`TestApp::core`].
    running: Running,
    /// `http://127.0.0.1:PORT` of the edge.
    pub http: String,
    /// `http://127.0.0.1:PORT` of the core's gRPC API.
    pub grpc: String,
    pub client: reqwest::Client,
    /// The URL of the app's database (`sqlite:…` or `postgres:…`).
    pub db_url: String,
    /// The database, when the app has one of its own ([`Self::fresh`]):
    /// dropped with the app and every [`core::TestCore`] taken from it.
    own_db: Option<Arc<TestDb>>,
}

/// The name of the account [`TestApp::with_account`] creates.
pub const ACCOUNT: &str = "acme";

impl TestApp {
    /// A chatrelay on a fresh database of its own, with one account
    /// ([`ACCOUNT`]): the app and the account's API key.
    pub async fn with_account() -> (Self, String) {
        Self::with_account_configured(|_, _| {}).await
    }

    /// [`Self::with_account`], with configuration adjusted by `configure`.
    pub async fn with_account_configured(
        configure: impl FnOnce(&mut CoreConfig, &mut EdgeConfig),
    ) -> (Self, String) {
        let app = Self::fresh_configured(configure).await;
        let key = app.account(ACCOUNT).await;
        (app, key)
    }

    /// A chatrelay on a fresh database of its own, with no account.
    pub async fn fresh() -> Self {
        Self::fresh_configured(|_, _| {}).await
    }

    /// [`Self::fresh`], with configuration adjusted by `configure`.
    pub async fn fresh_configured(
        configure: impl FnOnce(&mut CoreConfig, &mut EdgeConfig),
    ) -> Self {
        let db = TestDb::new().await;
        let mut app = Self::start_with(&db, configure).await;
        app.own_db = Some(Arc::new(db));
        app
    }

    /// A chatrelay on `db`, which the test keeps (to restart on it, or to
    /// run a second chatrelay on it).
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(db, |_, _| {}).await
    }

    /// Starts with configuration adjusted by `configure`.
    pub async fn start_with(
        db: &TestDb,
        configure: impl FnOnce(&mut CoreConfig, &mut EdgeConfig),
    ) -> Self {
        let mut core = CoreConfig::with_database(&db.url);
        // The tests' webhook receivers listen on loopback.
        core.webhooks.allow_private_urls = true;
        let mut edge = EdgeConfig::for_core("http://unused");
        configure(&mut core, &mut edge);
        let running = Running::start(core, edge).await.expect("start chatrelay");
        Self {
            http: format!("http://{}", running.addrs.http),
            grpc: format!("{}://{}", running.addrs.grpc_scheme, running.addrs.grpc),
            running,
            client: reqwest::Client::new(),
            db_url: db.url.clone(),
            own_db: None,
        }
    }

    pub async fn stop(self) {
        self.running.stop().await.expect("clean stop");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.http, path)
    }

    /// `POST /api/chat/submit/` with a JSON body.
    pub async fn submit(&self, key: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url("/api/chat/submit/"))
            .header("X-API-Key", key)
            .json(&body)
            .send()
            .await
            .expect("submit");
        json_of(response).await
    }

    /// Submits `{"message": message}` and returns the created request.
    pub async fn submit_message(&self, key: &str, message: &str) -> Value {
        let (status, body) = self
            .submit(key, serde_json::json!({ "message": message }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// A POST without a body (the API's actions: cancel, retry), with the
    /// API key.
    pub async fn post(&self, key: &str, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("X-API-Key", key)
            .send()
            .await
            .expect("POST");
        json_of(response).await
    }

    /// A GET with the API key.
    pub async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.url(path))
            .header("X-API-Key", key)
            .send()
            .await
            .expect("GET");
        json_of(response).await
    }
}

/// The status and the JSON body of a response (panics on a non-JSON body).
pub async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"));
    (status, body)
}

/// Calls `check` until it returns `Some` (the state it waits for came
/// about in the background), within 15 s; panics with `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// Waits until the request has `status` (it changes in the background,
    /// e.g. when a dropped session is noticed), and returns it.
    pub async fn wait_for_status(&self, key: &str, id: &str, status: &str) -> Value {
        let path = format!("/api/chat/requests/{id}/");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let (code, body) = self.get(key, &path).await;
            assert_eq!(code, StatusCode::OK, "{body}");
            if body["status"] == status {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id} never reached {status}: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
