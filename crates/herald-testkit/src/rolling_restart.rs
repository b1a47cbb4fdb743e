//! The rolling restart operators care about most: two node processes over a
//! broker behind a load balancer, thousands of subscribed clients on
//! channels with history and recovery, publishers publishing throughout;
//! one node is SIGTERMed and started again, then the other. Every
//! subscriber must end with every offset of its channel exactly once, in
//! order (recovered and live publications alike), no acknowledged
//! publication may be lost, and every client must be back within its
//! backoff.
//!
//! The balancer is the [`FaultProxy`] with both nodes as upstreams: new
//! connections go round robin and skip a node that refuses. As in a real
//! deployment a node is taken out of the rotation before its SIGTERM and
//! put back once it listens again. The clients are Rust clients
//! (`herald-client`), which resubscribe from their last position on the
//! node they reach. The figures come back as a [`RollingReport`]: time
//! each client was away (max, p99, median), publications, deliveries,
//! duplicates, gaps, lost publications, the close codes clients saw
//! (1001 from a node shutting down today; 1012 once graceful drain is in),
//! and how long each node took to drain and to listen again.
//!
//! The suite runs it with 2,000 clients (herald-broker-redis's
//! `rolling_restart` test); the `rolling_restart` example runs bigger ones.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use herald_client::{Client, ClientEvent, ReconnectPolicy, SubscriptionError};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cluster_scenarios::FixtureProcess;
use crate::fault_proxy::FaultProxy;

/// Longest wait for one phase (everyone connected, everyone back, every
/// subscriber at the end of its stream).
const PHASE: Duration = Duration::from_secs(60);

/// The shape of a rolling restart.
#[derive(Debug, Clone)]
pub struct RollingOptions {
    /// Subscribed clients (spread over both nodes by the balancer).
    pub clients: usize,
    /// Channels (`hist:{prefix}{i}`, history and recovery); client `i`
    /// subscribes to channel `i mod channels`.
    pub channels: usize,
    /// Publishing clients.
    pub publishers: usize,
    /// Wait between two publications of one publisher.
    pub publish_interval: Duration,
    /// Publishing before the first node is stopped and after each node is
    /// back.
    pub steady: Duration,
    /// The subscribers' reconnect policy (the publishers use the same).
    pub reconnect: ReconnectPolicy,
    /// Clients connecting at once at the start.
    pub connect_concurrency: usize,
    /// Channel name prefix inside the `hist:` namespace (random per run,
    /// so runs on a shared broker never meet).
    pub prefix: String,
}

impl Default for RollingOptions {
    fn default() -> Self {
        Self {
            clients: 2000,
            channels: 20,
            publishers: 2,
            publish_interval: Duration::from_millis(20),
            steady: Duration::from_millis(1000),
            reconnect: ReconnectPolicy {
                enabled: true,
                initial_delay: Duration::from_millis(200),
                multiplier: 2.0,
                max_delay: Duration::from_secs(2),
            },
            connect_concurrency: 100,
            prefix: format!("roll-{:08x}-", rand_u32()),
        }
    }
}

/// What a rolling restart measured.
#[derive(Debug, Clone, Default)]
pub struct RollingReport {
    /// Subscribed clients.
    pub clients: usize,
    /// Channels.
    pub channels: usize,
    /// Publications acknowledged by the cluster.
    pub publications: u64,
    /// Publish attempts refused or failed (then retried).
    pub publish_retries: u64,
    /// Publications delivered to subscribers (every offset each saw).
    pub deliveries: u64,
    /// Offsets a subscriber saw twice (or out of order).
    pub duplicates: u64,
    /// Offsets a subscriber skipped, gap notices and local overflows.
    pub gaps: u64,
    /// Acknowledged publications missing at a subscriber of their channel.
    pub lost: u64,
    /// Times a client was disconnected and came back.
    pub reconnections: u64,
    /// Reconnection attempts that failed (refused, timed out) before one
    /// succeeded.
    pub failed_attempts: u64,
    /// Longest time a client was away (closed to open again).
    pub away_max: Duration,
    /// 99th percentile of the times away.
    pub away_p99: Duration,
    /// Median of the times away.
    pub away_p50: Duration,
    /// Close codes the clients saw, with counts.
    pub close_codes: BTreeMap<u16, u64>,
    /// Per node (in restart order): SIGTERM to exit.
    pub drain: Vec<Duration>,
    /// Per node: exit to listening again.
    pub restart: Vec<Duration>,
    /// Per node: SIGTERM until every client was open again.
    pub all_back: Vec<Duration>,
    /// Per node: clients that reconnected because of its restart.
    pub moved: Vec<u64>,
    /// The whole run.
    pub total: Duration,
}

