//! `POST /api/chat/submit/`, `GET /api/chat/requests/`, `GET /api/chat/requests/{id}/`,
//! `POST /api/chat/requests/{id}/cancel/`.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, Query, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chatrelay_proto::v1 as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    authed, body, client,
    json::{self, RequestJson, RequestStatus, SubmitBody},
};
use crate::{error::ErrorBody, ApiError, EdgeState};

/// The response header that carries the cursor of the next page of a list.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// Reads the submit body, naming the field in every rejection.
fn submission(object: &serde_json::Map<String, serde_json::Value>) -> Result<SubmitBody, ApiError> {
    let message = match object.get("message") {
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::bad_request("message: this field is required"))
        }
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_request("message: must be a string")),
    };
    let response_type = body::optional_string(object, "response_type")?
        .map(|name| {
            json::parse_response_type(name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "response_type: {name:?} is not one of thinking, auto, instant"
                ))
            })
        })
        .transpose()?;
    let thinking_time = body::optional_string(object, "thinking_time")?
        .map(|name| {
            json::parse_thinking_time(name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "thinking_time: {name:?} is not one of standard, extended"
                ))
            })
        })
        .transpose()?;
    let chat_id = body::optional_string(object, "chat_id")?.map(str::to_string);
    Ok(SubmitBody {
        message,
        response_type,
        thinking_time,
        chat_id,
    })
}

/// The header a client retries a submit safely with (the gRPC metadata
/// entry has the same name).
const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The core's answer metadata for a submit that repeated an earlier one.
const REPLAYED_METADATA: &str = "idempotent-replayed";

/// Submit a message
///
/// Queues a message for the account's browser extension and answers with the
/// new request, `idle`. Without `chat_id` a new chat is created. With an
/// `Idempotency-Key`, a retry within 24 hours answers `200` with the request
/// the first submit created, and stores nothing new.
#[utoipa::path(
    post,
    path = "/api/chat/submit/",
    tag = "requests",
    operation_id = "submit_message",
    request_body = SubmitBody,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes retries safe: the same key from the same account within 24 hours returns the request it created (1 to 255 printable ASCII characters).")),
    responses(
        (status = 201, description = "The request, queued.", body = RequestJson),
        (status = 200, description = "A retry with an Idempotency-Key already used for the same submission: the request it created.", body = RequestJson),
        (status = 409, description = "The Idempotency-Key was already used for a different submission.", body = ErrorBody),
        (status = 400, description = "Invalid body; the detail names the field.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 413, description = "The body is larger than the configured limit.", body = ErrorBody),
        (status = 415, description = "The Content-Type is not JSON.", body = ErrorBody),
        (status = 429, description = "The account's submit rate is exceeded.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before submitting again."))),
        (status = 503, description = "The core is unavailable.", body = ErrorBody),
    ),
)]
pub async fn submit(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let object = body::json_object(&headers, body, state.config.max_body_bytes)?;
    let message = pb::SubmitMessageRequest::from(submission(&object)?);
    let mut request = authed(&headers, message)?;
    if let Some(key) = headers.get(IDEMPOTENCY_KEY_HEADER) {
        let value = key
            .to_str()
            .ok()
            .and_then(|k| tonic::metadata::MetadataValue::try_from(k).ok())
            .ok_or_else(|| {
                ApiError::bad_request("Idempotency-Key: must be printable ASCII characters")
            })?;
        request.metadata_mut().insert(IDEMPOTENCY_KEY_HEADER, value);
    }
    let answer = match &state.local {
        Some(local) => local.chat.submit_message(request).await,
        None => client(&state).submit_message(request).await,
    }?;
    let replayed = answer
        .metadata()
        .get(REPLAYED_METADATA)
        .is_some_and(|v| v == "true");
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(RequestJson::from(answer.into_inner()))))
}

/// Query parameters of `GET /api/chat/requests/{id}/`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// Long-poll: if the request is not `done` or `failed`, answer when it
    /// is, or after this many seconds (more than 0, at most 60), with the
    /// request as it is then.
    #[param(value_type = Option<f64>, minimum = 0, maximum = 60)]
    wait: Option<String>,
}

/// A `wait` query parameter, in seconds; the core checks its range.
fn parse_wait(wait: Option<&str>) -> Result<Option<f64>, ApiError> {
    wait.map(|raw| {
        raw.trim().parse::<f64>().map_err(|_| {
            ApiError::bad_request("wait: must be a number of seconds more than 0 and at most 60")
        })
    })
    .transpose()
}

