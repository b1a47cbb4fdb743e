//! CPU time and memory of a process, read from `/proc/PID/stat` (user +
//! system clock ticks) and `/proc/PID/status` (`VmRSS`, `VmHWM`), summed
//! over the process and its live descendants: a server that runs as a
//! supervisor and worker processes (`herald serve --workers N`) is measured
//! whole.
//!
//! A server may be several processes (`herald serve --workers N`: a
//! supervisor and its workers): [`sample_tree`] sums a process and its
//! children, so that the server side's total CPU and RSS are measured.
//!
//! A [`Sampler`] reads them periodically on a plain thread of its own, so
//! that sampling goes on even when the bench's async runtime is saturated.
//! [`Usage::between`] turns two boundary samples and the periodic ones in
//! between into average and peak CPU and peak memory.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::stats::cpu_percent;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// When it was read.
    pub at: Instant,
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far (`VmHWM`), KiB.
    pub hwm_kib: u64,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

/// utime + stime from the text of `/proc/PID/stat`. The command name (field
/// 2) is in parentheses and may hold spaces, so fields are counted from the
/// last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt
    // cminflt majflt cmajflt utime(14) stime(15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The parent PID (field 4) from the text of `/proc/PID/stat`.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The PIDs of the live children of `pid` (from every `/proc/N/stat`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| parse_stat_ppid(&s))
                == Some(pid)
        })
        .collect()
}

/// Reads `pid` and its live children now, summed: the CPU ticks and RSS of
/// the whole server side (a supervisor and its workers; a single process
/// alone). Fails only when `pid` itself cannot be read; a child that exits
/// meanwhile is left out (its CPU time then moves to the parent's
/// `cutime`, which is not counted: a worker restarted within a measured
/// window makes that window's CPU figure low).
pub fn sample_tree(pid: u32) -> io::Result<ProcSample> {
    let mut total = sample(pid)?;
    for child in children(pid) {
        if let Ok(s) = sample(child) {
            total.cpu_ticks += s.cpu_ticks;
            total.rss_kib += s.rss_kib;
            total.hwm_kib += s.hwm_kib;
        }
    }
    Ok(total)
}

/// The processes [`sample_tree`] sums: `pid` and its live children.
pub fn tree_size(pid: u32) -> usize {
    1 + children(pid).len()
}

/// A `Key:   123 kB` line of `/proc/PID/status`, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// Busy and total clock ticks of the whole machine, from the text of
/// `/proc/stat` (busy excludes idle and iowait).
pub fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], total))
}

/// Busy and total clock ticks of the whole machine now.
pub fn machine_ticks() -> Option<(u64, u64)> {
    parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Kernel TCP counters that reveal a server's accept queue overflowing
/// (`/proc/net/netstat`, machine-wide).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ListenCounters {
    /// Connections dropped because a listen queue was full.
    pub listen_overflows: u64,
    /// SYN cookies sent (the SYN queue was full).
    pub syncookies_sent: u64,
}

impl ListenCounters {
    /// Counter increases from `earlier` to `self`.
    pub fn since(&self, earlier: &ListenCounters) -> ListenCounters {
        ListenCounters {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(earlier.listen_overflows),
            syncookies_sent: self.syncookies_sent.saturating_sub(earlier.syncookies_sent),
        }
    }
}

/// [`ListenCounters`] from the text of `/proc/net/netstat` (a `TcpExt:`
/// line of names followed by a `TcpExt:` line of values).
pub fn parse_listen_counters(netstat: &str) -> Option<ListenCounters> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?.split_ascii_whitespace();
    let values = lines.next()?.split_ascii_whitespace();
    let mut c = ListenCounters::default();
    for (name, value) in names.zip(values).skip(1) {
        let v = value.parse().ok()?;
        match name {
            "ListenOverflows" => c.listen_overflows = v,
            "SyncookiesSent" => c.syncookies_sent = v,
            _ => {}
        }
    }
    Some(c)
}

/// The machine's [`ListenCounters`] now.
pub fn listen_counters() -> ListenCounters {
    std::fs::read_to_string("/proc/net/netstat")
        .ok()
        .and_then(|t| parse_listen_counters(&t))
        .unwrap_or_default()
}

/// The PIDs in a `/proc/PID/task/TID/children` file.
pub fn parse_children(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.split_ascii_whitespace().filter_map(|p| p.parse().ok())
}

