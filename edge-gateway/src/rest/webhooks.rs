//! `GET /api/chat/webhooks/` and `POST /api/chat/webhooks/{id}/retry/`.

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::HeaderMap,
    response::Response,
    Json,
};
use chatrelay_proto::v1 as pb;

use super::{
    authed, client,
    json::DeliveryJson,
    requests::{page, parse_limit, PageParams},
};
use crate::{error::ErrorBody, ApiError, EdgeState};

/// List webhook deliveries
///
/// The account's webhook deliveries, newest first, a page at a time, each
/// with its attempts, oldest first.
#[utoipa::path(
    get,
    path = "/api/chat/webhooks/",
    tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    params(PageParams),
    responses(
        (status = 200, description = "A page of deliveries.", body = [DeliveryJson],
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
    let limit = Some(parse_limit(params.limit.as_deref())?).filter(|n| *n > 0);
    let request = authed(
        &headers,
        pb::ListWebhookDeliveriesRequest {
            limit,
            cursor: params.cursor.filter(|c| !c.is_empty()),
        },
    )?;
    let listed = client(&state)
        .list_webhook_deliveries(request)
        .await?
        .into_inner();
    let items: Vec<DeliveryJson> = listed.deliveries.into_iter().map(Into::into).collect();
    Ok(page(items, listed.next_cursor.unwrap_or_default()))
}

/// Retry a webhook delivery
///
/// Sends a finished delivery (`failed` or `succeeded`) again: it becomes
/// `pending`, due now, with a fresh retry schedule and the same
/// `webhook-id`. Answers with the delivery as it now is. No body is needed.
#[utoipa::path(
    post,
    path = "/api/chat/webhooks/{id}/retry/",
    tag = "webhooks",
    operation_id = "retry_webhook_delivery",
    params(("id" = String, Path, format = "uuid", description = "The delivery's id (its `webhook-id`).")),
    responses(
        (status = 200, description = "The delivery, now `pending`.", body = DeliveryJson),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 404, description = "No delivery of this account has this id.", body = ErrorBody),
        (status = 409, description = "The delivery is `pending`: it will be attempted again by itself.", body = ErrorBody),
        (status = 503, description = "The core is unavailable.", body = ErrorBody),
    ),
)]
pub async fn retry(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<DeliveryJson>, ApiError> {
    let request = authed(
        &headers,
        pb::RetryWebhookDeliveryRequest { delivery_id: id },
    )?;
    let delivery = client(&state)
        .retry_webhook_delivery(request)
        .await?
        .into_inner();
    Ok(Json(delivery.into()))
}
