//! The core's gRPC API as internal services call it: a `ChatService`
//! client of a [`TestApp`]'s core, and requests carrying an API key.

use chatrelay_proto::v1::chat_service_client::ChatServiceClient;
use tonic::{transport::Channel, Request};

use super::TestApp;

/// A client of the app's core over its gRPC listener.
pub async fn chat_client(app: &TestApp) -> ChatServiceClient<Channel> {
    let channel = Channel::from_shared(app.grpc.clone())
        .expect("gRPC URL")
        .connect()
        .await
        .expect("connect to the core");
    ChatServiceClient::new(channel)
}

/// `message` with the `x-api-key` metadata entry.
pub fn with_key<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("ASCII key"));
    request
}
