//! How a store paces its reconnects to the hub (the node's sync client, and the load tool's
//! simulated stores, which reconnect the same way).
//!
//! Exponential back-off with full jitter: the pause is drawn uniformly from zero to a ceiling
//! that starts at [`MIN_BACKOFF`] and doubles with every failed attempt, up to
//! [`EARLY_MAX_BACKOFF`] during the first [`EARLY_PHASE`] of an outage (a store is back within
//! about a second of the link returning) and [`MAX_BACKOFF`] after that (a long outage does not
//! hammer the hub). Full jitter spreads a fleet that lost the hub at the same instant evenly over
//! the ceiling, instead of bunching it around it.
//!
//! A hub that is too busy to take a Hello answers `UNAVAILABLE` with a retry hint
//! (`grpc-retry-pushback-ms`, docs/sync-protocol.md): the node then waits at least that long,
//! plus up to as much again of jitter, so the stores told the same hint do not come back
//! together.

use std::time::Duration;

use std::time::Instant;

use rand::Rng;

pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
pub const EARLY_MAX_BACKOFF: Duration = Duration::from_millis(500);
pub const EARLY_PHASE: Duration = Duration::from_secs(60);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The metadata key of the hub's retry hint, in milliseconds.
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";
/// A hint longer than this is taken as this (a broken or hostile hub cannot park the store).
pub const MAX_HINT: Duration = Duration::from_secs(60);

/// The reconnect pacing of one sync client.
#[derive(Debug)]
pub struct Backoff {
    ceiling: Duration,
    outage_since: Instant,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff {
            ceiling: MIN_BACKOFF,
            outage_since: Instant::now(),
        }
    }

    /// A session was established: the next failure starts a new outage.
    pub fn connected(&mut self) {
        self.ceiling = MIN_BACKOFF;
        self.outage_since = Instant::now();
    }

    /// The pause before the next attempt, after a failed one; `hint` is the hub's retry hint,
    /// if it gave one.
    pub fn pause(&mut self, hint: Option<Duration>) -> Duration {
        let cap = if self.outage_since.elapsed() < EARLY_PHASE {
            EARLY_MAX_BACKOFF
        } else {
            MAX_BACKOFF
        };
        let ceiling = self.ceiling.min(cap);
        self.ceiling = (self.ceiling * 2).min(MAX_BACKOFF);
        let mut rng = rand::rng();
        match hint {
            Some(hint) => hint.min(MAX_HINT).mul_f64(rng.random_range(1.0..2.0)),
            None => ceiling.mul_f64(rng.random_range(0.0..=1.0)),
        }
    }
}

/// The retry hint in a status from the hub (`grpc-retry-pushback-ms`), if any.
pub fn retry_hint(status: &tonic::Status) -> Option<Duration> {
    let ms: u64 = status
        .metadata()
        .get(RETRY_PUSHBACK)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_full_jitter_under_a_doubling_ceiling() {
        let mut b = Backoff::new();
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            ceilings.push(b.ceiling.min(EARLY_MAX_BACKOFF));
            let p = b.pause(None);
            assert!(p <= *ceilings.last().unwrap(), "{p:?}");
        }
        assert_eq!(ceilings[0], MIN_BACKOFF);
        assert_eq!(ceilings[1], MIN_BACKOFF * 2);
        assert_eq!(*ceilings.last().unwrap(), EARLY_MAX_BACKOFF);
        // Spread over the whole range, not bunched near the ceiling.
        let pauses: Vec<Duration> = (0..400).map(|_| b.pause(None)).collect();
        let low = pauses
            .iter()
            .filter(|p| **p < EARLY_MAX_BACKOFF / 4)
            .count();
        assert!(
            (40..=160).contains(&low),
            "{low} of 400 in the lowest quarter"
        );
        b.connected();
        assert!(b.pause(None) <= MIN_BACKOFF);
    }

    #[test]
    fn a_retry_hint_is_waited_for_with_jitter_on_top() {
        let mut b = Backoff::new();
        let hint = Duration::from_millis(800);
        let pauses: Vec<Duration> = (0..200).map(|_| b.pause(Some(hint))).collect();
        assert!(pauses.iter().all(|p| *p >= hint && *p < hint * 2));
        assert!(pauses.iter().any(|p| *p > hint * 3 / 2));
        assert!(b.pause(Some(Duration::from_secs(3600))) < MAX_HINT * 2);

        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(RETRY_PUSHBACK, "250".parse().unwrap());
        let status = tonic::Status::with_metadata(tonic::Code::Unavailable, "busy", metadata);
        assert_eq!(retry_hint(&status), Some(Duration::from_millis(250)));
        assert_eq!(retry_hint(&tonic::Status::unavailable("down")), None);
    }
}
