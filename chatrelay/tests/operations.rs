//! What operators and integrators rely on: health and readiness, metrics,
//! CORS, request ids and grpc-web — against the real servers.

mod common;

use chatrelay_edge::{EdgeConfig, EdgeState};
use common::{core::LoneCore, json_of, ws::Extension, TestApp, TestDb};
use prost::Message;
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

#[tokio::test]
async fn healthz_and_readyz_answer_when_all_is_up() {
    let app = TestApp::fresh().await;
    let (status, body) = json_of(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "status": "ok" })));
    let (status, body) = json_of(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "status": "ready" }))
    );
    app.stop().await;
}

/// A split deployment: the edge stays up while the core goes away.
#[tokio::test]
async fn readyz_turns_unready_when_the_core_stops() {
    let db = TestDb::new().await;
    let core = LoneCore::start(&db).await;
    let core_url = core.url.clone();
    let edge_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge_url = format!("http://{}", edge_listener.local_addr().unwrap());
    let edge_stop = CancellationToken::new();
    let edge_task = tokio::spawn(chatrelay_edge::serve(
        EdgeState::new(EdgeConfig::for_core(core_url)).unwrap(),
        edge_listener,
        edge_stop.clone(),
    ));
    let client = reqwest::Client::new();
    let ready = |client: &reqwest::Client| client.get(format!("{edge_url}/readyz")).send();
    assert_eq!(ready(&client).await.unwrap().status(), StatusCode::OK);

    core.stop().await;
    let (status, body) = json_of(ready(&client).await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["detail"].as_str().unwrap().starts_with("core"),
        "{body}"
    );
    // The edge itself is still alive.
    let healthz = client
        .get(format!("{edge_url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    edge_stop.cancel();
    edge_task.await.unwrap().unwrap();
}

/// The two edges of one core: `chatrelay serve`'s, which calls the core's
/// chat service itself for a submit and a GET, and a split deployment's,
/// which asks over gRPC.
struct BothEdges {
    in_process: axum::Router,
    over_grpc: axum::Router,
}

impl BothEdges {
    async fn of(core: &LoneCore) -> Self {
        let config = || EdgeConfig::for_core(core.url.clone());
        Self {
            in_process: core.core.edge_router(config()).await,
            over_grpc: chatrelay_edge::app(EdgeState::new(config()).unwrap()),
        }
    }
}

/// One call to `router`: its status and body.
async fn answer(
    router: &axum::Router,
    request: axum::http::Request<axum::body::Body>,
) -> (u16, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A GET answers alike from both edges: a finished request, one of another
/// account, an unknown id, a malformed one, a long-poll and a missing key.
#[tokio::test]
async fn a_get_answers_alike_in_process_and_over_grpc() {
    let db = TestDb::new().await;
    let core = LoneCore::start(&db).await;
    let key = core.core.create_account("alike", None).await;
    let other_key = core.core.create_account("other", None).await;
    let id = core.core.submit(&key, "hello").await.unwrap();
    let other_id = core.core.submit(&other_key, "elsewhere").await.unwrap();
    let account = core.core.account_id("alike").await;
    core.core
        .complete(account, id, "hi there".into(), "c-1".into(), None)
        .await
        .unwrap();
    let edges = BothEdges::of(&core).await;
    let get = |path: &str, key: Option<&str>| {
        let mut request = axum::http::Request::get(path);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        request.body(axum::body::Body::empty()).unwrap()
    };
    let calls = [
        (format!("/api/chat/requests/{id}/"), Some(&key), 200),
        (format!("/api/chat/requests/{id}/?wait=5"), Some(&key), 200),
        (format!("/api/chat/requests/{other_id}/"), Some(&key), 404),
        (
            format!("/api/chat/requests/{}/", uuid::Uuid::now_v7()),
            Some(&key),
            404,
        ),
        ("/api/chat/requests/not-an-id/".to_string(), Some(&key), 404),
        (format!("/api/chat/requests/{id}/"), None, 401),
    ];
    for (path, key, expected) in calls {
        let key = key.map(String::as_str);
        let here = answer(&edges.in_process, get(&path, key)).await;
        let there = answer(&edges.over_grpc, get(&path, key)).await;
        assert_eq!(here.0, expected, "{path}: {}", here.1);
        assert_eq!(here, there, "{path}");
    }
    let (_, body) = answer(
        &edges.in_process,
        get(&format!("/api/chat/requests/{id}/"), Some(&key)),
    )
    .await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&body["status"], &body["response"], &body["chat"]),
        (&json!("done"), &json!("hi there"), &json!("c-1"))
    );
    core.stop().await;
}

/// A submit answers alike from both edges, and the two share the core's
/// idempotency: a retry through the other edge is a `200` with the very
/// request the first created, a key reused for another message a `409`;
/// rejected submits store nothing.
#[tokio::test]
async fn a_submit_answers_alike_in_process_and_over_grpc() {
    let db = TestDb::new().await;
    let core = LoneCore::start(&db).await;
    let key = core.core.create_account("alike", None).await;
    let edges = BothEdges::of(&core).await;
    let submit = |key: &str, idempotency_key: Option<&[u8]>, body: &str| {
        let mut request = axum::http::Request::post("/api/chat/submit/")
            .header("X-API-Key", key)
            .header("Content-Type", "application/json");
        if let Some(idempotency_key) = idempotency_key {
            let value = axum::http::HeaderValue::from_bytes(idempotency_key).unwrap();
            request = request.header("Idempotency-Key", value);
        }
        request
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    let once = r#"{"message": "once", "response_type": "instant"}"#;

    // First here, retried there; first there, retried here.
    let rounds = [
        (&edges.in_process, &edges.over_grpc, b"k-1".as_slice()),
        (&edges.over_grpc, &edges.in_process, b"k-2".as_slice()),
    ];
    let mut created = Vec::new();
    for (first_edge, retry_edge, idempotency_key) in rounds {
        let first = answer(first_edge, submit(&key, Some(idempotency_key), once)).await;
        let retry = answer(retry_edge, submit(&key, Some(idempotency_key), once)).await;
        assert_eq!((first.0, retry.0), (201, 200), "{}", first.1);
        assert_eq!(first.1, retry.1);
        created.push(first.1);
    }
    for body in &created {
        let created: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            (&created["status"], &created["message"]),
            (&json!("idle"), &json!("once"))
        );
    }
    assert_ne!(created[0], created[1], "two keys, two requests");

    let rejected = [
        (
            key.as_str(),
            Some(b"k-1".as_slice()),
            r#"{"message": "another"}"#,
            409,
        ),
        (key.as_str(), None, r#"{"message": ""}"#, 400),
        (
            key.as_str(),
            None,
            r#"{"message": "x", "thinking_time": "long"}"#,
            400,
        ),
        // Not printable ASCII.
        (key.as_str(), Some(b"k-\xe9".as_slice()), once, 400),
        ("not-a-key", None, once, 401),
    ];
    for (key, idempotency_key, body, expected) in rejected {
        let here = answer(&edges.in_process, submit(key, idempotency_key, body)).await;
        let there = answer(&edges.over_grpc, submit(key, idempotency_key, body)).await;
        assert_eq!(here.0, expected, "{body}: {}", here.1);
        assert_eq!(here, there, "{body}");
    }
    let list = axum::http::Request::get("/api/chat/requests/")
        .header("X-API-Key", &key)
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, list) = answer(&edges.in_process, list).await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    core.stop().await;
}

/// An extension session runs alike through both edges, each serving on its
/// own socket: a refused key, the account's session limit, a delivery, the
/// core's answers to two bad frames, and the answer landing.
#[tokio::test]
async fn an_extension_session_runs_alike_in_process_and_over_grpc() {
    let db = TestDb::new().await;
    let core = LoneCore::start_with(&db, |config| config.max_sessions_per_account = 1).await;
    let config = || EdgeConfig::for_core(core.url.clone());
    let states = [
        core.core.edge_state(config()).await,
        EdgeState::new(config()).unwrap(),
    ];
    let stop = CancellationToken::new();
    let mut transcripts = Vec::new();
    for (n, state) in states.into_iter().enumerate() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(chatrelay_edge::serve(state, listener, stop.clone()));
        let key = core.core.create_account(&format!("alike-{n}"), None).await;
        let client = reqwest::Client::new();

        let refused = Extension::try_connect_to(&url, "not-a-key").await.err();
        let mut extension = Extension::connect_to(&url, &key).await;
        let over_limit = Extension::try_connect_to(&url, &key).await.err();
        let (status, submitted) = json_of(
            client
                .post(format!("{url}/api/chat/submit/"))
                .header("X-API-Key", &key)
                .json(&json!({ "message": "hello" }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{submitted}");
        let id = submitted["id"].as_str().unwrap().to_string();
        let delivered = extension.recv_request().await;
        extension
            .send(json!({ "type": "status_update", "request_id": id, "status": "done" }))
            .await;
        let not_executing = extension.recv_error().await;
        extension.respond("not-an-id", "stray", "c-0", None).await;
        let stray = extension.recv_error().await;
        extension.executing(&id).await;
        extension
            .respond(&id, "hi there", "c-1", Some("Greeting"))
            .await;
        let (_, answered) = json_of(
            client
                .get(format!("{url}/api/chat/requests/{id}/?wait=10"))
                .header("X-API-Key", &key)
                .send()
                .await
                .unwrap(),
        )
        .await;
        extension.close().await;
        let refusal = |refused: Option<(u16, String)>| {
            let (status, body) = refused.expect("the handshake is refused");
            json!([
                status,
                serde_json::from_str::<serde_json::Value>(&body).unwrap()
            ])
        };
        transcripts.push(masked(json!([
            refusal(refused),
            refusal(over_limit),
            delivered,
            not_executing,
            stray,
            answered,
        ])));
    }
    stop.cancel();
    assert_eq!(transcripts[0][5]["status"], "done", "{}", transcripts[0]);
    assert_eq!(transcripts[0], transcripts[1]);
    core.stop().await;
}

/// `value` without what differs between two accounts' requests: their ids
/// and times.
fn masked(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    const MASKED: [&str; 6] = [
        "id",
        "request_id",
        "chat_db_id",
        "queued_at",
        "started_at",
        "completed_at",
    ];
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(name, field)| {
                    let field = match MASKED.contains(&name.as_str()) && !field.is_null() {
                        true => json!("masked"),
                        false => masked(field),
                    };
                    (name, field)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(masked).collect()),
        other => other,
    }
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_calls_by_route_and_status() {
    let (app, key) = TestApp::with_account().await;
    let route = "route=\"/api/chat/submit/\"";
    let before = metric(
        &app.metrics().await,
        "chatrelay_http_requests_total",
        &[route, "status=\"201\""],
    );
    let bad_before = metric(
        &app.metrics().await,
        "chatrelay_http_requests_total",
        &[route, "status=\"400\""],
    );
    for i in 0..3 {
        app.submit_message(&key, &format!("m{i}")).await;
    }
    app.submit(&key, json!({ "message": "" })).await;
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            "chatrelay_http_requests_total",
            &[route, "status=\"201\""]
        ) - before,
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "chatrelay_http_requests_total",
            &[route, "status=\"400\""]
        ) - bad_before,
        1.0
    );
    assert!(
        text.contains("chatrelay_http_request_duration_seconds_bucket"),
        "{text}"
    );
    // Batch sizes are counted in batches of 1 to 256, not in seconds.
    let batches = |le: &str| metric(&text, "chatrelay_submit_batch_size_bucket", &[le]);
    assert!(batches("le=\"1\"") >= 3.0, "{text}");
    assert_eq!(batches("le=\"256\""), batches("le=\"+Inf\""), "{text}");
    assert!(!text.contains("chatrelay_submit_batch_size_bucket{le=\"0.0005\"}"));
    app.stop().await;
}

