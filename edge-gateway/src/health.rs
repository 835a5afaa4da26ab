//! `/healthz` (this process is up) and `/readyz` (the core is reachable and
//! its database answers, as the core's `grpc.health.v1` reports).

use std::time::Duration;

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use serde::Serialize;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};
use utoipa::ToSchema;

use crate::{error::ErrorBody, ApiError, EdgeState};

/// The body of a healthy answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// How long `/readyz` waits for the core.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(state: EdgeState) -> Router {
    Router::new()
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
        .with_state(state)
}

/// Liveness
///
/// Answers as long as this process runs; it does not look at the core.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    security(()),
    responses((status = 200, description = "The process is up.", body = HealthStatus)),
)]
pub async fn alive() -> Json<HealthStatus> {
    Json(HealthStatus { status: "ok" })
}

/// Readiness
///
/// Ready when the core answers and reports its database serving.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    security(()),
    responses(
        (status = 200, description = "Ready to serve.", body = HealthStatus,
            example = json!({ "status": "ready" })),
        (status = 503, description = "The core is unreachable or its database does not answer.", body = ErrorBody),
    ),
)]
pub async fn ready(State(state): State<EdgeState>) -> Result<Json<HealthStatus>, ApiError> {
    let unready = |why: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why);
    let mut health = state.health.clone();
    let checked = tokio::time::timeout(READY_TIMEOUT, health.check(HealthCheckRequest::default()))
        .await
        .map_err(|_| unready("core did not answer in time".into()))?
        .map_err(|status| unready(format!("core unreachable: {}", status.message())))?;
    match checked.into_inner().status() {
        ServingStatus::Serving => Ok(Json(HealthStatus { status: "ready" })),
        _ => Err(unready(
            "core is not serving: its database does not answer".into(),
        )),
    }
}
