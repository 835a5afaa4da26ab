//! The chatrelay under test: `chatrelay serve` as a child process on ephemeral
//! ports, accounts made with `chatrelay account create`, and its resident
//! memory.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

pub struct Chatrelay {
    child: Child,
    pub pid: u32,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// Kept open: the process may write to stdout again.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl Chatrelay {
    /// Starts `chatrelay serve` on `database_url`; its log goes to `log`.
    pub async fn start(binary: &Path, database_url: &str, log: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("CHATRELAY_HTTP_ADDR", "127.0.0.1:0")
            .env("CHATRELAY_GRPC_ADDR", "127.0.0.1:0")
            // The benchmark's webhook receiver listens on loopback.
            .env("CHATRELAY_ALLOW_PRIVATE_WEBHOOK_URLS", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("chatrelay exited at once")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = tokio::time::timeout(Duration::from_secs(120), stdout.next_line())
            .await
            .context("chatrelay did not start within 2 minutes")??
            .with_context(|| format!("chatrelay exited; see {}", log.display()))?;
        let (http, grpc) = parse_listening(&line)?;
        Ok(Self {
            child,
            pid,
            http,
            grpc,
            _stdout: stdout,
        })
    }

    /// Resident memory (VmRSS) in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .context("no VmRSS line")?
            .parse()?;
        Ok(kib * 1024)
    }

    /// SIGTERM, then waits for a clean exit (killed after 20 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("chatrelay exited with {status}");
                }
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("chatrelay did not stop within 20 s of SIGTERM; killed");
            }
        }
        Ok(())
    }
}

/// Creates an account on the database directly and returns its API key.
pub async fn create_account(
    binary: &Path,
    database_url: &str,
    name: &str,
    webhook_url: Option<&str>,
) -> anyhow::Result<String> {
    let mut command = Command::new(binary);
    command
        .arg("account")
        .arg("--database-url")
        .arg(database_url)
        .arg("create")
        .arg("--name")
        .arg(name)
        .env("RUST_LOG", "warn")
        .env("CHATRELAY_ALLOW_PRIVATE_WEBHOOK_URLS", "true")
        .kill_on_drop(true);
    if let Some(url) = webhook_url {
        command.arg("--webhook-url").arg(url);
    }
    let output = command.output().await?;
    if !output.status.success() {
        bail!(
            "chatrelay account create --name {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8(output.stdout)?;
    let key = stdout.lines().last().unwrap_or_default().trim();
    if key.is_empty() {
        bail!("chatrelay account create printed no API key");
    }
    Ok(key.to_string())
}

/// The two addresses of `chatrelay listening: REST and WebSocket on
/// http://A, gRPC on http://B`.
fn parse_listening(line: &str) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let addrs: Vec<SocketAddr> = line
        .split("http://")
        .skip(1)
        .map(|rest| rest.split([',', ' ']).next().unwrap_or_default().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("unexpected first line from chatrelay: {line:?}"))?;
    match addrs.as_slice() {
        [http, grpc] => Ok((*http, *grpc)),
        _ => bail!("unexpected first line from chatrelay: {line:?}"),
    }
}

/// The release binary next to this one, when `--chatrelay` is not given.
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("chatrelay")))
        .unwrap_or_else(|| PathBuf::from("target/release/chatrelay"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listening_line() {
        let (http, grpc) = parse_listening(
            "chatrelay listening: REST and WebSocket on http://127.0.0.1:8000, gRPC on http://127.0.0.1:50051",
        )
        .expect("parse");
        assert_eq!(http, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(grpc, "127.0.0.1:50051".parse().unwrap());
        assert!(parse_listening("something else").is_err());
    }
}
