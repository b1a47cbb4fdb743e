//! `fanout`: P publishers publish stamped messages on C channels, each with S
//! subscribers; every delivery is checked and timed.
//!
//! Each publication's data carries the publisher's index, a per-publisher
//! sequence number and the send time on a monotonic clock shared by every
//! connection of the process (see [`crate::wire::Stamp`]). Publisher `i`
//! publishes on channel `i mod C`; every subscriber keeps a
//! [`SeqChecker`] per publisher of its channel.
//!
//! Publications are sent without a call id (no ack). Flow control is end to
//! end: a channel may have at most `window` publications in flight (sent
//! but not yet delivered to every subscriber of the channel). With `--rate 0`
//! publishers send whenever the window has room, which measures the highest
//! sustained delivery rate without ever overflowing a server's queues. With a
//! rate they follow a fixed schedule (staggered between publishers), and the
//! window only guards against a server that cannot keep up.
//!
//! Timeline: connect and subscribe everything, then warm-up, measurement,
//! stop, and a bounded drain that waits for the deliveries in flight before
//! counting losses. Throughput, latency and server usage cover the
//! measurement only; sequence checking covers the whole run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use crate::common::{Common, Harness, Progress, raise_nofile_limit};
use crate::procstat::{ProcSample, Sampler, Usage, clk_tck, machine_ticks};
use crate::seq::{SeqChecker, SeqCounts};
use crate::stats::{LatencySummary, ShardedLatency, per_sec, rate, thousands};
use crate::wire::{self, Read, Stamp, Ws};

/// Default publications in flight per channel.
pub const DEFAULT_WINDOW: u64 = 64;

/// `fanout` options.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Publishing connections; publisher i publishes on channel i mod C.
    #[arg(long, short = 'P', default_value_t = 1)]
    pub publishers: u32,
    /// Connect the publishers to this URL instead of the server under test:
    /// another node of the same cluster, for cross-node scenarios (publisher
    /// on node A, subscribers on node B through a broker).
    #[arg(long, value_name = "URL")]
    pub publish_url: Option<String>,
    /// Channels.
    #[arg(long, short = 'C', default_value_t = 1)]
    pub channels: u32,
    /// Channel names are this prefix and the channel's number (a Herald
    /// namespace, `hist:` say, chooses the channels' options).
    #[arg(long, default_value = "bench/")]
    pub channel_prefix: String,
    /// Subscribers per channel (one connection each).
    #[arg(long, short = 'S', default_value_t = 100)]
    pub subscribers: u32,
    /// Size of each publication's data in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Publications per second over all publishers; 0 = as fast as the
    /// server takes (closed loop, bounded by the window).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Measured time, e.g. 10s.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Most publications in flight per channel: sent, not yet delivered to
    /// every subscriber of the channel. It bounds each subscriber's queue on
    /// the server, so it also bounds how many frames a server can write at
    /// once. Default 64, lowered when needed to keep the deliveries in
    /// flight under --max-inflight.
    #[arg(long)]
    pub window: Option<u64>,
    /// Cap on the deliveries in flight over all channels for the default
    /// window.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_inflight: u64,
    /// Threads of the bench's own runtime (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Wait after the run for deliveries still in flight: at least this
    /// long if needed, longer (up to six times) when the measured rate says
    /// the deliveries in flight need more.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub drain_timeout: Duration,
    /// Connections set up at the same time.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Spread connections over this many loopback source addresses
    /// (127.0.0.2, 127.0.0.3, …).
    #[arg(long, default_value_t = 4)]
    pub sources: u8,
    /// Slow readers, as a fraction of the subscribers of each channel (0.1:
    /// one more for every ten): extra subscribers that read one message per
    /// --slow-pause, are closed by the server as slow consumers, reconnect
    /// and fall behind again (see `crate::slow`). They are not part of the
    /// delivery accounting; compare the latency with and without them.
    #[arg(long, default_value_t = 0.0)]
    pub slow_readers: f64,
    /// How long a slow reader waits after each message it reads.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20ms")]
    pub slow_pause: Duration,
}

impl FanoutArgs {
    /// The window per channel: explicit, or 64 within `--max-inflight`.
    pub fn window(&self) -> u64 {
        self.window.unwrap_or_else(|| {
            let subs = (u64::from(self.channels) * u64::from(self.subscribers)).max(1);
            (self.max_inflight / subs).clamp(2, DEFAULT_WINDOW)
        })
    }

