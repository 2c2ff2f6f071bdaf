//! Prometheus helpers for the cross-process tests: parse a scrape, lint it with
//! `promtool check metrics` (Debian package `prometheus`), and list the metrics that the alert
//! rules and dashboards in `deploy/monitoring/` name.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use reqwest::Client;

/// One scrape: the text, and its samples by (name, sorted labels).
pub struct Scrape {
    pub text: String,
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Scrape {
    pub fn parse(text: String) -> Scrape {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label=value");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            samples.insert((name.to_string(), labels), value.parse().expect("a number"));
        }
        Scrape { text, samples }
    }

    /// The sample of `name` whose labels include `labels`; the sum if several match.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, v)| *v)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in\n{}", self.text))
    }

    /// Metric family names (from the `# TYPE` lines).
    pub fn families(&self) -> BTreeSet<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }
}

fn promtool() -> &'static str {
    "promtool"
}

/// `promtool check metrics` must accept the exposition without a single complaint.
pub fn lint(what: &str, text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`) must be installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics rejects the {what} metrics:\n{}{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

pub async fn scrape(client: &Client, url: &str) -> Option<Scrape> {
    let r = client.get(url).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    Some(Scrape::parse(r.text().await.ok()?))
}

pub async fn scrape_linted(client: &Client, what: &str, url: &str) -> Scrape {
    let s = scrape(client, url)
        .await
        .unwrap_or_else(|| panic!("GET {url} failed"));
    lint(what, &s.text);
    s
}

/// Polls the node's metrics until `ok` holds.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every `edgecart_…` metric named in the alert rules and dashboards (their unit tests excluded:
/// those feed made-up series on purpose), histogram suffixes folded into the family.
pub fn metrics_named_in_monitoring() -> BTreeMap<String, PathBuf> {
    let mut named = BTreeMap::new();
    let mut stack = vec![repo_root().join("deploy/monitoring")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy/monitoring") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let is_config = name.ends_with(".json")
                || (name.ends_with(".yml") || name.ends_with(".yaml")) && !name.contains("test");
            if !is_config {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let bytes = text.as_bytes();
            let mut i = 0;
            while let Some(at) = text[i..].find("edgecart_") {
                let start = i + at;
                let end = start
                    + text[start..]
                        .bytes()
                        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
                        .count();
                // Part of a longer word (a file or job name such as `edgecart_node`)? Skip it.
                let standalone = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric());
                let mut metric = text[start..end].to_string();
                for suffix in ["_bucket", "_sum", "_count"] {
                    if let Some(base) = metric.strip_suffix(suffix) {
                        metric = base.to_string();
                    }
                }
                if standalone {
                    named.entry(metric).or_insert_with(|| path.clone());
                }
                i = end.max(start + 1);
            }
        }
    }
    named
}
