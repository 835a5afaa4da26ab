//! Requests per status (`GET /api/chat/counts/`, gRPC `CountRequests`), of
//! the account or of one of its chats, and the requests of one chat
//! (`GET /api/chat/requests/?chat=ID`, `ListRequests.chat`).

mod common;

use chatrelay_proto::v1 as pb;
use common::{
    grpc::{chat_client, with_key},
    rest::{get_page, get_without_key, id_of, ids},
    ws::{request_id, Extension},
    TestApp,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tonic::Code;

const COUNTS: &str = "/api/chat/counts/";

async fn counts(app: &TestApp, key: &str, query: &str) -> Value {
    let (status, body) = app.get(key, &format!("{COUNTS}{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The integer `id` of the account's chat with this ChatGPT id.
async fn chat_db_id(app: &TestApp, key: &str, chatgpt_id: &str) -> i64 {
    let (status, chat) = app
        .get(key, &format!("/api/chat/chats/{chatgpt_id}/"))
        .await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    chat["id"].as_i64().expect("integer id")
}

#[tokio::test]
async fn counts_follow_requests_through_their_lifecycle() {
    let (app, key) = TestApp::with_account().await;
    assert_eq!(
        counts(&app, &key, "").await,
        json!({ "idle": 0, "executing": 0, "done": 0, "failed": 0 })
    );
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(id_of(&app.submit_message(&key, &format!("m{n}")).await).to_string());
    }
    assert_eq!(
        counts(&app, &key, "").await,
        json!({ "idle": 6, "executing": 0, "done": 0, "failed": 0 })
    );

    let mut ext = Extension::connect(&app, &key).await;
    for id in &ids {
        assert_eq!(&request_id(&ext.recv_request().await), id);
    }
    ext.executing(&ids[0]).await;
    ext.respond(&ids[1], "answer", "chatgpt-1", None).await;
    ext.respond(&ids[2], "answer", "chatgpt-2", None).await;
    ext.fail(&ids[3], "ChatGPT is at capacity").await;
    app.wait_for_status(&key, &ids[0], "executing").await;
    for (id, status) in [(&ids[1], "done"), (&ids[2], "done"), (&ids[3], "failed")] {
        app.wait_for_status(&key, id, status).await;
    }
    let (status, _) = app
        .post(&key, &format!("/api/chat/requests/{}/cancel/", ids[4]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        counts(&app, &key, "").await,
        json!({ "idle": 1, "executing": 1, "done": 2, "failed": 2 })
    );

    // Another account's requests are not counted; it has its own.
    let other_key = app.account("other").await;
    app.submit_message(&other_key, "theirs").await;
    assert_eq!(
        counts(&app, &other_key, "").await,
        json!({ "idle": 1, "executing": 0, "done": 0, "failed": 0 })
    );
    assert_eq!(
        counts(&app, &key, "").await,
        json!({ "idle": 1, "executing": 1, "done": 2, "failed": 2 })
    );
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn counts_and_requests_of_one_chat() {
    let (app, key) = TestApp::with_account().await;
    let mut in_chat = Vec::new();
    for n in 0..3 {
        let (status, created) = app
            .submit(
                &key,
                json!({ "message": format!("in conv {n}"), "chat_id": "conv" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        in_chat.push(id_of(&created).to_string());
    }
    app.submit_message(&key, "elsewhere").await;
    let chat = chat_db_id(&app, &key, "conv").await;
    // The chat's first request goes out (with the other chat's); the
    // others wait behind it. It is answered, the next goes out, the last
    // is cancelled.
    let mut ext = Extension::connect(&app, &key).await;
    assert_eq!(request_id(&ext.recv_request().await), in_chat[0]);
    ext.recv_request().await;
    ext.respond(&in_chat[0], "answer", "conv", None).await;
    app.wait_for_status(&key, &in_chat[0], "done").await;
    assert_eq!(request_id(&ext.recv_request().await), in_chat[1]);
    let (status, _) = app
        .post(&key, &format!("/api/chat/requests/{}/cancel/", in_chat[2]))
        .await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(
        counts(&app, &key, &format!("?chat={chat}")).await,
        json!({ "idle": 1, "executing": 0, "done": 1, "failed": 1 })
    );
    assert_eq!(
        counts(&app, &key, "").await,
        json!({ "idle": 2, "executing": 0, "done": 1, "failed": 1 })
    );

    // The chat's requests, newest first; with a status; a page at a time.
    let listed = common::rest::list(&app, &key, &format!("/api/chat/requests/?chat={chat}")).await;
    let newest_first: Vec<String> = in_chat.iter().rev().cloned().collect();
    assert_eq!(ids(&listed), newest_first);
    assert!(listed.iter().all(|r| r["chat"] == "conv"), "{listed:?}");
    let done = common::rest::list(
        &app,
        &key,
        &format!("/api/chat/requests/?chat={chat}&status=done"),
    )
    .await;
    assert_eq!(ids(&done), [in_chat[0].clone()]);
    let (page, cursor) = get_page(
        &app,
        &key,
        &format!("/api/chat/requests/?chat={chat}&limit=2"),
    )
    .await;
    assert_eq!(ids(&page), newest_first[..2]);
    let cursor = cursor.expect("a next page");
    let (page, cursor) = get_page(
        &app,
        &key,
        &format!("/api/chat/requests/?chat={chat}&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&page), newest_first[2..]);
    assert_eq!(cursor, None);
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn another_account_s_or_an_unknown_chat_is_404_and_a_non_integer_is_400() {
    let (app, key) = TestApp::with_account().await;
    let other_key = app.account("other").await;
    app.submit(
        &other_key,
        json!({ "message": "theirs", "chat_id": "their-conv" }),
    )
    .await;
    let theirs = chat_db_id(&app, &other_key, "their-conv").await;
    for path in [COUNTS, "/api/chat/requests/"] {
        for chat in [theirs.to_string(), "987654321".to_string()] {
            let (status, body) = app.get(&key, &format!("{path}?chat={chat}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path} {chat}: {body}");
            assert_eq!(body, json!({ "detail": "chat not found" }));
        }
        for chat in ["abc", "1.5", "conv"] {
            let (status, body) = app.get(&key, &format!("{path}?chat={chat}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {chat}: {body}");
            assert_eq!(
                body,
                json!({ "detail": "chat: must be a whole number, the id of one of the account's chats" })
            );
        }
    }
    let (status, body) = get_without_key(&app, COUNTS).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "detail": "missing API key (X-API-Key header)" })
    );
    let (status, body) = app.get("cr_wrong", COUNTS).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({ "detail": "invalid API key" }));
    app.stop().await;
}

#[tokio::test]
async fn grpc_counts_and_lists_the_requests_of_a_chat() {
    let (app, key) = TestApp::with_account().await;
    let (_, created) = app
        .submit(&key, json!({ "message": "grpc", "chat_id": "grpc-conv" }))
        .await;
    app.submit_message(&key, "elsewhere").await;
    let chat = chat_db_id(&app, &key, "grpc-conv").await;
    let mut client = chat_client(&app).await;

    let all = client
        .count_requests(with_key(&key, pb::CountRequestsRequest { chat: None }))
        .await
        .expect("counts")
        .into_inner();
    assert_eq!(
        (all.idle, all.executing, all.done, all.failed),
        (2, 0, 0, 0)
    );
    let of_chat = client
        .count_requests(with_key(
            &key,
            pb::CountRequestsRequest { chat: Some(chat) },
        ))
        .await
        .expect("counts")
        .into_inner();
    assert_eq!(of_chat.idle, 1);
    let listed = client
        .list_requests(with_key(
            &key,
            pb::ListRequestsRequest {
                chat: Some(chat),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    let listed: Vec<&str> = listed.requests.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(listed, [id_of(&created)]);
    let unknown = client
        .count_requests(with_key(&key, pb::CountRequestsRequest { chat: Some(-1) }))
        .await
        .expect_err("unknown chat");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(unknown.message(), "chat not found");
    app.stop().await;
}
