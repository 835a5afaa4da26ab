//! What operators see of the edge: a request id per call (echoed in
//! `X-Request-Id` and passed to the core), a tracing span per call that names
//! the route but never the query string (the WebSocket URL carries the API
//! key), Prometheus metrics (optionally behind a bearer token), and the
//! per-call time limit.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::ApiError;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

/// The header that carries a call's request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Latency buckets, in seconds, for every histogram but those in `COUNTS`.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the histograms that count rather than time.
const COUNTS: [(&str, &[f64]); 1] = [(
    "chatrelay_submit_batch_size",
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
)];

/// The process's Prometheus recorder. The `metrics` facade is process-wide by
/// design; the first caller installs it and every later one shares it.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .expect("static buckets");
            for (name, buckets) in COUNTS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
                    .expect("static buckets");
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed by an embedding program.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// `GET /metrics`, open, or behind `Authorization: Bearer <token>` when a
/// token is configured (`CHATRELAY_METRICS_TOKEN`).
pub fn metrics_router(token: Option<String>) -> axum::Router {
    let access = MetricsAccess {
        handle: prometheus(),
        token: token.filter(|t| !t.is_empty()).map(Arc::from),
    };
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics_text))
        .with_state(access)
}

#[derive(Clone)]
struct MetricsAccess {
    handle: PrometheusHandle,
    token: Option<Arc<str>>,
}

async fn metrics_text(State(access): State<MetricsAccess>, headers: HeaderMap) -> Response {
    if let Some(token) = &access.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !same_secret(presented.trim().as_bytes(), token.as_bytes()) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "/metrics requires Authorization: Bearer <CHATRELAY_METRICS_TOKEN>",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        access.handle.render(),
    )
        .into_response()
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Cuts a call off after `limit` with `504 {"detail": …}`. A WebSocket
/// upgrade answers at once, so sessions are not cut.
pub async fn time_limit(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request took longer than {} s (CHATRELAY_HTTP_REQUEST_TIMEOUT_SECS)",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Counts and times every call by route, method and status.
pub async fn record(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("chatrelay_http_requests_total", &labels).increment(1);
    metrics::histogram!("chatrelay_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Request ids and tracing for every call, outermost first.
pub fn layers<S>(router: axum::Router<S>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(axum::middleware::from_fn(record))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = %request_id,
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::get, Router};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_call_past_the_time_limit_is_a_json_504() {
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/quick", get(|| async { "on time" }))
            .layer(axum::middleware::from_fn(|request, next| {
                time_limit(Duration::from_millis(100), request, next)
            }));
        let call = |path: &'static str| {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        };

        let slow = call("/slow").await.expect("response");
        let quick = call("/quick").await.expect("response");

        assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
        let body = axum::body::to_bytes(slow.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert!(body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("longer than")));
        assert_eq!(quick.status(), StatusCode::OK);
    }
}
