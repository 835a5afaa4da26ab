//! `GET /api/chat/sessions/`.

use axum::{extract::State, http::HeaderMap, Json};
use chatrelay_proto::v1 as pb;

use super::{authed, client, json::SessionJson};
use crate::{error::ErrorBody, ApiError, EdgeState};

/// List extension sessions
///
/// The account's connected browser-extension sessions, oldest connection
/// first, on every core sharing the database: when each connected, how
/// many requests it holds, which core holds it. An empty list means no
/// extension is connected, so nothing queued will run.
#[utoipa::path(
    get,
    path = "/api/chat/sessions/",
    tag = "sessions",
    operation_id = "list_sessions",
    responses(
        (status = 200, description = "The connected sessions.", body = [SessionJson]),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 503, description = "The core is unavailable.", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<EdgeState>,
    headers: HeaderMap,
) -> Result<Json<Vec<SessionJson>>, ApiError> {
    let request = authed(&headers, pb::ListSessionsRequest {})?;
    let listed = client(&state).list_sessions(request).await?.into_inner();
    Ok(Json(listed.sessions.into_iter().map(Into::into).collect()))
}
