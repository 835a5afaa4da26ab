//! The account's extension sessions: `GET /api/chat/sessions/` and gRPC
//! `ListSessions` — listed with their requests in flight while connected,
//! gone once they leave, on every core sharing PostgreSQL, and not listed
//! once the core holding them has died and its lease lifetime has passed.

mod common;

use std::time::Duration;

use chatrelay_proto::v1 as pb;
use common::{
    eventually,
    grpc::{chat_client, with_key},
    process::{self, Served},
    rest::{assert_keys, assert_recent_timestamp, get_without_key, id_of},
    ws::{request_id, Extension},
    TestApp, TestDb, ACCOUNT,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SESSIONS: &str = "/api/chat/sessions/";

/// The account's sessions, as listed by the edge at `http`.
async fn sessions_at(http: &str, key: &str) -> Vec<Value> {
    let (status, body) = process::http_get(http, key, SESSIONS).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("a JSON array").clone()
}

async fn sessions(app: &TestApp, key: &str) -> Vec<Value> {
    sessions_at(&app.http, key).await
}

/// Waits until the app lists exactly `n` sessions of the account.
async fn until_listed(app: &TestApp, key: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} sessions listed"), || async move {
        let listed = sessions(app, key).await;
        (listed.len() == n).then_some(listed)
    })
    .await
}

#[tokio::test]
async fn no_extension_connected_is_an_empty_list() {
    let (app, key) = TestApp::with_account().await;
    let (status, body) = app.get(&key, SESSIONS).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([]));
    let (status, body) = app.get(&key, "/api/chat/sessions").await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));

    let (status, body) = get_without_key(&app, SESSIONS).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "detail": "missing API key (X-API-Key header)" })
    );
    let (status, body) = app.get("cr_wrong", SESSIONS).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({ "detail": "invalid API key" }));
    app.stop().await;
}

#[tokio::test]
async fn a_connected_session_is_listed_with_its_requests_in_flight_until_it_leaves() {
    let (app, key) = TestApp::with_account().await;
    let other_key = app.account("other").await;
    let first = id_of(&app.submit_message(&key, "one").await).to_string();
    let second = id_of(&app.submit_message(&key, "two").await).to_string();
    let mut ext = Extension::connect(&app, &key).await;
    assert_eq!(request_id(&ext.recv_request().await), first);
    assert_eq!(request_id(&ext.recv_request().await), second);

    // A session is listed before it is sent anything, and what it was sent
    // is leased to it.
    let listed = sessions(&app, &key).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let session = &listed[0];
    assert_keys(
        session,
        &["session_id", "connected_at", "in_flight", "node"],
    );
    let session_id = session["session_id"].as_str().unwrap().to_string();
    uuid::Uuid::parse_str(&session_id).expect("session_id is a UUID");
    assert_recent_timestamp(&session["connected_at"]);
    assert_eq!(session["in_flight"], 2);
    assert_eq!(session["node"], app.core().node_id());
    assert_eq!(sessions(&app, &other_key).await, Vec::<Value>::new());

    // Finished requests leave it; a running one stays.
    ext.respond(&first, "an answer", "chatgpt-1", None).await;
    ext.executing(&second).await;
    app.wait_for_status(&key, &first, "done").await;
    app.wait_for_status(&key, &second, "executing").await;
    let mut expected = session.clone();
    expected["in_flight"] = json!(1);
    assert_eq!(sessions(&app, &key).await, [expected.clone()]);

    // A second session is listed after the first: oldest connection first.
    let ext2 = Extension::connect(&app, &key).await;
    let listed = until_listed(&app, &key, 2).await;
    assert_eq!(listed[0], expected);
    assert_eq!(listed[1]["in_flight"], 0);
    assert_ne!(listed[1]["session_id"], session_id.as_str());

    ext.close().await;
    ext2.close().await;
    until_listed(&app, &key, 0).await;
    app.stop().await;
}

/// A session on one core is listed by another. Meaningful on PostgreSQL;
/// SQLite is one core per database file, so there the same body runs with
/// both roles on one core.
#[tokio::test]
async fn every_core_lists_the_sessions_of_every_core() {
    let db = TestDb::new().await;
    let holding = TestApp::start(&db).await;
    let other = if db.is_postgres() {
        Some(TestApp::start(&db).await)
    } else {
        None
    };
    let listing = other.as_ref().unwrap_or(&holding);
    let key = holding.account(ACCOUNT).await;
    let mut ext = Extension::connect(&holding, &key).await;
    let id = id_of(&listing.submit_message(&key, "anywhere").await).to_string();
    assert_eq!(request_id(&ext.recv_request().await), id);

    let listed = sessions(listing, &key).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["node"], holding.core().node_id());
    assert_eq!(listed[0]["in_flight"], 1);

    ext.close().await;
    until_listed(listing, &key, 0).await;
    if let Some(other) = other {
        other.stop().await;
    }
    holding.stop().await;
}

/// A core that dies cannot delete its sessions' rows: another core stops
/// listing them once it has not refreshed them for a lease lifetime (1 s
/// here; the rows are swept only after ten). On SQLite, the next run of the
/// database's one server starts with none.
#[tokio::test]
async fn a_killed_core_s_sessions_are_not_listed_once_its_lease_lapses() {
    let db = TestDb::new().await;
    let (key, _) = process::create_account(&db, ACCOUNT).await;
    let short_lease = |command: &mut tokio::process::Command| {
        command.env("CHATRELAY_LEASE_TTL_SECS", "1");
    };
    let doomed = Served::start_with(&db, short_lease).await;
    let survivor = if db.is_postgres() {
        Some(Served::start_with(&db, short_lease).await)
    } else {
        None
    };
    let _ext = Extension::connect_to(&doomed.http, &key).await;
    let listing = survivor.as_ref().map_or(&doomed.http, |s| &s.http);
    let key = &key;
    eventually("the session listed", || async move {
        (sessions_at(listing, key).await.len() == 1).then_some(())
    })
    .await;
    doomed.kill().await;

    let survivor = match survivor {
        Some(survivor) => survivor,
        None => Served::start_with(&db, short_lease).await,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let listed = sessions_at(&survivor.http, key).await;
        if listed.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dead core's session still listed: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    survivor.kill().await;
}

#[tokio::test]
async fn grpc_list_sessions_lists_the_account_s_sessions() {
    let (app, key) = TestApp::with_account().await;
    let mut client = chat_client(&app).await;
    let list = || with_key(&key, pb::ListSessionsRequest {});
    let none = client
        .list_sessions(list())
        .await
        .expect("list")
        .into_inner();
    assert!(none.sessions.is_empty());

    let id = id_of(&app.submit_message(&key, "grpc").await).to_string();
    let mut ext = Extension::connect(&app, &key).await;
    assert_eq!(request_id(&ext.recv_request().await), id);
    let listed = client
        .list_sessions(list())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.sessions.len(), 1);
    let session = &listed.sessions[0];
    assert_eq!(session.in_flight, 1);
    assert_eq!(session.node, app.core().node_id());
    assert!(session.connected_at.is_some());
    uuid::Uuid::parse_str(&session.session_id).expect("a UUID");
    ext.close().await;
    app.stop().await;
}
