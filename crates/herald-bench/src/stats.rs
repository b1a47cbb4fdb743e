//! Statistics: latency histograms and percentiles, medians, rates, CPU and
//! memory arithmetic, and number formatting for the human tables.

use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

/// Lowest latency told apart from zero: 1 µs, in nanoseconds.
const LOWEST_NS: u64 = 1_000;
/// Highest latency recorded (larger ones are clamped): 120 s.
const HIGHEST_NS: u64 = 120_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits.
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram covering 1 µs to 120 s.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts.
        Self(Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, 3).expect("valid histogram bounds"))
    }

    /// Records one latency (clamped to the histogram's range).
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Forgets every value.
    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// p50, p99, p99.9, max and mean, in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let ms = |ns: u64| ns as f64 / 1e6;
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.0.len(),
            p50_ms: ms(self.0.value_at_quantile(0.5)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            p999_ms: ms(self.0.value_at_quantile(0.999)),
            max_ms: ms(self.0.max()),
            mean_ms: self.0.mean() / 1e6,
        }
    }
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// Latency histograms behind a few locks, so that many subscriber tasks (on
/// one or several threads) can record without a histogram each. Subscribers
/// record a batch at a time, one lock per batch.
pub struct ShardedLatency {
    shards: Vec<Mutex<Latency>>,
}

impl ShardedLatency {
    /// `n` shards (at least one).
    pub fn new(n: usize) -> Self {
        Self {
            shards: (0..n.max(1)).map(|_| Mutex::new(Latency::new())).collect(),
        }
    }

    /// Records a batch of latencies into the shard of subscriber `key`.
    pub fn record_batch(&self, key: usize, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let mut shard = self.shards[key % self.shards.len()].lock();
        for &v in values {
            shard.record(v);
        }
    }

    /// Empties every shard (at the end of the warm-up).
    pub fn reset(&self) {
        for s in &self.shards {
            s.lock().reset();
        }
    }

    /// All shards merged.
    pub fn merged(&self) -> Latency {
        let mut all = Latency::new();
        for s in &self.shards {
            all.merge(&s.lock());
        }
        all
    }
}

/// The median of `values` (the mean of the two middle values for an even
/// count); `None` when empty. NaNs sort last.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Events per second.
pub fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// CPU use in percent of one core: `ticks` clock ticks (of `clk_tck` per
/// second) consumed over `wall` time. 200 means two cores busy.
pub fn cpu_percent(ticks: u64, clk_tck: u64, wall: Duration) -> f64 {
    let secs = wall.as_secs_f64();
    if secs <= 0.0 || clk_tck == 0 {
        return 0.0;
    }
    ticks as f64 / clk_tck as f64 / secs * 100.0
}

/// Bytes per connection from resident set sizes (KiB) before and after
/// opening `n` connections. Negative when the server shrank meanwhile.
pub fn bytes_per_connection(before_kib: u64, after_kib: u64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    (after_kib as f64 - before_kib as f64) * 1024.0 / n as f64
}

/// `b / a` when both are meaningful.
pub fn ratio(b: f64, a: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && a != 0.0).then(|| b / a)
}

/// An integer with thousands separators: `1,234,567`.
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate rounded to an integer with separators.
pub fn rate(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return "-".into();
    }
    thousands(v.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[10.0, 1.0, 1000.0]), Some(10.0));
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = Latency::new();
        // 1..=1000 µs, one each.
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002;
        assert!(close(s.p50_ms, 0.5), "{s:?}");
        assert!(close(s.p99_ms, 0.99), "{s:?}");
        assert!(close(s.p999_ms, 0.999), "{s:?}");
        assert!(close(s.max_ms, 1.0), "{s:?}");
        assert!(close(s.mean_ms, 0.5005), "{s:?}");
        assert_eq!(Latency::new().summary(), LatencySummary::default());
        // Out of range values are clamped, not lost.
        h.record(u64::MAX);
        assert_eq!(h.count(), 1001);
    }

    #[test]
    fn sharded_histograms_merge_and_reset() {
        let s = ShardedLatency::new(4);
        for key in 0..10 {
            s.record_batch(key, &[1_000_000, 2_000_000]);
        }
        assert_eq!(s.merged().count(), 20);
        s.reset();
        assert_eq!(s.merged().count(), 0);
    }

    #[test]
    fn rates_cpu_and_memory() {
        assert_eq!(per_sec(1000, Duration::from_millis(500)), 2000.0);
        assert_eq!(per_sec(5, Duration::ZERO), 0.0);
        // 150 ticks at 100 Hz over 1 s: one and a half cores.
        assert_eq!(cpu_percent(150, 100, Duration::from_secs(1)), 150.0);
        assert_eq!(cpu_percent(1, 0, Duration::from_secs(1)), 0.0);
        // 40 MiB more for 10,000 connections: 4 KiB each.
        assert_eq!(
            bytes_per_connection(10_000, 10_000 + 40_000, 10_000),
            4096.0
        );
        assert_eq!(bytes_per_connection(2, 1, 1), -1024.0);
        assert_eq!(bytes_per_connection(1, 2, 0), 0.0);
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_523_000), "1,523,000");
        assert_eq!(rate(70_000.4), "70,000");
        assert_eq!(rate(f64::NAN), "-");
    }
}
