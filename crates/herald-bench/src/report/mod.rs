//! Results: the human tables and the JSON lines of every scenario; the
//! Markdown comparison (medians per server, ratios, targets) that
//! `scripts/bench-compare.sh` writes into `docs/benchmarks.md` is in
//! [`table`].

mod table;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::conns::ConnsResult;
use crate::fanout::FanoutResult;
use crate::recover::RecoverResult;
use crate::stats::{rate, thousands};
use crate::storm::StormResult;
pub use table::markdown;

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
            Outcome::Conns(r) => r.failures(),
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
                    let per_million = table::cpu_s_per_million(r).map_or_else(String::new, |c| {
                        format!("  ({c:.3} CPU s per million deliveries)")
                    });
                    row(
                        &mut s,
                        "server",
                        format!(
                            "CPU avg {:.0}%  peak {:.0}%  RSS peak {:.1} MiB{per_million}",
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
                    "auth",
                    if r.authenticated {
                        "a token per socket (HS256, sub of its own)"
                    } else {
                        "none (anonymous sockets)"
                    }
                    .to_owned(),
                );
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
                        "CPU avg {:.0}%; kernel: {} accept-queue overflows; {} server process(es)",
                        r.server_connect.cpu_avg_pct,
                        thousands(r.kernel.listen_overflows),
                        r.server_processes
                    ),
                );
                if let Some(idle) = &r.server_idle {
                    row(
                        &mut s,
                        "server while idle",
                        format!(
                            "held {:.0} s: CPU avg {:.1}% ({:.2} CPU-s), RSS {:.1} MiB; {} of {} open at the end",
                            r.hold_s,
                            idle.cpu_avg_pct,
                            idle.cpu_secs,
                            idle.rss_end_mib,
                            thousands(r.alive),
                            thousands(r.connections as u64)
                        ),
                    );
                }
                if r.checked {
                    let took = r
                        .check_s
                        .map_or_else(|| "NOT ALL".to_owned(), |v| format!("{v:.2} s"));
                    row(
                        &mut s,
                        "publication on every channel",
                        format!(
                            "reached {} of {} connections ({took})",
                            thousands(r.verified),
                            thousands(r.connections as u64)
                        ),
                    );
                }
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

/// Reads JSON result lines (other lines are skipped).
pub fn parse_lines(text: &str) -> Vec<Outcome> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::procstat::Usage;
    use crate::seq::SeqCounts;
    use crate::stats::LatencySummary;

    /// A 1 × 1 × 1,000 max-rate fan-out result of 5 s with `dps`
    /// deliveries per second, a p99 of `p99` ms and `cpu_secs` of server
    /// CPU.
    pub(crate) fn fanout(label: &str, dps: f64, p99: f64, cpu_secs: f64) -> Outcome {
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
            publications: (dps * 5.0 / 1000.0) as u64,
            deliveries: (dps * 5.0) as u64,
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
            server: Some(Usage {
                cpu_secs,
                cpu_avg_pct: cpu_secs / 5.0 * 100.0,
                ..Usage::default()
            }),
            bench: None,
            slow: None,
        })
    }

    #[test]
    fn json_lines_round_trip() {
        let o = fanout("herald", 1_000_000.0, 1.0, 4.0);
        let line = o.json_line();
        assert!(
            line.starts_with(r#"{"scenario":"fanout","label":"herald""#),
            "{line}"
        );
        let back = parse_lines(&format!("noise\n{line}\n\n"));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].title(), o.title());
        let human = o.human();
        assert!(human.contains("clean"), "{human}");
        // 4 CPU s for 5 M deliveries.
        assert!(
            human.contains("(0.800 CPU s per million deliveries)"),
            "{human}"
        );
    }
}
