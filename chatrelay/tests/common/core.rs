//! The tests' one way into the core past its public APIs. A test that reads
//! or changes the core's state directly (creating accounts, faking what an
//! extension or another core did, inspecting webhook deliveries, running
//! SQL) does it through [`TestCore`], and the core's types it names are
//! re-exported from here. When the core's internals change, this module is
//! the one to follow them; the test bodies speak HTTP, gRPC, WebSocket and
//! these helpers only.

use std::{path::PathBuf, sync::Arc};

use chatrelay_core::{
    accounts,
    grpc::GrpcListener,
    lifecycle,
    model::{ResponseType, Submission, ThinkingTime},
    requests,
    store::entities::{chat, message_request, webhook_delivery},
    webhooks::{self, Destinations},
    Core, CoreConfig,
};
use chatrelay_edge::{EdgeConfig, EdgeState};
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait,
    QueryFilter, Set,
};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{TestApp, TestDb};

// Each test file uses some of these.
#[allow(unused_imports)]
pub use chatrelay_core::{
    model::{AccountId, RequestStatus, RequestView},
    store::entities::webhook_delivery::DeliveryStatus,
    webhooks::RetrySchedule,
    CoreError,
};

/// A core the test may look into: that of a [`TestApp`] (see
/// [`TestApp::core`]), still usable after the app has stopped, or one
/// started on its own ([`TestCore::start`]).
#[derive(Clone)]
pub struct TestCore {
    core: Arc<Core>,
    /// The app's own database, if it has one: kept while the core may be
    /// looked into.
    _db: Option<Arc<TestDb>>,
}

impl TestApp {
    /// The app's core, for what the public APIs cannot do or show.
    pub fn core(&self) -> TestCore {
        TestCore {
            core: self.running.core.clone(),
            _db: self.own_db.clone(),
        }
    }

    /// Creates an account and returns its API key.
    pub async fn account(&self, name: &str) -> String {
        self.core().create_account(name, None).await
    }

    /// Creates an account with `webhook_url`, if given, and returns its API key.
    pub async fn account_with_webhook(&self, name: &str, webhook_url: Option<&str>) -> String {
        self.core().create_account(name, webhook_url).await
    }

    /// [`TestCore::run_sql`] on the app's database.
    pub async fn run_sql(&self, postgres: &[&str], sqlite: &[&str]) {
        self.core().run_sql(postgres, sqlite).await
    }
}

impl TestCore {
    /// A core on `db` with no listener and no edge; stop it with [`Self::stop`].
    pub async fn start(db: &TestDb, configure: impl FnOnce(&mut CoreConfig)) -> Self {
        let mut config = CoreConfig::with_database(&db.url);
        // The tests' webhook receivers listen on loopback.
        config.webhooks.allow_private_urls = true;
        configure(&mut config);
        Self {
            core: Core::start(config).await.expect("start the core"),
            _db: None,
        }
    }

    /// The edge's whole HTTP application (REST, WebSocket, health, docs,
    /// metrics) calling this core in-process, as `chatrelay serve` builds it,
    /// for `tower::ServiceExt::oneshot` calls without a socket.
    pub async fn edge_router(&self, config: EdgeConfig) -> axum::Router {
        chatrelay_edge::app(self.edge_state(config).await)
    }

    /// The state of an edge that calls this core in-process, as `chatrelay
    /// serve` builds it.
    pub async fn edge_state(&self, config: EdgeConfig) -> EdgeState {
        let routes = chatrelay_core::grpc::routes(&self.core)
            .await
            .expect("gRPC routes");
        EdgeState::in_process(
            config,
            chatrelay_core::grpc::in_process(routes),
            chatrelay::serve::local_core(&self.core),
        )
    }

    /// The core's node id: the `node` of the sessions it holds.
    pub fn node_id(&self) -> String {
        self.core.node_id().to_string()
    }

    /// Stops the core's background tasks and waits for them.
    pub async fn stop(&self) {
        self.core.stop().await;
    }

    // ---- accounts -----------------------------------------------------------------

    /// Creates an account and returns its API key.
    pub async fn create_account(&self, name: &str, webhook_url: Option<&str>) -> String {
        // The tests' webhook receivers listen on loopback: whatever the
        // core sends to, the harness sets any URL.
        accounts::create(self.core.store(), name, webhook_url, Destinations::Any)
            .await
            .expect("create account")
            .api_key
    }

    pub async fn account_id(&self, name: &str) -> AccountId {
        AccountId(
            accounts::find_by_name(self.core.store(), name)
                .await
                .expect("account")
                .id,
        )
    }

