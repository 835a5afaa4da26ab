//! `chatrelay.v1.ExtensionService`: one `ExtensionSession` stream per
//! connected extension. The key is checked when the stream opens, so a bad
//! key fails the call before any frame flows.

use std::{pin::Pin, sync::Arc};

use chatrelay_proto::v1::{
    self as pb, extension_frame, extension_service_server::ExtensionService, server_frame,
};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{metadata::MetadataMap, Request, Response, Status, Streaming};

use super::{api_key, caller};
use crate::{
    accounts,
    dispatch::session::{self, ClientFrame, ServerFrame},
    error::CoreError,
    Core,
};

/// The metadata entry with which a bridge (the edge) opens a session before
/// its socket is open: nothing is delivered until its `Ready` frame.
pub const DELIVER_AFTER_READY_METADATA: &str = "deliver-after-ready";

/// Frames queued towards one extension before the session waits for it.
const OUTBOUND_FRAMES: usize = 64;

#[derive(Clone)]
pub struct ExtensionApi {
    core: Arc<Core>,
}

impl ExtensionApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

impl From<pb::ExtensionFrame> for ClientFrame {
    fn from(frame: pb::ExtensionFrame) -> Self {
        match frame.frame {
            Some(extension_frame::Frame::StatusUpdate(update)) => {
                if update.status() == pb::RequestStatus::Executing {
                    ClientFrame::Executing {
                        request_id: update.request_id,
                    }
                } else {
                    ClientFrame::Invalid {
                        request_id: Some(update.request_id),
                        error: "status_update: status must be \"executing\"".into(),
                    }
                }
            }
            Some(extension_frame::Frame::Response(r)) => ClientFrame::Response {
                request_id: r.request_id,
                response: r.response,
                chat_id: r.chat_id,
                chat_title: r.chat_title,
            },
            Some(extension_frame::Frame::Ready(_)) => ClientFrame::Ready,
            Some(extension_frame::Frame::Error(e)) => ClientFrame::Error {
                request_id: e.request_id,
                error: e.error,
            },
            None => ClientFrame::Invalid {
                request_id: None,
                error: "empty frame".into(),
            },
        }
    }
}

/// A frame for the wire, or the status that ends the call.
fn to_wire(frame: ServerFrame) -> Result<pb::ServerFrame, Status> {
    let frame = match frame {
        ServerFrame::NewRequest(delivery) => {
            let session::Delivery {
                request: r,
                chatgpt_id,
            } = *delivery;
            server_frame::Frame::NewRequest(pb::NewRequest {
                request_id: r.id.to_string(),
                message: r.message,
                response_type: pb::ResponseType::from(r.response_type).into(),
                thinking_time: pb::ThinkingTime::from(r.thinking_time).into(),
                chat_id: chatgpt_id,
                chat_db_id: r.chat_id,
            })
        }
        ServerFrame::Error { request_id, error } => {
            server_frame::Frame::Error(pb::FrameError { request_id, error })
        }
        ServerFrame::End(reason) => return Err(reason.into()),
    };
    Ok(pb::ServerFrame { frame: Some(frame) })
}

/// The frames a session sends towards its extension; the stream ends with
/// the session, or with the status that ended it.
pub type ServerFrames = Pin<Box<dyn Stream<Item = Result<pb::ServerFrame, Status>> + Send>>;

impl ExtensionApi {
    /// Opens a session for the caller that `metadata` names (its API key, and
    /// whether to wait for `Ready`), fed by `inbound`: checks the key and the
    /// account's session limit, starts the session and answers with its
    /// frames. The gRPC call hands it the frames it decodes; `chatrelay
    /// serve`'s edge hands it its extension's frames as values. The session
    /// ends when `inbound` does, after applying every frame in it.
    pub async fn open(
        &self,
        metadata: &MetadataMap,
        inbound: impl Stream<Item = pb::ExtensionFrame> + Send + 'static,
    ) -> Result<ServerFrames, Status> {
        let account = caller(&self.core, metadata).await?;
        // A bridge whose socket is not open yet asks to wait for its Ready.
        let ready = !metadata.contains_key(DELIVER_AFTER_READY_METADATA);
        // The key the session stands on: if it stops working, so does the session.
        let key_hash = accounts::hash_api_key(accounts::present_key(api_key(metadata))?);
        let limit = self.core.config.max_sessions_per_account;
        let slot = self
            .core
            .dispatch
            .account(account)
            .take_slot(limit)
            .ok_or_else(|| {
                CoreError::ResourceExhausted(format!(
                    "this account already has {limit} extension sessions open"
                ))
            })?;
        let inbound = inbound.map(ClientFrame::from);
        let (tx, rx) = mpsc::channel(OUTBOUND_FRAMES);
        let core = self.core.clone();
        self.core.tasks.spawn(async move {
            let _slot = slot;
            session::run(core, account, key_hash, ready, Box::pin(inbound), tx).await;
        });
        Ok(Box::pin(ReceiverStream::new(rx).map(to_wire)))
    }
}

#[tonic::async_trait]
impl ExtensionService for ExtensionApi {
    type ExtensionSessionStream = ServerFrames;

    async fn extension_session(
        &self,
        request: Request<Streaming<pb::ExtensionFrame>>,
    ) -> Result<Response<Self::ExtensionSessionStream>, Status> {
        let (metadata, _, frames) = request.into_parts();
        // A transport error ends the inbound stream, and with it the session.
        let inbound = frames
            .take_while(|frame| futures::future::ready(frame.is_ok()))
            .filter_map(|frame| futures::future::ready(frame.ok()));
        self.open(&metadata, inbound).await.map(Response::new)
    }
}