impl std::fmt::Display for RollingReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
        let list = |v: &[Duration]| v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ");
        writeln!(
            f,
            "rolling restart: {} clients, {} channels",
            self.clients, self.channels
        )?;
        writeln!(
            f,
            "  away: max {}  p99 {}  median {}  ({} reconnections, {} failed attempts; close codes {:?})",
            ms(self.away_max),
            ms(self.away_p99),
            ms(self.away_p50),
            self.reconnections,
            self.failed_attempts,
            self.close_codes
        )?;
        writeln!(
            f,
            "  publications {} (retried attempts {}), deliveries {}, duplicates {}, gaps {}, lost {}",
            self.publications,
            self.publish_retries,
            self.deliveries,
            self.duplicates,
            self.gaps,
            self.lost
        )?;
        writeln!(
            f,
            "  nodes: clients moved {:?}; drain {}; listening again after {}; all clients back {} after SIGTERM; total {:.1} s",
            self.moved,
            list(&self.drain),
            list(&self.restart),
            list(&self.all_back),
            self.total.as_secs_f64()
        )
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    /// Offsets seen, in order.
    last: u64,
    duplicates: u64,
    gaps: u64,
    deliveries: u64,
    values: HashSet<u64>,
    /// The offset of the end marker.
    end: Option<u64>,
}

/// Connection state shared by the subscribers' event tasks.
#[derive(Default)]
struct Presence {
    open: AtomicU64,
    /// Open connections that closed.
    closes: AtomicU64,
    failed: AtomicU64,
    away: Mutex<Vec<Duration>>,
    codes: Mutex<BTreeMap<u16, u64>>,
}

fn end_marker() -> Value {
    json!("end")
}

