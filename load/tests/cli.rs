//! The load tool as a user runs it: the built `edgecart-load` binary in `--local` mode at a
//! small size with a hub kill (its report.json must parse and hold plausible figures), and
//! readable errors for bad flags and an unreachable hub.
//!
//! The hub and node binaries come from `EDGECART_BIN_DIR` or sit next to `edgecart-load` in
//! the target dir (`cargo test --workspace` builds them); when missing they are built first,
//! as `tests/benches/sync.rs` does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn load() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgecart-load"))
}

/// `edgecart-hub` and `edgecart-node` for `--local`.
fn binaries() -> (PathBuf, PathBuf) {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_edgecart-load"));
    let dir = std::env::var_os("EDGECART_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe.parent().expect("target/<profile>").to_path_buf());
    let (hub, node) = (dir.join("edgecart-hub"), dir.join("edgecart-node"));
    if !hub.exists() || !node.exists() {
        build_hub_and_node(&dir);
    }
    assert!(
        hub.exists() && node.exists(),
        "no {} / {}",
        hub.display(),
        node.display()
    );
    (hub, node)
}

/// Builds the two binaries into the target dir `dir` belongs to, in its profile.
fn build_hub_and_node(dir: &Path) {
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let target_dir = dir.parent().expect("target dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "edgecart-hub", "-p", "edgecart-node"])
        .args(["--bin", "edgecart-hub", "--bin", "edgecart-node"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("running cargo build");
    assert!(
        status.success(),
        "building edgecart-hub and edgecart-node failed"
    );
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}

#[test]
fn a_small_local_run_with_a_hub_kill_reports_plausible_figures() {
    let (hub, node) = binaries();
    let out = tempfile::tempdir().expect("temp dir");
    let run = load()
        .args(["--local", "--stores", "20", "--duration", "8", "--kill-hub"])
        .args([
            "--products",
            "4",
            "--orders-per-sec",
            "2",
            "--sale-every-secs",
            "2",
        ])
        .arg("--hub-bin")
        .arg(&hub)
        .arg("--node-bin")
        .arg(&node)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("running edgecart-load");
    let log = text(&run);
    assert!(run.status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("report.json")).expect("report.json written"),
    )
    .expect("report.json is JSON");
    assert_eq!(report["mode"], "local", "{report}");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    let show = || serde_json::to_string_pretty(r).unwrap_or_default();

    // Every store connected, and came back after the kill.
    assert_eq!(num(r, "stores"), 20.0);
    assert_eq!(num(r, "connected_stores"), 20.0, "{}", show());
    let connect = num(r, "connect_all_secs");
    assert!(connect > 0.0 && connect < 30.0, "{}", show());
    let reconnect = num(r, "reconnect_all_secs");
    assert!(reconnect > 0.0 && reconnect < 30.0, "{}", show());
    assert_eq!(num(r, "hub_kill.stores_back"), 20.0, "{}", show());
    assert!(num(r, "hub_kill.restart_secs") > 0.0);

    // Sales reached the other stores, with ordered percentiles.
    let (p50, p99, max) = (
        num(r, "propagation_secs.p50"),
        num(r, "propagation_secs.p99"),
        num(r, "propagation_secs.max"),
    );
    assert!(num(r, "propagation_secs.samples") > 0.0, "{}", show());
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= max && max < 10.0,
        "{}",
        show()
    );
    for path in ["sim_to_sim", "sim_to_node", "node_to_sim", "node_to_node"] {
        assert!(
            num(r, &format!("propagation_by_path.{path}.samples")) > 0.0,
            "no {path} samples: {}",
            show()
        );
    }

    // Entries counted each way, sales and orders made.
    assert!(num(r, "entries.hub_to_stores_total") > 0.0, "{}", show());
    assert!(num(r, "entries.hub_to_stores_per_store_per_sec.mean") > 0.0);
    assert!(num(r, "entries.hub_to_stores_per_store_by_entity.stock_others") > 0.0);
    assert!(num(r, "entries.stores_to_hub_total") > 0.0, "{}", show());
    assert!(num(r, "sales.units") > 0.0);
    assert!(num(r, "orders.paid") > 0.0, "{}", show());
    assert!(num(r, "orders.per_sec") > 0.0);

    // The hub's CPU and memory over time, and the timeline.
    let samples = r["hub"]["samples"].as_array().expect("hub samples");
    assert!(samples.len() >= 3, "{}", show());
    for s in samples {
        assert!(num(s, "cpu_cores") >= 0.0 && num(s, "rss_mib") > 1.0, "{s}");
    }
    assert!(r["timeline"].as_array().is_some_and(|t| t.len() >= 5));
    assert!(r["errors"].is_object());

    // Charts, and the summary line on stdout.
    for chart in ["propagation.svg", "resources.svg"] {
        let svg = std::fs::read_to_string(out.path().join("stores-20").join(chart))
            .unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{chart}"
        );
    }
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.lines().any(|l| l.trim_start().starts_with("20 ")),
        "{log}"
    );
}

#[test]
fn bad_flags_and_an_unreachable_hub_are_readable_errors() {
    // Exit code 2: clap refused the command line; 1: the tool's own check or a failed run.
    let expect = |args: &[&str], codes: &[i32], says: &str| {
        let out = load().args(args).output().expect("running edgecart-load");
        let log = text(&out);
        let code = out.status.code().unwrap_or(-1);
        assert!(codes.contains(&code), "{args:?}: {log}");
        assert!(log.contains(says), "{args:?} should say {says:?}: {log}");
        assert!(!log.contains("panicked"), "{log}");
    };
    expect(
        &["--local", "--stores", "0"],
        &[2],
        "not a number of stores",
    );
    expect(&["--local", "--stores", "10,abc"], &[2], "\"abc\"");
    expect(&["--stores", "5"], &[2], "--hub");
    expect(
        &[
            "--hub",
            "http://127.0.0.1:1",
            "--admin-token",
            "t",
            "--kill-hub",
        ],
        &[1, 2],
        "--local",
    );
    expect(
        &["--hub", "ftp://hub", "--admin-token", "t"],
        &[1],
        "http:// or https://",
    );
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let hub = format!("http://127.0.0.1:{port}");
    expect(
        &[
            "--hub",
            &hub,
            "--admin-token",
            "t",
            "--stores",
            "1",
            "--duration",
            "1",
        ],
        &[1],
        "cannot reach the hub",
    );
    let out = load()
        .args(["--hub", &hub, "--stores", "1"])
        .env("EDGECART_ADMIN_TOKEN", "very-secret-token")
        .output()
        .expect("running edgecart-load");
    assert!(!text(&out).contains("very-secret-token"), "{}", text(&out));
}
