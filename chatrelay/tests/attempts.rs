//! Attempts count deliveries, not connections: a client that goes away
//! before its WebSocket upgrade completes (a reload loop) never holds a
//! request, so it costs no request an attempt.

mod common;

use std::time::Duration;

use common::{
    ws::{request_id, Extension},
    TestApp,
};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn handshakes_abandoned_before_the_upgrade_cost_no_attempt() {
    // One attempt only: a single delivery to a socket that never opened
    // would fail the request.
    let (app, key) = TestApp::with_account_configured(|core, _| core.max_attempts = 1).await;
    let id = app.submit_message(&key, "wait for a real extension").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let addr = app.http.trim_start_matches("http://").to_string();
    for _ in 0..3 {
        let mut tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let handshake = format!(
            "GET /ws/extension/?api_key={key} HTTP/1.1\r\nHost: {addr}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(handshake.as_bytes()).await.expect("write");
        // Gone before reading the server's answer.
        drop(tcp);
    }
    let mut ext = Extension::connect(&app, &key).await;
    let frame = ext
        .try_recv(Duration::from_secs(10))
        .await
        .expect("the request reaches the real extension");
    assert_eq!(request_id(&frame), id);
    ext.respond(&id, "answered", "conv-1", None).await;
    let done = app.wait_for_status(&key, &id, "done").await;
    assert_eq!(done["response"], "answered");
    app.stop().await;
}
