//! The physical reference: a bare axum handler that parses the submit JSON
//! body and returns it, with no database and no gRPC hop. It runs as a
//! process of its own (`chatrelay-bench reference-server`) so it does not
//! share a runtime with the load generator, and wrk measures it with the
//! same script and settings as chatrelay's REST submit.

use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use anyhow::Context;
use axum::{http::StatusCode, routing::post, Json, Router};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// api-spec.md's submit body.
#[derive(Deserialize, Serialize)]
struct SubmitBody {
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thinking_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chat_id: Option<String>,
}

async fn submit(Json(body): Json<SubmitBody>) -> (StatusCode, Json<SubmitBody>) {
    (StatusCode::CREATED, Json(body))
}

/// Serves `POST /api/chat/submit/` until killed; prints its address first.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("reference listening on http://{}", listener.local_addr()?);
    let app = Router::new().route("/api/chat/submit/", post(submit));
    axum::serve(listener, app).await?;
    Ok(())
}

/// The reference server process.
pub struct ReferenceServer {
    child: Child,
    pub addr: SocketAddr,
}

impl ReferenceServer {
    /// Starts `<this binary> reference-server` on an ephemeral port.
    pub async fn start(bench_binary: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(bench_binary)
            .arg("reference-server")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("reference server did not start")??
            .context("reference server exited")?;
        let addr = line
            .rsplit("http://")
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("unexpected line from the reference server: {line:?}"))?;
        Ok(Self { child, addr })
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
