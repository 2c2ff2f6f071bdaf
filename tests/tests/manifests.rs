//! The Kubernetes manifests and the binaries cannot drift apart (issue 5).
//!
//! The dev overlay is rendered with `kubectl kustomize`; the containers of the hub StatefulSet
//! and of the node DaemonSet are read, and the real `edgecart-hub` and `edgecart-node` binaries
//! are started with the argv and the environment the kubelet would give them: `command` + `args`
//! (with `$(VAR)` expansion), `envFrom` ConfigMaps and Secrets (in order, with `prefix`), then
//! `env` (literal values, `secretKeyRef`, `configMapKeyRef`, `fieldRef`), each resolved from the
//! rendered objects (Secret `data` base64-decoded; a missing non-optional reference fails, as the
//! pod would not start). The process gets no other environment (`env_clear`).
//!
//! Only what cannot work on this machine is substituted, and every substitution made is listed
//! (printed with `--nocapture`, and on any failure):
//!
//! 1. the image path `/usr/local/bin/<binary>` in `command[0]` → the binary cargo built;
//! 2. a volume's `mountPath` (the data dirs, `/tmp`), as a whole value or as a path prefix → a
//!    temp dir per volume (created, as the kubelet/PVC would provide it);
//! 3. a listen address: a value `IP:PORT` whose PORT is a declared `containerPort` → `IP:0` (the
//!    IP is kept); the bound port is read from the `listening on ...://ADDR` log line;
//! 4. a URL whose host is a rendered Service (`http://edgecart-hub:50051`) → `127.0.0.1` and the
//!    port the hub really bound, after resolving Service port → `targetPort` → the containerPort
//!    of the pod the Service selects, which must be the hub's listen port;
//! 5. downward-API `fieldRef`s → made-up values (`spec.nodeName` → `edge-1`).
//!
//! Everything else is passed through verbatim, so a renamed flag, a variable the binary no
//! longer reads as required, a value it rejects, or ports and probes that do not match what the
//! binaries serve, fail this test. The test then checks: both processes come up; every probe in
//! the manifests answers (httpGet paths on the node's named port; the hub's gRPC probes via
//! `grpc.health.v1.Health/Check`); the Prometheus annotations point at a served path; the node
//! connects to the hub (the hub's admin `NodeAdmin.ListNodes`, authenticated with the admin token
//! from the rendered Secret, and the node's `/v1/sync/status` for the bootstrap admin from the
//! rendered Secret); and each SQLite file lands in its data volume, not on the (read-only) root.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use base64::Engine as _;
use edgecart_e2e::{bin, wait_until};
use edgecart_proto::pb;
use serde::Deserialize as _;
use serde_json::{Value, json};

/// The overlay under test (the one with generated placeholder Secrets, so it renders alone).
const OVERLAY: &str = "deploy/k8s/overlays/dev";
/// Substitution 5: the Kubernetes node (machine) name handed out by `fieldRef: spec.nodeName`.
const K8S_NODE_NAME: &str = "edge-1";
/// Where the image keeps the binaries (deploy/Dockerfile).
const IMAGE_BIN_DIR: &str = "/usr/local/bin/";
const WAIT: Duration = Duration::from_secs(30);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// The rendered manifests
// ---------------------------------------------------------------------------------------------

struct Manifests {
    objects: Vec<Value>,
}

