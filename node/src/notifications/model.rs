//! Channels and the webhook retry schedule.

use rand::Rng;

/// Where a notification goes. `in_app` is delivered by being stored; `email` and `push` are
/// queued for the webhook worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    InApp,
    Email,
    Push,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "in_app",
            Channel::Email => "email",
            Channel::Push => "push",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "in_app" => Some(Channel::InApp),
            "email" => Some(Channel::Email),
            "push" => Some(Channel::Push),
            _ => None,
        }
    }
}

/// When a failed webhook delivery is tried again.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Nominal delay after the first failure, in ms; it doubles with each further failure.
    pub base_ms: u64,
    /// Cap on the nominal delay, in ms.
    pub max_ms: u64,
}

impl Backoff {
    /// The nominal delay after `failures` (>= 1) failed attempts: `base · 2^(failures-1)`,
    /// capped at `max`.
    pub fn nominal_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(62);
        self.base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms)
    }

    /// The delay actually waited: half the nominal delay fixed, the other half random ("equal
    /// jitter"). Why jitter: when a receiver comes back after an outage, the notifications that
    /// failed together would otherwise all retry in the same instant, and keep doing so; the
    /// fixed half keeps a retry from coming back much sooner than the schedule says.
    pub fn delay_ms(&self, failures: u32, rng: &mut impl Rng) -> u64 {
        let nominal = self.nominal_ms(failures);
        let half = nominal / 2;
        half + rng.random_range(0..=nominal - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip() {
        for c in [Channel::InApp, Channel::Email, Channel::Push] {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("sms"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let b = Backoff {
            base_ms: 500,
            max_ms: 10_000,
        };
        let nominal: Vec<u64> = (1..=7).map(|n| b.nominal_ms(n)).collect();
        assert_eq!(nominal, [500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(b.nominal_ms(1_000), 10_000, "no overflow on huge counts");
        let mut rng = rand::rng();
        for failures in 1..=10 {
            let n = b.nominal_ms(failures);
            for _ in 0..100 {
                let d = b.delay_ms(failures, &mut rng);
                assert!(d >= n / 2 && d <= n, "{d} outside [{}, {n}]", n / 2);
            }
        }
        let zero = Backoff {
            base_ms: 0,
            max_ms: 0,
        };
        assert_eq!(zero.delay_ms(3, &mut rng), 0);
    }
}
