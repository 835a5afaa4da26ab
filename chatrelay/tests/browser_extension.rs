//! The reference browser extension (`extension/`), end to end: runs its Node
//! test suite, which loads the unpacked extension into headless Chromium,
//! serves a stand-in ChatGPT page as chatgpt.com on loopback, and drives this
//! build's `chatrelay serve` binary over REST.
//!
//! How the suite is run, and when it is skipped, is `node_suite`'s. It runs
//! alone, with two retries (`.config/nextest.toml`).

mod node_suite;

#[test]
fn extension_runs_requests_in_chromium_against_the_stand_in() {
    node_suite::run("extension/test", &["e2e/"]);
}
