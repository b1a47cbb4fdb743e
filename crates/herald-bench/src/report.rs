//! Results: the human tables, the JSON lines, and the Markdown comparison
//! (medians per server and ratios) that `scripts/bench-compare.sh` writes
//! into `docs/benchmarks.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::conns::ConnsResult;
use crate::fanout::FanoutResult;
use crate::recover::RecoverResult;
use crate::stats::{median, rate, ratio, thousands};
use crate::storm::StormResult;

/// One scenario's result, as printed with `--json` (tagged by `scenario`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "scenario", rename_all = "lowercase")]
pub enum Outcome {
    /// `fanout`.
    Fanout(FanoutResult),
    /// `conns`.
    Conns(ConnsResult),
    /// `storm`.
    Storm(StormResult),
    /// `recover`.
    Recover(RecoverResult),
}

impl Outcome {
    /// The scenario's own checks that failed (the storm's: all back, every
    /// client with its publication, the RSS bound); empty when none did.
    pub fn failures(&self) -> Vec<String> {
        match self {
            Outcome::Storm(r) => r.failures(),
            _ => Vec::new(),
        }
    }

    /// The server label.
    pub fn label(&self) -> &str {
        match self {
            Outcome::Fanout(r) => &r.label,
            Outcome::Conns(r) => &r.label,
            Outcome::Storm(r) => &r.label,
            Outcome::Recover(r) => &r.label,
        }
    }

    /// The scenario's shape, the same for every run of one scenario.
    pub fn title(&self) -> String {
        match self {
            Outcome::Fanout(r) => {
                let load = if r.target_rate > 0.0 {
                    format!(
                        "{} deliveries/s",
                        rate(r.target_rate * f64::from(r.subscribers_per_channel))
                    )
                } else {
                    "max rate".into()
                };
                let channels = if r.channel_prefix == "bench/" {
                    String::new()
                } else {
                    format!(", channels {}*", r.channel_prefix)
                };
                format!(
                    "fanout {} pub × {} ch × {} sub, {} B, {load}{channels}",
                    r.publishers,
                    r.channels,
                    thousands(u64::from(r.subscribers_per_channel)),
                    r.payload_bytes
                )
            }
            Outcome::Conns(r) => format!(
                "conns {} idle subscribed connections",
                thousands(r.connections as u64)
            ),
            Outcome::Storm(r) => format!(
                "storm {} clients, backoff {}–{} ms, SIGKILL + restart",
                thousands(r.clients as u64),
                r.backoff_initial_ms,
                r.backoff_max_ms
            ),
            Outcome::Recover(r) => format!(
                "recover {} missed publications of {} B, {} rounds",
                thousands(r.missed),
                r.payload_bytes,
                r.rounds
            ),
        }
    }

    /// One JSON line.
    pub fn json_line(&self) -> String {
        // Results hold only numbers, strings and options: always serialize.
        serde_json::to_string(self).expect("results serialize")
    }

