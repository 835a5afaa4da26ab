//! The JSON shapes of api-spec.md, and their translation from the core's
//! proto messages and to its enums. Every key is always present.

use chatrelay_proto::v1 as pb;
use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

/// ISO-8601 UTC with microseconds, e.g. `2024-01-01T12:00:00.000000Z`.
pub fn timestamp(ts: Option<prost_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

pub fn status_name(status: pb::RequestStatus) -> &'static str {
    match status {
        pb::RequestStatus::Unspecified | pb::RequestStatus::Idle => "idle",
        pb::RequestStatus::Executing => "executing",
        pb::RequestStatus::Done => "done",
        pb::RequestStatus::Failed => "failed",
    }
}

pub fn parse_status(name: &str) -> Option<pb::RequestStatus> {
    match name {
        "idle" => Some(pb::RequestStatus::Idle),
        "executing" => Some(pb::RequestStatus::Executing),
        "done" => Some(pb::RequestStatus::Done),
        "failed" => Some(pb::RequestStatus::Failed),
        _ => None,
    }
}

pub fn response_type_name(value: pb::ResponseType) -> &'static str {
    match value {
        pb::ResponseType::Unspecified | pb::ResponseType::Auto => "auto",
        pb::ResponseType::Thinking => "thinking",
        pb::ResponseType::Instant => "instant",
    }
}

pub fn parse_response_type(name: &str) -> Option<pb::ResponseType> {
    match name {
        "auto" => Some(pb::ResponseType::Auto),
        "thinking" => Some(pb::ResponseType::Thinking),
        "instant" => Some(pb::ResponseType::Instant),
        _ => None,
    }
}

pub fn thinking_time_name(value: pb::ThinkingTime) -> &'static str {
    match value {
        pb::ThinkingTime::Unspecified | pb::ThinkingTime::Standard => "standard",
        pb::ThinkingTime::Extended => "extended",
    }
}

pub fn parse_thinking_time(name: &str) -> Option<pb::ThinkingTime> {
    match name {
        "standard" => Some(pb::ThinkingTime::Standard),
        "extended" => Some(pb::ThinkingTime::Extended),
        _ => None,
    }
}

/// A message request, in api-spec.md's key order.
#[derive(Debug, Serialize)]
pub struct RequestJson {
    pub id: String,
    pub message: String,
    pub response_type: &'static str,
    pub thinking_time: &'static str,
    pub status: &'static str,
    pub response: Option<String>,
    pub error_message: Option<String>,
    pub chat: Option<String>,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

impl From<pb::MessageRequest> for RequestJson {
    fn from(r: pb::MessageRequest) -> Self {
        Self {
            response_type: response_type_name(r.response_type()),
            thinking_time: thinking_time_name(r.thinking_time()),
            status: status_name(r.status()),
            id: r.id,
            message: r.message,
            response: r.response,
            error_message: r.error_message,
            chat: r.chat,
            queued_at: timestamp(r.queued_at),
            started_at: timestamp(r.started_at),
            completed_at: timestamp(r.completed_at),
        }
    }
}

/// A chat, in api-spec.md's key order.
#[derive(Debug, Serialize)]
pub struct ChatJson {
    pub id: i64,
    pub chat_id: Option<String>,
    pub title: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<pb::Chat> for ChatJson {
    fn from(c: pb::Chat) -> Self {
        Self {
            id: c.id,
            chat_id: c.chat_id,
            title: c.title,
            created_at: timestamp(c.created_at),
            updated_at: timestamp(c.updated_at),
        }
    }
}
