//! The REST API of api-spec.md, and the account-scoped endpoints the web
//! console uses beside it (cancel, counts, sessions, webhook deliveries).
//! Every route answers with and without its trailing slash; every error is
//! `{"detail": "..."}`.

mod body;
mod chats;
mod counts;
pub mod events;
pub mod json;
pub mod openapi;
mod requests;
mod sessions;
mod webhooks;

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::{HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post, MethodRouter},
    Router,
};
use chatrelay_proto::v1::chat_service_client::ChatServiceClient;
use tonic::metadata::MetadataValue;

use crate::{ApiError, EdgeState};

/// The REST header and the gRPC metadata entry that carry the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

pub fn router(state: EdgeState) -> Router {
    let limit = state.config.max_body_bytes;
    let routes: [(&str, MethodRouter<EdgeState>); 10] = [
        ("/api/chat/submit", post(requests::submit)),
        ("/api/chat/requests", get(requests::list)),
        ("/api/chat/requests/{id}", get(requests::get)),
        ("/api/chat/requests/{id}/cancel", post(requests::cancel)),
        ("/api/chat/counts", get(counts::counts)),
        ("/api/chat/chats", get(chats::list)),
        ("/api/chat/chats/{chat_id}", get(chats::get)),
        ("/api/chat/sessions", get(sessions::list)),
        ("/api/chat/webhooks", get(webhooks::list)),
        ("/api/chat/webhooks/{id}/retry", post(webhooks::retry)),
    ];
    let mut router = Router::new();
    for (path, handler) in routes {
        router = router
            .route(path, handler.clone())
            .route(&format!("{path}/"), handler);
    }
    router
        .route_layer(middleware::from_fn(require_api_key))
        // The event stream also takes its key as `?api_key=` (EventSource
        // cannot set headers); it checks for one itself.
        .route(events::PATH, get(events::stream))
        .route(events::PATH.trim_end_matches('/'), get(events::stream))
        .fallback(|| async { ApiError::not_found("not found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Answers 401 to a request that names no API key, before its body or query
/// is looked at: a caller that has not said who it is learns nothing about
/// its input. Whether a key that is present is valid is the core's call.
async fn require_api_key(request: Request, next: Next) -> Response {
    let present = request
        .headers()
        .get(API_KEY_HEADER)
        .is_some_and(|key| !key.as_bytes().trim_ascii().is_empty());
    if !present {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API key (X-API-Key header)",
        )
        .into_response();
    }
    next.run(request).await
}

/// A gRPC request to the core carrying the caller's API key.
pub fn authed<T>(headers: &HeaderMap, message: T) -> Result<tonic::Request<T>, ApiError> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = headers.get(API_KEY_HEADER) {
        let value = key
            .to_str()
            .ok()
            .and_then(|k| MetadataValue::try_from(k).ok())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key"))?;
        request.metadata_mut().insert(API_KEY_HEADER, value);
    }
    forward_request_id(headers, request.metadata_mut());
    Ok(request)
}

/// Passes the call's request id on to the core, so its logs carry it too.
pub fn forward_request_id(headers: &HeaderMap, metadata: &mut tonic::metadata::MetadataMap) {
    if let Some(id) = headers
        .get(crate::observe::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| MetadataValue::try_from(v).ok())
    {
        metadata.insert("x-request-id", id);
    }
}

pub(crate) fn client(state: &EdgeState) -> ChatServiceClient<crate::CoreChannel> {
    state.chat.clone()
}
