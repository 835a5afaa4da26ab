//! What the REST tests share: the JSON shapes the API promises, the error
//! body check, and requests the plain helpers of [`TestApp`] do not make
//! (raw bodies, no key, paging headers).

use reqwest::{header::CONTENT_TYPE, StatusCode};
use serde_json::Value;

use super::{json_of, TestApp};

pub const REQUEST_KEYS: [&str; 11] = [
    "id",
    "message",
    "response_type",
    "thinking_time",
    "status",
    "response",
    "error_message",
    "chat",
    "queued_at",
    "started_at",
    "completed_at",
];

pub const CHAT_KEYS: [&str; 5] = ["id", "chat_id", "title", "created_at", "updated_at"];

pub fn keys_of(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

pub fn assert_keys(value: &Value, expected: &[&str]) {
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    assert_eq!(keys_of(value), expected, "keys of {value}");
}

/// An ISO-8601 UTC timestamp with microseconds and `Z`, within a minute of now.
pub fn assert_recent_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {value}"));
    assert_eq!(text.len(), "2026-11-25T00:05:36.837860Z".len(), "{text}");
    assert!(text.ends_with('Z'), "{text}");
    assert_eq!(&text[19..20], ".", "{text}");
    let at = chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339 timestamp");
    let age = chrono::Utc::now().signed_duration_since(at);
    assert!(
        age >= chrono::Duration::seconds(-5) && age <= chrono::Duration::seconds(60),
        "{text} is not recent"
    );
}

/// `{"detail": "..."}` and nothing else, with `needle` in the detail.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, needle: &str) {
    assert_eq!(status, expected, "{body}");
    assert_keys(body, &["detail"]);
    let detail = body["detail"].as_str().expect("detail is a string");
    assert!(
        detail.contains(needle),
        "detail {detail:?} does not mention {needle:?}"
    );
}

/// A POST of raw bytes, with or without key and content type.
pub async fn post_raw(
    app: &TestApp,
    path: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let mut request = app.client.post(app.url(path)).body(body);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    json_of(request.send().await.expect("POST")).await
}

pub async fn submit_raw(app: &TestApp, key: &str, body: &str) -> (StatusCode, Value) {
    post_raw(
        app,
        "/api/chat/submit/",
        Some(key),
        Some("application/json"),
        body.to_string(),
    )
    .await
}

pub async fn get_without_key(app: &TestApp, path: &str) -> (StatusCode, Value) {
    json_of(app.client.get(app.url(path)).send().await.expect("GET")).await
}

/// A GET that also returns the `X-Next-Cursor` header.
pub async fn get_page(app: &TestApp, key: &str, path: &str) -> (Vec<Value>, Option<String>) {
    let response = app
        .client
        .get(app.url(path))
        .header("X-API-Key", key)
        .send()
        .await
        .expect("GET");
    let cursor = response
        .headers()
        .get("X-Next-Cursor")
        .map(|v| v.to_str().expect("ASCII cursor").to_string());
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body.as_array().expect("a JSON array").clone();
    (items, cursor)
}

pub async fn list(app: &TestApp, key: &str, path: &str) -> Vec<Value> {
    let (status, body) = app.get(key, path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("a JSON array").clone()
}

pub fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| match &item["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

pub fn id_of(request: &Value) -> &str {
    request["id"].as_str().expect("id is a string")
}
