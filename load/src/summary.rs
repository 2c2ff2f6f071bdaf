//! From a run's raw results to its [`RunReport`] figures.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use crate::probe::Sample;
use crate::report::{Entries, HubUsage, Latency, Orders, RunReport, Sales, Spread, Usage, windows};
use crate::run::Outcome;
use crate::sim::ENTITIES;

/// About this many propagation windows on the timeline, each 1 to 10 s wide.
const WINDOWS: f64 = 40.0;

pub(crate) fn report(o: Outcome) -> RunReport {
    let secs = o
        .end
        .at
        .saturating_duration_since(o.start.at)
        .as_secs_f64()
        .max(1e-9);
    let total = o.epoch.elapsed().as_secs_f64();
    let width = (total / WINDOWS).ceil().clamp(1.0, 10.0);
    RunReport {
        stores: o.stores,
        enroll_secs: o.enroll_secs,
        connect_all_secs: o.connect_all_secs,
        connected_stores: o.connected_stores,
        reconnect_all_secs: o.kill.as_ref().and_then(|k| k.reconnect_all_secs),
        hub_kill: o.kill.clone(),
        measured_secs: o.measured_secs,
        propagation_secs: Latency::of(&o.samples.iter().map(|s| s.secs).collect::<Vec<_>>()),
        propagation_by_path: by_path(&o.samples),
        propagation_over_time: windows(
            &o.samples.iter().map(|s| (s.at, s.secs)).collect::<Vec<_>>(),
            width,
            total,
        ),
        entries: entries(&o, secs),
        sales: sales(&o),
        orders: orders(&o, secs),
        hub: o.local.then(|| hub_usage(&o)),
        tool: tool_usage(&o),
        timeline: o.sampled.timeline,
        events: o.events,
        errors: o.errors.snapshot(),
    }
}

fn by_path(samples: &[Sample]) -> BTreeMap<String, Latency> {
    let mut paths: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in samples {
        paths.entry(s.path.label().into()).or_default().push(s.secs);
    }
    paths
        .into_iter()
        .map(|(k, v)| (k, Latency::of(&v)))
        .collect()
}

fn entries(o: &Outcome, secs: f64) -> Entries {
    let rates = o.end.rates_since(&o.start);
    let per_store: Vec<f64> = rates.iter().map(|r| r.received_total_per_sec).collect();
    let n = rates.len().max(1) as f64;
    let mut by_entity = BTreeMap::new();
    for entity in ENTITIES {
        let sum: f64 = rates
            .iter()
            .filter_map(|r| r.received_per_sec.get(entity))
            .sum();
        if sum > 0.0 {
            by_entity.insert(entity.to_string(), sum / n);
        }
    }
    let received = o.end.received().total() - o.start.received().total();
    let sent = o.end.sent() - o.start.sent();
    Entries {
        hub_to_stores_per_sec: received as f64 / secs,
        hub_to_stores_per_store_per_sec: Spread::of(&per_store),
        hub_to_stores_per_store_by_entity: by_entity,
        stores_to_hub_per_sec: sent as f64 / secs,
        hub_to_stores_total: o.end.received().total(),
        stores_to_hub_total: o.end.sent(),
    }
}

fn sales(o: &Outcome) -> Sales {
    let units = o.end.sales();
    let secs = o
        .end
        .at
        .saturating_duration_since(o.epoch)
        .as_secs_f64()
        .max(1e-9);
    Sales {
        units,
        per_sec: units as f64 / secs,
        without_rights: o.end.stores.iter().map(|s| s.no_rights).sum(),
        top_ups_granted: o.end.stores.iter().map(|s| s.top_ups).sum(),
    }
}

fn orders(o: &Outcome, secs: f64) -> Orders {
    let paid = o.shop.paid.load(Ordering::Relaxed);
    let latencies = o
        .shop
        .latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Orders {
        placed: o.shop.placed.load(Ordering::Relaxed),
        paid,
        per_sec: (paid - o.paid_at_start) as f64 / secs,
        latency_secs: Latency::of(&latencies),
        customers_registered: o.shop.registered.load(Ordering::Relaxed),
    }
}

fn hub_usage(o: &Outcome) -> HubUsage {
    let samples = o.sampled.hub.clone();
    let cpu: Vec<f64> = samples.iter().map(|s| s.cpu_cores).collect();
    HubUsage {
        cpu_cores_mean: mean(&cpu),
        cpu_cores_max: cpu.iter().copied().fold(0.0, f64::max),
        rss_mib_max: samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max),
        rss_mib_last: samples.last().map_or(0.0, |s| s.rss_mib),
        samples,
    }
}

fn tool_usage(o: &Outcome) -> Usage {
    let cpu: Vec<f64> = o
        .sampled
        .timeline
        .iter()
        .map(|p| p.tool_cpu_cores)
        .collect();
    Usage {
        cpu_cores_mean: mean(&cpu),
        cpu_cores_max: cpu.iter().copied().fold(0.0, f64::max),
        rss_mib_max: o
            .sampled
            .timeline
            .iter()
            .map(|p| p.tool_rss_mib)
            .fold(0.0, f64::max),
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}
