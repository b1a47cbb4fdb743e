//! Client worker processes for `conns` and `storm`.
//!
//! One process may hold at most 20,000 open files, so large connection
//! counts are spread over several processes: the bench re-executes itself as
//! `herald-bench worker …` (a hidden subcommand), once per slice of clients,
//! each slice from a loopback source address of its own.
//!
//! A worker's clients connect, handshake and subscribe (the first time at
//! most `--concurrency` at once), then idle, answering pings. When a
//! connection ends, the client reconnects with exponential backoff and full
//! jitter (a delay drawn uniformly from 0 to
//! `min(max, initial × 2^attempt)`) and subscribes again.
//!
//! The worker reports on stdout, one line each:
//!
//! * `status SUBSCRIBED BACK FAILED DROPS VERIFIED` every 200 ms: clients
//!   subscribed now, clients subscribed at least twice (back after a
//!   disconnect), failed connection attempts, connections lost, clients that
//!   received the check publication ([`CHECK_PUBLISHER`]) on their channel
//!   (`storm`: after they were back; `conns`: on their first connection,
//!   see `--verify-from`);
//! * `ready` once, when every client is subscribed for the first time;
//! * `allback NS` once, when every client is back, with the CLOCK_MONOTONIC
//!   time at which the last of them completed its subscription;
//! * `fatal MESSAGE` before exiting on an error.
//!
//! It exits when its stdin closes (the controller went away or is done) or
//! at its deadline.
//!
//! [`Pool`] is the controller's side: it spawns the workers and folds their
//! reports into [`Totals`].

use std::io::Write as _;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use rand::Rng as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep};

use crate::auth;
use crate::common::{Progress, mono_ns, raise_nofile_limit};
use crate::wire::{self, Stamp, Target, WireError, Ws};
use herald_protocol::{Cid, outbound};
use serde_json::value::RawValue;

/// Options of the hidden `worker` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Server URL.
    #[arg(long)]
    pub url: String,
    /// Clients in this worker.
    #[arg(long)]
    pub count: usize,
    /// Global index of the first client (client i subscribes to channel
    /// `bench/{i mod channels}`).
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// Channels the clients spread over.
    #[arg(long, default_value_t = 1)]
    pub channels: u32,
    /// Source address of every connection.
    #[arg(long)]
    pub source: IpAddr,
    /// First connections set up at the same time.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Backoff cap of the first reconnection attempt.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    pub backoff_initial: Duration,
    /// Largest backoff cap.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub backoff_max: Duration,
    /// Limit for one connect + handshake + subscribe.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Exit after this long whatever happens.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub deadline: Duration,
    /// Authenticate every client in its handshake with a token of its own
    /// (`sub` = `bench-user-INDEX`) signed with this HS256 secret. Given in
    /// the environment by the controller, not on the command line.
    #[arg(long, env = WORKER_SECRET_ENV, hide_env_values = true)]
    pub auth_secret: Option<String>,
    /// Count a check publication from the client's Nth subscription on (1:
    /// its first connection; 2: only once it came back after a drop).
    #[arg(long, default_value_t = 2)]
    pub verify_from: u32,
}

/// The environment variable through which the controller gives its
/// workers the auth secret.
pub const WORKER_SECRET_ENV: &str = "HERALD_BENCH_AUTH_SECRET";

/// The backoff cap before reconnection attempt `attempt` (0 first):
/// `min(max, initial × 2^attempt)`.
pub fn backoff_cap(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// The publisher index of the storm's check publications: the controller
/// publishes one on every channel once every client is back, and each
/// client counts the one of its own channel (once).
pub const CHECK_PUBLISHER: u32 = u32::MAX;

#[derive(Default)]
struct Counters {
    subscribed: AtomicU64,
    back: AtomicU64,
    failed: AtomicU64,
    drops: AtomicU64,
    verified: AtomicU64,
    last_back_ns: AtomicU64,
}

/// Idles on a subscribed connection, answering pings, until it ends. A
/// check publication on `channel` received while `back` (the connection
/// counts, see `--verify-from`) counts the client as verified (once:
/// `verified` remembers it across connections).
async fn idle(mut ws: Ws, channel: &str, back: bool, verified: &mut bool, c: &Counters) {
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_close() {
            break;
        }
        let Some(text) = msg.as_text() else { continue };
        if text.is_empty() {
            if ws.send(wire::pong()).await.is_err() {
                break;
            }
            continue;
        }
        if back && !*verified {
            wire::read_message(text, |ch, stamp| {
                if ch == channel
                    && stamp.is_some_and(|s| s.publisher == CHECK_PUBLISHER)
                    && !*verified
                {
                    *verified = true;
                    c.verified.fetch_add(1, Relaxed);
                }
            });
        }
    }
}

