//! Retried submits: with an `Idempotency-Key`, a client whose submit timed
//! out can send it again and get the request the first one created —
//! never a second request the extension would run twice.

mod common;

use chatrelay_proto::v1::{self as pb, chat_service_client::ChatServiceClient};
use common::{rest::list, TestApp, TestDb};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn submit_with_key(
    app: &TestApp,
    api_key: &str,
    idempotency_key: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/api/chat/submit/"))
        .header("X-API-Key", api_key)
        .header("Idempotency-Key", idempotency_key)
        .json(&body)
        .send()
        .await
        .expect("submit");
    common::json_of(response).await
}

#[tokio::test]
async fn a_retried_submit_with_the_same_key_answers_200_with_the_first_request() {
    let (app, key) = TestApp::with_account().await;
    let body = json!({ "message": "hello", "response_type": "thinking" });
    let (status, first) = submit_with_key(&app, &key, "retry-1", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = submit_with_key(&app, &key, "retry-1", body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first);
    // Without the key, the same body is a new request.
    let (status, other) = app.submit(&key, json!({ "message": "hello" })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(other["id"], first["id"]);
    assert_eq!(list(&app, &key, "/api/chat/requests/").await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn the_same_key_with_a_different_submission_is_409_and_stores_nothing() {
    let (app, key) = TestApp::with_account().await;
    let (status, _) = submit_with_key(&app, &key, "k", json!({ "message": "one" })).await;
    assert_eq!(status, StatusCode::CREATED);
    for different in [
        json!({ "message": "two" }),
        json!({ "message": "one", "thinking_time": "extended" }),
        json!({ "message": "one", "chat_id": "conv" }),
    ] {
        let (status, body) = submit_with_key(&app, &key, "k", different).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(
            body,
            json!({ "detail": "Idempotency-Key: already used for a different submission within the last 24 hours" })
        );
    }
    assert_eq!(list(&app, &key, "/api/chat/requests/").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_account() {
    let (app, key) = TestApp::with_account().await;
    let other = app.account("other").await;
    let body = json!({ "message": "same" });
    let (status, mine) = submit_with_key(&app, &key, "shared", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, theirs) = submit_with_key(&app, &other, "shared", body).await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    assert_ne!(mine["id"], theirs["id"]);
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400_naming_it() {
    let (app, key) = TestApp::with_account().await;
    let (status, body) =
        submit_with_key(&app, &key, &"k".repeat(256), json!({ "message": "x" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "detail": "Idempotency-Key: must be 1 to 255 printable ASCII characters" })
    );
    let (status, _) = submit_with_key(&app, &key, " ", json!({ "message": "x" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(list(&app, &key, "/api/chat/requests/").await.is_empty());
    app.stop().await;
}

/// Many submits with one key at once — on one core, or spread over two
/// cores on PostgreSQL — store one request; one caller gets `201`, every
/// other `200` with the same request.
#[tokio::test]
async fn concurrent_submits_with_one_key_store_one_request() {
    let db = TestDb::new().await;
    let first = TestApp::start(&db).await;
    let key = first.account("acme").await;
    let second = if db.is_postgres() {
        Some(TestApp::start(&db).await)
    } else {
        None
    };
    let apps: Vec<&TestApp> = std::iter::once(&first).chain(second.as_ref()).collect();
    let body = json!({ "message": "once only" });
    let answers = futures::future::join_all((0..24).map(|i| {
        let app = apps[i % apps.len()];
        submit_with_key(app, &key, "storm", body.clone())
    }))
    .await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let repeated = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!((created, repeated), (1, 23), "{answers:?}");
    let ids: std::collections::BTreeSet<String> =
        answers.iter().map(|(_, b)| b["id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(list(&first, &key, "/api/chat/requests/").await.len(), 1);
    if let Some(second) = second {
        second.stop().await;
    }
    first.stop().await;
}

#[tokio::test]
async fn grpc_submit_takes_the_key_in_metadata_and_flags_a_repeat() {
    let (app, key) = TestApp::with_account().await;
    let mut client = ChatServiceClient::connect(app.grpc.clone())
        .await
        .expect("connect");
    let call = || {
        let mut request = tonic::Request::new(pb::SubmitMessageRequest {
            message: "over gRPC".into(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("x-api-key", key.parse().expect("key"));
        request
            .metadata_mut()
            .insert("idempotency-key", "grpc-1".parse().expect("key"));
        request
    };
    let first = client.submit_message(call()).await.expect("first");
    assert!(first.metadata().get("idempotent-replayed").is_none());
    let again = client.submit_message(call()).await.expect("again");
    assert_eq!(
        again
            .metadata()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(again.get_ref().id, first.get_ref().id);
    app.stop().await;
}
