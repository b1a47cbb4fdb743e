//! The Markdown comparison that `scripts/bench-compare.sh` writes into
//! `docs/benchmarks.md`: per scenario and metric, the median of each
//! server's runs, the subject's ratio to each reference server, and the
//! subject's targets (the absolute ones of issues 3 and 11, and, with a
//! floor server, "at least the floor's").
//!
//! Kept apart from the result types (`super`) because it is the one place
//! that knows which rows a scenario has and what each target is.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Outcome;
use crate::conns::ConnsResult;
use crate::fanout::FanoutResult;
use crate::recover::RecoverResult;
use crate::stats::{median, rate, ratio};
use crate::storm::StormResult;

/// An absolute target: which way a metric is good, and the bound.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Goal {
    /// The subject's value must be at least this.
    AtLeast(f64),
    /// The subject's value must be at most this.
    AtMost(f64),
}

impl Goal {
    fn met(self, v: f64) -> bool {
        match self {
            Goal::AtLeast(t) => v >= t,
            Goal::AtMost(t) => v <= t,
        }
    }

    fn text(self, fmt: fn(f64) -> String) -> String {
        match self {
            Goal::AtLeast(t) => format!("≥ {}", fmt(t)),
            Goal::AtMost(t) => format!("≤ {}", fmt(t)),
        }
    }
}

/// A target relative to the floor server's median.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Relative {
    /// At least the floor's.
    AtLeast,
    /// At most the floor's.
    AtMost,
}

/// One row of the comparison table.
struct Metric {
    name: &'static str,
    get: fn(&Outcome) -> Option<f64>,
    fmt: fn(f64) -> String,
    goal: Option<Goal>,
    /// Against the floor server, when the report has one.
    floor: Option<Relative>,
    /// Summed over every run instead of the median (counts that must be 0).
    sum: bool,
}

impl Metric {
    fn new(name: &'static str, get: fn(&Outcome) -> Option<f64>, fmt: fn(f64) -> String) -> Self {
        Self {
            name,
            get,
            fmt,
            goal: None,
            floor: None,
            sum: false,
        }
    }

    fn goal(mut self, goal: Option<Goal>) -> Self {
        self.goal = goal;
        self
    }

    fn floor(mut self, floor: Option<Relative>) -> Self {
        self.floor = floor;
        self
    }

    fn summed(mut self) -> Self {
        self.sum = true;
        self
    }
}

fn ms(v: f64) -> String {
    format!("{v:.2}")
}
fn one(v: f64) -> String {
    format!("{v:.1}")
}
fn int(v: f64) -> String {
    rate(v)
}
fn cpu_per_million(v: f64) -> String {
    format!("{v:.3}")
}

/// The absolute Herald targets for a fan-out scenario of this shape: issue
/// 3's throughput and 100×100×100 latency, issue 11's 1×1,000 latency.
fn fanout_target(r: &FanoutResult) -> (Option<Goal>, Option<Goal>) {
    let shape = (r.publishers, r.channels, r.subscribers_per_channel);
    let max = r.target_rate == 0.0;
    let throughput = match shape {
        (1, 1, 1000) if max => Some(Goal::AtLeast(1_500_000.0)),
        (1, 1, 10_000) if max => Some(Goal::AtLeast(1_600_000.0)),
        (100, 100, 100) if max => Some(Goal::AtLeast(1_350_000.0)),
        _ => None,
    };
    let fixed = r.target_rate * f64::from(r.subscribers_per_channel);
    let at_50k = (fixed - 50_000.0).abs() < 1.0;
    let p99 =
        (at_50k && matches!(shape, (100, 100, 100) | (1, 1, 1000))).then_some(Goal::AtMost(5.0));
    (throughput, p99)
}

/// Server CPU seconds per million deliveries of a fan-out run.
pub(crate) fn cpu_s_per_million(r: &FanoutResult) -> Option<f64> {
    let server = r.server?;
    (r.deliveries > 0).then(|| server.cpu_secs / r.deliveries as f64 * 1e6)
}

