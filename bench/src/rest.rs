//! A REST client for the drivers that need request ids back (lifecycles,
//! webhooks, the GET scenario's request); wrk does the plain load.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use serde::Deserialize;

/// The submit body every scenario sends (the same as `lua/submit.lua`).
pub const SUBMIT_BODY: &str =
    r#"{"message":"benchmark message","response_type":"auto","thinking_time":"standard"}"#;

#[derive(Clone)]
pub struct RestClient {
    client: reqwest::Client,
    base: String,
    submit_url: String,
    api_key: String,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

impl RestClient {
    pub fn new(http: SocketAddr, api_key: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            client,
            base: format!("http://{http}"),
            submit_url: format!("http://{http}/api/chat/submit/"),
            api_key: api_key.to_string(),
        })
    }

    /// Submits the benchmark message; returns the new request's id.
    pub async fn submit(&self) -> anyhow::Result<String> {
        self.submit_body(SUBMIT_BODY).await
    }

    /// Submits the benchmark message to the chat `chat` (its ChatGPT id).
    pub async fn submit_in_chat(&self, chat: &str) -> anyhow::Result<String> {
        let mut body: serde_json::Value = serde_json::from_str(SUBMIT_BODY)?;
        body["chat_id"] = chat.into();
        self.submit_body(body.to_string()).await
    }

    async fn submit_body(&self, body: impl Into<reqwest::Body>) -> anyhow::Result<String> {
        let response = self
            .client
            .post(&self.submit_url)
            .header("X-API-Key", &self.api_key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        if status != reqwest::StatusCode::CREATED {
            bail!("submit answered {status}: {}", response.text().await?);
        }
        let created: Created = response.json().await.context("submit response")?;
        Ok(created.id)
    }

    /// Long-polls the request for up to `wait` seconds; returns its status.
    pub async fn long_poll(&self, id: &str, wait: u32) -> anyhow::Result<String> {
        let response = self
            .client
            .get(format!("{}/api/chat/requests/{id}/?wait={wait}", self.base))
            .header("X-API-Key", &self.api_key)
            .send()
            .await?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            bail!("long-poll answered {status}: {}", response.text().await?);
        }
        let request: serde_json::Value = response.json().await.context("long-poll response")?;
        Ok(request["status"].as_str().unwrap_or_default().to_string())
    }
}
