//! The store's conformance suite: the same bodies run against SQLite
//! always, and against PostgreSQL when `CHATRELAY_TEST_DATABASE_URL` names a
//! server the tests may create databases on. Each test gets a fresh
//! database and a started core on it; nothing else is mocked.

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, TransactionTrait};
use sqlx::Connection;
use uuid::Uuid;

use super::{chats, claim, leases, outcomes, submits, Store};
use crate::{
    accounts,
    committed::{Cause, Committed},
    lifecycle::Outcome,
    model::{AccountId, MessageRequest, RequestStatus, RequestView, Submission},
    webhooks::Destinations,
    Core, CoreConfig, CoreError,
};

/// A fresh database: a temporary SQLite file, or a new PostgreSQL database
/// (dropped afterwards).
struct Fresh {
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Fresh {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("store.db").display()
        );
        Self {
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    async fn postgres(admin: &str) -> Self {
        let name = format!("chatrelay_store_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create database");
        let mut url = url::Url::parse(admin).expect("URL");
        url.set_path(&format!("/{name}"));
        Self {
            url: url.to_string(),
            _dir: None,
            pg: Some((admin.to_string(), name)),
        }
    }

    async fn drop_database(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// A fresh database on each back end available.
async fn fresh_databases() -> Vec<Fresh> {
    let mut databases = vec![Fresh::sqlite().await];
    if let Some(admin) = std::env::var("CHATRELAY_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        databases.push(Fresh::postgres(&admin).await);
    }
    databases
}

/// Runs `body` on a started core over each back end available.
async fn on_each_store<F, Fut>(body: F)
where
    F: Fn(Arc<Core>, AccountId) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let databases = fresh_databases().await;
    for mut db in databases {
        let core = Core::start(CoreConfig::with_database(&db.url))
            .await
            .expect("start core");
        let account = accounts::create(core.store(), "acme", None, Destinations::PublicOnly)
            .await
            .expect("account")
            .account
            .id;
        body(core.clone(), AccountId(account)).await;
        core.stop().await;
        db.drop_database().await;
    }
}

fn submission(message: &str, chat: Option<&str>) -> Submission {
    Submission {
        message: message.into(),
        chat_id: chat.map(str::to_string),
        ..Default::default()
    }
}

/// Stores submissions in one transaction, as the writers do.
async fn store(
    core: &Core,
    account: AccountId,
    items: &[Submission],
) -> (Vec<RequestView>, Committed) {
    let txn = core.store.write.begin().await.expect("begin");
    let items: Vec<(AccountId, &Submission)> = items.iter().map(|s| (account, s)).collect();
    let stored = submits::insert_submissions(core, &txn, &items)
        .await
        .expect("insert");
    txn.commit().await.expect("commit");
    let submits::Stored {
        answers, committed, ..
    } = stored;
    let views = answers
        .into_iter()
        .map(|a| a.expect("stored").view)
        .collect();
    (views, committed)
}

async fn claim(core: &Core, account: AccountId, session: Uuid, max: usize) -> Vec<MessageRequest> {
    claim::claim_in(core, &core.store.write, account, session, max)
        .await
        .expect("claim")
        .into_iter()
        .map(|delivery| delivery.request)
        .collect()
}

async fn settle(
    core: &Core,
    outcomes: &[(AccountId, Uuid, &Outcome)],
) -> Vec<Result<MessageRequest, CoreError>> {
    let txn = core.store.write.begin().await.expect("begin");
    let applied = outcomes::apply_all_in(core, &txn, outcomes)
        .await
        .expect("apply");
    txn.commit().await.expect("commit");
    applied.answers
}

fn done(chat: &str) -> Outcome {
    Outcome::Done {
        response: "answer".into(),
        chatgpt_id: chat.into(),
        chat_title: Some("Title".into()),
    }
}

/// Stores `messages` in the chat `chat`, in one transaction; their ids.
async fn queue_in(core: &Core, account: AccountId, chat: &str, messages: &[&str]) -> Vec<Uuid> {
    let items: Vec<Submission> = messages.iter().map(|m| submission(m, Some(chat))).collect();
    let (views, _) = store(core, account, &items).await;
    views.iter().map(|v| v.request.id).collect()
}

/// Answers the request `id` in the chat `chat`, which must finish it.
async fn answer(core: &Core, account: AccountId, id: Uuid, chat: &str) {
    settle(core, &[(account, id, &done(chat))]).await[0]
        .as_ref()
        .expect("answered");
}

#[tokio::test]
async fn stored_submissions_say_what_they_committed() {
    on_each_store(|core, account| async move {
        let (views, committed) = store(
            &core,
            account,
            &[submission("one", None), submission("two", Some("conv"))],
        )
        .await;
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].chat, None);
        assert_eq!(views[1].chat.as_deref(), Some("conv"));
        assert!(views
            .iter()
            .all(|v| v.request.status == RequestStatus::Idle));
        let changes: Vec<(Uuid, RequestStatus, Cause)> = committed
            .changes
            .iter()
            .map(|c| (c.request, c.status, c.cause))
            .collect();
        assert_eq!(
            changes,
            views
                .iter()
                .map(|v| (v.request.id, RequestStatus::Idle, Cause::Submitted))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            committed.work.iter().copied().collect::<Vec<_>>(),
            [account]
        );
    })
    .await;
}

#[tokio::test]
async fn a_claim_takes_the_oldest_request_of_each_chat_oldest_first() {
    on_each_store(|core, account| async move {
        let (views, _) = store(
            &core,
            account,
            &[
                submission("first in conv", Some("conv")),
                submission("alone", None),
                submission("second in conv", Some("conv")),
            ],
        )
        .await;
        let session = Uuid::new_v4();
        let claimed = claim(&core, account, session, 10).await;
        let ids: Vec<Uuid> = claimed.iter().map(|r| r.id).collect();
        assert_eq!(ids, [views[0].request.id, views[1].request.id]);
        assert!(claimed.iter().all(|r| r.attempts == 1));
        // Nothing more while the chat's first request is in flight.
        assert!(claim(&core, account, Uuid::new_v4(), 10).await.is_empty());

        let outcome = done("conv");
        settle(&core, &[(account, views[0].request.id, &outcome)]).await[0]
            .as_ref()
            .expect("finished");
        let next = claim(&core, account, session, 10).await;
        assert_eq!(
            next.iter().map(|r| r.id).collect::<Vec<_>>(),
            [views[2].request.id]
        );
    })
    .await;
}

#[tokio::test]
async fn a_claim_never_reaches_another_account() {
    on_each_store(|core, account| async move {
        let other = accounts::create(core.store(), "other", None, Destinations::PublicOnly)
            .await
            .expect("account")
            .account
            .id;
        store(&core, AccountId(other), &[submission("theirs", None)]).await;
        assert!(claim(&core, account, Uuid::new_v4(), 10).await.is_empty());
    })
    .await;
}

/// On SQLite, the steps of the claim's plan (`EXPLAIN QUERY PLAN`);
/// `None` on PostgreSQL.
async fn sqlite_claim_plan(core: &Core, account: AccountId) -> Option<Vec<String>> {
    let backend = core.store.read.get_database_backend();
    if backend != sea_orm::DatabaseBackend::Sqlite {
        return None;
    }
    let plan = core
        .store
        .read
        .query_all(sea_orm::Statement::from_sql_and_values(
            backend,
            format!("EXPLAIN QUERY PLAN {}", claim::claimable(backend)),
            [account.0.into(), 10i64.into()],
        ))
        .await
        .expect("plan");
    Some(
        plan.iter()
            .map(|row| row.try_get::<String>("", "detail").expect("detail"))
            .collect(),
    )
}