fn metrics(first: &Outcome) -> Vec<Metric> {
    fn f(o: &Outcome) -> &FanoutResult {
        match o {
            Outcome::Fanout(r) => r,
            _ => unreachable!("grouped by scenario"),
        }
    }
    fn c(o: &Outcome) -> &ConnsResult {
        match o {
            Outcome::Conns(r) => r,
            _ => unreachable!("grouped by scenario"),
        }
    }
    fn s(o: &Outcome) -> &StormResult {
        match o {
            Outcome::Storm(r) => r,
            _ => unreachable!("grouped by scenario"),
        }
    }
    fn r(o: &Outcome) -> &RecoverResult {
        match o {
            Outcome::Recover(r) => r,
            _ => unreachable!("grouped by scenario"),
        }
    }
    match first {
        Outcome::Fanout(r) => {
            let (tp, p99) = fanout_target(r);
            // At a fixed rate every server that keeps up delivers the same:
            // only the maximum rate compares throughput.
            let max = r.target_rate == 0.0;
            vec![
                Metric::new("deliveries/s", |o| Some(f(o).deliveries_per_sec), int)
                    .goal(tp)
                    .floor(max.then_some(Relative::AtLeast)),
                Metric::new(
                    "server CPU s per million deliveries",
                    |o| cpu_s_per_million(f(o)),
                    cpu_per_million,
                )
                .floor(Some(Relative::AtMost)),
                Metric::new("latency p50 (ms)", |o| Some(f(o).latency.p50_ms), ms),
                Metric::new("latency p99 (ms)", |o| Some(f(o).latency.p99_ms), ms).goal(p99),
                Metric::new("latency p99.9 (ms)", |o| Some(f(o).latency.p999_ms), ms),
                Metric::new(
                    "lost + duplicated + reordered (all runs)",
                    |o| {
                        let r = f(o);
                        Some((r.seq.lost + r.seq.duplicated + r.seq.reordered + r.misrouted) as f64)
                    },
                    int,
                )
                .goal(Some(Goal::AtMost(0.0)))
                .summed(),
                Metric::new(
                    "server CPU (% of one core)",
                    |o| f(o).server.map(|u| u.cpu_avg_pct),
                    int,
                ),
                Metric::new(
                    "server RSS peak (MiB)",
                    |o| f(o).server.map(|u| u.rss_peak_mib),
                    one,
                ),
                Metric::new(
                    "bench CPU (% of one core)",
                    |o| f(o).bench.map(|u| u.cpu_avg_pct),
                    int,
                ),
            ]
        }
        Outcome::Conns(r) => vec![
            Metric::new(
                "memory per connection (KiB)",
                |o| Some(c(o).kib_per_connection),
                ms,
            )
            .goal((r.connections == 10_000).then_some(Goal::AtMost(4.0)))
            .floor(Some(Relative::AtMost)),
            Metric::new(
                "server RSS, all connected (MiB)",
                |o| Some(c(o).rss_after_mib),
                one,
            ),
            Metric::new(
                "connections set up per second",
                |o| Some(c(o).connects_per_sec),
                int,
            ),
        ],
        Outcome::Storm(r) => vec![
            Metric::new(
                "all back and resubscribed after (s)",
                |o| s(o).recovery_s,
                ms,
            )
            .goal(Some(Goal::AtMost(r.target_s))),
            Metric::new(
                "server CPU avg (% of one core)",
                |o| Some(s(o).server.cpu_avg_pct),
                int,
            ),
            Metric::new(
                "server CPU peak (% of one core)",
                |o| Some(s(o).server.cpu_peak_pct),
                int,
            ),
            Metric::new("server peak RSS (MiB)", |o| Some(s(o).server_hwm_mib), one)
                .goal(r.max_rss_mib.map(Goal::AtMost)),
            Metric::new(
                "clients with the publication of their channel afterwards",
                |o| Some(s(o).verified as f64),
                int,
            )
            .goal(Some(Goal::AtLeast(r.clients as f64))),
        ],
        Outcome::Recover(_) => vec![
            Metric::new(
                "subscribe to recovered reply, median (ms)",
                |o| Some(r(o).median_ms),
                ms,
            )
            .goal(Some(Goal::AtMost(50.0))),
            Metric::new("slowest round (ms)", |o| Some(r(o).max_ms), ms),
            Metric::new(
                "rounds not clean",
                |o| Some(if r(o).clean { 0.0 } else { 1.0 }),
                int,
            )
            .goal(Some(Goal::AtMost(0.0)))
            .summed(),
        ],
    }
}

/// One table row before formatting: the metric and each server's values
/// (the baselines in order, then the subject).
struct Row<'a> {
    scenario: &'a str,
    metric: Metric,
    values: Vec<Vec<f64>>,
}

