//! The web console: one page, served at `/` and `/console/`, that signs in
//! with an API key and shows the account's queue live (the files are in the
//! repository's `console/` folder). Its files are compiled into the binary,
//! so the page needs no CDN, no file on disk and no internet.
//!
//! Every answer carries a Content-Security-Policy that allows only this
//! origin's own scripts, styles and API calls — no inline script or style,
//! no frame, no form submission — and requires Trusted Types, so the page
//! cannot turn a string into HTML at all. Answers are revalidated on every
//! use (`Cache-Control: no-cache` with an `ETag` of the content's SHA-256):
//! after an upgrade the browser never runs yesterday's script against
//! today's API, and an unchanged file costs a `304`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Body,
    extract::{Path, State},
    http::{
        header::{
            CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
            REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
        },
        HeaderMap, HeaderValue, StatusCode,
    },
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use sha2::{Digest, Sha256};

use crate::ApiError;

/// The policy of every console answer.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
trusted-types 'none'";

/// One file of the console, by the name it is served under.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        (
            $name,
            $content_type,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../console/", $name)) as &[u8],
        )
    };
}

/// Every file the page uses (a test checks that each file in `console/` is
/// listed here and that the page names no other).
const ASSETS: [(&str, &str, &[u8]); 16] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("chats.js", "text/javascript; charset=utf-8"),
    asset!("counts.js", "text/javascript; charset=utf-8"),
    asset!("detail.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("format.js", "text/javascript; charset=utf-8"),
    asset!("markdown.js", "text/javascript; charset=utf-8"),
    asset!("requests.js", "text/javascript; charset=utf-8"),
    asset!("sessions.js", "text/javascript; charset=utf-8"),
    asset!("stream.js", "text/javascript; charset=utf-8"),
    asset!("submit.js", "text/javascript; charset=utf-8"),
    asset!("webhooks.js", "text/javascript; charset=utf-8"),
];

/// The page itself.
const INDEX: &str = "index.html";

/// A file ready to serve: its bytes, type and entity tag.
struct Asset {
    bytes: &'static [u8],
    content_type: HeaderValue,
    etag: HeaderValue,
}

/// The console's files by name, with their tags computed once.
#[derive(Clone)]
struct Assets(Arc<HashMap<&'static str, Asset>>);

impl Assets {
    fn new() -> Self {
        let files = ASSETS
            .iter()
            .map(|&(name, content_type, bytes)| {
                let digest = Sha256::digest(bytes);
                let etag = format!("\"{}\"", hex::encode(&digest[..16]));
                let asset = Asset {
                    bytes,
                    content_type: HeaderValue::from_static(content_type),
                    etag: HeaderValue::from_str(&etag).expect("a hex tag is a header value"),
                };
                (name, asset)
            })
            .collect();
        Self(Arc::new(files))
    }

    /// The file `name` with the console's headers; `304` when the client's
    /// copy (`If-None-Match`) is this one; the API's JSON 404 for a name
    /// the console does not have.
    fn answer(&self, name: &str, request: &HeaderMap) -> Response {
        let Some(asset) = self.0.get(name) else {
            return ApiError::not_found("not found").into_response();
        };
        let fresh = request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| tag.trim() == asset.etag || tag.trim() == "*");
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            Body::from(asset.bytes).into_response()
        };
        let headers = response.headers_mut();
        if !fresh {
            headers.insert(CONTENT_TYPE, asset.content_type.clone());
        }
        headers.insert(ETAG, asset.etag.clone());
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
        );
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        response
    }
}

/// `GET /`, `/console`, `/console/` (the page) and `/console/{file}`.
pub fn router() -> Router {
    let page = get(
        |State(assets): State<Assets>, headers: HeaderMap| async move { assets.answer(INDEX, &headers) },
    );
    Router::new()
        .route("/", page.clone())
        .route("/console", page.clone())
        .route("/console/", page)
        .route(
            "/console/{file}",
            get(
                |State(assets): State<Assets>, Path(file): Path<String>, headers: HeaderMap| async move {
                    assets.answer(&file, &headers)
                },
            ),
        )
        .with_state(Assets::new())
}
