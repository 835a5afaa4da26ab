//! Proto ⇄ domain conversions: the only place that knows both shapes.

use chatrelay_proto::v1 as pb;
use chrono::{DateTime, Utc};

use crate::{
    error::CoreError,
    live,
    model::{
        Chat, ExtensionSession, RequestCounts, RequestStatus, RequestView, ResponseType,
        Submission, ThinkingTime,
    },
    store::entities::{webhook_attempt, webhook_delivery::DeliveryStatus},
    webhooks::DeliveryView,
};

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

impl From<RequestStatus> for pb::RequestStatus {
    fn from(status: RequestStatus) -> Self {
        match status {
            RequestStatus::Idle => Self::Idle,
            RequestStatus::Executing => Self::Executing,
            RequestStatus::Done => Self::Done,
            RequestStatus::Failed => Self::Failed,
        }
    }
}

impl From<ResponseType> for pb::ResponseType {
    fn from(value: ResponseType) -> Self {
        match value {
            ResponseType::Auto => Self::Auto,
            ResponseType::Thinking => Self::Thinking,
            ResponseType::Instant => Self::Instant,
        }
    }
}

impl From<ThinkingTime> for pb::ThinkingTime {
    fn from(value: ThinkingTime) -> Self {
        match value {
            ThinkingTime::Standard => Self::Standard,
            ThinkingTime::Extended => Self::Extended,
        }
    }
}

/// A status filter: `None` for "any status".
pub fn status_filter(raw: i32) -> Result<Option<RequestStatus>, CoreError> {
    match pb::RequestStatus::try_from(raw) {
        Ok(pb::RequestStatus::Unspecified) => Ok(None),
        Ok(pb::RequestStatus::Idle) => Ok(Some(RequestStatus::Idle)),
        Ok(pb::RequestStatus::Executing) => Ok(Some(RequestStatus::Executing)),
        Ok(pb::RequestStatus::Done) => Ok(Some(RequestStatus::Done)),
        Ok(pb::RequestStatus::Failed) => Ok(Some(RequestStatus::Failed)),
        Err(_) => Err(CoreError::invalid(format!("status: unknown value {raw}"))),
    }
}

fn response_type(raw: i32) -> Result<ResponseType, CoreError> {
    match pb::ResponseType::try_from(raw) {
        Ok(pb::ResponseType::Unspecified | pb::ResponseType::Auto) => Ok(ResponseType::Auto),
        Ok(pb::ResponseType::Thinking) => Ok(ResponseType::Thinking),
        Ok(pb::ResponseType::Instant) => Ok(ResponseType::Instant),
        Err(_) => Err(CoreError::invalid(format!(
            "response_type: unknown value {raw}"
        ))),
    }
}

fn thinking_time(raw: i32) -> Result<ThinkingTime, CoreError> {
    match pb::ThinkingTime::try_from(raw) {
        Ok(pb::ThinkingTime::Unspecified | pb::ThinkingTime::Standard) => {
            Ok(ThinkingTime::Standard)
        }
        Ok(pb::ThinkingTime::Extended) => Ok(ThinkingTime::Extended),
        Err(_) => Err(CoreError::invalid(format!(
            "thinking_time: unknown value {raw}"
        ))),
    }
}

impl TryFrom<pb::SubmitMessageRequest> for Submission {
    type Error = CoreError;

    fn try_from(req: pb::SubmitMessageRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            response_type: response_type(req.response_type)?,
            thinking_time: thinking_time(req.thinking_time)?,
            message: req.message,
            chat_id: req.chat_id,
            // Carried in metadata; the gRPC service adds it.
            idempotency_key: None,
        })
    }
}

impl From<RequestView> for pb::MessageRequest {
    fn from(view: RequestView) -> Self {
        let r = view.request;
        Self {
            id: r.id.to_string(),
            message: r.message,
            response_type: pb::ResponseType::from(r.response_type).into(),
            thinking_time: pb::ThinkingTime::from(r.thinking_time).into(),
            status: pb::RequestStatus::from(r.status).into(),
            response: r.response,
            error_message: r.error_message,
            chat: view.chat,
            queued_at: Some(timestamp(r.queued_at)),
            started_at: r.started_at.map(timestamp),
            completed_at: r.completed_at.map(timestamp),
            chat_db_id: r.chat_id,
        }
    }
}

impl From<Chat> for pb::Chat {
    fn from(c: Chat) -> Self {
        Self {
            id: c.id,
            chat_id: c.chatgpt_id,
            title: c.title,
            created_at: Some(timestamp(c.created_at)),
            updated_at: Some(timestamp(c.updated_at)),
        }
    }
}

impl From<ExtensionSession> for pb::ExtensionSession {
    fn from(s: ExtensionSession) -> Self {
        Self {
            session_id: s.id.to_string(),
            connected_at: Some(timestamp(s.connected_at)),
            in_flight: s.in_flight,
            node: s.node.to_string(),
        }
    }
}

impl From<RequestCounts> for pb::RequestCounts {
    fn from(c: RequestCounts) -> Self {
        Self {
            idle: c.idle,
            executing: c.executing,
            done: c.done,
            failed: c.failed,
        }
    }
}

impl From<DeliveryStatus> for pb::WebhookDeliveryStatus {
    fn from(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Succeeded => Self::Succeeded,
            DeliveryStatus::Failed => Self::Failed,
        }
    }
}

impl From<webhook_attempt::Model> for pb::WebhookAttempt {
    fn from(a: webhook_attempt::Model) -> Self {
        Self {
            attempt: u32::try_from(a.attempt).unwrap_or(0),
            attempted_at: Some(timestamp(a.attempted_at)),
            duration_ms: u64::try_from(a.duration_ms).unwrap_or(0),
            status_code: a.status_code.and_then(|code| u32::try_from(code).ok()),
            error: a.error,
        }
    }
}

impl From<DeliveryView> for pb::WebhookDelivery {
    fn from(view: DeliveryView) -> Self {
        let d = view.delivery;
        // While pending it is when the next attempt is due (or, with an
        // attempt in flight, when that attempt's claim runs out).
        let next_attempt_at = (d.status == DeliveryStatus::Pending)
            .then(|| DateTime::<Utc>::from_timestamp_millis(d.next_attempt_at))
            .flatten()
            .map(timestamp);
        Self {
            id: d.id.to_string(),
            request_id: d.request_id.to_string(),
            url: d.url,
            status: pb::WebhookDeliveryStatus::from(d.status).into(),
            attempts: view.attempts.into_iter().map(Into::into).collect(),
            next_attempt_at,
            created_at: Some(timestamp(d.created_at)),
            updated_at: Some(timestamp(d.updated_at)),
        }
    }
}

impl From<live::Item> for pb::RequestEvent {
    fn from(item: live::Item) -> Self {
        match item {
            live::Item::Event(event) => Self {
                id: event.id.clone(),
                event: Some(pb::request_event::Event::Request(event.view.clone().into())),
            },
            live::Item::Reset { id, reason } => Self {
                id,
                event: Some(pb::request_event::Event::Reset(pb::WatchReset {
                    reason: reason.to_string(),
                })),
            },
            // The service ends the stream Unauthenticated instead.
            live::Item::Revoked => Self {
                id: String::new(),
                event: None,
            },
        }
    }
}
