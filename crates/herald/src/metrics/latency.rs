//! The publish-to-write latency histogram, pre-aggregated.
//!
//! Written by hand because the `metrics` facade hands every sample to the
//! recorder, and the Prometheus exporter stores each one (16 bytes) until
//! its next upkeep or scrape: at two million deliveries a second that is
//! 32 MB/s of samples and the CPU to bucket them later. Here a delivery
//! costs a bucket search over 16 bounds and, per written batch, one relaxed
//! atomic add per bucket it touched, in a shard of the writing thread's own
//! (no cache line bounces between cores). A scrape sums the shards.
//!
//! The histogram is per process (every server in it adds to the same one),
//! like the facade's global recorder.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the buckets, in seconds (then `+Inf`).
pub const BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The same bounds in nanoseconds, for the hot path.
const BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

const BUCKETS: usize = BOUNDS.len() + 1;
const SHARDS: usize = 16;

/// One thread's share, alone on its cache lines.
#[repr(align(128))]
struct Shard {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Shard {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// A histogram of durations in fixed buckets.
pub struct LatencyHistogram {
    shards: [Shard; SHARDS],
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

fn bucket_of(ns: u64) -> usize {
    BOUNDS_NS
        .iter()
        .position(|b| ns <= *b)
        .unwrap_or(BOUNDS.len())
}

/// What a histogram holds: counts per bucket (not cumulative), their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// Count of samples per bucket of [`BOUNDS`], then above the last bound.
    pub buckets: [u64; BUCKETS],
    /// Sum of the samples.
    pub sum: Duration,
}

impl LatencySnapshot {
    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Samples of one batch, before they are added to a histogram.
#[derive(Default)]
pub(crate) struct Batch {
    buckets: [u32; BUCKETS],
    sum_ns: u64,
    any: bool,
}

impl Batch {
    /// Adds the latency of a frame written at `now` of a publication the
    /// node had at `since`.
    pub(crate) fn add(&mut self, now: Instant, since: Instant) {
        let ns = u64::try_from(now.saturating_duration_since(since).as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.any = true;
    }
}

impl LatencyHistogram {
    const fn new() -> Self {
        Self {
            shards: [const { Shard::new() }; SHARDS],
        }
    }

    /// Adds a batch of samples to this thread's shard.
    pub(crate) fn record(&self, batch: &Batch) {
        if !batch.any {
            return;
        }
        let shard = &self.shards[SHARD.with(|s| *s)];
        for (slot, n) in shard.buckets.iter().zip(batch.buckets) {
            if n > 0 {
                slot.fetch_add(u64::from(n), Ordering::Relaxed);
            }
        }
        shard.sum_ns.fetch_add(batch.sum_ns, Ordering::Relaxed);
    }

    /// The histogram now.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut buckets = [0u64; BUCKETS];
        let mut sum_ns = 0u64;
        for shard in &self.shards {
            for (total, slot) in buckets.iter_mut().zip(&shard.buckets) {
                *total += slot.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.wrapping_add(shard.sum_ns.load(Ordering::Relaxed));
        }
        LatencySnapshot {
            buckets,
            sum: Duration::from_nanos(sum_ns),
        }
    }

    /// The histogram in the Prometheus text format, under `name`.
    pub(crate) fn render(&self, name: &str, help: &str, out: &mut String) {
        let snap = self.snapshot();
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (bound, n) in BOUNDS.iter().zip(snap.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += snap.buckets[BOUNDS.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", snap.sum.as_secs_f64());
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

static PUBLISH_WRITE: LatencyHistogram = LatencyHistogram::new();

/// `herald_publish_write_latency_seconds`: from the moment this node had a
/// publication to the moment its frame was written to a subscriber's
/// socket. Read it here with a recorder other than Herald's Prometheus
/// endpoint, which renders it itself.
pub fn publish_write_latency() -> &'static LatencyHistogram {
    &PUBLISH_WRITE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_their_bucket() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(100_000), 0);
        assert_eq!(bucket_of(100_001), 1);
        assert_eq!(bucket_of(7_000_000), 6);
        assert_eq!(bucket_of(u64::MAX), BOUNDS.len());
        for (i, (s, ns)) in BOUNDS.iter().zip(BOUNDS_NS).enumerate() {
            assert_eq!((s * 1e9).round() as u64, ns, "bound {i}");
        }
    }

    #[test]
    fn batches_add_up_and_render_cumulatively() {
        let h = LatencyHistogram::new();
        let t0 = Instant::now();
        let mut batch = Batch::default();
        batch.add(t0 + Duration::from_micros(50), t0);
        batch.add(t0 + Duration::from_millis(3), t0);
        batch.add(t0 + Duration::from_secs(20), t0);
        h.record(&batch);
        h.record(&Batch::default());
        let snap = h.snapshot();
        assert_eq!(snap.count(), 3);
        assert_eq!(snap.buckets[0], 1);
        assert_eq!(snap.buckets[5], 1);
        assert_eq!(snap.buckets[BOUNDS.len()], 1);
        let mut text = String::new();
        h.render("x_seconds", "help", &mut text);
        assert!(text.contains("# TYPE x_seconds histogram\n"), "{text}");
        assert!(
            text.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_bucket{le=\"10\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_count 3\n"), "{text}");
        assert!(text.contains("x_seconds_sum 20.00305"), "{text}");
    }

    #[test]
    fn a_clock_going_backwards_counts_as_zero() {
        let h = LatencyHistogram::new();
        let t0 = Instant::now();
        let mut batch = Batch::default();
        batch.add(t0, t0 + Duration::from_secs(1));
        h.record(&batch);
        assert_eq!(h.snapshot().buckets[0], 1);
    }
}
