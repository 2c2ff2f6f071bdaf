//! `--local`: a hub and real nodes started from their binaries in a temp dir, on ports the OS
//! picks, for the length of a run. The hub can be killed (SIGKILL) and restarted on the same
//! data dir and address.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::error::LoadError;
use crate::hub::{Admin, HubTarget, Secret};

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines of each process kept to explain a failed start.
const LOG_TAIL: usize = 40;
const JWT_SECRET: &str = "edgecart-load-local-jwt-secret-0123456789";

/// Where the binaries are: the given paths, or `edgecart-hub` / `edgecart-node` next to the
/// running executable (`target/<profile>/`, or the directory an install put them in).
pub fn default_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // A test binary runs from target/<profile>/deps.
    let dir = if dir.ends_with("deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    };
    dir.join(name)
}

/// A child process with its log tail; killed when dropped.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Proc {
    /// Starts `bin` with `args`; returns once it logged `marker` followed by its address.
    async fn start(
        what: &str,
        bin: &Path,
        args: &[String],
        envs: &[(&str, &str)],
        marker: &str,
    ) -> Result<Proc, LoadError> {
        let start_err = |why: String| LoadError::Start {
            what: format!("{what} ({})", bin.display()),
            why,
        };
        if !bin.exists() {
            return Err(start_err(
                "no such file (build it: cargo build -p edgecart-hub -p edgecart-node, or pass --hub-bin / --node-bin)".into(),
            ));
        }
        let mut child = Command::new(bin)
            .args(args)
            .envs(envs.iter().copied())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| start_err(e.to_string()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| start_err("no stderr".into()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (found, addr) = oneshot::channel();
        let (sink, wanted) = (log.clone(), marker.to_string());
        // Drained for the process's whole life, so a chatty process never blocks on its pipe.
        tokio::spawn(async move {
            let mut found = Some(found);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(a) = parse_addr(&line, &wanted)
                    && let Some(tx) = found.take()
                {
                    let _ = tx.send(a);
                }
                let mut tail = sink.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let addr = match tokio::time::timeout(START_TIMEOUT, addr).await {
            Ok(Ok(a)) => a,
            _ => {
                let tail = log.lock().unwrap_or_else(|p| p.into_inner());
                let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
                return Err(start_err(format!(
                    "it did not log its address (\"{marker}\"); last lines:\n{}",
                    tail.join("\n")
                )));
            }
        };
        Ok(Proc { child, addr })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn kill9(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM (through the `kill` executable), then SIGKILL after `grace`.
    async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        self.kill9().await;
    }
}

fn parse_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = line.split(marker).nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}

/// A hub and its nodes in a temp dir (deleted at the end).
pub struct LocalCluster {
    dir: tempfile::TempDir,
    hub_bin: PathBuf,
    hub: Option<Proc>,
    hub_addr: SocketAddr,
    nodes: Vec<Proc>,
    admin_token: Secret,
}

impl LocalCluster {
    /// Starts the hub, enrolls and starts `nodes` nodes (`node-1`, ...), and waits until each
    /// node's REST API answers.
    pub async fn start(
        hub_bin: &Path,
        node_bin: &Path,
        nodes: usize,
    ) -> Result<LocalCluster, LoadError> {
        let dir = tempfile::Builder::new()
            .prefix("edgecart-load-")
            .tempdir()
            .map_err(|e| LoadError::io("creating a temp dir in", std::env::temp_dir(), e))?;
        let admin_token = Secret::new(format!(
            "load-{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        ));
        let hub = start_hub(hub_bin, dir.path(), 0, &admin_token).await?;
        let hub_addr = hub.addr;
        let mut cluster = LocalCluster {
            dir,
            hub_bin: hub_bin.to_path_buf(),
            hub: Some(hub),
            hub_addr,
            nodes: Vec::new(),
            admin_token,
        };
        let admin = Admin::connect(&cluster.hub_target(), &cluster.admin_token).await?;
        for i in 1..=nodes {
            let id = format!("node-{i}");
            let credential = admin.enroll(&id).await?.credential;
            let data = cluster.dir.path().join(&id);
            let args: Vec<String> = [
                "--node-id",
                &id,
                "--data-dir",
                &data.to_string_lossy(),
                "--http-addr",
                "127.0.0.1:0",
                "--hub-url",
                &cluster.hub_url(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            // Secrets through the environment, not the command line (`ps` shows that).
            let envs = [
                ("EDGECART_HUB_TOKEN", credential.expose()),
                ("EDGECART_JWT_SECRET", JWT_SECRET),
            ];
            let node = Proc::start(&id, node_bin, &args, &envs, "listening on http://").await?;
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    pub fn hub_url(&self) -> String {
        format!("http://{}", self.hub_addr)
    }

    pub fn hub_target(&self) -> HubTarget {
        HubTarget::new(&self.hub_url(), None).expect("a loopback http URL is valid")
    }

    pub fn admin_token(&self) -> &Secret {
        &self.admin_token
    }

    pub fn node_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.addr))
            .collect()
    }

    /// The hub's pid while it runs.
    pub fn hub_pid(&self) -> Option<u32> {
        self.hub.as_ref().and_then(Proc::pid)
    }

    /// SIGKILL, as a crash would.
    pub async fn kill_hub(&mut self) {
        if let Some(mut hub) = self.hub.take() {
            hub.kill9().await;
        }
    }

    /// Starts the hub again on the same data dir and address (retrying while the port is
    /// still held for up to the start timeout).
    pub async fn restart_hub(&mut self) -> Result<(), LoadError> {
        self.kill_hub().await;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            match start_hub(
                &self.hub_bin,
                self.dir.path(),
                self.hub_addr.port(),
                &self.admin_token,
            )
            .await
            {
                Ok(hub) => {
                    self.hub = Some(hub);
                    return Ok(());
                }
                Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Stops the nodes, then the hub (SIGTERM, SIGKILL after a grace period); the temp dir
    /// goes with `self`.
    pub async fn stop(mut self) {
        for node in self.nodes.drain(..) {
            node.stop(Duration::from_secs(5)).await;
        }
        if let Some(hub) = self.hub.take() {
            hub.stop(Duration::from_secs(5)).await;
        }
    }
}

async fn start_hub(bin: &Path, dir: &Path, port: u16, token: &Secret) -> Result<Proc, LoadError> {
    let args: Vec<String> = [
        "--data-dir",
        &dir.join("hub").to_string_lossy(),
        "--grpc-addr",
        &format!("127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let envs = [("EDGECART_ADMIN_TOKEN", token.expose())];
    Proc::start("the hub", bin, &args, &envs, "listening on grpc://").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_the_log_line() {
        let line = "2026-12-01T10:00:00Z INFO edgecart_hub: listening on grpc://127.0.0.1:43121 addr=127.0.0.1:43121";
        assert_eq!(
            parse_addr(line, "listening on grpc://"),
            Some("127.0.0.1:43121".parse().unwrap())
        );
        assert_eq!(parse_addr("nothing here", "listening on grpc://"), None);
    }
}
