//! Chats over REST end to end: which submits create a chat and which reuse
//! one, `GET /api/chat/chats/` (newest first, paged) and
//! `GET /api/chat/chats/{chat_id}/`.

mod common;

use common::{
    rest::{assert_error, assert_keys, assert_recent_timestamp, get_page, list, CHAT_KEYS},
    TestApp,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

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