/// The live descendants of `pid` (children, their children, …), from
/// `/proc/PID/task/*/children`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(p) = next.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in parse_children(&text) {
                // A PID reused during the walk could loop: visit each once.
                if child != pid && !found.contains(&child) {
                    found.push(child);
                    next.push(child);
                }
            }
        }
    }
    found
}

/// Reads one process's counters now (without its descendants).
fn sample_one(pid: u32) -> io::Result<ProcSample> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{what} of {pid}"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(ProcSample {
        at: Instant::now(),
        cpu_ticks: parse_stat_ticks(&stat).ok_or_else(|| bad("cpu ticks"))?,
        rss_kib: parse_status_kib(&status, "VmRSS").ok_or_else(|| bad("VmRSS"))?,
        hwm_kib: parse_status_kib(&status, "VmHWM").unwrap_or(0),
    })
}

/// Reads a process's counters now, summed over it and its live
/// descendants (a descendant that exits between the walk and its reading
/// is left out; its CPU time moves to its parent's when it is reaped).
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let mut total = sample_one(pid)?;
    for child in descendants(pid) {
        if let Ok(s) = sample_one(child) {
            total.cpu_ticks += s.cpu_ticks;
            total.rss_kib += s.rss_kib;
            total.hwm_kib += s.hwm_kib;
        }
    }
    total.at = Instant::now();
    Ok(total)
}

/// CPU and memory of a process over a time window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Usage {
    /// Average CPU, percent of one core (200 = two cores).
    pub cpu_avg_pct: f64,
    /// Highest CPU over one sampling interval, percent of one core.
    pub cpu_peak_pct: f64,
    /// CPU seconds consumed in the window.
    pub cpu_secs: f64,
    /// Highest resident set size seen in the window, MiB.
    pub rss_peak_mib: f64,
    /// Resident set size at the end of the window, MiB.
    pub rss_end_mib: f64,
}

impl Usage {
    /// Usage between two boundary samples `a` and `b`, with the periodic
    /// `samples` taken meanwhile for the peaks (over spans of at least
    /// `min_span`). `clk` is [`clk_tck`].
    pub fn between(
        a: &ProcSample,
        b: &ProcSample,
        samples: &[ProcSample],
        clk: u64,
        min_span: Duration,
    ) -> Usage {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut points: Vec<ProcSample> = std::iter::once(*a)
            .chain(
                samples
                    .iter()
                    .copied()
                    .filter(|s| s.at > a.at && s.at < b.at),
            )
            .chain(std::iter::once(*b))
            .collect();
        points.sort_by_key(|s| s.at);
        let ticks = b.cpu_ticks.saturating_sub(a.cpu_ticks);
        let wall = b.at.saturating_duration_since(a.at);
        let cpu_avg_pct = cpu_percent(ticks, clk, wall);
        // The peak is taken over spans of at least `min_span`: over shorter
        // ones the clock-tick granularity would dominate.
        let mut cpu_peak_pct: f64 = 0.0;
        let mut start = points[0];
        for p in &points[1..] {
            let span = p.at.saturating_duration_since(start.at);
            if span >= min_span {
                let pct = cpu_percent(p.cpu_ticks.saturating_sub(start.cpu_ticks), clk, span);
                cpu_peak_pct = cpu_peak_pct.max(pct);
                start = *p;
            }
        }
        if cpu_peak_pct == 0.0 {
            cpu_peak_pct = cpu_avg_pct;
        }
        Usage {
            cpu_avg_pct,
            cpu_peak_pct,
            cpu_secs: ticks as f64 / clk.max(1) as f64,
            rss_peak_mib: mib(points.iter().map(|s| s.rss_kib).max().unwrap_or(0)),
            rss_end_mib: mib(b.rss_kib),
        }
    }
}