    /// Generous time for the whole run: setup, warm-up, run, drain.
    pub fn default_deadline(&self) -> Duration {
        let conns =
            u64::from(self.channels) * u64::from(self.subscribers) + u64::from(self.publishers);
        Duration::from_secs(60 + conns / 100) + self.warmup + self.duration + self.drain_timeout * 7
    }
}

/// The outcome of one fan-out run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutResult {
    /// Name of the server under test.
    pub label: String,
    /// Publishing connections.
    pub publishers: u32,
    /// Channels.
    pub channels: u32,
    /// Subscribers per channel.
    pub subscribers_per_channel: u32,
    /// Data size per publication, bytes.
    pub payload_bytes: usize,
    /// Prefix of the channel names (a Herald namespace picks the channels'
    /// options).
    #[serde(default = "default_prefix")]
    pub channel_prefix: String,
    /// Target publications per second (0 = as fast as possible).
    pub target_rate: f64,
    /// Publications in flight allowed per channel.
    pub window: u64,
    /// Threads of the bench's runtime.
    #[serde(default)]
    pub bench_threads: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Publications sent during the measurement.
    pub publications: u64,
    /// Deliveries received during the measurement.
    pub deliveries: u64,
    /// Publications per second during the measurement.
    pub publications_per_sec: f64,
    /// Deliveries per second during the measurement.
    pub deliveries_per_sec: f64,
    /// Publish-to-delivery latency during the measurement.
    pub latency: LatencySummary,
    /// Publications sent over the whole run.
    pub published_total: u64,
    /// Deliveries expected over the whole run (publications × subscribers).
    pub expected_total: u64,
    /// Sequence accounting over the whole run, after the drain.
    pub seq: SeqCounts,
    /// Deliveries on the wrong channel, from an unknown publisher, or
    /// without readable data.
    pub misrouted: u64,
    /// Subscribers whose connection ended during the run.
    pub disconnects: u64,
    /// Seconds the drain took.
    pub drain_s: f64,
    /// CPU busy on the whole machine during the measurement, percent of one
    /// core: well above server + bench means something else was running.
    #[serde(default)]
    pub machine_cpu_pct: Option<f64>,
    /// Server CPU and memory during the measurement (when its PID is known).
    pub server: Option<Usage>,
    /// The bench's own CPU and memory during the measurement.
    pub bench: Option<Usage>,
    /// The slow readers' report, when the run had some.
    #[serde(default)]
    pub slow: Option<Box<crate::slow::SlowReport>>,
}

impl FanoutResult {
    /// Whether every publication reached every subscriber once, in order.
    pub fn clean(&self) -> bool {
        self.seq.is_clean() && self.misrouted == 0 && self.disconnects == 0
    }
}

fn default_prefix() -> String {
    "bench/".to_owned()
}

/// The channel name of channel `c`.
fn channel_name(prefix: &str, c: u32) -> String {
    format!("{prefix}{c}")
}

/// Counters of one channel, on a cache line of their own.
#[repr(align(64))]
#[derive(Default)]
struct ChannelCounters {
    /// Publications sent on the channel.
    sent: AtomicU64,
    /// Good deliveries received by its subscribers.
    delivered: AtomicU64,
}

/// What a subscriber task keeps; read by the main task at the end.
#[derive(Default)]
struct SubState {
    /// One checker per publisher of the channel (publisher `c + k·C` at `k`).
    checkers: Vec<SeqChecker>,
    misrouted: u64,
    ended: Option<String>,
}

struct Sub {
    state: Mutex<SubState>,
}

struct Shared {
    epoch: std::time::Instant,
    prefix: String,
    channels: Box<[ChannelCounters]>,
    published: Box<[AtomicU64]>,
    channel_count: u32,
    per_channel: u64,
    latency: ShardedLatency,
    measuring: AtomicBool,
    stop: AtomicBool,
    ready: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn delivered(&self) -> u64 {
        self.channels
            .iter()
            .map(|c| c.delivered.load(Relaxed))
            .sum()
    }

    fn sent(&self) -> u64 {
        self.channels.iter().map(|c| c.sent.load(Relaxed)).sum()
    }
}

