//! A key that stops working ends what it opened: extension sessions opened
//! with a key that `chatrelay account rotate-key` rotated out are closed
//! within seconds (WebSocket close 1008, gRPC `Unauthenticated`) and given
//! no more work — on every core sharing the database.

mod common;

use std::time::Duration;

use chatrelay_proto::v1::{self as pb, extension_service_client::ExtensionServiceClient};
use common::{ws::Extension, TestApp, TestDb};

/// The revocation check runs every 2 s; this leaves room for a loaded machine.
const WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn websocket_sessions_opened_with_a_rotated_key_are_closed_and_lose_their_work() {
    let db = TestDb::new().await;
    let app = TestApp::start(&db).await;
    let old_key = app.account("acme").await;
    // On PostgreSQL a second core holds a session too: it must hear of the
    // rotation as well (it reads the keys itself).
    let other = if db.is_postgres() {
        Some(TestApp::start(&db).await)
    } else {
        None
    };
    let mut session = Extension::connect(&app, &old_key).await;
    let mut elsewhere = match &other {
        Some(other) => Some(Extension::connect(other, &old_key).await),
        None => None,
    };
    let id = app.submit_message(&old_key, "before the rotation").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Delivered to one of the sessions, whichever claimed it.
    let delivered = match elsewhere.as_mut() {
        None => session.recv_request().await,
        Some(elsewhere) => tokio::select! {
            frame = session.recv_request() => frame,
            frame = elsewhere.recv_request() => frame,
        },
    };
    assert_eq!(delivered["request_id"], id.as_str());

    let new_key = app.core().rotate_key("acme", false).await;
    let (code, reason) = session.recv_close(WITHIN).await.expect("a close frame");
    assert_eq!(code, 1008);
    assert_eq!(
        reason,
        "the API key this session was opened with no longer works"
    );
    if let Some(elsewhere) = elsewhere.as_mut() {
        let (code, _) = elsewhere.recv_close(WITHIN).await.expect("a close frame");
        assert_eq!(code, 1008);
    }

    // The old key opens nothing more; the new one gets the request back.
    let (status, _) = Extension::try_connect(&app, &old_key)
        .await
        .err()
        .expect("refused");
    assert_eq!(status, 401);
    let mut fresh = Extension::connect(&app, &new_key).await;
    let frame = fresh.recv_request().await;
    assert_eq!(frame["request_id"], id.as_str());
    if let Some(other) = other {
        other.stop().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn grpc_sessions_opened_with_a_rotated_key_end_unauthenticated() {
    let (app, key) = TestApp::with_account().await;
    let mut client = ExtensionServiceClient::connect(app.grpc.clone())
        .await
        .expect("connect");
    let (to_core, inbound) = tokio::sync::mpsc::channel::<pb::ExtensionFrame>(4);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(inbound));
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("key"));
    let mut frames = client
        .extension_session(request)
        .await
        .expect("session opens")
        .into_inner();

    app.core().rotate_key("acme", false).await;
    let ended = tokio::time::timeout(WITHIN, frames.message())
        .await
        .expect("the session ends within seconds");
    let status = ended.expect_err("it ends with a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    drop(to_core);
    app.stop().await;
}