async fn client(
    index: usize,
    args: Arc<WorkerArgs>,
    target: Arc<Target>,
    sem: Arc<Semaphore>,
    c: Arc<Counters>,
) {
    let channel = format!("bench/{}", index % args.channels.max(1) as usize);
    let mut permit = sem.acquire_owned().await.ok();
    let mut subscribes = 0u32;
    let mut attempt = 0u32;
    let mut verified = false;
    let token = args
        .auth_secret
        .as_deref()
        .map(|secret| auth::token(secret, &auth::subject(index), auth::unix_now()));
    loop {
        let r = wire::connect_authenticated(
            &target,
            Some(args.source),
            None,
            token.as_deref(),
            Some(&channel),
            args.connect_timeout,
        )
        .await;
        drop(permit.take());
        match r {
            Ok(ws) => {
                attempt = 0;
                subscribes += 1;
                c.subscribed.fetch_add(1, Relaxed);
                if subscribes == 2 {
                    c.last_back_ns.fetch_max(mono_ns(), Relaxed);
                    c.back.fetch_add(1, Relaxed);
                }
                let counts = subscribes >= args.verify_from.max(1);
                idle(ws, &channel, counts, &mut verified, &c).await;
                c.subscribed.fetch_sub(1, Relaxed);
                c.drops.fetch_add(1, Relaxed);
            }
            Err(WireError::Unauthenticated(why)) => {
                // A wrong secret fails every client alike: no point retrying.
                say(&format!(
                    "fatal client {index}: the server did not accept its auth token ({why}); \
                     give the server's secret (--auth-secret) or use --no-auth"
                ));
                std::process::exit(1);
            }
            Err(e) => {
                let n = c.failed.fetch_add(1, Relaxed);
                if n < 10 && std::env::var_os("HERALD_BENCH_DEBUG").is_some() {
                    eprintln!("worker: client {index}: attempt failed: {e}");
                }
            }
        }
        let cap = backoff_cap(args.backoff_initial, args.backoff_max, attempt);
        attempt = attempt.saturating_add(1);
        let delay = rand::rng().random_range(Duration::ZERO..=cap);
        sleep(delay).await;
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs a worker until stdin closes or the deadline passes.
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let limit = raise_nofile_limit();
    if args.count as u64 + 32 > limit {
        say(&format!(
            "fatal {} clients exceed the open-file limit {limit}",
            args.count
        ));
        bail!("too many clients for one process");
    }
    let target = Arc::new(Target::parse(&args.url)?);
    // Exit when the controller closes our stdin.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
    let args = Arc::new(args);
    let counters = Arc::new(Counters::default());
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    for i in 0..args.count {
        tokio::spawn(client(
            args.first + i,
            args.clone(),
            target.clone(),
            sem.clone(),
            counters.clone(),
        ));
    }
    let deadline = Instant::now() + args.deadline;
    let count = args.count as u64;
    let (mut ready, mut allback) = (false, false);
    while Instant::now() < deadline {
        let sub = counters.subscribed.load(Relaxed);
        let back = counters.back.load(Relaxed);
        say(&format!(
            "status {sub} {back} {} {} {}",
            counters.failed.load(Relaxed),
            counters.drops.load(Relaxed),
            counters.verified.load(Relaxed)
        ));
        if !ready && sub == count {
            ready = true;
            say("ready");
        }
        if !allback && back == count {
            allback = true;
            say(&format!("allback {}", counters.last_back_ns.load(Relaxed)));
        }
        sleep(Duration::from_millis(200)).await;
    }
    say("fatal deadline");
    std::process::exit(1);
}

/// Publishes one check publication ([`CHECK_PUBLISHER`]) on each of
/// `channels` channels through a connection of its own, each acknowledged
/// by the server: every client then counts the one of its own channel.
pub async fn publish_checks(target: &Target, channels: u32) -> anyhow::Result<()> {
    let mut ws = wire::connect_subscribed(target, None, None, Duration::from_secs(10))
        .await
        .context("connecting the check publisher")?;
    let mut scratch = String::new();
    for c in 0..channels {
        let stamp = Stamp {
            publisher: CHECK_PUBLISHER,
            seq: u64::from(c),
            sent_ns: mono_ns(),
        };
        wire::encode_data(stamp, 0, &mut scratch);
        let data: &RawValue = serde_json::from_str(&scratch).context("check data")?;
        let cid = u64::from(c) + 2;
        let frame =
            outbound::publish_request(&format!("bench/{c}"), Some(data), Some(&Cid::from(cid)));
        tokio::time::timeout(
            Duration::from_secs(10),
            wire::request(&mut ws, frame, cid, "publish"),
        )
        .await
        .context("check publication not acknowledged in 10 s")??;
    }
    let _ = futures_util::SinkExt::close(&mut ws).await;
    Ok(())
}

/// What one worker last reported.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Clients subscribed now.
    pub subscribed: u64,
    /// Clients back after a disconnect.
    pub back: u64,
    /// Failed connection attempts.
    pub failed: u64,
    /// Connections lost.
    pub drops: u64,
    /// Clients that received the check publication after they were back.
    pub verified: u64,
    /// Whether every worker reported `ready`.
    pub ready: bool,
    /// When every worker reported `allback`: the latest of their times.
    pub allback_ns: Option<u64>,
    /// The first fatal error or unexpected exit.
    pub fatal: Option<String>,
}

