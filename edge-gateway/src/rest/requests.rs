//! `POST /api/chat/submit/`, `GET /api/chat/requests/`, `GET /api/chat/requests/{id}/`.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, Query, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chatrelay_proto::v1 as pb;
use serde::Deserialize;

use super::{
    authed, body, client,
    json::{self, RequestJson},
};
use crate::{ApiError, EdgeState};

/// The response header that carries the cursor of the next page of a list.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

fn submission(
    object: &serde_json::Map<String, serde_json::Value>,
) -> Result<pb::SubmitMessageRequest, ApiError> {
    let message = match object.get("message") {
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::bad_request("message: this field is required"))
        }
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_request("message: must be a string")),
    };
    let response_type = match body::optional_string(object, "response_type")? {
        None => pb::ResponseType::Unspecified,
        Some(name) => json::parse_response_type(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "response_type: {name:?} is not one of thinking, auto, instant"
            ))
        })?,
    };
    let thinking_time = match body::optional_string(object, "thinking_time")? {
        None => pb::ThinkingTime::Unspecified,
        Some(name) => json::parse_thinking_time(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "thinking_time: {name:?} is not one of standard, extended"
            ))
        })?,
    };
    let chat_id = body::optional_string(object, "chat_id")?.map(str::to_string);
    Ok(pb::SubmitMessageRequest {
        message,
        response_type: response_type.into(),
        thinking_time: thinking_time.into(),
        chat_id,
    })
}

pub async fn submit(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let object = body::json_object(&headers, body, state.config.max_body_bytes)?;
    let request = authed(&headers, submission(&object)?)?;
    let created = client(&state).submit_message(request).await?.into_inner();
    Ok((StatusCode::CREATED, Json(RequestJson::from(created))))
}

pub async fn get(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RequestJson>, ApiError> {
    let request = authed(&headers, pb::GetRequestRequest { id })?;
    let found = client(&state).get_request(request).await?.into_inner();
    Ok(Json(found.into()))
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
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

pub async fn list(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let status = match params.status.as_deref().filter(|s| !s.is_empty()) {
        None => pb::RequestStatus::Unspecified,
        Some(name) => json::parse_status(name).ok_or_else(|| {
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
        },
    )?;
    let listed = client(&state).list_requests(request).await?.into_inner();
    let items: Vec<RequestJson> = listed.requests.into_iter().map(Into::into).collect();
    Ok(page(items, listed.next_cursor))
}