/// Waits until `n` clients are open and at least `closes` closes were seen
/// (so a node's clients are counted gone before they count as back).
async fn wait_all_open(presence: &Presence, n: usize, closes: u64, what: &str) -> Duration {
    let started = Instant::now();
    let deadline = started + PHASE;
    while presence.open.load(Ordering::Relaxed) < n as u64
        || presence.closes.load(Ordering::Relaxed) < closes
    {
        assert!(
            Instant::now() < deadline,
            "{what}: only {} of {n} clients open ({} of {closes} closes seen) after {PHASE:?}",
            presence.open.load(Ordering::Relaxed),
            presence.closes.load(Ordering::Relaxed)
        );
        // Polling a counter the event tasks keep: no wire signal covers
        // "all of them".
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

fn client_builder(url: &str, reconnect: &ReconnectPolicy) -> herald_client::ClientBuilder {
    Client::builder(url)
        .subscription_buffer(8192)
        .ack_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .reconnect(reconnect.clone())
}

/// Runs the scenario with two `herald-fixture` nodes over `broker` (a
/// `--broker` URL). Panics (failing the test) when a phase does not finish
/// in time; the caller asserts on the report.
pub async fn rolling_restart(broker: &str, options: &RollingOptions) -> RollingReport {
    let started = Instant::now();
    let channels = options.channels.max(1);
    let names: Vec<String> = (0..channels)
        .map(|c| format!("hist:{}{c}", options.prefix))
        .collect();
    let mut nodes = [
        FixtureProcess::start(broker, 0, None).await,
        FixtureProcess::start(broker, 0, None).await,
    ];
    let upstreams: Vec<SocketAddr> = nodes
        .iter()
        .map(|n| SocketAddr::from(([127, 0, 0, 1], n.port())))
        .collect();
    let balancer = FaultProxy::balance(upstreams.clone())
        .await
        .expect("the balancer");
    let url = format!("ws://{}/socketcluster/", balancer.addr());
    // The publishers' own balancer, so the subscribers' one counts
    // subscribers only.
    let publishers_balancer = FaultProxy::balance(upstreams)
        .await
        .expect("the publishers' balancer");
    let publishers_url = format!("ws://{}/socketcluster/", publishers_balancer.addr());

    // Subscribers.
    let presence = Arc::new(Presence::default());
    let mut readers = JoinSet::new();
    let mut watchers = JoinSet::new();
    let mut clients = Vec::with_capacity(options.clients);
    let gate = Arc::new(Semaphore::new(options.connect_concurrency.max(1)));
    let mut connecting = JoinSet::new();
    for i in 0..options.clients {
        let (url, reconnect, gate) = (url.clone(), options.reconnect.clone(), gate.clone());
        let channel = names[i % channels].clone();
        let presence = presence.clone();
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("gate");
            let builder = client_builder(&url, &reconnect);
            let mut events = builder.events();
            let watcher = async move {
                let mut open = false;
                let mut closed_at: Option<Instant> = None;
                while let Some(e) = events.next().await {
                    match e {
                        ClientEvent::Open { .. } => {
                            if let Some(at) = closed_at.take() {
                                presence.away.lock().push(at.elapsed());
                            }
                            if !open {
                                open = true;
                                presence.open.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        ClientEvent::Closed { code, .. } => {
                            if open {
                                open = false;
                                presence.open.fetch_sub(1, Ordering::Relaxed);
                                presence.closes.fetch_add(1, Ordering::Relaxed);
                                *presence.codes.lock().entry(code).or_default() += 1;
                                closed_at = Some(Instant::now());
                            } else {
                                presence.failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {}
                    }
                }
            };
            let client = builder.connect().await.expect("a subscriber connects");
            let sub = client.subscribe(channel).await.expect("subscribe");
            (client, sub, watcher)
        });
    }
    while let Some(r) = connecting.join_next().await {
        let (client, mut sub, watcher) = r.expect("a subscriber task");
        watchers.spawn(watcher);
        readers.spawn(async move {
            let mut seen = Seen::default();
            while let Some(item) = sub.next().await {
                match item {
                    Ok(p) => {
                        let Some(offset) = p.offset() else {
                            seen.gaps += 1;
                            continue;
                        };
                        if offset <= seen.last {
                            seen.duplicates += 1;
                            continue;
                        }
                        if offset != seen.last + 1 {
                            seen.gaps += offset - seen.last - 1;
                        }
                        seen.last = offset;
                        seen.deliveries += 1;
                        if p.data == end_marker() {
                            seen.end = Some(offset);
                            break;
                        }
                        if let Some(v) = p.data.as_u64() {
                            seen.values.insert(v);
                        }
                    }
                    Err(SubscriptionError::Gap(_) | SubscriptionError::Lagged(_)) => {
                        seen.gaps += 1;
                    }
                    Err(_) => break,
                }
            }
            (sub.channel().to_owned(), seen)
        });
        clients.push(client);
    }
    wait_all_open(&presence, options.clients, 0, "connecting").await;

    // Publishers, throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(1));
    let retries = Arc::new(AtomicU64::new(0));
    let acked: Arc<Mutex<Vec<HashSet<u64>>>> = Arc::new(Mutex::new(vec![HashSet::new(); channels]));
    let mut publishers = JoinSet::new();
    for _ in 0..options.publishers.max(1) {
        let publisher = client_builder(&publishers_url, &options.reconnect)
            .connect()
            .await
            .expect("a publisher connects");
        let (stop, counter, retries, acked, names) = (
            stop.clone(),
            counter.clone(),
            retries.clone(),
            acked.clone(),
            names.clone(),
        );
        let interval = options.publish_interval;
        publishers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let v = counter.fetch_add(1, Ordering::Relaxed);
                let c = (v as usize) % names.len();
                let deadline = Instant::now() + PHASE;
                loop {
                    match publisher.publish(&names[c], &v).await {
                        Ok(()) => {
                            acked.lock()[c].insert(v);
                            break;
                        }
                        Err(e) => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            assert!(
                                Instant::now() < deadline,
                                "publication {v} refused for {PHASE:?}: {e}"
                            );
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                tokio::time::sleep(interval).await;
            }
            publisher
        });
    }
    tokio::time::sleep(options.steady).await;

    // The rolling restart.
    let mut report = RollingReport {
        clients: options.clients,
        channels,
        ..RollingReport::default()
    };
    let both = balancer.upstreams();
    for (i, node) in nodes.iter_mut().enumerate() {
        // As an operator does: out of the balancer's rotation first (no new
        // client is sent to a node that is about to close), then SIGTERM.
        balancer.set_upstreams(vec![both[1 - i]]);
        publishers_balancer.set_upstreams(vec![both[1 - i]]);
        let before = presence.away.lock().len();
        let on_node = balancer
            .connections()
            .iter()
            .filter(|c| c.upstream == both[i])
            .count() as u64;
        let closes = presence.closes.load(Ordering::Relaxed) + on_node;
        let sigterm = Instant::now();
        report.drain.push(node.terminate().await);
        let exited = Instant::now();
        node.restart().await;
        report.restart.push(exited.elapsed());
        balancer.set_upstreams(both.clone());
        publishers_balancer.set_upstreams(both.clone());
        wait_all_open(&presence, options.clients, closes, "after a node's restart").await;
        report.all_back.push(sigterm.elapsed());
        report
            .moved
            .push((presence.away.lock().len() - before) as u64);
        tokio::time::sleep(options.steady).await;
    }

    // The end of every stream.
    stop.store(true, Ordering::Relaxed);
    let mut last_publisher = None;
    while let Some(p) = publishers.join_next().await {
        last_publisher = Some(p.expect("a publisher task"));
    }
    let publisher = last_publisher.expect("a publisher");
    for name in &names {
        let deadline = Instant::now() + PHASE;
        while let Err(e) = publisher.publish(name, &end_marker()).await {
            assert!(Instant::now() < deadline, "end marker refused: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut ends: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    let acked = acked.lock().clone();
    let collect = async {
        while let Some(r) = readers.join_next().await {
            let (channel, seen) = r.expect("a reader task");
            let c = names.iter().position(|n| *n == channel).expect("a channel");
            report.deliveries += seen.deliveries;
            report.duplicates += seen.duplicates;
            report.gaps += seen.gaps;
            report.lost += acked[c].difference(&seen.values).count() as u64;
            ends.entry(channel)
                .or_default()
                .insert(seen.end.unwrap_or(0));
        }
    };
    if tokio::time::timeout(PHASE, collect).await.is_err() {
        panic!("subscribers did not all reach the end marker within {PHASE:?}");
    }
    for (channel, end) in &ends {
        assert_eq!(
            end.len(),
            1,
            "the subscribers of {channel} disagree on the end offset: {end:?}"
        );
    }
    report.publications = acked.iter().map(|s| s.len() as u64).sum();
    report.publish_retries = retries.load(Ordering::Relaxed);
    report.close_codes = presence.codes.lock().clone();
    report.failed_attempts = presence.failed.load(Ordering::Relaxed);
    let mut away = presence.away.lock().clone();
    away.sort_unstable();
    report.reconnections = away.len() as u64;
    let pick = |q: f64| {
        away.get(((away.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    report.away_max = away.last().copied().unwrap_or_default();
    report.away_p99 = pick(0.99);
    report.away_p50 = pick(0.5);
    report.total = started.elapsed();

    publisher.close().await;
    for c in clients {
        c.close().await;
    }
    watchers.abort_all();
    report
}