/// Get a request
///
/// The request's status and, once finished, its response or error message.
/// With `wait`, a long-poll: the answer comes as soon as the request is done
/// or failed, or when the wait is over.
#[utoipa::path(
    get,
    path = "/api/chat/requests/{id}/",
    tag = "requests",
    operation_id = "get_request",
    params(("id" = String, Path, format = "uuid", description = "The request's id."), GetParams),
    responses(
        (status = 200, description = "The request.", body = RequestJson),
        (status = 400, description = "Invalid `wait`.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 404, description = "No request of this account has this id.", body = ErrorBody),
        (status = 503, description = "The core is unavailable.", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<GetParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RequestJson>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let wait = parse_wait(params.wait.as_deref())?;
    let request = authed(
        &headers,
        pb::GetRequestRequest {
            id: id.clone(),
            wait,
        },
    )?;
    let found = match wait {
        None => get_request(&state, request).await?,
        // A stopping edge answers its long-polls at once, with the request
        // as it is, rather than hold its shutdown for the wait.
        Some(_) => tokio::select! {
            found = get_request(&state, request) => found?,
            _ = state.stopping.cancelled() => {
                let request = authed(&headers, pb::GetRequestRequest { id, wait: None })?;
                get_request(&state, request).await?
            }
        },
    };
    Ok(Json(found.into_inner().into()))
}

/// `GetRequest`: from the core's chat service itself where the core runs in
/// this process, else over gRPC.
async fn get_request(
    state: &EdgeState,
    request: tonic::Request<pb::GetRequestRequest>,
) -> Result<tonic::Response<pb::MessageRequest>, tonic::Status> {
    match &state.local {
        Some(local) => local.chat.get_request(request).await,
        None => client(state).get_request(request).await,
    }
}

/// Query parameters of `GET /api/chat/requests/`. Read as text and checked
/// by hand, so a bad value is a 400 that names the parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only requests in this status.
    #[param(value_type = Option<RequestStatus>)]
    status: Option<String>,
    /// Only requests of this chat: its `id` (chatrelay's integer chat id).
    #[param(value_type = Option<i64>)]
    chat: Option<String>,
    /// Page size, 1 to 1000; absent, the core's default page (100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: the `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// The query parameters of a plain list (chats, webhook deliveries): a page
/// size and where to start. Read as text and checked by hand, like
/// [`ListParams`].
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 1000; absent, the core's default page (100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Where the page starts: the `X-Next-Cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A `limit` query parameter: 1 to 1000; absent means the default page.
pub fn parse_limit(limit: Option<&str>) -> Result<u32, ApiError> {
    match limit.filter(|l| !l.is_empty()) {
        None => Ok(0),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad_request("limit: must be a whole number from 1 to 1000")),
    }
}

/// A `chat` query parameter: a chat's integer `id`; absent means any chat.
pub fn parse_chat(chat: Option<&str>) -> Result<Option<i64>, ApiError> {
    match chat.map(str::trim).filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(raw) => raw.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(
                "chat: must be a whole number, the id of one of the account's chats",
            )
        }),
    }
}

/// A JSON array, with the next page's cursor in a header when there is one.
pub fn page<T: serde::Serialize>(items: Vec<T>, next_cursor: String) -> Response {
    let mut response = Json(items).into_response();
    if let Ok(value) = HeaderValue::from_str(&next_cursor) {
        if !next_cursor.is_empty() {
            response
                .headers_mut()
                .insert(HeaderName::from_static(NEXT_CURSOR_HEADER), value);
        }
    }
    response
}

/// List requests
///
/// The account's requests, newest first, a page at a time; with `chat`,
/// those of one of its chats.
#[utoipa::path(
    get,
    path = "/api/chat/requests/",
    tag = "requests",
    operation_id = "list_requests",
    params(ListParams),
    responses(
        (status = 200, description = "A page of requests.", body = [RequestJson],
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "Invalid `status`, `chat`, `limit` or `cursor`.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 404, description = "The account has no chat with this `chat` id.", body = ErrorBody),
        (status = 503, description = "The core is unavailable.", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let status = match params.status.as_deref().filter(|s| !s.is_empty()) {
        None => pb::RequestStatus::Unspecified,
        Some(name) => json::parse_status(name).map(Into::into).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status: {name:?} is not one of idle, executing, done, failed"
            ))
        })?,
    };
    let request = authed(
        &headers,
        pb::ListRequestsRequest {
            status: status.into(),
            limit: parse_limit(params.limit.as_deref())?,
            cursor: params.cursor.unwrap_or_default(),
            chat: parse_chat(params.chat.as_deref())?,
        },
    )?;
    let listed = client(&state).list_requests(request).await?.into_inner();
    let items: Vec<RequestJson> = listed.requests.into_iter().map(Into::into).collect();
    Ok(page(items, listed.next_cursor))
}

/// Cancel a request
///
/// Cancels an `idle` request — queued, or sent to an extension that has
/// not reported it `executing`: it becomes `failed` with `error_message`
/// `"cancelled"`, its webhook and its live event follow, and it is never
/// delivered again. Answers with the request as it now is. No body is
/// needed (any is ignored).
#[utoipa::path(
    post,
    path = "/api/chat/requests/{id}/cancel/",
    tag = "requests",
    operation_id = "cancel_request",
    params(("id" = String, Path, format = "uuid", description = "The request's id.")),
    responses(
        (status = 200, description = "The request, now `failed` with `error_message` `\"cancelled\"`.", body = RequestJson),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 404, description = "No request of this account has this id.", body = ErrorBody),
        (status = 409, description = "The request is `executing` (an extension cannot stop a running answer), `done` or `failed`.", body = ErrorBody),
        (status = 503, description = "The core is unavailable.", body = ErrorBody),
    ),
)]
pub async fn cancel(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RequestJson>, ApiError> {
    let request = authed(&headers, pb::CancelRequestRequest { request_id: id })?;
    let cancelled = client(&state).cancel_request(request).await?;
    Ok(Json(cancelled.into_inner().into()))
}
