//! `chatrelay.v1.ChatService`: submit, get (or long-poll), list, count and
//! cancel requests, watch their status changes; list and get chats; list
//! the account's extension sessions; list and retry its webhook deliveries.

use std::{pin::Pin, sync::Arc};

use chatrelay_proto::v1::{self as pb, chat_service_server::ChatService};
use futures::{Stream, StreamExt};
use tonic::{metadata::MetadataValue, Request, Response, Status};

use super::{api_key, caller, convert, IDEMPOTENCY_KEY_METADATA, REPLAYED_METADATA};
use crate::{
    dispatch::registry, error::CoreError, live, model::Submission, requests, store::chats,
    webhooks, Core,
};

pub struct ChatApi {
    core: Arc<Core>,
}

impl ChatApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

#[tonic::async_trait]
impl ChatService for ChatApi {
    type WatchRequestsStream = Pin<Box<dyn Stream<Item = Result<pb::RequestEvent, Status>> + Send>>;

    async fn submit_message(
        &self,
        request: Request<pb::SubmitMessageRequest>,
    ) -> Result<Response<pb::MessageRequest>, Status> {
        let key = api_key(request.metadata()).map(str::to_string);
        let idempotency_key = request
            .metadata()
            .get(IDEMPOTENCY_KEY_METADATA)
            .map(|v| v.to_str().map(str::to_string))
            .transpose()
            .map_err(|_| {
                CoreError::invalid("Idempotency-Key: must be printable ASCII characters")
            })?;
        let mut submission = Submission::try_from(request.into_inner())?;
        submission.idempotency_key = idempotency_key;
        let submitted = requests::submit(&self.core, key.as_deref(), submission).await?;
        let mut response = Response::new(submitted.view.into());
        if !submitted.created {
            response
                .metadata_mut()
                .insert(REPLAYED_METADATA, MetadataValue::from_static("true"));
        }
        Ok(response)
    }

    async fn get_request(
        &self,
        request: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::MessageRequest>, Status> {
        let key = api_key(request.metadata());
        let wait = request
            .get_ref()
            .wait
            .map(live::wait::parse_wait)
            .transpose()?;
        let view = live::wait::get(&self.core, key, &request.get_ref().id, wait).await?;
        Ok(Response::new(view.into()))
    }

    async fn watch_requests(
        &self,
        request: Request<pb::WatchRequestsRequest>,
    ) -> Result<Response<Self::WatchRequestsStream>, Status> {
        let account = caller(&self.core, request.metadata()).await?;
        let key_hash =
            crate::accounts::hash_api_key(api_key(request.metadata()).unwrap_or_default());
        let req = request.into_inner();
        let only = match req.request_id.trim() {
            "" => None,
            id => Some(
                uuid::Uuid::parse_str(id)
                    .map_err(|_| CoreError::invalid("request_id: not a request id"))?,
            ),
        };
        let after = Some(req.last_event_id).filter(|id| !id.trim().is_empty());
        let events = live::watch::watch(&self.core, account, key_hash, only, after.as_deref());
        Ok(Response::new(Box::pin(events.map(|item| match item {
            // As an extension session's: the stream ends Unauthenticated.
            live::Item::Revoked => Err(Status::unauthenticated(
                "the API key this stream was opened with no longer works",
            )),
            item => Ok(pb::RequestEvent::from(item)),
        }))))
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        let account = caller(&self.core, request.metadata()).await?;
        let req = request.into_inner();
        let status = convert::status_filter(req.status)?;
        let page = requests::list(
            &self.core,
            account,
            status,
            req.chat,
            req.limit,
            Some(&req.cursor),
        )
        .await?;
        Ok(Response::new(pb::ListRequestsResponse {
            requests: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }

    async fn list_chats(
        &self,
        request: Request<pb::ListChatsRequest>,
    ) -> Result<Response<pb::ListChatsResponse>, Status> {
        let account = caller(&self.core, request.metadata()).await?;
        let req = request.into_inner();
        let page = chats::list(&self.core, account, req.limit, Some(&req.cursor)).await?;
        Ok(Response::new(pb::ListChatsResponse {
            chats: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }

    async fn get_chat(
        &self,
        request: Request<pb::GetChatRequest>,
    ) -> Result<Response<pb::Chat>, Status> {
        let account = caller(&self.core, request.metadata()).await?;
        let chat = chats::get(&self.core, account, &request.get_ref().chat_id).await?;
        Ok(Response::new(chat.into()))
    }

    async fn cancel_request(
        &self,
        request: Request<pb::CancelRequestRequest>,
    ) -> Result<Response<pb::MessageRequest>, Status> {
        let account = caller(&self.core, request.metadata()).await?;
        let view = requests::cancel(&self.core, account, &request.get_ref().request_id).await?;
        Ok(Response::new(view.into()))
    }

    async fn count_requests(
        &self,
        request: Request<pb::CountRequestsRequest>,
    ) -> Result<Response<pb::RequestCounts>, Status> {
        let account = caller(&self.core, request.metadata()).await?;
        let counts = requests::counts(&self.core, account, request.get_ref().chat).await?;
        Ok(Response::new(counts.into()))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let account = caller(&self.core, request.metadata()).await?;
        let sessions = registry::list(&self.core, account).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions.into_iter().map(Into::into).collect(),
        }))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        let account = caller(&self.core, request.metadata()).await?;
        let req = request.into_inner();
        let page =
            webhooks::deliveries::page(&self.core, account, req.limit, req.cursor.as_deref())
                .await?;
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            deliveries: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    async fn retry_webhook_delivery(
        &self,
        request: Request<pb::RetryWebhookDeliveryRequest>,
    ) -> Result<Response<pb::WebhookDelivery>, Status> {
        let account = caller(&self.core, request.metadata()).await?;
        let view = webhooks::deliveries::retry(&self.core, account, &request.get_ref().delivery_id)
            .await?;
        Ok(Response::new(view.into()))
    }
}
