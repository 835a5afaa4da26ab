//! Webhooks end to end: a real chatrelay on SQLite or PostgreSQL delivering
//! to a real HTTP receiver on an ephemeral port, through failures, timeouts,
//! redirects and restarts.

mod common;

use std::{
    collections::HashSet,
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use common::{
    core::{DeliveryStatus, DeliveryView, RequestStatus, RetrySchedule, TestCore},
    receiver::{Received, Receiver, Reply, WEBHOOK_WAIT as WAIT},
    TestApp, TestDb,
};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use uuid::Uuid;

// ---- the receiver that is down ------------------------------------------------

/// A port where connections are accepted and dropped at once: a receiver
/// that is down. Each connection is reported, so the test knows an attempt
/// happened.
struct DeadReceiver {
    addr: SocketAddr,
    connections: mpsc::UnboundedReceiver<()>,
    server: JoinHandle<()>,
}

impl DeadReceiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (tx, connections) = mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
                let _ = tx.send(());
            }
        });
        Self {
            addr,
            connections,
            server,
        }
    }

    async fn next_connection(&mut self) {
        tokio::time::timeout(WAIT, self.connections.recv())
            .await
            .expect("an attempt within the wait")
            .expect("dead receiver running");
    }

    /// Closes the port and returns a listener on the same port.
    async fn revive(self) -> TcpListener {
        self.server.abort();
        let _ = self.server.await;
        TcpListener::bind(self.addr).await.expect("rebind the port")
    }
}

// ---- helpers ---------------------------------------------------------------------

fn schedule(text: &str) -> RetrySchedule {
    RetrySchedule::parse(text).expect("schedule")
}

/// A chatrelay on `db` that retries webhooks on `retry_schedule`.
async fn start(db: &TestDb, retry_schedule: &str) -> TestApp {
    let retry_schedule = schedule(retry_schedule);
    TestApp::start_with(db, |core, _| core.webhooks.retry_schedule = retry_schedule).await
}

/// [`start`] on a fresh database of the app's own.
async fn start_fresh(retry_schedule: &str) -> TestApp {
    let retry_schedule = schedule(retry_schedule);
    TestApp::fresh_configured(|core, _| core.webhooks.retry_schedule = retry_schedule).await
}

/// Submits a message over REST and lets the core finish it as ChatGPT would.
async fn submit_and_complete(app: &TestApp, account: &str, key: &str, message: &str) -> Uuid {
    let id = submit(app, key, message).await;
    let core = app.core();
    core.complete(
        core.account_id(account).await,
        id,
        format!("answer to {message}"),
        format!("chatgpt-{id}"),
        Some("A title".into()),
    )
    .await
    .expect("complete");
    core.wake_webhooks();
    id
}

async fn submit(app: &TestApp, key: &str, message: &str) -> Uuid {
    let created = app.submit_message(key, message).await;
    created["id"].as_str().expect("id").parse().expect("uuid")
}

/// The only delivery of the account.
async fn only_delivery(core: &TestCore, account: &str) -> DeliveryView {
    let mut all = core.deliveries(account).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    all.pop().expect("one delivery")
}

/// Stops the app, which lets attempts in flight finish and be recorded, and
/// keeps its core for inspection.
async fn stop(app: TestApp) -> TestCore {
    let core = app.core();
    app.stop().await;
    core
}

fn status_codes(view: &DeliveryView) -> Vec<Option<i32>> {
    view.attempts.iter().map(|a| a.status_code).collect()
}

/// An implementation of the Standard Webhooks check of our own: HMAC-SHA256
/// over `id.timestamp.body`, keyed with the base64 part of `whsec_…`.
fn signature_is_valid(secret: &str, received: &Received) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC key");
    mac.update(
        format!(
            "{}.{}.{}",
            received.header("webhook-id"),
            received.header("webhook-timestamp"),
            received.body
        )
        .as_bytes(),
    );
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    received
        .header("webhook-signature")
        .split(' ')
        .any(|candidate| candidate == expected)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

// ---- tests -----------------------------------------------------------------------

