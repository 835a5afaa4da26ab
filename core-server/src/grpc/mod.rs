//! The core's gRPC server: `chatrelay.v1` services, server reflection (v1 and
//! v1alpha) and `grpc.health.v1`.

mod chat;
pub mod convert;
mod extension;

use std::sync::Arc;

use chatrelay_proto::v1::{
    chat_service_server::ChatServiceServer, extension_service_server::ExtensionServiceServer,
    FILE_DESCRIPTOR_SET,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{metadata::MetadataMap, transport::Server};

use crate::{accounts, error::CoreResult, model::AccountId, Core};

/// The metadata entry that carries the API key.
pub const API_KEY_METADATA: &str = "x-api-key";

/// The caller's API key, as sent.
pub(crate) fn api_key(metadata: &MetadataMap) -> Option<&str> {
    metadata.get(API_KEY_METADATA).and_then(|v| v.to_str().ok())
}

/// Resolves the caller's API key to its account.
pub(crate) async fn caller(core: &Core, metadata: &MetadataMap) -> CoreResult<AccountId> {
    let key = metadata.get(API_KEY_METADATA).and_then(|v| v.to_str().ok());
    accounts::authenticate(&core.db, key).await
}

/// Serves the core's gRPC API on `listener` until `shutdown` is cancelled.
pub async fn serve(
    core: Arc<Core>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ChatServiceServer<chat::ChatApi>>()
        .await;
    health
        .set_serving::<ExtensionServiceServer<extension::ExtensionApi>>()
        .await;

    Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ChatServiceServer::new(chat::ChatApi::new(core.clone())))
        .add_service(ExtensionServiceServer::new(extension::ExtensionApi::new(
            core.clone(),
        )))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}
