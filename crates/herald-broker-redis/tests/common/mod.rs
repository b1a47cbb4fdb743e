//! Test support: private `redis-server` processes and Redis Clusters, and
//! delivery checks through the broker trait.
//!
//! Every server is started by the test on a free port in its own temporary
//! directory (`--save "" --appendonly no`) and killed by PID when dropped;
//! the shared Redis on 6379 is only ever used with a random prefix and never
//! stopped. Every wait is bounded and waits on a signal (a reply, a
//! delivery, a status change) rather than a fixed sleep.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use herald::{Broker, BrokerStatus, Publication};
use herald_broker_redis::RedisOptions;
use herald_testkit::broker_conformance::Node;
use redis::aio::MultiplexedConnection;
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest wait for one step.
pub const STEP: Duration = Duration::from_secs(15);

/// Serializes the tests of one binary that run Redis Clusters: they are
/// timing-sensitive (node timeouts) and the machine is small.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A random channel prefix, so runs never see each other's channels.
pub fn random_prefix() -> String {
    format!("herald-test-{:016x}:", rand::random::<u64>())
}

/// Options with short timings, for tests.
pub fn fast_options(prefix: &str) -> RedisOptions {
    RedisOptions {
        prefix: prefix.to_owned(),
        connect_timeout: Duration::from_secs(2),
        publish_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        health_check_interval: Duration::from_millis(500),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        topology_refresh_interval: Duration::from_secs(2),
    }
}

