//! A WebSocket client that plays the browser extension in tests.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{self, Message},
    MaybeTlsStream, WebSocketStream,
};

use super::TestApp;

/// How long a test waits for a frame that should come.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

/// The `request_id` of a frame.
pub fn request_id(frame: &Value) -> String {
    frame["request_id"]
        .as_str()
        .expect("request_id")
        .to_string()
}

pub struct Extension {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Extension {
    /// The extension endpoint of `app` for `key`.
    pub fn url(app: &TestApp, key: &str) -> String {
        format!(
            "{}/ws/extension/?api_key={key}",
            app.http.replacen("http", "ws", 1)
        )
    }

    pub async fn connect(app: &TestApp, key: &str) -> Self {
        Self::connect_to(&app.http, key).await
    }

    /// Connects to the edge at `http` (`http://HOST:PORT`), e.g. that of a
    /// `chatrelay serve` process.
    pub async fn connect_to(http: &str, key: &str) -> Self {
        Self::try_connect_to(http, key)
            .await
            .unwrap_or_else(|(status, body)| panic!("handshake refused: {status} {body}"))
    }

    /// Connects, or returns the HTTP status and body of the refused handshake.
    pub async fn try_connect(app: &TestApp, key: &str) -> Result<Self, (u16, String)> {
        Self::try_connect_to(&app.http, key).await
    }

    /// [`Self::try_connect`] to the edge at `http`.
    pub async fn try_connect_to(http: &str, key: &str) -> Result<Self, (u16, String)> {
        let url = format!(
            "{}/ws/extension/?api_key={key}",
            http.replacen("http", "ws", 1)
        );
        match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => Ok(Self { socket }),
            Err(tungstenite::Error::Http(response)) => Err((
                response.status().as_u16(),
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            )),
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.to_string().into()))
            .await
            .expect("send frame");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.socket
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .expect("send binary frame");
    }

    /// The next JSON frame (pings are answered by the library and skipped).
    pub async fn recv(&mut self) -> Value {
        self.try_recv(FRAME_WAIT)
            .await
            .expect("a frame within the wait")
    }

    /// Waits up to `wait` for the server's close frame, skipping other
    /// frames; its code and reason, or `None` if none came.
    pub async fn recv_close(&mut self, wait: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Close(frame) = message {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
        }
    }

    /// The next JSON frame, or `None` if the socket closed or `wait` passed.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??
                .ok()?;
            match message {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"))
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next frame, which must be a `new_request`.
    pub async fn recv_request(&mut self) -> Value {
        let frame = self.recv().await;
        assert_eq!(
            frame["type"], "new_request",
            "expected new_request, got {frame}"
        );
        frame
    }

    /// The next frame, which must be an error frame.
    pub async fn recv_error(&mut self) -> Value {
        let frame = self.recv().await;
        assert_eq!(
            frame["type"], "error",
            "expected an error frame, got {frame}"
        );
        frame
    }

    /// Proves nothing else was queued for this socket: the session answers
    /// frames in order, so the reply to a deliberately bad frame comes next.
    pub async fn assert_nothing_pending(&mut self) {
        self.send(json!({ "type": "barrier" })).await;
        let frame = self.recv().await;
        assert_eq!(
            frame["type"], "error",
            "unexpected frame before the barrier: {frame}"
        );
        assert!(
            frame["error"].as_str().unwrap().contains("barrier"),
            "{frame}"
        );
    }

    pub async fn executing(&mut self, request_id: &str) {
        self.send(
            json!({ "type": "status_update", "request_id": request_id, "status": "executing" }),
        )
        .await;
    }

    pub async fn respond(
        &mut self,
        request_id: &str,
        response: &str,
        chat_id: &str,
        title: Option<&str>,
    ) {
        self.send(json!({
            "type": "response",
            "request_id": request_id,
            "response": response,
            "chat_id": chat_id,
            "chat_title": title,
        }))
        .await;
    }

    pub async fn fail(&mut self, request_id: &str, error: &str) {
        self.send(json!({ "type": "error", "request_id": request_id, "error": error }))
            .await;
    }

    /// Closes the socket cleanly.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        while let Some(Ok(_)) = self.socket.next().await {}
    }
}
