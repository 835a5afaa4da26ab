//! Several `chatrelay serve` processes on one PostgreSQL: extension
//! sessions spread over them answer requests submitted to all of them, and
//! every request is delivered once and answered once — none stuck, none
//! delivered twice. Pairs of new chats are answered as one ChatGPT
//! conversation, so chats on different cores race to take the same name
//! (the unique index refuses one of them; its answer must still land).
//!
//! On SQLite one process owns the database file, so the same scenario runs
//! on one process.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    process::{self, Served},
    TestDb,
};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const REQUESTS: usize = 800;
const SESSIONS: usize = 4;
/// Chats that a quarter of the submits continue by their ChatGPT id.
const CHAT_NAMES: u64 = 12;
const SUBMITTERS: usize = 8;

/// What the extensions saw: deliveries per request, and error frames.
#[derive(Default)]
struct Seen {
    deliveries: HashMap<String, usize>,
    errors: Vec<Value>,
}

/// One extension session: answers every request at once, half of them
/// after a `status_update: executing`, until `stop`.
async fn extension(
    http: String,
    key: String,
    seen: Arc<Mutex<Seen>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let url = format!(
        "{}/ws/extension/?api_key={key}",
        http.replacen("http", "ws", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("extension connects");
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            message = socket.next() => message,
        };
        let Some(Ok(message)) = message else {
            panic!("the server closed an extension session mid-run");
        };
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).expect("JSON frame");
        if frame["type"] != "new_request" {
            seen.lock().unwrap().errors.push(frame);
            continue;
        }
        let id = frame["request_id"]
            .as_str()
            .expect("request_id")
            .to_string();
        let first = {
            let mut seen = seen.lock().unwrap();
            let count = seen.deliveries.entry(id.clone()).or_default();
            *count += 1;
            *count == 1
        };
        if !first {
            continue; // counted; the test fails on it
        }
        let n: u64 = frame["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("message "))
            .and_then(|n| n.parse().ok())
            .expect("message n");
        // Two requests submitted back to back, each in a new chat, are
        // answered as one conversation: new chats race for the name.
        let chat = match frame["chat_id"].as_str() {
            Some(chat) => chat.to_string(),
            None => format!("conv-pair-{}", n / 2),
        };
        if n.is_multiple_of(2) {
            let executing =
                json!({ "type": "status_update", "request_id": id, "status": "executing" });
            socket
                .send(Message::Text(executing.to_string().into()))
                .await
                .expect("send status");
        }
        let response = json!({
            "type": "response",
            "request_id": id,
            "response": format!("answer to {id}"),
            "chat_id": chat,
            "chat_title": format!("Title of {chat}"),
        });
        socket
            .send(Message::Text(response.to_string().into()))
            .await
            .expect("send response");
    }
    let _ = socket.close(None).await;
}

/// Submits `REQUESTS` requests round-robin over the processes, a quarter of
/// them continuing one of the named chats; returns their ids.
async fn submit_all(cores: &[String], key: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    let per_submitter = REQUESTS / SUBMITTERS;
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|s| {
            let (client, cores, key) = (client.clone(), cores.to_vec(), key.to_string());
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(per_submitter);
                for i in 0..per_submitter {
                    let n = s * per_submitter + i;
                    let mut body = json!({ "message": format!("message {n}") });
                    if n % 4 == 3 {
                        body["chat_id"] = json!(format!("conv-{}", n as u64 % CHAT_NAMES));
                    }
                    let base = &cores[n % cores.len()];
                    let response = client
                        .post(format!("{base}/api/chat/submit/"))
                        .header("X-API-Key", &key)
                        .json(&body)
                        .send()
                        .await
                        .expect("submit");
                    assert_eq!(response.status(), 201);
                    let created: Value = response.json().await.expect("JSON");
                    ids.push(created["id"].as_str().expect("id").to_string());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(REQUESTS);
    for task in tasks {
        ids.extend(task.await.expect("submitter"));
    }
    ids
}

/// How many of the account's requests have `status`, from the listing.
async fn count(base: &str, key: &str, status: &str) -> usize {
    let mut total = 0;
    let mut cursor = String::new();
    loop {
        let path = format!("/api/chat/requests/?status={status}&limit=1000&cursor={cursor}");
        let client = reqwest::Client::new();
        let response = client
            .get(format!("{base}{path}"))
            .header("X-API-Key", key)
            .send()
            .await
            .expect("list");
        assert_eq!(response.status(), 200);
        let next = response
            .headers()
            .get("X-Next-Cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let page: Value = response.json().await.expect("JSON");
        total += page.as_array().expect("page").len();
        match next {
            Some(next) => cursor = next,
            None => return total,
        }
    }
}

async fn run_once(round: usize) {
    let db = TestDb::new().await;
    let processes = if db.is_postgres() { 2 } else { 1 };
    let (key, _) = process::create_account(&db, "acme").await;
    let mut served = Vec::new();
    for _ in 0..processes {
        served.push(Served::start(&db).await);
    }
    let cores: Vec<String> = served.iter().map(|s| s.http.clone()).collect();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|i| {
            tokio::spawn(extension(
                cores[i % cores.len()].clone(),
                key.clone(),
                seen.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let ids = submit_all(&cores, &key).await;
    assert_eq!(ids.len(), REQUESTS);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = count(&cores[0], &key, "done").await;
        if done == REQUESTS {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let idle = count(&cores[0], &key, "idle").await;
            let executing = count(&cores[0], &key, "executing").await;
            panic!(
                "round {round}: {done} of {REQUESTS} done, {idle} idle, {executing} executing; \
                 error frames: {:?}",
                seen.lock().unwrap().errors
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    for session in sessions {
        session.await.expect("extension session");
    }

    {
        let seen = seen.lock().unwrap();
        assert!(seen.errors.is_empty(), "round {round}: {:?}", seen.errors);
        let twice: Vec<_> = seen.deliveries.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "round {round}: delivered twice: {twice:?}"
        );
        assert_eq!(seen.deliveries.len(), REQUESTS, "round {round}");
    }
    for id in ids.iter().step_by(37) {
        let (status, body) = process::http_get(
            &cores[1 % cores.len()],
            &key,
            &format!("/api/chat/requests/{id}/"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "done", "{body}");
        assert_eq!(body["response"], format!("answer to {id}"));
        assert!(
            body["chat"]
                .as_str()
                .unwrap_or_default()
                .starts_with("conv-"),
            "{body}"
        );
    }
    for process in served {
        process.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_submitted_to_several_cores_are_each_delivered_and_answered_once() {
    for round in 1..=3 {
        run_once(round).await;
    }
}
