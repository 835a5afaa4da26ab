//! The JSON shapes of api-spec.md, and their translation from the core's
//! proto messages and to its enums. Every key is always present. The types
//! derive `ToSchema`: the OpenAPI document (`openapi.rs`) is generated from
//! them, so it describes exactly what is sent and read.

use chatrelay_proto::v1 as pb;
use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use utoipa::ToSchema;

/// ISO-8601 UTC with microseconds, e.g. `2024-01-01T12:00:00.000000Z`.
pub fn timestamp(ts: Option<prost_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// A request's place in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Queued, waiting for an extension.
    Idle,
    /// An extension is running it.
    Executing,
    /// Finished with a response.
    Done,
    /// Finished with an error message.
    Failed,
}

/// How ChatGPT is asked to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseType {
    Thinking,
    Auto,
    Instant,
}

/// How long ChatGPT may think (thinking mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ThinkingTime {
    Standard,
    Extended,
}

impl RequestStatus {
    pub const ALL: [Self; 4] = [Self::Idle, Self::Executing, Self::Done, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Executing => "executing",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

impl ResponseType {
    pub const ALL: [Self; 3] = [Self::Thinking, Self::Auto, Self::Instant];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thinking => "thinking",
            Self::Auto => "auto",
            Self::Instant => "instant",
        }
    }
}

impl ThinkingTime {
    pub const ALL: [Self; 2] = [Self::Standard, Self::Extended];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Extended => "extended",
        }
    }
}

/// The variant of `all` whose JSON name is `name`.
fn named<T: Copy>(all: &[T], as_str: fn(T) -> &'static str, name: &str) -> Option<T> {
    all.iter().copied().find(|value| as_str(*value) == name)
}

