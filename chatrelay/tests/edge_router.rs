//! The edge's HTTP application called with `tower::ServiceExt::oneshot`: the
//! real router over a real core in the same process (as `chatrelay serve`
//! builds them) on a fresh database, with no socket in between. Fast checks
//! of status codes and exact JSON bodies; what happens end to end is in the
//! `rest_*.rs` files.

mod common;

use axum::{
    body::Body,
    http::{header::CONTENT_TYPE, Request, StatusCode},
};
use chatrelay_edge::EdgeConfig;
use common::{
    core::TestCore,
    rest::{assert_keys, assert_recent_timestamp, REQUEST_KEYS},
    TestDb, ACCOUNT,
};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The edge's router over a core with one account, and that account's key.
struct Edge {
    router: axum::Router,
    core: TestCore,
    key: String,
    /// Dropped after the core, with it.
    _db: TestDb,
}

impl Edge {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut EdgeConfig)) -> Self {
        let db = TestDb::new().await;
        let core = TestCore::start(&db, |_| {}).await;
        let key = core.create_account(ACCOUNT, None).await;
        let mut config = EdgeConfig::for_core("http://unused");
        configure(&mut config);
        let router = core.edge_router(config).await;
        Self {
            router,
            core,
            key,
            _db: db,
        }
    }

    /// One call through the whole router: the status and the JSON body.
    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router never fails");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, body)
    }

    /// `POST path` with `body`, the API key `key` and `content_type`, each if given.
    async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let mut request = Request::post(path);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        self.call(request.body(body.into()).expect("request")).await
    }

    /// `POST /api/chat/submit/` of a JSON body with the account's key.
    async fn submit(&self, body: Value) -> (StatusCode, Value) {
        let key = self.key.clone();
        self.post(
            "/api/chat/submit/",
            Some(&key),
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    /// `GET path` with the API key `key`, if given.
    async fn get(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::get(path);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        self.call(request.body(Body::empty()).expect("request"))
            .await
    }

    async fn stop(self) {
        self.core.stop().await;
    }
}

fn detail(text: &str) -> Value {
    json!({ "detail": text })
}

#[tokio::test]
async fn router_answers_401_without_an_api_key() {
    let edge = Edge::start().await;
    let missing = detail("missing API key (X-API-Key header)");

    let got = edge
        .post(
            "/api/chat/submit/",
            None,
            Some("application/json"),
            r#"{"message": "hi"}"#,
        )
        .await;
    assert_eq!(got, (StatusCode::UNAUTHORIZED, missing.clone()));
    for path in ["/api/chat/requests/", "/api/chat/chats/chatgpt-x/"] {
        assert_eq!(
            edge.get(path, None).await,
            (StatusCode::UNAUTHORIZED, missing.clone()),
            "{path}"
        );
        // A key of blanks is no key.
        assert_eq!(
            edge.get(path, Some("  ")).await,
            (StatusCode::UNAUTHORIZED, missing.clone()),
            "{path}"
        );
    }
    edge.stop().await;
}

#[tokio::test]
async fn router_answers_401_for_a_wrong_api_key() {
    let edge = Edge::start().await;
    let wrong = format!("{}x", edge.key);

    let got = edge
        .post(
            "/api/chat/submit/",
            Some(&wrong),
            Some("application/json"),
            r#"{"message": "hi"}"#,
        )
        .await;
    assert_eq!(got, (StatusCode::UNAUTHORIZED, detail("invalid API key")));
    assert_eq!(
        edge.get("/api/chat/requests/", Some(&wrong)).await,
        (StatusCode::UNAUTHORIZED, detail("invalid API key"))
    );
    edge.stop().await;
}

#[tokio::test]
async fn router_answers_404_json_for_unknown_routes() {
    let edge = Edge::start().await;
    let key = edge.key.clone();

    // `/` is the web console's page (console.rs checks it in full).
    let root = edge
        .router
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).expect("request"))
        .await
        .expect("the router never fails");
    assert_eq!(root.status(), StatusCode::OK);
    assert_eq!(root.headers()[CONTENT_TYPE], "text/html; charset=utf-8");

    for path in ["/api/chat/", "/api/chat/submit/more/"] {
        for key in [None, Some(key.as_str())] {
            assert_eq!(
                edge.get(path, key).await,
                (StatusCode::NOT_FOUND, detail("not found")),
                "{path} with key {key:?}"
            );
        }
    }
    edge.stop().await;
}

