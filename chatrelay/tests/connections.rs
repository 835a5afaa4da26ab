//! The listeners' connections: TLS on the core's gRPC listener (and an
//! edge that reaches it over `https://`), keepalive that drops a silent
//! peer, and the connection caps of both listeners. Real sockets only.

mod common;

use std::{path::PathBuf, time::Duration};

use chatrelay_edge::{EdgeConfig, EdgeState};
use common::{core::LoneCore, TestApp, TestDb};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// A certificate authority and a certificate it signed for `localhost` and
/// `127.0.0.1`, as PEM files in a directory of their own.
struct TlsFiles {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn tls_files() -> TlsFiles {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "chatrelay test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("certificate params");
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let files = TlsFiles {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
        _dir: dir,
    };
    std::fs::write(&files.ca, ca.pem()).expect("write CA");
    std::fs::write(&files.cert, cert.pem()).expect("write certificate");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key");
    files
}

/// A separate edge for the core at `core_url`: its base URL, and what stops it.
async fn edge(
    core_url: &str,
    configure: impl FnOnce(&mut EdgeConfig),
) -> (String, CancellationToken) {
    let mut config = EdgeConfig::for_core(core_url);
    configure(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let state = EdgeState::new(config).expect("edge state");
    let stop = CancellationToken::new();
    tokio::spawn(chatrelay_edge::serve(state, listener, stop.clone()));
    (base, stop)
}

async fn submit_status(base: &str, key: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/api/chat/submit/"))
        .header("X-API-Key", key)
        .json(&json!({ "message": "over TLS" }))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("submit")
        .status()
}

#[tokio::test]
async fn grpc_over_tls_serves_an_edge_that_trusts_its_ca() {
    let tls = tls_files();
    let db = TestDb::new().await;
    let (cert, key) = (tls.cert.clone(), tls.key.clone());
    let core = LoneCore::start_with(&db, |config| {
        config.grpc_listener.grpc_tls_cert = Some(cert);
        config.grpc_listener.grpc_tls_key = Some(key);
    })
    .await;
    assert!(core.url.starts_with("https://"), "{}", core.url);
    let api_key = core.core.create_account("acme", None).await;

    let ca = tls.ca.clone();
    let (trusting, stop_trusting) = edge(&core.url, |config| config.core_ca_cert = Some(ca)).await;
    assert_eq!(submit_status(&trusting, &api_key).await, 201);

    // Without the CA (the public roots only), the certificate is refused.
    let (untrusting, stop_untrusting) = edge(&core.url, |_| {}).await;
    assert_eq!(submit_status(&untrusting, &api_key).await, 503);
    // Plain HTTP/2 to the TLS listener gets nowhere either.
    let plain_url = core.url.replace("https://", "http://");
    let (plain, stop_plain) = edge(&plain_url, |_| {}).await;
    let status = submit_status(&plain, &api_key).await;
    assert!(status.is_server_error(), "{status}");

    for stop in [stop_trusting, stop_untrusting, stop_plain] {
        stop.cancel();
    }
    core.stop().await;
}

#[tokio::test]
async fn grpc_listener_drops_a_peer_that_stops_answering_pings() {
    let db = TestDb::new().await;
    let core = LoneCore::start_with(&db, |config| {
        config.grpc_listener.grpc_keepalive_secs = 1;
    })
    .await;
    let addr = core.url.trim_start_matches("http://").to_string();
    let mut peer = TcpStream::connect(&addr).await.expect("connect");
    // An HTTP/2 client's preface and empty SETTINGS, then silence: the
    // server's pings are never acknowledged (as from a host that is gone).
    peer.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    peer.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .expect("settings");

    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        loop {
            match peer.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;

    assert!(
        closed.is_ok(),
        "a silent peer was still connected after 10 s"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "dropped before any ping could go unanswered: {:?}",
        started.elapsed()
    );
    core.stop().await;
}

/// A gRPC health check on a fresh connection, within `limit`.
async fn grpc_health_within(url: &str, limit: Duration) -> bool {
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .expect("endpoint")
            .connect()
            .await
            .ok()?;
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .ok()
    };
    matches!(tokio::time::timeout(limit, check).await, Ok(Some(_)))
}

#[tokio::test]
async fn grpc_connection_cap_holds_further_connections_until_one_closes() {
    let db = TestDb::new().await;
    let core = LoneCore::start_with(&db, |config| {
        config.grpc_listener.grpc_max_connections = 1;
    })
    .await;
    assert!(grpc_health_within(&core.url, Duration::from_secs(5)).await);
    let addr = core.url.trim_start_matches("http://").to_string();
    let holder = TcpStream::connect(&addr).await.expect("connect");
    // Let the listener accept it.
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert!(
        !grpc_health_within(&core.url, Duration::from_millis(700)).await,
        "a second connection was served past the cap of one"
    );

    drop(holder);
    assert!(
        grpc_health_within(&core.url, Duration::from_secs(5)).await,
        "the cap's slot was not given back when the connection closed"
    );
    core.stop().await;
}

async fn healthz_within(base: &str, limit: Duration) -> bool {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    matches!(
        client
            .get(format!("{base}/healthz"))
            .timeout(limit)
            .send()
            .await,
        Ok(response) if response.status() == 200
    )
}

#[tokio::test]
async fn http_connection_cap_holds_further_connections_until_one_closes() {
    let app = TestApp::fresh_configured(|_, edge| edge.http_max_connections = 1).await;
    assert!(healthz_within(&app.http, Duration::from_secs(5)).await);
    // The client's connection closes after the response; let the edge see it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let holder = TcpStream::connect(app.http.trim_start_matches("http://"))
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert!(
        !healthz_within(&app.http, Duration::from_millis(700)).await,
        "a second connection was served past the cap of one"
    );

    drop(holder);
    assert!(
        healthz_within(&app.http, Duration::from_secs(5)).await,
        "the cap's slot was not given back when the connection closed"
    );
    app.stop().await;
}

/// A "core" that accepts HTTP/2, reads whatever the edge sends and never
/// answers anything, pings included: a host gone silent without a FIN.
async fn silent_core() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The server's SETTINGS, so the client goes ahead; then silence.
                let _ = stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn edge_gives_up_on_a_core_that_stops_answering_pings() {
    let core_url = silent_core().await;
    let (edge_url, stop) = edge(&core_url, |config| {
        config.core_keepalive_secs = 1;
        config.http_request_timeout_secs = 30;
    })
    .await;

    let started = std::time::Instant::now();
    let status = submit_status(&edge_url, "cr_any").await;

    assert_eq!(status, 503, "after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the dead core was noticed only after {:?}",
        started.elapsed()
    );
    stop.cancel();
}

#[tokio::test]
async fn unary_grpc_call_is_cut_off_after_the_request_timeout() {
    let db = TestDb::new().await;
    let core = LoneCore::start_with(&db, |config| {
        config.grpc_listener.grpc_request_timeout_secs = 1;
    })
    .await;
    let key = core.core.create_account("acme", None).await;
    let held = core.core.hold_writes().await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(8)).await;
        drop(held);
    });
    let channel = tonic::transport::Endpoint::from_shared(core.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = chatrelay_proto::v1::chat_service_client::ChatServiceClient::new(channel);
    let mut request = tonic::Request::new(chatrelay_proto::v1::SubmitMessageRequest {
        message: "stuck behind a held write".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("metadata"));

    let started = std::time::Instant::now();
    let answer = client.submit_message(request).await;

    let status = answer.expect_err("the held submit was answered");
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off only after {:?}",
        started.elapsed()
    );
    release.abort();
    core.stop().await;
}

#[tokio::test]
async fn rest_call_is_cut_off_after_the_request_timeout_with_a_json_504() {
    let app = TestApp::fresh_configured(|_, edge| edge.http_request_timeout_secs = 1).await;
    let key = app.account("acme").await;
    let held = app.core().hold_writes().await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(8)).await;
        drop(held);
    });

    let started = std::time::Instant::now();
    let (status, body) = app.submit(&key, json!({ "message": "stuck" })).await;

    assert_eq!(status, 504, "{body}");
    assert!(body["detail"].as_str().is_some(), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    release.abort();
    app.stop().await;
}
