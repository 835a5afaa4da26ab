//! `/healthz` (this process is up) and `/readyz` (the core is reachable and
//! its database answers, as the core's `grpc.health.v1` reports).

use std::time::Duration;

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

use crate::{ApiError, EdgeState};

/// How long `/readyz` waits for the core.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(state: EdgeState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn ready(State(state): State<EdgeState>) -> Result<impl IntoResponse, ApiError> {
    let unready = |why: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why);
    let mut health = state.health.clone();
    let checked = tokio::time::timeout(READY_TIMEOUT, health.check(HealthCheckRequest::default()))
        .await
        .map_err(|_| unready("core did not answer in time".into()))?
        .map_err(|status| unready(format!("core unreachable: {}", status.message())))?;
    match checked.into_inner().status() {
        ServingStatus::Serving => Ok(Json(json!({ "status": "ready" }))),
        _ => Err(unready(
            "core is not serving: its database does not answer".into(),
        )),
    }
}
