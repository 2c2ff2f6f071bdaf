//! The kiosk web app in a real Chromium: `tests/browser/kiosk.test.mjs` (playwright-core driving
//! `/usr/bin/chromium`, axe-core) against a real hub and two real nodes. This test owns the
//! processes; the script asks it on stdout (`@@control stop-hub`, ...) to stop or start them and
//! waits for `ok` on stdin, so the browser sees the store go offline and the node restart under
//! an open page.
//!
//! Needs Node.js, Debian's `chromium` and `npm ci` in `tests/browser` (all installed by
//! `.ci/run`). Screenshots land in `tests/browser/screenshots/` (git-ignored).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use edgecart_e2e::{ADMIN_EMAIL, ADMIN_PASSWORD, TestHub, TestNode};

/// A short idle timeout for the standalone node, so the idle sign-out is seen in seconds.
const IDLE_SECS: &str = "3";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

#[test]
fn the_kiosk_in_chromium() {
    let browser = browser_dir();
    assert!(
        browser.join("node_modules/playwright-core").exists()
            && browser.join("node_modules/axe-core").exists(),
        "run `npm ci` in {} first (see .ci/run)",
        browser.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "Chromium is missing: `apt-get install chromium chromium-driver` (see .ci/run)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start(&dir.path().join("hub"));
    let hub_url = hub.url();
    let mut store = TestNode::start_with(
        "kiosk-store",
        &dir.path().join("store"),
        Some(&hub_url),
        &hub.enroll("kiosk-store"),
        &[],
    );
    let idle = TestNode::start_with(
        "kiosk-idle",
        &dir.path().join("idle"),
        None,
        "",
        &["--kiosk-idle-secs", IDLE_SECS, "--currency", "JPY"],
    );

    let mut script = Command::new("node")
        .arg("kiosk.test.mjs")
        .current_dir(&browser)
        .env("KIOSK_URL", store.base())
        .env("KIOSK_IDLE_URL", idle.base())
        .env("KIOSK_IDLE_SECS", IDLE_SECS)
        .env("ADMIN_EMAIL", ADMIN_EMAIL)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting `node` (Node.js is needed for the browser test)");
    let mut answer = script.stdin.take().expect("stdin");
    let output = BufReader::new(script.stdout.take().expect("stdout"));
    let mut report = Vec::new();
    for line in output.lines() {
        let line = line.expect("the script's output");
        let Some(command) = line.strip_prefix("@@control ") else {
            eprintln!("{line}");
            report.push(line);
            continue;
        };
        match command.trim() {
            "stop-hub" => hub.kill9(),
            "start-hub" => hub.restart(),
            "kill-node" => store.kill9(),
            "start-node" => store.restart(),
            other => panic!("unknown control command {other:?}"),
        }
        writeln!(answer, "ok").expect("answering the script");
    }
    let status = script.wait().expect("the script ends");
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{}\n--- store log (tail) ---\n{}",
        report.join("\n"),
        tail(&store.proc.log(), 40)
    );
    assert!(
        report.iter().any(|l| l.starts_with("ok - idle sign-out")),
        "the script ended before its last checks:\n{}",
        report.join("\n")
    );
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
