//! A closed-loop HTTP/1.1 keep-alive load generator on raw `TcpStream`s.
//!
//! Each connection sends one pre-built request, reads the whole response (status line,
//! `Content-Length`, body) and sends the next: no pipelining, no per-request allocation. A full
//! client (reqwest) costs several times more CPU per request, and on a 2-core machine every cycle
//! the generator burns is taken from the server it measures.
//!
//! Only what the node's responses use is understood: `Content-Length` bodies. A chunked response
//! is reported as an error rather than misread.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a single request may take before its connection is dropped (and counted as an error).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response head accepted; a bigger one means we are not talking to what we think.
const MAX_HEAD: usize = 16 * 1024;
/// Upper bound on requests per connection, so that no loop depends on the clock alone.
const MAX_REQUESTS_PER_CONN: u64 = 50_000_000;
/// Largest number of latencies kept per connection (about 4 MB at most for 64 connections).
const MAX_SAMPLES_PER_CONN: usize = 16_384;

/// One load run: `connections` clients, each looping on `request` for `warmup + measure`.
pub struct Load {
    pub addr: SocketAddr,
    /// The complete request, head and body, sent as is.
    pub request: Arc<[u8]>,
    /// The status counted as a success; any other status is tallied by code.
    pub expect: u16,
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

/// What the measurement window saw (warm-up responses are not counted).
#[derive(Default)]
pub struct Tally {
    pub ok: u64,
    /// Every response, warm-up included (to relate CPU time measured over the whole run).
    pub total: u64,
    pub other: BTreeMap<u16, u64>,
    /// Connection or protocol errors, counted over the whole run (warm-up included).
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latencies of the counted responses, in microseconds (sampled when very many).
    latencies_us: Vec<u32>,
    pub window: Duration,
    /// Wall time of the whole run, warm-up included.
    pub elapsed: Duration,
}

impl Tally {
    pub fn ok_per_sec(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    pub fn non_ok(&self) -> u64 {
        self.other.values().sum()
    }

    /// The `q`-quantile of the latencies in milliseconds (0 when nothing was counted).
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let idx = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[idx] as f64 / 1000.0
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.total += other.total;
        for (status, n) in other.other {
            *self.other.entry(status).or_default() += n;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

impl Load {
    /// Runs the load on the current runtime and returns the merged tally.
    pub async fn run(&self) -> Tally {
        let start = Instant::now();
        let window = (start + self.warmup, start + self.warmup + self.measure);
        let tasks: Vec<_> = (0..self.connections)
            .map(|_| tokio::spawn(client(self.addr, self.request.clone(), self.expect, window)))
            .collect();
        let mut total = Tally {
            window: self.measure,
            ..Tally::default()
        };
        for task in tasks {
            match task.await {
                Ok(tally) => total.merge(tally),
                Err(e) => {
                    total.errors += 1;
                    total.first_error.get_or_insert(e.to_string());
                }
            }
        }
        total.elapsed = start.elapsed();
        total.latencies_us.sort_unstable();
        total
    }
}

/// One closed-loop client: reconnects after an error until the window ends.
async fn client(
    addr: SocketAddr,
    request: Arc<[u8]>,
    expect: u16,
    window: (Instant, Instant),
) -> Tally {
    let (from, until) = window;
    let mut tally = Tally::default();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut sent = 0u64;
    'connect: while Instant::now() < until && sent < MAX_REQUESTS_PER_CONN {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                tally.note_error(format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        buf.clear();
        while sent < MAX_REQUESTS_PER_CONN {
            let began = Instant::now();
            if began >= until {
                break 'connect;
            }
            sent += 1;
            let exchange = async {
                stream.write_all(&request).await?;
                read_response(&mut stream, &mut buf).await
            };
            let head = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Ok(Ok(head)) => head,
                Ok(Err(e)) => {
                    tally.note_error(e.to_string());
                    continue 'connect;
                }
                Err(_) => {
                    tally.note_error("request timed out".into());
                    continue 'connect;
                }
            };
            let done = Instant::now();
            tally.total += 1;
            if done >= from && done < until {
                if head.status == expect {
                    tally.ok += 1;
                    if tally.latencies_us.len() < MAX_SAMPLES_PER_CONN {
                        let us = (done - began).as_micros().min(u32::MAX as u128) as u32;
                        tally.latencies_us.push(us);
                    }
                } else {
                    *tally.other.entry(head.status).or_default() += 1;
                }
            }
            if head.close {
                continue 'connect;
            }
        }
    }
    tally
}

impl Tally {
    fn note_error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

struct Head {
    status: u16,
    close: bool,
}

/// Reads one response into `buf` and consumes it, leaving any bytes after it in place.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Head> {
    loop {
        if let Some(end) = find_head_end(buf) {
            let (head, body_len) = parse_head(&buf[..end])?;
            let total = end + 4 + body_len;
            while buf.len() < total {
                if stream.read_buf(buf).await? == 0 {
                    return Err(eof());
                }
            }
            buf.drain(..total);
            return Ok(head);
        }
        if buf.len() > MAX_HEAD {
            return Err(bad("response head too large"));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(eof());
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Parses the status line and the headers that matter; returns the head and the body length.
fn parse_head(head: &[u8]) -> io::Result<(Head, usize)> {
    let text = std::str::from_utf8(head).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("malformed status line"))?;
    let mut len = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("malformed header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            len = Some(value.parse().map_err(|_| bad("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked responses are not supported by this client"));
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    // 1xx, 204 and 304 have no body; everything else the node sends carries Content-Length.
    let len = match (len, status) {
        (Some(n), _) => n,
        (None, 100..=199 | 204 | 304) => 0,
        (None, _) => return Err(bad("response without Content-Length")),
    };
    Ok((Head { status, close }, len))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection")
}

/// Builds a complete HTTP/1.1 keep-alive request.
pub fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Arc<[u8]> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive\r\n");
    if let Some(token) = token {
        r.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    match json {
        Some(body) => {
            r.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        None => r.push_str("\r\n"),
    }
    Arc::from(r.into_bytes())
}

/// Sends `request` once on a fresh connection and returns the status and body: the bench checks
/// with it that a pre-built request gets the answer it expects before loading the server with it.
pub async fn once(addr: SocketAddr, request: &[u8]) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        if let Some(end) = find_head_end(&buf) {
            let (head, len) = parse_head(&buf[..end])?;
            while buf.len() < end + 4 + len {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(eof());
                }
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            return Ok((head.status, body));
        }
        if buf.len() > MAX_HEAD || stream.read_buf(&mut buf).await? == 0 {
            return Err(bad("no response head"));
        }
    }
}
