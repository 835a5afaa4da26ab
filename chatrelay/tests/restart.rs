//! Data outlives the process: restarts of an in-process chatrelay on the same
//! database, and the real `chatrelay` binary — account administration,
//! `serve`, a kill and a second start.

mod common;

use common::{
    process::{create_account, http_get, http_submit, run, Served},
    rest::{id_of, list},
    TestApp, TestDb,
};
use reqwest::StatusCode;
use serde_json::json;

// ---- in-process restarts ----------------------------------------------------------

#[tokio::test]
async fn requests_chats_and_keys_survive_a_restart() {
    let db = TestDb::new().await;
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    let (_, with_chat) = app
        .submit(
            &key,
            json!({
                "message": "continue",
                "chat_id": "chatgpt-kept",
                "response_type": "thinking",
                "thinking_time": "extended",
            }),
        )
        .await;
    let without_chat = app.submit_message(&key, "new chat").await;
    let requests_before = list(&app, &key, "/api/chat/requests/").await;
    let chats_before = list(&app, &key, "/api/chat/chats/").await;
    assert_eq!(requests_before.len(), 2);
    assert_eq!(chats_before.len(), 2);
    app.stop().await;

    let app = TestApp::start(&db).await;

    for request in [&with_chat, &without_chat] {
        let (status, got) = app
            .get(&key, &format!("/api/chat/requests/{}/", id_of(request)))
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(&got, request);
    }
    assert_eq!(
        list(&app, &key, "/api/chat/requests/").await,
        requests_before
    );
    assert_eq!(list(&app, &key, "/api/chat/chats/").await, chats_before);
    let (status, chat) = app.get(&key, "/api/chat/chats/chatgpt-kept/").await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    app.stop().await;
}

