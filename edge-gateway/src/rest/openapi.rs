//! The API description: an OpenAPI 3.1 document derived from the handlers'
//! `#[utoipa::path]` annotations and the JSON types they really use, so it
//! cannot drift from the code. Served at `/api/openapi.json`, with an
//! interactive page at `/api/docs/` whose Swagger UI files are compiled into
//! the binary: the page works on a network with no internet.

use std::{borrow::Cow, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{
        header::{CONTENT_ENCODING, CONTENT_TYPE},
        HeaderValue, StatusCode,
    },
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, SecurityScheme},
    Modify, OpenApi,
};
use utoipa_swagger_ui::Config;

use crate::ApiError;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";
/// Where the interactive page is served.
pub const DOCS_PATH: &str = "/api/docs/";

/// The name of the security scheme every `/api/chat/` operation requires.
pub const API_KEY_SCHEME: &str = "api_key";

const DESCRIPTION: &str = "\
Use ChatGPT's web UI as an API. A client submits a message; chatrelay queues it \
and hands it to the account's browser extension, which runs it in ChatGPT and \
reports the answer. The client long-polls the request (`?wait=`), follows \
the account's requests as Server-Sent Events (`/api/chat/events/`) or \
receives a webhook.

Every `/api/chat/` endpoint needs the account's API key in the `X-API-Key` \
header (the event stream also takes it as `?api_key=`, for browsers' \
`EventSource`). Every error is JSON `{\"detail\": \"...\"}`. Every path also answers \
without its trailing slash; a wrong method answers 405. Lists are JSON \
arrays, newest first: when there is a next page, its cursor is in the \
`X-Next-Cursor` response header, to be passed back as `cursor`. Every \
response carries an `X-Request-Id` header (the caller's own, if it sent one).

The browser extension connects over WebSocket at \
`/ws/extension/?api_key=KEY`. OpenAPI cannot describe a WebSocket; its frames \
are documented in the README.";

#[derive(OpenApi)]
#[openapi(
    info(title = "chatrelay", description = DESCRIPTION),
    paths(
        super::requests::submit,
        super::requests::get,
        super::requests::list,
        super::requests::cancel,
        super::counts::counts,
        super::events::stream,
        super::chats::list,
        super::chats::get,
        super::sessions::list,
        super::webhooks::list,
        super::webhooks::retry,
        crate::health::alive,
        crate::health::ready,
    ),
    modifiers(&ApiKeyScheme),
    security(("api_key" = [])),
    tags(
        (name = "requests", description = "Message requests: submit one, follow it, list them."),
        (name = "chats", description = "The ChatGPT conversations requests run in."),
        (name = "sessions", description = "The browser-extension sessions that run the requests."),
        (name = "webhooks", description = "The webhooks sent for finished requests: see them, send one again."),
        (name = "health", description = "Liveness and readiness probes; no API key."),
    ),
)]
struct ApiDoc;

/// Declares the `X-API-Key` header scheme the operations refer to.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The account's API key (`chatrelay account create` prints it).",
            ))),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON: what is served, what `chatrelay openapi`
/// prints and what is checked in as `edge-gateway/openapi.json`.
pub fn document_json() -> String {
    document()
        .to_pretty_json()
        .expect("an OpenAPI document always serializes")
}

/// `GET /api/openapi.json` and the page at `/api/docs/`. Neither needs an
/// API key. The document is rendered once, here, not per request.
/// With `docs` false (`--no-docs`), only the OpenAPI document is served.
pub fn router(docs: bool) -> Router {
    let json = Bytes::from(document_json());
    let document = Router::new().route(
        OPENAPI_PATH,
        get(move || async move { ([(CONTENT_TYPE, "application/json")], json) }),
    );
    if !docs {
        return document;
    }
    // The default validator is swagger.io's online one: no calls out.
    let config = Arc::new(Config::new([OPENAPI_PATH]).validator_url("none"));
    let ui = Router::new()
        .route(
            DOCS_PATH.trim_end_matches('/'),
            get(|| async { Redirect::permanent(DOCS_PATH) }),
        )
        .route(DOCS_PATH, get(docs_file))
        .route(&format!("{DOCS_PATH}{{*file}}"), get(docs_file))
        .with_state(config);
    document.merge(ui)
}

/// A file of the Swagger UI distribution compiled into the binary;
/// `swagger-initializer.js` is filled in with `config`.
async fn docs_file(
    State(config): State<Arc<Config<'static>>>,
    file: Option<Path<String>>,
) -> Result<Response, ApiError> {
    let name = file.map(|Path(name)| name).unwrap_or_default();
    let found = utoipa_swagger_ui::serve(&name, config)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("docs page: {e}")))?;
    let file = found.ok_or_else(|| ApiError::not_found("not found"))?;
    let bytes = match file.bytes {
        Cow::Borrowed(bytes) => Bytes::from_static(bytes),
        Cow::Owned(bytes) => Bytes::from(bytes),
    };
    let mut response = ([(CONTENT_TYPE, file.content_type)], bytes).into_response();
    if file.gzpipped {
        response
            .headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}