/// Reads deliveries until the connection ends (or the task is aborted).
async fn run_subscriber(shared: Arc<Shared>, me: Arc<Sub>, key: usize, channel: u32, mut ws: Ws) {
    let name = channel_name(&shared.prefix, channel);
    let c = shared.channel_count;
    let mut lat: Vec<u64> = Vec::with_capacity(256);
    loop {
        let Some(first) = ws.next().await else {
            me.state.lock().ended = Some("end of stream".into());
            return;
        };
        let mut good = 0u64;
        let mut ping = false;
        let mut ended: Option<String> = None;
        {
            let mut st = me.state.lock();
            let st = &mut *st;
            let mut next = Some(first);
            // The clock is read once per 32 messages: they were all in the
            // socket's buffer already.
            let mut now = shared.now_ns();
            let mut since_clock = 0u32;
            // Everything already buffered, under one lock.
            while let Some(msg) = next.take() {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        ended = Some(e.to_string());
                        break;
                    }
                };
                if let Some((code, reason)) = msg.as_close() {
                    ended = Some(format!(
                        "closed by the server: {} {reason}",
                        u16::from(code)
                    ));
                    break;
                }
                let Some(text) = msg.as_text() else { continue };
                since_clock += 1;
                if since_clock == 32 {
                    now = shared.now_ns();
                    since_clock = 0;
                }
                let read = wire::read_message(text, |ch, stamp| match stamp {
                    Some(Stamp {
                        publisher,
                        seq,
                        sent_ns,
                    }) if ch == name && publisher % c == channel => {
                        match st.checkers.get_mut((publisher / c) as usize) {
                            Some(checker) => {
                                checker.observe(seq);
                                good += 1;
                                lat.push(now.saturating_sub(sent_ns));
                            }
                            None => st.misrouted += 1,
                        }
                    }
                    _ => st.misrouted += 1,
                });
                if read == Read::Ping {
                    ping = true;
                }
                next = ws.next().now_or_never().flatten();
            }
        }
        if good > 0 {
            shared.channels[channel as usize]
                .delivered
                .fetch_add(good, Relaxed);
        }
        if shared.measuring.load(Relaxed) {
            shared.latency.record_batch(key, &lat);
        }
        lat.clear();
        if ping && ended.is_none() && ws.send(wire::pong()).await.is_err() {
            ended = Some("failed to send a pong".into());
        }
        if let Some(e) = ended {
            me.state.lock().ended = Some(e);
            return;
        }
    }
}

/// One publisher's schedule.
struct PubPlan {
    id: u32,
    channel: u32,
    start: Instant,
    /// Time between two publications (`None`: closed loop).
    interval: Option<Duration>,
    window: u64,
    payload: usize,
}

/// Most publications written per flush.
const MAX_BURST: u64 = 64;

/// Publishes until told to stop. Returns the socket (kept open until the
/// drain is over) and the error that ended it early, if any.
async fn run_publisher(shared: Arc<Shared>, plan: PubPlan, mut ws: Ws) -> (Ws, Option<String>) {
    let name = channel_name(&shared.prefix, plan.channel);
    let ch = &shared.channels[plan.channel as usize];
    let per_channel = shared.per_channel.max(1);
    let mut scratch = String::with_capacity(plan.payload + 64);
    let mut seq = 0u64;
    let result: Result<(), String> = async {
        loop {
            if shared.stop.load(Relaxed) {
                return Ok(());
            }
            // Answer pings, notice a close, without waiting.
            while let Some(msg) = ws.next().now_or_never() {
                handle_publisher_inbound(&mut ws, msg).await?;
            }
            let now = Instant::now();
            let in_flight = ch
                .sent
                .load(Relaxed)
                .saturating_sub(ch.delivered.load(Relaxed) / per_channel);
            let room = plan.window.saturating_sub(in_flight);
            let due = match plan.interval {
                None => u64::MAX,
                Some(_) if now < plan.start => 0,
                Some(iv) => {
                    let slots = (now - plan.start).as_nanos() / iv.as_nanos().max(1) + 1;
                    (slots as u64).saturating_sub(seq)
                }
            };
            let n = room.min(due).min(MAX_BURST);
            if n == 0 {
                let wake = match plan.interval {
                    Some(iv) if room > 0 => {
                        plan.start
                            + Duration::from_nanos((iv.as_nanos() as u64).saturating_mul(seq))
                    }
                    _ => now + Duration::from_millis(1),
                };
                tokio::select! {
                    biased;
                    msg = ws.next() => handle_publisher_inbound(&mut ws, msg).await?,
                    _ = sleep_until(wake) => {}
                }
                continue;
            }
            ch.sent.fetch_add(n, Relaxed);
            for _ in 0..n {
                let stamp = Stamp {
                    publisher: plan.id,
                    seq,
                    sent_ns: shared.now_ns(),
                };
                let frame = wire::publish_frame(&name, stamp, plan.payload, &mut scratch);
                ws.feed(wire::text(frame))
                    .await
                    .map_err(|e| e.to_string())?;
                seq += 1;
            }
            ws.flush().await.map_err(|e| e.to_string())?;
            shared.published[plan.id as usize].store(seq, Relaxed);
            if plan.interval.is_none() {
                tokio::task::yield_now().await;
            }
        }
    }
    .await;
    shared.published[plan.id as usize].store(seq, Relaxed);
    (ws, result.err())
}

