//! `GET /api/chat/chats/` and `GET /api/chat/chats/{chat_id}/`.

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::HeaderMap,
    response::Response,
    Json,
};
use chatrelay_proto::v1 as pb;
use serde::Deserialize;

use super::{
    authed, client,
    json::ChatJson,
    requests::{page, parse_limit},
};
use crate::{ApiError, EdgeState};

#[derive(Debug, Deserialize)]
pub struct ListParams {
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let request = authed(
        &headers,
        pb::ListChatsRequest {
            limit: parse_limit(params.limit.as_deref())?,
            cursor: params.cursor.unwrap_or_default(),
        },
    )?;
    let listed = client(&state).list_chats(request).await?.into_inner();
    let items: Vec<ChatJson> = listed.chats.into_iter().map(Into::into).collect();
    Ok(page(items, listed.next_cursor))
}

pub async fn get(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    Path(chat_id): Path<String>,
) -> Result<Json<ChatJson>, ApiError> {
    let request = authed(&headers, pb::GetChatRequest { chat_id })?;
    let chat = client(&state).get_chat(request).await?.into_inner();
    Ok(Json(chat.into()))
}
