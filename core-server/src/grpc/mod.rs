//! The core's gRPC server: `chatrelay.v1` services, server reflection (v1 and
//! v1alpha) and `grpc.health.v1`.

mod chat;
pub mod convert;
mod extension;
mod listener;

pub use chat::ChatApi;
pub use extension::{ExtensionApi, ServerFrames};
pub use listener::GrpcListener;

use std::{convert::Infallible, sync::Arc};

use chatrelay_proto::v1::{
    chat_service_server::ChatServiceServer, extension_service_server::ExtensionServiceServer,
    FILE_DESCRIPTOR_SET,
};
use tokio_util::sync::CancellationToken;
use tonic::{metadata::MetadataMap, service::Routes, transport::Server};
use tower::{Service, ServiceBuilder};

use crate::{accounts, error::CoreResult, model::AccountId, Core};

/// The largest gRPC message the core takes or sends. A page of requests is
/// cut at `requests::PAGE_BYTES` of text, so with its last request (a
/// message and a response at their limits) it stays well under this; an
/// extension frame is bounded by the edge's WebSocket limit (4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// The metadata entry that carries the API key.
pub const API_KEY_METADATA: &str = "x-api-key";

/// The caller's API key, as sent.
pub(crate) fn api_key(metadata: &MetadataMap) -> Option<&str> {
    metadata.get(API_KEY_METADATA).and_then(|v| v.to_str().ok())
}

/// Resolves the caller's API key to its account.
pub(crate) async fn caller(core: &Core, metadata: &MetadataMap) -> CoreResult<AccountId> {
    accounts::authenticate(&core.store, api_key(metadata)).await
}

/// The metadata entry (and REST header, `Idempotency-Key`) that carries a
/// submit's idempotency key.
pub const IDEMPOTENCY_KEY_METADATA: &str = "idempotency-key";

/// Set to `true` on a `SubmitMessage` answer that repeats the request an
/// earlier submit with the same idempotency key created (REST: `200`, not
/// `201`).
pub const REPLAYED_METADATA: &str = "idempotent-replayed";

/// The metadata entry (and REST header) that carries a call's request id.
pub const REQUEST_ID_METADATA: &str = "x-request-id";

/// Every call gets a span with its method and the request id the edge
/// passed along, so a REST call can be followed into the core's logs.
fn call_span(request: &http::Request<tonic::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("grpc", method = %request.uri().path(), request_id = %request_id)
}

/// Keeps `grpc.health.v1` honest: the core is serving while its database
/// answers.
fn watch_database(core: &Arc<Core>, health: tonic_health::server::HealthReporter) {
    let core = core.clone();
    let tracker = core.tasks.clone();
    tracker.spawn(async move {
        let mut ticks = tokio::time::interval(HEALTH_PROBE);
        let mut serving = Some(true);
        loop {
            tokio::select! {
                _ = core.shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let up = tokio::time::timeout(HEALTH_PROBE, core.store.read.ping())
                .await
                .is_ok_and(|pinged| pinged.is_ok());
            if serving == Some(up) {
                continue;
            }
            serving = Some(up);
            let status = if up {
                tonic_health::ServingStatus::Serving
            } else {
                tracing::warn!("database not answering; reporting NOT_SERVING");
                tonic_health::ServingStatus::NotServing
            };
            for service in HEALTH_SERVICES {
                health.set_service_status(service, status).await;
            }
        }
    });
}

/// How often the database is probed for the health service.
const HEALTH_PROBE: std::time::Duration = std::time::Duration::from_secs(2);

/// The names health reports on: the whole server and each API service.
const HEALTH_SERVICES: [&str; 3] = [
    "",
    "chatrelay.v1.ChatService",
    "chatrelay.v1.ExtensionService",
];

/// Everything the core answers over gRPC, as one service: the API, health
/// and reflection. The listener serves it; `chatrelay serve` also hands it to
/// its edge, which then calls it in-process rather than over loopback.
pub async fn routes(core: &Arc<Core>) -> anyhow::Result<Routes> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    // The database was just connected and migrated: start as serving.
    for service in HEALTH_SERVICES {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }
    watch_database(core, health);

    Ok(Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            ChatServiceServer::new(chat::ChatApi::new(core.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ExtensionServiceServer::new(extension::ExtensionApi::new(core.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .prepare())
}

/// The gRPC service stack for a caller in the same process: the same routes
/// and the same per-call span as over the network, without the socket and the
/// HTTP/2 framing.
pub fn in_process(
    routes: Routes,
) -> impl Service<
    http::Request<tonic::body::Body>,
    Response = http::Response<tonic::body::Body>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    ServiceBuilder::new()
        .map_response(|response: http::Response<_>| response.map(tonic::body::Body::new))
        .layer(tower_http::trace::TraceLayer::new_for_grpc().make_span_with(call_span))
        .service(routes)
}

/// Serves `routes` on `listener` until `shutdown` is cancelled. Idle
/// connections are pinged (HTTP/2 and TCP keepalive), so a peer that went
/// away without closing is dropped within two keepalive periods; its
/// extension sessions then end and their requests go back to the queue.
pub async fn serve(
    routes: Routes,
    listener: GrpcListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let GrpcListener { tcp, tls, config } = listener;
    let keepalive = config.keepalive();
    // HTTP/1.1 and the grpc-web layer let browsers call the API directly.
    let mut server = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
        .timeout(config.request_timeout());
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .layer(tower_http::trace::TraceLayer::new_for_grpc().make_span_with(call_span))
        .layer(tonic_web::GrpcWebLayer::new())
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            GrpcListener::incoming(tcp, &config),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}
