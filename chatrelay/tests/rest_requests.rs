//! `GET /api/chat/requests/` and `GET /api/chat/requests/{id}/` end to end:
//! what a request shows in each status, listing newest first, the status
//! filter, paging, account isolation and the 400s and 404s of these paths.

mod common;

use common::{
    core::RequestStatus,
    rest::{
        assert_error, assert_keys, assert_recent_timestamp, get_page, id_of, ids, list, CHAT_KEYS,
        REQUEST_KEYS,
    },
    TestApp,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn get_request_returns_what_submit_returned() {
    let (app, key) = TestApp::with_account().await;
    let created = app.submit_message(&key, "round trip").await;

    let (status, got) = app
        .get(&key, &format!("/api/chat/requests/{}/", id_of(&created)))
        .await;

    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got, created);
    app.stop().await;
}

#[tokio::test]
async fn finished_request_shows_response_chat_and_timestamps() {
    let (app, key) = TestApp::with_account().await;
    let created = app.submit_message(&key, "what is 2+2?").await;
    let id = id_of(&created).to_string();
    let chat_db_id = list(&app, &key, "/api/chat/chats/").await[0]["id"]
        .as_i64()
        .expect("chat id is an integer");

    app.core()
        .set_request_status(&id, RequestStatus::Done, Some("4"))
        .await;
    app.core()
        .name_chat(chat_db_id, "chatgpt-abc123", "Arithmetic")
        .await;

    let (status, got) = app.get(&key, &format!("/api/chat/requests/{id}/")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_keys(&got, &REQUEST_KEYS);
    assert_eq!(got["status"], "done");
    assert_eq!(got["response"], "4");
    assert_eq!(got["error_message"], Value::Null);
    assert_eq!(got["chat"], "chatgpt-abc123");
    assert_eq!(got["queued_at"], created["queued_at"]);
    assert_recent_timestamp(&got["started_at"]);
    assert_recent_timestamp(&got["completed_at"]);

    let chats = list(&app, &key, "/api/chat/chats/").await;
    assert_eq!(chats.len(), 1);
    assert_keys(&chats[0], &CHAT_KEYS);
    assert_eq!(chats[0]["id"], chat_db_id);
    assert_eq!(chats[0]["chat_id"], "chatgpt-abc123");
    assert_eq!(chats[0]["title"], "Arithmetic");
    assert_recent_timestamp(&chats[0]["updated_at"]);
    app.stop().await;
}

#[tokio::test]
async fn failed_request_shows_its_error_message() {
    let (app, key) = TestApp::with_account().await;
    let created = app.submit_message(&key, "doomed").await;
    app.core()
        .set_request_status(id_of(&created), RequestStatus::Failed, None)
        .await;

    let (status, got) = app
        .get(&key, &format!("/api/chat/requests/{}/", id_of(&created)))
        .await;

    assert_eq!(status, StatusCode::OK, "{got}");
    assert_keys(&got, &REQUEST_KEYS);
    assert_eq!(got["status"], "failed");
    assert_eq!(got["response"], Value::Null);
    assert_eq!(got["error_message"], "it broke");
    assert_recent_timestamp(&got["completed_at"]);
    app.stop().await;
}

/// On SQLite, GET reads a request through rusqlite rather than sea-orm
/// (`db::point_reads`): both must read every column the same, for a fresh
/// request and for a finished one whose chat is named. On PostgreSQL there
/// is no such path.
#[tokio::test]
async fn point_reads_read_what_sea_orm_reads() {
    let (app, key) = TestApp::with_account().await;
    let other_key = app.account("other").await;
    let core = app.core();
    let Some(point_reads) = core.point_reads() else {
        assert!(
            !app.db_url.starts_with("sqlite:"),
            "SQLite files get point reads"
        );
        app.stop().await;
        return;
    };
    let created = app.submit_message(&key, "fresh").await;
    let finished = app.submit_message(&key, "finished").await;
    core.set_request_status(id_of(&finished), RequestStatus::Done, Some("4"))
        .await;
    let chat_db_id = list(&app, &key, "/api/chat/chats/").await[0]["id"]
        .as_i64()
        .expect("chat id");
    core.name_chat(chat_db_id, "chatgpt-abc123", "Arithmetic")
        .await;

    for request in [&created, &finished] {
        let id = id_of(request);
        let expected = core.read_request(id).await;
        let read = point_reads.request(id, &key);
        assert_eq!(read, Some(expected));
        // Scoped to the key's account.
        assert_eq!(point_reads.request(id, &other_key), None);
    }
    // The submit path's key lookup.
    let account = core.account_id_of_key(&key).await;
    assert_eq!(point_reads.account_of_key(&key), Some(account));
    assert_eq!(point_reads.account_of_key("no such key"), None);
    app.stop().await;
}

#[tokio::test]
async fn list_requests_is_newest_first_with_full_shapes() {
    let (app, key) = TestApp::with_account().await;
    let mut submitted = Vec::new();
    for n in 0..5 {
        submitted.push(app.submit_message(&key, &format!("message {n}")).await);
    }

    let listed = list(&app, &key, "/api/chat/requests/").await;

    submitted.reverse();
    assert_eq!(listed, submitted);
    for item in &listed {
        assert_keys(item, &REQUEST_KEYS);
    }
    app.stop().await;
}

#[tokio::test]
async fn list_requests_pages_with_limit_and_cursor() {
    let (app, key) = TestApp::with_account().await;
    let mut expected = Vec::new();
    for n in 0..5 {
        expected.push(id_of(&app.submit_message(&key, &format!("m{n}")).await).to_string());
    }
    expected.reverse();

    let (first, cursor) = get_page(&app, &key, "/api/chat/requests/?limit=2").await;
    assert_eq!(ids(&first), expected[0..2]);
    let cursor = cursor.expect("X-Next-Cursor on a page with more after it");
    let (second, cursor) = get_page(
        &app,
        &key,
        &format!("/api/chat/requests/?limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&second), expected[2..4]);
    let cursor = cursor.expect("X-Next-Cursor on the second page");
    let (last, cursor) = get_page(
        &app,
        &key,
        &format!("/api/chat/requests/?limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&last), expected[4..5]);
    assert_eq!(cursor, None, "no X-Next-Cursor on the last page");

    let (exact, cursor) = get_page(&app, &key, "/api/chat/requests/?limit=5").await;
    assert_eq!(ids(&exact), expected);
    assert_eq!(cursor, None, "no X-Next-Cursor when nothing is left");
    app.stop().await;
}

#[tokio::test]
async fn list_requests_defaults_to_pages_of_100() {
    let (app, key) = TestApp::with_account().await;
    for n in 0..101 {
        app.submit_message(&key, &format!("m{n}")).await;
    }

    let (page, cursor) = get_page(&app, &key, "/api/chat/requests/").await;
    assert_eq!(page.len(), 100);
    let cursor = cursor.expect("X-Next-Cursor past the default page");
    let (rest, cursor) =
        get_page(&app, &key, &format!("/api/chat/requests/?cursor={cursor}")).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(cursor, None);

    let (all, cursor) = get_page(&app, &key, "/api/chat/requests/?limit=1000").await;
    assert_eq!(all.len(), 101);
    assert_eq!(cursor, None);
    app.stop().await;
}

#[tokio::test]
async fn status_filter_returns_only_requests_in_that_status() {
    let (app, key) = TestApp::with_account().await;
    let idle = id_of(&app.submit_message(&key, "idle").await).to_string();
    let executing = id_of(&app.submit_message(&key, "executing").await).to_string();
    let done = id_of(&app.submit_message(&key, "done").await).to_string();
    let failed = id_of(&app.submit_message(&key, "failed").await).to_string();
    let idle_too = id_of(&app.submit_message(&key, "idle too").await).to_string();
    app.core()
        .set_request_status(&executing, RequestStatus::Executing, None)
        .await;
    app.core()
        .set_request_status(&done, RequestStatus::Done, Some("answer"))
        .await;
    app.core()
        .set_request_status(&failed, RequestStatus::Failed, None)
        .await;

    for (filter, expected) in [
        ("idle", vec![idle_too.clone(), idle.clone()]),
        ("executing", vec![executing.clone()]),
        ("done", vec![done.clone()]),
        ("failed", vec![failed.clone()]),
    ] {
        let listed = list(&app, &key, &format!("/api/chat/requests/?status={filter}")).await;
        assert_eq!(ids(&listed), expected, "?status={filter}");
        assert!(listed.iter().all(|r| r["status"] == filter), "{listed:?}");
    }
    let everything = list(&app, &key, "/api/chat/requests/").await;
    assert_eq!(
        ids(&everything),
        [idle_too, failed, done, executing, idle.clone()]
    );

    let (page, cursor) = get_page(&app, &key, "/api/chat/requests/?status=idle&limit=1").await;
    assert_eq!(page.len(), 1);
    let cursor = cursor.expect("a second idle request");
    let (rest, _) = get_page(
        &app,
        &key,
        &format!("/api/chat/requests/?status=idle&limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&rest), [idle]);
    app.stop().await;
}

#[tokio::test]
async fn other_account_never_sees_requests_or_chats() {
    let app = TestApp::fresh().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let (_, request) = app
        .submit(
            &alice,
            json!({ "message": "secret", "chat_id": "chatgpt-alice" }),
        )
        .await;
    app.submit_message(&alice, "another secret").await;
    let id = id_of(&request);

    assert!(list(&app, &bob, "/api/chat/requests/").await.is_empty());
    assert!(list(&app, &bob, "/api/chat/requests/?status=idle")
        .await
        .is_empty());
    assert!(list(&app, &bob, "/api/chat/chats/").await.is_empty());
    let (status, body) = app.get(&bob, &format!("/api/chat/requests/{id}/")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not found");
    let (status, body) = app.get(&bob, "/api/chat/chats/chatgpt-alice/").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not found");

    // The same ChatGPT id under another account is that account's own chat.
    let (status, bobs) = app
        .submit(
            &bob,
            json!({ "message": "mine", "chat_id": "chatgpt-alice" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bobs}");
    assert_eq!(list(&app, &bob, "/api/chat/chats/").await.len(), 1);
    assert_eq!(list(&app, &alice, "/api/chat/chats/").await.len(), 2);
    assert_eq!(
        ids(&list(&app, &bob, "/api/chat/requests/").await),
        [id_of(&bobs)]
    );
    assert_eq!(list(&app, &alice, "/api/chat/requests/").await.len(), 2);
    let (status, _) = app
        .get(&alice, &format!("/api/chat/requests/{}/", id_of(&bobs)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn list_requests_rejects_unknown_status_filter() {
    let (app, key) = TestApp::with_account().await;

    for status_filter in ["pending", "DONE", "1"] {
        let (status, body) = app
            .get(&key, &format!("/api/chat/requests/?status={status_filter}"))
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "status");
    }
    app.stop().await;
}

#[tokio::test]
async fn lists_reject_invalid_limit() {
    let (app, key) = TestApp::with_account().await;

    for path in ["/api/chat/requests/", "/api/chat/chats/"] {
        for limit in ["0", "1001", "-1", "ten", "1.5"] {
            let (status, body) = app.get(&key, &format!("{path}?limit={limit}")).await;
            assert_error(status, &body, StatusCode::BAD_REQUEST, "limit");
        }
        for limit in ["1", "1000"] {
            let (status, body) = app.get(&key, &format!("{path}?limit={limit}")).await;
            assert_eq!(status, StatusCode::OK, "{path}?limit={limit}: {body}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn lists_reject_invalid_cursor() {
    let (app, key) = TestApp::with_account().await;

    for path in [
        "/api/chat/requests/?cursor=not-a-cursor",
        "/api/chat/chats/?cursor=not-a-cursor",
    ] {
        let (status, body) = app.get(&key, path).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "cursor");
    }
    app.stop().await;
}

#[tokio::test]
async fn get_request_answers_404_for_unknown_or_non_uuid_id() {
    let (app, key) = TestApp::with_account().await;
    app.submit_message(&key, "exists").await;

    for id in [
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::now_v7().to_string(),
        "not-a-uuid".to_string(),
        "12345".to_string(),
        "%20".to_string(),
    ] {
        let (status, body) = app.get(&key, &format!("/api/chat/requests/{id}/")).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not found");
    }
    app.stop().await;
}
