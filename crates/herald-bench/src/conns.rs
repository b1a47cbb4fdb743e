//! `conns`: the server's memory per idle, subscribed connection.
//!
//! The server's resident set size is read while it is idle, then N clients
//! (spread over worker processes and loopback source addresses, see
//! [`crate::worker`]) connect, handshake, subscribe to one of C channels and
//! stay idle, answering pings. After a settling time the resident set is
//! read again: memory per connection = (RSS after − RSS before) / N. Each
//! reading is the median of several samples.
//!
//! The server side is the process given (or started) and its children, so
//! that `herald serve --workers N` is measured whole: RSS and CPU are the
//! sums over the supervisor and every worker ([`sample_tree`]).
//!
//! Every connection authenticates in its handshake, with a token of its own
//! (`sub` = `bench-user-INDEX`, HS256, see [`crate::auth`]): a production
//! socket carries its token, claims and user-index entry, and so does the
//! measured one. The server must report each socket authenticated. The
//! secret is `--auth-secret` (or `HERALD_AUTH_SECRET`); when the bench
//! starts the server (`--server-cmd`) without one, it draws a random secret
//! and gives it to the server as `HERALD_AUTH_SECRET`. `--no-auth` opens
//! anonymous sockets instead (for a server without auth).
//!
//! With `--hold D` the connections then stay idle for D (the server pings
//! them meanwhile), and the server side's CPU over the hold is reported;
//! every connection must still be open at the end. With `--check`, one
//! publication on every channel must then reach every connection (so with
//! several server workers, a publication crosses the broker to the
//! subscribers of every worker). A failed check is listed in the result's
//! `failures` and makes the bench exit with status 3.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep};

use crate::common::{Common, Harness, Progress};
use crate::procstat::{ListenCounters, Usage, clk_tck, listen_counters, sample_tree, tree_size};
use crate::stats::{bytes_per_connection, median, per_sec, thousands};
use crate::worker::{Pool, PoolConfig, publish_checks, slices};

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
    /// Then hold every connection idle this long (the server pings them),
    /// measuring the server side's CPU; all must still be open at the end.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub hold: Duration,
    /// At the end, publish once on every channel: every connection must
    /// receive the publication of its own channel.
    #[arg(long)]
    pub check: bool,
    /// Give up waiting for the check publications after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub check_timeout: Duration,
    /// HS256 secret the server verifies tokens with (Herald's
    /// `auth_secret`). Default with --server-cmd: a random one, given to
    /// the started server as HERALD_AUTH_SECRET.
    #[arg(long, env = crate::auth::SECRET_ENV, hide_env_values = true, conflicts_with = "no_auth")]
    pub auth_secret: Option<String>,
    /// Open anonymous sockets: no token in the handshake.
    #[arg(long)]
    pub no_auth: bool,
}

impl ConnsArgs {
    /// Generous time for the whole run.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_secs(60 + self.connections as u64 / 100)
            + self.settle * 2
            + self.hold
            + if self.check {
                self.check_timeout
            } else {
                Duration::ZERO
            }
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
    /// Whether every connection authenticated with a token of its own.
    #[serde(default)]
    pub authenticated: bool,
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
    /// Server-side processes measured (the server and its children, e.g.
    /// a supervisor and its workers).
    #[serde(default)]
    pub server_processes: usize,
    /// Seconds every connection was held idle after the memory reading.
    #[serde(default)]
    pub hold_s: f64,
    /// The server side's CPU and memory over the hold.
    #[serde(default)]
    pub server_idle: Option<Usage>,
    /// Connections open and subscribed at the end.
    #[serde(default)]
    pub alive: u64,
    /// Whether the check publications were sent (`--check`).
    #[serde(default)]
    pub checked: bool,
    /// Connections that received the check publication of their channel.
    #[serde(default)]
    pub verified: u64,
    /// Seconds from the first check publication until every connection had
    /// its one (`None`: not all did in time, or no check).
    #[serde(default)]
    pub check_s: Option<f64>,
}

impl ConnsResult {
    /// The checks that failed, in words (empty: none did).
    pub fn failures(&self) -> Vec<String> {
        let n = self.connections as u64;
        let mut out = Vec::new();
        if self.hold_s > 0.0 && (self.alive < n || self.drops > 0) {
            out.push(format!(
                "{} of {n} connections open at the end ({} drops)",
                self.alive, self.drops
            ));
        }
        if self.checked && self.verified < n {
            out.push(format!(
                "only {} of {n} connections received the publication of their channel",
                self.verified
            ));
        }
        out
    }
}

