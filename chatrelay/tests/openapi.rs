//! The API description: the served OpenAPI document is the checked-in
//! `edge-gateway/openapi.json`, it is OpenAPI 3.1 and covers every REST
//! endpoint of api-spec.md with its errors and the `X-API-Key` scheme, and the
//! page at `/api/docs/` is served, assets included, without any other host.

mod common;

use std::collections::BTreeSet;

use common::{json_of, TestApp};
use oas3::spec::{ObjectOrReference, Schema, SecurityScheme};
use reqwest::{header::CONTENT_TYPE, Method, StatusCode};
use serde_json::Value;

const CHECKED_IN: &str = include_str!("../../edge-gateway/openapi.json");
const REGENERATE: &str = "cargo run -p chatrelay -- openapi > edge-gateway/openapi.json";

/// Every REST operation: api-spec.md's four, then the chat lookup, the
/// live event stream, and the console's cancel, counts, sessions and
/// webhook deliveries.
const OPERATIONS: [(&str, &str); 11] = [
    ("POST", "/api/chat/submit/"),
    ("GET", "/api/chat/requests/{id}/"),
    ("GET", "/api/chat/requests/"),
    ("GET", "/api/chat/chats/"),
    ("GET", "/api/chat/chats/{chat_id}/"),
    ("GET", "/api/chat/events/"),
    ("POST", "/api/chat/requests/{id}/cancel/"),
    ("GET", "/api/chat/counts/"),
    ("GET", "/api/chat/sessions/"),
    ("GET", "/api/chat/webhooks/"),
    ("POST", "/api/chat/webhooks/{id}/retry/"),
];

const ERROR_SCHEMA: &str = "#/components/schemas/ErrorBody";

/// `GET /api/openapi.json`, without an API key: it needs none.
async fn served_text(app: &TestApp) -> String {
    let response = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .expect("GET /api/openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.text().await.expect("body")
}

/// JSON pointers where `a` and `b` differ (at most `max`).
fn differences(a: &Value, b: &Value, at: &str, max: usize, out: &mut Vec<String>) {
    if out.len() >= max {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (x.get(key), y.get(key)) {
                    (Some(x), Some(y)) => differences(x, y, &here, max, out),
                    _ => out.push(here),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                differences(x, y, &format!("{at}/{i}"), max, out);
            }
        }
        _ if a != b => out.push(if at.is_empty() { "/".into() } else { at.into() }),
        _ => {}
    }
}

#[tokio::test]
async fn served_document_is_the_checked_in_one() {
    let app = TestApp::fresh().await;
    let served: Value = serde_json::from_str(&served_text(&app).await).expect("served JSON");
    let checked_in: Value =
        serde_json::from_str(CHECKED_IN).expect("edge-gateway/openapi.json is JSON");
    let mut differ = Vec::new();
    differences(&served, &checked_in, "", 20, &mut differ);
    assert!(
        differ.is_empty(),
        "the served OpenAPI document differs from the checked-in edge-gateway/openapi.json \
         at {differ:?}.\nIf the API change is intended, regenerate the file from the \
         workspace root and commit it:\n    {REGENERATE}"
    );
    app.stop().await;
}

#[test]
fn openapi_subcommand_prints_the_checked_in_file() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatrelay"))
        .arg("openapi")
        .output()
        .expect("run chatrelay openapi");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        printed == CHECKED_IN,
        "`chatrelay openapi` does not print edge-gateway/openapi.json byte for byte; \
         regenerate it:\n    {REGENERATE}"
    );
}

#[tokio::test]
async fn document_is_openapi_3_1_with_every_rest_endpoint() {
    let app = TestApp::fresh().await;
    let text = served_text(&app).await;
    let spec = oas3::from_json(&text).expect("parses as an OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    spec.validate_version().expect("a 3.1.x version");

    for (method, path) in OPERATIONS {
        let method: Method = method.parse().unwrap();
        let operation = spec
            .operation(&method, path)
            .unwrap_or_else(|| panic!("{method} {path} is not documented"));
        let responses = operation.responses(&spec);
        assert!(
            responses.keys().any(|code| code.starts_with('2')),
            "{method} {path}: no success response"
        );
        assert!(responses.contains_key("401"), "{method} {path}: no 401");
    }
    let documented: BTreeSet<(String, String)> = spec
        .operations()
        .filter(|(path, _, _)| path.starts_with("/api/"))
        .map(|(path, method, _)| (method.to_string(), path))
        .collect();
    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected, "documented REST operations");

    let submit = spec.operation(&Method::POST, "/api/chat/submit/").unwrap();
    assert!(
        submit.request_body(&spec).unwrap().is_some(),
        "submit has a request body"
    );
    app.stop().await;
}

#[tokio::test]
async fn document_requires_the_api_key_scheme_on_every_rest_endpoint() {
    let spec = oas3::from_json(CHECKED_IN).expect("OpenAPI 3.1");
    let components = spec.components.as_ref().expect("components");
    match components.security_schemes.get("api_key") {
        Some(ObjectOrReference::Object(SecurityScheme::ApiKey { name, location, .. })) => {
            assert_eq!(name, "X-API-Key");
            assert_eq!(location, "header");
        }
        other => panic!("no api_key apiKey scheme: {other:?}"),
    }
    let global = spec
        .security
        .iter()
        .any(|requirement| requirement.0.contains_key("api_key"));
    for (path, method, operation) in spec.operations() {
        let required = if operation.security.is_empty() {
            global
        } else {
            operation
                .security
                .iter()
                .all(|requirement| requirement.0.contains_key("api_key"))
        };
        assert_eq!(
            required,
            path.starts_with("/api/chat/"),
            "{method} {path}: API key required = {required}"
        );
    }
}

