//! The report: what `report.json` holds (one [`RunReport`] per fleet size), and the small
//! statistics it is made of.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// `local` (the tool started hub and nodes) or `remote` (a deployment's hub).
    pub mode: String,
    /// The hub's URL (of the first run in local mode: every size gets a fresh hub).
    pub hub: String,
    pub started_at_unix_ms: i64,
    pub settings: Settings,
    /// One per fleet size, in the order run.
    pub runs: Vec<RunReport>,
}

/// The settings every run of the report shares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    pub sale_every_secs: Option<f64>,
    pub duration_secs: f64,
    pub products: usize,
    pub real_nodes: usize,
    pub orders_per_sec: f64,
    pub stores_per_connection: usize,
    pub kill_hub: bool,
}

/// p50 / p99 / max of a set of durations, in seconds; `null`s when there were no samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub samples: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Latency {
    pub fn of(values: &[f64]) -> Latency {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        Latency {
            samples: sorted.len(),
            p50: percentile(&sorted, 0.50),
            p99: percentile(&sorted, 0.99),
            max: sorted.last().copied(),
        }
    }
}

/// Nearest-rank percentile of sorted values (`None` for none).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Mean, median and maximum over the stores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub p50: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mean = if sorted.is_empty() {
            0.0
        } else {
            sorted.iter().sum::<f64>() / sorted.len() as f64
        };
        Spread {
            mean,
            p50: percentile(&sorted, 0.5).unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
        }
    }
}

/// One fleet size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub stores: usize,
    /// Enrolling every simulated store (`NodeAdmin/EnrollNode`), seconds.
    pub enroll_secs: f64,
    /// From starting the enrolled stores until every one had its `Welcome`; `null` when not
    /// all connected within the connect timeout (see `connected_stores`).
    pub connect_all_secs: Option<f64>,
    pub connected_stores: usize,
    /// With `--kill-hub`: from the restarted hub listening until every store was back.
    pub reconnect_all_secs: Option<f64>,
    pub hub_kill: Option<HubKill>,
    /// Length of the measured phase (after connecting), seconds.
    pub measured_secs: f64,
    /// A sale at one store until other stores' global stock showed it.
    pub propagation_secs: Latency,
    /// The same by path: `sim_to_sim`, `sim_to_node`, `node_to_sim`, `node_to_node`.
    pub propagation_by_path: BTreeMap<String, Latency>,
    /// Propagation of the sales made in each window of the run.
    pub propagation_over_time: Vec<Window>,
    pub entries: Entries,
    pub sales: Sales,
    pub orders: Orders,
    /// The hub's CPU and memory (local mode only).
    pub hub: Option<HubUsage>,
    /// This tool's own CPU and memory (it shares the machine with what it measures).
    pub tool: Usage,
    /// One point per second from the stores' start.
    pub timeline: Vec<TimePoint>,
    /// Marks on the timeline (`all connected`, `hub killed`, ...).
    pub events: Vec<Event>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubKill {
    /// When the hub was killed, seconds on the timeline.
    pub killed_at_secs: f64,
    /// From the kill until the new hub process listened.
    pub restart_secs: f64,
    /// From the new hub listening until every store had a new session (`null`: not all).
    pub reconnect_all_secs: Option<f64>,
    pub stores_back: usize,
    /// Errors counted from the kill until every store was back (streams broken by the kill,
    /// refused reconnects while the hub was down); they are in the run's `errors` too.
    pub errors: BTreeMap<String, u64>,
}

/// Sync entries each way over the measured phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Entries {
    /// Hub → simulated stores, all stores together, per second.
    pub hub_to_stores_per_sec: f64,
    pub hub_to_stores_per_store_per_sec: Spread,
    /// Mean per store, per second, by entity.
    pub hub_to_stores_per_store_by_entity: BTreeMap<String, f64>,
    /// Simulated stores → hub, all together, per second.
    pub stores_to_hub_per_sec: f64,
    pub hub_to_stores_total: u64,
    pub stores_to_hub_total: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sales {
    /// Units the simulated stores sold over the whole run.
    pub units: u64,
    pub per_sec: f64,
    /// Sale ticks when a store held no rights for any product (it asked for a top-up).
    pub without_rights: u64,
    pub top_ups_granted: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Orders {
    pub placed: u64,
    pub paid: u64,
    /// Paid orders per second over the measured phase.
    pub per_sec: f64,
    /// Placing and paying one order.
    pub latency_secs: Latency,
    pub customers_registered: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_cores_mean: f64,
    pub cpu_cores_max: f64,
    pub rss_mib_max: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HubUsage {
    pub cpu_cores_mean: f64,
    pub cpu_cores_max: f64,
    pub rss_mib_max: f64,
    /// RSS at the end of the run.
    pub rss_mib_last: f64,
    pub samples: Vec<HubSample>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubSample {
    pub t: f64,
    pub cpu_cores: f64,
    pub rss_mib: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Window {
    pub t_start: f64,
    pub t_end: f64,
    #[serde(flatten)]
    pub latency: Latency,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TimePoint {
    pub t: f64,
    pub connected: usize,
    pub hub_to_stores_per_sec: f64,
    pub stores_to_hub_per_sec: f64,
    pub orders_per_sec: f64,
    pub tool_cpu_cores: f64,
    pub tool_rss_mib: f64,
    pub hub_cpu_cores: Option<f64>,
    pub hub_rss_mib: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub t: f64,
    pub what: String,
}

/// Windows of `width` seconds over samples `(at, secs)`, from 0 to `until`.
pub fn windows(samples: &[(f64, f64)], width: f64, until: f64) -> Vec<Window> {
    let mut out = Vec::new();
    let mut start = 0.0;
    while start < until && width > 0.0 {
        let end = start + width;
        let inside: Vec<f64> = samples
            .iter()
            .filter(|(at, _)| *at >= start && *at < end)
            .map(|(_, s)| *s)
            .collect();
        if !inside.is_empty() {
            out.push(Window {
                t_start: start,
                t_end: end,
                latency: Latency::of(&inside),
            });
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&v);
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50, Some(50.0));
        assert_eq!(l.p99, Some(99.0));
        assert_eq!(l.max, Some(100.0));
        assert_eq!(Latency::of(&[]).p50, None);
        assert_eq!(Latency::of(&[3.0]).p99, Some(3.0));
    }

    #[test]
    fn windows_group_by_sale_time() {
        let w = windows(&[(0.5, 0.1), (1.5, 0.3), (1.9, 0.2), (7.0, 1.0)], 2.0, 8.0);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].latency.samples, 3);
        assert_eq!(w[0].latency.max, Some(0.3));
        assert_eq!(w[1].t_start, 6.0);
    }
}
