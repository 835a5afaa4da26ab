//! The reference browser extension (`extension/`), end to end: runs its Node
//! test suite, which loads the unpacked extension into headless Chromium,
//! serves a stand-in ChatGPT page as chatgpt.com on loopback, and drives this
//! build's `chatrelay serve` binary over REST.
//!
//! The suite needs Debian's `chromium` (`.ci/run` installs it) and Node; its
//! one npm dependency (`playwright-core`, driving the browser) is installed
//! with `npm ci` on first use. Without Chromium the test says it was skipped
//! and passes, except under `CI`, where a missing browser is a failure.
//!
//! The suite always runs on SQLite, in a temporary directory: it tests the
//! browser side, and the server's behaviour on PostgreSQL is covered by the
//! other tests. So the PostgreSQL pass (`CHATRELAY_TEST_DATABASE_URL` set)
//! skips it. It runs alone, with two retries (`.config/nextest.toml`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Skips (or, under CI, fails) when a tool the suite needs is missing.
fn require(found: bool, what: &str, install: &str) -> bool {
    if found {
        return true;
    }
    assert!(
        !in_ci(),
        "{what} is not installed and CI is set ({install})"
    );
    eprintln!("skipped: {what} not installed ({install})");
    false
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn extension_runs_requests_in_chromium_against_the_stand_in() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the chatrelay package sits in the workspace");
    let suite = repo.join("extension").join("test");
    // The suite drives the browser against this build's server on its own
    // SQLite file, whatever the back end under test: it runs in the SQLite
    // pass only (`.ci/run` runs the suite once per back end).
    if std::env::var("CHATRELAY_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        eprintln!("skipped in the PostgreSQL pass: the browser suite runs in the SQLite pass");
        return;
    }
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM_PATH").unwrap_or("/usr/bin/chromium".into()));
    if !require(chromium.exists(), "chromium", "apt-get install chromium")
        || !require(
            runs("node") && runs("npm"),
            "node",
            "apt-get install nodejs npm",
        )
    {
        return;
    }

    if !suite.join("node_modules").join("playwright-core").exists() {
        let npm = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&suite)
            .status()
            .expect("npm runs");
        assert!(npm.success(), "npm ci in {} failed", suite.display());
    }

    let node = Command::new("node")
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            "e2e/",
        ])
        .current_dir(&suite)
        .env("CHATRELAY_BIN", env!("CARGO_BIN_EXE_chatrelay"))
        .env("CHROMIUM_PATH", &chromium)
        .env_remove("CHATRELAY_TEST_DATABASE_URL")
        .status()
        .expect("node runs");
    assert!(
        node.success(),
        "the extension's end-to-end suite failed (run it alone: cd extension/test && \
         CHATRELAY_BIN=target/debug/chatrelay node --test e2e/)"
    );
}
