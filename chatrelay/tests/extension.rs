//! Extension sessions end to end: real WebSocket clients against the real
//! edge, real gRPC streams against the real core, on SQLite or PostgreSQL.

mod common;

use std::collections::HashSet;

use common::{
    ws::{request_id, Extension},
    TestApp, TestDb,
};
use serde_json::{json, Value};

#[tokio::test]
async fn full_lifecycle_submit_deliver_execute_respond() {
    let (app, key) = TestApp::with_account().await;
    let mut ext = Extension::connect(&app, &key).await;

    let (status, created) = app
        .submit(&key, json!({ "message": "Explain qubits", "response_type": "thinking", "thinking_time": "extended" }))
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();

    let frame = ext.recv_request().await;
    let chats = app.get(&key, "/api/chat/chats/").await.1;
    let chat_db_id = chats[0]["id"].as_i64().unwrap();
    assert_eq!(
        frame,
        json!({
            "type": "new_request",
            "request_id": id,
            "message": "Explain qubits",
            "response_type": "thinking",
            "thinking_time": "extended",
            "chat_id": null,
            "chat_db_id": chat_db_id,
        })
    );

    ext.executing(id).await;
    let executing = app.wait_for_status(&key, id, "executing").await;
    assert!(executing["started_at"].is_string());
    assert!(executing["completed_at"].is_null());

    ext.respond(id, "Qubits are…", "chatgpt-abc", Some("Quantum basics"))
        .await;
    let done = app.wait_for_status(&key, id, "done").await;
    assert_eq!(done["response"], "Qubits are…");
    assert_eq!(done["chat"], "chatgpt-abc");
    assert_eq!(done["error_message"], Value::Null);
    assert!(done["completed_at"].is_string());

    let (status, chat) = app.get(&key, "/api/chat/chats/chatgpt-abc/").await;
    assert_eq!(status, 200);
    assert_eq!(chat["id"], chat_db_id);
    assert_eq!(chat["title"], "Quantum basics");
    assert!(chat["updated_at"].as_str().unwrap() > chat["created_at"].as_str().unwrap());
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn backlog_arrives_oldest_first_then_live_requests() {
    let (app, key) = TestApp::with_account().await;
    let mut backlog = Vec::new();
    for i in 0..5 {
        backlog.push(app.submit_message(&key, &format!("old {i}")).await["id"].clone());
    }
    let mut ext = Extension::connect(&app, &key).await;
    for expected in &backlog {
        assert_eq!(&ext.recv_request().await["request_id"], expected);
    }
    let live = app.submit_message(&key, "live").await;
    assert_eq!(ext.recv_request().await["request_id"], live["id"]);
    ext.assert_nothing_pending().await;
    app.stop().await;
}

#[tokio::test]
async fn each_request_goes_to_exactly_one_of_two_sessions() {
    let (app, key) = TestApp::with_account().await;
    let mut a = Extension::connect(&app, &key).await;
    let mut b = Extension::connect(&app, &key).await;
    let mut submitted = HashSet::new();
    for i in 0..20 {
        submitted.insert(
            app.submit_message(&key, &format!("m{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut seen = Vec::new();
    // Answer as they come so both windows keep moving.
    while seen.len() < 20 {
        tokio::select! {
            frame = a.recv() => { let id = request_id(&frame); a.respond(&id, "ok", &format!("c-{id}"), None).await; seen.push(id); }
            frame = b.recv() => { let id = request_id(&frame); b.respond(&id, "ok", &format!("c-{id}"), None).await; seen.push(id); }
        }
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), 20, "a request was delivered twice: {seen:?}");
    assert_eq!(unique, submitted);
    a.assert_nothing_pending().await;
    b.assert_nothing_pending().await;
    app.stop().await;
}

#[tokio::test]
async fn one_request_per_chat_in_flight_others_flow_past() {
    let (app, key) = TestApp::with_account().await;
    let first = app
        .submit(&key, json!({ "message": "1", "chat_id": "busy" }))
        .await
        .1;
    let second = app
        .submit(&key, json!({ "message": "2", "chat_id": "busy" }))
        .await
        .1;
    let other = app
        .submit(&key, json!({ "message": "3", "chat_id": "free" }))
        .await
        .1;
    let mut ext = Extension::connect(&app, &key).await;
    assert_eq!(ext.recv_request().await["request_id"], first["id"]);
    let frame = ext.recv_request().await;
    assert_eq!(frame["request_id"], other["id"]);
    assert_eq!(frame["chat_id"], "free");
    ext.assert_nothing_pending().await;

    ext.respond(first["id"].as_str().unwrap(), "one", "busy", None)
        .await;
    let next = ext.recv_request().await;
    assert_eq!(next["request_id"], second["id"]);
    assert_eq!(next["chat_id"], "busy");
    app.stop().await;
}

#[tokio::test]
async fn session_window_bounds_unfinished_deliveries() {
    let (app, key) = TestApp::with_account_configured(|core, _| core.session_window = 2).await;
    for i in 0..5 {
        app.submit_message(&key, &format!("m{i}")).await;
    }
    let mut ext = Extension::connect(&app, &key).await;
    let first = ext.recv_request().await;
    ext.recv_request().await;
    ext.assert_nothing_pending().await;
    ext.fail(&request_id(&first), "nope").await;
    ext.recv_request().await;
    ext.assert_nothing_pending().await;
    app.stop().await;
}

#[tokio::test]
async fn dropped_session_gives_requests_back_for_redelivery() {
    let (app, key) = TestApp::with_account().await;
    let created = app.submit_message(&key, "again").await;
    let mut first = Extension::connect(&app, &key).await;
    let id = request_id(&first.recv_request().await);
    first.executing(&id).await;
    app.wait_for_status(&key, &id, "executing").await;
    first.close().await;

    let requeued = app.wait_for_status(&key, &id, "idle").await;
    assert_eq!(requeued["started_at"], Value::Null);
    let mut second = Extension::connect(&app, &key).await;
    assert_eq!(second.recv_request().await["request_id"], created["id"]);
    second.respond(&id, "second time lucky", "c1", None).await;
    app.wait_for_status(&key, &id, "done").await;
    app.stop().await;
}

#[tokio::test]
async fn a_waiting_session_takes_over_what_a_dropped_session_gave_back() {
    let (app, key) = TestApp::with_account().await;
    let mut first = Extension::connect(&app, &key).await;
    let created = app.submit_message(&key, "handed on").await;
    let id = request_id(&first.recv_request().await);
    assert_eq!(id, created["id"].as_str().unwrap());
    // The second session has room and nothing to do: it waits for work.
    let mut second = Extension::connect(&app, &key).await;
    second.assert_nothing_pending().await;

    // No new submit: giving the request back alone must reach it.
    first.close().await;
    assert_eq!(request_id(&second.recv_request().await), id);
    second.respond(&id, "taken over", "c1", None).await;
    let done = app.wait_for_status(&key, &id, "done").await;
    assert_eq!(done["response"], "taken over");
    app.stop().await;
}

/// The SQLite writer keeps its connection from one cycle to the next while
/// work waits; the database's other writers must still get their turn. A
/// trigger makes each flooding submit slow, so the writer's queue never
/// runs dry while the extension's status update waits for the connection.
#[tokio::test]
async fn a_status_update_gets_through_a_flood_of_submits() {
    let (app, key) = TestApp::with_account().await;
    let app = std::sync::Arc::new(app);
    app.run_sql(
        &[
            "CREATE FUNCTION slow_flood() RETURNS trigger AS $$ BEGIN \
               IF NEW.message = 'flood' THEN PERFORM pg_sleep(0.001); END IF; \
               RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER slow_flood BEFORE INSERT ON message_requests \
               FOR EACH ROW EXECUTE FUNCTION slow_flood()",
        ],
        &[
            "CREATE TRIGGER slow_flood BEFORE INSERT ON message_requests \
             WHEN NEW.message = 'flood' \
             BEGIN SELECT length(hex(randomblob(200000))); END",
        ],
    )
    .await;
    let mut ext = Extension::connect(&app, &key).await;
    app.submit_message(&key, "first").await;
    let id = request_id(&ext.recv_request().await);

    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flood: Vec<_> = (0..64)
        .map(|_| {
            let (app, key, flooding) = (app.clone(), key.clone(), flooding.clone());
            tokio::spawn(async move {
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    app.submit_message(&key, "flood").await;
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    ext.executing(&id).await;
    let executing = app.wait_for_status(&key, &id, "executing").await;
    assert!(executing["started_at"].is_string(), "{executing}");
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    for submitter in flood {
        submitter.await.expect("submitter");
    }
    let Ok(app) = std::sync::Arc::try_unwrap(app) else {
        panic!("the submitters are done with the app");
    };
    app.stop().await;
}

#[tokio::test]
async fn request_fails_after_the_attempt_limit() {
    let (app, key) = TestApp::with_account_configured(|core, _| core.max_attempts = 2).await;
    let id = app.submit_message(&key, "doomed").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        let mut ext = Extension::connect(&app, &key).await;
        assert_eq!(request_id(&ext.recv_request().await), id);
        ext.close().await;
    }
    let failed = app.wait_for_status(&key, &id, "failed").await;
    let error = failed["error_message"].as_str().unwrap();
    assert!(error.contains("2 delivery attempts"), "{error}");
    assert!(failed["completed_at"].is_string());
    // A failed request is never delivered again.
    let mut ext = Extension::connect(&app, &key).await;
    ext.assert_nothing_pending().await;
    app.stop().await;
}

#[tokio::test]
async fn reconnected_session_can_finish_a_request_it_did_not_receive() {
    let (app, key) = TestApp::with_account().await;
    let mut old = Extension::connect(&app, &key).await;
    let id = request_id(&old.recv_request_after_submit(&app, &key).await);
    old.executing(&id).await;
    app.wait_for_status(&key, &id, "executing").await;

    // The extension reconnects while the old socket still looks alive.
    let mut new = Extension::connect(&app, &key).await;
    new.respond(&id, "finished on the new socket", "c-re", Some("t"))
        .await;
    let done = app.wait_for_status(&key, &id, "done").await;
    assert_eq!(done["response"], "finished on the new socket");

    // The old session may no longer change it.
    old.respond(&id, "late", "c-re", None).await;
    let error = old.recv_error().await;
    assert_eq!(error["request_id"], id.as_str());
    assert!(
        error["error"].as_str().unwrap().contains("already done"),
        "{error}"
    );
    assert_eq!(
        app.get(&key, &format!("/api/chat/requests/{id}/")).await.1["response"],
        "finished on the new socket"
    );
    app.stop().await;
}

trait SubmitThenRecv {
    async fn recv_request_after_submit(&mut self, app: &TestApp, key: &str) -> Value;
}

impl SubmitThenRecv for Extension {
    async fn recv_request_after_submit(&mut self, app: &TestApp, key: &str) -> Value {
        app.submit_message(key, "hello").await;
        self.recv_request().await
    }
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays_usable() {
    let (app, key) = TestApp::with_account().await;
    let other_key = app.account("other").await;
    let foreign = app.submit_message(&other_key, "not yours").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ext = Extension::connect(&app, &key).await;
    let mine = request_id(&ext.recv_request_after_submit(&app, &key).await);
    ext.respond(&mine, "done", "c-mine", None).await;
    app.wait_for_status(&key, &mine, "done").await;

    let unknown = uuid::Uuid::now_v7().to_string();
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "malformed JSON"),
        ("[1,2]".into(), "JSON object"),
        (json!({ "request_id": mine }).to_string(), "type"),
        (
            json!({ "type": "bogus", "request_id": mine }).to_string(),
            "unknown frame type",
        ),
        (
            json!({ "type": "response", "request_id": mine }).to_string(),
            "response",
        ),
        (
            json!({ "type": "response", "request_id": mine, "response": 5, "chat_id": "c" })
                .to_string(),
            "must be a string",
        ),
        (
            json!({ "type": "error", "request_id": mine }).to_string(),
            "error",
        ),
        (
            json!({ "type": "status_update", "request_id": mine, "status": "done" }).to_string(),
            "executing",
        ),
        (
            json!({ "type": "status_update", "request_id": "not-a-uuid", "status": "executing" })
                .to_string(),
            "unknown request_id",
        ),
        (
            json!({ "type": "status_update", "request_id": unknown, "status": "executing" })
                .to_string(),
            "unknown request_id",
        ),
        (
            json!({ "type": "response", "request_id": foreign, "response": "x", "chat_id": "c" })
                .to_string(),
            "unknown request_id",
        ),
        (
            json!({ "type": "error", "request_id": mine, "error": "late" }).to_string(),
            "already done",
        ),
        (
            json!({ "type": "status_update", "request_id": mine, "status": "executing" })
                .to_string(),
            "already done",
        ),
    ];
    for (text, expected) in cases {
        ext.send_text(&text).await;
        let error = ext.recv_error().await;
        let message = error["error"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "frame {text} got {error}, expected {expected:?}"
        );
    }
    ext.send_binary(b"\x00\x01").await;
    assert!(ext.recv_error().await["error"]
        .as_str()
        .unwrap()
        .contains("binary"));

    // Nothing changed, and the connection still carries requests.
    assert_eq!(
        app.get(&other_key, &format!("/api/chat/requests/{foreign}/"))
            .await
            .1["status"],
        "idle"
    );
    assert_eq!(
        app.get(&key, &format!("/api/chat/requests/{mine}/"))
            .await
            .1["response"],
        "done"
    );
    let next = request_id(&ext.recv_request_after_submit(&app, &key).await);
    ext.respond(&next, "still works", "c-next", None).await;
    app.wait_for_status(&key, &next, "done").await;
    app.stop().await;
}

#[tokio::test]
async fn handshake_with_bad_or_missing_key_is_refused_with_401() {
    let (app, _key) = TestApp::with_account().await;
    let (status, body) = Extension::try_connect(&app, "wrong")
        .await
        .err()
        .expect("refused");
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({ "detail": "invalid API key" })
    );
    let (status, _) = Extension::try_connect(&app, "")
        .await
        .err()
        .expect("refused");
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn accounts_never_see_each_others_requests() {
    let app = TestApp::fresh().await;
    let key_a = app.account("a").await;
    let key_b = app.account("b").await;
    let mut ext_a = Extension::connect(&app, &key_a).await;
    let mut ext_b = Extension::connect(&app, &key_b).await;
    let for_a = app.submit_message(&key_a, "for a").await;
    let for_b = app.submit_message(&key_b, "for b").await;
    assert_eq!(ext_a.recv_request().await["request_id"], for_a["id"]);
    assert_eq!(ext_b.recv_request().await["request_id"], for_b["id"]);
    ext_a.assert_nothing_pending().await;
    ext_b.assert_nothing_pending().await;
    ext_b
        .respond(for_a["id"].as_str().unwrap(), "hijack", "c", None)
        .await;
    assert!(ext_b.recv_error().await["error"]
        .as_str()
        .unwrap()
        .contains("unknown request_id"));
    assert_eq!(
        app.get(
            &key_a,
            &format!("/api/chat/requests/{}/", for_a["id"].as_str().unwrap())
        )
        .await
        .1["status"],
        "idle"
    );
    app.stop().await;
}

#[tokio::test]
async fn silent_peer_is_dropped_and_its_request_redelivered() {
    let (app, key) = TestApp::with_account_configured(|_, edge| edge.ws_ping_secs = 1).await;
    let created = app.submit_message(&key, "hello").await;
    // This client reads one frame and then never again: it answers no pings.
    let mut silent = Extension::connect(&app, &key).await;
    assert_eq!(silent.recv_request().await["request_id"], created["id"]);
    let mut healthy = Extension::connect(&app, &key).await;
    assert_eq!(healthy.recv_request().await["request_id"], created["id"]);
    drop(silent);
    app.stop().await;
}

#[tokio::test]
async fn grpc_extension_session_works_without_the_edge() {
    use chatrelay_proto::v1::{
        self as pb, extension_frame, extension_service_client::ExtensionServiceClient, server_frame,
    };
    use tokio_stream::wrappers::ReceiverStream;

    let (app, key) = TestApp::with_account().await;
    let mut client = ExtensionServiceClient::connect(app.grpc.clone())
        .await
        .unwrap();

    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::ExtensionFrame>(4);
    let status = client
        .extension_session(tonic::Request::new(ReceiverStream::new(rx)))
        .await
        .expect_err("no key");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ExtensionFrame>(4);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    let mut frames = client
        .extension_session(request)
        .await
        .unwrap()
        .into_inner();
    let created = app.submit_message(&key, "over grpc").await;
    let Some(server_frame::Frame::NewRequest(new)) = frames.message().await.unwrap().unwrap().frame
    else {
        panic!("expected new_request");
    };
    assert_eq!(new.request_id, created["id"].as_str().unwrap());
    assert_eq!(new.message, "over grpc");
    tx.send(pb::ExtensionFrame {
        frame: Some(extension_frame::Frame::Response(pb::RequestResponse {
            request_id: new.request_id.clone(),
            response: "pong".into(),
            chat_id: "grpc-chat".into(),
            chat_title: None,
        })),
    })
    .await
    .unwrap();
    let done = app.wait_for_status(&key, &new.request_id, "done").await;
    assert_eq!(done["chat"], "grpc-chat");
    app.stop().await;
}

#[tokio::test]
async fn simulator_answers_every_request() {
    let (app, key) = TestApp::with_account().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            app.submit_message(&key, &format!("sim {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let options = chatrelay::simulate::SimulateOptions {
        url: format!("{}/ws/extension/", app.http.replacen("http", "ws", 1)),
        api_key: key.clone(),
        delay_ms: 0,
        reply: Some("fixed".into()),
        failure_rate: 0.0,
        no_status_update: false,
        exit_after: Some(3),
        quiet: true,
    };
    let stats = chatrelay::simulate::run(options, Default::default())
        .await
        .unwrap();
    assert_eq!(stats.answered, 3);
    for id in ids {
        let done = app.wait_for_status(&key, &id, "done").await;
        assert_eq!(done["response"], "fixed");
    }
    app.stop().await;
}

/// Several cores on one PostgreSQL: a request submitted through one is
/// delivered by a session on the other, once, and its result is seen by both.
#[tokio::test]
async fn two_cores_on_one_postgres_share_the_queue() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        return; // SQLite is one core per database file
    }
    let first = TestApp::start(&db).await;
    let second = TestApp::start(&db).await;
    let key = first.account("acme").await;
    let mut on_second = Extension::connect(&second, &key).await;
    let mut on_first = Extension::connect(&first, &key).await;

    let mut submitted = HashSet::new();
    for i in 0..10 {
        let app = if i % 2 == 0 { &first } else { &second };
        submitted.insert(
            app.submit_message(&key, &format!("m{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut seen = Vec::new();
    while seen.len() < 10 {
        tokio::select! {
            frame = on_first.recv() => { let id = request_id(&frame); on_first.respond(&id, "1", &format!("c-{id}"), None).await; seen.push(id); }
            frame = on_second.recv() => { let id = request_id(&frame); on_second.respond(&id, "2", &format!("c-{id}"), None).await; seen.push(id); }
        }
    }
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), submitted);
    on_first.assert_nothing_pending().await;
    on_second.assert_nothing_pending().await;
    for id in &submitted {
        second.wait_for_status(&key, id, "done").await;
    }
    // Live delivery across cores: only the second core has a session now.
    on_first.close().await;
    let live = first.submit_message(&key, "cross-core").await;
    assert_eq!(on_second.recv_request().await["request_id"], live["id"]);
    first.stop().await;
    second.stop().await;
}

/// A core that dies stops renewing its leases: any other core (here, the
/// keeper of this one) gives the requests back once the lease lapses.
#[tokio::test]
async fn lapsed_lease_of_a_dead_core_is_given_back() {
    let (app, key) = TestApp::with_account_configured(|core, _| core.lease_ttl_secs = 1).await;
    let id = app.submit_message(&key, "orphaned").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // As if a core that has since died had delivered it.
    let expired = chrono::Utc::now().timestamp_millis() - 1;
    app.core().lease_to_a_dead_core(&id, expired).await;
    let mut ext = Extension::connect(&app, &key).await;
    assert_eq!(request_id(&ext.recv_request().await), id);
    ext.respond(&id, "rescued", "c-r", None).await;
    app.wait_for_status(&key, &id, "done").await;
    app.stop().await;
}

/// The socket's and the call's buffers start small and grow with the frame:
/// the longest message reaches the extension whole, and the longest
/// response (1,000,000 characters, here 4 bytes each: a frame just under the
/// default 4 MiB WebSocket limit) is applied.
#[tokio::test]
async fn the_largest_allowed_frames_pass_both_ways() {
    let (app, key) = TestApp::with_account().await;
    // The longest accepted message (100,000 characters), 4 bytes each.
    let message = "\u{1F600}".repeat(100_000);
    let id = app.submit_message(&key, &message).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ext = Extension::connect(&app, &key).await;
    let frame = ext.recv_request().await;
    assert_eq!(frame["request_id"], id.as_str());
    assert_eq!(frame["message"], message.as_str());

    let response = "\u{1F600}".repeat(1_000_000);
    ext.respond(&id, &response, "c-large", None).await;
    let done = app.wait_for_status(&key, &id, "done").await;
    assert_eq!(done["response"], response.as_str());
    assert_eq!(done["chat"], "c-large");
    app.stop().await;
}
