//! Retention: finished requests past `CHATRELAY_RETENTION` (or `chatrelay
//! prune --older-than`) are deleted with their webhook rows and the chats
//! they leave empty; open and recent requests, and chats still in use, stay.

mod common;

use std::time::Duration;

use common::{core::TestCore, TestApp, TestDb};
use serde_json::json;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(86_400);

/// A port nothing listens on: each webhook attempt fails at once.
const NOWHERE: &str = "http://127.0.0.1:9/hook";

async fn start(db: &TestDb, retention: Option<Duration>) -> TestApp {
    TestApp::start_with(db, |core, _| {
        core.webhooks.retry_schedule =
            common::core::RetrySchedule::parse("none").expect("schedule");
        core.retention = retention;
    })
    .await
}

/// Submits a message, in the ChatGPT chat `chat` if given.
async fn submit(app: &TestApp, key: &str, chat: Option<&str>) -> Uuid {
    let mut body = json!({ "message": "hello" });
    if let Some(chat) = chat {
        body["chat_id"] = json!(chat);
    }
    let (status, created) = app.submit(key, body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("id").parse().expect("UUID")
}

/// Submits and finishes a request: done in ChatGPT chat `chat`, or failed.
async fn finished(app: &TestApp, key: &str, chat: Option<&str>) -> Uuid {
    let id = submit(app, key, chat).await;
    let core = app.core();
    let account = core.account_id_of_key(key).await;
    match chat {
        Some(chat) => core
            .complete(account, id, "answer".into(), chat.into(), None)
            .await
            .map(drop),
        None => core.fail(account, id, "it broke".into()).await.map(drop),
    }
    .expect("finish");
    core.wake_webhooks();
    id
}

/// Waits until no delivery of `account` is pending.
async fn webhooks_settled(core: &TestCore, account: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let views = core.deliveries(account).await;
        if views
            .iter()
            .all(|v| v.delivery.status != common::core::DeliveryStatus::Pending)
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{views:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn submit_with_idempotency_key(
    app: &TestApp,
    key: &str,
    idempotency_key: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = app
        .client
        .post(app.url("/api/chat/submit/"))
        .header("X-API-Key", key)
        .header("Idempotency-Key", idempotency_key)
        .json(&json!({ "message": "keyed" }))
        .send()
        .await
        .expect("submit");
    common::json_of(response).await
}

async fn status_of(app: &TestApp, key: &str, path: String) -> u16 {
    app.get(key, &path).await.0.as_u16()
}

#[tokio::test]
async fn retention_deletes_old_finished_requests_their_webhooks_and_emptied_chats() {
    let db = TestDb::new().await;
    let app = start(&db, None).await;
    let key = app.account_with_webhook("acme", Some(NOWHERE)).await;
    let old_alone = finished(&app, &key, Some("chat-alone")).await;
    let old_shared = finished(&app, &key, Some("chat-shared")).await;
    let old_failed = finished(&app, &key, None).await;
    let core = app.core();
    webhooks_settled(&core, "acme").await;
    assert_eq!(core.deliveries("acme").await.len(), 3);
    core.age_finished_requests(chrono::Duration::days(40)).await;
    let recent = finished(&app, &key, Some("chat-recent")).await;
    let open = submit(&app, &key, Some("chat-shared")).await;
    webhooks_settled(&core, "acme").await;
    app.stop().await;

    let app = start(&db, Some(30 * DAY)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status_of(&app, &key, format!("/api/chat/requests/{old_alone}/")).await != 404 {
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for gone in [old_shared, old_failed] {
        assert_eq!(
            status_of(&app, &key, format!("/api/chat/requests/{gone}/")).await,
            404
        );
    }
    for kept in [recent, open] {
        assert_eq!(
            status_of(&app, &key, format!("/api/chat/requests/{kept}/")).await,
            200
        );
    }
    assert_eq!(
        status_of(&app, &key, "/api/chat/chats/chat-alone/".into()).await,
        404
    );
    assert_eq!(
        status_of(&app, &key, "/api/chat/chats/chat-shared/".into()).await,
        200
    );
    assert_eq!(
        status_of(&app, &key, "/api/chat/chats/chat-recent/".into()).await,
        200
    );
    let (_, chats) = app.get(&key, "/api/chat/chats/").await;
    assert_eq!(chats.as_array().map(Vec::len), Some(2), "{chats}");
    let core = app.core();
    let deliveries = core.deliveries("acme").await;
    let delivered_for: Vec<Uuid> = deliveries.iter().map(|v| v.delivery.request_id).collect();
    assert_eq!(delivered_for, [recent]);
    let attempts_kept: usize = deliveries.iter().map(|v| v.attempts.len()).sum();
    assert_eq!(core.webhook_attempt_count().await, attempts_kept as u64);
    app.stop().await;
}

#[tokio::test]
async fn prune_command_deletes_only_what_is_older_than_asked() {
    let db = TestDb::new().await;
    let app = start(&db, None).await;
    let key = app.account_with_webhook("acme", Some(NOWHERE)).await;
    let old = finished(&app, &key, Some("chat-old")).await;
    let open = submit(&app, &key, None).await;
    let core = app.core();
    let keyed = submit_with_idempotency_key(&app, &key, "k-1").await;
    assert_eq!(keyed.0, 201);
    let keyed_id: Uuid = keyed.1["id"].as_str().expect("id").parse().expect("UUID");
    let account = core.account_id_of_key(&key).await;
    core.fail(account, keyed_id, "it broke".into())
        .await
        .expect("fail");
    webhooks_settled(&core, "acme").await;
    core.age_finished_requests(chrono::Duration::days(40)).await;
    app.stop().await;

    let (ok, lines, stderr) = common::process::run(&db, &["prune", "--older-than", "60d"]).await;
    assert!(ok, "{stderr}");
    assert!(lines.concat().contains("deleted 0 requests"), "{lines:?}");
    let (ok, lines, stderr) = common::process::run(&db, &["prune", "--older-than", "30d"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(
        lines.concat(),
        "deleted 2 requests, 2 webhook deliveries, 2 webhook attempts, 2 empty chats"
    );

    let app = start(&db, None).await;
    assert_eq!(
        status_of(&app, &key, format!("/api/chat/requests/{old}/")).await,
        404
    );
    // The key named a request that is gone: it is free again.
    let again = submit_with_idempotency_key(&app, &key, "k-1").await;
    assert_eq!(again.0, 201, "{}", again.1);
    assert_ne!(again.1["id"], keyed_id.to_string());
    assert_eq!(
        status_of(&app, &key, format!("/api/chat/requests/{open}/")).await,
        200
    );
    app.stop().await;
}