#[tokio::test]
async fn router_answers_404_json_for_an_unknown_request_or_chat() {
    let edge = Edge::start().await;
    let key = edge.key.clone();

    for id in [uuid::Uuid::now_v7().to_string(), "not-a-uuid".to_string()] {
        assert_eq!(
            edge.get(&format!("/api/chat/requests/{id}/"), Some(&key))
                .await,
            (StatusCode::NOT_FOUND, detail("request not found")),
            "{id}"
        );
    }
    assert_eq!(
        edge.get("/api/chat/chats/chatgpt-unknown/", Some(&key))
            .await,
        (StatusCode::NOT_FOUND, detail("chat not found"))
    );
    edge.stop().await;
}

#[tokio::test]
async fn router_answers_405_json_for_a_wrong_method() {
    let edge = Edge::start().await;
    let key = edge.key.clone();

    assert_eq!(
        edge.get("/api/chat/submit/", Some(&key)).await,
        (StatusCode::METHOD_NOT_ALLOWED, detail("method not allowed"))
    );
    let got = edge
        .post(
            "/api/chat/requests/",
            Some(&key),
            Some("application/json"),
            "{}",
        )
        .await;
    assert_eq!(
        got,
        (StatusCode::METHOD_NOT_ALLOWED, detail("method not allowed"))
    );
    edge.stop().await;
}

#[tokio::test]
async fn router_answers_415_for_a_body_that_is_not_json() {
    let edge = Edge::start().await;
    let key = edge.key.clone();

    for content_type in [Some("text/plain"), Some("application/jsonx"), None] {
        let got = edge
            .post(
                "/api/chat/submit/",
                Some(&key),
                content_type,
                r#"{"message": "hi"}"#,
            )
            .await;
        assert_eq!(
            got,
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                detail("Content-Type must be application/json")
            ),
            "{content_type:?}"
        );
    }
    edge.stop().await;
}

#[tokio::test]
async fn router_answers_413_past_the_body_limit() {
    let edge = Edge::start_with(|config| config.max_body_bytes = 64).await;
    let key = edge.key.clone();
    let body_of = |len: usize| {
        let padding = len - r#"{"message": ""}"#.len();
        format!(r#"{{"message": "{}"}}"#, "x".repeat(padding))
    };

    let (status, body) = edge
        .post(
            "/api/chat/submit/",
            Some(&key),
            Some("application/json"),
            body_of(64),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "a body at the limit: {body}");
    let got = edge
        .post(
            "/api/chat/submit/",
            Some(&key),
            Some("application/json"),
            body_of(65),
        )
        .await;
    assert_eq!(
        got,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            detail("request body is larger than 64 bytes")
        )
    );
    edge.stop().await;
}

#[tokio::test]
async fn router_answers_400_naming_the_field() {
    let edge = Edge::start().await;

    for (body, expected) in [
        (
            json!({ "message": "m", "response_type": "slow" }),
            r#"response_type: "slow" is not one of thinking, auto, instant"#,
        ),
        (json!({}), "message: this field is required"),
        (json!({ "message": 42 }), "message: must be a string"),
        (json!({ "message": " " }), "message: must not be empty"),
        (
            json!({ "message": "m", "chat_id": 7 }),
            "chat_id: must be a string",
        ),
    ] {
        assert_eq!(
            edge.submit(body.clone()).await,
            (StatusCode::BAD_REQUEST, detail(expected)),
            "{body}"
        );
    }
    let (status, body) = edge
        .post(
            "/api/chat/submit/",
            Some(&edge.key.clone()),
            Some("application/json"),
            "[1]",
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            detail("request body must be a JSON object")
        )
    );
    edge.stop().await;
}

#[tokio::test]
async fn router_answers_201_with_the_request_shape() {
    let edge = Edge::start().await;
    let key = edge.key.clone();

    let (status, body) = edge
        .submit(json!({ "message": "hello", "thinking_time": "extended" }))
        .await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_keys(&body, &REQUEST_KEYS);
    let id = body["id"].as_str().expect("id is a string");
    uuid::Uuid::parse_str(id).expect("id is a UUID");
    assert_recent_timestamp(&body["queued_at"]);
    assert_eq!(
        body,
        json!({
            "id": id,
            "message": "hello",
            "response_type": "auto",
            "thinking_time": "extended",
            "status": "idle",
            "response": null,
            "error_message": null,
            "chat": null,
            "queued_at": body["queued_at"],
            "started_at": null,
            "completed_at": null,
        })
    );
    assert_eq!(
        edge.get(&format!("/api/chat/requests/{id}/"), Some(&key))
            .await,
        (StatusCode::OK, body.clone())
    );
    edge.stop().await;
}