/// A frame that reached a publisher: pings are answered, closes end it.
async fn handle_publisher_inbound(
    ws: &mut Ws,
    msg: Option<Result<tokio_websockets::Message, tokio_websockets::Error>>,
) -> Result<(), String> {
    match msg {
        None => Err("end of stream".into()),
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(m)) => {
            if let Some((code, reason)) = m.as_close() {
                return Err(format!(
                    "closed by the server: {} {reason}",
                    u16::from(code)
                ));
            }
            if m.as_text() == Some("") {
                ws.send(wire::pong()).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

/// Runs the scenario against the server of `args.common`.
pub async fn run(args: &FanoutArgs) -> anyhow::Result<FanoutResult> {
    if args.publishers == 0 || args.channels == 0 || args.subscribers == 0 {
        bail!("publishers, channels and subscribers must be at least 1");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a number >= 0");
    }
    let conns = u64::from(args.channels) * u64::from(args.subscribers) + u64::from(args.publishers);
    let limit = raise_nofile_limit();
    if conns + 64 > limit {
        bail!(
            "{conns} connections do not fit in this process's open-file limit ({limit}); use fewer subscribers"
        );
    }
    let harness = Harness::open(&args.common).await?;
    let result = run_with(args, &harness).await;
    harness.close().await;
    result
}

async fn run_with(args: &FanoutArgs, harness: &Harness) -> anyhow::Result<FanoutResult> {
    let c = args.channels;
    let s = args.subscribers;
    let p = args.publishers;
    let window = args.window();
    let total_subs = c as usize * s as usize;
    let mut progress = Progress::new(format!("fanout {}", args.common.label), args.common.quiet);

    let shared = Arc::new(Shared {
        epoch: std::time::Instant::now(),
        prefix: args.channel_prefix.clone(),
        channels: (0..c).map(|_| ChannelCounters::default()).collect(),
        published: (0..p).map(|_| AtomicU64::new(0)).collect(),
        channel_count: c,
        per_channel: u64::from(s),
        latency: ShardedLatency::new(16),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        ready: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
    });

    // Subscribers: connect, subscribe, then read until aborted.
    let sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut subs: Vec<(Arc<Sub>, u32)> = Vec::with_capacity(total_subs);
    let mut sub_tasks: Vec<JoinHandle<()>> = Vec::with_capacity(total_subs);
    for i in 0..total_subs {
        let channel = (i % c as usize) as u32;
        let publishers_here = if channel < p {
            (p - channel).div_ceil(c)
        } else {
            0
        };
        let me = Arc::new(Sub {
            state: Mutex::new(SubState {
                checkers: vec![SeqChecker::new(); publishers_here as usize],
                ..SubState::default()
            }),
        });
        subs.push((me.clone(), channel));
        let shared = shared.clone();
        let sem = sem.clone();
        let target = harness.target.clone();
        let source = wire::source_addr(2, args.sources, i);
        sub_tasks.push(tokio::spawn(async move {
            let ws = {
                let Ok(_permit) = sem.acquire().await else {
                    return;
                };
                let name = channel_name(&shared.prefix, channel);
                match wire::connect_subscribed(
                    &target,
                    Some(source),
                    Some(&name),
                    Duration::from_secs(30),
                )
                .await
                {
                    Ok(ws) => ws,
                    Err(e) => {
                        shared
                            .failures
                            .lock()
                            .push(format!("subscriber {i} from {source}: {e}"));
                        return;
                    }
                }
            };
            shared.ready.fetch_add(1, Relaxed);
            run_subscriber(shared, me, i, channel, ws).await;
        }));
    }
    let setup_start = Instant::now();
    loop {
        let ready = shared.ready.load(Relaxed);
        let failed = shared.failures.lock().len();
        if failed > 0 {
            let first = shared.failures.lock()[0].clone();
            abort_all(&sub_tasks);
            bail!("{failed} subscribers failed to connect and subscribe; first: {first}");
        }
        if ready == total_subs {
            break;
        }
        progress.update(&format!(
            "subscribers {}/{}",
            thousands(ready as u64),
            thousands(total_subs as u64)
        ));
        sleep(Duration::from_millis(50)).await;
    }
    let setup_secs = setup_start.elapsed().as_secs_f64();

    // Publishers: connect and handshake (to another node when asked).
    let publish_target = match &args.publish_url {
        Some(url) => wire::Target::parse(url)?,
        None => harness.target.clone(),
    };
    let mut pub_ws = Vec::with_capacity(p as usize);
    for i in 0..p {
        let source = wire::source_addr(2, args.sources, total_subs + i as usize);
        let ws =
            wire::connect_subscribed(&publish_target, Some(source), None, Duration::from_secs(30))
                .await
                .with_context(|| format!("publisher {i}"))?;
        pub_ws.push(ws);
    }
    progress.update(&format!(
        "{} subscribers ready in {setup_secs:.1} s; publishing (window {window})",
        thousands(total_subs as u64)
    ));

    let slow_per_channel = (args.slow_readers * f64::from(s)).round() as u32;
    let slow = (slow_per_channel > 0).then(|| {
        crate::slow::SlowReaders::start(
            &harness.target,
            (0..c).map(|ch| channel_name(&shared.prefix, ch)),
            slow_per_channel,
            args.slow_pause,
            args.sources,
        )
    });

    let server = harness
        .pid
        .map(|pid| Sampler::start(pid, Duration::from_millis(250)));
    let bench = Sampler::start(std::process::id(), Duration::from_millis(250));

    let t0 = Instant::now();
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(f64::from(p) / args.rate));
    let mut pub_tasks = Vec::with_capacity(p as usize);
    for (i, ws) in pub_ws.into_iter().enumerate() {
        let i = i as u32;
        // Staggered so that the publishers together follow an even schedule.
        let offset = interval.map_or(Duration::ZERO, |iv| iv.mul_f64(f64::from(i) / f64::from(p)));
        let plan = PubPlan {
            id: i,
            channel: i % c,
            start: t0 + offset,
            interval,
            window,
            payload: args.payload,
        };
        pub_tasks.push(tokio::spawn(run_publisher(shared.clone(), plan, ws)));
    }

    // Warm-up.
    let warm_end = t0 + args.warmup;
    let end = warm_end + args.duration;
    let mut last = (Instant::now(), shared.delivered());
    let mut last_server = server.as_ref().and_then(Sampler::now);
    let mut machine_a = None;
    let tick = Duration::from_millis(1000);
    let mut phase_end = warm_end;
    let mut boundary = None;
    loop {
        let now = Instant::now();
        if now >= phase_end {
            if boundary.is_none() {
                // Warm-up over: start measuring.
                shared.latency.reset();
                shared.measuring.store(true, Relaxed);
                machine_a = machine_ticks();
                boundary = Some((
                    Instant::now(),
                    shared.delivered(),
                    shared.sent(),
                    server.as_ref().and_then(Sampler::now),
                    bench.now(),
                ));
                phase_end = end;
                continue;
            }
            break;
        }
        sleep_until((now + tick).min(phase_end)).await;
        let (t, d) = (Instant::now(), shared.delivered());
        let r = per_sec(d - last.1, t - last.0);
        last = (t, d);
        let what = if boundary.is_some() {
            "measuring"
        } else {
            "warm-up"
        };
        let cpu = match (server.as_ref().and_then(Sampler::now), last_server) {
            (Some(now), Some(prev)) => {
                last_server = Some(now);
                let pct = crate::stats::cpu_percent(
                    now.cpu_ticks.saturating_sub(prev.cpu_ticks),
                    clk_tck(),
                    now.at.saturating_duration_since(prev.at),
                );
                format!(", server CPU {pct:.0}%")
            }
            _ => String::new(),
        };
        progress.update(&format!(
            "{what} {:.0}/{:.0} s: {} deliveries/s{cpu}",
            (t - t0).as_secs_f64(),
            (end - t0).as_secs_f64(),
            rate(r)
        ));
    }
    let stop_at = Instant::now();
    let delivered_end = shared.delivered();
    let sent_end = shared.sent();
    shared.measuring.store(false, Relaxed);
    let server_b = server.as_ref().and_then(Sampler::now);
    let bench_b = bench.now();
    let machine_b = machine_ticks();
    shared.stop.store(true, Relaxed);
    let (m_start, delivered_start, sent_start, server_a, bench_a) =
        boundary.context("measurement never started")?;
    let measured = stop_at - m_start;
    let slow = slow.map(|r| Box::new(r.stop()));

    // Stop the publishers (keeping their sockets open through the drain).
    let mut publisher_errors = Vec::new();
    let mut keep_open = Vec::new();
    for (i, t) in pub_tasks.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(10), t).await {
            Ok(Ok((ws, err))) => {
                keep_open.push(ws);
                if let Some(e) = err {
                    publisher_errors.push(format!("publisher {i}: {e}"));
                }
            }
            Ok(Err(e)) => publisher_errors.push(format!("publisher {i}: {e}")),
            Err(_) => publisher_errors.push(format!("publisher {i} did not stop")),
        }
    }

    // Drain: wait for the deliveries in flight, as long as they should take
    // at the measured rate (twice over, plus a second), within the limit.
    let expected_total = shared.sent() * u64::from(s);
    let in_flight = expected_total.saturating_sub(shared.delivered());
    let drain_limit = args.drain_timeout.max(
        Duration::from_secs_f64(
            2.0 * in_flight as f64 / per_sec(delivered_end - delivered_start, measured).max(1.0)
                + 1.0,
        )
        .min(args.drain_timeout * 6),
    );
    let drain_start = Instant::now();
    while shared.delivered() < expected_total && drain_start.elapsed() < drain_limit {
        progress.update(&format!(
            "draining: {} deliveries in flight",
            thousands(expected_total.saturating_sub(shared.delivered()))
        ));
        sleep(Duration::from_millis(10)).await;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    progress.done();
    abort_all(&sub_tasks);
    drop(keep_open);

    // Accounting.
    let published: Vec<u64> = shared.published.iter().map(|a| a.load(Relaxed)).collect();
    let published_total: u64 = published.iter().sum();
    let mut seq = SeqCounts::default();
    let mut misrouted = 0;
    let mut disconnects = 0;
    for (sub, channel) in &subs {
        let mut st = sub.state.lock();
        misrouted += st.misrouted;
        if st.ended.is_some() {
            disconnects += 1;
        }
        for (k, checker) in st.checkers.iter_mut().enumerate() {
            let publisher = (*channel + k as u32 * c) as usize;
            seq.add(&checker.finish(published[publisher]));
        }
    }
    if let Some(e) = publisher_errors.first() {
        eprintln!(
            "warning: {} publisher(s) failed; first: {e}",
            publisher_errors.len()
        );
    }
    if disconnects > 0 {
        let reason = subs
            .iter()
            .find_map(|(sub, _)| sub.state.lock().ended.clone())
            .unwrap_or_default();
        eprintln!("warning: {disconnects} subscriber(s) disconnected; first: {reason}");
    }
    let usage = |s: Option<&Sampler>, a: Option<ProcSample>, b: Option<ProcSample>| match (s, a, b)
    {
        (Some(s), Some(a), Some(b)) => Some(s.usage(&a, &b)),
        _ => None,
    };
    let deliveries = delivered_end - delivered_start;
    let publications = sent_end - sent_start;
    Ok(FanoutResult {
        label: args.common.label.clone(),
        channel_prefix: args.channel_prefix.clone(),
        publishers: p,
        channels: c,
        subscribers_per_channel: s,
        payload_bytes: args.payload,
        target_rate: args.rate,
        window,
        bench_threads: args.threads.max(1),
        duration_s: measured.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        publications,
        deliveries,
        publications_per_sec: per_sec(publications, measured),
        deliveries_per_sec: per_sec(deliveries, measured),
        latency: shared.latency.merged().summary(),
        published_total,
        expected_total: published_total * u64::from(s),
        seq,
        misrouted,
        disconnects,
        drain_s,
        machine_cpu_pct: match (machine_a, machine_b) {
            (Some((busy_a, _)), Some((busy_b, _))) => Some(crate::stats::cpu_percent(
                busy_b.saturating_sub(busy_a),
                clk_tck(),
                measured,
            )),
            _ => None,
        },
        server: usage(server.as_ref(), server_a, server_b),
        bench: usage(Some(&bench), bench_a, bench_b),
        slow,
    })
}

fn abort_all(tasks: &[JoinHandle<()>]) {
    for t in tasks {
        t.abort();
    }
}
