//! A fault-injecting TCP proxy for one node's link to the hub.
//!
//! Every connection is pumped by hand, chunk by chunk, so a fault can act between any two
//! chunks: [`Fault::Down`] resets every open connection and refuses new ones (a partition),
//! [`Fault::Stall`] holds bytes in both directions without closing anything (a black hole),
//! [`Fault::Delay`] adds latency to every chunk, and [`Fault::LoseAcks`] resets the connection
//! right after the node sent something, when the hub's answer comes back — the hub has
//! committed the batch (it acknowledges only after commit), the node never hears it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the link does now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Bytes flow.
    None,
    /// Connections are reset and new ones refused.
    Down,
    /// Bytes are held (nothing is closed) until the fault changes.
    Stall,
    /// Every chunk waits this long before it is forwarded.
    Delay(Duration),
    /// Each time the hub answers something the node sent, with this probability (percent)
    /// the answer is lost: the connection is reset instead.
    LoseAcks(u8),
}

/// Counters of what the proxy did, for the report and for checking a fault really happened.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub connections: AtomicU64,
    pub resets: AtomicU64,
    pub refused: AtomicU64,
    pub acks_lost: AtomicU64,
}

/// One node's link to the hub.
pub struct FaultProxy {
    port: u16,
    fault: watch::Sender<Fault>,
    pub stats: Arc<ProxyStats>,
}

impl FaultProxy {
    /// Listens on an OS-chosen port and forwards to `target`; `seed` drives the random choices.
    pub async fn start(target: SocketAddr, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let (fault, watch) = watch::channel(Fault::None);
        let stats = Arc::new(ProxyStats::default());
        let st = stats.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok((inbound, _)) = listener.accept().await {
                n += 1;
                if *watch.borrow() == Fault::Down {
                    st.refused.fetch_add(1, Ordering::Relaxed);
                    reset(inbound);
                    continue;
                }
                st.connections.fetch_add(1, Ordering::Relaxed);
                let (watch, st) = (watch.clone(), st.clone());
                let rng = StdRng::seed_from_u64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        reset(inbound);
                        return;
                    };
                    pump(inbound, upstream, watch, st, rng).await;
                });
            }
        });
        FaultProxy { port, fault, stats }
    }

    /// The URL a node uses as `--hub-url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }
}

/// Closes a socket with a TCP reset (linger 0) rather than an orderly FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Why a connection ended.
enum End {
    Closed,
    Reset,
    AckLost,
}

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    ToHub,
    ToNode,
}

/// Shared between the two directions of one connection.
struct Conn {
    start: Instant,
    /// When the node last sent a chunk (ms since `start` + 1), 0 when the hub has answered since.
    node_sent_at: AtomicU64,
    rng: std::sync::Mutex<StdRng>,
}

async fn pump(
    inbound: TcpStream,
    upstream: TcpStream,
    watch: watch::Receiver<Fault>,
    stats: Arc<ProxyStats>,
    rng: StdRng,
) {
    for s in [&inbound, &upstream] {
        let _ = s.set_nodelay(true);
        // Whatever ends this connection, both peers see a reset, as with a failed link.
        let _ = s.set_zero_linger();
    }
    let (node_r, node_w) = inbound.into_split();
    let (hub_r, hub_w) = upstream.into_split();
    let conn = Conn {
        start: Instant::now(),
        node_sent_at: AtomicU64::new(0),
        rng: std::sync::Mutex::new(rng),
    };
    let end = tokio::select! {
        e = forward(node_r, hub_w, watch.clone(), &conn, Dir::ToHub) => e,
        e = forward(hub_r, node_w, watch, &conn, Dir::ToNode) => e,
    };
    match end {
        End::Closed => {}
        End::Reset => {
            stats.resets.fetch_add(1, Ordering::Relaxed);
        }
        End::AckLost => {
            stats.acks_lost.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Dropping the halves closes both sockets (with a reset: zero linger).
}

async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut watch: watch::Receiver<Fault>,
    conn: &Conn,
    dir: Dir,
) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return End::Closed,
                Ok(n) => n,
            },
            _ = watch.wait_for(|f| *f == Fault::Down) => return End::Reset,
        };
        let fault = loop {
            let fault = *watch.borrow_and_update();
            match fault {
                Fault::Down => return End::Reset,
                Fault::Stall => {
                    if watch.changed().await.is_err() {
                        return End::Closed;
                    }
                }
                Fault::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break fault;
                }
                Fault::None | Fault::LoseAcks(_) => break fault,
            }
        };
        let age = conn.start.elapsed().as_millis() as u64 + 1;
        match dir {
            Dir::ToHub => conn.node_sent_at.store(age, Ordering::Relaxed),
            Dir::ToNode => {
                let sent = conn.node_sent_at.swap(0, Ordering::Relaxed);
                // Past the connection's handshake (the first half second), the hub's first
                // answer to something the node sent is dropped with the connection.
                if let Fault::LoseAcks(p) = fault
                    && sent > 500
                    && conn
                        .rng
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .random_range(0..100u8)
                        < p
                {
                    return End::AckLost;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return End::Closed;
        }
    }
}
