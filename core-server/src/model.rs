//! The domain's vocabulary: request status, response type, thinking time,
//! and the request as callers see it.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{entity::prelude::StringLen, DeriveActiveEnum, EnumIter};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum RequestStatus {
    #[sea_orm(string_value = "idle")]
    Idle,
    #[sea_orm(string_value = "executing")]
    Executing,
    #[sea_orm(string_value = "done")]
    Done,
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl RequestStatus {
    /// The statuses of a request that has not finished.
    pub const OPEN: [RequestStatus; 2] = [RequestStatus::Idle, RequestStatus::Executing];

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Executing => "executing",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ResponseType {
    #[default]
    #[sea_orm(string_value = "auto")]
    Auto,
    #[sea_orm(string_value = "thinking")]
    Thinking,
    #[sea_orm(string_value = "instant")]
    Instant,
}

impl ResponseType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Thinking => "thinking",
            Self::Instant => "instant",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ThinkingTime {
    #[default]
    #[sea_orm(string_value = "standard")]
    Standard,
    #[sea_orm(string_value = "extended")]
    Extended,
}

impl ThinkingTime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Extended => "extended",
        }
    }
}

/// A message request: what a client submitted and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRequest {
    /// UUIDv7: ordering by id is ordering by submission.
    pub id: Uuid,
    pub account_id: i64,
    /// The chat's row id (`chat_db_id` on the wire).
    pub chat_id: i64,
    pub message: String,
    pub response_type: ResponseType,
    pub thinking_time: ThinkingTime,
    pub status: RequestStatus,
    pub response: Option<String>,
    pub error_message: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Deliveries to extension sessions so far.
    pub attempts: i32,
}

/// A ChatGPT conversation of an account. `chatgpt_id` and `title` stay
/// `None` until the extension reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chat {
    pub id: i64,
    pub account_id: i64,
    pub chatgpt_id: Option<String>,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A message request together with the ChatGPT id of its chat.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestView {
    pub request: MessageRequest,
    /// The chat's ChatGPT id, `None` while the extension has not reported it.
    pub chat: Option<String>,
}

/// An extension session of an account, open on one of the cores sharing
/// the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionSession {
    pub id: Uuid,
    /// The core holding it (that core's `node_id`).
    pub node: Uuid,
    pub connected_at: DateTime<Utc>,
    /// Requests leased to it: delivered and not finished.
    pub in_flight: u32,
}

/// How many of an account's requests are in each status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub idle: u64,
    pub executing: u64,
    pub done: u64,
    pub failed: u64,
}

/// What a client asks for on submit, before validation.
#[derive(Clone, Debug, Default)]
pub struct Submission {
    pub message: String,
    pub response_type: ResponseType,
    pub thinking_time: ThinkingTime,
    pub chat_id: Option<String>,
    /// The client's `Idempotency-Key`: a retry with the same key (and the
    /// same submission) within [`IDEMPOTENCY_WINDOW_MS`] gets the request
    /// the first one created.
    pub idempotency_key: Option<String>,
}

impl Submission {
    /// What a retry must repeat: the SHA-256 of the submission's fields.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [
            self.message.as_str(),
            self.response_type.as_str(),
            self.thinking_time.as_str(),
            self.chat_id.as_deref().unwrap_or(""),
        ] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        hex::encode(hash.finalize())
    }
}

/// How long an idempotency key holds: a day.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// A submit's answer: the request, and whether this submit created it (or
/// repeated an earlier one with the same idempotency key).
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    pub view: RequestView,
    pub created: bool,
}

/// The account an API key resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub i64);

/// Timestamps are kept to the microsecond, the precision both back ends store.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Milliseconds since the epoch, the unit of lease expiry times.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn new_request_id() -> Uuid {
    Uuid::now_v7()
}

/// Longest ChatGPT chat id accepted, from a client or an extension.
pub const MAX_CHAT_ID_CHARS: usize = 256;
/// Longest chat title accepted from an extension.
pub const MAX_CHAT_TITLE_CHARS: usize = 1_000;
/// Longest error message accepted from an extension.
pub const MAX_ERROR_CHARS: usize = 10_000;
/// Longest response accepted from an extension.
pub const MAX_RESPONSE_CHARS: usize = 1_000_000;

/// Checks a text field from outside: at most `max` characters and no NUL
/// character (which one back end cannot store in text and the other would
/// keep: refusing it everywhere keeps the back ends alike). The error names `field`.
pub fn check_text(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.contains('\0') {
        return Err(format!(
            "{field}: must not contain NUL (\\u0000) characters"
        ));
    }
    if text.chars().nth(max).is_some() {
        return Err(format!("{field}: longer than {max} characters"));
    }
    Ok(())
}
