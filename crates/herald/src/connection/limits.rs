//! Per-socket limits on what a peer may send.
//!
//! [`Allowance`] is a token bucket: a burst is tolerated, a stream is not.
//! It bounds the malformed frames a socket may send before it is closed
//! with 1003.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket for malformed frames: a burst is tolerated, a stream is not.
pub(super) struct Allowance {
    tokens: f64,
    burst: f64,
    refill: Duration,
    last: Instant,
}

impl Allowance {
    pub(super) fn new(burst: u32, refill: Duration) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            refill,
            last: Instant::now(),
        }
    }

    /// Takes one token; false when none is left.
    pub(super) fn take(&mut self) -> bool {
        let now = Instant::now();
        if !self.refill.is_zero() {
            let earned = now.duration_since(self.last).as_secs_f64() / self.refill.as_secs_f64();
            self.tokens = (self.tokens + earned).min(self.burst);
        }
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn malformed_allowance_refills() {
        let mut a = Allowance::new(2, Duration::from_secs(1));
        assert!(a.take() && a.take());
        assert!(!a.take());
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(a.take());
        assert!(!a.take());
    }
}
