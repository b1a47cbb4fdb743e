//! `storm`: every client reconnects at once after a server crash.
//!
//! The bench starts the server itself (`--server-cmd`), connects N clients
//! in worker processes (see [`crate::worker`]; exponential backoff with full
//! jitter), waits until all are subscribed, SIGKILLs the server and starts it
//! again on the same port. It reports the time from the moment the new
//! server listens until every client is connected and subscribed again, and
//! the new server's CPU (average and peak over 100 ms intervals) and peak
//! memory meanwhile.
//!
//! Being back is not enough: once every client is resubscribed the bench
//! publishes one check publication on every channel (acknowledged by the
//! server) and waits until every client has received the one of its own
//! channel. With `--max-rss-mib` the new server's peak RSS (VmHWM) is checked
//! against a bound too. A failed check (not all back, a client without its
//! publication, RSS over the bound) is listed in the result's `failures` and
//! makes the bench exit with status 3.
//!
//! With full jitter every client's next attempt comes at most one backoff
//! cap after the restart, so a server that accepts the storm quickly brings
//! everyone back within `backoff max + 1 s` (the target).

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::time::sleep;

use crate::common::{Common, Harness, Progress, mono_ns};
use crate::procstat::{ListenCounters, Sampler, Usage, listen_counters};
use crate::stats::thousands;
use crate::worker::{Pool, PoolConfig, publish_checks, slices};

/// `storm` options.
#[derive(Debug, Clone, clap::Args)]
pub struct StormArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Clients.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub clients: usize,
    /// Channels they subscribe to (client i to channel i mod C).
    #[arg(long, default_value_t = 100)]
    pub channels: u32,
    /// Clients per worker process (each from its own source address).
    #[arg(long, default_value_t = 5_000)]
    pub per_worker: usize,
    /// First connections set up at the same time, per worker.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Backoff cap of the first reconnection attempt.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    pub backoff_initial: Duration,
    /// Largest backoff cap.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub backoff_max: Duration,
    /// Wait between all clients subscribed and the kill.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub settle: Duration,
    /// Give up waiting for the clients after the restart after this long.
    /// Default: backoff max + 30 s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub recovery_timeout: Option<Duration>,
    /// Fail (exit status 3) when the restarted server's peak RSS (VmHWM)
    /// exceeds this many MiB.
    #[arg(long, value_name = "MIB")]
    pub max_rss_mib: Option<f64>,
    /// Give up waiting for every client to receive its check publication
    /// after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub check_timeout: Duration,
}

impl StormArgs {
    fn recovery_timeout(&self) -> Duration {
        self.recovery_timeout
            .unwrap_or(self.backoff_max + Duration::from_secs(30))
    }

    /// Generous time for the whole run.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_secs(90 + self.clients as u64 / 100)
            + self.settle
            + self.recovery_timeout()
            + self.check_timeout
    }
}

/// The outcome of one storm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormResult {
    /// Name of the server under test.
    pub label: String,
    /// Clients.
    pub clients: usize,
    /// Channels.
    pub channels: u32,
    /// Worker processes.
    pub workers: usize,
    /// Backoff cap of the first attempt, ms.
    pub backoff_initial_ms: u64,
    /// Largest backoff cap, ms.
    pub backoff_max_ms: u64,
    /// Seconds from the kill until the new server listened.
    pub restart_s: f64,
    /// Seconds from the new server listening until every client was back
    /// and subscribed (`None`: not all came back in time).
    pub recovery_s: Option<f64>,
    /// Clients back and subscribed at the end.
    pub back: u64,
    /// The target for `recovery_s`: backoff max + 1 s.
    pub target_s: f64,
    /// The new server's CPU and memory from listening until all were back.
    pub server: Usage,
    /// The new server's peak RSS (VmHWM), MiB.
    pub server_hwm_mib: f64,
    /// Failed connection attempts over the whole run.
    pub failed_attempts: u64,
    /// Accept-queue overflows and SYN cookies on the machine from the kill
    /// until all were back: the server's listen backlog was too short.
    #[serde(default)]
    pub kernel: ListenCounters,
    /// Clients that received the check publication of their channel after
    /// they were back (must be `clients`).
    #[serde(default)]
    pub verified: u64,
    /// Seconds from the first check publication until every client had
    /// its one (`None`: not all did in time).
    #[serde(default)]
    pub check_s: Option<f64>,
    /// The RSS bound checked (`--max-rss-mib`), MiB.
    #[serde(default)]
    pub max_rss_mib: Option<f64>,
}