impl Manifests {
    /// `kubectl kustomize <repo>/<overlay>`, parsed document by document.
    fn render(overlay: &str) -> Manifests {
        let dir = repo_root().join(overlay);
        let out = match Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "this test needs `kubectl` (1.21 or newer, with built-in kustomize) on PATH to \
                 render {overlay}; install it (CI machines have it): {e}"
            ),
            Err(e) => panic!("running `kubectl kustomize {}`: {e}", dir.display()),
        };
        assert!(
            out.status.success(),
            "`kubectl kustomize {}` failed ({}):\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("rendered manifests are UTF-8");
        let mut objects = Vec::new();
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).expect("rendered manifests are valid YAML");
            if !v.is_null() {
                objects.push(v);
            }
        }
        assert!(!objects.is_empty(), "{overlay} renders no objects");
        Manifests { objects }
    }

    fn find(&self, kind: &str, name: &str, namespace: &str) -> Option<&Value> {
        self.objects.iter().find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == name
                && o["metadata"]["namespace"].as_str().unwrap_or("default") == namespace
        })
    }

    fn workload(&self, kind: &str, name: &str) -> Workload {
        let obj = self
            .objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{OVERLAY} renders no {kind} {name}"));
        let template = &obj["spec"]["template"];
        let container = template["spec"]["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("{kind} {name} has no container named {name}"))
            .clone();
        Workload {
            who: format!("{kind}/{name}"),
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            labels: template["metadata"]["labels"].clone(),
            container,
        }
    }

    /// A ConfigMap's or Secret's key/value pairs, or `None` if the object is not rendered.
    fn key_values(&self, kind: &str, name: &str, ns: &str) -> Option<BTreeMap<String, String>> {
        let obj = self.find(kind, name, ns)?;
        let mut out = BTreeMap::new();
        for (k, v) in obj["data"].as_object().into_iter().flatten() {
            let v = v.as_str().expect("data values are strings");
            let v = if kind == "Secret" {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .unwrap_or_else(|e| panic!("Secret {name} key {k} is not base64: {e}"));
                String::from_utf8(bytes)
                    .unwrap_or_else(|_| panic!("Secret {name} key {k} is not UTF-8"))
            } else {
                v.to_string()
            };
            out.insert(k.clone(), v);
        }
        for (k, v) in obj["stringData"].as_object().into_iter().flatten() {
            out.insert(k.clone(), v.as_str().expect("stringData is strings").into());
        }
        Some(out)
    }
}

/// A workload's pod template and its main container (the one named like the workload).
struct Workload {
    who: String,
    kind: String,
    name: String,
    namespace: String,
    labels: Value,
    container: Value,
}

