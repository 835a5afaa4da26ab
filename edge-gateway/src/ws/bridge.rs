//! Pumps frames between one WebSocket and its `ExtensionSession` stream.
//! The two directions run independently (neither waits on the other), each
//! with bounded buffers, so a slow side slows its sender instead of growing
//! memory. Pings keep idle sessions alive through proxies; a peer silent for
//! three ping periods is taken for dead. Either side ending ends both.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use chatrelay_proto::v1 as pb;
use futures::{SinkExt, StreamExt};
use tokio::{sync::mpsc, time::Instant};

use super::frames;
use crate::{EdgeConfig, ServerFrames};

/// Messages queued towards the socket before the core side waits.
const OUTBOUND_MESSAGES: usize = 64;

/// How long the core may take to finish a session whose socket is gone.
const CORE_DRAIN: Duration = Duration::from_secs(10);

/// Close codes (RFC 6455).
const GOING_AWAY: u16 = 1001;
const POLICY_VIOLATION: u16 = 1008;
const INTERNAL_ERROR: u16 = 1011;

pub async fn run(
    socket: WebSocket,
    to_core: mpsc::Sender<Box<pb::ExtensionFrame>>,
    mut from_core: ServerFrames,
    config: Arc<EdgeConfig>,
    stopping: tokio_util::sync::CancellationToken,
) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(OUTBOUND_MESSAGES);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let started = Instant::now();
    let last_heard = AtomicU64::new(0);
    // The core delivers nothing until the extension is heard from: the
    // answer to this ping (every WebSocket client sends one) or any frame.
    // A client gone before the upgrade completed — a reload loop — is
    // never heard, so no request goes to it and none loses an attempt.
    let _ = out.send(Message::Ping(Vec::new().into())).await;

    // Extension → core. Dropping `to_core` at the end ends the session's
    // inbound frames (over gRPC, it half-closes the call): the core applies
    // every frame already sent, then ends the session.
    let from_extension = async {
        let to_core = to_core;
        let mut heard = false;
        while let Some(Ok(message)) = stream.next().await {
            last_heard.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            if !std::mem::replace(&mut heard, true) {
                let ready = Box::new(pb::ExtensionFrame {
                    frame: Some(pb::extension_frame::Frame::Ready(pb::Ready {})),
                });
                if to_core.send(ready).await.is_err() {
                    break;
                }
            }
            let text = match message {
                Message::Text(text) => text,
                Message::Binary(_) => {
                    let error = frames::error_frame(
                        None,
                        "binary frames are not supported; send JSON text frames".into(),
                    );
                    let _ = out.send(Message::Text(error.to_string().into())).await;
                    continue;
                }
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            match frames::decode(&text) {
                Ok(frame) => {
                    if to_core.send(Box::new(frame)).await.is_err() {
                        break;
                    }
                }
                Err(bad) => {
                    let error = frames::error_frame(bad.request_id, bad.error);
                    let _ = out.send(Message::Text(error.to_string().into())).await;
                }
            }
        }
    };

    let keepalive = async {
        let period = Duration::from_secs(config.ws_ping_secs.max(1));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            ticks.tick().await;
            let silent = started.elapsed().as_millis() as u64 - last_heard.load(Ordering::Relaxed);
            if silent > 3 * period.as_millis() as u64 {
                tracing::info!("extension silent for three ping periods; closing");
                return;
            }
            let _ = out.send(Message::Ping(Vec::new().into())).await;
        }
    };

    // Core → extension, until the core ends the session. Frames that can no
    // longer reach the socket are dropped: the core gives their requests
    // back to the queue when the session ends.
    let to_extension = async {
        let mut open = true;
        let close: (u16, String) = loop {
            match from_core.next().await {
                Some(Ok(frame)) => {
                    if let (true, Some(text)) = (open, frames::encode(frame)) {
                        open = out.send(Message::Text(text.into())).await.is_ok();
                    }
                }
                None => break (GOING_AWAY, "session ended by the server".into()),
                // The key the session was opened with stopped working.
                Some(Err(status)) if status.code() == tonic::Code::Unauthenticated => {
                    break (POLICY_VIOLATION, close_reason(status.message()));
                }
                Some(Err(status)) => {
                    tracing::warn!(error = %status, "extension session stream failed");
                    break (INTERNAL_ERROR, "session failed on the server".into());
                }
            }
        };
        let _ = out
            .send(Message::Close(Some(CloseFrame {
                code: close.0,
                reason: close.1.into(),
            })))
            .await;
    };

    {
        tokio::pin!(to_extension);
        tokio::select! {
            _ = &mut to_extension => {}
            // The extension left, went silent, or the edge is stopping.
            _ = async {
                tokio::select! {
                    _ = from_extension => {},
                    _ = keepalive => {},
                    _ = stopping.cancelled() => {},
                }
            } => {
                // The extension is gone and the call half-closed; give the core
                // a moment to apply what it received and end the session itself.
                let _ = tokio::time::timeout(CORE_DRAIN, &mut to_extension).await;
            }
        }
    }
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

/// A close frame's reason: at most 123 bytes (RFC 6455), cut at a character.
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}
