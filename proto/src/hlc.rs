//! Hybrid logical clock: orders last-writer-wins versions across replicas whose wall clocks
//! disagree (Kulkarni et al., "Logical Physical Clocks", 2014).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ids::{ActorId, IdError};

/// How far ahead of our own wall clock a received timestamp may pull this clock: one hour.
///
/// Observing is what makes an HLC converge, but a peer whose clock is wildly wrong (or a
/// forged timestamp near `u64::MAX`) would otherwise drag every clock in the fleet into the
/// far future for good, since HLCs never move back. The decision: a remote physical time
/// beyond `wall + MAX_DRIFT_MS` is still observed, but clamped to `wall + MAX_DRIFT_MS`.
/// The cost is bounded and local: a write made here right after such an observation may
/// order before that one bogus remote version (so the bogus version wins LWW until wall time
/// catches up). Ignoring the timestamp entirely was rejected because clamping still keeps
/// this clock as close as it safely can to the remote's; rejecting the whole message was
/// rejected because it would stall replication on a clock problem. Callers should log it:
/// see [`Clock::exceeds_max_drift`].
pub const MAX_DRIFT_MS: u64 = 60 * 60 * 1000;

/// One HLC reading. `Ord` is `(physical_ms, counter, actor)`: the actor breaks ties, so two
/// distinct replicas never produce equal timestamps.
///
/// Text form (`Display` / `FromStr`, and serde) is `"{physical_ms:016x}-{counter:08x}-{actor}"`:
/// the fixed-width lowercase hex makes byte-wise comparison (SQLite TEXT order) agree with
/// `Ord`, so versions can be compared in SQL (`WHERE version > ?`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub physical_ms: u64,
    pub counter: u32,
    pub actor: ActorId,
}

/// Why a string is not a [`Timestamp`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum HlcError {
    #[error("timestamp must look like <16 hex>-<8 hex>-<actor>")]
    Malformed,
    #[error("timestamp actor: {0}")]
    Actor(#[from] IdError),
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016x}-{:08x}-{}",
            self.physical_ms, self.counter, self.actor
        )
    }
}

/// Parses exactly `width` lowercase hex digits. Stricter than `from_str_radix` (which takes
/// a `+` sign and uppercase) so each timestamp has exactly one text form.
fn parse_hex(s: &str, width: usize) -> Result<u64, HlcError> {
    if s.len() != width || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(HlcError::Malformed);
    }
    u64::from_str_radix(s, 16).map_err(|_| HlcError::Malformed)
}

impl FromStr for Timestamp {
    type Err = HlcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, '-');
        let (Some(physical), Some(counter), Some(actor)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(HlcError::Malformed);
        };
        let physical_ms = parse_hex(physical, 16)?;
        let counter = u32::try_from(parse_hex(counter, 8)?).map_err(|_| HlcError::Malformed)?;
        Ok(Timestamp {
            physical_ms,
            counter,
            actor: ActorId::parse(actor)?,
        })
    }
}

impl TryFrom<String> for Timestamp {
    type Error = HlcError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Timestamp> for String {
    fn from(ts: Timestamp) -> String {
        ts.to_string()
    }
}

// serde through the text form (not a derived struct) so JSON, SQL and logs all carry the same
// sortable string. Written out instead of `#[serde(try_from, into)]` because `into` would force
// a clone of every timestamp on serialization.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The HLC of one replica. Cheap to share (`Arc<Clock>`); all methods take `&self`.
pub struct Clock {
    actor: ActorId,
    now_ms: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The highest `(physical_ms, counter)` issued or observed. A std `Mutex`, not tokio's:
    /// the critical section is a few integer operations and never spans an `.await`, and
    /// the clock is also called from synchronous code (storage functions on the writer
    /// thread), where an async lock cannot be taken.
    last: Mutex<(u64, u32)>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("actor", &self.actor)
            .field("last", &self.last_state())
            .finish_non_exhaustive()
    }
}

