//! A Server-Sent Events client for `/api/chat/events/`: reads the stream as
//! it comes and splits it into events (comments skipped).

use std::{pin::Pin, time::Duration};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;

use super::TestApp;

/// How long a test waits for an event that should come.
pub const EVENT_WAIT: Duration = Duration::from_secs(10);

/// One event of the stream.
#[derive(Clone, Debug, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

pub struct EventStream {
    body: Body,
    buffer: String,
    /// Comment lines seen (keep-alives).
    pub comments: usize,
}

impl EventStream {
    /// Opens the stream at `path` (with its query) of `app`, with `headers`.
    pub async fn open(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Self {
        Self::try_open(app, path, headers)
            .await
            .unwrap_or_else(|(status, body)| panic!("stream refused: {status} {body}"))
    }

    /// The stream for `key`, of every request of its account.
    pub async fn of(app: &TestApp, key: &str) -> Self {
        Self::open(app, "/api/chat/events/", &[("X-API-Key", key)]).await
    }

    /// Opens the stream, or returns the status and JSON body of the refusal.
    pub async fn try_open(
        app: &TestApp,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, (StatusCode, Value)> {
        let mut request = app.client.get(app.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("GET events");
        if response.status() != StatusCode::OK {
            return Err(super::json_of(response).await);
        }
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Ok(Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            comments: 0,
        })
    }

    /// The next event, or `None` if the stream ended or `wait` passed.
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.parse_one() {
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await;
            match chunk {
                Ok(Some(Ok(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// The next event; panics if none comes in [`EVENT_WAIT`].
    pub async fn next(&mut self) -> SseEvent {
        self.next_within(EVENT_WAIT)
            .await
            .expect("an event within the wait")
    }

    /// The next `request` event's request JSON (panics on any other event).
    pub async fn next_request(&mut self) -> Value {
        let event = self.next().await;
        assert_eq!(event.event, "request", "{event:?}");
        event.data
    }

    /// Asserts that no event comes for `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Some(event) = self.next_within(wait).await {
            panic!("unexpected event: {event:?}");
        }
    }

    /// Splits one complete event off the buffer.
    fn parse_one(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut id = None;
            let mut data = Vec::new();
            let mut fields = 0;
            for line in block.lines() {
                if line.is_empty() {
                    continue;
                }
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                fields += 1;
                match name {
                    "event" => event = value.to_string(),
                    "id" => id = Some(value.to_string()),
                    "data" => data.push(value.to_string()),
                    _ => {}
                }
            }
            if fields == 0 {
                continue;
            }
            let data = data.join("\n");
            let data = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data:?}"));
            return Some(SseEvent { event, id, data });
        }
    }
}
