//! Cancelling an idle request: `POST /api/chat/requests/{id}/cancel/` and
//! gRPC `CancelRequest`. The request becomes `failed` ("cancelled"), its
//! webhook and live event follow, it is never delivered again, and a
//! session that was sent it gets an error frame for its later answer — on
//! one core, or on another core sharing PostgreSQL.

mod common;

use chatrelay_proto::v1 as pb;
use common::{
    grpc::{chat_client, with_key},
    receiver::Receiver,
    rest::{assert_recent_timestamp, id_of, post_raw},
    sse::EventStream,
    ws::{request_id, Extension},
    TestApp, TestDb, ACCOUNT,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tonic::Code;

fn cancel_path(id: &str) -> String {
    format!("/api/chat/requests/{id}/cancel/")
}

/// The request as `GET /api/chat/requests/{id}/` returns it.
async fn get(app: &TestApp, key: &str, id: &str) -> Value {
    let (status, body) = app.get(key, &format!("/api/chat/requests/{id}/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn cancelling_an_idle_request_fails_it_and_answers_with_it() {
    let (app, key) = TestApp::with_account().await;
    let created = app
        .submit(
            &key,
            json!({ "message": "never mind", "response_type": "instant" }),
        )
        .await
        .1;
    let id = id_of(&created);

    // No body and no Content-Type needed.
    let (status, cancelled) = app.post(&key, &cancel_path(id)).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled, get(&app, &key, id).await);
    let mut expected = created.clone();
    expected["status"] = json!("failed");
    expected["error_message"] = json!("cancelled");
    expected["completed_at"] = cancelled["completed_at"].clone();
    assert_eq!(cancelled, expected);
    assert_recent_timestamp(&cancelled["completed_at"]);

    // `{}` as a JSON body is fine too; so is the path without its slash.
    let other = id_of(&app.submit_message(&key, "this one too").await).to_string();
    let (status, body) = post_raw(
        &app,
        &format!("/api/chat/requests/{other}/cancel"),
        Some(&key),
        Some("application/json"),
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["error_message"], "cancelled");
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_request_fires_its_webhook_and_its_live_event() {
    let mut receiver = Receiver::start().await;
    let app = TestApp::fresh().await;
    let key = app
        .account_with_webhook(ACCOUNT, Some(&receiver.url()))
        .await;
    let mut events = EventStream::of(&app, &key).await;
    let created = app
        .submit(
            &key,
            json!({ "message": "drop it", "response_type": "thinking", "thinking_time": "extended" }),
        )
        .await
        .1;
    let id = id_of(&created);
    assert_eq!(events.next_request().await["status"], "idle");

    let (status, cancelled) = app.post(&key, &cancel_path(id)).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(events.next_request().await, cancelled);

    let webhook = receiver.next().await;
    assert_eq!(
        webhook.json(),
        json!({
            "request_id": id,
            "status": "failed",
            "message": "drop it",
            "response": null,
            "error": "cancelled",
            "response_type": "thinking",
            "thinking_time": "extended",
        })
    );
    app.stop().await;
}

#[tokio::test]
async fn only_an_idle_request_can_be_cancelled() {
    let (app, key) = TestApp::with_account().await;
    let mut ext = Extension::connect(&app, &key).await;
    let mut ids = Vec::new();
    for message in ["running", "answered", "broken"] {
        ids.push(id_of(&app.submit_message(&key, message).await).to_string());
        assert_eq!(request_id(&ext.recv_request().await), ids[ids.len() - 1]);
    }
    ext.executing(&ids[0]).await;
    ext.respond(&ids[1], "an answer", "chatgpt-1", None).await;
    ext.fail(&ids[2], "ChatGPT is at capacity").await;
    let running = app.wait_for_status(&key, &ids[0], "executing").await;
    app.wait_for_status(&key, &ids[1], "done").await;
    app.wait_for_status(&key, &ids[2], "failed").await;

    for (id, detail) in [
        (
            &ids[0],
            "request is executing; only an idle request can be cancelled",
        ),
        (&ids[1], "request is already done"),
        (&ids[2], "request is already failed"),
    ] {
        let (status, body) = app.post(&key, &cancel_path(id)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body, json!({ "detail": detail }));
    }
    // Nothing changed.
    assert_eq!(get(&app, &key, &ids[0]).await, running);
    assert_eq!(
        get(&app, &key, &ids[2]).await["error_message"],
        "ChatGPT is at capacity"
    );
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn cancel_of_an_unknown_foreign_or_malformed_id_is_404() {
    let (app, key) = TestApp::with_account().await;
    let other_key = app.account("other").await;
    let theirs = id_of(&app.submit_message(&other_key, "theirs").await).to_string();
    for id in [
        theirs.as_str(),
        "01a21011-1fa4-753d-ae57-c79d18316531",
        "not-a-uuid",
    ] {
        let (status, body) = app.post(&key, &cancel_path(id)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
        assert_eq!(body, json!({ "detail": "request not found" }));
    }
    assert_eq!(get(&app, &other_key, &theirs).await["status"], "idle");

    let (status, body) = post_raw(&app, &cancel_path(&theirs), None, None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "detail": "missing API key (X-API-Key header)" })
    );
    let (status, body) = app.post("cr_wrong", &cancel_path(&theirs)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({ "detail": "invalid API key" }));
    assert_eq!(get(&app, &other_key, &theirs).await["status"], "idle");
    app.stop().await;
}

/// A session keeps the slot of a request cancelled after it was sent, until
/// it answers for it: its status update and its answer get error frames,
/// the request stays cancelled, and only then does the next request go out.
#[tokio::test]
async fn a_request_cancelled_while_a_session_holds_it_is_never_delivered_again() {
    let (app, key) = TestApp::with_account_configured(|core, _| core.session_window = 1).await;
    let mut ext = Extension::connect(&app, &key).await;
    let held = id_of(&app.submit_message(&key, "sent, then cancelled").await).to_string();
    assert_eq!(request_id(&ext.recv_request().await), held);

    let (status, cancelled) = app.post(&key, &cancel_path(&held)).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    let next = id_of(&app.submit_message(&key, "waits for the slot").await).to_string();

    ext.executing(&held).await;
    let refused = ext.recv_error().await;
    assert_eq!(refused["request_id"], held.as_str());
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("already failed"), "{refused}");
    // The extension is still running it: its slot is still taken.
    ext.assert_nothing_pending().await;

    ext.respond(&held, "too late", "chatgpt-late", None).await;
    let refused = ext.recv_error().await;
    assert_eq!(refused["request_id"], held.as_str());
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("already failed"),
        "{refused}"
    );
    // Its answer freed the slot: the next request goes out.
    assert_eq!(request_id(&ext.recv_request().await), next);
    assert_eq!(get(&app, &key, &held).await, cancelled);

    // A new session gets what the old one left unfinished, and not the
    // cancelled request.
    ext.close().await;
    let mut ext = Extension::connect(&app, &key).await;
    assert_eq!(request_id(&ext.recv_request().await), next);
    ext.assert_nothing_pending().await;
    assert_eq!(get(&app, &key, &held).await, cancelled);
    ext.close().await;
    app.stop().await;
}

/// Requests queued in a chat wait for its open one; cancelling the one
/// whose turn is next, or one further back, lets the rest go in order.
#[tokio::test]
async fn cancelling_requests_queued_in_a_chat_keeps_its_turns_in_order() {
    let (app, key) = TestApp::with_account().await;
    let mut ids = Vec::new();
    for (message, chat) in [
        ("a", "conv"),
        ("b", "conv"),
        ("c", "conv"),
        ("x", "other"),
        ("y", "other"),
    ] {
        let created = app
            .submit(&key, json!({ "message": message, "chat_id": chat }))
            .await
            .1;
        ids.push(id_of(&created).to_string());
    }
    let [a, b, c, x, y] = <[String; 5]>::try_from(ids).expect("five");
    // The next in its chat (nothing delivered yet), and one further back.
    for cancelled in [&x, &b] {
        let (status, body) = app.post(&key, &cancel_path(cancelled)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let mut ext = Extension::connect(&app, &key).await;
    assert_eq!(request_id(&ext.recv_request().await), a);
    assert_eq!(request_id(&ext.recv_request().await), y);
    ext.assert_nothing_pending().await;
    ext.respond(&a, "one", "conv", None).await;
    assert_eq!(request_id(&ext.recv_request().await), c);
    ext.assert_nothing_pending().await;
    ext.close().await;
    app.stop().await;
}

/// A session on one core holds the request; a client cancels it through
/// another core. Meaningful on PostgreSQL; SQLite is one core per database
/// file, so there the same body runs with both roles on one core.
#[tokio::test]
async fn a_request_cancelled_through_another_core_is_refused_to_the_session_holding_it() {
    let db = TestDb::new().await;
    let holding = TestApp::start(&db).await;
    let other = if db.is_postgres() {
        Some(TestApp::start(&db).await)
    } else {
        None
    };
    let cancelling = other.as_ref().unwrap_or(&holding);
    let key = holding.account(ACCOUNT).await;
    let mut ext = Extension::connect(&holding, &key).await;
    let mut events = EventStream::of(&holding, &key).await;
    let id = id_of(&cancelling.submit_message(&key, "cancel me elsewhere").await).to_string();
    assert_eq!(request_id(&ext.recv_request().await), id);
    assert_eq!(events.next_request().await["status"], "idle");

    let (status, cancelled) = cancelling.post(&key, &cancel_path(&id)).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["error_message"], "cancelled");
    // The holding core's subscribers hear of it too.
    assert_eq!(events.next_request().await, cancelled);

    ext.fail(&id, "gave up").await;
    let refused = ext.recv_error().await;
    assert_eq!(refused["request_id"], id.as_str());
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("already failed"),
        "{refused}"
    );
    assert_eq!(get(&holding, &key, &id).await, cancelled);
    ext.close().await;
    if let Some(other) = other {
        other.stop().await;
    }
    holding.stop().await;
}

#[tokio::test]
async fn grpc_cancel_request_answers_with_the_request_or_failed_precondition() {
    let (app, key) = TestApp::with_account().await;
    let mut client = chat_client(&app).await;
    let id = id_of(&app.submit_message(&key, "over gRPC").await).to_string();
    let cancel = |id: &str| {
        with_key(
            &key,
            pb::CancelRequestRequest {
                request_id: id.to_string(),
            },
        )
    };

    let cancelled = client
        .cancel_request(cancel(&id))
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.id, id);
    assert_eq!(cancelled.status(), pb::RequestStatus::Failed);
    assert_eq!(cancelled.error_message.as_deref(), Some("cancelled"));
    assert!(cancelled.completed_at.is_some());

    let again = client
        .cancel_request(cancel(&id))
        .await
        .expect_err("already failed");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(again.message(), "request is already failed");
    let unknown = client
        .cancel_request(cancel("nope"))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(unknown.message(), "request not found");
    app.stop().await;
}