#[tokio::test]
async fn same_chat_id_reuses_the_chat_after_a_restart() {
    let db = TestDb::new().await;
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    app.submit(
        &key,
        json!({ "message": "one", "chat_id": "chatgpt-again" }),
    )
    .await;
    app.stop().await;

    let app = TestApp::start(&db).await;
    let (status, created) = app
        .submit(
            &key,
            json!({ "message": "two", "chat_id": "chatgpt-again" }),
        )
        .await;

    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["chat"], "chatgpt-again");
    assert_eq!(list(&app, &key, "/api/chat/chats/").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn newest_first_holds_across_a_restart() {
    let db = TestDb::new().await;
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    let first = app.submit_message(&key, "before").await;
    app.stop().await;

    let app = TestApp::start(&db).await;
    let second = app.submit_message(&key, "after").await;

    let listed = list(&app, &key, "/api/chat/requests/").await;
    assert_eq!(listed, [second.clone(), first]);
    let chats = list(&app, &key, "/api/chat/chats/").await;
    assert_eq!(chats.len(), 2);
    assert!(
        chats[0]["id"].as_i64() > chats[1]["id"].as_i64(),
        "{chats:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn other_account_stays_isolated_after_a_restart() {
    let db = TestDb::new().await;
    let app = TestApp::start(&db).await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let created = app.submit_message(&alice, "alice's").await;
    app.stop().await;

    let app = TestApp::start(&db).await;
    let (status, _) = app
        .get(&bob, &format!("/api/chat/requests/{}/", id_of(&created)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(list(&app, &bob, "/api/chat/requests/").await.is_empty());
    assert_eq!(list(&app, &alice, "/api/chat/requests/").await.len(), 1);
    app.stop().await;
}

// ---- the real binary --------------------------------------------------------------

#[tokio::test]
async fn account_create_prints_secret_line_and_key_alone_on_last_line() {
    let db = TestDb::new().await;

    let (key, lines) = create_account(&db, "acme").await;

    assert!(key.starts_with("cr_"), "last line {key:?}");
    assert_eq!(key.trim(), key, "nothing but the key on the last line");
    assert!(!key.contains(' '), "last line {key:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("whsec_") && !l.contains(' ')),
        "no whsec_ line in {lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("acme")), "{lines:?}");
}

#[tokio::test]
async fn account_create_refuses_a_duplicate_name() {
    let db = TestDb::new().await;
    create_account(&db, "acme").await;

    let (ok, _, stderr) = run(&db, &["account", "create", "--name", "acme"]).await;

    assert!(!ok, "a second account named acme was created");
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[tokio::test]
async fn account_create_with_webhook_url_and_list_show_it() {
    let db = TestDb::new().await;
    let (key, _) = create_account(&db, "plain").await;
    let (ok, _, stderr) = run(
        &db,
        &[
            "account",
            "create",
            "--name",
            "hooked",
            "--webhook-url",
            "https://user:pw@example.com/hook?token=s3cret",
        ],
    )
    .await;
    assert!(ok, "{stderr}");

    let (ok, lines, stderr) = run(&db, &["account", "list"]).await;

    assert!(ok, "{stderr}");
    let plain = lines
        .iter()
        .find(|l| l.contains("plain"))
        .unwrap_or_else(|| panic!("plain not listed: {lines:?}"));
    let hooked = lines
        .iter()
        .find(|l| l.contains("hooked"))
        .unwrap_or_else(|| panic!("hooked not listed: {lines:?}"));
    assert!(hooked.contains("https://example.com/hook"), "{hooked}");
    assert!(
        !hooked.contains("s3cret") && !hooked.contains("pw@"),
        "credentials in the URL are not listed: {hooked}"
    );
    assert!(plain.contains(&key[..11]), "key prefix listed: {plain}");
    assert!(
        lines.iter().all(|l| !l.contains(&key)),
        "the full API key must never be listed: {lines:?}"
    );
}

#[tokio::test]
async fn account_set_webhook_sets_and_clears_the_url() {
    let db = TestDb::new().await;
    create_account(&db, "acme").await;

    let (ok, lines, stderr) = run(
        &db,
        &[
            "account",
            "set-webhook",
            "--name",
            "acme",
            "--url",
            "http://127.0.0.1:9/hook",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        lines.concat().contains("http://127.0.0.1:9/hook"),
        "{lines:?}"
    );
    let (_, listed, _) = run(&db, &["account", "list"]).await;
    assert!(listed.concat().contains("http://127.0.0.1:9/hook"));

    let (ok, _, stderr) = run(&db, &["account", "set-webhook", "--name", "acme"]).await;
    assert!(ok, "{stderr}");
    let (_, listed, _) = run(&db, &["account", "list"]).await;
    assert!(!listed.concat().contains("http://127.0.0.1:9/hook"));

    let (ok, _, _) = run(
        &db,
        &[
            "account",
            "set-webhook",
            "--name",
            "acme",
            "--url",
            "not a url",
        ],
    )
    .await;
    assert!(!ok, "an invalid webhook URL was accepted");
    let (ok, _, _) = run(&db, &["account", "set-webhook", "--name", "nobody"]).await;
    assert!(!ok, "an unknown account was accepted");
}

#[tokio::test]
async fn account_rotate_webhook_secret_prints_a_new_secret() {
    let db = TestDb::new().await;
    let (_, created) = create_account(&db, "acme").await;
    let old = created
        .iter()
        .find(|l| l.starts_with("whsec_"))
        .expect("whsec_ line")
        .clone();

    let (ok, lines, stderr) =
        run(&db, &["account", "rotate-webhook-secret", "--name", "acme"]).await;

    assert!(ok, "{stderr}");
    let new = lines.last().expect("output");
    assert!(new.starts_with("whsec_"), "{lines:?}");
    assert_ne!(new, &old);
}

#[tokio::test]
async fn migrate_applies_migrations_to_a_fresh_database() {
    let db = TestDb::new().await;

    let (ok, lines, stderr) = run(&db, &["migrate"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(lines.last().map(String::as_str), Some("migrations applied"));
    let (ok, _, stderr) = run(&db, &["migrate"]).await;
    assert!(ok, "migrate is idempotent: {stderr}");

    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    app.submit_message(&key, "on a migrated database").await;
    app.stop().await;
}

#[tokio::test]
async fn served_binary_keeps_requests_across_a_kill_and_restart() {
    let db = TestDb::new().await;
    let (key, _) = create_account(&db, "acme").await;

    let served = Served::start(&db).await;
    let (status, created) = http_submit(
        &served.http,
        &key,
        json!({ "message": "survive", "chat_id": "chatgpt-durable" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    served.kill().await;

    let served = Served::start(&db).await;
    let (status, got) = http_get(
        &served.http,
        &key,
        &format!("/api/chat/requests/{}/", id_of(&created)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got, created);
    let (status, chat) = http_get(&served.http, &key, "/api/chat/chats/chatgpt-durable/").await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    served.kill().await;
}

#[tokio::test]
async fn served_binary_answers_grpc_health_on_its_announced_address() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let db = TestDb::new().await;
    let served = Served::start(&db).await;

    let channel = tonic::transport::Channel::from_shared(served.grpc.clone())
        .expect("gRPC URL")
        .connect()
        .await
        .expect("connect to the core");
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .expect("health check")
        .into_inner();

    assert_eq!(response.status(), ServingStatus::Serving);
    served.kill().await;
}

#[tokio::test]
async fn rotate_key_revokes_old_keys_of_a_running_server() {
    let db = TestDb::new().await;
    let (old, _) = create_account(&db, "acme").await;
    let served = Served::start(&db).await;
    let (status, _) = http_get(&served.http, &old, "/api/chat/requests/").await;
    assert_eq!(status, StatusCode::OK);

    let (ok, lines, stderr) = run(&db, &["account", "rotate-key", "--name", "acme"]).await;
    assert!(ok, "{stderr}");
    let new = lines.last().expect("new key").clone();
    assert!(new.starts_with("cr_") && new != old, "{lines:?}");

    let (status, body) = http_get(&served.http, &old, "/api/chat/requests/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = http_get(&served.http, &new, "/api/chat/requests/").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (ok, lines, stderr) = run(
        &db,
        &["account", "rotate-key", "--name", "acme", "--keep-existing"],
    )
    .await;
    assert!(ok, "{stderr}");
    let newest = lines.last().expect("newest key").clone();
    for key in [&new, &newest] {
        let (status, body) = http_get(&served.http, key, "/api/chat/requests/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    served.kill().await;
}
