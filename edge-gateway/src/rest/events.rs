//! `GET /api/chat/events/`: Server-Sent Events, a translation of the core's
//! `WatchRequests` stream. One `request` event per status change of the
//! account's requests (`data:` the request JSON as `GET` returns it, `id:`
//! the event's id), a `reset` event when the stream cannot say what was
//! missed, and a comment every 15 s (`CHATRELAY_SSE_KEEP_ALIVE_SECS`) to keep
//! proxies from closing it.
//!
//! The key comes in `X-API-Key` or, for browsers' `EventSource`, in
//! `?api_key=` (never logged: the edge's spans name the route, not the
//! query). A bad key is a 401 before any stream.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use chatrelay_proto::v1 as pb;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use utoipa::IntoParams;

use super::{client, forward_request_id, json::RequestJson, API_KEY_HEADER};
use crate::{error::ErrorBody, ApiError, EdgeState};

/// Where the stream is served (and without the trailing slash).
pub const PATH: &str = "/api/chat/events/";

/// The header a reconnecting `EventSource` sends.
const LAST_EVENT_ID: &str = "last-event-id";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// The API key, for clients that cannot set `X-API-Key` (`EventSource`).
    api_key: Option<String>,
    /// Only this request's events.
    #[param(format = "uuid")]
    request_id: Option<String>,
}

/// The data of a `reset` event.
#[derive(Debug, Serialize)]
struct ResetJson<'a> {
    detail: &'a str,
}

/// One SSE event for one of the core's.
fn sse_event(event: pb::RequestEvent) -> Option<Event> {
    let sse = match event.event? {
        pb::request_event::Event::Request(request) => Event::default()
            .event("request")
            .json_data(RequestJson::from(request))
            .ok()?,
        pb::request_event::Event::Reset(reset) => Event::default()
            .event("reset")
            .json_data(ResetJson {
                detail: &reset.reason,
            })
            .ok()?,
    };
    Some(if event.id.is_empty() {
        sse
    } else {
        sse.id(event.id)
    })
}

/// Follow requests (Server-Sent Events)
///
/// A `text/event-stream` of the account's request status changes: `idle` on
/// submit, `executing`, `done`, `failed`, and `idle` again on redelivery.
/// Each is an `event: request` whose `data` is the request as
/// `GET /api/chat/requests/{id}/` returns it, with an increasing `id`. A
/// client that reconnects with `Last-Event-ID` gets the events it missed if
/// the server still has them, else first an `event: reset` (list the
/// requests again). A client that falls too far behind gets a final
/// `event: reset` and the stream ends. A comment line comes every 15 s.
#[utoipa::path(
    get,
    path = "/api/chat/events/",
    tag = "requests",
    operation_id = "watch_requests",
    params(
        EventParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event."),
    ),
    responses(
        (status = 200, description = "The event stream.", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid `request_id`.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 503, description = "The core is unavailable.", body = ErrorBody),
    ),
)]
pub async fn stream(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| params.as_ref().ok().and_then(|Query(p)| p.api_key.clone()))
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing API key (X-API-Key header or api_key query parameter)",
            )
        })?;
    let key = MetadataValue::try_from(key.as_str())
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key"))?;
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let last_event_id = headers
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut request = tonic::Request::new(pb::WatchRequestsRequest {
        request_id: params.request_id.unwrap_or_default(),
        last_event_id,
    });
    request.metadata_mut().insert(API_KEY_HEADER, key);
    forward_request_id(&headers, request.metadata_mut());
    let events = client(&state).watch_requests(request).await?.into_inner();
    // A broken stream ends the response; the client reconnects.
    let events = events
        .take_while(|event| std::future::ready(event.is_ok()))
        .filter_map(|event| std::future::ready(event.ok().and_then(sse_event)))
        .map(Ok::<_, Infallible>)
        .take_until(state.stopping.clone().cancelled_owned());
    let mut response = Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(state.config.sse_keep_alive_secs.max(1)))
                .text("keep-alive"),
        )
        .into_response();
    // Proxies that buffer (nginx) must pass each event on at once.
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}