#[tokio::test]
async fn cors_preflight_passes_for_allowed_origins_only() {
    let app =
        TestApp::fresh_configured(|_, edge| edge.cors_origins = vec!["https://app.example".into()])
            .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/chat/submit/"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "x-api-key, content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed_headers.contains("x-api-key"), "{allowed_headers}");

    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    app.stop().await;
}

#[tokio::test]
async fn without_configured_origins_no_cors_headers_are_sent() {
    let app = TestApp::fresh().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_a_given_one() {
    let (app, key) = TestApp::with_account().await;
    let response = app
        .client
        .get(app.url("/api/chat/requests/"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let response = app
        .client
        .get(app.url("/api/chat/requests/nope/"))
        .header("X-API-Key", &key)
        .header("X-Request-Id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    app.stop().await;
}

/// A browser-style grpc-web call (HTTP/1.1, base framing) to the core.
#[tokio::test]
async fn grpc_web_call_reaches_the_core() {
    use chatrelay_proto::v1 as pb;

    let (app, key) = TestApp::with_account().await;
    let created = app.submit_message(&key, "via grpc-web").await;

    let message = pb::GetRequestRequest {
        id: created["id"].as_str().unwrap().to_string(),
        wait: None,
    }
    .encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let response = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(format!("{}/chatrelay.v1.ChatService/GetRequest", app.grpc))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("x-api-key", &key)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.unwrap();
    // First frame: the message; then a trailer frame (flag 0x80) with grpc-status.
    assert_eq!(bytes[0], 0);
    let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    let got = pb::MessageRequest::decode(&bytes[5..5 + len]).unwrap();
    assert_eq!(got.message, "via grpc-web");
    let trailers = String::from_utf8_lossy(&bytes[5 + len + 5..]).to_ascii_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    app.stop().await;
}

#[tokio::test]
async fn metrics_cover_sessions_dispatch_and_finished_requests() {
    use common::ws::Extension;

    let (app, key) = TestApp::with_account().await;
    let mut ext = Extension::connect(&app, &key).await;
    let id = app.submit_message(&key, "measure me").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ext.recv_request().await["request_id"], id.as_str());
    ext.respond(&id, "measured", "c-m", None).await;
    app.wait_for_status(&key, &id, "done").await;

    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "chatrelay_extension_sessions", &[]),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "chatrelay_dispatch_latency_seconds_count", &[]),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "chatrelay_requests_finished_total",
            &["status=\"done\""]
        ),
        1.0,
        "{text}"
    );
    ext.close().await;
    app.stop().await;
}

