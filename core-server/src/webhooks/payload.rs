//! The webhook body of `api-spec.md`: exactly `request_id`, `status`,
//! `message`, `response`, `error`, `response_type`, `thinking_time`, with
//! `response` set on success and `error` on failure (the other null).

use serde::Serialize;

use crate::model::{MessageRequest, RequestStatus};

#[derive(Serialize)]
struct Payload<'a> {
    request_id: String,
    status: &'static str,
    message: &'a str,
    response: Option<&'a str>,
    error: Option<&'a str>,
    response_type: &'static str,
    thinking_time: &'static str,
}

/// The JSON body for a finished request, or `None` if it is not finished.
pub fn render(request: &MessageRequest) -> Option<String> {
    let (response, error) = match request.status {
        RequestStatus::Done => (request.response.as_deref(), None),
        RequestStatus::Failed => (None, request.error_message.as_deref()),
        RequestStatus::Idle | RequestStatus::Executing => return None,
    };
    let payload = Payload {
        request_id: request.id.to_string(),
        status: request.status.as_str(),
        message: &request.message,
        response,
        error,
        response_type: request.response_type.as_str(),
        thinking_time: request.thinking_time.as_str(),
    };
    // Serializing strings and options cannot fail.
    serde_json::to_string(&payload).ok()
}
