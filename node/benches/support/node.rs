//! The node under test: the real `edgecart-node` binary in a temp data dir, on port 0, killed on
//! drop (a panicking bench must not leave a server running).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";
pub const ADMIN_EMAIL: &str = "admin@bench.test";
pub const ADMIN_PASSWORD: &str = "bench admin passphrase";

/// How long start-up (migrations, the bootstrap admin's password hash) may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines kept to explain a failure.
const LOG_TAIL: usize = 200;

pub struct Node {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
    // Removed after the child is killed (fields drop after `Drop::drop`); an `Option` so that
    // `restart` can hand it to the next process.
    dir: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a node with the bench's identity flags plus `extra`, and waits for its address.
    pub fn start(extra: &[&str]) -> Node {
        Node::start_in(tempfile::tempdir().expect("temp dir"), extra)
    }

    /// Stops this node and starts another on the same data dir.
    pub fn restart(mut self, extra: &[&str]) -> Node {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir.take().expect("a running node owns its dir");
        Node::start_in(dir, extra)
    }

    fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Node {
        // BENCH_NODE_BIN measures another build (e.g. a copy of the binary before a change) with
        // the same generator, for before/after comparisons under the same machine load.
        let bin = std::env::var_os("BENCH_NODE_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_edgecart-node").into());
        let mut cmd = Command::new(bin);
        // Whatever EDGECART_* the caller's shell has must not change what is measured.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("EDGECART_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("--data-dir")
            .arg(dir.path())
            .args(["--http-addr", "127.0.0.1:0", "--node-id", "bench"])
            .args(["--jwt-secret", JWT_SECRET])
            .args(["--admin-email", ADMIN_EMAIL])
            .args(["--admin-password", ADMIN_PASSWORD])
            .args(extra)
            .env("RUST_LOG", "warn,edgecart_node=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning edgecart-node");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let tail = log.clone();
        // The reader keeps draining stderr for the node's whole life: a full pipe would block
        // the node's logging and with it the requests being measured.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if let Some(addr) = listening_addr(&line) {
                    let _ = addr_tx.send(addr);
                }
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let mut node = Node {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            dir: Some(dir),
        };
        match addr_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => node.addr = addr,
            Err(_) => {
                let status = node.child.try_wait().ok().flatten();
                panic!(
                    "node did not log its address within {START_TIMEOUT:?} (exit: {status:?})\n{}",
                    node.log_tail()
                );
            }
        }
        node
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident and peak resident memory in KiB (`VmRSS`, `VmHWM` of `/proc/<pid>/status`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/<pid>/status (Linux only)");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// CPU time (user + system, all threads) the node has used so far, in seconds.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(&format!("/proc/{}/stat", self.pid()))
    }

    pub fn log_tail(&self) -> String {
        let tail = self.log.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds from a `/proc/.../stat` file (`/proc/self/stat` for this process).
pub fn cpu_secs(stat_path: &str) -> f64 {
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    // The unit is USER_HZ, which Linux fixes at 100 for user space.
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `fields[0]` is field 3 (state), so field n is `fields[n - 3]`.
    (ticks(14 - 3) + ticks(15 - 3)) as f64 / USER_HZ
}

/// Seconds of CPU time the whole machine has been busy (all CPUs, `/proc/stat`, no idle/iowait).
pub fn machine_busy_secs() -> f64 {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or_default();
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let busy: u64 = ticks.iter().take(8).sum::<u64>()
        - ticks.get(3).copied().unwrap_or(0)
        - ticks.get(4).copied().unwrap_or(0);
    busy as f64 / USER_HZ
}

/// `... listening on http://127.0.0.1:41234 ...` -> the address.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once("listening on http://")?.1;
    rest.split_whitespace().next()?.parse().ok()
}

/// Removes ANSI escape sequences (CSI `ESC [ ... letter`), in case colours slip through.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
