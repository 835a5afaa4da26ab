//! Input chatrelay does not store: NUL characters (PostgreSQL cannot keep
//! them in text, SQLite would; both refuse them alike) and strings from the
//! extension past their documented limits. A refused string changes
//! nothing, and never costs the requests written beside it.

mod common;

use common::{
    rest::list,
    ws::{request_id, Extension},
    TestApp,
};
use serde_json::{json, Value};

#[tokio::test]
async fn a_submit_with_a_nul_character_is_refused_naming_the_field() {
    let (app, key) = TestApp::with_account().await;
    let (status, body) = app.submit(&key, json!({ "message": "a\u{0}b" })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        json!({ "detail": "message: must not contain NUL (\\u0000) characters" })
    );
    let (status, body) = app
        .submit(&key, json!({ "message": "fine", "chat_id": "conv\u{0}" }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        json!({ "detail": "chat_id: must not contain NUL (\\u0000) characters" })
    );
    // Submits beside the refused ones land; the refused stored nothing.
    let (bad, good) = tokio::join!(
        app.submit(&key, json!({ "message": "\u{0}" })),
        app.submit(&key, json!({ "message": "neighbour" })),
    );
    assert_eq!(bad.0, 400, "{}", bad.1);
    assert_eq!(good.0, 201, "{}", good.1);
    let listed = list(&app, &key, "/api/chat/requests/").await;
    let messages: Vec<&str> = listed
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["neighbour"]);
    app.stop().await;
}

#[tokio::test]
async fn an_answer_with_a_nul_character_gets_an_error_frame_and_changes_nothing() {
    let (app, key) = TestApp::with_account().await;
    let mut ext = Extension::connect(&app, &key).await;
    let id = app.submit_message(&key, "hello").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(request_id(&ext.recv_request().await), id);

    ext.respond(&id, "bad\u{0}answer", "conv-1", Some("Title"))
        .await;
    let frame = ext.recv_error().await;
    assert_eq!(
        frame,
        json!({
            "type": "error",
            "request_id": id,
            "error": "response: must not contain NUL (\\u0000) characters",
        })
    );
    let (_, request) = app.get(&key, &format!("/api/chat/requests/{id}/")).await;
    assert_eq!(request["status"], "idle");
    assert_eq!(request["response"], Value::Null);

    ext.fail(&id, "nul\u{0}error").await;
    let frame = ext.recv_error().await;
    assert_eq!(
        frame["error"],
        "error: must not contain NUL (\\u0000) characters"
    );

    ext.respond(&id, "good answer", "conv-1", Some("Title"))
        .await;
    let done = app.wait_for_status(&key, &id, "done").await;
    assert_eq!(done["response"], "good answer");
    ext.assert_nothing_pending().await;
    app.stop().await;
}

#[tokio::test]
async fn strings_from_the_extension_are_bounded_and_a_refused_one_costs_its_neighbours_nothing() {
    let (app, key) = TestApp::with_account().await;
    let mut ext = Extension::connect(&app, &key).await;
    let first = app.submit_message(&key, "one").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = app.submit_message(&key, "two").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut delivered = vec![
        request_id(&ext.recv_request().await),
        request_id(&ext.recv_request().await),
    ];
    delivered.sort();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(delivered, expected);

    // A chat id past 256 characters, and a good answer right behind it:
    // the two reach the core together, and only the bad one is refused.
    let long_chat = "c".repeat(257);
    ext.respond(&first, "answer", &long_chat, None).await;
    ext.respond(&second, "answer two", "conv-ok", None).await;
    let frame = ext.recv_error().await;
    assert_eq!(frame["request_id"], first.as_str());
    assert_eq!(frame["error"], "chat_id: longer than 256 characters");
    let done = app.wait_for_status(&key, &second, "done").await;
    assert_eq!(done["chat"], "conv-ok");

    let long_title = "t".repeat(1_001);
    ext.respond(&first, "answer", "conv-1", Some(&long_title))
        .await;
    assert_eq!(
        ext.recv_error().await["error"],
        "chat_title: longer than 1000 characters"
    );
    ext.fail(&first, &"e".repeat(10_001)).await;
    assert_eq!(
        ext.recv_error().await["error"],
        "error: longer than 10000 characters"
    );
    let (_, request) = app.get(&key, &format!("/api/chat/requests/{first}/")).await;
    assert_eq!(request["status"], "idle", "{request}");

    // At the limits, everything is accepted.
    let chat = "c".repeat(256);
    ext.respond(&first, "answer", &chat, Some(&"t".repeat(1_000)))
        .await;
    let done = app.wait_for_status(&key, &first, "done").await;
    assert_eq!(done["chat"], chat.as_str());
    ext.assert_nothing_pending().await;
    app.stop().await;
}

/// 100 requests of 60,000 characters are about 6 MB of JSON: the page ends
/// early (at the core's text budget) with a cursor, instead of failing on
/// the gRPC message limit, and the cursors lead through all of them.
#[tokio::test]
async fn a_page_of_long_requests_is_served_in_parts() {
    use common::rest::get_page;
    let (app, key) = TestApp::with_account().await;
    let long = "x".repeat(60_000);
    for chunk in 0..10 {
        let submits =
            (0..10).map(|i| app.submit(&key, json!({ "message": format!("{chunk}-{i} {long}") })));
        for (status, body) in futures::future::join_all(submits).await {
            assert_eq!(status, 201, "{body}");
        }
    }
    let (first, cursor) = get_page(&app, &key, "/api/chat/requests/?limit=100").await;
    assert!(first.len() < 100, "one page of {} requests", first.len());
    assert!(!first.is_empty());
    let mut seen: Vec<String> = first.iter().map(|r| r["id"].to_string()).collect();
    let mut cursor = cursor.expect("a cursor to the rest");
    loop {
        let (page, next) = get_page(
            &app,
            &key,
            &format!("/api/chat/requests/?limit=100&cursor={cursor}"),
        )
        .await;
        seen.extend(page.iter().map(|r| r["id"].to_string()));
        match next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), distinct.len()), (100, 100));
    app.stop().await;
}