/// Awaits `f` at most `limit`, failing the test with `what`.
pub async fn within<F: std::future::Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A port that is free, and whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A private redis-server process.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A standalone server.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A server with extra arguments.
    pub async fn start_with(args: &[&str]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-{}-{port}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let mut server = Self {
            port,
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn();
        server.wait_ready().await;
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed to run these tests");
        self.child = Some(child);
    }

    /// Waits until the server answers PING.
    pub async fn wait_ready(&self) {
        let url = self.url();
        within(
            STEP,
            &format!("redis-server on {} to answer", self.port),
            async {
                loop {
                    if let Ok(client) = redis::Client::open(url.as_str())
                        && let Ok(mut c) = client.get_multiplexed_async_connection().await
                        && redis::cmd("PING")
                            .query_async::<String>(&mut c)
                            .await
                            .is_ok()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// An admin connection.
    pub async fn conn(&self) -> MultiplexedConnection {
        admin(&self.url()).await
    }

    /// Whether the process runs (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and directory.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An admin connection to `url`.
pub async fn admin(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).expect("url");
    within(
        STEP,
        "admin connection",
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("admin connection")
}

/// The Redis channels matching `pattern` on a server (`PUBSUB CHANNELS`).
pub async fn pubsub_channels(conn: &mut MultiplexedConnection, pattern: &str) -> HashSet<String> {
    redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(pattern)
        .query_async(conn)
        .await
        .expect("PUBSUB CHANNELS")
}

/// A node of a cluster as `CLUSTER NODES` describes it.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    pub failed: bool,
    pub primary_id: Option<String>,
}

/// A private Redis Cluster.
pub struct RedisCluster {
    pub servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// `primaries` primaries with `replicas` replicas each, all slots
    /// assigned, `cluster_state:ok` everywhere.
    pub async fn start(primaries: usize, replicas: usize) -> Self {
        let total = primaries * (1 + replicas);
        let mut servers = Vec::new();
        for _ in 0..total {
            servers.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                ])
                .await,
            );
        }
        let mut cmd = tokio::process::Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for s in &servers {
            cmd.arg(s.addr());
        }
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        let out = within(STEP * 2, "redis-cli --cluster create", cmd.output())
            .await
            .expect("redis-cli must be installed to run these tests");
        assert!(
            out.status.success(),
            "cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { servers };
        cluster.wait_stable(primaries, primaries * replicas).await;
        cluster
    }

    /// Seeds for the broker: every node.
    pub fn seeds(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.addr()).collect()
    }

    pub fn server(&self, port: u16) -> &RedisServer {
        self.servers.iter().find(|s| s.port == port).expect("port")
    }

    pub fn server_mut(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("port")
    }

    /// `CLUSTER NODES` as seen by the node on `port`.
    pub async fn nodes_seen_by(&self, port: u16) -> Vec<ClusterNode> {
        let mut c = self.server(port).conn().await;
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut c)
            .await
            .expect("CLUSTER NODES");
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let port = f[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .expect("port");
                ClusterNode {
                    id: f[0].to_owned(),
                    port,
                    primary: f[2].contains("master"),
                    failed: f[2].contains("fail") && !f[2].contains("fail?"),
                    primary_id: (f[3] != "-").then(|| f[3].to_owned()),
                }
            })
            .collect()
    }

    /// The node id of the node on `port`.
    pub async fn id_of(&self, port: u16) -> String {
        let mut c = self.server(port).conn().await;
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut c)
            .await
            .expect("CLUSTER MYID")
    }

    /// The port of the primary owning `slot`, as the node on `asked` sees it.
    pub async fn owner_of(&self, asked: u16, slot: u16) -> u16 {
        let mut c = self.server(asked).conn().await;
        let ranges: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut c)
            .await
            .expect("CLUSTER SLOTS");
        let redis::Value::Array(ranges) = ranges else {
            panic!("CLUSTER SLOTS reply")
        };
        for r in ranges {
            let redis::Value::Array(items) = r else {
                continue;
            };
            let (redis::Value::Int(start), redis::Value::Int(end)) = (&items[0], &items[1]) else {
                continue;
            };
            if (*start..=*end).contains(&(slot as i64)) {
                let redis::Value::Array(node) = &items[2] else {
                    panic!("node")
                };
                let redis::Value::Int(port) = node[1] else {
                    panic!("port")
                };
                return port as u16;
            }
        }
        panic!("slot {slot} not served")
    }

    /// Waits until every live node reports `cluster_state:ok`, sees
    /// `primaries` primaries and `replicas` replicas, and every replica's
    /// link to its primary is up.
    pub async fn wait_stable(&self, primaries: usize, replicas: usize) {
        within(STEP * 2, "the cluster to become stable", async {
            loop {
                if self.is_stable(primaries, replicas).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    async fn is_stable(&self, primaries: usize, replicas: usize) -> bool {
        for s in self.servers.iter().filter(|s| s.child.is_some()) {
            let mut c = s.conn().await;
            let info: String = match redis::cmd("CLUSTER").arg("INFO").query_async(&mut c).await {
                Ok(i) => i,
                Err(_) => return false,
            };
            if !info.contains("cluster_state:ok") {
                return false;
            }
            let nodes = self.nodes_seen_by(s.port).await;
            let live: Vec<_> = nodes.iter().filter(|n| !n.failed).collect();
            if live.iter().filter(|n| n.primary).count() != primaries
                || live.iter().filter(|n| !n.primary).count() != replicas
            {
                return false;
            }
            let repl: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            if repl.contains("role:slave") && !repl.contains("master_link_status:up") {
                return false;
            }
        }
        true
    }
}

/// A publication with `{"<key>": n}` as data.
pub fn publication(channel: &str, key: &str, n: u64) -> Arc<Publication> {
    let raw = RawValue::from_string(format!("{{\"{key}\":{n}}}")).expect("JSON");
    Arc::new(Publication::new(channel, Some(raw)))
}

/// The `(key, n)` of a publication made by [`publication`].
pub fn tag_of(p: &Publication) -> (String, u64) {
    let v: serde_json::Value =
        serde_json::from_str(p.data.as_ref().expect("data").get()).expect("JSON");
    let (k, n) = v.as_object().expect("object").iter().next().expect("key");
    (k.clone(), n.as_u64().expect("number"))
}

/// Waits for the broker's status to become `want`; returns how long it took.
pub async fn wait_status(
    status: &mut watch::Receiver<BrokerStatus>,
    want: BrokerStatus,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    within(
        limit,
        &format!("broker status {want:?}"),
        status.wait_for(|s| *s == want),
    )
    .await
    .expect("status sender alive");
    start.elapsed()
}

/// Probe numbers, unique across the whole test binary.
static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Every probe delivered so far, to catch duplicates during recoveries.
static SEEN_PROBES: std::sync::Mutex<Option<HashSet<(String, u64)>>> = std::sync::Mutex::new(None);

/// Records a delivered probe; panics when it was delivered before.
fn probe_delivered(channel: &str, n: u64) {
    let mut seen = SEEN_PROBES.lock().unwrap();
    let fresh = seen
        .get_or_insert_with(HashSet::new)
        .insert((channel.to_owned(), n));
    assert!(fresh, "probe {n} on {channel} delivered twice");
}

/// Publishes probes from `publisher` on every channel still silent until
/// `receiver` got one on each; returns the time from `since` until the last
/// channel delivered. Publish errors (expected while recovering) are
/// ignored; a probe delivered twice fails the test.
pub async fn until_all_deliver(
    publisher: &Arc<dyn Broker>,
    receiver: &mut Node,
    channels: &[String],
    since: Instant,
    limit: Duration,
) -> Duration {
    let mut silent: HashSet<&str> = channels.iter().map(String::as_str).collect();
    while !silent.is_empty() {
        if since.elapsed() > limit {
            let mut sample: Vec<_> = silent.iter().take(5).collect();
            sample.sort();
            panic!(
                "{} channels still silent {limit:?} after the fault, e.g. {sample:?}",
                silent.len()
            );
        }
        for ch in silent.clone() {
            let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = publisher.publish(publication(ch, "probe", n)).await;
        }
        let until = Instant::now() + Duration::from_millis(50);
        while let Ok(Some(p)) = tokio::time::timeout_at(until, receiver.received.recv()).await {
            let (key, n) = tag_of(&p);
            assert_eq!(key, "probe", "unexpected publication on {}", p.channel);
            probe_delivered(&p.channel, n);
            silent.remove(&*p.channel);
        }
    }
    since.elapsed()
}

/// Publishes `n` numbered publications and an end marker on every channel
/// and checks that `receiver` gets each exactly once, in order, before the
/// end marker (probes from earlier rounds are skipped).
pub async fn check_exactly_once(
    publisher: &Arc<dyn Broker>,
    receiver: &mut Node,
    channels: &[String],
    n: u64,
) {
    for seq in 0..n {
        for ch in channels {
            publisher
                .publish(publication(ch, "seq", seq))
                .await
                .unwrap_or_else(|e| panic!("publish on {ch}: {e}"));
        }
    }
    for ch in channels {
        publisher
            .publish(publication(ch, "end", 0))
            .await
            .expect("publish end");
    }
    let mut next: HashMap<&str, u64> = channels.iter().map(|c| (c.as_str(), 0)).collect();
    let mut ended = 0;
    while ended < channels.len() {
        let p = within(STEP, "publications", receiver.received.recv())
            .await
            .expect("sink alive");
        let Some(expected) = next.get_mut(&*p.channel) else {
            panic!("publication on unexpected channel {}", p.channel)
        };
        match tag_of(&p) {
            (k, n) if k == "probe" => probe_delivered(&p.channel, n),
            (k, seq) if k == "seq" => {
                assert_eq!(
                    seq, *expected,
                    "channel {} out of order or duplicated",
                    p.channel
                );
                *expected += 1;
            }
            (k, _) if k == "end" => {
                assert_eq!(*expected, n, "channel {} ended early", p.channel);
                *expected = u64::MAX;
                ended += 1;
            }
            other => panic!("unexpected publication {other:?}"),
        }
    }
}