/// How one worker is described to [`Pool::spawn`].
#[derive(Debug, Clone)]
pub struct Slice {
    /// Clients.
    pub count: usize,
    /// Global index of the first client.
    pub first: usize,
    /// Source address.
    pub source: IpAddr,
}

/// Splits `n` clients into slices of at most `per_worker`, each from its
/// own source address (127.0.0.2, 127.0.0.3, …).
pub fn slices(n: usize, per_worker: usize) -> Vec<Slice> {
    let per = per_worker.max(1);
    (0..n.div_ceil(per))
        .map(|w| Slice {
            count: per.min(n - w * per),
            first: w * per,
            source: wire::source_addr(2, 250, w),
        })
        .collect()
}

/// The controller's side: worker processes and their latest reports.
pub struct Pool {
    children: Vec<Child>,
    status: Arc<Mutex<Vec<Totals>>>,
}

/// Worker settings shared by every slice.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Server URL.
    pub url: String,
    /// Channels.
    pub channels: u32,
    /// First connections at once, per worker.
    pub concurrency: usize,
    /// Backoff cap of the first attempt.
    pub backoff_initial: Duration,
    /// Largest backoff cap.
    pub backoff_max: Duration,
    /// Worker lifetime limit.
    pub deadline: Duration,
    /// The subscription from which check publications count (`storm`: 2,
    /// `conns`: 1).
    pub verify_from: u32,
    /// The HS256 secret each client's token is signed with (`None`: the
    /// clients do not authenticate).
    pub auth_secret: Option<String>,
}