    /// The human table.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let label = if self.label().is_empty() {
            String::new()
        } else {
            format!("[{}] ", self.label())
        };
        let _ = writeln!(s, "{label}{}", self.title());
        let row = |s: &mut String, k: &str, v: String| {
            let _ = writeln!(s, "  {k:<22} {v}");
        };
        match self {
            Outcome::Fanout(r) => {
                row(
                    &mut s,
                    "measured",
                    format!(
                        "{:.1} s after {:.1} s warm-up, window {} publications/channel, {} bench thread(s)",
                        r.duration_s, r.warmup_s, r.window, r.bench_threads
                    ),
                );
                row(
                    &mut s,
                    "deliveries/s",
                    format!(
                        "{}   (publications/s {})",
                        rate(r.deliveries_per_sec),
                        rate(r.publications_per_sec)
                    ),
                );
                let l = &r.latency;
                row(
                    &mut s,
                    "latency ms",
                    format!(
                        "p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                        l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
                    ),
                );
                row(
                    &mut s,
                    "lost/dup/reordered",
                    format!(
                        "{} / {} / {}   misrouted {}  disconnects {}  ({} of {} delivered, drain {:.2} s)",
                        r.seq.lost,
                        r.seq.duplicated,
                        r.seq.reordered,
                        r.misrouted,
                        r.disconnects,
                        thousands(r.seq.received),
                        thousands(r.expected_total),
                        r.drain_s
                    ),
                );
                if let Some(slow) = &r.slow {
                    row(
                        &mut s,
                        "slow readers",
                        format!(
                            "{} readers, {} connections, {} closed with 4100, {} other ends, {} messages read",
                            slow.readers,
                            slow.connections,
                            slow.slow_consumer_closes,
                            slow.other_ends,
                            thousands(slow.messages)
                        ),
                    );
                }
                if let Some(u) = &r.server {
                    row(
                        &mut s,
                        "server",
                        format!(
                            "CPU avg {:.0}%  peak {:.0}%  RSS peak {:.1} MiB",
                            u.cpu_avg_pct, u.cpu_peak_pct, u.rss_peak_mib
                        ),
                    );
                }
                if let Some(u) = &r.bench {
                    row(
                        &mut s,
                        "bench",
                        format!(
                            "CPU avg {:.0}%  RSS peak {:.1} MiB",
                            u.cpu_avg_pct, u.rss_peak_mib
                        ),
                    );
                }
                if let Some(m) = r.machine_cpu_pct {
                    let others = m
                        - r.server.map_or(0.0, |u| u.cpu_avg_pct)
                        - r.bench.map_or(0.0, |u| u.cpu_avg_pct);
                    row(
                        &mut s,
                        "machine",
                        format!(
                            "CPU busy {m:.0}% (other processes ~{:.0}%)",
                            others.max(0.0)
                        ),
                    );
                }
                row(
                    &mut s,
                    "verdict",
                    if r.clean() {
                        "clean".into()
                    } else {
                        "NOT CLEAN".into()
                    },
                );
            }
            Outcome::Conns(r) => {
                row(
                    &mut s,
                    "memory/connection",
                    format!(
                        "{:.2} KiB  ({:.0} bytes; RSS {:.1} → {:.1} MiB)",
                        r.kib_per_connection,
                        r.bytes_per_connection,
                        r.rss_before_mib,
                        r.rss_after_mib
                    ),
                );
                row(
                    &mut s,
                    "connect",
                    format!(
                        "{:.2} s  ({}/s, {} workers, {} failed attempts, {} drops)",
                        r.connect_s,
                        rate(r.connects_per_sec),
                        r.workers,
                        r.failed_attempts,
                        r.drops
                    ),
                );
                row(
                    &mut s,
                    "server while connecting",
                    format!(
                        "CPU avg {:.0}%; kernel: {} accept-queue overflows",
                        r.server_connect.cpu_avg_pct,
                        thousands(r.kernel.listen_overflows)
                    ),
                );
            }
            Outcome::Storm(r) => {
                let rec = r
                    .recovery_s
                    .map_or_else(|| "NOT ALL BACK".to_owned(), |v| format!("{v:.2} s"));
                row(
                    &mut s,
                    "all back after",
                    format!(
                        "{rec}  (target {:.1} s; {} of {} back; restart took {:.2} s)",
                        r.target_s,
                        thousands(r.back),
                        thousands(r.clients as u64),
                        r.restart_s
                    ),
                );
                row(
                    &mut s,
                    "server during storm",
                    format!(
                        "CPU avg {:.0}%  peak {:.0}%  RSS peak {:.1} MiB (VmHWM {:.1} MiB)",
                        r.server.cpu_avg_pct,
                        r.server.cpu_peak_pct,
                        r.server.rss_peak_mib,
                        r.server_hwm_mib
                    ),
                );
                row(
                    &mut s,
                    "attempts failed",
                    format!(
                        "{} ({} workers); kernel: {} accept-queue overflows, {} SYN cookies",
                        thousands(r.failed_attempts),
                        r.workers,
                        thousands(r.kernel.listen_overflows),
                        thousands(r.kernel.syncookies_sent)
                    ),
                );
                row(
                    &mut s,
                    "publication after",
                    format!(
                        "{} of {} clients received the one of their channel ({} channels){}",
                        thousands(r.verified),
                        thousands(r.clients as u64),
                        r.channels,
                        r.check_s
                            .map_or_else(String::new, |v| format!(" in {v:.2} s"))
                    ),
                );
                if let Some(max) = r.max_rss_mib {
                    row(
                        &mut s,
                        "RSS bound",
                        format!(
                            "{:.1} MiB (bound {max:.1} MiB): {}",
                            r.server_hwm_mib,
                            if r.server_hwm_mib <= max {
                                "ok"
                            } else {
                                "EXCEEDED"
                            }
                        ),
                    );
                }
                for f in r.failures() {
                    row(&mut s, "FAILED", f);
                }
            }
            Outcome::Recover(r) => {
                row(
                    &mut s,
                    "subscribe to reply",
                    format!(
                        "median {:.2} ms  max {:.2} ms  ({} publications/s)",
                        r.median_ms,
                        r.max_ms,
                        rate(r.publications_per_sec)
                    ),
                );
                row(
                    &mut s,
                    "verdict",
                    if r.clean {
                        "every offset once, in order, recovered: true".into()
                    } else {
                        "NOT CLEAN".into()
                    },
                );
            }
        }
        s
    }
}