impl Workload {
    /// Declared container ports: (name, containerPort).
    fn ports(&self) -> Vec<(Option<String>, u16)> {
        self.container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().map(str::to_string),
                    p["containerPort"].as_u64().expect("containerPort") as u16,
                )
            })
            .collect()
    }

    /// A probe's or Service's port (a number, or the name of a declared container port).
    fn resolve_port(&self, port: &Value, what: &str) -> u16 {
        match port {
            Value::Number(n) => n.as_u64().expect("port number") as u16,
            Value::String(name) => {
                self.ports()
                    .into_iter()
                    .find(|(n, _)| n.as_deref() == Some(name))
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: {what} names port {name:?}, which the container does not declare",
                            self.who
                        )
                    })
                    .1
            }
            other => panic!("{}: {what} has no usable port: {other}", self.who),
        }
    }

    fn selected_by(&self, selector: &Value) -> bool {
        selector
            .as_object()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| self.labels[k] == *v))
    }

    /// Substitution 5: downward-API values that only exist in a cluster.
    fn field_ref(&self, path: &str) -> String {
        match path {
            "spec.nodeName" => K8S_NODE_NAME.to_string(),
            "metadata.namespace" => self.namespace.clone(),
            "metadata.name" if self.kind == "StatefulSet" => format!("{}-0", self.name),
            "metadata.name" => format!("{}-x7k2p", self.name),
            "status.podIP" | "status.hostIP" => "127.0.0.1".to_string(),
            other => panic!(
                "{}: fieldRef {other} is not supported by this test; map it in field_ref()",
                self.who
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// From a container spec to a process
// ---------------------------------------------------------------------------------------------

/// The `$(VAR)` expansion the kubelet applies to `command`, `args` and `env` values: a defined
/// variable is replaced, `$$` is a literal `$`, anything else stays as written.
fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out += &rest[..i];
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(close) = tail.strip_prefix("$(").and_then(|t| t.find(')')) {
            let name = &tail[2..2 + close];
            match env.get(name) {
                Some(v) => out += v,
                None => out += &tail[..3 + close],
            }
            rest = &tail[3 + close..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out + rest
}

/// A listener started by the test: which workload, the container port its listen address was
/// declared on, and the address it really bound (reachable from here).
struct Listener<'a> {
    workload: &'a Workload,
    container_port: u16,
    bound: SocketAddr,
}

/// Everything needed to start one container's binary as a local process.
struct Launch {
    who: String,
    binary: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    /// The containerPort the listen address (substitution 3) was declared on.
    listen_port: u16,
    /// Further listen addresses on other declared ports (the hub's `--metrics-addr`).
    extra_listen_ports: Vec<u16>,
    /// volume name → the temp dir standing in for its mount (substitution 2).
    volumes: BTreeMap<String, PathBuf>,
    /// The working directory: the image sets none, so it is `/`; here an empty temp dir, which
    /// must stay empty if the container's root filesystem is read-only.
    cwd: PathBuf,
    substitutions: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Launch {
    fn build(m: &Manifests, w: &Workload, upstreams: &[Listener]) -> Launch {
        let c = &w.container;
        let tmp = tempfile::tempdir().expect("temp dir");
        let cwd = tmp.path().join("cwd");
        std::fs::create_dir(&cwd).expect("cwd");
        let mut subs = Vec::new();

        // Substitution 2: every volume mount → a temp dir.
        let mut volumes = BTreeMap::new();
        let mut mounts = Vec::new();
        for vm in c["volumeMounts"].as_array().into_iter().flatten() {
            let name = vm["name"].as_str().expect("volumeMount name").to_string();
            let path = vm["mountPath"]
                .as_str()
                .expect("mountPath")
                .trim_end_matches('/')
                .to_string();
            let dir = tmp.path().join("volumes").join(&name);
            std::fs::create_dir_all(&dir).expect("volume dir");
            mounts.push((path, dir.clone()));
            volumes.insert(name, dir);
        }

        // The environment, in the kubelet's order: envFrom sources (a later source wins), then
        // env entries (which win over envFrom).
        let mut env = BTreeMap::new();
        for src in c["envFrom"].as_array().into_iter().flatten() {
            let prefix = src["prefix"].as_str().unwrap_or("");
            let (kind, r) = if src["configMapRef"].is_object() {
                ("ConfigMap", &src["configMapRef"])
            } else if src["secretRef"].is_object() {
                ("Secret", &src["secretRef"])
            } else {
                panic!("{}: unknown envFrom source {src}", w.who)
            };
            let name = r["name"].as_str().expect("envFrom name");
            match m.key_values(kind, name, &w.namespace) {
                Some(kv) => {
                    for (k, v) in kv {
                        env.insert(format!("{prefix}{k}"), v);
                    }
                }
                None if r["optional"] == true => {}
                None => panic!(
                    "{}: envFrom {kind} {name} is not in the rendered manifests (the pod would \
                     not start)",
                    w.who
                ),
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().expect("env name").to_string();
            let from = &e["valueFrom"];
            let value = if from.is_null() {
                Some(expand(e["value"].as_str().unwrap_or(""), &env))
            } else if from["fieldRef"].is_object() {
                let path = from["fieldRef"]["fieldPath"].as_str().expect("fieldPath");
                let v = w.field_ref(path);
                subs.push(format!("env {name}: fieldRef {path} → {v:?}"));
                Some(v)
            } else {
                let (kind, r) = if from["secretKeyRef"].is_object() {
                    ("Secret", &from["secretKeyRef"])
                } else if from["configMapKeyRef"].is_object() {
                    ("ConfigMap", &from["configMapKeyRef"])
                } else {
                    panic!("{}: env {name}: unsupported valueFrom {from}", w.who)
                };
                let (obj, key) = (
                    r["name"].as_str().expect("ref name"),
                    r["key"].as_str().expect("ref key"),
                );
                let v = m
                    .key_values(kind, obj, &w.namespace)
                    .and_then(|kv| kv.get(key).cloned());
                assert!(
                    v.is_some() || r["optional"] == true,
                    "{}: env {name} refers to {kind} {obj} key {key}, which the rendered \
                     manifests do not have (the pod would not start)",
                    w.who
                );
                v
            };
            if let Some(v) = value {
                env.insert(name, v);
            }
        }

        // argv: command (+ args), expanded like the kubelet does.
        let command: Vec<String> = c["command"]
            .as_array()
            .unwrap_or_else(|| {
                panic!(
                    "{}: no `command`; one image holds both binaries, so each workload must \
                     pick its own",
                    w.who
                )
            })
            .iter()
            .chain(c["args"].as_array().into_iter().flatten())
            .map(|a| expand(a.as_str().expect("string argv"), &env))
            .collect();
        // Substitution 1: the image's binary path → the binary cargo built.
        let binary = command[0]
            .strip_prefix(IMAGE_BIN_DIR)
            .unwrap_or_else(|| {
                panic!(
                    "{}: command {:?} is not a binary in {IMAGE_BIN_DIR}",
                    w.who, command[0]
                )
            })
            .to_string();
        subs.push(format!(
            "command[0] {} → {}",
            command[0],
            bin(&binary).display()
        ));

        let ports = w.ports();
        let mut listen = Vec::new();
        let mut subst = |what: &str, value: &str| -> String {
            let out = substitute(w, m, value, &mounts, &ports, upstreams, &mut listen);
            if out != value {
                subs.push(format!("{what}: {value} → {out}"));
            }
            out
        };
        let args: Vec<String> = command[1..]
            .iter()
            .map(|a| match a.split_once('=') {
                Some((flag, value)) if flag.starts_with('-') => {
                    format!("{flag}={}", subst(&format!("arg {flag}"), value))
                }
                _ => subst("arg", a),
            })
            .collect();
        let env: BTreeMap<String, String> = env
            .into_iter()
            .map(|(k, v)| {
                let v = subst(&format!("env {k}"), &v);
                (k, v)
            })
            .collect();

        for (ip, _) in &listen {
            assert!(
                ip.is_unspecified(),
                "{}: the listen address binds {ip}, not all addresses: the kubelet's \
                 probes and the Services reach the pod on its pod IP",
                w.who
            );
        }
        // The main listener is on the first declared port (the API); others (metrics) follow.
        let listen_port = match listen
            .iter()
            .find(|(_, p)| Some(*p) == ports.first().map(|p| p.1))
        {
            Some((_, port)) => *port,
            None => panic!(
                "{}: no argument or variable sets a listen address on the first declared \
                 container port {ports:?}; the binary would listen on its default address",
                w.who
            ),
        };
        let extra_listen_ports: Vec<u16> = listen
            .iter()
            .map(|(_, p)| *p)
            .filter(|p| *p != listen_port)
            .collect();
        assert!(
            listen.len() == 1 + extra_listen_ports.len(),
            "{}: several listen addresses on one port {listen:?}",
            w.who
        );
        Launch {
            who: w.who.clone(),
            binary,
            args,
            env,
            listen_port,
            extra_listen_ports,
            volumes,
            cwd,
            substitutions: subs,
            _tmp: tmp,
        }
    }

    fn describe(&self) -> String {
        let mut out = format!(
            "{}: {} {}\n  env:\n",
            self.who,
            self.binary,
            self.args.join(" ")
        );
        for (k, v) in &self.env {
            out += &format!("    {k}={v}\n");
        }
        out += "  substitutions:\n";
        for s in &self.substitutions {
            out += &format!("    {s}\n");
        }
        out
    }

    /// Starts the binary with exactly `args` and `env` (nothing inherited) and waits for its
    /// `listening on <marker>ADDR` line.
    fn start(self, marker: &str) -> Running {
        eprintln!("starting {}", self.describe());
        let mut child = Command::new(bin(&self.binary))
            .args(&self.args)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary));
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let (sink, marker_owned, echo, name) = (
            log.clone(),
            marker.to_string(),
            std::env::var_os("TEST_LOG").is_some(),
            self.binary.clone(),
        );
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[{name}] {line}");
                }
                if let Some(addr) = parse_addr(&line, &marker_owned) {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let mut running = Running {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            launch: self,
        };
        match rx.recv_timeout(WAIT) {
            Ok(addr) => {
                // Not a substitution of the process's settings: the test dials a wildcard
                // listener on loopback.
                let ip = if addr.ip().is_unspecified() {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    addr.ip()
                };
                running.addr = SocketAddr::new(ip, addr.port());
            }
            Err(_) => {
                // Give an exiting process a moment, so its exit status is in the message.
                let mut status = None;
                for _ in 0..20 {
                    status = running.child.try_wait().ok().flatten();
                    if status.is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                panic!(
                    "{} did not log `{marker}ADDR` (exit status: {status:?})\n{}",
                    running.launch.binary,
                    running.describe()
                )
            }
        }
        running
    }
}

/// Applies substitutions 2–4 to one value (an argument's value or a variable's value).
fn substitute(
    w: &Workload,
    m: &Manifests,
    value: &str,
    mounts: &[(String, PathBuf)],
    ports: &[(Option<String>, u16)],
    upstreams: &[Listener],
    listen: &mut Vec<(IpAddr, u16)>,
) -> String {
    // 2. a mount path, whole or as a prefix → the volume's temp dir
    for (path, dir) in mounts {
        if value == path {
            return dir.display().to_string();
        }
        if let Some(rest) = value.strip_prefix(&format!("{path}/")) {
            return dir.join(rest).display().to_string();
        }
    }
    // 3. a listen address on a declared container port → the same IP, port 0
    if let Ok(addr) = value.parse::<SocketAddr>()
        && ports.iter().any(|(_, p)| *p == addr.port())
    {
        listen.push((addr.ip(), addr.port()));
        return SocketAddr::new(addr.ip(), 0).to_string();
    }
    // 4. a URL whose host is a Service → the address of the process behind it
    if let Some((scheme, rest)) = value.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok()),
            None => (authority, None),
        };
        let (service, ns) = service_host(host, &w.namespace);
        if let Some(svc) = m.find("Service", service, &ns) {
            let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
            let bound = resolve_service(w, svc, port, upstreams);
            return format!("{scheme}://{bound}{path}");
        }
    }
    value.to_string()
}

/// `svc`, `svc.ns`, `svc.ns.svc` and `svc.ns.svc.cluster.local` (cluster DNS) → (svc, ns).
fn service_host<'h>(host: &'h str, own_ns: &str) -> (&'h str, String) {
    let host = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
        .unwrap_or(host);
    match host.split_once('.') {
        Some((svc, ns)) => (svc, ns.to_string()),
        None => (host, own_ns.to_string()),
    }
}

