//! The bound on Hellos the hub handles at once, and the retry hint it gives beyond it.
//!
//! After a hub restart a whole fleet reconnects within a second or two. Each Hello costs a read
//! (the credential), a write (the store's cursors) and its share of the stream set-up. At most
//! `--hello-concurrency` are handled at once; up to [`WAITING_PER_SLOT`] times as many more wait
//! for a turn, for at most [`MAX_WAIT`] — a burst is absorbed. Beyond that (more waiting, or the
//! wait ran out: the hub is not keeping up) a store is answered `UNAVAILABLE` at once, with
//! `grpc-retry-pushback-ms` (gRPC's retry-pushback trailer) saying when to come back, instead of
//! piling up Hellos until they time out or the hub runs out of memory. The node waits at least
//! that long, plus jitter (docs/sync-protocol.md, "Reconnect storms").
//!
//! The hint grows with the refusals of the current second: the `k`-th refused store is told to
//! come back after about `k / capacity` Hello durations (the time the hub needs to get through
//! the ones ahead of it), at least [`MIN_RETRY`], at most [`MAX_RETRY`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::metadata::{MetadataMap, MetadataValue};

/// The metadata key of the retry hint (milliseconds), as gRPC's retry design names it.
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";
pub const MIN_RETRY: Duration = Duration::from_millis(100);
pub const MAX_RETRY: Duration = Duration::from_secs(5);
/// Hellos that may wait for a turn, per slot.
pub const WAITING_PER_SLOT: usize = 4;
/// How long a Hello waits for a turn before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

pub struct HelloGate {
    permits: Arc<Semaphore>,
    capacity: usize,
    /// Hellos waiting for a turn now.
    waiting: AtomicUsize,
    /// Average time a Hello holds its permit (µs), smoothed.
    average_us: AtomicU64,
    /// Refusals in the current one-second window: (window start, count). A std Mutex: held for
    /// two integer updates.
    refused: Mutex<(Instant, u64)>,
}

/// A Hello being handled; its slot is free again when dropped.
pub struct HelloPermit {
    _permit: OwnedSemaphorePermit,
    gate: Arc<HelloGate>,
    since: Instant,
}

impl HelloGate {
    pub fn new(capacity: usize) -> Arc<HelloGate> {
        let capacity = capacity.max(1);
        Arc::new(HelloGate {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            waiting: AtomicUsize::new(0),
            average_us: AtomicU64::new(20_000),
            refused: Mutex::new((Instant::now(), 0)),
        })
    }

    /// A slot for one Hello (waiting for one if there is room to wait), or how long the store
    /// should wait before it tries again.
    pub async fn enter(self: &Arc<Self>) -> Result<HelloPermit, Duration> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.capacity * WAITING_PER_SLOT {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(self.retry_after());
                }
                let waited =
                    tokio::time::timeout(MAX_WAIT, self.permits.clone().acquire_owned()).await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                match waited {
                    Ok(Ok(permit)) => permit,
                    // The wait ran out (or the gate closed): the hub is not keeping up.
                    _ => return Err(self.retry_after()),
                }
            }
        };
        self.report();
        Ok(HelloPermit {
            _permit: permit,
            gate: self.clone(),
            since: Instant::now(),
        })
    }

    /// Hellos being handled now.
    pub fn in_flight(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    fn retry_after(&self) -> Duration {
        let k = {
            let mut w = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if w.0.elapsed() >= Duration::from_secs(1) {
                *w = (Instant::now(), 0);
            }
            w.1 += 1;
            w.1
        };
        let average = Duration::from_micros(self.average_us.load(Ordering::Relaxed));
        average
            .mul_f64(1.0 + k as f64 / self.capacity as f64)
            .clamp(MIN_RETRY, MAX_RETRY)
    }

    fn report(&self) {
        crate::observability::hellos_in_flight(self.in_flight());
    }
}

impl std::fmt::Debug for HelloPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelloPermit")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

impl Drop for HelloPermit {
    fn drop(&mut self) {
        let took = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        // An exponential average over the last few dozen Hellos.
        let old = self.gate.average_us.load(Ordering::Relaxed);
        self.gate
            .average_us
            .store(old - old / 16 + took / 16, Ordering::Relaxed);
        // The permit itself is released after this body; count it as free already.
        crate::observability::hellos_in_flight(self.gate.in_flight().saturating_sub(1));
    }
}

/// The answer to a store beyond the bound: UNAVAILABLE, come back after `retry`.
pub fn busy(retry: Duration) -> Status {
    let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
    let mut metadata = MetadataMap::new();
    metadata.insert(RETRY_PUSHBACK, MetadataValue::from(ms));
    Status::with_metadata(
        tonic::Code::Unavailable,
        format!("the hub is busy with other stores connecting: retry in {ms} ms"),
        metadata,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_waits_for_a_turn_and_beyond_it_stores_are_refused_with_a_growing_hint() {
        let gate = HelloGate::new(2);
        let a = gate.enter().await.unwrap();
        let _b = gate.enter().await.unwrap();
        assert_eq!(gate.in_flight(), 2);
        // Waiting Hellos take the slots as they free up.
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter().await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        drop(a);
        assert!(
            waiter.await.unwrap().is_ok(),
            "a freed slot goes to the waiter"
        );
        let _c = gate.enter().await.unwrap();
        // Every slot busy and the wait queue full: refused at once, with growing hints.
        let mut queued = Vec::new();
        for _ in 0..2 * WAITING_PER_SLOT {
            let gate = gate.clone();
            queued.push(tokio::spawn(async move { gate.enter().await.map(|_| ()) }));
        }
        tokio::task::yield_now().await;
        let mut hints = Vec::new();
        for _ in 0..20 {
            hints.push(gate.enter().await.unwrap_err());
        }
        assert!(hints.windows(2).all(|w| w[0] <= w[1]), "{hints:?}");
        assert!(hints[0] >= MIN_RETRY && hints[19] <= MAX_RETRY);
        assert!(hints[19] > hints[0], "{hints:?}");
        // Those that waited give up after the longest wait, with a hint too.
        for q in queued {
            assert!(q.await.unwrap().is_err());
        }
    }

    #[test]
    fn the_hint_travels_in_the_status_metadata() {
        let status = busy(Duration::from_millis(1234));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status
                .metadata()
                .get(RETRY_PUSHBACK)
                .and_then(|v| v.to_str().ok()),
            Some("1234")
        );
    }
}