impl Pool {
    /// Starts one worker per slice.
    pub fn spawn(cfg: &PoolConfig, slices: &[Slice]) -> anyhow::Result<Pool> {
        let exe = std::env::current_exe().context("cannot find the bench executable")?;
        let status = Arc::new(Mutex::new(vec![Totals::default(); slices.len()]));
        let mut children = Vec::with_capacity(slices.len());
        for (w, s) in slices.iter().enumerate() {
            let mut child = Command::new(&exe)
                .arg("worker")
                .args(["--url", &cfg.url])
                .args(["--count", &s.count.to_string()])
                .args(["--first", &s.first.to_string()])
                .args(["--channels", &cfg.channels.to_string()])
                .args(["--source", &s.source.to_string()])
                .args(["--concurrency", &cfg.concurrency.to_string()])
                .args([
                    "--backoff-initial",
                    &humantime::format_duration(cfg.backoff_initial).to_string(),
                ])
                .args([
                    "--backoff-max",
                    &humantime::format_duration(cfg.backoff_max).to_string(),
                ])
                .args([
                    "--deadline",
                    &humantime::format_duration(cfg.deadline).to_string(),
                ])
                .args(["--verify-from", &cfg.verify_from.to_string()])
                .env_remove(WORKER_SECRET_ENV)
                .envs(cfg.auth_secret.as_ref().map(|s| (WORKER_SECRET_ENV, s)))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a worker process")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let status = status.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut st = status.lock();
                    apply_line(&mut st[w], &line);
                }
                let mut st = status.lock();
                if st[w].fatal.is_none() {
                    st[w].fatal = Some(format!("worker {w} exited"));
                }
            });
            children.push(child);
        }
        Ok(Pool { children, status })
    }

    /// The sum of the latest reports.
    pub fn totals(&self) -> Totals {
        let st = self.status.lock();
        let mut t = Totals {
            ready: true,
            allback_ns: Some(0),
            ..Totals::default()
        };
        for w in st.iter() {
            t.subscribed += w.subscribed;
            t.back += w.back;
            t.failed += w.failed;
            t.drops += w.drops;
            t.verified += w.verified;
            t.ready &= w.ready;
            t.allback_ns = match (t.allback_ns, w.allback_ns) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            if t.fatal.is_none() {
                t.fatal.clone_from(&w.fatal);
            }
        }
        t
    }

    /// Waits until `done(totals)` holds, showing `show(totals)` as progress.
    /// Fails on a worker error or after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        progress: &mut Progress,
        done: impl Fn(&Totals) -> bool,
        show: impl Fn(&Totals) -> String,
    ) -> anyhow::Result<Totals> {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.totals();
            if done(&t) {
                return Ok(t);
            }
            if let Some(e) = &t.fatal {
                bail!("{e}");
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} ({})", show(&t));
            }
            progress.update(&show(&t));
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// Closes the workers' stdin (they exit), then kills any left.
    pub async fn shutdown(mut self) {
        for c in &mut self.children {
            drop(c.stdin.take());
        }
        for c in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .is_err()
            {
                let _ = c.start_kill();
                let _ = c.wait().await;
            }
        }
    }
}

/// Folds one report line into a worker's status.
fn apply_line(st: &mut Totals, line: &str) {
    let mut parts = line.split_ascii_whitespace();
    match parts.next() {
        Some("status") => {
            let mut n = || parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            st.subscribed = n();
            st.back = n();
            st.failed = n();
            st.drops = n();
            st.verified = n();
        }
        Some("ready") => st.ready = true,
        Some("allback") => st.allback_ns = parts.next().and_then(|v| v.parse().ok()),
        Some("fatal") => st.fatal = Some(line["fatal".len()..].trim().to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        assert_eq!(backoff_cap(ms(100), ms(2000), 0), ms(100));
        assert_eq!(backoff_cap(ms(100), ms(2000), 1), ms(200));
        assert_eq!(backoff_cap(ms(100), ms(2000), 4), ms(1600));
        assert_eq!(backoff_cap(ms(100), ms(2000), 5), ms(2000));
        assert_eq!(backoff_cap(ms(100), ms(2000), 500), ms(2000));
    }

    #[test]
    fn clients_are_sliced_over_workers_and_sources() {
        let s = slices(12_000, 5_000);
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().map(|s| s.count).sum::<usize>(), 12_000);
        assert_eq!((s[2].first, s[2].count), (10_000, 2_000));
        assert_eq!(s[0].source.to_string(), "127.0.0.2");
        assert_eq!(s[2].source.to_string(), "127.0.0.4");
        assert!(slices(0, 10).is_empty());
    }

    #[test]
    fn report_lines_are_folded() {
        let mut st = Totals::default();
        apply_line(&mut st, "status 10 3 1 2 7");
        apply_line(&mut st, "ready");
        apply_line(&mut st, "allback 12345");
        apply_line(&mut st, "noise");
        assert_eq!(
            (st.subscribed, st.back, st.failed, st.drops, st.verified),
            (10, 3, 1, 2, 7)
        );
        assert!(st.ready);
        assert_eq!(st.allback_ns, Some(12345));
        apply_line(&mut st, "fatal oh no");
        assert_eq!(st.fatal.as_deref(), Some("oh no"));
    }
}