impl StormResult {
    /// The checks that failed, in words (empty: the storm passed).
    pub fn failures(&self) -> Vec<String> {
        let n = self.clients as u64;
        let mut out = Vec::new();
        if self.recovery_s.is_none() || self.back < n {
            out.push(format!("only {} of {n} clients came back", self.back));
        }
        if self.verified < n {
            out.push(format!(
                "only {} of {n} clients received the publication of their channel after the restart",
                self.verified
            ));
        }
        if let Some(max) = self.max_rss_mib
            && self.server_hwm_mib > max
        {
            out.push(format!(
                "server peak RSS {:.1} MiB exceeds the bound of {max:.1} MiB",
                self.server_hwm_mib
            ));
        }
        out
    }
}

/// Runs the scenario.
pub async fn run(args: &StormArgs) -> anyhow::Result<StormResult> {
    if args.common.server_cmd.is_none() {
        bail!("storm restarts the server itself: give --server-cmd");
    }
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let mut harness = Harness::open(&args.common).await?;
    let result = run_with(args, &mut harness).await;
    harness.close().await;
    result
}

async fn run_with(args: &StormArgs, harness: &mut Harness) -> anyhow::Result<StormResult> {
    let n = args.clients as u64;
    let mut progress = Progress::new(format!("storm {}", args.common.label), args.common.quiet);
    let parts = slices(args.clients, args.per_worker);
    let cfg = PoolConfig {
        url: harness.target.url.clone(),
        channels: args.channels.max(1),
        concurrency: args.connect_concurrency,
        backoff_initial: args.backoff_initial,
        backoff_max: args.backoff_max,
        deadline: args.default_deadline() + Duration::from_secs(60),
        verify_from: 2,
        auth_secret: None,
    };
    let pool = Pool::spawn(&cfg, &parts)?;
    let result = async {
        pool.wait_for(
            Duration::from_secs(30 + n / 200),
            &mut progress,
            |t| t.ready,
            |t| format!("connected {}/{}", thousands(t.subscribed), thousands(n)),
        )
        .await
        .context("connecting the clients")?;
        progress.update("all subscribed; settling");
        sleep(args.settle).await;

        progress.update("killing the server");
        let listen_before = listen_counters();
        let (killed, listening) = harness.kill_and_restart().await?;
        let listen_ns = mono_ns();
        let pid = harness.pid.context("restarted server has no PID")?;
        let sampler = Sampler::start(pid, Duration::from_millis(100));
        let a = sampler.now().context("cannot read the restarted server")?;
        let waited = pool
            .wait_for(
                args.recovery_timeout(),
                &mut progress,
                |t| t.allback_ns.is_some(),
                |t| format!("back {}/{}", thousands(t.back), thousands(n)),
            )
            .await;
        let b = sampler.now().context("cannot read the restarted server")?;
        let kernel = listen_counters().since(&listen_before);
        let recovery_s = match waited {
            Ok(t) => t
                .allback_ns
                .map(|ns| ns.saturating_sub(listen_ns) as f64 / 1e9),
            Err(e) => {
                eprintln!("warning: {e}");
                None
            }
        };
        // Every channel once; every client must get the one of its own.
        let mut check_s = None;
        if recovery_s.is_some() {
            progress.update("all back; publishing on every channel");
            let started = std::time::Instant::now();
            publish_checks(&harness.target, cfg.channels).await?;
            match pool
                .wait_for(
                    args.check_timeout,
                    &mut progress,
                    |t| t.verified >= n,
                    |t| format!("received {}/{}", thousands(t.verified), thousands(n)),
                )
                .await
            {
                Ok(_) => check_s = Some(started.elapsed().as_secs_f64()),
                Err(e) => eprintln!("warning: {e}"),
            }
        }
        let totals = pool.totals();
        progress.done();
        Ok::<_, anyhow::Error>(StormResult {
            label: args.common.label.clone(),
            clients: args.clients,
            channels: cfg.channels,
            workers: parts.len(),
            backoff_initial_ms: args.backoff_initial.as_millis() as u64,
            backoff_max_ms: args.backoff_max.as_millis() as u64,
            restart_s: listening.duration_since(killed).as_secs_f64(),
            recovery_s,
            back: totals.back,
            target_s: (args.backoff_max + Duration::from_secs(1)).as_secs_f64(),
            server: sampler.usage(&a, &b),
            server_hwm_mib: sampler.hwm_mib(),
            failed_attempts: totals.failed,
            kernel,
            verified: totals.verified,
            check_s,
            max_rss_mib: args.max_rss_mib,
        })
    }
    .await;
    pool.shutdown().await;
    result
}