/// Which way a metric is good.
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

/// One row of the comparison table.
struct Metric {
    name: &'static str,
    get: fn(&Outcome) -> Option<f64>,
    fmt: fn(f64) -> String,
    goal: Option<Goal>,
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

/// The Herald targets of issue 3 for a scenario of this shape.
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
    let p99 =
        (shape == (100, 100, 100) && (fixed - 50_000.0).abs() < 1.0).then_some(Goal::AtMost(5.0));
    (throughput, p99)
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
            vec![
                Metric {
                    name: "deliveries/s",
                    get: |o| Some(f(o).deliveries_per_sec),
                    fmt: int,
                    goal: tp,
                },
                Metric {
                    name: "latency p50 (ms)",
                    get: |o| Some(f(o).latency.p50_ms),
                    fmt: ms,
                    goal: None,
                },
                Metric {
                    name: "latency p99 (ms)",
                    get: |o| Some(f(o).latency.p99_ms),
                    fmt: ms,
                    goal: p99,
                },
                Metric {
                    name: "latency p99.9 (ms)",
                    get: |o| Some(f(o).latency.p999_ms),
                    fmt: ms,
                    goal: None,
                },
                Metric {
                    name: "lost + duplicated + reordered (all runs)",
                    get: |o| {
                        let r = f(o);
                        Some((r.seq.lost + r.seq.duplicated + r.seq.reordered + r.misrouted) as f64)
                    },
                    fmt: int,
                    goal: Some(Goal::AtMost(0.0)),
                },
                Metric {
                    name: "server CPU (% of one core)",
                    get: |o| f(o).server.map(|u| u.cpu_avg_pct),
                    fmt: int,
                    goal: None,
                },
                Metric {
                    name: "server RSS peak (MiB)",
                    get: |o| f(o).server.map(|u| u.rss_peak_mib),
                    fmt: one,
                    goal: None,
                },
                Metric {
                    name: "bench CPU (% of one core)",
                    get: |o| f(o).bench.map(|u| u.cpu_avg_pct),
                    fmt: int,
                    goal: None,
                },
            ]
        }
        Outcome::Conns(r) => vec![
            Metric {
                name: "memory per connection (KiB)",
                get: |o| Some(c(o).kib_per_connection),
                fmt: ms,
                goal: (r.connections == 10_000).then_some(Goal::AtMost(8.0)),
            },
            Metric {
                name: "server RSS, all connected (MiB)",
                get: |o| Some(c(o).rss_after_mib),
                fmt: one,
                goal: None,
            },
            Metric {
                name: "connections set up per second",
                get: |o| Some(c(o).connects_per_sec),
                fmt: int,
                goal: None,
            },
        ],
        Outcome::Storm(r) => vec![
            Metric {
                name: "all back and resubscribed after (s)",
                get: |o| s(o).recovery_s,
                fmt: ms,
                goal: Some(Goal::AtMost(r.target_s)),
            },
            Metric {
                name: "server CPU avg (% of one core)",
                get: |o| Some(s(o).server.cpu_avg_pct),
                fmt: int,
                goal: None,
            },
            Metric {
                name: "server CPU peak (% of one core)",
                get: |o| Some(s(o).server.cpu_peak_pct),
                fmt: int,
                goal: None,
            },
            Metric {
                name: "server peak RSS (MiB)",
                get: |o| Some(s(o).server_hwm_mib),
                fmt: one,
                goal: r.max_rss_mib.map(Goal::AtMost),
            },
            Metric {
                name: "clients with the publication of their channel afterwards",
                get: |o| Some(s(o).verified as f64),
                fmt: int,
                goal: Some(Goal::AtLeast(r.clients as f64)),
            },
        ],
        Outcome::Recover(_) => vec![
            Metric {
                name: "subscribe to recovered reply, median (ms)",
                get: |o| Some(r(o).median_ms),
                fmt: ms,
                goal: Some(Goal::AtMost(50.0)),
            },
            Metric {
                name: "slowest round (ms)",
                get: |o| Some(r(o).max_ms),
                fmt: ms,
                goal: None,
            },
            Metric {
                name: "rounds not clean",
                get: |o| Some(if r(o).clean { 0.0 } else { 1.0 }),
                fmt: int,
                goal: Some(Goal::AtMost(0.0)),
            },
        ],
    }
}