/// Samples one process every `every` on a thread of its own.
pub struct Sampler {
    pid: u32,
    every: Duration,
    samples: Arc<Mutex<Vec<ProcSample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `pid`. Sampling stops by itself if the process exits.
    pub fn start(pid: u32, every: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let samples = samples.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("sample-{pid}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match sample(pid) {
                            Ok(s) => samples.lock().push(s),
                            Err(_) => break,
                        }
                        std::thread::sleep(every);
                    }
                })
                .ok()
        };
        Self {
            pid,
            every,
            samples,
            stop,
            thread,
        }
    }

    /// The sampled process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Reads the process now (a boundary sample), falling back to the latest
    /// periodic sample if it is gone.
    pub fn now(&self) -> Option<ProcSample> {
        sample(self.pid)
            .ok()
            .or_else(|| self.samples.lock().last().copied())
    }

    /// The most recent periodic sample.
    pub fn latest(&self) -> Option<ProcSample> {
        self.samples.lock().last().copied()
    }

    /// Usage between two boundary samples.
    pub fn usage(&self, a: &ProcSample, b: &ProcSample) -> Usage {
        Usage::between(a, b, &self.samples.lock(), clk_tck(), self.every * 4 / 5)
    }

    /// Highest `VmHWM` seen (the process's lifetime peak RSS), MiB.
    pub fn hwm_mib(&self) -> f64 {
        let own = sample(self.pid).map(|s| s.hwm_kib).unwrap_or(0);
        let seen = self.samples.lock().iter().map(|s| s.hwm_kib).max();
        own.max(seen.unwrap_or(0)) as f64 / 1024.0
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_parsing() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_stat_ticks(stat), Some(300));
        assert_eq!(parse_stat_ticks("garbage"), None);
        let status = "Name:\therald\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn children_files_and_the_process_tree() {
        assert_eq!(parse_children("12 345 \n").collect::<Vec<_>>(), [12, 345]);
        assert_eq!(parse_children("").count(), 0);
        // A child of this process is found and counted.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = descendants(std::process::id());
        let own = sample_one(std::process::id()).unwrap();
        let tree = sample(std::process::id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(
            tree.rss_kib > own.rss_kib,
            "{} vs {}",
            tree.rss_kib,
            own.rss_kib
        );
    }

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.hwm_kib >= s.rss_kib);
    }

    #[test]
    fn a_process_tree_is_summed() {
        let stat = "4242 (a (b) c) S 77 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_stat_ppid(stat), Some(77));
        let me = std::process::id();
        let mut kids: Vec<std::process::Child> = (0..2)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let found = children(me);
        for k in &kids {
            assert!(found.contains(&k.id()), "{found:?}");
        }
        assert!(tree_size(me) >= 3);
        let alone = sample(me).unwrap();
        let tree = sample_tree(me).unwrap();
        assert!(tree.rss_kib > alone.rss_kib);
        for k in &mut kids {
            let _ = k.kill();
            let _ = k.wait();
        }
    }

    #[test]
    fn usage_between_samples() {
        let t0 = Instant::now();
        let at = |ms: u64, ticks: u64, rss: u64| ProcSample {
            at: t0 + Duration::from_millis(ms),
            cpu_ticks: ticks,
            rss_kib: rss,
            hwm_kib: rss,
        };
        let a = at(0, 100, 1024);
        let b = at(1000, 200, 2048);
        // A busy first half (2 cores), an idle second half; a memory peak.
        let mid = [at(500, 200, 4096), at(510, 210, 4096), at(2000, 999, 99999)];
        let u = Usage::between(&a, &b, &mid, 100, Duration::from_millis(400));
        assert_eq!(u.cpu_avg_pct, 100.0);
        // 0→500 ms: 200%; the 10 ms sliver (100%) is folded into 500→1000.
        assert_eq!(u.cpu_peak_pct, 200.0);
        assert_eq!(u.cpu_secs, 1.0);
        assert_eq!(u.rss_peak_mib, 4.0);
        assert_eq!(u.rss_end_mib, 2.0);
        // A window shorter than the span: the peak is the average.
        let u = Usage::between(&a, &b, &[], 100, Duration::from_secs(5));
        assert_eq!(u.cpu_peak_pct, 100.0);
    }

    #[test]
    fn listen_counters_from_netstat() {
        let text = "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows\nTcpExt: 5 6 7\nIpExt: A\nIpExt: 1\n";
        let c = parse_listen_counters(text).unwrap();
        assert_eq!((c.syncookies_sent, c.listen_overflows), (5, 7));
        let later = ListenCounters {
            listen_overflows: 10,
            syncookies_sent: 5,
        };
        assert_eq!(later.since(&c).listen_overflows, 3);
        let _ = listen_counters();
    }

    #[test]
    fn machine_busy_share() {
        let stat = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 1 2 3 4\n";
        // busy = user+nice+system+irq+softirq+steal = 170; total = 990.
        assert_eq!(parse_machine_ticks(stat), Some((170, 990)));
        let (busy, total) = machine_ticks().unwrap();
        assert!(busy <= total);
    }
}
