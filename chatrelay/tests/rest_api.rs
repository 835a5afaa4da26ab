//! The REST API of api-spec.md end to end: real edge, real core, real
//! database, real HTTP. Shapes, status codes, account isolation, chats,
//! filtering and paging.

mod common;

use common::{
    core::{CoreError, RequestStatus},
    rest::*,
    TestApp, ACCOUNT,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const GET_PATHS: [&str; 4] = [
    "/api/chat/requests/",
    "/api/chat/requests/00000000-0000-0000-0000-000000000000/",
    "/api/chat/chats/",
    "/api/chat/chats/chatgpt-x/",
];

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
    // The submit path's key lookup and the dispatch path's chat lookup.
    let account = core.account_id_of_key(&key).await;
    assert_eq!(point_reads.account_of_key(&key), Some(account));
    assert_eq!(point_reads.account_of_key("no such key"), None);
    let fresh_chat = list(&app, &key, "/api/chat/chats/").await[1]["id"]
        .as_i64()
        .expect("chat id");
    assert_eq!(
        point_reads.chatgpt_ids(&[chat_db_id, fresh_chat]),
        [Some("chatgpt-abc123".to_string()), None]
    );
    app.stop().await;
}

// ---- 201 and the request shape ----------------------------------------------

#[tokio::test]
async fn submit_returns_201_with_every_key_and_spec_defaults() {
    let (app, key) = TestApp::with_account().await;

    let (status, body) = app.submit(&key, json!({ "message": "hello" })).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_keys(&body, &REQUEST_KEYS);
    uuid::Uuid::parse_str(id_of(&body)).expect("id is a UUID");
    assert_eq!(body["message"], "hello");
    assert_eq!(body["response_type"], "auto");
    assert_eq!(body["thinking_time"], "standard");
    assert_eq!(body["status"], "idle");
    for null in [
        "response",
        "error_message",
        "chat",
        "started_at",
        "completed_at",
    ] {
        assert_eq!(body[null], Value::Null, "{null} of {body}");
    }
    assert_recent_timestamp(&body["queued_at"]);
    app.stop().await;
}

