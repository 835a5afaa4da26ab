//! `GET /api/chat/counts/`.

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::HeaderMap,
    Json,
};
use chatrelay_proto::v1 as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{authed, client, json::CountsJson, requests::parse_chat};
use crate::{error::ErrorBody, ApiError, EdgeState};

/// Query parameters of `GET /api/chat/counts/`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountParams {
    /// Only requests of this chat: its `id` (chatrelay's integer chat id).
    #[param(value_type = Option<i64>)]
    chat: Option<String>,
}

/// Count requests
///
/// How many of the account's requests are in each status; with `chat`,
/// of one of its chats. Every status is always present.
#[utoipa::path(
    get,
    path = "/api/chat/counts/",
    tag = "requests",
    operation_id = "count_requests",
    params(CountParams),
    responses(
        (status = 200, description = "Requests per status.", body = CountsJson),
        (status = 400, description = "Invalid `chat`.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 404, description = "The account has no chat with this `chat` id.", body = ErrorBody),
        (status = 503, description = "The core is unavailable.", body = ErrorBody),
    ),
)]
pub async fn counts(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    params: Result<Query<CountParams>, QueryRejection>,
) -> Result<Json<CountsJson>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let request = authed(
        &headers,
        pb::CountRequestsRequest {
            chat: parse_chat(params.chat.as_deref())?,
        },
    )?;
    let counts = client(&state).count_requests(request).await?.into_inner();
    Ok(Json(counts.into()))
}
