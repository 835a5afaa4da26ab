//! Runs one of the repository's Node end-to-end suites (Node's built-in test
//! runner driving Debian's headless Chromium with `playwright-core`) against
//! this build's `chatrelay` binary: the browser extension's (`extension/test`)
//! and the web console's (`console/test`).
//!
//! A suite needs `chromium` (`.ci/run` installs it) and Node with npm; its npm
//! dependencies are installed with `npm ci` on first use. Without Chromium or
//! Node the test says it was skipped and passes, except under `CI`, where a
//! missing tool is a failure.
//!
//! A suite always runs on SQLite, in a temporary directory: it tests the
//! browser side, and the server's behaviour on PostgreSQL is covered by the
//! other tests. So the PostgreSQL pass (`CHATRELAY_TEST_DATABASE_URL` set)
//! skips it.

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

/// Runs the test files `files` (or folders) of the suite in `folder` (a path
/// from the workspace root, e.g. `console/test`), one file at a time, and
/// fails if any test in them fails.
pub fn run(folder: &str, files: &[&str]) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the chatrelay package sits in the workspace");
    let suite = repo.join(folder);
    if std::env::var("CHATRELAY_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        eprintln!("skipped in the PostgreSQL pass: the browser suites run in the SQLite pass");
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
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(files)
        .current_dir(&suite)
        .env("CHATRELAY_BIN", env!("CARGO_BIN_EXE_chatrelay"))
        .env("CHROMIUM_PATH", &chromium)
        .env_remove("CHATRELAY_TEST_DATABASE_URL")
        .status()
        .expect("node runs");
    assert!(
        node.success(),
        "the end-to-end suite in {folder} failed (run it alone: cd {folder} && \
         CHATRELAY_BIN=target/debug/chatrelay node --test {})",
        files.join(" ")
    );
}
