//! `POST /api/chat/submit/` end to end: the 201 and the request it returns,
//! the options it keeps, every way a body is refused with 400, and the
//! group commit behind it.

mod common;

use common::{
    core::{CoreError, RequestStatus},
    rest::{
        assert_error, assert_keys, assert_recent_timestamp, id_of, list, post_raw, submit_raw,
        REQUEST_KEYS,
    },
    TestApp, ACCOUNT,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

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

/// Writes share transactions (group commit), so a write the database
/// refuses must fail alone: its neighbours in the same transaction are
/// written again apart and land, and nothing else is lost. A trigger makes
/// the database refuse one message.
#[tokio::test]
async fn a_write_the_database_refuses_fails_alone_and_its_neighbours_land() {
    let (app, key) = TestApp::with_account().await;
    app.run_sql(
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
    let core = app.core();
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