    /// The account an API key belongs to, found the way the core's
    /// services find it.
    pub async fn account_id_of_key(&self, key: &str) -> AccountId {
        accounts::authenticate_hash(self.core.store(), &accounts::hash_api_key(key))
            .await
            .expect("valid key")
    }

    /// The account's current webhook signing secret (`whsec_…`).
    pub async fn webhook_secret(&self, name: &str) -> String {
        accounts::find_by_name(self.core.store(), name)
            .await
            .expect("account")
            .webhook_secret
    }

    /// Gives the account a new webhook signing secret and returns it.
    pub async fn rotate_webhook_secret(&self, name: &str) -> String {
        accounts::rotate_webhook_secret(self.core.store(), name)
            .await
            .expect("rotate")
    }

    /// Issues a new API key for the account; unless `keep_existing`, its
    /// older keys stop working (`chatrelay account rotate-key`).
    pub async fn rotate_key(&self, name: &str, keep_existing: bool) -> String {
        accounts::rotate_key(self.core.store(), name, keep_existing)
            .await
            .expect("rotate key")
    }

    // ---- requests and chats -------------------------------------------------------

    /// Submits `message` with the default options straight to the core's
    /// submit path (no edge, no gRPC), returning the new request's id. The
    /// submission queues when the returned future is first polled, so
    /// futures joined in order queue in that order.
    pub async fn submit(&self, key: &str, message: &str) -> Result<Uuid, CoreError> {
        let view = requests::submit(
            &self.core,
            Some(key),
            Submission {
                message: message.into(),
                response_type: ResponseType::Auto,
                thinking_time: ThinkingTime::Standard,
                chat_id: None,
                idempotency_key: None,
            },
        )
        .await?;
        Ok(view.view.request.id)
    }

    /// Finishes a request as an extension's response would, with the
    /// ChatGPT chat id and title it reported. Like [`Self::submit`], the
    /// result queues when the future is first polled.
    pub async fn complete(
        &self,
        account: AccountId,
        id: Uuid,
        response: String,
        chatgpt_id: String,
        chat_title: Option<String>,
    ) -> Result<Settled, CoreError> {
        lifecycle::complete(&self.core, account, id, response, chatgpt_id, chat_title)
            .await
            .map(Settled::from)
    }

    /// Fails a request as an extension's error frame would.
    pub async fn fail(
        &self,
        account: AccountId,
        id: Uuid,
        error: String,
    ) -> Result<Settled, CoreError> {
        lifecycle::fail(&self.core, account, id, error)
            .await
            .map(Settled::from)
    }

    /// Moves a request to `status` in the database, as an extension's
    /// reports would, stamping the timestamps that status implies (a failed
    /// request gets the error "it broke").
    pub async fn set_request_status(
        &self,
        id: &str,
        status: RequestStatus,
        response: Option<&str>,
    ) {
        let id = Uuid::parse_str(id).expect("UUID");
        let row = message_request::Entity::find_by_id(id)
            .one(&self.core.store().write)
            .await
            .expect("find request")
            .expect("request exists");
        let at = chrono::Utc::now();
        let mut active: message_request::ActiveModel = row.into();
        active.status = Set(status);
        active.started_at = Set((status != RequestStatus::Idle).then_some(at));
        active.completed_at = Set(status.is_terminal().then_some(at));
        active.response = Set(response.map(str::to_string));
        active.error_message =
            Set((status == RequestStatus::Failed).then(|| "it broke".to_string()));
        active
            .update(&self.core.store().write)
            .await
            .expect("update request");
    }

    /// Moves the finish time of every finished request `by` into the past.
    pub async fn age_finished_requests(&self, by: chrono::Duration) {
        message_request::Entity::update_many()
            .col_expr(
                message_request::Column::CompletedAt,
                Expr::value(chrono::Utc::now() - by),
            )
            .filter(message_request::Column::CompletedAt.is_not_null())
            .exec(&self.core.store().write)
            .await
            .expect("age finished requests");
    }

    /// Every webhook attempt recorded, of any account.
    pub async fn webhook_attempt_count(&self) -> u64 {
        use sea_orm::PaginatorTrait;
        chatrelay_core::store::entities::webhook_attempt::Entity::find()
            .count(&self.core.store().read)
            .await
            .expect("count attempts")
    }

    /// Fills in a chat's ChatGPT id and title, as an extension's response would.
    pub async fn name_chat(&self, chat_db_id: i64, chatgpt_id: &str, title: &str) {
        let row = chat::Entity::find_by_id(chat_db_id)
            .one(&self.core.store().write)
            .await
            .expect("find chat")
            .expect("chat exists");
        let mut active: chat::ActiveModel = row.into();
        active.chatgpt_id = Set(Some(chatgpt_id.to_string()));
        active.title = Set(Some(title.to_string()));
        active.updated_at = Set(chrono::Utc::now());
        active
            .update(&self.core.store().write)
            .await
            .expect("update chat");
    }