/// A chat's newer request in flight holds back its older idle one: what
/// happens when another core's submit of the older one committed after the
/// newer one was claimed. Once the newer one finishes, the older one goes.
/// On SQLite, the claim's checks of a chat read its open requests only,
/// by the chat's status index, never the chat's finished history.
#[tokio::test]
async fn a_chat_s_request_in_flight_holds_back_even_an_older_one() {
    on_each_store(|core, account| async move {
        use super::entities::message_request;
        use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};

        let ids = queue_in(&core, account, "conv", &["older", "newer"]).await;
        let (older, newer) = (ids[0], ids[1]);
        let elsewhere = Uuid::new_v4();
        message_request::Entity::update_many()
            .col_expr(
                message_request::Column::LeaseSession,
                Expr::value(elsewhere),
            )
            .filter(message_request::Column::Id.eq(newer))
            .exec(&core.store.write)
            .await
            .expect("lease the newer one");
        assert!(claim(&core, account, Uuid::new_v4(), 10).await.is_empty());

        answer(&core, account, newer, "conv").await;
        let claimed = claim(&core, account, Uuid::new_v4(), 10).await;
        assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [older]);

        if let Some(steps) = sqlite_claim_plan(&core, account).await {
            // Both checks read the chat's open requests only, by key.
            let chat_reads: Vec<&String> = steps
                .iter()
                .filter(|s| s.contains("message_requests_chat_status_id"))
                .collect();
            assert_eq!(chat_reads.len(), 2, "{steps:#?}");
            assert!(
                chat_reads
                    .iter()
                    .all(|s| s.contains("(chat_id=? AND status=?")),
                "{steps:#?}"
            );
        }
    })
    .await;
}

/// Each request's `queued_behind` mark, oldest first.
async fn marks(conn: &impl ConnectionTrait) -> Vec<(Uuid, bool)> {
    let backend = conn.get_database_backend();
    conn.query_all(sea_orm::Statement::from_string(
        backend,
        "SELECT id, queued_behind FROM message_requests ORDER BY id",
    ))
    .await
    .expect("marks")
    .iter()
    .map(|row| {
        (
            row.try_get::<Uuid>("", "id").expect("id"),
            row.try_get::<bool>("", "queued_behind").expect("mark"),
        )
    })
    .collect()
}

#[tokio::test]
async fn a_chat_s_queued_requests_stay_out_of_claims_until_their_turn() {
    on_each_store(|core, account| async move {
        let first = queue_in(&core, account, "conv", &["a", "b"]).await;
        let (a, b) = (first[0], first[1]);
        let c = queue_in(&core, account, "conv", &["c"]).await[0];
        assert_eq!(
            marks(&core.store.read).await,
            [(a, false), (b, true), (c, true)]
        );
        let ids = |claimed: Vec<MessageRequest>| claimed.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(claim(&core, account, Uuid::new_v4(), 10).await), [a]);

        // Each finish, answer or cancel, lets the chat's next one go.
        answer(&core, account, a, "conv").await;
        assert_eq!(
            marks(&core.store.read).await,
            [(a, false), (b, false), (c, true)]
        );
        assert_eq!(ids(claim(&core, account, Uuid::new_v4(), 10).await), [b]);
        super::cancel::cancel(&core, account, c)
            .await
            .expect("cancel the queued one");
        let d = queue_in(&core, account, "conv", &["d"]).await[0];
        assert!(
            marks(&core.store.read).await.contains(&(d, true)),
            "b is in flight"
        );
        assert!(claim(&core, account, Uuid::new_v4(), 10).await.is_empty());
        answer(&core, account, b, "conv").await;
        assert_eq!(ids(claim(&core, account, Uuid::new_v4(), 10).await), [d]);
        let other = queue_in(&core, account, "other", &["x", "y"]).await;
        super::cancel::cancel(&core, account, other[0])
            .await
            .expect("cancel the chat's first");
        assert_eq!(
            ids(claim(&core, account, Uuid::new_v4(), 10).await),
            [other[1]]
        );

        // The claim reads the claimable index, where marked requests are not.
        if let Some(steps) = sqlite_claim_plan(&core, account).await {
            assert!(
                steps[0].contains("message_requests_claimable"),
                "{steps:#?}"
            );
        }
    })
    .await;
}

/// The `n` that `sql` (one row, a count named `n`) reads.
async fn count_of(conn: &impl ConnectionTrait, sql: &str) -> i64 {
    conn.query_one(sea_orm::Statement::from_string(
        conn.get_database_backend(),
        sql,
    ))
    .await
    .expect("count")
    .expect("a row")
    .try_get::<i64>("", "n")
    .expect("n")
}

/// A connection to `db` with the migrations before the one named
/// `migration` applied: the schema as an older chatrelay left it.
async fn migrated_before(db: &Fresh, migration: &str) -> sea_orm::DatabaseConnection {
    use chatrelay_migrations::{Migrator, MigratorTrait};

    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name() == migration)
        .expect("a migration of that name");
    let conn = sea_orm::Database::connect(&db.url).await.expect("connect");
    Migrator::up(&conn, Some(before as u32))
        .await
        .expect("older schema");
    conn
}

/// A database from before the marks: the migration marks the requests
/// already queued behind an older open one of their chat.
#[tokio::test]
async fn requests_queued_before_the_marks_existed_are_marked_by_the_migration() {
    use chatrelay_migrations::{Migrator, MigratorTrait};

    for mut db in fresh_databases().await {
        let conn = migrated_before(&db, "m20261203_000009_queue_heads").await;
        let backend = conn.get_database_backend();
        let run = |sql: &str, values: Vec<sea_orm::Value>| {
            conn.execute(sea_orm::Statement::from_sql_and_values(
                backend, sql, values,
            ))
        };
        let at = crate::model::now();
        run(
            "INSERT INTO accounts (id, name, webhook_secret, created_at) VALUES (1, 'a', 's', $1)",
            vec![at.into()],
        )
        .await
        .expect("account");
        run(
            "INSERT INTO chats (id, account_id, created_at, updated_at) \
             VALUES (1, 1, $1, $1), (2, 1, $1, $1)",
            vec![at.into()],
        )
        .await
        .expect("chats");
        let rows = [
            (1, "done"),
            (1, "executing"),
            (1, "idle"),
            (1, "idle"),
            (2, "idle"),
        ];
        let mut ids = Vec::new();
        for (chat, status) in rows {
            let id = Uuid::now_v7();
            run(
                "INSERT INTO message_requests \
                 (id, account_id, chat_id, message, response_type, thinking_time, status, \
                  queued_at, attempts) \
                 VALUES ($1, 1, $2, 'm', 'text', 'standard', $3, $4, 0)",
                vec![id.into(), i64::from(chat).into(), status.into(), at.into()],
            )
            .await
            .expect("request");
            ids.push(id);
        }
        Migrator::up(&conn, None)
            .await
            .expect("the marks' migration");
        let expected: Vec<(Uuid, bool)> = ids
            .iter()
            .zip([false, false, true, true, false])
            .map(|(id, behind)| (*id, behind))
            .collect();
        assert_eq!(marks(&conn).await, expected);
        conn.close().await.expect("close");
        db.drop_database().await;
    }
}

