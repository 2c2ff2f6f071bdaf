//! Once a second while a run goes on: a timeline point (stores connected, entries each way,
//! orders, this tool's and — locally — the hub's CPU and memory) and the progress message.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::ErrorCounts;
use crate::procfs::{self, ProcReading};
use crate::progress::Ui;
use crate::report::{HubSample, TimePoint};
use crate::shopper::ShopStats;
use crate::sim::Fleet;

const EVERY: Duration = Duration::from_secs(1);

/// The pid of the hub to sample (changes when the hub is restarted; `None` while it is down
/// or not local).
pub type HubPid = Arc<Mutex<Option<u32>>>;

pub struct Monitor {
    stop: CancellationToken,
    task: JoinHandle<Sampled>,
}

#[derive(Default)]
pub struct Sampled {
    pub timeline: Vec<TimePoint>,
    pub hub: Vec<HubSample>,
}

pub struct Watched {
    pub fleet: Arc<Fleet>,
    pub shop: Arc<ShopStats>,
    pub hub_pid: HubPid,
    /// Whether the hub is this tool's own (local mode): then no pid means it is down.
    pub local_hub: bool,
    pub errors: ErrorCounts,
    pub epoch: Instant,
}

impl Monitor {
    pub fn start(w: Watched, ui: Ui) -> Monitor {
        let stop = CancellationToken::new();
        let task = tokio::spawn(sample(w, ui, stop.clone()));
        Monitor { stop, task }
    }

    pub async fn finish(self) -> Sampled {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

async fn sample(w: Watched, ui: Ui, stop: CancellationToken) -> Sampled {
    let mut out = Sampled::default();
    let mut last = Instant::now();
    let first = w.fleet.snapshot();
    let (mut received, mut sent) = (first.received().total(), first.sent());
    let mut paid = w.shop.paid.load(Ordering::Relaxed);
    let mut tool = procfs::read("self");
    let mut hub: Option<(u32, ProcReading)> = None;
    let mut tick = tokio::time::interval(EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return out,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let secs = now.duration_since(last).as_secs_f64();
        last = now;
        let t = now.duration_since(w.epoch).as_secs_f64();
        let snap = w.fleet.snapshot();
        let (r, s) = (snap.received().total(), snap.sent());
        let p = w.shop.paid.load(Ordering::Relaxed);
        let rates = (
            (r - received) as f64 / secs,
            (s - sent) as f64 / secs,
            (p - paid) as f64 / secs,
        );
        (received, sent, paid) = (r, s, p);
        let tool_now = procfs::read("self");
        let tool_cores = match (tool, tool_now) {
            (Some(a), Some(b)) => procfs::cores(a, b, secs),
            _ => 0.0,
        };
        tool = tool_now;
        let pid = *w.hub_pid.lock().unwrap_or_else(|p| p.into_inner());
        let hub_now = pid.and_then(|pid| procfs::read(&pid.to_string()).map(|r| (pid, r)));
        // A restarted hub is a new process: its first reading only sets the baseline.
        let hub_cores = match (hub, hub_now) {
            (Some((a, ra)), Some((b, rb))) if a == b => Some(procfs::cores(ra, rb, secs)),
            _ => None,
        };
        hub = hub_now;
        if let (Some(cores), Some((_, r))) = (hub_cores, hub_now) {
            out.hub.push(HubSample {
                t,
                cpu_cores: cores,
                rss_mib: r.rss_mib,
            });
        }
        let connected = snap.connected();
        out.timeline.push(TimePoint {
            t,
            connected,
            hub_to_stores_per_sec: rates.0,
            stores_to_hub_per_sec: rates.1,
            orders_per_sec: rates.2,
            tool_cpu_cores: tool_cores,
            tool_rss_mib: tool_now.map_or(0.0, |r| r.rss_mib),
            hub_cpu_cores: hub_cores,
            hub_rss_mib: hub_now.map(|(_, r)| r.rss_mib),
        });
        let hub_text = match (hub_cores, hub_now) {
            (Some(c), Some((_, r))) => format!(" · hub {c:.2} cores {:.0} MiB", r.rss_mib),
            (None, Some((_, r))) => format!(" · hub {:.0} MiB", r.rss_mib),
            _ if pid.is_none() && w.local_hub => " · hub down".to_string(),
            _ => String::new(),
        };
        ui.message(format!(
            "{connected}/{} up · in {:.0}/s · out {:.1}/s · orders {:.1}/s{hub_text} · errors {}",
            snap.stores.len(),
            rates.0,
            rates.1,
            rates.2,
            w.errors.total()
        ));
    }
}