#[tokio::test]
async fn document_error_responses_are_the_error_schema() {
    let spec = oas3::from_json(CHECKED_IN).expect("OpenAPI 3.1");
    let components = spec.components.as_ref().expect("components");
    let error = components
        .schemas
        .get("ErrorBody")
        .expect("an ErrorBody schema");
    let Schema::Object(error) = error else {
        panic!("ErrorBody is not an object schema");
    };
    let ObjectOrReference::Object(error) = error.as_ref() else {
        panic!("ErrorBody is a reference");
    };
    assert_eq!(error.required, ["detail"]);
    assert!(error.properties.contains_key("detail"));

    let mut errors = 0;
    for (path, method, operation) in spec.operations() {
        for (code, response) in operation.responses(&spec) {
            if !(code.starts_with('4') || code.starts_with('5')) {
                continue;
            }
            errors += 1;
            let schema = response
                .content
                .get("application/json")
                .and_then(|media| media.schema.as_ref())
                .unwrap_or_else(|| panic!("{method} {path} {code}: no JSON body"));
            match schema {
                Schema::Object(schema) => match schema.as_ref() {
                    ObjectOrReference::Ref { ref_path, .. } => {
                        assert_eq!(ref_path, ERROR_SCHEMA, "{method} {path} {code}")
                    }
                    other => panic!("{method} {path} {code}: inline schema {other:?}"),
                },
                other => panic!("{method} {path} {code}: {other:?}"),
            }
        }
    }
    assert!(errors >= 15, "only {errors} error responses documented");
}

/// Every `$ref` in the document points at something in it.
#[test]
fn document_has_no_dangling_references() {
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let document: Value = serde_json::from_str(CHECKED_IN).expect("JSON");
    let mut targets = Vec::new();
    refs(&document, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(document.pointer(pointer).is_some(), "dangling {target}");
    }
}

/// Each documented operation is a real route: without an API key it answers
/// 401, not 404 or 405 (and so needs the key it is documented to need).
#[tokio::test]
async fn documented_paths_are_served() {
    let app = TestApp::fresh().await;
    let spec = oas3::from_json(CHECKED_IN).expect("OpenAPI 3.1");
    for (path, method, _) in spec.operations() {
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{chat_id}", "some-chat");
        let response = app
            .client
            .request(method.clone(), app.url(&concrete))
            .send()
            .await
            .expect("send");
        let expected = if path.starts_with("/api/chat/") {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(response.status(), expected, "{method} {concrete}");
    }
    app.stop().await;
}

/// The `src`/`href` attribute values of an HTML page.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attribute) {
            rest = &rest[start + attribute.len()..];
            let end = rest.find('"').expect("closing quote");
            found.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    found
}

fn assert_no_other_host(what: &str, text: &str) {
    for scheme in ["http://", "https://", "//cdn", "\"//", "'//"] {
        assert!(
            !text.contains(scheme),
            "{what} refers to another host ({scheme}):\n{text}"
        );
    }
}

#[tokio::test]
async fn docs_page_and_its_assets_are_served_by_chatrelay() {
    let app = TestApp::fresh().await;
    let base = app.url("/api/docs/");

    let page = app.client.get(&base).send().await.expect("GET /api/docs/");
    assert_eq!(page.status(), StatusCode::OK);
    let content_type = page.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = page.text().await.expect("page");
    assert_no_other_host("the docs page", &html);

    let assets = references(&html);
    let scripts: Vec<&String> = assets.iter().filter(|a| a.ends_with(".js")).collect();
    assert!(!scripts.is_empty(), "the page loads no script: {html}");
    let base_url = url::Url::parse(&base).unwrap();
    for asset in &assets {
        let url = base_url.join(asset).expect("relative reference");
        assert_eq!(
            url.origin(),
            base_url.origin(),
            "{asset} is on another host"
        );
        let response = app.client.get(url.clone()).send().await.expect("asset");
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        if asset.ends_with(".js") {
            let content_type = response.headers()[CONTENT_TYPE].to_str().unwrap();
            assert!(content_type.contains("javascript"), "{url}: {content_type}");
        }
    }

    // The script that starts Swagger UI points it at our own document and
    // turns off the online validator.
    let initializer = app
        .client
        .get(base_url.join("swagger-initializer.js").unwrap())
        .send()
        .await
        .expect("initializer");
    assert_eq!(initializer.status(), StatusCode::OK);
    let initializer = initializer.text().await.expect("initializer body");
    assert!(initializer.contains("/api/openapi.json"), "{initializer}");
    assert_no_other_host("swagger-initializer.js", &initializer);

    // Without the trailing slash: redirected to the page.
    let response = app.client.get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.url().path(), "/api/docs/");
    app.stop().await;
}

#[tokio::test]
async fn unknown_docs_asset_is_a_json_404() {
    let app = TestApp::fresh().await;
    let response = app
        .client
        .get(app.url("/api/docs/no-such-file.js"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["detail"], "not found");
    app.stop().await;
}