/// A database from before the chats' unique index held named chats only:
/// after the upgrade a ChatGPT id still names one chat of an account, and
/// chats not yet named are as many as submits make.
#[tokio::test]
async fn the_chats_unique_index_keeps_its_rule_across_the_upgrade() {
    use chatrelay_migrations::{Migrator, MigratorTrait};

    for mut db in fresh_databases().await {
        let conn = migrated_before(&db, "m20261203_000010_named_chats_index").await;
        let backend = conn.get_database_backend();
        let at = crate::model::now();
        let run = |sql: &str| {
            conn.execute(sea_orm::Statement::from_sql_and_values(
                backend,
                sql,
                vec![at.into()],
            ))
        };
        run(
            "INSERT INTO accounts (id, name, webhook_secret, created_at) \
             VALUES (1, 'a', 's', $1), (2, 'b', 's', $1)",
        )
        .await
        .expect("accounts");
        let chat = |account: i64, name: Option<&str>| {
            let name = name.map_or("NULL".to_string(), |n| format!("'{n}'"));
            format!(
                "INSERT INTO chats (account_id, chatgpt_id, created_at, updated_at) \
                 VALUES ({account}, {name}, $1, $1)"
            )
        };
        run(&chat(1, Some("conv"))).await.expect("a named chat");
        run(&chat(1, None)).await.expect("an unnamed chat");
        Migrator::up(&conn, None)
            .await
            .expect("the index's migration");

        run(&chat(1, None)).await.expect("another unnamed chat");
        run(&chat(1, None)).await.expect("and another");
        run(&chat(2, Some("conv")))
            .await
            .expect("another account's chat of the same name");
        run(&chat(1, Some("other"))).await.expect("another name");
        let duplicate = run(&chat(1, Some("conv"))).await;
        assert!(
            duplicate.is_err(),
            "a second chat of account 1 named conv: {duplicate:?}"
        );
        let named = chats::find_or_create(&conn, AccountId(1), "conv")
            .await
            .expect("find the named chat");
        assert_eq!(named.id, 1);
        let created = chats::find_or_create(&conn, AccountId(1), "new")
            .await
            .expect("create a named chat");
        assert_eq!(created.chatgpt_id.as_deref(), Some("new"));
        let count = count_of(
            &conn,
            "SELECT COUNT(*) AS n FROM chats WHERE account_id = 1",
        )
        .await;
        assert_eq!(count, 6);
        conn.close().await.expect("close");
        db.drop_database().await;
    }
}

#[tokio::test]
async fn a_mark_that_racing_transactions_left_is_cleared() {
    on_each_store(|core, account| async move {
        let ids = queue_in(&core, account, "conv", &["a", "b", "c"]).await;
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        claim(&core, account, Uuid::new_v4(), 1).await;
        answer(&core, account, a, "conv").await;
        // As if a submit that saw `a` open committed after `a` finished.
        let backend = core.store.write.get_database_backend();
        core.store
            .write
            .execute(sea_orm::Statement::from_string(
                backend,
                "UPDATE message_requests SET queued_behind = TRUE",
            ))
            .await
            .expect("mark");
        assert!(claim(&core, account, Uuid::new_v4(), 10).await.is_empty());

        let repaired = super::heads::repair(&core).await.expect("repair");
        assert_eq!(repaired.returned.into_iter().collect::<Vec<_>>(), [account]);
        // Only the chat's oldest idle request: `c` is still behind `b`.
        assert_eq!(
            marks(&core.store.read).await,
            [(a, true), (b, false), (c, true)]
        );
        let claimed = claim(&core, account, Uuid::new_v4(), 10).await;
        assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [b]);
        // Nothing left to repair.
        let again = super::heads::repair(&core).await.expect("repair");
        assert!(again.returned.is_empty());
    })
    .await;
}

