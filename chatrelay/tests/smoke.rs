mod common;

use common::{TestApp, TestDb};

#[tokio::test]
async fn submit_then_get_round_trips() {
    let db = TestDb::new().await;
    let app = TestApp::start(&db).await;
    let key = app.account("acme").await;
    let created = app.submit_message(&key, "hello").await;
    let id = created["id"].as_str().unwrap();
    let (status, got) = app.get(&key, &format!("/api/chat/requests/{id}/")).await;
    assert_eq!(status, 200);
    assert_eq!(got, created);
    app.stop().await;
}