    /// Leases a request as if a core that has since died had delivered it
    /// once: to a session and node nobody knows, until `expires_at_ms`
    /// (Unix milliseconds).
    pub async fn lease_to_a_dead_core(&self, id: &str, expires_at_ms: i64) {
        message_request::Entity::update_many()
            .col_expr(
                message_request::Column::LeaseSession,
                Expr::value(Uuid::new_v4()),
            )
            .col_expr(
                message_request::Column::LeaseNode,
                Expr::value(Uuid::new_v4()),
            )
            .col_expr(
                message_request::Column::LeaseExpiresAt,
                Expr::value(expires_at_ms),
            )
            .col_expr(message_request::Column::Attempts, Expr::value(1))
            .filter(message_request::Column::Id.eq(Uuid::parse_str(id).expect("UUID")))
            .exec(&self.core.store().write)
            .await
            .expect("lease the request");
    }

    /// A request as the core's general read path (sea-orm) reads it.
    pub async fn read_request(&self, id: &str) -> RequestView {
        let id = Uuid::parse_str(id).expect("UUID");
        let (row, chat) = message_request::Entity::find_by_id(id)
            .find_also_related(chat::Entity)
            .one(&self.core.store().read)
            .await
            .expect("sea-orm read")
            .expect("request exists");
        message_request::view(row, chat)
    }

    /// The SQLite-only read path that bypasses sea-orm; `None` on PostgreSQL.
    pub fn point_reads(&self) -> Option<PointReads> {
        self.core.store().point_reads().map(PointReads)
    }

    // ---- webhooks -----------------------------------------------------------------

    /// Wakes the webhook worker, as the core does after each commit.
    pub fn wake_webhooks(&self) {
        webhooks::notify_committed(&self.core);
    }

    /// The account's webhook deliveries, newest first.
    pub async fn deliveries(&self, account: &str) -> Vec<DeliveryView> {
        webhooks::list(
            self.core.store(),
            Some(self.account_id(account).await),
            None,
            100,
        )
        .await
        .expect("list deliveries")
        .into_iter()
        .map(DeliveryView::from)
        .collect()
    }

    pub async fn delivery(&self, id: Uuid) -> DeliveryView {
        webhooks::get(self.core.store(), None, id)
            .await
            .expect("get")
            .into()
    }

    /// Sends a finished delivery again, as `chatrelay webhook retry` does.
    pub async fn retry_delivery(&self, id: Uuid) -> Result<Delivery, CoreError> {
        webhooks::retry(self.core.store(), None, id)
            .await
            .map(|view| Delivery::from(view.delivery))
    }

    /// Marks a delivery as claimed for attempt `attempts` by a core that
    /// died before reporting: pending, claimed by nobody alive, until
    /// `next_attempt_at_ms` (Unix milliseconds).
    pub async fn claim_delivery_as_a_dead_core(
        &self,
        id: Uuid,
        attempts: i32,
        next_attempt_at_ms: i64,
    ) {
        let row = webhook_delivery::Entity::find_by_id(id)
            .one(&self.core.store().write)
            .await
            .expect("find delivery")
            .expect("delivery exists");
        let mut claimed: webhook_delivery::ActiveModel = row.into();
        claimed.status = Set(DeliveryStatus::Pending);
        claimed.attempts = Set(attempts);
        claimed.claimed_by = Set(Some(Uuid::new_v4()));
        claimed.next_attempt_at = Set(next_attempt_at_ms);
        claimed
            .update(&self.core.store().write)
            .await
            .expect("fake a claim");
    }

    // ---- the database itself ------------------------------------------------------

    /// Runs SQL on the database the core writes, as the back end needs it:
    /// `postgres` on PostgreSQL, `sqlite` on SQLite (e.g. a trigger that
    /// makes some writes fail or slow).
    pub async fn run_sql(&self, postgres: &[&str], sqlite: &[&str]) {
        let db = &self.core.store();
        let statements = match db.write.get_database_backend() {
            DatabaseBackend::Postgres => postgres,
            _ => sqlite,
        };
        for statement in statements {
            db.write
                .execute_unprepared(statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }

    /// SQLite's `PRAGMA synchronous` on the writer's connection (1 NORMAL,
    /// 2 FULL), or `None` on PostgreSQL.
    pub async fn sqlite_synchronous(&self) -> Option<i64> {
        let db = &self.core.store().write;
        if db.get_database_backend() != DatabaseBackend::Sqlite {
            return None;
        }
        let row = db
            .query_one(sea_orm::Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA synchronous",
            ))
            .await
            .expect("PRAGMA synchronous")
            .expect("a row");
        Some(row.try_get_by_index(0).expect("an integer"))
    }

    /// Holds every write to `message_requests` back until the returned
    /// transaction is dropped: on SQLite by holding the one write
    /// connection, on PostgreSQL by locking the table.
    pub async fn hold_writes(&self) -> sea_orm::DatabaseTransaction {
        use sea_orm::TransactionTrait;
        let db = &self.core.store().write;
        let txn = db.begin().await.expect("begin");
        if db.get_database_backend() == DatabaseBackend::Postgres {
            txn.execute_unprepared("LOCK TABLE message_requests IN EXCLUSIVE MODE")
                .await
                .expect("lock message_requests");
        }
        txn
    }

    /// The SQLite database file, if that is the back end.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        self.core.store().file()
    }
}