/// The comparison table in Markdown: per scenario and metric, the median of
/// the runs of `baseline` and of `subject`, their ratio, and the subject's
/// target when issue 3 sets one. The lost/duplicated/reordered row is a sum
/// over all runs, not a median.
pub fn markdown(outcomes: &[Outcome], baseline: &str, subject: &str) -> String {
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
    /// One table row before formatting: (scenario, metric, baseline values,
    /// subject values).
    struct Row<'a> {
        scenario: &'a str,
        metric: Metric,
        base: Vec<f64>,
        subj: Vec<f64>,
    }
    let mut rows = Vec::new();
    for title in &order {
        let runs = &groups[title];
        let values = |m: &Metric, label: &str| -> Vec<f64> {
            runs.iter()
                .filter(|o| o.label() == label)
                .filter_map(|o| (m.get)(o))
                .collect()
        };
        for (i, metric) in metrics(runs[0]).into_iter().enumerate() {
            rows.push(Row {
                scenario: if i == 0 { title.as_str() } else { "" },
                base: values(&metric, baseline),
                subj: values(&metric, subject),
                metric,
            });
        }
    }
    // The usual number of runs goes in the header; cells only say when
    // they differ from it.
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.base.len()).or_default() += 1;
        *counts.entry(r.subj.len()).or_default() += 1;
    }
    let usual = counts
        .iter()
        .max_by_key(|&(n, c)| (*c, *n))
        .map_or(1, |(n, _)| *n);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| Scenario | Metric | {baseline} (median of {usual}) | {subject} (median of {usual}) | {subject} ÷ {baseline} | {subject} target |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---|");
    for r in &rows {
        let m = &r.metric;
        let is_sum = m.goal == Some(Goal::AtMost(0.0));
        let summarize = |vals: &[f64]| -> Option<f64> {
            if is_sum {
                (!vals.is_empty()).then(|| vals.iter().sum())
            } else {
                median(vals)
            }
        };
        let (b, v) = (summarize(&r.base), summarize(&r.subj));
        let show = |x: Option<f64>, n: usize| match x {
            Some(x) if n != usual && !is_sum => format!("{} (n={n})", (m.fmt)(x)),
            Some(x) => (m.fmt)(x),
            None => "–".into(),
        };
        let ratio_cell = match (b, v) {
            (Some(b), Some(v)) => ratio(v, b).map_or("–".into(), |r| format!("{}×", sig(r))),
            _ => "–".into(),
        };
        let goal = match (m.goal, v) {
            (Some(g), Some(v)) => {
                format!(
                    "{} {}",
                    g.text(m.fmt),
                    if g.met(v) { "✅ met" } else { "❌ missed" }
                )
            }
            (Some(g), None) => format!("{} ❌ no result", g.text(m.fmt)),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {ratio_cell} | {goal} |",
            r.scenario,
            m.name,
            show(b, r.base.len()),
            show(v, r.subj.len())
        );
    }
    s
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