#[tokio::test]
async fn submit_keeps_the_given_response_type_and_thinking_time() {
    let (app, key) = TestApp::with_account().await;

    for (response_type, thinking_time) in [
        ("thinking", "extended"),
        ("thinking", "standard"),
        ("instant", "standard"),
        ("auto", "extended"),
    ] {
        let (status, body) = app
            .submit(
                &key,
                json!({
                    "message": "think about it",
                    "response_type": response_type,
                    "thinking_time": thinking_time,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["response_type"], response_type);
        assert_eq!(body["thinking_time"], thinking_time);
        let (_, got) = app
            .get(&key, &format!("/api/chat/requests/{}/", id_of(&body)))
            .await;
        assert_eq!(got, body);
    }
    app.stop().await;
}

#[tokio::test]
async fn submit_treats_null_optional_fields_as_absent() {
    let (app, key) = TestApp::with_account().await;

    let (status, body) = app
        .submit(
            &key,
            json!({
                "message": "hi",
                "response_type": null,
                "thinking_time": null,
                "chat_id": null,
            }),
        )
        .await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["response_type"], "auto");
    assert_eq!(body["thinking_time"], "standard");
    assert_eq!(body["chat"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn submit_accepts_json_content_type_with_charset() {
    let (app, key) = TestApp::with_account().await;

    let (status, body) = post_raw(
        &app,
        "/api/chat/submit/",
        Some(&key),
        Some("application/json; charset=utf-8"),
        r#"{"message": "héllo ✓"}"#,
    )
    .await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "héllo ✓");
    app.stop().await;
}

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

// ---- chats --------------------------------------------------------------------

#[tokio::test]
async fn submit_without_chat_id_creates_chat() {
    let (app, key) = TestApp::with_account().await;
    assert!(list(&app, &key, "/api/chat/chats/").await.is_empty());

    let created = app.submit_message(&key, "new conversation").await;

    assert_eq!(created["chat"], Value::Null);
    let chats = list(&app, &key, "/api/chat/chats/").await;
    assert_eq!(chats.len(), 1, "{chats:?}");
    let chat = &chats[0];
    assert_keys(chat, &CHAT_KEYS);
    assert!(chat["id"].is_i64(), "{chat}");
    assert_eq!(chat["chat_id"], Value::Null);
    assert_eq!(chat["title"], Value::Null);
    assert_recent_timestamp(&chat["created_at"]);
    assert_eq!(chat["created_at"], chat["updated_at"]);
    app.stop().await;
}

#[tokio::test]
async fn each_submit_without_chat_id_creates_its_own_chat() {
    let (app, key) = TestApp::with_account().await;

    app.submit_message(&key, "one").await;
    app.submit_message(&key, "two").await;

    let chats = list(&app, &key, "/api/chat/chats/").await;
    assert_eq!(chats.len(), 2, "{chats:?}");
    assert_ne!(chats[0]["id"], chats[1]["id"]);
    app.stop().await;
}

#[tokio::test]
async fn submit_with_chat_id_creates_chat_with_that_id() {
    let (app, key) = TestApp::with_account().await;

    let (status, created) = app
        .submit(
            &key,
            json!({ "message": "continue", "chat_id": "chatgpt-xyz" }),
        )
        .await;

    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["chat"], "chatgpt-xyz");
    let chats = list(&app, &key, "/api/chat/chats/").await;
    assert_eq!(chats.len(), 1, "{chats:?}");
    assert_keys(&chats[0], &CHAT_KEYS);
    assert_eq!(chats[0]["chat_id"], "chatgpt-xyz");
    assert_eq!(chats[0]["title"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn submit_with_same_chat_id_reuses_the_chat() {
    let (app, key) = TestApp::with_account().await;

    for message in ["first", "second", "third"] {
        let (status, created) = app
            .submit(
                &key,
                json!({ "message": message, "chat_id": "chatgpt-same" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["chat"], "chatgpt-same");
    }
    app.submit(
        &key,
        json!({ "message": "elsewhere", "chat_id": "chatgpt-other" }),
    )
    .await;

    let chats = list(&app, &key, "/api/chat/chats/").await;
    let mut chat_ids: Vec<&str> = chats.iter().filter_map(|c| c["chat_id"].as_str()).collect();
    chat_ids.sort_unstable();
    assert_eq!(chat_ids, ["chatgpt-other", "chatgpt-same"]);
    app.stop().await;
}

#[tokio::test]
async fn get_chat_by_chatgpt_id_returns_it() {
    let (app, key) = TestApp::with_account().await;
    app.submit(&key, json!({ "message": "hi", "chat_id": "chatgpt-42" }))
        .await;
    let listed = list(&app, &key, "/api/chat/chats/").await;

    let (status, chat) = app.get(&key, "/api/chat/chats/chatgpt-42/").await;

    assert_eq!(status, StatusCode::OK, "{chat}");
    assert_keys(&chat, &CHAT_KEYS);
    assert_eq!(chat, listed[0]);
    app.stop().await;
}

// ---- paths ----------------------------------------------------------------------

#[tokio::test]
async fn every_path_works_with_and_without_trailing_slash() {
    let (app, key) = TestApp::with_account().await;

    let mut created = Vec::new();
    for path in ["/api/chat/submit/", "/api/chat/submit"] {
        let (status, body) = post_raw(
            &app,
            path,
            Some(&key),
            Some("application/json"),
            r#"{"message": "slash", "chat_id": "chatgpt-slash"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
        created.push(body);
    }
    let id = id_of(&created[0]);
    for path in [
        format!("/api/chat/requests/{id}/"),
        format!("/api/chat/requests/{id}"),
        "/api/chat/requests/".to_string(),
        "/api/chat/requests".to_string(),
        "/api/chat/chats/".to_string(),
        "/api/chat/chats".to_string(),
        "/api/chat/chats/chatgpt-slash/".to_string(),
        "/api/chat/chats/chatgpt-slash".to_string(),
    ] {
        let (status, body) = app.get(&key, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    app.stop().await;
}

// ---- listing, filtering, paging --------------------------------------------------

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
async fn list_chats_is_newest_first_and_pages_with_limit_and_cursor() {
    let (app, key) = TestApp::with_account().await;
    for n in 0..3 {
        app.submit(
            &key,
            json!({ "message": "m", "chat_id": format!("chat-{n}") }),
        )
        .await;
    }

    let all = list(&app, &key, "/api/chat/chats/").await;
    let chat_ids: Vec<&str> = all.iter().filter_map(|c| c["chat_id"].as_str()).collect();
    assert_eq!(chat_ids, ["chat-2", "chat-1", "chat-0"]);

    let (first, cursor) = get_page(&app, &key, "/api/chat/chats/?limit=2").await;
    assert_eq!(first, all[0..2]);
    let cursor = cursor.expect("X-Next-Cursor on a page with more after it");
    let (rest, cursor) = get_page(
        &app,
        &key,
        &format!("/api/chat/chats/?limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(rest, all[2..3]);
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

// ---- account isolation ----------------------------------------------------------

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

// ---- 400 ------------------------------------------------------------------------

#[tokio::test]
async fn submit_rejects_unknown_enum_values_naming_the_field() {
    let (app, key) = TestApp::with_account().await;

    for (body, field) in [
        (
            json!({ "message": "m", "response_type": "slow" }),
            "response_type",
        ),
        (
            json!({ "message": "m", "response_type": "AUTO" }),
            "response_type",
        ),
        (
            json!({ "message": "m", "response_type": "" }),
            "response_type",
        ),
        (
            json!({ "message": "m", "response_type": 1 }),
            "response_type",
        ),
        (
            json!({ "message": "m", "thinking_time": "forever" }),
            "thinking_time",
        ),
        (
            json!({ "message": "m", "thinking_time": true }),
            "thinking_time",
        ),
    ] {
        let (status, got) = app.submit(&key, body.clone()).await;
        assert_error(status, &got, StatusCode::BAD_REQUEST, field);
    }
    assert!(list(&app, &key, "/api/chat/requests/").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn submit_rejects_empty_or_whitespace_message() {
    let (app, key) = TestApp::with_account().await;

    for message in ["", " ", "  \n\t  "] {
        let (status, body) = app.submit(&key, json!({ "message": message })).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "message");
    }
    assert!(list(&app, &key, "/api/chat/requests/").await.is_empty());
    assert!(list(&app, &key, "/api/chat/chats/").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn submit_rejects_non_string_message() {
    let (app, key) = TestApp::with_account().await;

    for message in [
        json!(42),
        json!(true),
        json!(["hi"]),
        json!({ "text": "hi" }),
    ] {
        let (status, body) = app.submit(&key, json!({ "message": message })).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "message");
    }
    app.stop().await;
}

#[tokio::test]
async fn submit_rejects_missing_or_null_message() {
    let (app, key) = TestApp::with_account().await;

    for body in [
        json!({}),
        json!({ "response_type": "auto" }),
        json!({ "message": null }),
    ] {
        let (status, got) = app.submit(&key, body).await;
        assert_error(status, &got, StatusCode::BAD_REQUEST, "message");
    }
    app.stop().await;
}

#[tokio::test]
async fn submit_rejects_non_string_or_empty_chat_id() {
    let (app, key) = TestApp::with_account().await;

    for chat_id in [
        json!(123),
        json!(false),
        json!(["c"]),
        json!(""),
        json!("  "),
    ] {
        let (status, body) = app
            .submit(&key, json!({ "message": "m", "chat_id": chat_id }))
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "chat_id");
    }
    assert!(list(&app, &key, "/api/chat/chats/").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn submit_rejects_message_longer_than_the_limit() {
    let (app, key) = TestApp::with_account_configured(|core, _| core.max_message_chars = 10).await;

    let (status, body) = app.submit(&key, json!({ "message": "ten chars!" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.submit(&key, json!({ "message": "eleven char" })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "message");
    app.stop().await;
}

#[tokio::test]
async fn submit_rejects_malformed_json() {
    let (app, key) = TestApp::with_account().await;

    for body in [
        r#"{"message": "unterminated"#,
        "{message: 'hi'}",
        "",
        "\u{feff}",
    ] {
        let (status, got) = submit_raw(&app, &key, body).await;
        assert_error(status, &got, StatusCode::BAD_REQUEST, "JSON");
    }
    app.stop().await;
}

#[tokio::test]
async fn submit_rejects_json_that_is_not_an_object() {
    let (app, key) = TestApp::with_account().await;

    for body in [r#"["message"]"#, r#""hello""#, "42", "null", "true"] {
        let (status, got) = submit_raw(&app, &key, body).await;
        assert_error(status, &got, StatusCode::BAD_REQUEST, "JSON object");
    }
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
async fn every_endpoint_answers_401_without_an_api_key() {
    let app = TestApp::fresh().await;

    let (status, body) = post_raw(
        &app,
        "/api/chat/submit/",
        None,
        Some("application/json"),
        r#"{"message": "hi"}"#,
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "API key");
    for path in GET_PATHS {
        let (status, body) = get_without_key(&app, path).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "API key");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_endpoint_answers_401_for_a_wrong_api_key() {
    let (app, real) = TestApp::with_account().await;

    for wrong in ["cr_wrong", &format!("{real}x"), " "] {
        let (status, body) = app.submit(wrong, json!({ "message": "hi" })).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "API key");
        for path in GET_PATHS {
            let (status, body) = app.get(wrong, path).await;
            assert_error(status, &body, StatusCode::UNAUTHORIZED, "API key");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn missing_api_key_wins_over_every_body_and_query_error() {
    let app = TestApp::fresh_configured(|_, edge| edge.max_body_bytes = 64).await;

    for (content_type, body) in [
        (Some("application/json"), "{not json".to_string()),
        (Some("application/json"), "[1, 2]".to_string()),
        (Some("application/json"), r#"{"message": ""}"#.to_string()),
        (Some("application/json"), r#"{"message": 1}"#.to_string()),
        (Some("text/plain"), "hello".to_string()),
        (None, r#"{"message": "hi"}"#.to_string()),
        (
            Some("application/json"),
            format!(r#"{{"message": "{}"}}"#, "x".repeat(200)),
        ),
    ] {
        let (status, got) = post_raw(&app, "/api/chat/submit/", None, content_type, body).await;
        assert_error(status, &got, StatusCode::UNAUTHORIZED, "API key");
    }
    for path in [
        "/api/chat/requests/?status=bogus",
        "/api/chat/requests/?limit=0",
        "/api/chat/chats/?cursor=bogus",
    ] {
        let (status, got) = get_without_key(&app, path).await;
        assert_error(status, &got, StatusCode::UNAUTHORIZED, "API key");
    }
    app.stop().await;
}

#[tokio::test]
async fn rejected_submissions_store_nothing() {
    let (app, key) = TestApp::with_account().await;

    app.submit("cr_wrong", json!({ "message": "hi" })).await;
    post_raw(
        &app,
        "/api/chat/submit/",
        None,
        Some("application/json"),
        r#"{"message": "hi"}"#,
    )
    .await;
    app.submit(&key, json!({ "message": "hi", "response_type": "nope" }))
        .await;

    assert!(list(&app, &key, "/api/chat/requests/").await.is_empty());
    assert!(list(&app, &key, "/api/chat/chats/").await.is_empty());
    app.stop().await;
}

// ---- 404 ------------------------------------------------------------------------

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

#[tokio::test]
async fn get_chat_answers_404_for_unknown_chat() {
    let (app, key) = TestApp::with_account().await;
    app.submit(&key, json!({ "message": "m", "chat_id": "chatgpt-known" }))
        .await;

    for chat_id in ["chatgpt-unknown", "1", "chatgpt-know"] {
        let (status, body) = app.get(&key, &format!("/api/chat/chats/{chat_id}/")).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not found");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_answer_404_json() {
    let (app, key) = TestApp::with_account().await;
    let created = app.submit_message(&key, "m").await;

    for path in [
        "/".to_string(),
        "/api/".to_string(),
        "/api/chat/".to_string(),
        "/api/chat/nothing/".to_string(),
        format!("/api/chat/requests/{}/extra/", id_of(&created)),
        "/api/chat/submit/more/".to_string(),
    ] {
        let (status, body) = app.get(&key, &path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not found");
        let (status, body) = get_without_key(&app, &path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not found");
    }
    app.stop().await;
}

#[tokio::test]
async fn wrong_method_answers_405_json() {
    let (app, key) = TestApp::with_account().await;

    let (status, body) = app.get(&key, "/api/chat/submit/").await;
    assert_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "method");
    let (status, body) = post_raw(
        &app,
        "/api/chat/requests/",
        Some(&key),
        Some("application/json"),
        "{}",
    )
    .await;
    assert_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "method");
    app.stop().await;
}

// ---- 413 and 415 -----------------------------------------------------------------

#[tokio::test]
async fn submit_answers_413_past_the_body_limit() {
    let (app, key) = TestApp::with_account_configured(|_, edge| edge.max_body_bytes = 64).await;
    let body_of = |len: usize| {
        let padding = len - r#"{"message": ""}"#.len();
        format!(r#"{{"message": "{}"}}"#, "x".repeat(padding))
    };

    let (status, body) = submit_raw(&app, &key, &body_of(64)).await;
    assert_eq!(status, StatusCode::CREATED, "a body at the limit: {body}");
    let (status, body) = submit_raw(&app, &key, &body_of(65)).await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "64 bytes");
    let (status, body) = submit_raw(&app, &key, &body_of(100_000)).await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "64 bytes");

    // Without Content-Length too: a streamed body is cut off at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(br#"{"message": ""#.to_vec()),
        Ok(vec![b'x'; 100]),
        Ok(br#""}"#.to_vec()),
    ];
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, body) = post_raw(
        &app,
        "/api/chat/submit/",
        Some(&key),
        Some("application/json"),
        streamed,
    )
    .await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "64 bytes");
    assert_eq!(list(&app, &key, "/api/chat/requests/").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn submit_answers_415_for_a_body_that_is_not_json() {
    let (app, key) = TestApp::with_account().await;

    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        None,
    ] {
        let (status, body) = post_raw(
            &app,
            "/api/chat/submit/",
            Some(&key),
            content_type,
            r#"{"message": "hi"}"#,
        )
        .await;
        assert_error(
            status,
            &body,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        );
    }
    assert!(list(&app, &key, "/api/chat/requests/").await.is_empty());
    app.stop().await;
}

/// Writes share transactions (group commit), so a write the database
/// refuses must fail alone: its neighbours in the same transaction are
/// written again apart and land, and nothing else is lost. A trigger makes
/// the database refuse one message.
#[tokio::test]
async fn a_write_the_database_refuses_fails_alone_and_its_neighbours_land() {
    let (app, key) = TestApp::with_account().await;
    let core = app.core();
    core.run_sql(
        &[
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
               IF NEW.message = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; \
               RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON message_requests \
               FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ],
        &[
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON message_requests \
             WHEN NEW.message = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
        ],
    )
    .await;
    let earlier = app.submit_message(&key, "answered meanwhile").await["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let account = core.account_id(ACCOUNT).await;
    let submit = |message: &'static str| core.submit(&key, message);
    // Polled in order, so they queue together for the writer.
    let (first, refused, second, answered) = tokio::join!(
        submit("first"),
        submit("poison"),
        submit("second"),
        core.complete(account, earlier, "ok".into(), "conv-1".into(), None),
    );
    assert!(
        matches!(refused, Err(CoreError::Database(_))),
        "{refused:?}"
    );
    let (first, second) = (first.expect("first lands"), second.expect("second lands"));
    assert_eq!(
        answered.expect("the result lands").status,
        RequestStatus::Done
    );

    for id in [&first, &second] {
        let (status, body) = app.get(&key, &format!("/api/chat/requests/{id}/")).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "idle");
    }
    let listed = list(&app, &key, "/api/chat/requests/").await;
    let messages: Vec<&str> = listed
        .iter()
        .map(|r| r["message"].as_str().expect("message"))
        .collect();
    assert_eq!(messages, ["second", "first", "answered meanwhile"]);
    // The result, retried apart, counts once as finished.
    let metrics = app.metrics().await;
    let done: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("chatrelay_requests_finished_total{status=\"done\"}"))
        .collect();
    assert_eq!(
        done,
        ["chatrelay_requests_finished_total{status=\"done\"} 1"],
        "{metrics}"
    );
    app.stop().await;
}