/// Median RSS (KiB) of `n` samples taken `every` apart.
async fn rss_median(pid: u32, n: usize, every: Duration) -> anyhow::Result<u64> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 {
            sleep(every).await;
        }
        v.push(
            sample_tree(pid)
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
    let (secret, env) = match (&args.auth_secret, args.no_auth) {
        (_, true) => (None, Vec::new()),
        (Some(s), false) => (Some(s.clone()), Vec::new()),
        (None, false) if args.common.server_cmd.is_some() => {
            let s = crate::auth::random_secret();
            (
                Some(s.clone()),
                vec![(crate::auth::SECRET_ENV.to_owned(), s)],
            )
        }
        (None, false) => bail!(
            "conns authenticates its sockets: give the server's secret with --auth-secret \
             (or HERALD_AUTH_SECRET), or use --no-auth"
        ),
    };
    let harness = Harness::open_with(&args.common, env).await?;
    let result = run_with(args, &harness, secret).await;
    harness.close().await;
    result
}

async fn run_with(
    args: &ConnsArgs,
    harness: &Harness,
    auth_secret: Option<String>,
) -> anyhow::Result<ConnsResult> {
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
        verify_from: 1,
        auth_secret,
    };
    let listen_before = listen_counters();
    let s0 = sample_tree(pid)?;
    let start = Instant::now();
    let pool = Pool::spawn(&cfg, &parts)?;
    let result = measure(args, harness, &pool, &mut progress, pid, n).await;
    pool.shutdown().await;
    progress.done();
    let m = result?;
    let per = bytes_per_connection(before, m.after, n as u64);
    let connect = m.connected_at.duration_since(start);
    Ok(ConnsResult {
        label: args.common.label.clone(),
        connections: n,
        channels: cfg.channels,
        authenticated: cfg.auth_secret.is_some(),
        workers: parts.len(),
        rss_before_mib: before as f64 / 1024.0,
        rss_after_mib: m.after as f64 / 1024.0,
        bytes_per_connection: per,
        kib_per_connection: per / 1024.0,
        connect_s: connect.as_secs_f64(),
        connects_per_sec: per_sec(n as u64, connect),
        server_connect: Usage::between(&s0, &m.s1, &[], clk_tck(), Duration::ZERO),
        failed_attempts: m.failed,
        drops: m.end.drops,
        kernel: listen_counters().since(&listen_before),
        server_processes: m.processes,
        hold_s: args.hold.as_secs_f64(),
        server_idle: m.idle,
        alive: m.end.subscribed,
        checked: args.check,
        verified: m.end.verified,
        check_s: m.check_s,
    })
}

/// What [`measure`] read.
struct Measured {
    connected_at: Instant,
    s1: crate::procstat::ProcSample,
    failed: u64,
    after: u64,
    processes: usize,
    idle: Option<Usage>,
    check_s: Option<f64>,
    end: crate::worker::Totals,
}

/// Waits for every connection, reads the memory, holds, checks.
async fn measure(
    args: &ConnsArgs,
    harness: &Harness,
    pool: &Pool,
    progress: &mut Progress,
    pid: u32,
    n: usize,
) -> anyhow::Result<Measured> {
    let ready = pool
        .wait_for(
            Duration::from_secs(30 + n as u64 / 200),
            progress,
            |t| t.ready,
            |t| {
                format!(
                    "connected {}/{}",
                    thousands(t.subscribed),
                    thousands(n as u64)
                )
            },
        )
        .await
        .context("opening the connections")?;
    let connected_at = Instant::now();
    let s1 = sample_tree(pid)?;
    progress.update(&format!("{} connections; settling", thousands(n as u64),));
    sleep(args.settle).await;
    let after = rss_median(pid, 5, Duration::from_millis(200)).await?;
    let processes = tree_size(pid);
    let idle = if args.hold.is_zero() {
        None
    } else {
        let a = sample_tree(pid)?;
        let until = Instant::now() + args.hold;
        while Instant::now() < until {
            let t = pool.totals();
            if let Some(e) = &t.fatal {
                bail!("{e}");
            }
            progress.update(&format!(
                "holding {}/{} open, {} drops, {:.0} s left",
                thousands(t.subscribed),
                thousands(n as u64),
                t.drops,
                until
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
            ));
            sleep(Duration::from_millis(500).min(until.saturating_duration_since(Instant::now())))
                .await;
        }
        let b = sample_tree(pid)?;
        Some(Usage::between(&a, &b, &[], clk_tck(), Duration::ZERO))
    };
    let mut check_s = None;
    if args.check {
        progress.update("publishing on every channel");
        let started = std::time::Instant::now();
        publish_checks(&harness.target, args.channels.max(1)).await?;
        match pool
            .wait_for(
                args.check_timeout,
                progress,
                |t| t.verified >= n as u64,
                |t| format!("received {}/{}", thousands(t.verified), thousands(n as u64)),
            )
            .await
        {
            Ok(_) => check_s = Some(started.elapsed().as_secs_f64()),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    Ok(Measured {
        connected_at,
        s1,
        failed: ready.failed,
        after,
        processes,
        idle,
        check_s,
        end: pool.totals(),
    })
}