/// The comparison table in Markdown: per scenario and metric, the median of
/// the runs of each `baselines` server and of `subject`, the subject's ratio
/// to each baseline, and its targets: the absolute ones, and with `floor`
/// (the label of one of the servers) deliveries per second at least and CPU
/// per million deliveries and memory per connection at most the floor's.
/// Count rows (lost + duplicated + reordered) are sums over all runs, not
/// medians.
pub fn markdown(
    outcomes: &[Outcome],
    baselines: &[String],
    subject: &str,
    floor: Option<&str>,
) -> String {
    // Scenarios in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        let t = o.title();
        if !groups.contains_key(&t) {
            order.push(t.clone());
        }
        groups.entry(t).or_default().push(o);
    }
    let servers: Vec<&str> = baselines
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(subject))
        .collect();
    let floor_index = floor.and_then(|f| servers.iter().position(|s| *s == f));
    let mut rows = Vec::new();
    for title in &order {
        let runs = &groups[title];
        for (i, metric) in metrics(runs[0]).into_iter().enumerate() {
            let values = servers
                .iter()
                .map(|label| {
                    runs.iter()
                        .filter(|o| o.label() == *label)
                        .filter_map(|o| (metric.get)(o))
                        .collect()
                })
                .collect();
            rows.push(Row {
                scenario: if i == 0 { title.as_str() } else { "" },
                metric,
                values,
            });
        }
    }
    // The usual number of runs goes in the header; cells only say when
    // they differ from it.
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for r in &rows {
        for v in &r.values {
            *counts.entry(v.len()).or_default() += 1;
        }
    }
    let usual = counts
        .iter()
        .max_by_key(|&(n, c)| (*c, *n))
        .map_or(1, |(n, _)| *n);
    let mut s = String::new();
    let _ = write!(s, "| Scenario | Metric |");
    for label in &servers {
        let _ = write!(s, " {label} (median of {usual}) |");
    }
    for b in baselines {
        let _ = write!(s, " {subject} ÷ {b} |");
    }
    let _ = writeln!(s, " {subject} target |");
    let _ = write!(s, "|---|---|");
    for _ in 0..servers.len() + baselines.len() {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s, "---|");
    for r in &rows {
        let m = &r.metric;
        let summarize = |vals: &[f64]| -> Option<f64> {
            if m.sum {
                (!vals.is_empty()).then(|| vals.iter().sum())
            } else {
                median(vals)
            }
        };
        let summary: Vec<Option<f64>> = r.values.iter().map(|v| summarize(v)).collect();
        let subj = summary[servers.len() - 1];
        let _ = write!(s, "| {} | {} |", r.scenario, m.name);
        for (x, vals) in summary.iter().zip(&r.values) {
            let n = vals.len();
            let cell = match x {
                Some(x) if n != usual && !m.sum => format!("{} (n={n})", (m.fmt)(*x)),
                Some(x) => (m.fmt)(*x),
                None => "–".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        for b in &summary[..baselines.len()] {
            let cell = match (*b, subj) {
                (Some(b), Some(v)) => ratio(v, b).map_or("–".into(), |r| format!("{}×", sig(r))),
                _ => "–".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        let mut targets = Vec::new();
        if let Some(g) = m.goal {
            targets.push(match subj {
                Some(v) => format!("{} {}", g.text(m.fmt), verdict(g.met(v))),
                None => format!("{} ❌ no result", g.text(m.fmt)),
            });
        }
        if let (Some(rel), Some(i)) = (m.floor, floor_index)
            && i != servers.len() - 1
            && let (Some(fl), Some(v)) = (summary[i], subj)
        {
            let (sign, met) = match rel {
                Relative::AtLeast => ("≥", v >= fl),
                Relative::AtMost => ("≤", v <= fl),
            };
            targets.push(format!("{sign} {}'s {}", servers[i], verdict(met)));
        }
        let _ = writeln!(s, " {} |", targets.join("; "));
    }
    s
}

fn verdict(met: bool) -> &'static str {
    if met { "✅ met" } else { "❌ missed" }
}

/// A ratio with two significant digits below 10 (`0.0049`, `0.76`, `4.2`)
/// and fewer decimals above (`30.1`, `123`).
fn sig(r: f64) -> String {
    if !r.is_finite() {
        return "–".into();
    }
    let a = r.abs();
    if a >= 100.0 {
        format!("{r:.0}")
    } else if a >= 10.0 {
        format!("{r:.1}")
    } else if a >= 1.0 || a == 0.0 {
        format!("{r:.2}")
    } else {
        let decimals = ((-a.log10() - 1e-9).ceil() as usize + 1).max(2);
        format!("{r:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::fanout;
    use super::*;

    fn row<'a>(md: &'a str, metric: &str) -> &'a str {
        md.lines()
            .find(|l| l.contains(metric))
            .unwrap_or_else(|| panic!("no {metric} row in\n{md}"))
    }

    #[test]
    fn medians_ratios_and_targets() {
        let runs = vec![
            fanout("sc", 60_000.0, 10.0, 1.0),
            fanout("sc", 70_000.0, 20.0, 1.0),
            fanout("sc", 90_000.0, 30.0, 1.0),
            fanout("herald", 1_400_000.0, 1.0, 5.0),
            fanout("herald", 1_600_000.0, 2.0, 5.0),
            fanout("herald", 1_700_000.0, 3.0, 5.0),
        ];
        let md = markdown(&runs, &["sc".into()], "herald", None);
        assert!(md.starts_with(
            "| Scenario | Metric | sc (median of 3) | herald (median of 3) | herald ÷ sc | herald target |"
        ));
        let dps = row(&md, "deliveries/s");
        assert!(dps.contains("| 70,000 |"), "{dps}");
        assert!(dps.contains("| 1,600,000 |"), "{dps}");
        assert!(dps.contains("22.9×"), "{dps}");
        assert!(dps.ends_with("| ≥ 1,500,000 ✅ met |"), "{dps}");
        let lost = row(&md, "lost");
        assert!(lost.contains("≤ 0 ✅ met"), "{lost}");
        assert_eq!(md.lines().filter(|l| l.contains("fanout 1 pub")).count(), 1);
        let p50 = row(&md, "p50");
        assert!(p50.contains("| 0.10×"), "{p50}");
        // 5 CPU s over 8 M deliveries; 1 CPU s over 350,000.
        let cpu = row(&md, "CPU s per million");
        assert!(cpu.contains("| 2.857 | 0.625 | 0.22× |"), "{cpu}");
    }

    #[test]
    fn three_servers_and_the_floor() {
        let runs = vec![
            fanout("sc", 70_000.0, 20.0, 1.0),
            fanout("floor", 1_200_000.0, 2.0, 6.0),
            fanout("herald", 1_500_000.0, 2.0, 6.6),
        ];
        let md = markdown(
            &runs,
            &["sc".into(), "floor".into()],
            "herald",
            Some("floor"),
        );
        assert!(
            md.starts_with(
                "| Scenario | Metric | sc (median of 1) | floor (median of 1) | herald (median of 1) | herald ÷ sc | herald ÷ floor | herald target |\n|---|---|---:|---:|---:|---:|---:|---|\n"
            ),
            "{md}"
        );
        let dps = row(&md, "deliveries/s");
        assert!(
            dps.ends_with("| 21.4× | 1.25× | ≥ 1,500,000 ✅ met; ≥ floor's ✅ met |"),
            "{dps}"
        );
        // 6.6 s for 7.5 M deliveries (0.88) against 6 s for 6 M (1.0).
        let cpu = row(&md, "CPU s per million");
        assert!(
            cpu.ends_with("| 0.880 | 0.31× | 0.88× | ≤ floor's ✅ met |"),
            "{cpu}"
        );
        // Latency has no floor target.
        assert!(row(&md, "p50").ends_with("|  |"), "{md}");

        let worse = vec![
            fanout("floor", 1_200_000.0, 2.0, 6.0),
            fanout("herald", 1_100_000.0, 2.0, 6.6),
        ];
        let md = markdown(&worse, &["floor".into()], "herald", Some("floor"));
        assert!(
            row(&md, "deliveries/s").contains("≥ floor's ❌ missed"),
            "{md}"
        );
        assert!(
            row(&md, "CPU s per million").contains("≤ floor's ❌ missed"),
            "{md}"
        );
    }

    #[test]
    fn the_1k_latency_target() {
        let mut at_rate = fanout("herald", 50_000.0, 4.2, 1.0);
        if let Outcome::Fanout(r) = &mut at_rate {
            r.target_rate = 50.0;
        }
        let md = markdown(&[at_rate], &[], "herald", Some("floor"));
        assert!(row(&md, "p99").ends_with("| ≤ 5.00 ✅ met |"), "{md}");
        // No throughput target at a fixed rate, and no floor in the runs.
        assert!(row(&md, "deliveries/s").ends_with("|  |"), "{md}");
    }

    #[test]
    fn ratios_keep_two_significant_digits() {
        assert_eq!(sig(0.004_87), "0.0049");
        assert_eq!(sig(0.76), "0.76");
        assert_eq!(sig(0.1), "0.10");
        assert_eq!(sig(0.05), "0.050");
        assert_eq!(sig(1.0), "1.00");
        assert_eq!(sig(30.12), "30.1");
        assert_eq!(sig(123.4), "123");
        assert_eq!(sig(0.0), "0.00");
    }
}
