//! Reconnect delays: exponential backoff with full jitter.
//!
//! After the `n`-th failed attempt in a row (counting from 0) the client waits
//! a delay drawn uniformly from `[0, min(max_delay, initial_delay *
//! multiplier^n)]` ("full jitter"). Full jitter spreads a crowd of clients
//! that lost the same server over the whole window instead of having them all
//! retry at the same instants, which is what brings a restarted server down a
//! second time. The cap keeps a long outage from growing the delay without
//! bound. A successful handshake resets the count.
//!
//! This module is pure arithmetic (plus a random draw) so that its bounds are
//! unit-tested without a clock.

use std::time::Duration;

use rand::Rng;

use crate::config::ReconnectPolicy;

/// The state of the reconnect schedule: how many attempts failed in a row.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: ReconnectPolicy,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// Forgets the failures (a connection was established).
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The number of delays handed out since the last reset.
    pub(crate) fn attempt(&self) -> u32 {
        self.failures
    }

    /// The upper bound of the delay before attempt `failures` (0-based):
    /// `min(max_delay, initial_delay * multiplier^failures)`.
    pub(crate) fn ceiling(policy: &ReconnectPolicy, failures: u32) -> Duration {
        let initial = policy.initial_delay.as_secs_f64();
        let max = policy.max_delay.as_secs_f64();
        let multiplier = if policy.multiplier.is_finite() && policy.multiplier >= 1.0 {
            policy.multiplier
        } else {
            1.0
        };
        // powi overflows to +inf for large exponents, which min() then caps.
        let exponent = i32::try_from(failures).unwrap_or(i32::MAX);
        let ceiling = (initial * multiplier.powi(exponent)).min(max);
        if ceiling.is_finite() && ceiling > 0.0 {
            Duration::from_secs_f64(ceiling)
        } else {
            Duration::ZERO
        }
    }

    /// The delay before the next attempt, and counts one more failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = Self::ceiling(&self.policy, self.failures);
        self.failures = self.failures.saturating_add(1);
        jitter(ceiling, &mut rand::rng())
    }

    /// A delay within the initial delay (full jitter), counted as a failure
    /// so that the next delay grows if this attempt fails too.
    pub(crate) fn first_delay(&mut self) -> Duration {
        self.failures = self.failures.max(1);
        jitter(Self::ceiling(&self.policy, 0), &mut rand::rng())
    }

    /// Counts a failure without waiting (a reconnect that goes out at once,
    /// e.g. after a ping timeout), so that the next delay still grows.
    pub(crate) fn skip(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }
}

/// A delay drawn uniformly from `[0, ceiling]`.
fn jitter(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    if ceiling.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(initial_ms: u64, multiplier: f64, max_ms: u64) -> ReconnectPolicy {
        ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_millis(initial_ms),
            multiplier,
            max_delay: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn ceiling_grows_geometrically_and_is_capped() {
        let p = policy(500, 1.5, 30_000);
        assert_eq!(Backoff::ceiling(&p, 0), Duration::from_millis(500));
        assert_eq!(Backoff::ceiling(&p, 1), Duration::from_millis(750));
        assert_eq!(Backoff::ceiling(&p, 2), Duration::from_millis(1125));
        assert_eq!(Backoff::ceiling(&p, 20), Duration::from_secs(30));
        assert_eq!(Backoff::ceiling(&p, u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn odd_multipliers_do_not_shrink_or_panic() {
        for m in [0.0, 0.5, -2.0, f64::NAN, f64::INFINITY] {
            let p = policy(100, m, 1000);
            for n in [0, 1, 5, 1000] {
                let c = Backoff::ceiling(&p, n);
                assert!(c <= Duration::from_secs(1), "{m} {n} {c:?}");
            }
        }
        let p = policy(0, 2.0, 1000);
        assert_eq!(Backoff::ceiling(&p, 3), Duration::ZERO);
    }

    #[test]
    fn jittered_delays_stay_within_bounds_and_spread() {
        let p = policy(500, 1.5, 30_000);
        let mut b = Backoff::new(p.clone());
        for n in 0..40u32 {
            let ceiling = Backoff::ceiling(&p, n);
            assert_eq!(b.attempt(), n);
            let d = b.next_delay();
            assert!(d <= ceiling, "attempt {n}: {d:?} > {ceiling:?}");
        }
        // Full jitter: over many draws both halves of the window are hit.
        let mut rng = rand::rng();
        let ceiling = Duration::from_secs(10);
        let draws: Vec<Duration> = (0..2000).map(|_| jitter(ceiling, &mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= ceiling));
        assert!(draws.iter().any(|d| *d < Duration::from_secs(2)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(8)));
    }

    #[test]
    fn reset_and_skip() {
        let p = policy(1000, 2.0, 60_000);
        let mut b = Backoff::new(p.clone());
        b.skip();
        b.skip();
        assert_eq!(b.attempt(), 2);
        assert!(b.next_delay() <= Duration::from_secs(4));
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert!(b.next_delay() <= Duration::from_secs(1));
        assert_eq!(jitter(Duration::ZERO, &mut rand::rng()), Duration::ZERO);
    }
}
