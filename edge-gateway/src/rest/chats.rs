//! `GET /api/chat/chats/` and `GET /api/chat/chats/{chat_id}/`.

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::HeaderMap,
    response::Response,
    Json,
};
use chatrelay_proto::v1 as pb;

use super::{
    authed, client,
    json::ChatJson,
    requests::{page, parse_limit, PageParams},
};
use crate::{error::ErrorBody, ApiError, EdgeState};

/// List chats
///
/// The account's chats, newest first, a page at a time. A chat whose
/// `chat_id` and `title` are `null` was just created and waits for the
/// extension to report them.
#[utoipa::path(
    get,
    path = "/api/chat/chats/",
    tag = "chats",
    operation_id = "list_chats",
    params(PageParams),
    responses(
        (status = 200, description = "A page of chats.", body = [ChatJson],
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "Invalid `limit` or `cursor`.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 503, description = "The core is unavailable.", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    params: Result<Query<PageParams>, QueryRejection>,
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

/// Get a chat
///
/// One of the account's chats, by its ChatGPT chat id.
#[utoipa::path(
    get,
    path = "/api/chat/chats/{chat_id}/",
    tag = "chats",
    operation_id = "get_chat",
    params(("chat_id" = String, Path, description = "The ChatGPT chat id.")),
    responses(
        (status = 200, description = "The chat.", body = ChatJson),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 404, description = "The account has no chat with this id.", body = ErrorBody),
        (status = 503, description = "The core is unavailable.", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    Path(chat_id): Path<String>,
) -> Result<Json<ChatJson>, ApiError> {
    let request = authed(&headers, pb::GetChatRequest { chat_id })?;
    let chat = client(&state).get_chat(request).await?.into_inner();
    Ok(Json(chat.into()))
}
