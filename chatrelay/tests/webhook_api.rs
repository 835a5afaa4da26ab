//! An account's webhook deliveries over the API: `GET /api/chat/webhooks/`
//! (newest first, with their attempts, a page at a time) and
//! `POST /api/chat/webhooks/{id}/retry/`, and their gRPC counterparts — the
//! operations of `chatrelay webhook list|retry`, scoped to the caller's
//! account, against a real receiver.

mod common;

use chatrelay_proto::v1 as pb;
use common::{
    core::RetrySchedule,
    eventually,
    grpc::{chat_client, with_key},
    receiver::{Receiver, Reply},
    rest::{assert_keys, assert_recent_timestamp, get_page, get_without_key, id_of, post_raw},
    ws::{request_id, Extension},
    TestApp, ACCOUNT,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tonic::Code;

const WEBHOOKS: &str = "/api/chat/webhooks/";

fn retry_path(id: &str) -> String {
    format!("/api/chat/webhooks/{id}/retry/")
}

/// A chatrelay retrying webhooks on `schedule`, with an account whose
/// webhooks go to `receiver`: the app and the account's key.
async fn app_with_receiver(receiver: &Receiver, schedule: &str) -> (TestApp, String) {
    let schedule = RetrySchedule::parse(schedule).expect("schedule");
    let app = TestApp::fresh_configured(|core, _| core.webhooks.retry_schedule = schedule).await;
    let key = app
        .account_with_webhook(ACCOUNT, Some(&receiver.url()))
        .await;
    (app, key)
}

/// Submits `message` and answers it as the extension would; returns its id.
async fn finish(app: &TestApp, key: &str, ext: &mut Extension, message: &str) -> String {
    let id = id_of(&app.submit_message(key, message).await).to_string();
    assert_eq!(request_id(&ext.recv_request().await), id);
    ext.respond(
        &id,
        &format!("answer to {message}"),
        &format!("chat-{id}"),
        None,
    )
    .await;
    id
}

/// The account's deliveries, newest first (the first page).
async fn deliveries(app: &TestApp, key: &str) -> Vec<Value> {
    let (status, body) = app.get(key, WEBHOOKS).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("a JSON array").clone()
}

/// Waits until the delivery `id` has `status` with `attempts` attempts.
async fn until_delivery(
    app: &TestApp,
    key: &str,
    id: &str,
    status: &str,
    attempts: usize,
) -> Value {
    eventually(
        &format!("delivery {id} {status} after {attempts} attempts"),
        || async move {
            deliveries(app, key).await.into_iter().find(|d| {
                d["id"] == id
                    && d["status"] == status
                    && d["attempts"].as_array().unwrap().len() == attempts
            })
        },
    )
    .await
}

fn assert_attempt(attempt: &Value, number: u64, status_code: Value, error: Value) {
    assert_keys(
        attempt,
        &[
            "attempt",
            "attempted_at",
            "duration_ms",
            "status_code",
            "error",
        ],
    );
    assert_eq!(attempt["attempt"], number, "{attempt}");
    assert_recent_timestamp(&attempt["attempted_at"]);
    assert!(attempt["duration_ms"].is_u64(), "{attempt}");
    assert_eq!(attempt["status_code"], status_code, "{attempt}");
    assert_eq!(attempt["error"], error, "{attempt}");
}

#[tokio::test]
async fn a_failed_delivery_is_listed_with_its_attempts_and_retried_until_it_succeeds() {
    let mut receiver = Receiver::start().await;
    receiver.script([Reply::Status(500)]);
    let (app, key) = app_with_receiver(&receiver, "none").await;
    let mut ext = Extension::connect(&app, &key).await;
    let request = finish(&app, &key, &mut ext, "hello").await;
    let webhook_id = receiver.next().await.webhook_id();

    let failed = until_delivery(&app, &key, &webhook_id, "failed", 1).await;
    assert_keys(
        &failed,
        &[
            "id",
            "request_id",
            "url",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "updated_at",
        ],
    );
    assert_eq!(failed["request_id"], request.as_str());
    assert_eq!(failed["url"], receiver.url());
    assert_eq!(failed["next_attempt_at"], Value::Null);
    assert_recent_timestamp(&failed["created_at"]);
    assert_recent_timestamp(&failed["updated_at"]);
    assert_attempt(
        &failed["attempts"][0],
        1,
        json!(500),
        json!("HTTP 500 Internal Server Error"),
    );

    // Retry: pending, due now, the same delivery; the receiver gets it again.
    let (status, retried) = app.post(&key, &retry_path(&webhook_id)).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["id"], webhook_id.as_str());
    assert_eq!(retried["status"], "pending");
    assert_recent_timestamp(&retried["next_attempt_at"]);
    assert_eq!(retried["attempts"], failed["attempts"]);
    let again = receiver.next().await;
    assert_eq!(again.webhook_id(), webhook_id);
    assert_eq!(again.json()["request_id"], request.as_str());
    let succeeded = until_delivery(&app, &key, &webhook_id, "succeeded", 2).await;
    assert_eq!(succeeded["attempts"][0], failed["attempts"][0]);
    assert_attempt(&succeeded["attempts"][1], 2, json!(200), Value::Null);
    assert_eq!(succeeded["next_attempt_at"], Value::Null);

    // A delivery that succeeded can be sent again too.
    let (status, retried) = app.post(&key, &retry_path(&webhook_id)).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["status"], "pending");
    assert_eq!(receiver.next().await.webhook_id(), webhook_id);
    until_delivery(&app, &key, &webhook_id, "succeeded", 3).await;
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn retrying_a_pending_delivery_is_a_conflict() {
    let mut receiver = Receiver::start().await;
    receiver.script([Reply::Held]);
    let (app, key) = app_with_receiver(&receiver, "none").await;
    let mut ext = Extension::connect(&app, &key).await;
    finish(&app, &key, &mut ext, "slow receiver").await;
    // The attempt is in flight, held by the receiver: the delivery is pending.
    let webhook_id = receiver.next().await.webhook_id();
    let (status, body) = app.post(&key, &retry_path(&webhook_id)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body,
        json!({ "detail": "delivery is pending; it will be attempted again by itself" })
    );
    receiver.release();
    until_delivery(&app, &key, &webhook_id, "succeeded", 1).await;
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn deliveries_are_listed_newest_first_a_page_at_a_time() {
    let mut receiver = Receiver::start().await;
    let (app, key) = app_with_receiver(&receiver, "none").await;
    let mut ext = Extension::connect(&app, &key).await;
    let mut webhook_ids = Vec::new();
    for message in ["one", "two", "three"] {
        finish(&app, &key, &mut ext, message).await;
        webhook_ids.push(receiver.next().await.webhook_id());
    }
    for id in &webhook_ids {
        until_delivery(&app, &key, id, "succeeded", 1).await;
    }
    webhook_ids.reverse();

    let (first, cursor) = get_page(&app, &key, "/api/chat/webhooks/?limit=2").await;
    let ids = |page: &[Value]| -> Vec<String> {
        page.iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first), webhook_ids[..2]);
    let cursor = cursor.expect("X-Next-Cursor on a page with more after it");
    assert_eq!(cursor, webhook_ids[1]);
    let (second, cursor) = get_page(
        &app,
        &key,
        &format!("/api/chat/webhooks/?limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&second), webhook_ids[2..]);
    assert_eq!(cursor, None);
    let (all, cursor) = get_page(&app, &key, "/api/chat/webhooks").await;
    assert_eq!(ids(&all), webhook_ids);
    assert_eq!(cursor, None);

    for (query, detail) in [
        ("limit=0", "limit: must be a whole number from 1 to 1000"),
        ("limit=1001", "limit: must be a whole number from 1 to 1000"),
        ("limit=ten", "limit: must be a whole number from 1 to 1000"),
        ("cursor=not-a-cursor", "cursor: invalid"),
    ] {
        let (status, body) = app.get(&key, &format!("{WEBHOOKS}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body, json!({ "detail": detail }), "{query}");
    }
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn another_account_s_deliveries_are_neither_listed_nor_retried() {
    let mut receiver = Receiver::start().await;
    let (app, key) = app_with_receiver(&receiver, "none").await;
    let other_key = app
        .account_with_webhook("other", Some(&receiver.url()))
        .await;
    let mut theirs = Extension::connect(&app, &other_key).await;
    finish(&app, &other_key, &mut theirs, "theirs").await;
    let their_delivery = receiver.next().await.webhook_id();
    until_delivery(&app, &other_key, &their_delivery, "succeeded", 1).await;

    assert_eq!(deliveries(&app, &key).await, Vec::<Value>::new());
    for id in [
        their_delivery.as_str(),
        "01a21013-d199-72d8-8fcf-a40d047eaf20",
        "not-a-uuid",
    ] {
        let (status, body) = app.post(&key, &retry_path(id)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
        assert_eq!(body, json!({ "detail": "webhook delivery not found" }));
    }
    // Untouched: still succeeded, after one attempt.
    let theirs_now = deliveries(&app, &other_key).await;
    assert_eq!(theirs_now[0]["status"], "succeeded");

    let (status, body) = get_without_key(&app, WEBHOOKS).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "detail": "missing API key (X-API-Key header)" })
    );
    let (status, body) = post_raw(&app, &retry_path(&their_delivery), None, None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "detail": "missing API key (X-API-Key header)" })
    );
    let (status, body) = app.post("cr_wrong", &retry_path(&their_delivery)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({ "detail": "invalid API key" }));
    theirs.close().await;
    app.stop().await;
}

#[tokio::test]
async fn grpc_lists_and_retries_webhook_deliveries() {
    let mut receiver = Receiver::start().await;
    receiver.script([Reply::Status(503)]);
    let (app, key) = app_with_receiver(&receiver, "none").await;
    let mut ext = Extension::connect(&app, &key).await;
    finish(&app, &key, &mut ext, "over gRPC").await;
    let webhook_id = receiver.next().await.webhook_id();
    until_delivery(&app, &key, &webhook_id, "failed", 1).await;

    let mut client = chat_client(&app).await;
    let listed = client
        .list_webhook_deliveries(with_key(
            &key,
            pb::ListWebhookDeliveriesRequest {
                limit: Some(1),
                cursor: None,
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.next_cursor, None);
    let delivery = &listed.deliveries[0];
    assert_eq!(delivery.id, webhook_id);
    assert_eq!(delivery.status(), pb::WebhookDeliveryStatus::Failed);
    assert_eq!(delivery.attempts[0].status_code, Some(503));
    assert_eq!(delivery.next_attempt_at, None);

    let bad = client
        .list_webhook_deliveries(with_key(
            &key,
            pb::ListWebhookDeliveriesRequest {
                limit: Some(0),
                cursor: None,
            },
        ))
        .await
        .expect_err("limit 0");
    assert_eq!(bad.code(), Code::InvalidArgument);

    let retry = |id: &str| {
        with_key(
            &key,
            pb::RetryWebhookDeliveryRequest {
                delivery_id: id.to_string(),
            },
        )
    };
    let retried = client
        .retry_webhook_delivery(retry(&webhook_id))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retried.status(), pb::WebhookDeliveryStatus::Pending);
    assert!(retried.next_attempt_at.is_some());
    assert_eq!(receiver.next().await.webhook_id(), webhook_id);
    let missing = client
        .retry_webhook_delivery(retry("nope"))
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), Code::NotFound);
    ext.close().await;
    app.stop().await;
}