/// Waits until the queue-depth gauges read `idle` and `executing` (they are
/// refreshed every 5 s).
async fn wait_for_queue_depth(app: &TestApp, idle: f64, executing: f64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let text = app.metrics().await;
        let read = |status: &str| {
            let label = format!("status=\"{status}\"");
            metric(&text, "chatrelay_queue_depth", &[label.as_str()])
        };
        if (read("idle"), read("executing")) == (idle, executing) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue depth idle {}, executing {}; expected {idle}, {executing}:\n{text}",
            read("idle"),
            read("executing"),
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn queue_depth_gauges_follow_requests_through_a_restart() {
    let db = TestDb::new().await;
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    for i in 0..4 {
        app.submit_message(&key, &format!("waiting {i}")).await;
    }
    wait_for_queue_depth(&app, 4.0, 0.0).await;

    let mut ext = Extension::connect(&app, &key).await;
    let first = ext.recv_request().await["request_id"]
        .as_str()
        .expect("id")
        .to_string();
    let second = ext.recv_request().await["request_id"]
        .as_str()
        .expect("id")
        .to_string();
    ext.executing(&first).await;
    ext.respond(&second, "answered", "c1", None).await;
    app.wait_for_status(&key, &second, "done").await;
    wait_for_queue_depth(&app, 2.0, 1.0).await;

    // A new process counts again: the executing request was given back.
    ext.close().await;
    app.stop().await;
    let app = TestApp::start(&db).await;
    wait_for_queue_depth(&app, 3.0, 0.0).await;
    app.stop().await;
}

#[tokio::test]
async fn submit_rate_limit_answers_429_with_retry_after() {
    let (app, key) = TestApp::with_account_configured(|core, _| core.submit_rate = 2).await;
    let other = app.account("other").await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..4 {
        let response = app
            .client
            .post(app.url("/api/chat/submit/"))
            .header("X-API-Key", &key)
            .json(&json!({ "message": format!("m{i}") }))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let (_, body) = json_of(response).await;
            assert!(
                body["detail"].as_str().unwrap().contains("rate limit"),
                "{body}"
            );
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert_eq!(&statuses[..2], &[201, 201]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Limits are per account, and a refused submit stored nothing.
    let (status, _) = app.submit(&other, json!({ "message": "fine" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, listed) = app.get(&key, "/api/chat/requests/").await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        statuses.iter().filter(|s| **s == 201).count()
    );
    app.stop().await;
}

#[tokio::test]
async fn extension_sessions_per_account_are_limited() {
    use common::ws::Extension;

    let (app, key) =
        TestApp::with_account_configured(|core, _| core.max_sessions_per_account = 2).await;
    let first = Extension::connect(&app, &key).await;
    let _second = Extension::connect(&app, &key).await;
    let (status, body) = Extension::try_connect(&app, &key)
        .await
        .err()
        .expect("third refused");
    assert_eq!(status, 429, "{body}");
    // Another account is not affected, and a freed slot can be reused.
    let other = app.account("other").await;
    Extension::connect(&app, &other).await;
    first.close().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Extension::try_connect(&app, &key).await {
            Ok(_) => break,
            Err((429, _)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(other) => panic!("slot never freed: {other:?}"),
        }
    }
    app.stop().await;
}

/// SIGTERM while clients submit and an extension holds a request: every
/// submit that was answered 201 is stored, the held request goes back to the
/// queue, the extension gets a close frame, and the process exits 0.
#[tokio::test]
async fn sigterm_during_traffic_loses_no_request_and_exits_zero() {
    use common::process::{create_account, http_get, Served};
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let db = TestDb::new().await;
    let (key, _) = create_account(&db, "acme").await;
    let served = Served::start(&db).await;
    let client = reqwest::Client::new();
    let submit = |message: String| {
        client
            .post(format!("{}/api/chat/submit/", served.http))
            .header("X-API-Key", &key)
            .json(&json!({ "message": message }))
            .send()
    };
    let (held_status, held) = json_of(submit("held".into()).await.unwrap()).await;
    assert_eq!(held_status, StatusCode::CREATED);
    let ws_url = format!(
        "{}/ws/extension/?api_key={key}",
        served.http.replacen("http", "ws", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    // The first text frame (the server pings a new socket first).
    let frame = loop {
        match socket.next().await {
            Some(Ok(Message::Text(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("no frame: {other:?}"),
        }
    };
    assert!(frame.contains(held["id"].as_str().unwrap()));

    let (progress, mut submitted) = tokio::sync::mpsc::channel::<usize>(1);
    let traffic = {
        let (client, http, key) = (client.clone(), served.http.clone(), key.clone());
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..5_000 {
                let sent = client
                    .post(format!("{http}/api/chat/submit/"))
                    .header("X-API-Key", &key)
                    .json(&json!({ "message": format!("m{i}") }))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != StatusCode::CREATED {
                    break;
                }
                let body: serde_json::Value = response.json().await.unwrap();
                accepted.push(body["id"].as_str().unwrap().to_string());
                let _ = progress.try_send(accepted.len());
            }
            accepted
        })
    };
    while submitted.recv().await.unwrap_or(usize::MAX) < 20 {}
    served.terminate();
    let accepted = traffic.await.unwrap();
    assert!(accepted.len() >= 20);

    let close = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(15), socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    let status = served.exit_status(std::time::Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");

    let served = Served::start(&db).await;
    for id in &accepted {
        let (status, body) =
            http_get(&served.http, &key, &format!("/api/chat/requests/{id}/")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "accepted request {id} was lost: {body}"
        );
    }
    let (_, held_now) = http_get(
        &served.http,
        &key,
        &format!("/api/chat/requests/{}/", held["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(held_now["status"], "idle", "{held_now}");
    served.kill().await;
}

/// Even at debug level, neither API keys (the WebSocket URL carries one) nor
/// message bodies reach the logs.
#[tokio::test]
async fn logs_never_contain_api_keys_or_messages() {
    use common::process::{create_account, http_submit, Served};

    let db = TestDb::new().await;
    let (key, _) = create_account(&db, "acme").await;
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("stderr.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let served = Served::start_with(&db, |command| {
        command
            .env("RUST_LOG", "debug")
            .env("CHATRELAY_LOG_JSON", "true")
            .stderr(log_file);
    })
    .await;
    let secret_message = "the-secret-message-body-4711";
    let (status, created) =
        http_submit(&served.http, &key, json!({ "message": secret_message })).await;
    assert_eq!(status, StatusCode::CREATED);
    let ws_url = format!(
        "{}/ws/extension/?api_key={key}",
        served.http.replacen("http", "ws", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    use futures::StreamExt;
    // The first text frame (the server pings a new socket first).
    let frame = loop {
        let message = socket.next().await.unwrap().unwrap();
        if message.is_text() {
            break message;
        }
    };
    assert!(frame
        .to_text()
        .unwrap()
        .contains(created["id"].as_str().unwrap()));
    // A wrong key is not logged either.
    let (status, _) =
        http_submit(&served.http, "cr_wrong_key_0815", json!({ "message": "x" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    drop(socket);
    served.kill().await;

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.lines().count() > 10,
        "expected debug logs, got: {logs}"
    );
    assert!(
        logs.lines()
            .all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok()),
        "not JSON lines"
    );
    for secret in [key.as_str(), "cr_wrong_key_0815", secret_message] {
        assert!(!logs.contains(secret), "{secret:?} appears in the logs");
    }
}

#[tokio::test]
async fn metrics_count_webhook_attempts_by_outcome() {
    use axum::{routing::post, Router};
    use common::ws::Extension;

    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", receiver.local_addr().unwrap());
    let (delivered, mut arrivals) = tokio::sync::mpsc::channel::<()>(4);
    let app = Router::new().route(
        "/hook",
        post(move || {
            let delivered = delivered.clone();
            async move {
                let _ = delivered.send(()).await;
                StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(receiver, app).await });

    let relay = TestApp::fresh().await;
    let key = relay.account_with_webhook("acme", Some(&hook)).await;
    let mut ext = Extension::connect(&relay, &key).await;
    let id = relay.submit_message(&key, "hook me").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ext.recv_request().await["request_id"], id.as_str());
    ext.respond(&id, "hooked", "c-h", None).await;
    tokio::time::timeout(std::time::Duration::from_secs(10), arrivals.recv())
        .await
        .expect("webhook within 10 s");

    // The attempt is counted once the worker has recorded it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = relay.metrics().await;
        if metric(
            &text,
            "chatrelay_webhook_attempts_total",
            &["outcome=\"success\""],
        ) == 1.0
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn oversized_websocket_message_closes_the_session_and_requeues() {
    use common::ws::Extension;

    let (app, key) =
        TestApp::with_account_configured(|_, edge| edge.max_ws_frame_bytes = 1024).await;
    let id = app.submit_message(&key, "small").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ext = Extension::connect(&app, &key).await;
    assert_eq!(ext.recv_request().await["request_id"], id.as_str());
    ext.respond(&id, &"x".repeat(4096), "c-big", None).await;
    assert!(
        ext.try_recv(std::time::Duration::from_secs(10))
            .await
            .is_none(),
        "connection stays open"
    );
    // Nothing was applied, and the request is delivered again.
    let mut again = Extension::connect(&app, &key).await;
    assert_eq!(again.recv_request().await["request_id"], id.as_str());
    assert_eq!(
        app.get(&key, &format!("/api/chat/requests/{id}/")).await.1["status"],
        "idle"
    );
    app.stop().await;
}

/// On SQLite the writer never checkpoints the WAL itself (that would stall
/// the writes queued behind it); a task beside it does. Without that task
/// nothing would reach the database file until the process stopped: its
/// size is the sign the WAL is being copied in while chatrelay runs.
/// Under writes that never pause, a passive checkpoint always misses what
/// was written while it ran, so the WAL would never start over and would
/// grow without end. Past `CHATRELAY_SQLITE_WAL_LIMIT_MIB` the checkpoint
/// task makes it start over, and the file is cut back to four times the
/// limit if it grew past that.
#[tokio::test]
async fn sqlite_wal_stays_bounded_under_steady_writes() {
    let (app, key) =
        TestApp::with_account_configured(|core, _| core.database.sqlite_wal_limit_mib = 1).await;
    let Some(file) = app.core().sqlite_file() else {
        app.stop().await;
        return;
    };
    let wal = std::path::PathBuf::from(format!("{}-wal", file.display()));
    let payload = "x".repeat(4_000);
    let start = tokio::time::Instant::now();
    let until = start + std::time::Duration::from_secs(6);
    let writers = futures::future::join_all((0..8).map(|_| async {
        while tokio::time::Instant::now() < until {
            app.submit_message(&key, &payload).await;
        }
    }));
    // After the first seconds: the largest WAL seen, and the smallest.
    let watch = async {
        let (mut largest, mut smallest) = (0, u64::MAX);
        while tokio::time::Instant::now() < until {
            if start.elapsed() > std::time::Duration::from_secs(2) {
                let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                largest = largest.max(size);
                smallest = smallest.min(size);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        (largest, smallest)
    };
    let (_, (largest, smallest)) = tokio::join!(writers, watch);
    let written = std::fs::metadata(&file).expect("database file").len();
    assert!(
        smallest <= 4 << 20,
        "the WAL was never cut back while the writes went on (at least {smallest} bytes)"
    );
    assert!(
        largest < 48 << 20,
        "the WAL reached {largest} bytes under a 1 MiB limit (database: {written} bytes)"
    );
    app.stop().await;
}

#[tokio::test]
async fn sqlite_wal_is_checkpointed_while_running() {
    let (app, key) = TestApp::with_account().await;
    let Some(file) = app.core().sqlite_file() else {
        assert!(
            !app.db_url.starts_with("sqlite:"),
            "SQLite files are checkpointed"
        );
        app.stop().await;
        return;
    };
    let before = std::fs::metadata(&file).expect("database file").len();
    let payload = "x".repeat(4_000);
    for _ in 0..100 {
        app.submit_message(&key, &payload).await;
    }
    // 100 messages of 4 kB need at least 400 kB of pages.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let size = std::fs::metadata(&file).expect("database file").len();
        if size >= before + 400_000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the database file stayed at {size} bytes (was {before}): the WAL is not checkpointed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_require_the_configured_bearer_token() {
    let app =
        TestApp::fresh_configured(|_, edge| edge.metrics_token = Some("m3trics".into())).await;
    let get = |auth: Option<&'static str>| {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        request.send()
    };

    for auth in [
        None,
        Some("Bearer wrong"),
        Some("m3trics"),
        Some("Bearer m3trics2"),
    ] {
        let response = get(auth).await.expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let (_, body) = json_of(response).await;
        assert!(body["detail"].as_str().is_some(), "{body}");
    }
    let response = get(Some("Bearer m3trics")).await.expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("text");
    assert!(text.contains("# TYPE"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn interactive_docs_can_be_turned_off() {
    let with_docs = TestApp::fresh().await;
    let without_docs = TestApp::fresh_configured(|_, edge| edge.no_docs = true).await;
    let status = |app: &TestApp, path: &'static str| {
        let request = app.client.get(app.url(path)).send();
        async move { request.await.expect("GET").status() }
    };

    assert_eq!(status(&with_docs, "/api/docs/").await, StatusCode::OK);
    assert_eq!(
        status(&without_docs, "/api/docs/").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(&without_docs, "/api/docs/index.css").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(&without_docs, "/api/openapi.json").await,
        StatusCode::OK
    );
    with_docs.stop().await;
    without_docs.stop().await;
}

#[tokio::test]
async fn sqlite_syncs_every_commit_unless_told_normal() {
    let full = TestApp::fresh().await;
    let normal = TestApp::fresh_configured(|core, _| {
        core.database.sqlite_synchronous = chatrelay_core::config::SqliteSynchronous::Normal;
    })
    .await;
    let Some(default) = full.core().sqlite_synchronous().await else {
        return; // PostgreSQL: fsync is the server's setting.
    };

    assert_eq!(default, 2, "the default is synchronous=FULL");
    assert_eq!(normal.core().sqlite_synchronous().await, Some(1));
    full.stop().await;
    normal.stop().await;
}
