//! `conns`: the server's memory per idle, subscribed connection.
//!
//! The server's resident set size is read while it is idle, then N clients
//! (spread over worker processes and loopback source addresses, see
//! [`crate::worker`]) connect, handshake, subscribe to one of C channels and
//! stay idle, answering pings. After a settling time the resident set is
//! read again: memory per connection = (RSS after − RSS before) / N. Each
//! reading is the median of several samples.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep};

use crate::common::{Common, Harness, Progress};
use crate::procstat::{ListenCounters, Usage, clk_tck, listen_counters, sample};
use crate::stats::{bytes_per_connection, median, per_sec, thousands};
use crate::worker::{Pool, PoolConfig, slices};

/// `conns` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Idle subscribed connections to open.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub connections: usize,
    /// Channels they subscribe to (connection i to channel i mod C).
    #[arg(long, default_value_t = 100)]
    pub channels: u32,
    /// Connections per worker process (each from its own source address).
    #[arg(long, default_value_t = 5_000)]
    pub per_worker: usize,
    /// Connections set up at the same time, per worker.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Wait before reading the server's memory (before and after).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub settle: Duration,
}

impl ConnsArgs {
    /// Generous time for the whole run.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_secs(60 + self.connections as u64 / 100) + self.settle * 2
    }
}

/// The outcome of one `conns` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnsResult {
    /// Name of the server under test.
    pub label: String,
    /// Connections opened.
    pub connections: usize,
    /// Channels.
    pub channels: u32,
    /// Worker processes.
    pub workers: usize,
    /// Server RSS before, MiB.
    pub rss_before_mib: f64,
    /// Server RSS with every connection open, MiB.
    pub rss_after_mib: f64,
    /// (after − before) / connections, bytes.
    pub bytes_per_connection: f64,
    /// The same in KiB.
    pub kib_per_connection: f64,
    /// Seconds until every connection was subscribed.
    pub connect_s: f64,
    /// Connections set up per second.
    pub connects_per_sec: f64,
    /// Server CPU and memory while the connections were set up.
    pub server_connect: Usage,
    /// Failed connection attempts (retried).
    pub failed_attempts: u64,
    /// Connections lost while idle.
    pub drops: u64,
    /// Accept-queue overflows and SYN cookies on the machine while the
    /// connections were set up.
    #[serde(default)]
    pub kernel: ListenCounters,
}

/// Median RSS (KiB) of `n` samples taken `every` apart.
async fn rss_median(pid: u32, n: usize, every: Duration) -> anyhow::Result<u64> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 {
            sleep(every).await;
        }
        v.push(
            sample(pid)
                .context("cannot read the server's memory")?
                .rss_kib as f64,
        );
    }
    Ok(median(&v).unwrap_or(0.0) as u64)
}

/// Runs the scenario.
pub async fn run(args: &ConnsArgs) -> anyhow::Result<ConnsResult> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let harness = Harness::open(&args.common).await?;
    let result = run_with(args, &harness).await;
    harness.close().await;
    result
}

async fn run_with(args: &ConnsArgs, harness: &Harness) -> anyhow::Result<ConnsResult> {
    let pid = harness
        .pid
        .context("conns needs the server's PID (--server-pid or --server-cmd)")?;
    let n = args.connections;
    let mut progress = Progress::new(format!("conns {}", args.common.label), args.common.quiet);
    sleep(args.settle).await;
    let before = rss_median(pid, 5, Duration::from_millis(100)).await?;

    let parts = slices(n, args.per_worker);
    let cfg = PoolConfig {
        url: harness.target.url.clone(),
        channels: args.channels.max(1),
        concurrency: args.connect_concurrency,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        deadline: args.default_deadline() + Duration::from_secs(60),
    };
    let listen_before = listen_counters();
    let s0 = sample(pid)?;
    let start = Instant::now();
    let pool = Pool::spawn(&cfg, &parts)?;
    let ready = pool
        .wait_for(
            Duration::from_secs(30 + n as u64 / 200),
            &mut progress,
            |t| t.ready,
            |t| {
                format!(
                    "connected {}/{}",
                    thousands(t.subscribed),
                    thousands(n as u64)
                )
            },
        )
        .await;
    let ready = match ready {
        Ok(t) => t,
        Err(e) => {
            pool.shutdown().await;
            return Err(e.context("opening the connections"));
        }
    };
    let connect = start.elapsed();
    let s1 = sample(pid)?;
    let kernel = listen_counters().since(&listen_before);
    progress.update(&format!(
        "{} connections in {:.1} s; settling",
        thousands(n as u64),
        connect.as_secs_f64()
    ));
    sleep(args.settle).await;
    let after = rss_median(pid, 5, Duration::from_millis(200)).await;
    let t = pool.totals();
    pool.shutdown().await;
    progress.done();
    let after = after?;
    let per = bytes_per_connection(before, after, n as u64);
    Ok(ConnsResult {
        label: args.common.label.clone(),
        connections: n,
        channels: cfg.channels,
        workers: parts.len(),
        rss_before_mib: before as f64 / 1024.0,
        rss_after_mib: after as f64 / 1024.0,
        bytes_per_connection: per,
        kib_per_connection: per / 1024.0,
        connect_s: connect.as_secs_f64(),
        connects_per_sec: per_sec(n as u64, connect),
        server_connect: Usage::between(&s0, &s1, &[], clk_tck(), Duration::ZERO),
        failed_attempts: ready.failed,
        drops: t.drops,
        kernel,
    })
}
