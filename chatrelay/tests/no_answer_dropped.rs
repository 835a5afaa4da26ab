//! An extension's answer is data: once a frame is valid, the core applies
//! it, retrying through database failures, and never asks the extension to
//! send it again. And a request never stays leased by a session that ended.

mod common;

use std::time::Duration;

use common::{
    ws::{request_id, Extension},
    TestApp, TestDb,
};
use serde_json::Value;

/// Waits until `/metrics` has a line starting with `prefix` whose value
/// is at least `at_least`.
async fn wait_for_metric(app: &TestApp, prefix: &str, at_least: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = app.metrics().await;
        let value = metrics
            .lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        if value >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{prefix} never reached {at_least}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// While the control table `name` holds a row, the database refuses every
/// update of a request that matches `when` (a trigger, the same condition
/// on both back ends), as it would while failing over or out of space.
/// [`stop_refusing`] empties the table.
async fn refuse_updates(app: &TestApp, name: &str, when: &str) {
    let table = [
        format!("CREATE TABLE {name} (x INT)"),
        format!("INSERT INTO {name} VALUES (1)"),
    ];
    let held = format!("{when} AND EXISTS (SELECT 1 FROM {name})");
    let postgres = [
        format!(
            "CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN \
               IF {held} THEN RAISE EXCEPTION '{name}'; END IF; \
               RETURN NEW; END $$ LANGUAGE plpgsql"
        ),
        format!(
            "CREATE TRIGGER {name} BEFORE UPDATE ON message_requests \
               FOR EACH ROW EXECUTE FUNCTION {name}()"
        ),
    ];
    let sqlite = [format!(
        "CREATE TRIGGER {name} BEFORE UPDATE ON message_requests \
         WHEN {held} BEGIN SELECT RAISE(ABORT, '{name}'); END"
    )];
    let postgres: Vec<&str> = table.iter().chain(&postgres).map(String::as_str).collect();
    let sqlite: Vec<&str> = table.iter().chain(&sqlite).map(String::as_str).collect();
    app.run_sql(&postgres, &sqlite).await;
}

/// Lets the updates [`refuse_updates`] held back through again.
async fn stop_refusing(app: &TestApp, name: &str) {
    let delete = format!("DELETE FROM {name}");
    app.run_sql(&[&delete], &[&delete]).await;
}

#[tokio::test]
async fn an_answer_the_database_refuses_for_a_while_is_retried_not_bounced() {
    let db = TestDb::new().await;
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    let mut ext = Extension::connect(&app, &key).await;
    let id = app.submit_message(&key, "hello").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(request_id(&ext.recv_request().await), id);

    // The database refuses to finish any request.
    refuse_updates(&app, "hold_results", "NEW.status = 'done'").await;
    ext.respond(&id, "the answer", "conv-held", Some("Held"))
        .await;
    // The core has tried, and failed, to store the answer.
    wait_for_metric(&app, "chatrelay_write_retries_total{write=\"result\"}", 1.0).await;
    assert_eq!(
        app.get(&key, &format!("/api/chat/requests/{id}/")).await.1["status"],
        "idle"
    );
    stop_refusing(&app, "hold_results").await;

    let done = app.wait_for_status(&key, &id, "done").await;
    assert_eq!(done["response"], "the answer");
    assert_eq!(done["chat"], "conv-held");
    // The extension was never told to send the answer again.
    ext.assert_nothing_pending().await;
    app.stop().await;
}

/// Two cores (or two sessions) name two chats with the same ChatGPT id at
/// once: the unique index lets one commit and fails the other, which must
/// still land — in the chat that won. A transaction the test holds open
/// plays the other core, so the race is certain rather than likely. On
/// SQLite a second writer waits for the first, and the race cannot happen.
#[tokio::test]
async fn an_answer_naming_a_chat_another_core_is_naming_lands_in_that_chat() {
    use sqlx::{Connection, Executor};

    let db = TestDb::new().await;
    if !db.is_postgres() {
        eprintln!("PostgreSQL only: SQLite has one writer, so two chats cannot be named at once");
        return;
    }
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    let mut ext = Extension::connect(&app, &key).await;
    let id = app.submit_message(&key, "race me").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(request_id(&ext.recv_request().await), id);

    let mut other_core = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let mut watcher = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    other_core.execute("BEGIN").await.expect("begin");
    other_core
        .execute(
            "INSERT INTO chats (account_id, chatgpt_id, title, created_at, updated_at) \
             SELECT id, 'conv-race', 'Named elsewhere', now(), now() FROM accounts WHERE name = 'acme'",
        )
        .await
        .expect("name the chat in the other transaction");

    ext.respond(&id, "answer", "conv-race", Some("Race")).await;
    // The core's write now waits on the other transaction's index entry.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE NOT granted")
            .fetch_one(&mut watcher)
            .await
            .expect("pg_locks");
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the answer never waited on the other transaction"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    other_core.execute("COMMIT").await.expect("commit");

    let done = app.wait_for_status(&key, &id, "done").await;
    assert_eq!(done["response"], "answer");
    assert_eq!(done["chat"], "conv-race");
    let (status, chat) = app.get(&key, "/api/chat/chats/conv-race/").await;
    assert_eq!(status, 200, "{chat}");
    assert_eq!(chat["title"], "Race");
    let (_, chats) = app.get(&key, "/api/chat/chats/").await;
    let named: Vec<&Value> = chats
        .as_array()
        .expect("chats")
        .iter()
        .filter(|c| c["chat_id"] == "conv-race")
        .collect();
    assert_eq!(named.len(), 1, "{chats}");
    ext.assert_nothing_pending().await;
    app.stop().await;
}

/// A session ends while the database refuses to give its requests back.
/// Its core must not keep renewing their lease as if the session lived: once
/// the database takes writes again they go back to the queue and reach
/// another session — not when the core restarts.
#[tokio::test]
async fn requests_of_a_session_that_ended_are_given_back_even_if_the_first_give_back_fails() {
    let db = TestDb::new().await;
    let app = TestApp::start_with(&db, |core, _| core.lease_ttl_secs = 2).await;
    let key = app.account("acme").await;
    let mut first = Extension::connect(&app, &key).await;
    let id = app.submit_message(&key, "hold me").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(request_id(&first.recv_request().await), id);

    refuse_updates(
        &app,
        "hold_give_back",
        "OLD.lease_session IS NOT NULL AND NEW.lease_session IS NULL AND NEW.status = 'idle'",
    )
    .await;
    let mut second = Extension::connect(&app, &key).await;
    wait_for_metric(&app, "chatrelay_extension_sessions ", 2.0).await;
    first.close().await;
    // The first session is gone: its give-back was tried, and refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !app
        .metrics()
        .await
        .contains("chatrelay_extension_sessions 1\n")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first session never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_refusing(&app, "hold_give_back").await;

    let frame = second
        .try_recv(Duration::from_secs(10))
        .await
        .expect("the request reaches the second session");
    assert_eq!(frame["type"], "new_request", "{frame}");
    assert_eq!(request_id(&frame), id);
    app.stop().await;
}

/// A claim the database refuses for a while (a trigger refuses every new
/// lease) is tried again by the session: the backlog reaches the extension
/// once the database takes claims again, with no submit or answer to wake
/// the session.
#[tokio::test]
async fn a_claim_the_database_refuses_for_a_while_is_tried_again() {
    let db = TestDb::new().await;
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    let id = app.submit_message(&key, "waiting").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    refuse_updates(
        &app,
        "hold_claims",
        "OLD.lease_session IS NULL AND NEW.lease_session IS NOT NULL",
    )
    .await;
    let mut ext = Extension::connect(&app, &key).await;
    // The session has claimed, and the database refused. (The socket is
    // read meanwhile, as a real extension's is.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !app
        .metrics()
        .await
        .contains("chatrelay_claim_failures_total ")
    {
        let frame = ext.try_recv(Duration::from_millis(20)).await;
        assert!(
            frame.is_none(),
            "delivered while claims are refused: {frame:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "no claim was refused"
        );
    }
    stop_refusing(&app, "hold_claims").await;

    assert_eq!(request_id(&ext.recv_request().await), id);
    ext.respond(&id, "at last", "conv-late", None).await;
    app.wait_for_status(&key, &id, "done").await;
    app.stop().await;
}