/// What the core committed for one result.
#[derive(Debug)]
pub struct Settled {
    pub status: RequestStatus,
    /// The database id of the request's chat.
    pub chat_id: i64,
}

impl From<chatrelay_core::model::MessageRequest> for Settled {
    fn from(row: chatrelay_core::model::MessageRequest) -> Self {
        Self {
            status: row.status,
            chat_id: row.chat_id,
        }
    }
}

/// A webhook delivery with its attempts, oldest first.
#[derive(Clone, Debug)]
pub struct DeliveryView {
    pub delivery: Delivery,
    pub attempts: Vec<Attempt>,
}

#[derive(Clone, Debug)]
pub struct Delivery {
    /// Also the `webhook-id` header of every attempt.
    pub id: Uuid,
    pub request_id: Uuid,
    pub status: DeliveryStatus,
    /// Attempts started, including any not reported back.
    pub attempts: i32,
    /// The URL recorded for the delivery.
    pub url: String,
}

/// One recorded attempt to deliver a webhook.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl From<webhook_delivery::Model> for Delivery {
    fn from(row: webhook_delivery::Model) -> Self {
        Self {
            id: row.id,
            request_id: row.request_id,
            status: row.status,
            attempts: row.attempts,
            url: row.url,
        }
    }
}

impl From<webhooks::DeliveryView> for DeliveryView {
    fn from(view: webhooks::DeliveryView) -> Self {
        Self {
            delivery: view.delivery.into(),
            attempts: view
                .attempts
                .into_iter()
                .map(|a| Attempt {
                    attempt: a.attempt,
                    status_code: a.status_code,
                    error: a.error,
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}

/// The SQLite point reads (lookups through rusqlite rather than sea-orm),
/// addressed the way the core addresses them: by API key hash.
pub struct PointReads(Arc<chatrelay_core::store::PointReads>);

impl PointReads {
    /// The request, if it belongs to the account of `key`.
    pub fn request(&self, id: &str, key: &str) -> Option<RequestView> {
        let id = Uuid::parse_str(id).expect("UUID");
        self.0
            .request(id, &accounts::hash_api_key(key))
            .expect("point read")
    }

    /// The account of the API key, as the submit path looks it up.
    pub fn account_of_key(&self, key: &str) -> Option<AccountId> {
        self.0
            .account_of_key(&accounts::hash_api_key(key))
            .expect("point read")
            .map(AccountId)
    }
}

/// A core serving gRPC alone on an ephemeral port, as in a deployment with
/// separate edge and core processes.
pub struct LoneCore {
    /// `http://127.0.0.1:PORT` of its gRPC API (`https://` with TLS).
    pub url: String,
    pub core: TestCore,
    server: JoinHandle<anyhow::Result<()>>,
}

impl LoneCore {
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts with the core's configuration adjusted by `configure`.
    pub async fn start_with(db: &TestDb, configure: impl FnOnce(&mut CoreConfig)) -> Self {
        let mut config = CoreConfig::with_database(&db.url);
        config.webhooks.allow_private_urls = true;
        configure(&mut config);
        let listener = GrpcListener::bind(&config).await.expect("bind");
        let url = format!(
            "{}://{}",
            listener.scheme(),
            listener.local_addr().expect("address")
        );
        let core = TestCore {
            core: Core::start(config).await.expect("start the core"),
            _db: None,
        };
        let routes = chatrelay_core::grpc::routes(&core.core)
            .await
            .expect("gRPC routes");
        let server = tokio::spawn(chatrelay_core::grpc::serve(
            routes,
            listener,
            core.core.shutdown_token(),
        ));
        Self { url, core, server }
    }

    /// Stops the core and its gRPC server, which must end cleanly.
    pub async fn stop(self) {
        self.core.stop().await;
        self.server
            .await
            .expect("gRPC server task")
            .expect("gRPC server ends cleanly");
    }
}
