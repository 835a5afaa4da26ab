//! Live status: the long-poll (`GET /api/chat/requests/{id}/?wait=S`, gRPC
//! `GetRequest.wait`), the event stream (`GET /api/chat/events/`, gRPC
//! `WatchRequests`), resumption with `Last-Event-ID`, slow readers, and
//! several cores on one PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use chatrelay_proto::v1::{self as pb, chat_service_client::ChatServiceClient};
use common::{
    rest::{assert_error, id_of},
    sse::EventStream,
    ws::Extension,
    TestApp, TestDb,
};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;

fn request_path(id: &str) -> String {
    format!("/api/chat/requests/{id}/")
}

/// A long-poll, in the background: its status, body and how long it took.
fn long_poll(
    app: &TestApp,
    key: &str,
    id: &str,
    wait: &str,
) -> tokio::task::JoinHandle<(StatusCode, Value, Duration)> {
    let (client, url, key) = (
        app.client.clone(),
        app.url(&format!("{}?wait={wait}", request_path(id))),
        key.to_string(),
    );
    tokio::spawn(async move {
        let started = Instant::now();
        let response = client
            .get(url)
            .header("X-API-Key", key)
            .send()
            .await
            .expect("long-poll");
        let (status, body) = common::json_of(response).await;
        (status, body, started.elapsed())
    })
}

// ---- Long-poll ---------------------------------------------------------------------

#[tokio::test]
async fn long_poll_answers_as_soon_as_the_request_is_done() {
    let (app, key) = TestApp::with_account().await;
    let id = id_of(&app.submit_message(&key, "hold on").await).to_string();
    let poll = long_poll(&app, &key, &id, "30");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!poll.is_finished(), "answered before the request was done");

    let mut ext = Extension::connect(&app, &key).await;
    assert_eq!(ext.recv_request().await["request_id"], id.as_str());
    ext.respond(&id, "the answer", "c1", None).await;
    let (status, body, took) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "done");
    assert_eq!(body["response"], "the answer");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let (_, got) = app.get(&key, &request_path(&id)).await;
    assert_eq!(body, got, "the same JSON as without wait");
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn long_poll_answers_when_the_request_fails() {
    let (app, key) = TestApp::with_account().await;
    let id = id_of(&app.submit_message(&key, "doomed").await).to_string();
    let poll = long_poll(&app, &key, &id, "30");
    let mut ext = Extension::connect(&app, &key).await;
    ext.recv_request().await;
    ext.fail(&id, "no luck").await;
    let (status, body, _) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["error_message"], "no luck");
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn long_poll_of_a_finished_request_answers_at_once() {
    let (app, key) = TestApp::with_account().await;
    let id = id_of(&app.submit_message(&key, "quick").await).to_string();
    let mut ext = Extension::connect(&app, &key).await;
    ext.recv_request().await;
    ext.respond(&id, "done already", "c1", None).await;
    app.wait_for_status(&key, &id, "done").await;
    let (status, body, took) = long_poll(&app, &key, &id, "60").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "done");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn long_poll_answers_with_the_request_as_it_is_when_the_wait_is_over() {
    let (app, key) = TestApp::with_account().await;
    let created = app.submit_message(&key, "nobody answers").await;
    let id = id_of(&created).to_string();
    let (status, body, took) = long_poll(&app, &key, &id, "0.5").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, created);
    assert!(took >= Duration::from_millis(450), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    app.stop().await;
}

