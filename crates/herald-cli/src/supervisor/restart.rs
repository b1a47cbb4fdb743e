//! When to restart a worker that died: exponential backoff over the
//! worker's consecutive short lives, so a worker that crashes at once (a
//! broken broker, an exhausted machine) is not respawned in a hot loop,
//! while one that served for a while comes back at once.

use std::time::Duration;

/// The first restart delay.
pub const INITIAL: Duration = Duration::from_millis(100);
/// The longest restart delay.
pub const MAX: Duration = Duration::from_secs(30);
/// A worker that lived at least this long is considered to have been
/// healthy: its next restart starts the backoff over.
pub const STABLE: Duration = Duration::from_secs(30);

/// The restart policy of one worker slot.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    /// Consecutive short lives so far.
    failures: u32,
}

impl Backoff {
    /// The delay before restarting a worker that lived for `lived`.
    pub fn next(&mut self, lived: Duration) -> Duration {
        if lived >= STABLE {
            self.failures = 0;
        }
        let factor = 1u32.checked_shl(self.failures.min(20)).unwrap_or(u32::MAX);
        self.failures = self.failures.saturating_add(1);
        INITIAL.saturating_mul(factor).min(MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_for_short_lives_and_resets_after_a_stable_one() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(50);
        assert_eq!(b.next(short), Duration::from_millis(100));
        assert_eq!(b.next(short), Duration::from_millis(200));
        assert_eq!(b.next(short), Duration::from_millis(400));
        for _ in 0..30 {
            b.next(short);
        }
        assert_eq!(b.next(short), MAX);
        assert_eq!(b.next(STABLE), INITIAL);
        assert_eq!(b.next(short), Duration::from_millis(200));
    }
}