fn system_now_ms() -> u64 {
    // A wall clock before 1970 or beyond u64 ms is a broken host; the HLC stays monotonic
    // regardless, so degrade to the nearest representable value instead of panicking.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Clock {
    /// A clock reading the system wall clock.
    pub fn new(actor: ActorId) -> Clock {
        Clock::with_time_source(actor, system_now_ms)
    }

    /// A clock reading milliseconds from `now_ms`: for tests and clock-skew simulation.
    pub fn with_time_source(
        actor: ActorId,
        now_ms: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Clock {
        Clock {
            actor,
            now_ms: Box::new(now_ms),
            last: Mutex::new((0, 0)),
        }
    }

    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    fn last_state(&self) -> std::sync::MutexGuard<'_, (u64, u32)> {
        // Poisoning cannot leave the pair half-written (it is assigned whole), so a poisoned
        // lock is still a valid clock; recovering beats turning one panic into many.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A timestamp strictly greater than every timestamp this clock returned or observed.
    pub fn now(&self) -> Timestamp {
        // Read the time source outside the lock: a racing thread that read an older wall
        // time simply takes the counter branch below, so ordering is unaffected.
        let wall = (self.now_ms)();
        let mut last = self.last_state();
        let next = if wall > last.0 {
            (wall, 0)
        } else {
            successor(*last)
        };
        *last = next;
        Timestamp {
            physical_ms: next.0,
            counter: next.1,
            actor: self.actor.clone(),
        }
    }

    /// Advances this clock past a timestamp received from another replica, so that every
    /// later [`Clock::now`] orders after it (the HLC receive rule; the increment happens on
    /// the next `now`). A remote physical time more than [`MAX_DRIFT_MS`] ahead of our wall
    /// clock is clamped to that bound; see [`MAX_DRIFT_MS`] for why.
    pub fn observe(&self, remote: &Timestamp) {
        let bound = (self.now_ms)().saturating_add(MAX_DRIFT_MS);
        let seen = if remote.physical_ms > bound {
            (bound, 0)
        } else {
            (remote.physical_ms, remote.counter)
        };
        let mut last = self.last_state();
        if seen > *last {
            *last = seen;
        }
    }

    /// Whether `remote` is further ahead of our wall clock than [`MAX_DRIFT_MS`], i.e.
    /// whether [`Clock::observe`] would clamp it. For callers that want to log or count it.
    pub fn exceeds_max_drift(&self, remote: &Timestamp) -> bool {
        remote.physical_ms > (self.now_ms)().saturating_add(MAX_DRIFT_MS)
    }
}

/// The next `(physical_ms, counter)` after `last` when the wall clock has not moved past it.
/// When the counter is exhausted (2^32 readings in one millisecond) borrow the next
/// millisecond rather than wrap. Only at `(u64::MAX, u32::MAX)` (unreachable from a sane time
/// source, given the drift clamp) does this repeat a value instead of panicking.
fn successor(last: (u64, u32)) -> (u64, u32) {
    match last.1.checked_add(1) {
        Some(counter) => (last.0, counter),
        None if last.0 < u64::MAX => (last.0 + 1, 0),
        None => last,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use proptest::prelude::*;

    use super::*;

    fn actor(s: &str) -> ActorId {
        ActorId::parse(s).unwrap()
    }

    fn ts(physical_ms: u64, counter: u32, a: &str) -> Timestamp {
        Timestamp {
            physical_ms,
            counter,
            actor: actor(a),
        }
    }

    /// A clock whose wall time the test sets by hand.
    fn manual_clock(a: &str, start: u64) -> (Clock, Arc<AtomicU64>) {
        let wall = Arc::new(AtomicU64::new(start));
        let source = Arc::clone(&wall);
        let clock = Clock::with_time_source(actor(a), move || source.load(Ordering::SeqCst));
        (clock, wall)
    }

    #[test]
    fn text_form_and_round_trip() {
        let t = ts(0x18f_0000_0001, 7, "node-1");
        assert_eq!(t.to_string(), "0000018f00000001-00000007-node-1");
        assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t.clone()));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#""0000018f00000001-00000007-node-1""#
        );
        assert_eq!(
            serde_json::from_str::<Timestamp>(r#""0000018f00000001-00000007-node-1""#).unwrap(),
            t
        );
    }

    #[test]
    fn rejects_non_canonical_text() {
        for bad in [
            "",
            "0000018f00000001-00000007",
            "0000018f00000001-00000007-",
            "18f00000001-00000007-a",
            "0000018F00000001-00000007-a",
            "+000018f00000001-00000007-a",
            "0000018f00000001-0000007-a",
            "0000018f00000001-00000007-a b",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Timestamp>(r#""nope""#).is_err());
    }

    #[test]
    fn monotonic_when_time_goes_backwards() {
        let (clock, wall) = manual_clock("a", 1_000);
        let t1 = clock.now();
        wall.store(500, Ordering::SeqCst);
        let t2 = clock.now();
        let t3 = clock.now();
        assert!(t1 < t2 && t2 < t3, "{t1} {t2} {t3}");
        assert_eq!((t3.physical_ms, t3.counter), (1_000, 2));
        wall.store(2_000, Ordering::SeqCst);
        assert_eq!(clock.now(), ts(2_000, 0, "a"));
    }

    #[test]
    fn counter_exhaustion_borrows_the_next_millisecond() {
        assert_eq!(successor((5, u32::MAX)), (6, 0));
        assert_eq!(successor((u64::MAX, u32::MAX)), (u64::MAX, u32::MAX));
    }

    #[test]
    fn observe_future_remote_keeps_later_now_above_it() {
        let (clock, _wall) = manual_clock("a", 1_000);
        let remote = ts(50_000, 9, "b");
        clock.observe(&remote);
        let t = clock.now();
        assert!(t > remote, "{t} vs {remote}");
        assert_eq!((t.physical_ms, t.counter), (50_000, 10));
        // Observing an older timestamp changes nothing.
        clock.observe(&ts(10, 0, "b"));
        assert!(clock.now() > t);
    }

    #[test]
    fn far_future_remote_is_clamped() {
        let (clock, _wall) = manual_clock("a", 1_000);
        let bogus = ts(u64::MAX, u32::MAX, "b");
        assert!(clock.exceeds_max_drift(&bogus));
        clock.observe(&bogus);
        let t = clock.now();
        assert_eq!((t.physical_ms, t.counter), (1_000 + MAX_DRIFT_MS, 1));
        assert!(!clock.exceeds_max_drift(&ts(1_000 + MAX_DRIFT_MS, 0, "b")));
    }

    #[test]
    fn system_clock_is_plausible() {
        let clock = Clock::new(ActorId::hub());
        let t = clock.now();
        assert!(t.physical_ms > 1_600_000_000_000, "{t}");
        assert_eq!(&t.actor, clock.actor());
    }

    fn arb_timestamp() -> impl Strategy<Value = Timestamp> {
        // Small ranges as well as full ones, so that ties on the leading fields are common.
        (
            prop_oneof![0u64..4, any::<u64>()],
            prop_oneof![0u32..4, any::<u32>()],
            "[A-Za-z0-9._-]{1,8}",
        )
            .prop_map(|(physical_ms, counter, a)| Timestamp {
                physical_ms,
                counter,
                actor: actor(&a),
            })
    }

    #[derive(Debug, Clone)]
    enum Step {
        Now,
        SetWall(u64),
        Observe { physical_ms: u64, counter: u32 },
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Now),
            1 => (0u64..20_000).prop_map(Step::SetWall),
            1 => (0u64..20_000, prop_oneof![0u32..3, Just(u32::MAX)])
                .prop_map(|(physical_ms, counter)| Step::Observe { physical_ms, counter }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn text_order_equals_ord(a in arb_timestamp(), b in arb_timestamp()) {
            prop_assert_eq!(a.cmp(&b), a.to_string().cmp(&b.to_string()));
            prop_assert_eq!(a.to_string().parse::<Timestamp>(), Ok(a));
        }

        #[test]
        fn now_strictly_increases_under_any_interleaving(
            steps in proptest::collection::vec(arb_step(), 1..64)
        ) {
            let (clock, wall) = manual_clock("a", 10_000);
            let mut last: Option<Timestamp> = None;
            let mut observed: Option<Timestamp> = None;
            for step in steps {
                match step {
                    Step::Now => {
                        let t = clock.now();
                        if let Some(prev) = &last {
                            prop_assert!(t > *prev, "{} after {}", t, prev);
                        }
                        if let Some(seen) = &observed {
                            // All observed values stay within MAX_DRIFT_MS, so none is clamped.
                            prop_assert!(
                                (t.physical_ms, t.counter) > (seen.physical_ms, seen.counter),
                                "{} after observing {}", t, seen
                            );
                        }
                        last = Some(t);
                    }
                    Step::SetWall(ms) => wall.store(ms, Ordering::SeqCst),
                    Step::Observe { physical_ms, counter } => {
                        let remote = ts(physical_ms, counter, "b");
                        clock.observe(&remote);
                        if observed.as_ref().is_none_or(|o| remote > *o) {
                            observed = Some(remote);
                        }
                    }
                }
            }
        }
    }
}