#[tokio::test]
async fn long_poll_with_a_bad_wait_is_400_naming_wait() {
    let (app, key) = TestApp::with_account().await;
    let id = id_of(&app.submit_message(&key, "x").await).to_string();
    for wait in ["0", "-1", "60.5", "61", "abc", "", "NaN", "inf", "1e9"] {
        let (status, body) = app
            .get(&key, &format!("{}?wait={wait}", request_path(&id)))
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "wait");
    }
    let mut ext = Extension::connect(&app, &key).await;
    ext.recv_request().await;
    ext.respond(&id, "ok", "c1", None).await;
    app.wait_for_status(&key, &id, "done").await;
    let (status, body) = app
        .get(&key, &format!("{}?wait=60", request_path(&id)))
        .await;
    assert_eq!(status, StatusCode::OK, "60 is allowed: {body}");
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn long_poll_of_an_unknown_or_another_accounts_request_is_404_at_once() {
    let (app, key) = TestApp::with_account().await;
    let other = app.account("globex").await;
    let id = id_of(&app.submit_message(&key, "mine").await).to_string();
    for (key, id) in [
        (&other, id.as_str()),
        (&key, "00000000-0000-0000-0000-000000000000"),
        (&key, "not-a-uuid"),
    ] {
        let (status, body, took) = long_poll(&app, key, id, "30").await.unwrap();
        assert_error(status, &body, StatusCode::NOT_FOUND, "not found");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
    let (status, body, _) = long_poll(&app, "cr_wrong", &id, "30").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn pending_long_poll_is_answered_when_the_server_stops() {
    let (app, key) = TestApp::with_account().await;
    let created = app.submit_message(&key, "never answered").await;
    let poll = long_poll(&app, &key, id_of(&created), "60");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    app.stop().await;
    let (status, body, _) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, created);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn grpc_get_request_waits_for_the_answer() {
    let (app, key) = TestApp::with_account().await;
    let id = id_of(&app.submit_message(&key, "over grpc").await).to_string();
    let mut client = ChatServiceClient::connect(app.grpc.clone())
        .await
        .expect("connect");
    let mut request = tonic::Request::new(pb::GetRequestRequest {
        id: id.clone(),
        wait: Some(30.0),
    });
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    let poll = tokio::spawn(async move { client.get_request(request).await });
    let mut ext = Extension::connect(&app, &key).await;
    ext.recv_request().await;
    ext.respond(&id, "streamed", "c1", None).await;
    let got = poll.await.unwrap().expect("get").into_inner();
    assert_eq!(got.status(), pb::RequestStatus::Done);
    assert_eq!(got.response.as_deref(), Some("streamed"));

    let mut client = ChatServiceClient::connect(app.grpc.clone()).await.unwrap();
    let mut request = tonic::Request::new(pb::GetRequestRequest {
        id,
        wait: Some(0.0),
    });
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    let status = client.get_request(request).await.expect_err("wait 0");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("wait"), "{status:?}");
    ext.close().await;
    app.stop().await;
}

// ---- Event stream ------------------------------------------------------------------

#[tokio::test]
async fn events_show_idle_executing_done_as_get_returns_them() {
    let (app, key) = TestApp::with_account().await;
    let mut events = EventStream::of(&app, &key).await;
    let created = app.submit_message(&key, "follow me").await;
    let id = id_of(&created).to_string();

    let first = events.next().await;
    assert_eq!(first.event, "request");
    assert_eq!(first.data, created, "the idle event is the submit's JSON");
    let mut ext = Extension::connect(&app, &key).await;
    ext.recv_request().await;
    ext.executing(&id).await;
    let second = events.next().await;
    assert_eq!(second.data["status"], "executing");
    assert_eq!(second.data, app.get(&key, &request_path(&id)).await.1);
    ext.respond(&id, "followed", "chat-1", Some("Title")).await;
    let third = events.next().await;
    assert_eq!(third.data["status"], "done");
    assert_eq!(third.data, app.get(&key, &request_path(&id)).await.1);

    let ids: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|e| e.id.clone().expect("every event has an id"))
        .collect();
    let numbers: Vec<u64> = ids
        .iter()
        .map(|id| id.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn events_show_failed() {
    let (app, key) = TestApp::with_account().await;
    let mut events = EventStream::of(&app, &key).await;
    let id = id_of(&app.submit_message(&key, "fail me").await).to_string();
    assert_eq!(events.next_request().await["status"], "idle");
    let mut ext = Extension::connect(&app, &key).await;
    ext.recv_request().await;
    ext.fail(&id, "it broke").await;
    let failed = events.next_request().await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error_message"], "it broke");
    ext.close().await;
    app.stop().await;
}

/// The events of submits and answers show the request as the transaction
/// left it (not read back), so they must be what `GET` returns even where
/// the chat changed under the request.
#[tokio::test]
async fn events_match_get_when_an_answer_joins_a_conversation_another_chat_has() {
    let (app, key) = TestApp::with_account().await;
    let mut events = EventStream::of(&app, &key).await;
    let mut ext = Extension::connect(&app, &key).await;
    // Two new chats whose answers name one ChatGPT conversation: the second
    // request moves into the first one's chat, with its title.
    for (message, title) in [("one", Some("Shared")), ("two", None)] {
        let created = app.submit_message(&key, message).await;
        let id = id_of(&created).to_string();
        assert_eq!(events.next_request().await, created);
        ext.recv_request().await;
        ext.respond(&id, "answered", "shared-chat", title).await;
        let done = events.next_request().await;
        assert_eq!(done["status"], "done");
        assert_eq!(done["chat"], "shared-chat");
        assert_eq!(done, app.get(&key, &request_path(&id)).await.1);
    }
    // A follow-up in that conversation: its idle event names the chat.
    let (status, created) = app
        .submit(
            &key,
            serde_json::json!({"message": "three", "chat_id": "shared-chat"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let idle = events.next_request().await;
    assert_eq!(idle, created);
    assert_eq!(idle["chat"], "shared-chat");
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn redelivered_request_is_idle_again_in_the_events() {
    let (app, key) = TestApp::with_account().await;
    let mut events = EventStream::of(&app, &key).await;
    let id = id_of(&app.submit_message(&key, "again").await).to_string();
    assert_eq!(events.next_request().await["status"], "idle");
    let mut first = Extension::connect(&app, &key).await;
    first.recv_request().await;
    first.executing(&id).await;
    assert_eq!(events.next_request().await["status"], "executing");
    first.close().await;

    let requeued = events.next_request().await;
    assert_eq!(requeued["id"], id.as_str());
    assert_eq!(requeued["status"], "idle");
    let mut second = Extension::connect(&app, &key).await;
    second.recv_request().await;
    second.respond(&id, "second time", "c1", None).await;
    assert_eq!(events.next_request().await["status"], "done");
    second.close().await;
    app.stop().await;
}

#[tokio::test]
async fn idle_stream_gets_keep_alive_comments() {
    let (app, key) = TestApp::with_account_configured(|_, edge| edge.sse_keep_alive_secs = 1).await;
    let mut events = EventStream::of(&app, &key).await;
    events.assert_quiet(Duration::from_millis(2500)).await;
    assert!(events.comments >= 1, "no keep-alive comment in 2.5 s");
    app.stop().await;
}

#[tokio::test]
async fn events_with_a_missing_or_bad_key_are_a_401_json() {
    let (app, _key) = TestApp::with_account().await;
    for (path, headers) in [
        ("/api/chat/events/", vec![]),
        ("/api/chat/events/", vec![("X-API-Key", "cr_wrong")]),
        ("/api/chat/events/?api_key=cr_wrong", vec![]),
        ("/api/chat/events", vec![("X-API-Key", "")]),
    ] {
        match EventStream::try_open(&app, path, &headers).await {
            Ok(_) => panic!("{path} {headers:?}: stream opened"),
            Err((status, body)) => assert_error(status, &body, StatusCode::UNAUTHORIZED, "key"),
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn events_take_the_key_as_a_query_parameter_and_filter_by_request() {
    let (app, key) = TestApp::with_account().await;
    let first = id_of(&app.submit_message(&key, "first").await).to_string();
    let mut events = EventStream::open(
        &app,
        &format!("/api/chat/events/?api_key={key}&request_id={first}"),
        &[],
    )
    .await;
    app.submit_message(&key, "second").await;
    let mut ext = Extension::connect(&app, &key).await;
    for _ in 0..2 {
        let id = ext.recv_request().await["request_id"]
            .as_str()
            .unwrap()
            .to_string();
        ext.respond(&id, "ok", &format!("c-{id}"), None).await;
    }
    let only = events.next_request().await;
    assert_eq!(only["id"], first.as_str());
    assert_eq!(only["status"], "done");
    events.assert_quiet(Duration::from_millis(500)).await;

    let refused = EventStream::try_open(
        &app,
        "/api/chat/events/?request_id=nope",
        &[("X-API-Key", &key)],
    )
    .await;
    match refused {
        Ok(_) => panic!("a bad request_id opened a stream"),
        Err((status, body)) => assert_error(status, &body, StatusCode::BAD_REQUEST, "request_id"),
    }
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn events_never_show_another_accounts_requests() {
    let (app, key) = TestApp::with_account().await;
    let other = app.account("globex").await;
    let mut mine = EventStream::of(&app, &key).await;
    let mut theirs = EventStream::of(&app, &other).await;
    let their_id = id_of(&app.submit_message(&other, "theirs").await).to_string();
    // Even asking for their request by id shows nothing of it.
    let mut snooping = EventStream::open(
        &app,
        &format!("/api/chat/events/?request_id={their_id}"),
        &[("X-API-Key", &key)],
    )
    .await;
    let my_id = id_of(&app.submit_message(&key, "mine").await).to_string();
    assert_eq!(mine.next_request().await["id"], my_id.as_str());
    assert_eq!(theirs.next_request().await["id"], their_id.as_str());
    let mut ext = Extension::connect(&app, &other).await;
    ext.recv_request().await;
    ext.respond(&their_id, "secret", "c-x", None).await;
    assert_eq!(theirs.next_request().await["status"], "done");
    mine.assert_quiet(Duration::from_millis(300)).await;
    snooping.assert_quiet(Duration::from_millis(100)).await;
    ext.close().await;
    app.stop().await;
}

#[tokio::test]
async fn slow_reader_is_reset_and_closed_while_others_keep_up() {
    const EVENTS: usize = 150;
    let (app, key) = TestApp::with_account_configured(|core, _| core.live_buffer = 32).await;
    // Opened and never read until the end: the socket and the ring fill.
    let mut slow = EventStream::of(&app, &key).await;
    let mut fast = EventStream::of(&app, &key).await;
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < EVENTS {
            let event = fast.next_within(Duration::from_secs(60)).await;
            assert_eq!(
                event.expect("fast reader gets every event").event,
                "request"
            );
            seen += 1;
        }
        seen
    });
    let big = "x".repeat(95_000);
    for _ in 0..EVENTS {
        app.submit_message(&key, &big).await;
    }
    assert_eq!(reader.await.unwrap(), EVENTS);

    let mut requests = 0;
    let mut last = None;
    while let Some(event) = slow.next_within(Duration::from_secs(10)).await {
        if event.event == "request" {
            requests += 1;
        }
        last = Some(event);
    }
    let last = last.expect("the slow reader got something");
    assert_eq!(last.event, "reset", "ends with a reset");
    assert!(last.data["detail"]
        .as_str()
        .unwrap()
        .contains("fell behind"));
    assert!(requests < EVENTS, "the slow reader was not cut off");
    app.stop().await;
}

#[tokio::test]
async fn reconnect_with_last_event_id_gets_the_missed_events() {
    let (app, key) = TestApp::with_account().await;
    let mut events = EventStream::of(&app, &key).await;
    let first = id_of(&app.submit_message(&key, "one").await).to_string();
    let seen = events.next().await;
    assert_eq!(seen.data["id"], first.as_str());
    drop(events);

    let second = id_of(&app.submit_message(&key, "two").await).to_string();
    let third = id_of(&app.submit_message(&key, "three").await).to_string();
    let last_id = seen.id.unwrap();
    let mut resumed = EventStream::open(
        &app,
        "/api/chat/events/",
        &[("X-API-Key", &key), ("Last-Event-ID", &last_id)],
    )
    .await;
    assert_eq!(resumed.next_request().await["id"], second.as_str());
    assert_eq!(resumed.next_request().await["id"], third.as_str());
    resumed.assert_quiet(Duration::from_millis(200)).await;
    app.stop().await;
}

#[tokio::test]
async fn reconnect_with_an_unknown_last_event_id_is_told_to_reset() {
    let (app, key) = TestApp::with_account().await;
    let mut resumed = EventStream::open(
        &app,
        "/api/chat/events/",
        &[("X-API-Key", &key), ("Last-Event-ID", "someone-else-42")],
    )
    .await;
    let reset = resumed.next().await;
    assert_eq!(reset.event, "reset");
    assert!(reset.data["detail"].is_string(), "{reset:?}");
    assert!(reset.id.is_some(), "a reset carries where to resume from");
    // The stream goes on after a resumption's reset.
    let id = id_of(&app.submit_message(&key, "after reset").await).to_string();
    assert_eq!(resumed.next_request().await["id"], id.as_str());
    app.stop().await;
}

#[tokio::test]
async fn grpc_watch_requests_carries_the_same_events() {
    let (app, key) = TestApp::with_account().await;
    let mut client = ChatServiceClient::connect(app.grpc.clone()).await.unwrap();
    let mut request = tonic::Request::new(pb::WatchRequestsRequest::default());
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    let mut stream = client.watch_requests(request).await.unwrap().into_inner();
    let id = id_of(&app.submit_message(&key, "grpc watch").await).to_string();
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event")
        .expect("not ended")
        .expect("not an error");
    assert!(!event.id.is_empty());
    match event.event {
        Some(pb::request_event::Event::Request(request)) => {
            assert_eq!(request.id, id);
            assert_eq!(request.status(), pb::RequestStatus::Idle);
        }
        other => panic!("{other:?}"),
    }

    let mut request = tonic::Request::new(pb::WatchRequestsRequest::default());
    request
        .metadata_mut()
        .insert("x-api-key", "cr_wrong".parse().unwrap());
    let status = client.watch_requests(request).await.expect_err("bad key");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    app.stop().await;
}

#[tokio::test]
async fn streams_opened_with_a_rotated_key_end() {
    let (app, key) = TestApp::with_account().await;
    let mut events = EventStream::of(&app, &key).await;
    let mut client = ChatServiceClient::connect(app.grpc.clone()).await.unwrap();
    let mut request = tonic::Request::new(pb::WatchRequestsRequest::default());
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    let mut stream = client.watch_requests(request).await.unwrap().into_inner();

    let new_key = app.core().rotate_key(common::ACCOUNT, false).await;
    // Within the revocation check's period (2 s) and some slack.
    let ended = tokio::time::timeout(Duration::from_secs(8), stream.next())
        .await
        .expect("the gRPC stream ends");
    let status = ended.expect("an item").expect_err("Unauthenticated");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let waited = Instant::now();
    assert_eq!(events.next_within(Duration::from_secs(8)).await, None);
    assert!(
        waited.elapsed() < Duration::from_secs(7),
        "the SSE stream ended"
    );
    // The new key opens a stream that lives on.
    let mut fresh = EventStream::of(&app, &new_key).await;
    let id = id_of(&app.submit_message(&new_key, "still heard").await).to_string();
    assert_eq!(fresh.next_request().await["id"], id.as_str());
    app.stop().await;
}

// ---- Several cores -----------------------------------------------------------------

/// A subscriber and a long-poll on one core hear what another core commits.
/// Meaningful on PostgreSQL; SQLite is one core per database file, so there
/// the same body runs with both roles on one core.
#[tokio::test]
async fn subscribers_on_any_core_hear_every_change() {
    let db = TestDb::new().await;
    let first = TestApp::start(&db).await;
    let second = if db.is_postgres() {
        Some(TestApp::start(&db).await)
    } else {
        None
    };
    let watching = second.as_ref().unwrap_or(&first);
    let key = first.account("acme").await;
    let mut events = EventStream::of(watching, &key).await;

    let id = id_of(&first.submit_message(&key, "across").await).to_string();
    let poll = long_poll(watching, &key, &id, "30");
    assert_eq!(events.next_request().await["status"], "idle");
    let mut ext = Extension::connect(&first, &key).await;
    ext.recv_request().await;
    ext.executing(&id).await;
    assert_eq!(events.next_request().await["status"], "executing");
    ext.respond(&id, "heard everywhere", "c1", None).await;
    let done = events.next_request().await;
    assert_eq!(done["status"], "done");
    assert_eq!(done["response"], "heard everywhere");
    let (status, body, _) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "done");
    // The answer was one event: the next is the next submit's (a second
    // `done` would have been committed, and passed on, before it).
    let next = id_of(&first.submit_message(&key, "after").await).to_string();
    let after = events.next_request().await;
    assert_eq!(
        (after["id"].as_str(), after["status"].as_str()),
        (Some(next.as_str()), Some("idle"))
    );
    ext.close().await;
    if let Some(second) = second {
        second.stop().await;
    }
    first.stop().await;
}

/// Waits until the core has looked for other cores and found none (it then
/// sends no notifications): its `chatrelay_other_cores` gauge reads 0.
async fn found_alone(app: &TestApp) {
    common::eventually("the core finds itself alone", || async {
        let metrics = app.metrics().await;
        metrics
            .contains("\nchatrelay_other_cores 0\n")
            .then_some(())
    })
    .await;
}

/// A core alone on its database notifies no other core. A core started
/// later hears everything the first commits once it has started (the first
/// has answered its hello by then): its sessions are woken by the first
/// core's submits, and its subscribers hear every change. So does a core
/// started after that one stopped.
#[tokio::test]
async fn a_core_started_later_hears_a_core_that_was_alone() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        return; // SQLite is one core per database file
    }
    let first = TestApp::start(&db).await;
    let watched = first.account("acme").await;
    let woken = first.account("other").await;
    let mut answering = Extension::connect(&first, &watched).await;
    for round in 0..2 {
        found_alone(&first).await;
        let later = TestApp::start(&db).await;
        let mut events = EventStream::of(&later, &watched).await;
        let mut woken_there = Extension::connect(&later, &woken).await;

        // A submit to the first core wakes a session on the later one.
        let there = id_of(&first.submit_message(&woken, "wake up").await).to_string();
        assert_eq!(
            woken_there.recv_request().await["request_id"],
            there.as_str()
        );
        woken_there
            .respond(&there, "woken", &format!("w{round}"), None)
            .await;

        // Its subscribers hear the first core's changes.
        let id = id_of(&first.submit_message(&watched, "heard").await).to_string();
        let event = events.next_request().await;
        assert_eq!(
            (event["id"].as_str(), event["status"].as_str()),
            (Some(id.as_str()), Some("idle")),
            "round {round}"
        );
        assert_eq!(answering.recv_request().await["request_id"], id.as_str());
        answering.executing(&id).await;
        assert_eq!(events.next_request().await["status"], "executing");
        answering
            .respond(&id, "heard later", &format!("c{round}"), None)
            .await;
        let done = events.next_request().await;
        assert_eq!(
            (done["id"].as_str(), done["status"].as_str()),
            (Some(id.as_str()), Some("done")),
            "round {round}"
        );
        first.wait_for_status(&woken, &there, "done").await;
        woken_there.close().await;
        later.stop().await;
    }
    answering.close().await;
    first.stop().await;
}

/// A core alone on its database sends no notifications: its submits and
/// answers commit without them (each would hold PostgreSQL's notify lock
/// through its commit). Heard by a plain listener on the channel, which the
/// core does not count as a core; once a second core starts, the first
/// core's commits are notified again.
#[tokio::test]
async fn a_core_alone_sends_no_notifications() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        return; // SQLite is one core per database file
    }
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    let mut heard = sqlx::postgres::PgListener::connect(&db.url)
        .await
        .expect("listener");
    heard.listen("chatrelay_dispatch").await.expect("LISTEN");
    found_alone(&app).await;
    let mut ext = Extension::connect(&app, &key).await;
    let answer = |n: usize| format!("alone {n}");
    for n in 0..3 {
        let id = id_of(&app.submit_message(&key, &answer(n)).await).to_string();
        assert_eq!(ext.recv_request().await["request_id"], id.as_str());
        ext.executing(&id).await;
        ext.respond(&id, &answer(n), &format!("c{n}"), None).await;
        app.wait_for_status(&key, &id, "done").await;
    }
    let sent = tokio::time::timeout(Duration::from_millis(500), heard.recv()).await;
    assert!(sent.is_err(), "a lone core notified: {sent:?}");

    let second = TestApp::start(&db).await;
    let node = app.core().node_id();
    // Its submits reach the channel again (a submit just before the first
    // core heard of the second may not: it is looked for in the database).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    'heard: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first core never notified again"
        );
        app.submit_message(&key, "heard again").await;
        while let Ok(notification) =
            tokio::time::timeout(Duration::from_millis(200), heard.recv()).await
        {
            if notification.expect("listener").payload().starts_with(&node) {
                break 'heard;
            }
        }
    }
    ext.close().await;
    second.stop().await;
    app.stop().await;
}

/// A core whose listener loses its connection may have missed other cores'
/// changes: its subscribers get a `reset`, and once it listens again what
/// it commits is heard as before.
#[tokio::test]
async fn subscribers_are_reset_when_the_listener_reconnects() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        return; // SQLite has no listener
    }
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    let mut events = EventStream::of(&app, &key).await;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    common::eventually("the listener is connected", || async {
        let metrics = app.metrics().await;
        metrics.contains("\nchatrelay_other_cores ").then_some(())
    })
    .await;
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'chatrelay listener' AND datname = current_database()",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate the listener");
    assert_eq!(ended, [true]);
    assert_eq!(events.next().await.event, "reset");

    let mut events = EventStream::of(&app, &key).await;
    let id = id_of(&app.submit_message(&key, "after the reconnect").await).to_string();
    let event = events.next_request().await;
    assert_eq!(
        (event["id"].as_str(), event["status"].as_str()),
        (Some(id.as_str()), Some("idle"))
    );
    app.stop().await;
}