impl From<pb::RequestStatus> for RequestStatus {
    fn from(status: pb::RequestStatus) -> Self {
        match status {
            pb::RequestStatus::Unspecified | pb::RequestStatus::Idle => Self::Idle,
            pb::RequestStatus::Executing => Self::Executing,
            pb::RequestStatus::Done => Self::Done,
            pb::RequestStatus::Failed => Self::Failed,
        }
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

impl From<pb::ResponseType> for ResponseType {
    fn from(value: pb::ResponseType) -> Self {
        match value {
            pb::ResponseType::Unspecified | pb::ResponseType::Auto => Self::Auto,
            pb::ResponseType::Thinking => Self::Thinking,
            pb::ResponseType::Instant => Self::Instant,
        }
    }
}

impl From<ResponseType> for pb::ResponseType {
    fn from(value: ResponseType) -> Self {
        match value {
            ResponseType::Thinking => Self::Thinking,
            ResponseType::Auto => Self::Auto,
            ResponseType::Instant => Self::Instant,
        }
    }
}

impl From<pb::ThinkingTime> for ThinkingTime {
    fn from(value: pb::ThinkingTime) -> Self {
        match value {
            pb::ThinkingTime::Unspecified | pb::ThinkingTime::Standard => Self::Standard,
            pb::ThinkingTime::Extended => Self::Extended,
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

pub fn status_name(status: pb::RequestStatus) -> &'static str {
    RequestStatus::from(status).as_str()
}

pub fn parse_status(name: &str) -> Option<RequestStatus> {
    named(&RequestStatus::ALL, RequestStatus::as_str, name)
}

pub fn response_type_name(value: pb::ResponseType) -> &'static str {
    ResponseType::from(value).as_str()
}

pub fn parse_response_type(name: &str) -> Option<ResponseType> {
    named(&ResponseType::ALL, ResponseType::as_str, name)
}

pub fn thinking_time_name(value: pb::ThinkingTime) -> &'static str {
    ThinkingTime::from(value).as_str()
}

pub fn parse_thinking_time(name: &str) -> Option<ThinkingTime> {
    named(&ThinkingTime::ALL, ThinkingTime::as_str, name)
}

// Read by hand from the JSON object (`requests::submission`), so that every
// rejection names its field; the doc comment below is the schema's description.
/// The body of `POST /api/chat/submit/`. An optional field that is `null`
/// is the same as one that is absent.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema)]
pub struct SubmitBody {
    /// The message to send to ChatGPT: not empty or only whitespace, at most
    /// the configured number of characters (`CHATRELAY_MAX_MESSAGE_CHARS`).
    #[schema(example = "Explain quantum computing")]
    pub message: String,
    /// Default `auto`.
    pub response_type: Option<ResponseType>,
    /// Default `standard`; only matters in thinking mode.
    pub thinking_time: Option<ThinkingTime>,
    /// A ChatGPT chat id to continue that conversation; omitted, a new chat
    /// is created and its id filled in by the extension later.
    #[schema(example = "chatgpt-abc123")]
    pub chat_id: Option<String>,
}

impl From<SubmitBody> for pb::SubmitMessageRequest {
    fn from(body: SubmitBody) -> Self {
        let response_type = body
            .response_type
            .map_or(pb::ResponseType::Unspecified, Into::into);
        let thinking_time = body
            .thinking_time
            .map_or(pb::ThinkingTime::Unspecified, Into::into);
        Self {
            message: body.message,
            response_type: response_type.into(),
            thinking_time: thinking_time.into(),
            chat_id: body.chat_id,
        }
    }
}

// Fields in api-spec.md's key order; the doc comment is the schema's description.
/// A message request. Every key is always present; those that are not known
/// yet are `null`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = MessageRequest)]
pub struct RequestJson {
    #[schema(format = "uuid")]
    pub id: String,
    pub message: String,
    pub response_type: ResponseType,
    pub thinking_time: ThinkingTime,
    pub status: RequestStatus,
    /// ChatGPT's answer, once `done`.
    #[schema(required = true)]
    pub response: Option<String>,
    /// Why it failed, once `failed`.
    #[schema(required = true)]
    pub error_message: Option<String>,
    /// The ChatGPT chat id, or `null` while the extension has not reported it.
    #[schema(required = true)]
    pub chat: Option<String>,
    #[schema(required = true, format = DateTime, example = "2024-01-01T12:00:00.000000Z")]
    pub queued_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub started_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub completed_at: Option<String>,
}

impl From<pb::MessageRequest> for RequestJson {
    fn from(r: pb::MessageRequest) -> Self {
        Self {
            response_type: r.response_type().into(),
            thinking_time: r.thinking_time().into(),
            status: r.status().into(),
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

// Fields in api-spec.md's key order; the doc comment is the schema's description.
/// A chat. Every key is always present; `chat_id` and `title` are `null`
/// until the extension reports them for a newly created chat.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Chat)]
pub struct ChatJson {
    /// chatrelay's own id of the chat (`chat_db_id` in WebSocket frames).
    #[schema(example = 123)]
    pub id: i64,
    /// The ChatGPT chat id.
    #[schema(required = true, example = "chatgpt-abc123")]
    pub chat_id: Option<String>,
    #[schema(required = true, example = "Quantum Computing Basics")]
    pub title: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
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

/// An extension session of the account, open on one of the cores.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ExtensionSession)]
pub struct SessionJson {
    #[schema(format = "uuid")]
    pub session_id: String,
    /// When the extension connected.
    #[schema(required = true, format = DateTime, example = "2026-12-01T17:00:00.123456Z")]
    pub connected_at: Option<String>,
    /// Requests delivered to the session and not finished yet.
    pub in_flight: u32,
    /// The id of the core process holding the session.
    #[schema(format = "uuid")]
    pub node: String,
}

impl From<pb::ExtensionSession> for SessionJson {
    fn from(s: pb::ExtensionSession) -> Self {
        Self {
            session_id: s.session_id,
            connected_at: timestamp(s.connected_at),
            in_flight: s.in_flight,
            node: s.node,
        }
    }
}

/// How many of the account's requests (or of one chat's) are in each
/// status. Every key is always present.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RequestCounts)]
pub struct CountsJson {
    pub idle: u64,
    pub executing: u64,
    pub done: u64,
    pub failed: u64,
}

impl From<pb::RequestCounts> for CountsJson {
    fn from(c: pb::RequestCounts) -> Self {
        Self {
            idle: c.idle,
            executing: c.executing,
            done: c.done,
            failed: c.failed,
        }
    }
}

/// Where a webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = WebhookDeliveryStatus)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in flight).
    Pending,
    /// The receiver answered 2xx.
    Succeeded,
    /// Every attempt of the retry schedule failed.
    Failed,
}

impl From<pb::WebhookDeliveryStatus> for DeliveryStatus {
    fn from(status: pb::WebhookDeliveryStatus) -> Self {
        match status {
            pb::WebhookDeliveryStatus::Unspecified | pb::WebhookDeliveryStatus::Pending => {
                Self::Pending
            }
            pb::WebhookDeliveryStatus::Succeeded => Self::Succeeded,
            pb::WebhookDeliveryStatus::Failed => Self::Failed,
        }
    }
}

/// One attempt to send a webhook delivery.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookAttempt)]
pub struct AttemptJson {
    /// 1 for the first attempt, then 2, 3, …
    pub attempt: u32,
    #[schema(required = true, format = DateTime)]
    pub attempted_at: Option<String>,
    pub duration_ms: u64,
    /// The receiver's HTTP status, `null` if it did not answer.
    #[schema(required = true, example = 500)]
    pub status_code: Option<u32>,
    /// Why the attempt failed, `null` if it succeeded.
    #[schema(required = true, example = "HTTP 500 Internal Server Error")]
    pub error: Option<String>,
}

impl From<pb::WebhookAttempt> for AttemptJson {
    fn from(a: pb::WebhookAttempt) -> Self {
        Self {
            attempt: a.attempt,
            attempted_at: timestamp(a.attempted_at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error: a.error,
        }
    }
}

/// The webhook of one finished request, with its attempts, oldest first.
/// Every key is always present.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct DeliveryJson {
    /// Also the `webhook-id` header of every attempt.
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(format = "uuid")]
    pub request_id: String,
    /// Where the latest attempt went, without userinfo, query or fragment.
    #[schema(example = "https://hooks.example/x")]
    pub url: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<AttemptJson>,
    /// When the next attempt is due, while `pending`; `null` otherwise.
    #[schema(required = true, format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub updated_at: Option<String>,
}

impl From<pb::WebhookDelivery> for DeliveryJson {
    fn from(d: pb::WebhookDelivery) -> Self {
        Self {
            status: d.status().into(),
            id: d.id,
            request_id: d.request_id,
            url: d.url,
            attempts: d.attempts.into_iter().map(Into::into).collect(),
            next_attempt_at: timestamp(d.next_attempt_at),
            created_at: timestamp(d.created_at),
            updated_at: timestamp(d.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str` (what parsing and the WebSocket frames use) and the serde
    /// names (what REST bodies and the OpenAPI schemas use) never disagree.
    #[test]
    fn enum_names_match_their_json() {
        fn check<T: Serialize + Copy>(all: &[T], as_str: fn(T) -> &'static str) {
            for value in all {
                assert_eq!(serde_json::to_value(value).unwrap(), as_str(*value));
            }
        }
        check(&RequestStatus::ALL, RequestStatus::as_str);
        check(&ResponseType::ALL, ResponseType::as_str);
        check(&ThinkingTime::ALL, ThinkingTime::as_str);
    }
}
