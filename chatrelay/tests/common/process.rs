//! Running the real `chatrelay` binary in tests: one-shot commands and a
//! `chatrelay serve` process with the addresses it announced.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdout, Command},
};

use super::{json_of, TestDb};

/// `chatrelay ARGS` on the test's database, with no stray `CHATRELAY_…`
/// settings from the environment, and private webhook URLs allowed.
pub fn chatrelay(db: &TestDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatrelay"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CHATRELAY_") {
            command.env_remove(name);
        }
    }
    command
        .env("DATABASE_URL", &db.url)
        // The tests' webhook receivers listen on loopback.
        .env("CHATRELAY_ALLOW_PRIVATE_WEBHOOK_URLS", "true")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs a command to completion: (succeeded, stdout lines, stderr).
pub async fn run(db: &TestDb, args: &[&str]) -> (bool, Vec<String>, String) {
    let output = chatrelay(db)
        .args(args)
        .output()
        .await
        .expect("run chatrelay");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 stdout");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        output.status.success(),
        stdout.lines().map(str::to_string).collect(),
        stderr,
    )
}

/// `chatrelay account create --name NAME`: the API key from the last line.
pub async fn create_account(db: &TestDb, name: &str) -> (String, Vec<String>) {
    let (ok, lines, stderr) = run(db, &["account", "create", "--name", name]).await;
    assert!(ok, "account create failed: {stderr}");
    let key = lines.last().expect("output").clone();
    (key, lines)
}

/// A `chatrelay serve` process and the addresses it announced.
pub struct Served {
    pub child: Child,
    _stdout: BufReader<ChildStdout>,
    pub http: String,
    pub grpc: String,
}

impl Served {
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts with the command adjusted by `configure` (environment, stderr).
    pub async fn start_with(db: &TestDb, configure: impl FnOnce(&mut Command)) -> Self {
        let mut command = chatrelay(db);
        command.stderr(Stdio::inherit());
        configure(&mut command);
        let mut child = command
            .arg("serve")
            .env("CHATRELAY_HTTP_ADDR", "127.0.0.1:0")
            .env("CHATRELAY_GRPC_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn chatrelay serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let announce = async {
            let mut line = String::new();
            loop {
                line.clear();
                let read = stdout.read_line(&mut line).await.expect("read stdout");
                assert!(read > 0, "chatrelay serve exited before listening");
                if line.starts_with("chatrelay listening:") {
                    return line.trim_end().to_string();
                }
            }
        };
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), announce)
            .await
            .expect("chatrelay serve announces its addresses");
        let (http, grpc) = parse_announcement(&line);
        Self {
            child,
            _stdout: stdout,
            http,
            grpc,
        }
    }

    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill chatrelay serve");
    }

    /// Sends SIGTERM, as a service manager stopping chatrelay would.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
    }

    /// Waits for the process to exit by itself, within `limit`.
    pub async fn exit_status(mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("chatrelay exits in time")
            .expect("wait for chatrelay")
    }
}

/// `chatrelay listening: REST and WebSocket on http://A, gRPC on http://B`.
pub fn parse_announcement(line: &str) -> (String, String) {
    let rest = line
        .strip_prefix("chatrelay listening: REST and WebSocket on ")
        .unwrap_or_else(|| panic!("unexpected announcement {line:?}"));
    let (http, grpc) = rest
        .split_once(", gRPC on ")
        .unwrap_or_else(|| panic!("unexpected announcement {line:?}"));
    for url in [http, grpc] {
        let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
        assert_eq!(parsed.scheme(), "http");
        assert_eq!(parsed.host_str(), Some("127.0.0.1"));
        assert_ne!(parsed.port(), Some(0), "{url}");
    }
    (http.to_string(), grpc.to_string())
}

pub async fn http_get(base: &str, key: &str, path: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("X-API-Key", key)
        .send()
        .await
        .expect("GET");
    json_of(response).await
}

pub async fn http_submit(base: &str, key: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/chat/submit/"))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .expect("POST");
    json_of(response).await
}
