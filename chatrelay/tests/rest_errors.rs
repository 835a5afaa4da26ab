//! What every REST path shares, end to end: trailing slashes, the 401 for a
//! missing or wrong API key (and that it wins over every other error), JSON
//! 404s and 405s, and the body's 413 and 415.

mod common;

use common::{
    rest::{assert_error, get_without_key, id_of, list, post_raw, submit_raw},
    TestApp,
};
use reqwest::StatusCode;
use serde_json::json;

const GET_PATHS: [&str; 4] = [
    "/api/chat/requests/",
    "/api/chat/requests/00000000-0000-0000-0000-000000000000/",
    "/api/chat/chats/",
    "/api/chat/chats/chatgpt-x/",
];

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

#[tokio::test]
async fn unknown_routes_answer_404_json() {
    let (app, key) = TestApp::with_account().await;
    let created = app.submit_message(&key, "m").await;

    // `/` is the web console (console.rs); every other unknown path is JSON.
    for path in [
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