// ---- `chatrelay watch` -------------------------------------------------------------

#[tokio::test]
async fn watch_command_prints_events_as_they_come() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let db = TestDb::new().await;
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    let mut watch = common::process::chatrelay(&db)
        .args(["watch", "--core-url", &app.grpc, "--api-key", &key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start chatrelay watch");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut next_event = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a line in time")
            .expect("stdout")
            .expect("a line");
        let event: Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(event["event"], "request", "{line}");
        assert!(event["id"].is_string(), "{line}");
        event["data"].clone()
    };
    // Submits until the command shows one: then it is surely watching.
    let probe = loop {
        let probe = app.submit_message(&key, "probe").await;
        let got = tokio::select! {
            event = next_event() => Some(event),
            _ = tokio::time::sleep(Duration::from_millis(300)) => None,
        };
        if let Some(event) = got {
            break event;
        }
        assert_eq!(probe["status"], "idle");
    };
    assert_eq!(probe["status"], "idle");
    let mut ext = Extension::connect(&app, &key).await;
    let id = ext.recv_request().await["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    // One step at a time: an event's data is read after its change commits,
    // so an answer sent at once could already show in the `executing` event.
    let mut next_of_request = async || loop {
        let event = next_event().await;
        if event["id"] == id.as_str() {
            break event["status"].as_str().unwrap().to_string();
        }
    };
    ext.executing(&id).await;
    assert_eq!(next_of_request().await, "executing");
    ext.respond(&id, "watched", "c1", None).await;
    assert_eq!(next_of_request().await, "done");
    watch.kill().await.ok();

    let refused = common::process::chatrelay(&db)
        .args(["watch", "--core-url", &app.grpc, "--api-key", "cr_wrong"])
        .output()
        .await
        .expect("run chatrelay watch");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("API key"),
        "{refused:?}"
    );
    ext.close().await;
    app.stop().await;
}
