//! The core's gRPC API driven directly, as internal services use it:
//! `chatrelay.v1.ChatService` with `x-api-key` metadata, the standard health
//! service and server reflection.

mod common;

use chatrelay_proto::v1::{self as pb, chat_service_client::ChatServiceClient};
use common::TestApp;
use tonic::{transport::Channel, Code, Request};

async fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(app.grpc.clone())
        .expect("gRPC URL")
        .connect()
        .await
        .expect("connect to the core")
}

async fn chat_client(app: &TestApp) -> ChatServiceClient<Channel> {
    ChatServiceClient::new(channel(app).await)
}

fn with_key<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("ASCII key"));
    request
}

fn submission(message: &str) -> pb::SubmitMessageRequest {
    pb::SubmitMessageRequest {
        message: message.to_string(),
        ..Default::default()
    }
}

// ---- ChatService ------------------------------------------------------------------

#[tokio::test]
async fn grpc_submit_get_and_list_round_trip() {
    let (app, key) = TestApp::with_account().await;
    let mut client = chat_client(&app).await;

    let created = client
        .submit_message(with_key(
            &key,
            pb::SubmitMessageRequest {
                message: "over gRPC".into(),
                response_type: pb::ResponseType::Thinking.into(),
                thinking_time: pb::ThinkingTime::Extended.into(),
                chat_id: Some("chatgpt-grpc".into()),
            },
        ))
        .await
        .expect("submit")
        .into_inner();
    uuid::Uuid::parse_str(&created.id).expect("id is a UUID");
    assert_eq!(created.message, "over gRPC");
    assert_eq!(created.response_type(), pb::ResponseType::Thinking);
    assert_eq!(created.thinking_time(), pb::ThinkingTime::Extended);
    assert_eq!(created.status(), pb::RequestStatus::Idle);
    assert_eq!(created.chat.as_deref(), Some("chatgpt-grpc"));
    assert!(created.queued_at.is_some());
    assert_eq!(created.started_at, None);
    assert_eq!(created.completed_at, None);
    assert_eq!(created.response, None);
    assert_eq!(created.error_message, None);

    let got = client
        .get_request(with_key(
            &key,
            pb::GetRequestRequest {
                id: created.id.clone(),
                wait: None,
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, created);

    let listed = client
        .list_requests(with_key(&key, pb::ListRequestsRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.requests, std::slice::from_ref(&created));
    assert_eq!(listed.next_cursor, "");

    let chats = client
        .list_chats(with_key(&key, pb::ListChatsRequest::default()))
        .await
        .expect("list chats")
        .into_inner();
    assert_eq!(chats.chats.len(), 1);
    assert_eq!(chats.chats[0].id, created.chat_db_id);
    assert_eq!(chats.chats[0].chat_id.as_deref(), Some("chatgpt-grpc"));
    assert_eq!(chats.chats[0].title, None);

    let chat = client
        .get_chat(with_key(
            &key,
            pb::GetChatRequest {
                chat_id: "chatgpt-grpc".into(),
            },
        ))
        .await
        .expect("get chat")
        .into_inner();
    assert_eq!(chat, chats.chats[0]);
    app.stop().await;
}

#[tokio::test]
async fn grpc_unspecified_enums_become_auto_and_standard() {
    let (app, key) = TestApp::with_account().await;
    let mut client = chat_client(&app).await;

    let created = client
        .submit_message(with_key(&key, submission("defaults")))
        .await
        .expect("submit")
        .into_inner();

    assert_eq!(created.response_type(), pb::ResponseType::Auto);
    assert_eq!(created.thinking_time(), pb::ThinkingTime::Standard);
    assert_eq!(created.chat, None);
    assert!(created.chat_db_id > 0);
    app.stop().await;
}

#[tokio::test]
async fn grpc_list_requests_filters_by_status_and_pages() {
    let (app, key) = TestApp::with_account().await;
    let mut client = chat_client(&app).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let created = client
            .submit_message(with_key(&key, submission(&format!("m{n}"))))
            .await
            .expect("submit")
            .into_inner();
        ids.push(created.id);
    }
    ids.reverse();

    let page = |status: pb::RequestStatus, limit: u32, cursor: String| pb::ListRequestsRequest {
        status: status.into(),
        limit,
        cursor,
        chat: None,
    };
    let first = client
        .list_requests(with_key(
            &key,
            page(pb::RequestStatus::Idle, 2, String::new()),
        ))
        .await
        .expect("first page")
        .into_inner();
    let first_ids: Vec<&str> = first.requests.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(first_ids, [ids[0].as_str(), ids[1].as_str()]);
    assert_ne!(first.next_cursor, "");
    let second = client
        .list_requests(with_key(
            &key,
            page(pb::RequestStatus::Idle, 2, first.next_cursor),
        ))
        .await
        .expect("second page")
        .into_inner();
    let second_ids: Vec<&str> = second.requests.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(second_ids, [ids[2].as_str()]);
    assert_eq!(second.next_cursor, "");

    let done = client
        .list_requests(with_key(
            &key,
            page(pb::RequestStatus::Done, 0, String::new()),
        ))
        .await
        .expect("done")
        .into_inner();
    assert!(done.requests.is_empty());

    let status = client
        .list_requests(with_key(
            &key,
            pb::ListRequestsRequest {
                status: 99,
                ..Default::default()
            },
        ))
        .await
        .expect_err("unknown status value");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("status"), "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn grpc_without_api_key_is_unauthenticated() {
    let (app, _key) = TestApp::with_account().await;
    let mut client = chat_client(&app).await;

    let status = client
        .submit_message(Request::new(submission("hi")))
        .await
        .expect_err("submit without key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .list_requests(Request::new(pb::ListRequestsRequest::default()))
        .await
        .expect_err("list without key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .list_chats(Request::new(pb::ListChatsRequest::default()))
        .await
        .expect_err("list chats without key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn grpc_with_wrong_api_key_is_unauthenticated() {
    let (app, _key) = TestApp::with_account().await;
    let mut client = chat_client(&app).await;

    let status = client
        .get_request(with_key(
            "cr_not_a_key",
            pb::GetRequestRequest {
                id: uuid::Uuid::now_v7().to_string(),
                wait: None,
            },
        ))
        .await
        .expect_err("get with a wrong key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn grpc_another_accounts_request_is_not_found() {
    let app = TestApp::fresh().await;
    let alice = app.account("alice").await;
    let bob = app.account("bob").await;
    let mut client = chat_client(&app).await;
    let created = client
        .submit_message(with_key(
            &alice,
            pb::SubmitMessageRequest {
                message: "alice's".into(),
                chat_id: Some("chatgpt-alice".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("submit")
        .into_inner();

    let status = client
        .get_request(with_key(
            &bob,
            pb::GetRequestRequest {
                id: created.id,
                wait: None,
            },
        ))
        .await
        .expect_err("bob reads alice's request");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = client
        .get_chat(with_key(
            &bob,
            pb::GetChatRequest {
                chat_id: "chatgpt-alice".into(),
            },
        ))
        .await
        .expect_err("bob reads alice's chat");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let listed = client
        .list_requests(with_key(&bob, pb::ListRequestsRequest::default()))
        .await
        .expect("bob lists")
        .into_inner();
    assert!(listed.requests.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn grpc_unknown_or_malformed_id_is_not_found() {
    let (app, key) = TestApp::with_account().await;
    let mut client = chat_client(&app).await;

    for id in [uuid::Uuid::now_v7().to_string(), "nope".to_string()] {
        let status = client
            .get_request(with_key(&key, pb::GetRequestRequest { id, wait: None }))
            .await
            .expect_err("unknown id");
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn grpc_empty_message_is_invalid_argument() {
    let (app, key) = TestApp::with_account().await;
    let mut client = chat_client(&app).await;

    for message in ["", "   \n"] {
        let status = client
            .submit_message(with_key(&key, submission(message)))
            .await
            .expect_err("empty message");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("message"), "{status:?}");
    }
    let status = client
        .submit_message(with_key(
            &key,
            pb::SubmitMessageRequest {
                message: "m".into(),
                response_type: 42,
                ..Default::default()
            },
        ))
        .await
        .expect_err("unknown response type");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("response_type"), "{status:?}");
    let listed = client
        .list_requests(with_key(&key, pb::ListRequestsRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.requests.is_empty());
    app.stop().await;
}

// ---- health and reflection ------------------------------------------------------

#[tokio::test]
async fn health_check_reports_serving() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let app = TestApp::fresh().await;
    let mut health = HealthClient::new(channel(&app).await);

    for service in ["", "chatrelay.v1.ChatService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health check of {service:?}: {e:?}"))
            .into_inner();
        assert_eq!(
            response.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
    let status = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    app.stop().await;
}

/// The service names a reflection service lists, over v1 or v1alpha.
async fn reflected_services(app: &TestApp, v1alpha: bool) -> Vec<String> {
    use tokio_stream::StreamExt;
    let channel = channel(app).await;
    if v1alpha {
        use tonic_reflection::pb::v1alpha::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("v1alpha reflection")
            .into_inner();
        let response = responses
            .next()
            .await
            .expect("a response")
            .expect("no error");
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected reflection answer: {other:?}"),
        }
    } else {
        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("v1 reflection")
            .into_inner();
        let response = responses
            .next()
            .await
            .expect("a response")
            .expect("no error");
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected reflection answer: {other:?}"),
        }
    }
}

#[tokio::test]
async fn reflection_lists_the_chatrelay_services_over_v1_and_v1alpha() {
    let app = TestApp::fresh().await;

    for v1alpha in [false, true] {
        let services = reflected_services(&app, v1alpha).await;
        for expected in ["chatrelay.v1.ChatService", "chatrelay.v1.ExtensionService"] {
            assert!(
                services.iter().any(|s| s == expected),
                "v1alpha={v1alpha}: {expected} not in {services:?}"
            );
        }
    }
    app.stop().await;
}

/// `grpcurl … grpc.health.v1.Health/Check` needs the health service's
/// descriptors from reflection.
#[tokio::test]
async fn reflection_lists_the_health_service() {
    let app = TestApp::fresh().await;

    for v1alpha in [false, true] {
        let services = reflected_services(&app, v1alpha).await;
        assert!(
            services.iter().any(|s| s == "grpc.health.v1.Health"),
            "v1alpha={v1alpha}: grpc.health.v1.Health not in {services:?}"
        );
    }
    app.stop().await;
}
