//! Per-socket limits on what a peer may send.
//!
//! [`Allowance`] is a token bucket: a burst is tolerated, a stream is not.
//! It bounds the malformed frames a socket may send before it is closed
//! with 1003, and the messages per second it is read at ([`Throttle`]).
//! (Invokes in flight are bounded by counting the socket's running
//! procedures, `SocketShared::in_flight`.)

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: a burst is tolerated, a stream is not.
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

    /// `rate` tokens per second, at most `burst` (at least `rate`) saved.
    pub(super) fn per_second(rate: u32, burst: u32) -> Self {
        let burst = burst.max(rate).max(1);
        Self::new(burst, Duration::from_secs(1) / rate.max(1))
    }

    /// How long until a token is there (zero when one is).
    pub(super) fn wait(&self) -> Duration {
        if self.tokens >= 1.0 || self.refill.is_zero() {
            return Duration::ZERO;
        }
        let elapsed = Instant::now().duration_since(self.last).as_secs_f64();
        let missing = 1.0 - self.tokens - elapsed / self.refill.as_secs_f64();
        Duration::from_secs_f64(missing.max(0.0) * self.refill.as_secs_f64())
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

/// How long a socket may stay over its inbound rate before it is closed
/// with 4101.
pub(super) const THROTTLE_GRACE: Duration = Duration::from_secs(10);

/// The inbound rate of a socket: past its burst a socket is read at its
/// rate (the job waits, TCP pushes back on the peer) and one that keeps
/// sending over it for [`THROTTLE_GRACE`] is closed with 4101.
pub(super) struct Throttle {
    bucket: Allowance,
    since: Option<Instant>,
}

impl Throttle {
    pub(super) fn new(rate: u32, burst: u32) -> Self {
        Self {
            bucket: Allowance::per_second(rate, burst),
            since: None,
        }
    }

    /// Waits for the next message's turn; false when the socket has been
    /// over its rate for longer than the grace period. A message that finds
    /// a token without waiting ends the throttling (and its grace period).
    pub(super) async fn on_message(&mut self) -> bool {
        if self.bucket.take() {
            self.since = None;
            return true;
        }
        loop {
            let now = Instant::now();
            let since = *self.since.get_or_insert(now);
            if now.duration_since(since) > THROTTLE_GRACE {
                return false;
            }
            tokio::time::sleep(self.bucket.wait().max(Duration::from_millis(1))).await;
            if self.bucket.take() {
                return true;
            }
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

    #[tokio::test(start_paused = true)]
    async fn a_throttle_paces_then_gives_up_after_its_grace() {
        let mut t = Throttle::new(10, 10);
        let start = Instant::now();
        for _ in 0..10 {
            assert!(t.on_message().await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst passes at once");
        for _ in 0..10 {
            assert!(t.on_message().await);
        }
        let paced = start.elapsed();
        assert!(
            paced >= Duration::from_millis(900) && paced <= Duration::from_millis(1100),
            "{paced:?}"
        );
        // Sending at the rate for ever exceeds the grace period.
        let mut admitted = 0;
        while t.on_message().await {
            admitted += 1;
            assert!(admitted < 1000, "never closed");
        }
        assert!(start.elapsed() > THROTTLE_GRACE);
        // Back within the rate after a pause.
        let mut t = Throttle::new(10, 10);
        for _ in 0..15 {
            assert!(t.on_message().await);
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(t.on_message().await);
        assert!(t.since.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_allows_its_burst_then_its_rate() {
        let mut a = Allowance::per_second(10, 20);
        for _ in 0..20 {
            assert!(a.take());
        }
        assert!(!a.take());
        tokio::time::advance(Duration::from_millis(500)).await;
        for _ in 0..5 {
            assert!(a.take());
        }
        assert!(!a.take());
    }
}
