//! `chatrelay extension simulate`: connects to `/ws/extension/` like the real
//! browser extension and answers every request it is given — so the whole
//! flow can be seen, tested and benchmarked without a browser.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

/// How the simulated extension answers.
#[derive(clap::Args, Clone, Debug)]
pub struct SimulateOptions {
    /// The edge's extension endpoint, e.g. ws://127.0.0.1:8000/ws/extension/
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws/extension/")]
    pub url: String,

    /// The account's API key.
    #[arg(long, env = "CHATRELAY_API_KEY")]
    pub api_key: String,

    /// Milliseconds to "think" before answering each request.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,

    /// Answer with this text instead of echoing the message.
    #[arg(long)]
    pub reply: Option<String>,

    /// Fraction of requests (0.0–1.0) answered with an error frame instead.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,

    /// Do not send `status_update: executing` before answering.
    #[arg(long)]
    pub no_status_update: bool,

    /// Exit after answering this many requests.
    #[arg(long)]
    pub exit_after: Option<u64>,

    /// Print nothing per request.
    #[arg(long)]
    pub quiet: bool,
}

/// What a simulation did.
#[derive(Debug, Default)]
pub struct SimulationStats {
    pub answered: u64,
    pub failed: u64,
    pub errors_received: u64,
}

fn endpoint(url: &str, api_key: &str) -> String {
    if url.contains("api_key=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&api_key={api_key}")
    } else {
        format!("{url}?api_key={api_key}")
    }
}

/// The answer to one `new_request` frame.
fn answer(options: &SimulateOptions, request: &Value) -> Value {
    let id = request["request_id"].as_str().unwrap_or_default();
    if options.failure_rate > 0.0 && rand::rng().random_bool(options.failure_rate.clamp(0.0, 1.0)) {
        return json!({ "type": "error", "request_id": id, "error": "simulated failure" });
    }
    let message = request["message"].as_str().unwrap_or_default();
    let chat_id = match request["chat_id"].as_str() {
        Some(chat_id) => chat_id.to_string(),
        None => format!("sim-{:016x}", rand::rng().random::<u64>()),
    };
    let title: String = message.chars().take(40).collect();
    json!({
        "type": "response",
        "request_id": id,
        "response": options.reply.clone().unwrap_or_else(|| format!("echo: {message}")),
        "chat_id": chat_id,
        "chat_title": title,
    })
}

/// Runs until `shutdown`, until `exit_after` requests are answered, or until
/// the server closes the connection.
pub async fn run(
    options: SimulateOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<SimulationStats> {
    let url = endpoint(&options.url, &options.api_key);
    let (socket, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            anyhow::bail!(
                "server refused the connection: HTTP {} {body}",
                response.status()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("cannot connect to {}", options.url)),
    };
    if !options.quiet {
        println!("connected to {}", options.url);
    }
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(256);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let options = Arc::new(options);
    let answered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let done = CancellationToken::new();
    let mut errors_received = 0;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = done.cancelled() => break,
            message = stream.next() => match message {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    eprintln!("connection error: {e}");
                    break;
                }
                None => break,
            },
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                if !options.quiet {
                    println!("server closed the session: {frame:?}");
                }
                break;
            }
            _ => continue,
        };
        let frame: Value = match serde_json::from_str(&text) {
            Ok(frame) => frame,
            Err(_) => continue,
        };
        match frame["type"].as_str() {
            Some("new_request") => {
                let (options, out, answered, failed, done) = (
                    options.clone(),
                    out.clone(),
                    answered.clone(),
                    failed.clone(),
                    done.clone(),
                );
                tokio::spawn(async move {
                    let id = frame["request_id"].as_str().unwrap_or_default().to_string();
                    if !options.quiet {
                        println!("← new_request {id}: {}", frame["message"]);
                    }
                    if !options.no_status_update {
                        let update = json!({ "type": "status_update", "request_id": id, "status": "executing" });
                        let _ = out.send(Message::Text(update.to_string().into())).await;
                    }
                    if options.delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(options.delay_ms)).await;
                    }
                    let reply = answer(&options, &frame);
                    if reply["type"] == "error" {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    if !options.quiet {
                        println!("→ {} {id}", reply["type"].as_str().unwrap_or_default());
                    }
                    if out
                        .send(Message::Text(reply.to_string().into()))
                        .await
                        .is_ok()
                    {
                        let total = answered.fetch_add(1, Ordering::Relaxed) + 1;
                        if options.exit_after.is_some_and(|limit| total >= limit) {
                            done.cancel();
                        }
                    }
                });
            }
            Some("error") => {
                errors_received += 1;
                if !options.quiet {
                    println!("← error {}: {}", frame["request_id"], frame["error"]);
                }
            }
            _ => {}
        }
    }
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    Ok(SimulationStats {
        answered: answered.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        errors_received,
    })
}