#[tokio::test]
async fn an_outcome_finishes_a_request_once_and_names_its_chat() {
    on_each_store(|core, account| async move {
        let (views, _) = store(&core, account, &[submission("q", None)]).await;
        let id = views[0].request.id;
        let answer = done("conv-x");
        let failure = Outcome::Failed {
            error: "late".into(),
        };
        let applied = settle(&core, &[(account, id, &answer), (account, id, &failure)]).await;
        let finished = applied[0].as_ref().expect("the first outcome wins");
        assert_eq!(finished.status, RequestStatus::Done);
        assert_eq!(finished.response.as_deref(), Some("answer"));
        assert!(
            matches!(applied[1], Err(CoreError::FailedPrecondition(_))),
            "{:?}",
            applied[1]
        );
        let chat = chats::get(&core, account, "conv-x")
            .await
            .expect("named chat");
        assert_eq!(chat.id, finished.chat_id);
        assert_eq!(chat.title.as_deref(), Some("Title"));
        // Unknown and foreign requests are refused, and change nothing.
        let unknown = settle(&core, &[(account, Uuid::now_v7(), &answer)]).await;
        assert!(
            matches!(unknown[0], Err(CoreError::NotFound(_))),
            "{unknown:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn two_chats_answered_in_one_conversation_end_in_one_chat() {
    on_each_store(|core, account| async move {
        let (views, _) = store(
            &core,
            account,
            &[submission("a", None), submission("b", None)],
        )
        .await;
        let answer = done("same-conv");
        let applied = settle(
            &core,
            &[
                (account, views[0].request.id, &answer),
                (account, views[1].request.id, &answer),
            ],
        )
        .await;
        let chats: Vec<i64> = applied
            .iter()
            .map(|r| r.as_ref().expect("finished").chat_id)
            .collect();
        assert_eq!(chats[0], chats[1]);
        let txn = core.store.write.begin().await.expect("begin");
        let found = chats::find_or_create(&txn, account, "same-conv")
            .await
            .expect("find");
        txn.commit().await.expect("commit");
        assert_eq!(found.id, chats[0]);
    })
    .await;
}

#[tokio::test]
async fn a_result_batch_names_every_chat_and_enqueues_only_the_hooked_webhooks() {
    on_each_store(|core, plain| async move {
        let hooked = other_account(&core, "hooked", Some("http://127.0.0.1:9/hook")).await;
        let (mine, _) = store(
            &core,
            plain,
            &[
                submission("new chat", None),
                submission("first in k", Some("k")),
                submission("second in k", Some("k")),
                submission("fails", None),
            ],
        )
        .await;
        let (theirs, _) = store(&core, hooked, &[submission("theirs", None)]).await;
        let titled = |chat: &str, title: &str| Outcome::Done {
            response: format!("answer in {chat}"),
            chatgpt_id: chat.into(),
            chat_title: Some(title.into()),
        };
        let (c1, k, k2, their_c1) = (
            titled("c1", "One"),
            titled("k", "Kay"),
            titled("k2", "Kay two"),
            titled("c1", "Theirs"),
        );
        let failure = Outcome::Failed {
            error: "no luck".into(),
        };
        // The two answers in chat `k` are not named together: the second
        // moves to the chat of the conversation it was answered in.
        let applied = settle(
            &core,
            &[
                (plain, mine[0].request.id, &c1),
                (plain, mine[1].request.id, &k),
                (plain, mine[2].request.id, &k2),
                (plain, mine[3].request.id, &failure),
                (hooked, theirs[0].request.id, &their_c1),
            ],
        )
        .await;
        let applied: Vec<MessageRequest> =
            applied.into_iter().map(|r| r.expect("finished")).collect();
        let named = |account, name: &'static str| {
            let core = core.clone();
            async move { chats::get(&core, account, name).await.expect(name) }
        };
        let (c1_chat, k_chat, k2_chat) = (
            named(plain, "c1").await,
            named(plain, "k").await,
            named(plain, "k2").await,
        );
        let their_chat = named(hooked, "c1").await;
        assert_eq!(
            applied.iter().map(|r| r.chat_id).collect::<Vec<_>>(),
            [
                c1_chat.id,
                k_chat.id,
                k2_chat.id,
                mine[3].request.chat_id,
                their_chat.id
            ]
        );
        assert_eq!(
            [&c1_chat, &k_chat, &k2_chat, &their_chat].map(|c| c.title.as_deref()),
            [Some("One"), Some("Kay"), Some("Kay two"), Some("Theirs")]
        );
        assert_eq!(
            applied.iter().map(|r| r.status).collect::<Vec<_>>(),
            [
                RequestStatus::Done,
                RequestStatus::Done,
                RequestStatus::Done,
                RequestStatus::Failed,
                RequestStatus::Done
            ]
        );
        assert_eq!(
            read_row(&core, mine[2].request.id).await.chat_id,
            k2_chat.id
        );
        let deliveries: Vec<(AccountId, Uuid)> =
            crate::webhooks::list(core.store(), None, None, 10)
                .await
                .expect("deliveries")
                .into_iter()
                .map(|d| (AccountId(d.delivery.account_id), d.delivery.request_id))
                .collect();
        assert_eq!(deliveries, [(hooked, theirs[0].request.id)]);
    })
    .await;
}

#[tokio::test]
async fn a_give_back_requeues_what_a_session_held_and_says_so() {
    on_each_store(|core, account| async move {
        let (views, _) = store(&core, account, &[submission("q", None)]).await;
        let id = views[0].request.id;
        let session = Uuid::new_v4();
        assert_eq!(claim(&core, account, session, 1).await.len(), 1);

        let committed = leases::give_back(&core, leases::Which::Session(session), "test")
            .await
            .expect("give back");
        assert_eq!(committed.changes.len(), 1);
        assert_eq!(committed.changes[0].request, id);
        assert_eq!(committed.changes[0].status, RequestStatus::Idle);
        assert_eq!(committed.changes[0].cause, Cause::Requeued);
        assert_eq!(
            committed.returned.iter().copied().collect::<Vec<_>>(),
            [account]
        );

        let again = claim(&core, account, Uuid::new_v4(), 1).await;
        assert_eq!(again[0].id, id);
        assert_eq!(again[0].attempts, 2);
        // A session that holds nothing gives back nothing.
        let nothing = leases::give_back(&core, leases::Which::Session(session), "test")
            .await
            .expect("give back");
        assert!(nothing.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_request_past_its_attempts_fails_when_given_back() {
    on_each_store(|core, account| async move {
        let (views, _) = store(&core, account, &[submission("q", None)]).await;
        let max = core.config.max_attempts;
        for attempt in 1..=max {
            let session = Uuid::new_v4();
            assert_eq!(claim(&core, account, session, 1).await.len(), 1);
            let committed = leases::give_back(&core, leases::Which::Session(session), "gone")
                .await
                .expect("give back");
            let change = &committed.changes[0];
            assert_eq!(change.request, views[0].request.id);
            if attempt < max {
                assert_eq!(
                    (change.status, change.cause),
                    (RequestStatus::Idle, Cause::Requeued)
                );
            } else {
                assert_eq!(
                    (change.status, change.cause),
                    (RequestStatus::Failed, Cause::Finished)
                );
                assert!(committed.webhooks);
            }
        }
        assert!(claim(&core, account, Uuid::new_v4(), 1).await.is_empty());
    })
    .await;
}

/// The writer's side of dispatch, on both back ends: a session's claim made
/// before any work exists is not answered empty; it stands (in a sole
/// writer's writer, or in the core's claimer where cores share the
/// database) and is answered with the work submitted after it.
#[tokio::test]
async fn a_claim_made_before_the_work_exists_receives_it() {
    on_each_store(|core, account| async move {
        let session = Uuid::new_v4();
        let room = Arc::new(std::sync::atomic::AtomicUsize::new(4));
        let mut first = Store::claim(&core, account, session, room)
            .await
            .expect("claim");
        let early = tokio::time::timeout(Duration::from_millis(50), &mut first).await;
        assert!(
            early.is_err(),
            "answered before the work existed: {early:?}"
        );

        let view = crate::requests::submit(
            &core,
            Some(&key_of(&core, account).await),
            submission("late work", None),
        )
        .await
        .expect("submit");

        let claimed = tokio::time::timeout(Duration::from_secs(5), first)
            .await
            .expect("the claim is answered")
            .expect("answer")
            .expect("claim");
        assert_eq!(
            claimed.iter().map(|d| d.request.id).collect::<Vec<_>>(),
            [view.view.request.id]
        );
    })
    .await;
}

/// Who holds each of the account's requests, by id.
async fn lease_holders(core: &Core) -> std::collections::BTreeMap<Uuid, Option<Uuid>> {
    use sea_orm::EntityTrait;
    super::entities::message_request::Entity::find()
        .all(&core.store.read)
        .await
        .expect("read")
        .into_iter()
        .map(|r| (r.id, r.lease_session))
        .collect()
}

/// Claims that several sessions make at once — on PostgreSQL, gathered by
/// the core's claimer into one statement — each get only their room, and
/// every request goes to one session: the one its row names.
#[tokio::test]
async fn claims_made_together_share_the_requests_out() {
    on_each_store(|core, account| async move {
        let items: Vec<Submission> = (0..6)
            .map(|n| submission(&format!("q{n}"), Some(&format!("chat {n}"))))
            .collect();
        let (views, _) = store(&core, account, &items).await;
        let sessions: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let mut answers = Vec::new();
        for session in &sessions {
            let room = Arc::new(std::sync::atomic::AtomicUsize::new(2));
            answers.push(
                Store::claim(&core, account, *session, room)
                    .await
                    .expect("claim"),
            );
        }
        let mut given = std::collections::BTreeMap::new();
        for (session, answer) in sessions.iter().zip(answers) {
            // A claim that finds nothing stands (in the writer or the claimer).
            let Ok(answer) = tokio::time::timeout(Duration::from_millis(500), answer).await else {
                continue;
            };
            let claimed = answer.expect("answer").expect("claim");
            assert!(
                claimed.len() <= 2,
                "{} requests for a room of 2",
                claimed.len()
            );
            for delivery in claimed {
                assert_eq!(given.insert(delivery.request.id, Some(*session)), None);
            }
        }
        let all: std::collections::BTreeMap<Uuid, Option<Uuid>> = views
            .iter()
            .map(|v| (v.request.id, given.get(&v.request.id).copied().flatten()))
            .collect();
        assert_eq!(given.len(), 6, "every request claimed once: {given:?}");
        assert_eq!(lease_holders(&core).await, all);
    })
    .await;
}

/// A claim that finds nothing is not answered empty: it stands until work
/// comes. A request then submitted is leased to it as it is stored (in the
/// submit's own transaction on a sole writer, in the submit's own statement
/// on PostgreSQL), so its row names the session by the time the submitter
/// is answered, and the claim is answered with it.
#[tokio::test]
async fn a_standing_claim_gets_a_new_request_as_it_is_stored() {
    on_each_store(|core, account| async move {
        let key = key_of(&core, account).await;
        let session = Uuid::new_v4();
        let room = Arc::new(std::sync::atomic::AtomicUsize::new(2));
        let mut answer = Store::claim(&core, account, session, room)
            .await
            .expect("claim");
        if let Some(claims) = core.store.postgres_claims() {
            // The claim's statement ran, found nothing, and the claim stood.
            while claims.standing(account) == 0 {
                assert!(
                    answer.try_recv().is_err(),
                    "a claim that found nothing was answered"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert!(answer.try_recv().is_err(), "answered before any submit");
        let submitted = crate::requests::submit(
            &core,
            Some(&key),
            submission("for the waiting session", None),
        )
        .await
        .expect("submit");
        let id = submitted.view.request.id;
        assert_eq!(
            lease_holders(&core).await.get(&id),
            Some(&Some(session)),
            "leased by the time the submit was answered"
        );
        let claimed = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("answered")
            .expect("answer")
            .expect("claim");
        let ids: Vec<Uuid> = claimed.iter().map(|d| d.request.id).collect();
        assert_eq!(ids, [id]);
        assert_eq!(claimed[0].request.attempts, 1);
        assert_eq!(claimed[0].chatgpt_id, None, "a new chat has no ChatGPT id");
    })
    .await;
}

/// Renewing a session's leases does not wait for a row another
/// transaction holds (a result being written, say): it passes over that
/// row, renews the rest, and renews it on a later beat. Two updates of many
/// rows each waiting for the other would stall every write behind them for
/// PostgreSQL's deadlock timeout. (A sole writer has no other transaction.)
#[tokio::test]
async fn renewing_leases_passes_over_a_request_another_transaction_holds() {
    on_each_store(|core, account| async move {
        let (views, _) = store(
            &core,
            account,
            &[submission("held", None), submission("free", None)],
        )
        .await;
        let (held, free) = (views[0].request.id, views[1].request.id);
        let session = Uuid::new_v4();
        assert_eq!(claim(&core, account, session, 2).await.len(), 2);
        let backend = core.store.write.get_database_backend();
        core.store
            .write
            .execute(sea_orm::Statement::from_string(
                backend,
                "UPDATE message_requests SET lease_expires_at = 1",
            ))
            .await
            .expect("age the leases");
        let holder = if core.store.sole_writer() {
            None
        } else {
            let txn = core.store.write.begin().await.expect("begin");
            txn.execute(sea_orm::Statement::from_sql_and_values(
                backend,
                "SELECT id FROM message_requests WHERE id = $1 FOR UPDATE",
                [held.into()],
            ))
            .await
            .expect("hold the row");
            Some(txn)
        };
        tokio::time::timeout(Duration::from_secs(10), leases::renew(&core, &[session]))
            .await
            .expect("renewal waited for the held row")
            .expect("renew");
        let expiry = |id: Uuid| {
            let core = core.clone();
            async move {
                use sea_orm::EntityTrait;
                super::entities::message_request::Entity::find_by_id(id)
                    .one(&core.store.read)
                    .await
                    .expect("read")
                    .expect("request")
                    .lease_expires_at
            }
        };
        assert!(expiry(free).await > Some(1), "the free row was renewed");
        if let Some(txn) = holder {
            assert_eq!(expiry(held).await, Some(1), "the held row was passed over");
            txn.rollback().await.expect("rollback");
            leases::renew(&core, &[session]).await.expect("renew");
        }
        assert!(expiry(held).await > Some(1), "renewed once free");
    })
    .await;
}

/// A session that goes away before its claim is answered holds nothing
/// afterwards: a sole writer leases nothing to it, and the claimer gives
/// back what its statement leased, without counting the attempt; the next
/// session's claim gets it all.
#[tokio::test]
async fn a_claim_whose_session_went_away_leaves_nothing_leased_to_it() {
    on_each_store(|core, account| async move {
        let (views, _) = store(
            &core,
            account,
            &[submission("one", None), submission("two", None)],
        )
        .await;
        let room = || Arc::new(std::sync::atomic::AtomicUsize::new(2));
        let gone = Uuid::new_v4();
        // Where cores share the database, the session goes while the
        // claim's statement runs: it waits for a lock this test holds.
        let blocker = if core.store.sole_writer() {
            None
        } else {
            let txn = core.store.write.begin().await.expect("begin");
            txn.execute_unprepared("LOCK TABLE message_requests IN SHARE MODE")
                .await
                .expect("lock");
            Some(txn)
        };
        let abandoned = Store::claim(&core, account, gone, room())
            .await
            .expect("claim");
        if let Some(txn) = blocker {
            let waiting = "SELECT 1 FROM pg_locks WHERE NOT granted \
                 AND relation = 'message_requests'::regclass \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
            tokio::time::timeout(Duration::from_secs(5), async {
                while core
                    .store
                    .read
                    .query_one(sea_orm::Statement::from_string(
                        sea_orm::DatabaseBackend::Postgres,
                        waiting,
                    ))
                    .await
                    .expect("pg_locks")
                    .is_none()
                {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("the claim waits for the lock");
            drop(abandoned);
            txn.commit().await.expect("unlock");
        } else {
            drop(abandoned);
        }
        let next = Uuid::new_v4();
        let claimed = tokio::time::timeout(
            Duration::from_secs(5),
            Store::claim(&core, account, next, room())
                .await
                .expect("claim"),
        )
        .await
        .expect("answered")
        .expect("answer")
        .expect("claim");
        assert_eq!(
            claimed.iter().map(|d| d.request.id).collect::<Vec<_>>(),
            views.iter().map(|v| v.request.id).collect::<Vec<_>>()
        );
        // What never reached the session that went cost no attempt.
        assert_eq!(
            claimed
                .iter()
                .map(|d| d.request.attempts)
                .collect::<Vec<_>>(),
            [1, 1]
        );
        assert!(lease_holders(&core)
            .await
            .values()
            .all(|holder| *holder == Some(next)));
    })
    .await;
}

/// An API key for the account (a second key; the first was shown once).
async fn key_of(core: &Core, account: AccountId) -> String {
    let name = super::accounts::find(core.store(), account)
        .await
        .expect("read")
        .expect("account")
        .name;
    accounts::rotate_key(core.store(), &name, true)
        .await
        .expect("key")
}

#[tokio::test]
async fn transactions_roll_back_whole() {
    on_each_store(|core, account| async move {
        let txn = core.store.write.begin().await.expect("begin");
        let items = [(account, &submission("never", None))];
        submits::insert_submissions(&core, &txn, &items)
            .await
            .expect("insert");
        txn.rollback().await.expect("rollback");
        let listed = crate::requests::list(&core, account, None, None, 10, None)
            .await
            .expect("list");
        assert!(listed.items.is_empty());
        let count = count_of(&core.store.read, "SELECT COUNT(*) AS n FROM chats").await;
        assert_eq!(count, 0);
    })
    .await;
}

#[tokio::test]
async fn a_request_is_read_by_id_only_with_a_key_of_its_account() {
    on_each_store(|core, account| async move {
        let (views, _) = store(&core, account, &[submission("one", None)]).await;
        let id = views[0].request.id;
        let session = Uuid::new_v4();
        assert_eq!(claim(&core, account, session, 1).await.len(), 1);
        settle(&core, &[(account, id, &done("conv"))]).await;
        let key = key_of(&core, account).await;
        let read = crate::requests::get(&core, Some(&key), &id.to_string())
            .await
            .expect("read");
        let listed = crate::requests::list(&core, account, None, None, 10, None)
            .await
            .expect("list");
        assert_eq!(read, listed.items[0]);
        assert_eq!(read.request.status, RequestStatus::Done);
        assert_eq!(read.chat.as_deref(), Some("conv"));

        // The point reads themselves answer, not the sea-orm query they
        // fall back to.
        let hash = crate::accounts::hash_api_key(&key);
        let point = match core.store.postgres_point_reads() {
            Some(reads) => reads.request(id, &hash).await.expect("point read"),
            None => core
                .store
                .point_read(|reads| reads.request(id, &hash))
                .expect("point read"),
        };
        assert_eq!(point.as_ref(), Some(&read));

        let other = other_account(&core, "other", None).await;
        let other_key = key_of(&core, other).await;
        let err = crate::requests::get(&core, Some(&other_key), &id.to_string())
            .await
            .expect_err("another account's request");
        assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
        let err = crate::requests::get(&core, Some("cr_not_a_key"), &id.to_string())
            .await
            .expect_err("no such key");
        assert!(matches!(err, CoreError::Unauthenticated(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn batches_of_any_size_store_every_submission_with_its_chat() {
    on_each_store(|core, account| async move {
        for size in [1, 3, 40] {
            let items: Vec<Submission> = (0..size)
                .map(|i| {
                    let chat = (i % 2 == 1).then(|| format!("conv-{size}-{i}"));
                    submission(&format!("m{i}"), chat.as_deref())
                })
                .collect();
            let (views, committed) = store(&core, account, &items).await;
            assert_eq!(views.len(), size);
            assert_eq!(committed.changes.len(), size);
            for (i, view) in views.iter().enumerate() {
                assert_eq!(view.request.message, format!("m{i}"));
                assert_eq!(view.chat, items[i].chat_id);
                let row = read_row(&core, view.request.id).await;
                assert_eq!(MessageRequest::from(row.clone()), view.request);
                assert_eq!(row.status, RequestStatus::Idle);
            }
            let chats: std::collections::HashSet<i64> =
                views.iter().map(|v| v.request.chat_id).collect();
            assert_eq!(chats.len(), size, "one new chat per submission");
        }
    })
    .await;
}

// ---- cancelling, counting, sessions, deliveries -----------------------------

/// A second account, with a webhook URL if given.
async fn other_account(core: &Core, name: &str, webhook_url: Option<&str>) -> AccountId {
    AccountId(
        accounts::create(core.store(), name, webhook_url, Destinations::Any)
            .await
            .expect("account")
            .account
            .id,
    )
}

async fn read_row(core: &Core, id: Uuid) -> super::entities::message_request::Model {
    use sea_orm::EntityTrait;
    super::entities::message_request::Entity::find_by_id(id)
        .one(&core.store.read)
        .await
        .expect("read")
        .expect("request exists")
}

#[tokio::test]
async fn a_cancel_fails_an_idle_request_ends_its_lease_and_enqueues_its_webhook() {
    on_each_store(|core, _| async move {
        let account = other_account(&core, "hooked", Some("http://127.0.0.1:9/hook")).await;
        let (views, _) = store(
            &core,
            account,
            &[submission("queued", None), submission("sent", None)],
        )
        .await;
        let (queued, sent) = (views[0].request.id, views[1].request.id);
        let session = Uuid::new_v4();
        assert_eq!(claim(&core, account, session, 1).await[0].id, queued);

        for id in [queued, sent] {
            let (view, committed) = super::cancel::cancel(&core, account, id)
                .await
                .expect("cancel");
            assert_eq!(view.request.status, RequestStatus::Failed);
            assert_eq!(view.request.error_message.as_deref(), Some("cancelled"));
            assert!(view.request.completed_at.is_some());
            let changes: Vec<_> = committed
                .changes
                .iter()
                .map(|c| (c.request, c.status, c.cause))
                .collect();
            assert_eq!(changes, [(id, RequestStatus::Failed, Cause::Cancelled)]);
            assert_eq!(
                committed.returned.iter().copied().collect::<Vec<_>>(),
                [account]
            );
            assert!(committed.webhooks);
            let row = read_row(&core, id).await;
            assert_eq!(
                (row.lease_session, row.lease_node, row.lease_expires_at),
                (None, None, None)
            );
            let delivery = crate::webhooks::list(core.store(), Some(account), None, 10)
                .await
                .expect("deliveries")
                .into_iter()
                .find(|d| d.delivery.request_id == id)
                .expect("a delivery for the cancelled request");
            let payload: serde_json::Value =
                serde_json::from_str(&delivery.delivery.payload).expect("JSON payload");
            assert_eq!(payload["status"], "failed");
            assert_eq!(payload["error"], "cancelled");
        }
        // Never delivered again: not claimed, not given back by its session.
        assert!(claim(&core, account, Uuid::new_v4(), 10).await.is_empty());
        let given_back = leases::give_back(&core, leases::Which::Session(session), "test")
            .await
            .expect("give back");
        assert!(given_back.is_empty());
        // A later answer for it is refused and changes nothing.
        let late = settle(&core, &[(account, queued, &done("conv"))]).await;
        assert!(
            matches!(late[0], Err(CoreError::FailedPrecondition(_))),
            "{late:?}"
        );
        assert_eq!(read_row(&core, queued).await.status, RequestStatus::Failed);
    })
    .await;
}

#[tokio::test]
async fn only_an_idle_request_of_the_account_can_be_cancelled() {
    on_each_store(|core, account| async move {
        let (views, _) = store(
            &core,
            account,
            &[
                submission("running", None),
                submission("answered", None),
                submission("broken", None),
            ],
        )
        .await;
        let ids: Vec<Uuid> = views.iter().map(|v| v.request.id).collect();
        outcomes::mark_executing(&core, account, ids[0], Uuid::new_v4())
            .await
            .expect("executing");
        let failure = Outcome::Failed {
            error: "boom".into(),
        };
        settle(
            &core,
            &[(account, ids[1], &done("c")), (account, ids[2], &failure)],
        )
        .await;
        let refusal = |id| {
            let core = core.clone();
            async move {
                match super::cancel::cancel(&core, account, id).await {
                    Err(CoreError::FailedPrecondition(why)) => why,
                    other => panic!("cancel of {id}: {other:?}"),
                }
            }
        };
        assert_eq!(
            refusal(ids[0]).await,
            "request is executing; only an idle request can be cancelled"
        );
        assert_eq!(refusal(ids[1]).await, "request is already done");
        assert_eq!(refusal(ids[2]).await, "request is already failed");
        assert_eq!(
            read_row(&core, ids[0]).await.status,
            RequestStatus::Executing
        );

        let other = other_account(&core, "other", None).await;
        let (theirs, _) = store(&core, other, &[submission("theirs", None)]).await;
        for id in [theirs[0].request.id, Uuid::now_v7()] {
            let refused = super::cancel::cancel(&core, account, id).await;
            assert!(
                matches!(&refused, Err(CoreError::NotFound(why)) if why == "request not found"),
                "{refused:?}"
            );
        }
        assert_eq!(
            read_row(&core, theirs[0].request.id).await.status,
            RequestStatus::Idle
        );
    })
    .await;
}

/// On SQLite, the plans of the queue-depth gauges' counts (`EXPLAIN QUERY
/// PLAN`, by the statuses counted); `None` on PostgreSQL.
async fn sqlite_count_plans(
    core: &Core,
) -> Option<std::collections::HashMap<&'static [RequestStatus], Vec<String>>> {
    use sea_orm::QueryTrait;

    let backend = core.store.read.get_database_backend();
    if backend != sea_orm::DatabaseBackend::Sqlite {
        return None;
    }
    let mut plans = std::collections::HashMap::new();
    let counted: [&'static [RequestStatus]; 3] = [
        &RequestStatus::OPEN,
        &[RequestStatus::Idle],
        &[RequestStatus::Executing],
    ];
    for statuses in counted {
        let query = super::requests::counting(backend, statuses).build(backend);
        let plan = core
            .store
            .read
            .query_all(sea_orm::Statement::from_sql_and_values(
                backend,
                format!("EXPLAIN QUERY PLAN {}", query.sql),
                query.values.map(|v| v.0).unwrap_or_default(),
            ))
            .await
            .expect("plan");
        let steps = plan
            .iter()
            .map(|row| row.try_get::<String>("", "detail").expect("detail"))
            .collect();
        plans.insert(statuses, steps);
    }
    Some(plans)
}

#[tokio::test]
async fn counts_group_the_account_s_requests_by_status_and_chat() {
    on_each_store(|core, account| async move {
        let (views, _) = store(
            &core,
            account,
            &[
                submission("a", Some("conv")),
                submission("b", Some("conv")),
                submission("c", None),
                submission("d", None),
            ],
        )
        .await;
        let other = other_account(&core, "other", None).await;
        store(&core, other, &[submission("theirs", Some("conv"))]).await;
        settle(&core, &[(account, views[0].request.id, &done("conv"))]).await;
        outcomes::mark_executing(&core, account, views[2].request.id, Uuid::new_v4())
            .await
            .expect("executing");
        super::cancel::cancel(&core, account, views[3].request.id)
            .await
            .expect("cancel");

        let all = super::requests::counts(&core.store, account, None)
            .await
            .expect("counts");
        assert_eq!(
            (all.idle, all.executing, all.done, all.failed),
            (1, 1, 1, 1)
        );
        let chat = views[0].request.chat_id;
        let of_chat = super::requests::counts(&core.store, account, Some(chat))
            .await
            .expect("counts");
        assert_eq!(
            (
                of_chat.idle,
                of_chat.executing,
                of_chat.done,
                of_chat.failed
            ),
            (1, 0, 1, 0)
        );
        let listed = super::requests::list(&core.store, account, None, Some(chat), None, 10)
            .await
            .expect("list");
        assert_eq!(
            listed.iter().map(|v| v.request.id).collect::<Vec<_>>(),
            [views[1].request.id, views[0].request.id]
        );
        let idle_of_chat = super::requests::list(
            &core.store,
            account,
            Some(RequestStatus::Idle),
            Some(chat),
            None,
            10,
        )
        .await
        .expect("list");
        assert_eq!(idle_of_chat.len(), 1);
        // Every account's, as the queue-depth gauges count them.
        let count = |statuses: &'static [RequestStatus]| {
            let core = core.clone();
            async move {
                super::requests::count(&core.store, statuses)
                    .await
                    .expect("count")
            }
        };
        assert_eq!(count(&RequestStatus::OPEN).await, 3);
        assert_eq!(count(&[RequestStatus::Idle]).await, 2);
        assert_eq!(count(&[RequestStatus::Executing]).await, 1);
        if let Some(plans) = sqlite_count_plans(&core).await {
            // By index alone; executing requests by their own index.
            for (statuses, plan) in &plans {
                assert!(
                    plan.iter().all(|step| !step.starts_with("SCAN")),
                    "{statuses:?}: {plan:#?}"
                );
            }
            assert!(
                plans[&[RequestStatus::Executing][..]]
                    .iter()
                    .any(|step| step.contains("message_requests_executing")),
                "{plans:#?}"
            );
        }

        // The chat check: another account's chat is not found.
        assert!(chats::check_owned(&core, account, chat).await.is_ok());
        assert!(matches!(
            chats::check_owned(&core, other, chat).await,
            Err(CoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn session_rows_are_listed_with_their_leases_until_they_lapse() {
    use super::sessions::{self, SessionRow};
    on_each_store(|core, account| async move {
        let (node, other_node) = (Uuid::new_v4(), Uuid::new_v4());
        let row = |id, account| SessionRow {
            id,
            account,
            connected_at: crate::model::now(),
        };
        let (first, second, gone) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let other = other_account(&core, "other", None).await;
        sessions::record(&core.store, node, &[row(first, account)], &[])
            .await
            .expect("record");
        sessions::record(
            &core.store,
            other_node,
            &[
                row(second, account),
                row(gone, account),
                row(Uuid::now_v7(), other),
            ],
            &[],
        )
        .await
        .expect("record");
        sessions::record(&core.store, other_node, &[], &[gone])
            .await
            .expect("record");
        // Recording a row twice is harmless.
        sessions::record(&core.store, node, &[row(first, account)], &[])
            .await
            .expect("record again");
        store(
            &core,
            account,
            &[
                submission("x", None),
                submission("y", None),
                submission("z", None),
            ],
        )
        .await;
        assert_eq!(claim(&core, account, second, 2).await.len(), 2);

        let since = crate::model::now_millis() - 60_000;
        let listed = sessions::list(&core.store, account, since)
            .await
            .expect("list");
        let seen: Vec<(Uuid, Uuid, u32)> =
            listed.iter().map(|s| (s.id, s.node, s.in_flight)).collect();
        assert_eq!(seen, [(first, node, 0), (second, other_node, 2)]);

        // Rows not refreshed since `since` are not listed; a refresh counts
        // the node's rows and brings them back.
        let later = crate::model::now_millis() + 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(sessions::list(&core.store, account, later)
            .await
            .expect("list")
            .is_empty());
        assert_eq!(
            sessions::refresh(&core.store, node).await.expect("refresh"),
            1
        );
        let listed = sessions::list(&core.store, account, later)
            .await
            .expect("list");
        assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [first]);

        // Replacing makes the node's rows exactly those given.
        let third = Uuid::now_v7();
        sessions::replace(&core.store, node, &[row(third, account)])
            .await
            .expect("replace");
        let listed = sessions::list(&core.store, account, later)
            .await
            .expect("list");
        assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [third]);

        // The sweep deletes what was not seen since its cutoff (the other
        // node's rows here); forgetting a node deletes its rows.
        assert_eq!(sessions::sweep(&core.store, later).await.expect("sweep"), 2);
        sessions::forget_node(&core.store, node)
            .await
            .expect("forget");
        assert!(sessions::list(&core.store, account, since)
            .await
            .expect("list")
            .is_empty());
    })
    .await;
}

/// A delivery row for `request` of `account`, as the worker leaves one.
async fn delivery_row(
    core: &Core,
    account: AccountId,
    request: Uuid,
    status: super::entities::webhook_delivery::DeliveryStatus,
) -> Uuid {
    use super::entities::webhook_delivery;
    use sea_orm::{ActiveModelTrait, Set};
    let at = crate::model::now();
    let id = Uuid::now_v7();
    webhook_delivery::ActiveModel {
        id: Set(id),
        account_id: Set(account.0),
        request_id: Set(request),
        url: Set("https://hooks.example/x".into()),
        payload: Set("{}".into()),
        status: Set(status),
        attempts: Set(1),
        retry_from: Set(0),
        // Far in the future: the worker leaves a pending one alone.
        next_attempt_at: Set(crate::model::now_millis() + 3_600_000),
        claimed_by: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
        last_attempt_at: Set(Some(at)),
    }
    .insert(&core.store.write)
    .await
    .expect("insert delivery");
    id
}

#[tokio::test]
async fn deliveries_are_listed_and_retried_within_their_account_a_page_at_a_time() {
    use super::{deliveries, entities::webhook_delivery::DeliveryStatus};
    use crate::error::CoreResult;
    on_each_store(|core, account| async move {
        let other = other_account(&core, "other", None).await;
        let (mine, _) = store(
            &core,
            account,
            &[submission("a", None), submission("b", None), submission("c", None)],
        )
        .await;
        let (theirs, _) = store(&core, other, &[submission("t", None)]).await;
        let failed = delivery_row(&core, account, mine[0].request.id, DeliveryStatus::Failed).await;
        let succeeded =
            delivery_row(&core, account, mine[1].request.id, DeliveryStatus::Succeeded).await;
        let pending =
            delivery_row(&core, account, mine[2].request.id, DeliveryStatus::Pending).await;
        let foreign =
            delivery_row(&core, other, theirs[0].request.id, DeliveryStatus::Failed).await;

        let ids = |views: Vec<deliveries::DeliveryView>| {
            views.into_iter().map(|v| v.delivery.id).collect::<Vec<_>>()
        };
        let first = deliveries::list(&core.store, Some(account), None, 2)
            .await
            .expect("list");
        assert_eq!(ids(first), [pending, succeeded]);
        let next = deliveries::list(&core.store, Some(account), Some(succeeded), 2)
            .await
            .expect("list");
        assert_eq!(ids(next), [failed]);
        let everyone = deliveries::list(&core.store, None, None, 10)
            .await
            .expect("list");
        assert_eq!(ids(everyone), [foreign, pending, succeeded, failed]);

        let not_found = |result: CoreResult<deliveries::DeliveryView>| {
            assert!(
                matches!(&result, Err(CoreError::NotFound(why)) if why == "webhook delivery not found"),
                "{result:?}"
            );
        };
        not_found(deliveries::get(&core.store, Some(account), foreign).await);
        not_found(deliveries::retry(&core.store, Some(account), foreign).await);
        not_found(deliveries::retry(&core.store, Some(account), Uuid::now_v7()).await);
        let refused = deliveries::retry(&core.store, Some(account), pending).await;
        assert!(
            matches!(&refused, Err(CoreError::FailedPrecondition(why))
                if why == "delivery is pending; it will be attempted again by itself"),
            "{refused:?}"
        );
        for id in [failed, succeeded] {
            let retried = deliveries::retry(&core.store, Some(account), id)
                .await
                .expect("retry");
            assert_eq!(retried.delivery.status, DeliveryStatus::Pending);
            assert!(retried.delivery.next_attempt_at <= crate::model::now_millis());
            assert_eq!(retried.delivery.retry_from, 1);
        }
        // The operator's retry reaches every account's.
        let operator = deliveries::retry(&core.store, None, foreign)
            .await
            .expect("retry");
        assert_eq!(operator.delivery.status, DeliveryStatus::Pending);
    })
    .await;
}

/// A webhook claim takes the due deliveries oldest first, but of each
/// account no more than leave it its share (4) in flight, counting the
/// attempts already out; the next claim takes nothing more of a full one.
#[tokio::test]
async fn a_webhook_claim_leaves_each_account_its_share_oldest_first() {
    use super::{
        entities::webhook_delivery::{self, DeliveryStatus},
        outbox,
    };
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    on_each_store(|core, account| async move {
        assert_eq!(core.config.webhooks.concurrency_per_account, 4);
        let other = other_account(&core, "other", None).await;
        let many: Vec<_> = (0..6).map(|i| submission(&format!("m{i}"), None)).collect();
        let (mine, _) = store(&core, account, &many).await;
        let (theirs, _) = store(
            &core,
            other,
            &[submission("t0", None), submission("t1", None)],
        )
        .await;
        // Due an hour from now (so the core's own worker leaves them be),
        // one after another: mine, theirs, then mine again.
        let mut rows = Vec::new();
        for (who, request) in [
            (account, &mine[0]),
            (account, &mine[1]),
            (other, &theirs[0]),
            (account, &mine[2]),
            (account, &mine[3]),
            (other, &theirs[1]),
            (account, &mine[4]),
            (account, &mine[5]),
        ] {
            rows.push(delivery_row(&core, who, request.request.id, DeliveryStatus::Pending).await);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The first of mine is out: claimed by a core, its claim not lapsed.
        webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::ClaimedBy,
                sea_orm::sea_query::Expr::value(Uuid::new_v4()),
            )
            .col_expr(
                webhook_delivery::Column::NextAttemptAt,
                sea_orm::sea_query::Expr::value(crate::model::now_millis() + 7_200_000),
            )
            .filter(webhook_delivery::Column::Id.eq(rows[0]))
            .exec(&core.store.write)
            .await
            .expect("claim one");
        let then = crate::model::now_millis() + 5_400_000;
        let claimed = |mut claimed: Vec<webhook_delivery::Model>| {
            claimed.sort_by_key(|d| (d.next_attempt_at, d.id));
            claimed.into_iter().map(|d| d.id).collect::<Vec<_>>()
        };
        // Up to the limit, in due order.
        let first = outbox::claim_due(&core, then, 2).await.expect("claim");
        assert!(first.iter().all(|d| d.claimed_by == Some(core.node_id)));
        assert!(first
            .iter()
            .all(|d| d.attempts == 2 && d.next_attempt_at > then));
        assert_eq!(claimed(first), [rows[1], rows[2]]);
        // Mine: two more (with the one claimed and the one out, four);
        // theirs: the other.
        let second = outbox::claim_due(&core, then, 16).await.expect("claim");
        assert_eq!(claimed(second), [rows[3], rows[4], rows[5]]);
        // My last two are due, but my share is out.
        let third = outbox::claim_due(&core, then, 16).await.expect("claim");
        assert!(claimed(third).is_empty());
    })
    .await;
}

/// Attempts recorded together each get their own outcome: a success, a
/// failure to be retried, and a late answer for a delivery a newer claim
/// has taken (recorded, but the delivery is left to the newer claim).
#[tokio::test]
async fn webhook_attempts_settled_together_each_get_their_outcome() {
    use super::{
        entities::{
            webhook_attempt,
            webhook_delivery::{self, DeliveryStatus},
        },
        outbox,
    };
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    on_each_store(|core, account| async move {
        let (mine, _) = store(
            &core,
            account,
            &[
                submission("a", None),
                submission("b", None),
                submission("c", None),
            ],
        )
        .await;
        let mut ids = Vec::new();
        for request in &mine {
            ids.push(
                delivery_row(&core, account, request.request.id, DeliveryStatus::Pending).await,
            );
        }
        let then = crate::model::now_millis() + 5_400_000;
        let mut claimed = outbox::claim_due(&core, then, 16).await.expect("claim");
        claimed.sort_by_key(|d| d.id);
        assert_eq!(claimed.len(), 3);
        // The third one's answer comes from an attempt before its claim.
        let mut late = claimed[2].clone();
        late.attempts -= 1;
        let outcome = |error: Option<&str>| outbox::Outcome {
            attempted_at: crate::model::now(),
            duration_ms: 3,
            url: "https://hooks.example/x".into(),
            status_code: Some(if error.is_some() { 500 } else { 200 }),
            error: error.map(str::to_string),
        };
        let (ok, failed) = (outcome(None), outcome(Some("HTTP 500")));
        let settled = outbox::settle_all(
            &core,
            &[(&claimed[0], &ok), (&claimed[1], &failed), (&late, &ok)],
        )
        .await;
        let settled: Vec<_> = settled.into_iter().map(|s| s.expect("settled")).collect();
        assert_eq!(
            settled,
            [
                Some(DeliveryStatus::Succeeded),
                Some(DeliveryStatus::Pending),
                None
            ]
        );
        let row = |id: Uuid| {
            let core = core.clone();
            async move {
                webhook_delivery::Entity::find_by_id(id)
                    .one(&core.store.read)
                    .await
                    .expect("read")
                    .expect("row")
            }
        };
        assert_eq!(row(ids[0]).await.status, DeliveryStatus::Succeeded);
        let retried = row(ids[1]).await;
        assert_eq!(
            (retried.status, retried.claimed_by),
            (DeliveryStatus::Pending, None)
        );
        let taken = row(ids[2]).await;
        assert_eq!(taken.claimed_by, Some(core.node_id));
        let recorded = webhook_attempt::Entity::find()
            .filter(webhook_attempt::Column::DeliveryId.is_in(ids.clone()))
            .all(&core.store.read)
            .await
            .expect("attempts");
        assert_eq!(recorded.len(), 3);
    })
    .await;
}

/// The registry's bookkeeping against the table: rows of sessions that
/// open and end, and the rewrite when the table lost rows of live sessions
/// (swept while the core could not reach the database).
#[tokio::test]
async fn a_core_rewrites_its_session_rows_when_they_drifted() {
    use super::sessions;
    on_each_store(|core, account| async move {
        let registry = &core.dispatch.registry;
        // A change queued after another is written after it: once the
        // later one is answered, the earlier one is done. (Sessions of
        // another account, so the listing does not show them.)
        let elsewhere = other_account(&core, "elsewhere", None).await;
        let barrier = || async {
            registry.opened(Uuid::now_v7(), elsewhere).await;
        };
        let listed = || async {
            sessions::list(&core.store, account, crate::model::now_millis() - 60_000)
                .await
                .expect("list")
                .into_iter()
                .map(|s| (s.id, s.node))
                .collect::<Vec<_>>()
        };
        let (kept, ended) = (Uuid::now_v7(), Uuid::now_v7());
        registry.opened(kept, account).await;
        registry.opened(ended, account).await;
        assert_eq!(
            listed().await,
            [(kept, core.node_id), (ended, core.node_id)]
        );
        registry.ended(ended).await;
        barrier().await;
        assert_eq!(listed().await, [(kept, core.node_id)]);

        sessions::forget_node(&core.store, core.node_id)
            .await
            .expect("lose the rows");
        assert!(listed().await.is_empty());
        registry.refresh().await;
        barrier().await;
        barrier().await;
        assert_eq!(listed().await, [(kept, core.node_id)]);
    })
    .await;
}

/// PostgreSQL: a hot table that grew past its statistics is analyzed, and
/// one that did not is left alone, so no connection keeps planning its
/// statements for the empty table it first saw.
#[tokio::test]
async fn postgres_analyzes_hot_tables_as_they_grow() {
    on_each_store(|core, account| async move {
        if core.store.postgres_point_reads().is_none() {
            return; // SQLite plans each statement as it prepares it.
        }
        let reltuples = || async {
            let row = core
                .store
                .read
                .query_one(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT reltuples::float8 FROM pg_class WHERE relname = 'message_requests'",
                ))
                .await
                .expect("pg_class")
                .expect("message_requests");
            row.try_get_by_index::<f64>(0).expect("reltuples")
        };
        assert_eq!(reltuples().await, -1.0, "a new table has no statistics");
        let grown = super::postgres::statistics::analyze_grown(&core)
            .await
            .expect("look");
        assert!(grown.is_empty(), "{grown:?}");

        let items: Vec<Submission> = (0..1_200)
            .map(|i| submission(&format!("q{i}"), None))
            .collect();
        for chunk in items.chunks(300) {
            store(&core, account, chunk).await;
        }
        // A connection reports its changes to the statistics at most once a
        // second, so the growth shows within a few seconds (here, or in the
        // core's own task).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            super::postgres::statistics::analyze_grown(&core)
                .await
                .expect("analyze");
            if reltuples().await >= 0.0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "message_requests was never analyzed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(reltuples().await, 1_200.0);
        let again = super::postgres::statistics::analyze_grown(&core)
            .await
            .expect("look again");
        assert!(!again.iter().any(|t| t == "message_requests"), "{again:?}");
    })
    .await;
}
