//! `chatrelay watch`: follows an account's requests through the core's
//! `WatchRequests` stream and prints each event as it comes, one JSON line
//! each — `{"event":"request","id":…,"data":{…}}` with the request as the
//! REST API shows it, or `{"event":"reset",…}` when events may have been
//! missed.

use std::io::Write;

use anyhow::Context;
use chatrelay_edge::rest::json::RequestJson;
use chatrelay_proto::v1::{self as pb, chat_service_client::ChatServiceClient};
use serde_json::json;

#[derive(clap::Args, Clone, Debug)]
pub struct WatchOptions {
    /// The core's gRPC API.
    #[arg(
        long,
        env = "CHATRELAY_CORE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub core_url: String,

    /// The account's API key.
    #[arg(long, env = "CHATRELAY_API_KEY")]
    pub api_key: String,

    /// Only this request's events.
    #[arg(long)]
    pub request_id: Option<String>,

    /// Resume after this event (the `id` of the last line printed).
    #[arg(long)]
    pub last_event_id: Option<String>,
}

/// Prints events to `out` until the stream ends.
pub async fn run(options: WatchOptions, mut out: impl Write) -> anyhow::Result<()> {
    let mut client = ChatServiceClient::connect(options.core_url.clone())
        .await
        .with_context(|| format!("cannot reach the core at {}", options.core_url))?;
    let mut request = tonic::Request::new(pb::WatchRequestsRequest {
        request_id: options.request_id.unwrap_or_default(),
        last_event_id: options.last_event_id.unwrap_or_default(),
    });
    request.metadata_mut().insert(
        "x-api-key",
        options
            .api_key
            .parse()
            .context("the API key is not ASCII")?,
    );
    let mut events = client
        .watch_requests(request)
        .await
        .map_err(|status| anyhow::anyhow!("{}", status.message()))?
        .into_inner();
    while let Some(event) = events
        .message()
        .await
        .map_err(|status| anyhow::anyhow!("stream broken: {}", status.message()))?
    {
        let line = match event.event {
            Some(pb::request_event::Event::Request(request)) => {
                json!({ "event": "request", "id": event.id, "data": RequestJson::from(request) })
            }
            Some(pb::request_event::Event::Reset(reset)) => {
                json!({ "event": "reset", "id": event.id, "data": { "detail": reset.reason } })
            }
            None => continue,
        };
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}
