//! The web console (`console/`), end to end: runs its Node test suite, which
//! opens the console in headless Chromium against this build's
//! `chatrelay serve`, with `chatrelay extension simulate` as the extension.
//!
//! How the suite is run, and when it is skipped, is `node_suite`'s. It runs
//! alone (`.config/nextest.toml`).

mod node_suite;

/// Sign-in, submit, live updates, the request detail and its Markdown (with
/// HTML in the answer shown, never run), chats, the stream-down banner,
/// paging, keyboard use, and the README's screenshots; the Markdown renderer
/// and the event-stream parser on their own.
#[test]
fn console_runs_the_whole_loop_in_chromium() {
    node_suite::run(
        "console/test",
        &[
            "e2e/console.test.js",
            "e2e/markdown.test.js",
            "e2e/stream.test.js",
        ],
    );
}

/// Cancel, the extensions panel, the webhooks panel with Retry, the live
/// counts and one chat's requests: the console's own API (`/cancel/`,
/// `/sessions/`, `/webhooks/`, `/counts/`, `?chat=`).
#[test]
fn console_panels_use_the_console_api_in_chromium() {
    node_suite::run("console/test", &["e2e/panels.test.js"]);
}
