//! The web console as the edge serves it: the page at `/` and `/console/`,
//! each file of `console/` with its type, the Content-Security-Policy and
//! caching headers, and the rules the page's code keeps (no inline script or
//! style, no HTML made from strings, the API key never in a URL). What the
//! page does in a browser is `browser_console.rs`.

mod common;

use std::{collections::BTreeSet, path::PathBuf};

use common::{rest::get_without_key, TestApp};
use reqwest::{
    header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH},
    StatusCode,
};

/// The policy every console answer carries.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

fn console_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .join("console")
}

/// The console's files: everything directly in `console/` (its tests and
/// screenshots are in folders of their own).
fn console_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(console_dir())
        .expect("console/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    files.sort();
    files
}

fn text_of(name: &str) -> String {
    String::from_utf8(std::fs::read(console_dir().join(name)).expect("read")).expect("UTF-8")
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.expect("GET")
}

#[tokio::test]
async fn the_page_is_served_at_the_root_and_under_console() {
    let app = TestApp::fresh().await;
    let page = text_of("index.html");
    for path in ["/", "/console", "/console/", "/console/index.html"] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(response.text().await.expect("body"), page, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_console_answer_carries_the_security_and_caching_headers() {
    let app = TestApp::fresh().await;
    for (name, _) in console_files() {
        let response = get(&app, &format!("/console/{name}")).await;
        let headers = response.headers();
        assert_eq!(headers["content-security-policy"], POLICY, "{name}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{name}");
        assert_eq!(headers["x-frame-options"], "DENY", "{name}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{name}");
        // Revalidated every time: an upgraded server is never paired with
        // yesterday's script.
        assert_eq!(headers["cache-control"], "no-cache", "{name}");
        assert!(headers.contains_key(ETAG), "{name}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_file_of_the_console_is_served_with_its_type() {
    let app = TestApp::fresh().await;
    let files = console_files();
    assert!(files.len() > 3, "{files:?}");
    for (name, bytes) in &files {
        let expected = match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("html") => "text/html; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("console/{name}: no content type for {other:?}; serve it or move it"),
        };
        let response = get(&app, &format!("/console/{name}")).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "console/{name} is not served: list it in edge-gateway/src/console.rs"
        );
        assert_eq!(response.headers()[CONTENT_TYPE], expected, "{name}");
        assert_eq!(
            &response.bytes().await.expect("body")[..],
            &bytes[..],
            "{name}"
        );
    }
    app.stop().await;
}

/// The values of `attribute="…"` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!(" {attribute}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            &rest[..rest.find('"').expect("closing quote")]
        })
        .collect()
}

#[test]
fn the_page_names_only_files_the_console_has() {
    let files: BTreeSet<String> = console_files().into_iter().map(|(name, _)| name).collect();
    let page = text_of("index.html");
    let mut named = BTreeSet::new();
    for url in attribute_values(&page, "src")
        .into_iter()
        .chain(attribute_values(&page, "href"))
        .filter(|url| !url.starts_with('#'))
    {
        let name = url
            .strip_prefix("/console/")
            .unwrap_or_else(|| panic!("index.html names {url}, outside /console/"));
        named.insert(name.to_string());
    }
    for (name, _) in console_files().iter().filter(|(n, _)| n.ends_with(".js")) {
        for import in text_of(name).lines().filter_map(|line| {
            let from = line
                .trim()
                .strip_prefix("import ")?
                .rsplit_once(" from \"")?
                .1;
            from.strip_suffix("\";")
        }) {
            let module = import.strip_prefix("./").unwrap_or_else(|| {
                panic!("{name} imports {import}: only ./ modules of the console")
            });
            named.insert(module.to_string());
        }
    }
    for name in &named {
        assert!(
            files.contains(name),
            "{name} is named but console/{name} does not exist"
        );
    }
    assert!(
        named.contains("app.js") && named.contains("markdown.js"),
        "{named:?}"
    );
}

#[test]
fn the_page_has_no_inline_code_and_makes_no_html_from_strings() {
    let page = text_of("index.html");
    for (at, _) in page.match_indices("<script") {
        let tag = &page[at..at + page[at..].find('>').expect("tag end")];
        assert!(
            tag.contains(" src=\"") && page[at..].contains("></script>"),
            "inline script: {tag}"
        );
    }
    for forbidden in ["<style", " style=", "javascript:"] {
        assert!(!page.contains(forbidden), "index.html has {forbidden}");
    }
    // No event handler attribute (` onclick=`, ` onload=`, …).
    for (at, _) in page.match_indices(" on") {
        let name: String = page[at + 3..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        assert!(
            name.is_empty() || !page[at + 3 + name.len()..].starts_with('='),
            "index.html has an event handler attribute: on{name}="
        );
    }
    for (name, _) in console_files().iter().filter(|(n, _)| n.ends_with(".js")) {
        let code = text_of(name);
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "DOMParser",
            "createContextualFragment",
            // The key goes in the X-API-Key header only: EventSource cannot
            // send it, and `api_key=` would put it in a URL.
            "EventSource(",
            "api_key",
            "localStorage",
            "document.cookie",
        ] {
            assert!(!code.contains(forbidden), "console/{name} uses {forbidden}");
        }
    }
}

#[tokio::test]
async fn an_unchanged_file_is_answered_304() {
    let app = TestApp::fresh().await;
    let first = get(&app, "/console/app.js").await;
    let tag = first.headers()[ETAG].to_str().expect("ASCII").to_string();
    assert!(tag.starts_with('"') && tag.len() == 34, "{tag}");

    let again = app
        .client
        .get(app.url("/console/app.js"))
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .expect("GET");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[ETAG], tag.as_str());
    assert!(again.bytes().await.expect("body").is_empty());

    let changed = app
        .client
        .get(app.url("/console/app.js"))
        .header(IF_NONE_MATCH, "\"0123\"")
        .send()
        .await
        .expect("GET");
    assert_eq!(changed.status(), StatusCode::OK);
    // Another file, another tag.
    let other = get(&app, "/console/app.css").await;
    assert_ne!(other.headers()[ETAG], tag.as_str());
    app.stop().await;
}

#[tokio::test]
async fn files_the_console_does_not_have_answer_the_json_404() {
    let app = TestApp::fresh().await;
    for path in [
        "/console/nope.js",
        "/console/test/package.json",
        "/console/docs/console.png",
        "/console/%2e%2e%2fCargo.toml",
        "/console/app.js/more",
        "/index.html",
    ] {
        let (status, body) = get_without_key(&app, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body, serde_json::json!({ "detail": "not found" }), "{path}");
    }
    app.stop().await;
}
