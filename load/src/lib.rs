//! # edgecart-load
//!
//! A fleet load tool: N simulated stores, each a real `Sync/Stream` enrolled through
//! `NodeAdmin/EnrollNode` (Hello, acks, heartbeats, sales within its rights, reconnects with
//! jittered back-off), plus shoppers against real nodes' REST APIs, against a deployment's hub
//! or a hub and two nodes it starts itself (`--local`). It measures how long the stores take
//! to connect (and to come back after a hub kill), how fast a sale reaches the other stores'
//! global stock, the sync traffic each way, orders, errors and — locally — the hub's CPU and
//! memory, and writes `report.json` with SVG charts. See docs/load.md.
//!
//! The simulated store is a library ([`sim`]) for cross-process tests of the hub.
//!
//! # Layout
//! - [`sim`]: simulated stores ([`sim::Fleet`]) and what they count.
//! - [`hub`]: the hub's URL and TLS ([`hub::HubTarget`]), admin calls ([`hub::Admin`]).
//! - [`shopper`]: real nodes' storefront ([`shopper::NodeClient`]) and the shopper loop.
//! - [`probe`]: propagation probes (a sale, then the other stores' global stock).
//! - [`local`]: `--local`'s hub and node processes.
//! - [`run`]: one run at one fleet size; `monitor.rs` samples it each second,
//!   `summary.rs` turns it into figures.
//! - [`report`]: what `report.json` holds; [`charts`]: the SVG charts; [`procfs`]: CPU and
//!   memory of a process; [`progress`]: the progress bar.
//! - `main.rs`: the command line.

pub mod charts;
pub mod error;
pub mod hub;
pub mod local;
mod monitor;
pub mod probe;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod run;
pub mod shopper;
pub mod sim;
mod summary;

use std::path::{Path, PathBuf};

pub use error::{ErrorCounts, LoadError};
pub use run::{RunSettings, Target, run_once};

/// Writes `report.json` in `dir` (created), the charts of each run in `dir/stores-<N>/`, and
/// for a sweep (two sizes or more) the charts against the number of stores; returns the files.
pub fn write_report(dir: &Path, report: &report::Report) -> Result<Vec<PathBuf>, LoadError> {
    std::fs::create_dir_all(dir).map_err(|e| LoadError::io("creating", dir, e))?;
    let json = dir.join("report.json");
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| LoadError::Settings(format!("encoding the report: {e}")))?;
    std::fs::write(&json, text).map_err(|e| LoadError::io("writing", &json, e))?;
    let mut files = vec![json];
    for r in &report.runs {
        let sub = dir.join(format!("stores-{}", r.stores));
        std::fs::create_dir_all(&sub).map_err(|e| LoadError::io("creating", &sub, e))?;
        files.extend(charts::run_charts(&sub, r)?);
    }
    if report.runs.len() >= 2 {
        files.extend(charts::sweep_charts(dir, &report.runs)?);
    }
    Ok(files)
}