/// Service port → targetPort → the containerPort of the started workload the Service selects;
/// that must be the port the workload listens on. Returns where that process really listens.
fn resolve_service(w: &Workload, svc: &Value, port: u16, upstreams: &[Listener]) -> SocketAddr {
    let svc_name = svc["metadata"]["name"].as_str().unwrap_or("?");
    let sp = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(port.into()))
        .unwrap_or_else(|| {
            panic!(
                "{}: dials Service {svc_name} on port {port}, which the Service does not expose",
                w.who
            )
        });
    let target = if sp["targetPort"].is_null() {
        &sp["port"]
    } else {
        &sp["targetPort"]
    };
    let up = upstreams
        .iter()
        .find(|u| u.workload.selected_by(&svc["spec"]["selector"]))
        .unwrap_or_else(|| {
            panic!(
                "{}: Service {svc_name} selects none of the started workloads",
                w.who
            )
        });
    let container_port = up
        .workload
        .resolve_port(target, &format!("Service {svc_name} targetPort"));
    assert_eq!(
        container_port, up.container_port,
        "Service {svc_name} port {port} targets container port {container_port} of {}, which \
         listens on {}",
        up.workload.who, up.container_port
    );
    up.bound
}

fn parse_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = line.split(marker).nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().ok()
}