#[tokio::test]
async fn done_request_is_delivered_on_the_first_try_with_the_spec_payload() {
    let mut receiver = Receiver::start().await;
    let app = TestApp::fresh().await;
    let key = app
        .account_with_webhook("acme", Some(&receiver.url()))
        .await;
    let (status, created) = app
        .submit(
            &key,
            json!({ "message": "Explain qubits", "response_type": "thinking", "thinking_time": "extended" }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let core = app.core();
    core.complete(
        core.account_id("acme").await,
        id,
        "Qubits are…".into(),
        "chatgpt-1".into(),
        None,
    )
    .await
    .expect("complete");
    core.wake_webhooks();

    let got = receiver.next().await;
    assert_eq!(got.path, "/hook");
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(
        got.json(),
        json!({
            "request_id": id.to_string(),
            "status": "done",
            "message": "Explain qubits",
            "response": "Qubits are…",
            "error": null,
            "response_type": "thinking",
            "thinking_time": "extended",
        })
    );
    let timestamp: i64 = got
        .header("webhook-timestamp")
        .parse()
        .expect("unix seconds");
    assert!((timestamp - unix_now()).abs() < 60, "timestamp {timestamp}");
    assert!(got.header("webhook-signature").starts_with("v1,"));

    let core = stop(app).await;
    let view = only_delivery(&core, "acme").await;
    assert_eq!(view.delivery.id, got.delivery_id());
    assert_eq!(view.delivery.request_id, id);
    assert_eq!(view.delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(view.delivery.attempts, 1);
    assert_eq!(status_codes(&view), [Some(200)]);
    assert_eq!(view.attempts[0].error, None);
    assert!(receiver.already_received().is_empty(), "sent twice");
}

#[tokio::test]
async fn failed_request_payload_carries_the_error_and_no_response() {
    let mut receiver = Receiver::start().await;
    let app = TestApp::fresh().await;
    let key = app
        .account_with_webhook("acme", Some(&receiver.url()))
        .await;
    let id = submit(&app, &key, "will fail").await;
    let core = app.core();
    core.fail(
        core.account_id("acme").await,
        id,
        "ChatGPT is unavailable".into(),
    )
    .await
    .expect("fail");
    core.wake_webhooks();

    assert_eq!(
        receiver.next().await.json(),
        json!({
            "request_id": id.to_string(),
            "status": "failed",
            "message": "will fail",
            "response": null,
            "error": "ChatGPT is unavailable",
            "response_type": "auto",
            "thinking_time": "standard",
        })
    );
    app.stop().await;
}

#[tokio::test]
async fn signature_verifies_with_the_current_secret_of_the_account() {
    let mut receiver = Receiver::start().await;
    receiver.script([Reply::Status(500)]);
    let app = start_fresh("1s").await;
    let key = app
        .account_with_webhook("acme", Some(&receiver.url()))
        .await;
    let core = app.core();
    let first_secret = core.webhook_secret("acme").await;
    submit_and_complete(&app, "acme", &key, "sign me").await;

    let first = receiver.next().await;
    assert!(signature_is_valid(&first_secret, &first));
    let tampered = Received {
        body: first.body.replace("sign me", "sign you"),
        ..first
    };
    assert!(!signature_is_valid(&first_secret, &tampered));

    // Rotated between attempts: the retry is signed with the new secret.
    let second_secret = core.rotate_webhook_secret("acme").await;
    let second = receiver.next().await;
    assert_eq!(second.delivery_id(), tampered.delivery_id());
    assert!(signature_is_valid(&second_secret, &second));
    assert!(!signature_is_valid(&first_secret, &second));
    app.stop().await;
}

#[tokio::test]
async fn receiver_failing_twice_gets_three_attempts_and_one_success() {
    let mut receiver = Receiver::start().await;
    receiver.script([Reply::Status(500), Reply::Status(503)]);
    let app = start_fresh("100ms,100ms,100ms").await;
    let key = app
        .account_with_webhook("acme", Some(&receiver.url()))
        .await;
    submit_and_complete(&app, "acme", &key, "flaky").await;

    let attempts = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    let ids: HashSet<Uuid> = attempts.iter().map(Received::delivery_id).collect();
    assert_eq!(ids.len(), 1, "webhook-id is stable across attempts");
    assert!(attempts.iter().all(|a| a.body == attempts[0].body));

    let core = stop(app).await;
    let view = only_delivery(&core, "acme").await;
    assert_eq!(view.delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(view.delivery.attempts, 3);
    assert_eq!(status_codes(&view), [Some(500), Some(503), Some(200)]);
    let numbers: Vec<i32> = view.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(
        view.attempts[0].error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    assert_eq!(view.attempts[2].error, None);
    assert!(receiver.already_received().is_empty(), "a fourth attempt");
}

#[tokio::test]
async fn exhausted_schedule_fails_the_delivery_and_retry_sends_it_again() {
    let db = TestDb::new().await;
    let mut receiver = Receiver::start().await;
    receiver.otherwise(Reply::Status(500));
    let app = start(&db, "50ms,50ms").await;
    let key = app
        .account_with_webhook("acme", Some(&receiver.url()))
        .await;
    submit_and_complete(&app, "acme", &key, "unlucky").await;
    for _ in 0..3 {
        receiver.next().await;
    }
    let core = stop(app).await;
    let view = only_delivery(&core, "acme").await;
    assert_eq!(view.delivery.status, DeliveryStatus::Failed);
    assert_eq!(view.delivery.attempts, 3);
    assert_eq!(status_codes(&view), [Some(500); 3]);
    assert!(
        receiver.already_received().is_empty(),
        "more than the schedule"
    );

    let id = view.delivery.id;
    let retried = core.retry_delivery(id).await.expect("retry");
    assert_eq!(retried.status, DeliveryStatus::Pending);
    assert!(core.retry_delivery(id).await.is_err(), "already pending");
    assert!(core.retry_delivery(Uuid::now_v7()).await.is_err());

    receiver.otherwise(Reply::Status(204));
    let app = start(&db, "50ms,50ms").await;
    assert_eq!(receiver.next().await.delivery_id(), id);
    let core = stop(app).await;
    let view = core.delivery(id).await;
    assert_eq!(view.delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(view.delivery.attempts, 4);
    assert_eq!(status_codes(&view).last(), Some(&Some(204)));
}

#[tokio::test]
async fn receiver_down_across_a_restart_still_gets_its_webhook() {
    let db = TestDb::new().await;
    let mut dead = DeadReceiver::start().await;
    let url = format!("http://{}/hook", dead.addr);
    let app = start(&db, "300ms,300ms,300ms,300ms,300ms,300ms").await;
    let key = app.account_with_webhook("acme", Some(&url)).await;
    let id = submit_and_complete(&app, "acme", &key, "patience").await;
    dead.next_connection().await;
    let core = stop(app).await;
    let before = only_delivery(&core, "acme").await;
    assert_eq!(before.delivery.status, DeliveryStatus::Pending);
    assert!(before.delivery.attempts >= 1);
    assert!(before.attempts.iter().all(|a| a.error.is_some()));

    let mut receiver = Receiver::start_on(dead.revive().await).await;
    let app = start(&db, "300ms,300ms,300ms,300ms,300ms,300ms").await;
    let got = receiver.next().await;
    assert_eq!(got.delivery_id(), before.delivery.id);
    assert_eq!(got.json()["request_id"], id.to_string());
    let core = stop(app).await;
    let after = only_delivery(&core, "acme").await;
    assert_eq!(after.delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(after.delivery.attempts, before.delivery.attempts + 1);
    assert_eq!(status_codes(&after).last(), Some(&Some(200)));
}

#[tokio::test]
async fn attempt_whose_core_died_is_retried_after_its_claim_lapses() {
    let db = TestDb::new().await;
    let mut receiver = Receiver::start().await;
    let app = TestApp::start(&db).await;
    let key = app
        .account_with_webhook("acme", Some(&receiver.url()))
        .await;
    submit_and_complete(&app, "acme", &key, "again").await;
    let first = receiver.next().await;
    let core = stop(app).await;

    // As if another core had claimed attempt 2 and died before reporting.
    let view = only_delivery(&core, "acme").await;
    let lapses_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 300;
    core.claim_delivery_as_a_dead_core(view.delivery.id, 2, lapses_at)
        .await;

    let app = TestApp::start(&db).await;
    let again = receiver.next().await;
    assert_eq!(again.delivery_id(), first.delivery_id());
    let core = stop(app).await;
    let view = only_delivery(&core, "acme").await;
    assert_eq!(view.delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(view.delivery.attempts, 3);
    let numbers: Vec<i32> = view.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, [1, 3], "attempt 2 never reported back");
}

#[tokio::test]
async fn slow_receiver_times_out_without_holding_up_others_or_rest() {
    let mut slow = Receiver::start().await;
    slow.otherwise(Reply::Slow(Duration::from_secs(60)));
    let mut fast = Receiver::start().await;
    let app = TestApp::fresh_configured(|core, _| {
        core.webhooks.retry_schedule = schedule("none");
        core.webhooks.timeout = Duration::from_secs(3);
    })
    .await;
    let slow_key = app.account_with_webhook("slow", Some(&slow.url())).await;
    let fast_key = app.account_with_webhook("fast", Some(&fast.url())).await;

    submit_and_complete(&app, "slow", &slow_key, "take your time").await;
    slow.next().await;
    // The slow attempt is in flight; everything else goes on.
    let core = app.core();
    let submitted = submit_and_complete(&app, "fast", &fast_key, "quick").await;
    assert_eq!(
        fast.next().await.json()["request_id"],
        submitted.to_string()
    );
    let (status, _) = app
        .get(&fast_key, &format!("/api/chat/requests/{submitted}/"))
        .await;
    assert_eq!(status, 200);
    let in_flight = only_delivery(&core, "slow").await;
    assert_eq!(in_flight.delivery.status, DeliveryStatus::Pending);
    assert!(
        in_flight.attempts.is_empty(),
        "the slow attempt already ended"
    );

    let core = stop(app).await;
    let view = only_delivery(&core, "slow").await;
    assert_eq!(view.delivery.status, DeliveryStatus::Failed);
    assert_eq!(view.attempts.len(), 1);
    let attempt = &view.attempts[0];
    assert_eq!(attempt.status_code, None);
    let error = attempt.error.as_deref().unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");
    assert!(attempt.duration_ms >= 2_900, "{}", attempt.duration_ms);
    assert!(attempt.duration_ms < 10_000, "{}", attempt.duration_ms);
}

#[tokio::test]
async fn hanging_receiver_of_one_account_does_not_hold_up_another_account() {
    let mut hanging = Receiver::start().await;
    hanging.otherwise(Reply::Slow(Duration::from_secs(60)));
    let mut fast = Receiver::start().await;
    let app = TestApp::fresh_configured(|core, _| {
        core.webhooks.retry_schedule = schedule("none");
        core.webhooks.timeout = Duration::from_secs(5);
        core.webhooks.concurrency = 4;
        core.webhooks.concurrency_per_account = 2;
    })
    .await;
    let hanging_key = app
        .account_with_webhook("hanging", Some(&hanging.url()))
        .await;
    let fast_key = app.account_with_webhook("fast", Some(&fast.url())).await;
    for i in 0..6 {
        submit_and_complete(&app, "hanging", &hanging_key, &format!("slow {i}")).await;
    }
    hanging.next().await;
    hanging.next().await;
    // Time enough for the worker to start more attempts, were it to.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        hanging.already_received().is_empty(),
        "the hanging account has more than its share of attempts in flight"
    );

    let submitted = submit_and_complete(&app, "fast", &fast_key, "quick").await;

    let received = tokio::time::timeout(Duration::from_secs(1), fast.next())
        .await
        .expect("the other account's webhook arrives within a second");
    assert_eq!(received.json()["request_id"], submitted.to_string());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let mut receiver = Receiver::start().await;
    receiver.script([Reply::Redirect("/elsewhere")]);
    let app = start_fresh("none").await;
    let key = app
        .account_with_webhook("acme", Some(&receiver.url()))
        .await;
    submit_and_complete(&app, "acme", &key, "go away").await;
    assert_eq!(receiver.next().await.path, "/hook");
    let core = stop(app).await;
    assert!(receiver.already_received().is_empty(), "redirect followed");
    let view = only_delivery(&core, "acme").await;
    assert_eq!(view.delivery.status, DeliveryStatus::Failed);
    assert_eq!(status_codes(&view), [Some(302)]);
    let error = view.attempts[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("redirects are not followed"), "{error}");
}

#[tokio::test]
async fn account_without_webhook_url_has_no_deliveries() {
    let app = TestApp::fresh().await;
    let key = app.account("quiet").await;
    let done = submit(&app, &key, "answer me").await;
    let failed = submit(&app, &key, "fail me").await;
    let core = app.core();
    let account = core.account_id("quiet").await;
    core.complete(account, done, "ok".into(), "chatgpt-q".into(), None)
        .await
        .expect("complete");
    core.fail(account, failed, "no".into()).await.expect("fail");
    // The delivery would have been written in the same transaction.
    assert!(core.deliveries("quiet").await.is_empty());
    app.stop().await;
}

/// Results that reach the core at once are applied in one transaction with
/// set-based statements; each must still come out as if applied alone, in
/// order: the first result for a request wins, a later one and one for an
/// unknown request are refused, two new chats answered in one conversation
/// become one chat, and every finished request gets exactly one webhook.
#[tokio::test]
async fn results_arriving_together_are_applied_as_if_one_by_one() {
    let mut receiver = Receiver::start().await;
    let app = TestApp::fresh().await;
    let key = app
        .account_with_webhook("acme", Some(&receiver.url()))
        .await;
    let core = app.core();
    let account = core.account_id("acme").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(submit(&app, &key, &format!("message {i}")).await);
    }
    let unknown = Uuid::now_v7();
    let done = |id: Uuid, chat: &str, title: Option<&str>| {
        core.complete(
            account,
            id,
            format!("answer {id}"),
            chat.into(),
            title.map(Into::into),
        )
    };
    // join_all polls in order, so the outcomes queue in this order and
    // gather into the writer's batches.
    let answers = futures::future::join_all([
        Box::pin(done(ids[0], "conv-x", Some("X")))
            as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>,
        Box::pin(done(ids[1], "conv-x", None)),
        Box::pin(core.fail(account, ids[0], "late".into())),
        Box::pin(done(unknown, "conv-z", None)),
        Box::pin(core.fail(account, ids[2], "boom".into())),
        Box::pin(done(ids[3], "conv-y", Some("Y"))),
    ])
    .await;
    let [first, second, late, stranger, failed, fourth] =
        <[_; 6]>::try_from(answers).expect("six answers");
    let first = first.expect("first result applies");
    let second = second.expect("second result applies");
    assert_eq!(first.status, RequestStatus::Done);
    assert_eq!(
        second.chat_id, first.chat_id,
        "both answered in conv-x: one chat"
    );
    let late = late.expect_err("a second result for a request is refused");
    assert!(late.to_string().contains("already done"), "{late}");
    let stranger = stranger.expect_err("unknown request");
    assert!(
        stranger.to_string().contains("unknown request_id"),
        "{stranger}"
    );
    assert_eq!(
        failed.expect("failure applies").status,
        RequestStatus::Failed
    );
    let fourth = fourth.expect("fourth result applies");
    core.wake_webhooks();

    // What clients see.
    let view = |id: Uuid| {
        let path = format!("/api/chat/requests/{id}/");
        let (app, key) = (&app, &key);
        async move { app.get(key, &path).await }
    };
    let (_, r0) = view(ids[0]).await;
    assert_eq!(
        (r0["status"].as_str(), r0["chat"].as_str()),
        (Some("done"), Some("conv-x"))
    );
    assert_eq!(r0["response"], format!("answer {}", ids[0]));
    let (_, r1) = view(ids[1]).await;
    assert_eq!(r1["chat"], "conv-x");
    let (_, r2) = view(ids[2]).await;
    assert_eq!(
        (r2["status"].as_str(), r2["error_message"].as_str()),
        (Some("failed"), Some("boom"))
    );
    let (_, r3) = view(ids[3]).await;
    assert_eq!(r3["chat"], "conv-y");
    let (_, x) = app.get(&key, "/api/chat/chats/conv-x/").await;
    assert_eq!(
        (x["id"].as_i64(), x["title"].as_str()),
        (Some(first.chat_id), Some("X"))
    );
    let (_, y) = app.get(&key, "/api/chat/chats/conv-y/").await;
    assert_eq!(
        (y["id"].as_i64(), y["title"].as_str()),
        (Some(fourth.chat_id), Some("Y"))
    );

    // One webhook per finished request, with its own outcome.
    let mut hooks = std::collections::HashMap::new();
    for _ in 0..4 {
        let body = receiver.next().await.json();
        hooks.insert(
            body["request_id"].as_str().expect("request_id").to_string(),
            body,
        );
    }
    for (id, status) in ids.iter().zip(["done", "done", "failed", "done"]) {
        assert_eq!(hooks[&id.to_string()]["status"], status, "{hooks:#?}");
    }
    let core = stop(app).await;
    assert_eq!(core.deliveries("acme").await.len(), 4);
    assert!(
        receiver.already_received().is_empty(),
        "a webhook sent twice"
    );
}

#[tokio::test]
async fn cores_sharing_one_postgres_outbox_never_send_twice() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        return; // SQLite is one core per database file
    }
    let mut receiver = Receiver::start().await;
    let first = TestApp::start(&db).await;
    let second = TestApp::start(&db).await;
    let key = first
        .account_with_webhook("acme", Some(&receiver.url()))
        .await;
    const N: usize = 12;
    for i in 0..N {
        let app = if i % 2 == 0 { &first } else { &second };
        submit_and_complete(app, "acme", &key, &format!("message {i}")).await;
    }
    let mut ids = HashSet::new();
    for _ in 0..N {
        ids.insert(receiver.next().await.delivery_id());
    }
    assert_eq!(ids.len(), N);
    let core = stop(first).await;
    stop(second).await;
    assert!(
        receiver.already_received().is_empty(),
        "a webhook sent twice"
    );
    let all = core.deliveries("acme").await;
    assert_eq!(all.len(), N);
    for view in all {
        assert_eq!(view.delivery.status, DeliveryStatus::Succeeded);
        assert_eq!(view.delivery.attempts, 1, "{view:#?}");
    }
}

#[tokio::test]
async fn webhook_cli_lists_deliveries_and_retries_a_failed_one() {
    let db = TestDb::new().await;
    let mut receiver = Receiver::start().await;
    receiver.script([Reply::Status(410)]);
    let app = start(&db, "none").await;
    let key = app
        .account_with_webhook("acme", Some(&receiver.url()))
        .await;
    submit_and_complete(&app, "acme", &key, "gone").await;
    let webhook_id = receiver.next().await.webhook_id();
    let _ = stop(app).await;

    let (ok, listed) = chatrelay(&db, &["webhook", "list", "--account", "acme"]).await;
    assert!(ok, "{listed}");
    assert!(listed.contains(&webhook_id), "{listed}");
    assert!(listed.contains("failed"), "{listed}");
    assert!(listed.contains("#1"), "{listed}");
    assert!(listed.contains("HTTP 410 Gone"), "{listed}");

    let (ok, out) = chatrelay(&db, &["webhook", "retry", &webhook_id]).await;
    assert!(ok, "{out}");
    let (ok, out) = chatrelay(&db, &["webhook", "retry", &webhook_id]).await;
    assert!(!ok, "retrying a pending delivery: {out}");
    let (ok, out) = chatrelay(&db, &["webhook", "retry", "not-a-uuid"]).await;
    assert!(!ok, "{out}");

    let app = start(&db, "none").await;
    assert_eq!(receiver.next().await.webhook_id(), webhook_id);
    let _ = stop(app).await;
    let (ok, listed) = chatrelay(&db, &["webhook", "list"]).await;
    assert!(ok, "{listed}");
    assert!(listed.contains("succeeded"), "{listed}");
    assert!(listed.contains("#2"), "{listed}");
}

/// Runs the real `chatrelay` binary on the test's database: (succeeded,
/// stdout and stderr).
async fn chatrelay(db: &TestDb, args: &[&str]) -> (bool, String) {
    let (ok, stdout, stderr) = common::process::run(db, args).await;
    (ok, format!("{}\n{stderr}", stdout.join("\n")))
}

// ---- where a webhook may go ------------------------------------------------------

#[tokio::test]
async fn cli_refuses_private_webhook_urls_unless_allowed() {
    let db = TestDb::new().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
    ] {
        let output = common::process::chatrelay(&db)
            .env_remove("CHATRELAY_ALLOW_PRIVATE_WEBHOOK_URLS")
            .args(["account", "create", "--name", "acme", "--webhook-url", url])
            .output()
            .await
            .expect("run chatrelay");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url} was accepted");
        assert!(stderr.contains("refused"), "{url}: {stderr}");
    }
    let (ok, _) = chatrelay(&db, &["account", "create", "--name", "acme"]).await;
    assert!(ok);
    let output = common::process::chatrelay(&db)
        .env_remove("CHATRELAY_ALLOW_PRIVATE_WEBHOOK_URLS")
        .args(["account", "set-webhook", "--name", "acme"])
        .args(["--url", "http://127.0.0.1:9/hook"])
        .output()
        .await
        .expect("run chatrelay");
    assert!(!output.status.success(), "set-webhook accepted loopback");

    let output = common::process::chatrelay(&db)
        .env_remove("CHATRELAY_ALLOW_PRIVATE_WEBHOOK_URLS")
        .args(["account", "set-webhook", "--name", "acme"])
        .args([
            "--url",
            "http://127.0.0.1:9/hook",
            "--allow-private-webhook-urls",
        ])
        .output()
        .await
        .expect("run chatrelay");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn private_webhook_url_is_not_sent_to_once_no_longer_allowed() {
    let db = TestDb::new().await;
    let mut by_name = Receiver::start().await;
    let mut by_address = Receiver::start().await;
    let app = start(&db, "none").await;
    let localhost = format!("http://localhost:{}/hook", by_name.addr.port());
    let key_by_name = app.account_with_webhook("by-name", Some(&localhost)).await;
    let key_by_address = app
        .account_with_webhook("by-address", Some(&by_address.url()))
        .await;
    app.stop().await;

    // As if the URLs had been set when they resolved elsewhere.
    let app = TestApp::start_with(&db, |core, _| {
        core.webhooks.retry_schedule = schedule("none");
        core.webhooks.allow_private_urls = false;
    })
    .await;
    submit_and_complete(&app, "by-name", &key_by_name, "one").await;
    submit_and_complete(&app, "by-address", &key_by_address, "two").await;
    let core = app.core();
    for account in ["by-name", "by-address"] {
        let deadline = tokio::time::Instant::now() + WAIT;
        let view = loop {
            let view = only_delivery(&core, account).await;
            if view.delivery.status != DeliveryStatus::Pending {
                break view;
            }
            assert!(tokio::time::Instant::now() < deadline, "{view:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(view.delivery.status, DeliveryStatus::Failed);
        let error = view.attempts[0].error.clone().unwrap_or_default();
        assert!(error.contains("loopback"), "{account}: {error}");
    }
    stop(app).await;
    assert!(by_name.already_received().is_empty(), "sent to localhost");
    assert!(
        by_address.already_received().is_empty(),
        "sent to 127.0.0.1"
    );
}

#[tokio::test]
async fn webhook_url_secrets_are_never_recorded() {
    let mut receiver = Receiver::start().await;
    let mut dead = DeadReceiver::start().await;
    let app = start_fresh("none").await;
    let with_token = format!("http://user:pa55word@{}/hook?token=s3cret", receiver.addr);
    let key = app.account_with_webhook("acme", Some(&with_token)).await;
    let dead_with_token = format!("http://user:pa55word@{}/hook?token=s3cret", dead.addr);
    let dead_key = app
        .account_with_webhook("dead", Some(&dead_with_token))
        .await;

    submit_and_complete(&app, "acme", &key, "hello").await;
    assert_eq!(receiver.next().await.path, "/hook");
    submit_and_complete(&app, "dead", &dead_key, "hello").await;
    dead.next_connection().await;
    let core = stop(app).await;

    let delivered = only_delivery(&core, "acme").await;
    assert_eq!(delivered.delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(
        delivered.delivery.url,
        format!("http://{}/hook", receiver.addr)
    );
    let failed = only_delivery(&core, "dead").await;
    assert_eq!(failed.delivery.status, DeliveryStatus::Failed);
    let recorded = format!("{failed:?} {delivered:?}");
    for secret in ["s3cret", "pa55word", "user"] {
        assert!(!recorded.contains(secret), "{secret} recorded: {recorded}");
    }
}