/// Reads JSON result lines (other lines are skipped).
pub fn parse_lines(text: &str) -> Vec<Outcome> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procstat::Usage;
    use crate::seq::SeqCounts;
    use crate::stats::LatencySummary;

    fn fanout(label: &str, dps: f64, p99: f64) -> Outcome {
        Outcome::Fanout(FanoutResult {
            channel_prefix: "bench/".into(),
            label: label.into(),
            publishers: 1,
            channels: 1,
            subscribers_per_channel: 1000,
            payload_bytes: 100,
            target_rate: 0.0,
            window: 64,
            bench_threads: 1,
            duration_s: 5.0,
            warmup_s: 1.0,
            publications: 10,
            deliveries: 10_000,
            publications_per_sec: dps / 1000.0,
            deliveries_per_sec: dps,
            latency: LatencySummary {
                count: 10,
                p50_ms: p99 / 2.0,
                p99_ms: p99,
                p999_ms: p99,
                max_ms: p99,
                mean_ms: p99,
            },
            published_total: 10,
            expected_total: 10_000,
            seq: SeqCounts {
                received: 10_000,
                ..SeqCounts::default()
            },
            misrouted: 0,
            disconnects: 0,
            drain_s: 0.0,
            machine_cpu_pct: None,
            server: Some(Usage::default()),
            bench: None,
            slow: None,
        })
    }

    #[test]
    fn json_lines_round_trip() {
        let o = fanout("herald", 1.0, 1.0);
        let line = o.json_line();
        assert!(
            line.starts_with(r#"{"scenario":"fanout","label":"herald""#),
            "{line}"
        );
        let back = parse_lines(&format!("noise\n{line}\n\n"));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].title(), o.title());
        assert!(o.human().contains("clean"));
    }

    #[test]
    fn markdown_uses_medians_ratios_and_targets() {
        let runs = vec![
            fanout("sc", 60_000.0, 10.0),
            fanout("sc", 70_000.0, 20.0),
            fanout("sc", 90_000.0, 30.0),
            fanout("herald", 1_400_000.0, 1.0),
            fanout("herald", 1_600_000.0, 2.0),
            fanout("herald", 1_700_000.0, 3.0),
        ];
        let md = markdown(&runs, "sc", "herald");
        assert!(md.starts_with("| Scenario | Metric | sc (median of 3) | herald (median of 3) |"));
        let row = md.lines().find(|l| l.contains("deliveries/s")).unwrap();
        assert!(row.contains("| 70,000 |"), "{row}");
        assert!(row.contains("| 1,600,000 |"), "{row}");
        assert!(row.contains("22.9×"), "{row}");
        assert!(row.contains("≥ 1,500,000 ✅ met"), "{row}");
        let lost = md.lines().find(|l| l.contains("lost")).unwrap();
        assert!(lost.contains("≤ 0 ✅ met"), "{lost}");
        assert_eq!(md.lines().filter(|l| l.contains("fanout 1 pub")).count(), 1);
        let p50 = md.lines().find(|l| l.contains("p50")).unwrap();
        assert!(p50.contains("| 0.10×"), "{p50}");
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
