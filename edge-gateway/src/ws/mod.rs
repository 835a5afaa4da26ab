//! `/ws/extension/?api_key=KEY`: each WebSocket is bridged to one
//! `ExtensionSession` stream on the core. The stream is opened before the
//! upgrade, so a bad key is an HTTP 401 and no socket; deliveries start once
//! the extension is heard from on its open socket (the bridge then sends the
//! core `Ready`).

mod bridge;
pub mod frames;

use axum::{
    extract::{
        rejection::QueryRejection, ws::rejection::WebSocketUpgradeRejection, Query, State,
        WebSocketUpgrade,
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chatrelay_proto::v1 as pb;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::metadata::MetadataValue;

use crate::{rest::API_KEY_HEADER, ApiError, EdgeState, ExtensionFrames, ServerFrames};

/// The core's metadata entry for a session that waits for `Ready`.
const DELIVER_AFTER_READY: &str = "deliver-after-ready";

/// Initial read buffer of each socket, and the bytes gathered before a write
/// (each message is flushed anyway). The read buffer grows to the frame
/// being read, so this limits no frame size; it is what an idle socket holds
/// for pongs and short frames.
const SOCKET_BUFFER: usize = 1024;

/// Frames from the extension queued towards the core before reading pauses.
const INBOUND_FRAMES: usize = 32;

/// The extension endpoint, with and without its trailing slash.
pub fn router(state: EdgeState) -> axum::Router {
    axum::Router::new()
        .route("/ws/extension/", axum::routing::get(connect))
        .route("/ws/extension", axum::routing::get(connect))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
pub struct ConnectParams {
    api_key: Option<String>,
}

pub async fn connect(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    params: Result<Query<ConnectParams>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let key = params
        .ok()
        .and_then(|Query(p)| p.api_key)
        .or_else(|| {
            headers
                .get(API_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API key (api_key query parameter)",
        )
        .into_response();
    };
    let Ok(key) = MetadataValue::try_from(key.as_str()) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key").into_response();
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::new(
                rejection.status(),
                format!("expected a WebSocket upgrade: {rejection}"),
            )
            .into_response()
        }
    };
    // Boxed frames: the channel allocates its first 32 slots when it is
    // made, and an idle session should not hold 32 frames' worth of them.
    let (to_core, rx) = mpsc::channel::<Box<pb::ExtensionFrame>>(INBOUND_FRAMES);
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(API_KEY_HEADER, key);
    // Nothing is delivered until the extension is heard from on its open
    // socket (the bridge then says Ready), so a client gone before the
    // upgrade completes costs no request an attempt.
    metadata.insert(DELIVER_AFTER_READY, MetadataValue::from_static("1"));
    crate::rest::forward_request_id(&headers, &mut metadata);
    let from_core = match open_session(&state, metadata, rx).await {
        Ok(frames) => frames,
        Err(status) => return ApiError::from(status).into_response(),
    };
    let config = state.config.clone();
    // Small socket buffers (they grow for large frames): an idle extension
    // should cost kilobytes, not tungstenite's default 256 KiB.
    upgrade
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .max_message_size(config.max_ws_frame_bytes)
        .max_frame_size(config.max_ws_frame_bytes)
        .on_upgrade(move |socket| {
            let stopping = state.stopping.clone();
            state
                .bridges
                .track_future(bridge::run(socket, to_core, from_core, config, stopping))
        })
}

/// Opens the `ExtensionSession` with the frames that arrive on `rx`: with
/// the core itself where it runs in this process, else over gRPC.
async fn open_session(
    state: &EdgeState,
    metadata: tonic::metadata::MetadataMap,
    rx: mpsc::Receiver<Box<pb::ExtensionFrame>>,
) -> Result<ServerFrames, tonic::Status> {
    let frames = ReceiverStream::new(rx).map(|frame| *frame);
    let extensions = tonic::Extensions::default();
    match &state.local {
        Some(local) => {
            let frames: ExtensionFrames = Box::pin(frames);
            (local.sessions)(tonic::Request::from_parts(metadata, extensions, frames)).await
        }
        None => {
            let request = tonic::Request::from_parts(metadata, extensions, frames);
            let frames = state.extension.clone().extension_session(request).await?;
            Ok(Box::pin(frames.into_inner()))
        }
    }
}