/// A started binary; killed on drop.
struct Running {
    child: Child,
    /// Where the test reaches it (the bound port; loopback for a wildcard address).
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    launch: Launch,
}

impl Running {
    fn describe(&self) -> String {
        format!(
            "{}  log:\n{}\n",
            self.launch.describe(),
            self.log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .join("\n")
        )
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A probe's port must be the port the binary listens on (by name or number).
    fn probe_port(&self, w: &Workload, port: &Value, what: &str) {
        let p = w.resolve_port(port, what);
        assert_eq!(
            p, self.launch.listen_port,
            "{}: {what} uses port {p}, but the binary listens on container port {}",
            w.who, self.launch.listen_port
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PROBES: [&str; 3] = ["startupProbe", "livenessProbe", "readinessProbe"];

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_overlay_runs_the_real_binaries_which_come_up_ready_and_connect() {
    let m = Manifests::render(OVERLAY);
    let hub_w = m.workload("StatefulSet", "edgecart-hub");
    let node_w = m.workload("DaemonSet", "edgecart-node");

    // The hub first (nodes dial it).
    let hub = Launch::build(&m, &hub_w, &[]).start("listening on grpc://");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", hub.addr))
        .expect("hub url")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to the hub: {e}\n{}", hub.describe()));

    // The hub's probes: Kubernetes' gRPC probe calls grpc.health.v1.Health/Check with the
    // probe's `service` ("" when unset) on the probe's port and wants SERVING.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for kind in PROBES {
        let probe = &hub_w.container[kind];
        assert!(probe.is_object(), "{}: no {kind}", hub_w.who);
        let grpc = &probe["grpc"];
        assert!(
            grpc.is_object(),
            "{}: {kind} is not a gRPC probe: {probe}",
            hub_w.who
        );
        hub.probe_port(&hub_w, &grpc["port"], kind);
        let service = grpc["service"].as_str().unwrap_or("").to_string();
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: Health/Check({service:?}): {e}"))
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{kind}: Health/Check({service:?})"
        );
    }

    // Prometheus scrapes the hub where its annotations say: a port it really listens on (its
    // metrics listener), serving the exposition format.
    let hub_ann = &m
        .objects
        .iter()
        .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == hub_w.name)
        .expect("StatefulSet")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        hub_ann["prometheus.io/scrape"], "true",
        "the hub's pods must be scraped"
    );
    let port: u16 = hub_ann["prometheus.io/port"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("the hub's prometheus.io/port");
    assert!(
        hub.launch.extra_listen_ports.contains(&port),
        "the hub's prometheus.io/port {port} is not a port it listens on ({:?})",
        hub.launch.extra_listen_ports
    );
    let metrics_addr = {
        let log = hub.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .find_map(|l| parse_addr(l, "metrics on http://"))
            .unwrap_or_else(|| panic!("the hub logged no metrics address\n{}", log.join("\n")))
    };
    let path = hub_ann["prometheus.io/path"].as_str().unwrap_or("/metrics");
    let r = reqwest::get(format!("http://127.0.0.1:{}{path}", metrics_addr.port()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET {path} on the hub's metrics port");
    assert!(
        r.text().await.unwrap().contains("# TYPE edgecart_hub_"),
        "{path}"
    );

    // The node, dialling the hub through the hub Service named in its settings.
    let upstream = Listener {
        workload: &hub_w,
        container_port: hub.launch.listen_port,
        bound: hub.addr,
    };
    let node_launch = Launch::build(&m, &node_w, &[upstream]);
    assert!(
        node_launch
            .substitutions
            .iter()
            .any(|s| s.contains(&format!("://{}", hub.addr))),
        "the node's settings name no Service that leads to the hub:\n{}",
        node_launch.describe()
    );
    let node = node_launch.start("listening on http://");
    let client = reqwest::Client::new();

    // Up and ready (within the time the startup probe allows, at most WAIT).
    let ready = node.url("/readyz");
    wait_until(
        WAIT,
        "the node's /readyz to answer 200",
        || async {
            let r = client.get(&ready).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
        || async { node.describe() },
    )
    .await;

    // Every httpGet probe answers 200 on the port the node listens on.
    for kind in PROBES {
        let probe = &node_w.container[kind];
        assert!(probe.is_object(), "{}: no {kind}", node_w.who);
        let get = &probe["httpGet"];
        assert!(
            get.is_object(),
            "{}: {kind} is not an httpGet probe",
            node_w.who
        );
        assert!(
            get["host"].is_null() && get["scheme"].as_str().unwrap_or("HTTP") == "HTTP",
            "{}: {kind} must probe the pod's IP over plain HTTP: {get}",
            node_w.who
        );
        node.probe_port(&node_w, &get["port"], kind);
        let path = get["path"].as_str().unwrap_or("/");
        let r = client.get(node.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{kind} GET {path}\n{}", node.describe());
    }

    // Prometheus scrapes what the annotations say.
    let ann = &m
        .objects
        .iter()
        .find(|o| o["kind"] == "DaemonSet" && o["metadata"]["name"] == node_w.name)
        .expect("DaemonSet")["spec"]["template"]["metadata"]["annotations"];
    if ann["prometheus.io/scrape"] == "true" {
        let port: u16 = ann["prometheus.io/port"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .expect("prometheus.io/port");
        node.probe_port(&node_w, &json!(port), "prometheus.io/port");
        let path = ann["prometheus.io/path"].as_str().unwrap_or("/metrics");
        let r = client.get(node.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        assert!(r.text().await.unwrap().contains("# TYPE"), "{path}");
    }

    // The node connects: the hub's admin API (token from the rendered Secret, via the hub's
    // environment) lists it under its Kubernetes node name as connected.
    let admin_token = hub
        .launch
        .env
        .get("EDGECART_ADMIN_TOKEN")
        .expect("the hub's manifest sets EDGECART_ADMIN_TOKEN")
        .clone();
    let bearer: tonic::metadata::AsciiMetadataValue =
        format!("Bearer {admin_token}").parse().expect("token");
    let nodes = pb::node_admin_client::NodeAdminClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        },
    );
    let info = wait_until(
        WAIT,
        "the hub to list the node as connected",
        || {
            let mut nodes = nodes.clone();
            async move {
                let list = nodes
                    .list_nodes(pb::ListNodesRequest {})
                    .await
                    .ok()?
                    .into_inner();
                list.nodes
                    .into_iter()
                    .find(|n| n.node_id == K8S_NODE_NAME && n.connected)
            }
        },
        || async { format!("{}\n{}", hub.describe(), node.describe()) },
    )
    .await;
    assert!(info.last_seen_unix_ms > 0, "{info:?}");

    // And the node's own view, for the bootstrap admin the manifests provision (optional): the
    // Secret's credentials log in, and the status names the node by its Kubernetes node name with
    // a hub configured and connected.
    let creds = (
        node.launch.env.get("EDGECART_ADMIN_EMAIL"),
        node.launch.env.get("EDGECART_ADMIN_PASSWORD"),
    );
    if let (Some(email), Some(password)) = creds {
        let r = client
            .post(node.url("/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "admin login with the manifests' Secret");
        let token = r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .expect("token")
            .to_string();
        let mut status = Value::Null;
        for _ in 0..200 {
            let r = client
                .get(node.url("/v1/sync/status"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                200,
                "GET /v1/sync/status as the bootstrap admin"
            );
            status = r.json().await.unwrap();
            if status["hub_connected"] == true {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(status["node_id"], K8S_NODE_NAME, "{status}");
        assert_eq!(
            status["mode"], "connected",
            "the node reached the hub: {status}"
        );
        assert_eq!(status["hub_connected"], true, "{status}");
    }

    // Each SQLite file is on its data volume, and nothing was written to the working
    // directory (the image's root filesystem, read-only in both manifests).
    for (run, w, file) in [
        (&hub, &hub_w, "edgecart-hub.db"),
        (&node, &node_w, "edgecart-node.db"),
    ] {
        assert!(
            run.launch
                .volumes
                .values()
                .any(|dir| dir.join(file).is_file()),
            "{}: {file} is not on any mounted volume\n{}",
            w.who,
            run.describe()
        );
        if w.container["securityContext"]["readOnlyRootFilesystem"] == true {
            let stray: Vec<_> = std::fs::read_dir(&run.launch.cwd)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(
                stray.is_empty(),
                "{}: wrote {stray:?} outside its volumes, on a read-only root filesystem",
                w.who
            );
        }
    }
}
