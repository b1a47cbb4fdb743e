//! Recovery, gap repair and presence across the nodes of a cluster, over a
//! real broker, driven by the Rust client over real sockets.
//!
//! Each broker crate runs these with its own engine and its own fault (a
//! Redis `CLIENT KILL`, a NATS restart): the scenarios say what a client
//! must see, the broker crates only how to break things.
//!
//! * [`recovery_across_nodes`]: a client away while another node publishes
//!   comes back (on either node) and gets every missed publication, in order.
//! * [`gap_repair`]: the broker connection of the subscribers' node is cut
//!   while publications go on elsewhere; the subscribers see every offset
//!   once, in order, without reconnecting and without a gap notice.
//! * [`presence_across_nodes`]: joins, leaves and counts seen from both nodes.
//! * [`node_killed_while_publishing`]: a node process is SIGKILLed while its
//!   clients are subscribed and publications go on through the other node;
//!   it is restarted; every client ends with every offset exactly once, in
//!   order.
//! * [`presence_expires_after_a_node_is_killed`]: the entries of a node
//!   that died vanish within `presence_ttl`.
//!
//! In-process nodes are [`Node`]s (the fixture over a given broker); node
//! processes are [`FixtureProcess`]es (`herald-fixture serve --broker URL`,
//! found next to the test binary's target directory or through
//! `HERALD_FIXTURE_BIN`). The channels are in the fixture's `hist:`
//! namespace (history of 1,000, recovery, presence, join/leave).

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use herald::{Broker, Server, ServerBuilder};
use herald_client::{
    Client, ClientEvent, PresenceChange, ReconnectPolicy, StreamPosition, SubscribeOptions,
    Subscription, SubscriptionError,
};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest wait for one step.
pub const STEP: Duration = Duration::from_secs(20);

/// Awaits `f`, failing after [`STEP`] with `what` in the message.
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?} waiting for {what}"),
    }
}

/// A Herald node in this process: the fixture over `broker`, serving on an
/// ephemeral port of 127.0.0.1.
pub struct Node {
    /// The server.
    pub server: Server,
    /// Its WebSocket URL.
    pub url: String,
    /// Its address.
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Node {
    /// The fixture over `broker`.
    pub async fn start(broker: Arc<dyn Broker>) -> Node {
        Self::start_with(broker, |b| b).await
    }

    /// The fixture over `broker`, with `configure` applied to the builder.
    pub async fn start_with(
        broker: Arc<dyn Broker>,
        configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
    ) -> Node {
        Self::start_serving(broker, configure, |_| axum::Router::new()).await
    }

    /// The fixture over `broker`, with `configure` applied to the builder,
    /// serving the extra `routes` made for the built server (e.g. its
    /// HTTP API).
    pub async fn start_serving(
        broker: Arc<dyn Broker>,
        configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
        routes: impl FnOnce(&Server) -> axum::Router,
    ) -> Node {
        let builder = crate::fixture(Server::builder().broker_arc(broker));
        let server = configure(builder).build();
        let routes = routes(&server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().serve_with(listener, routes, async move {
            let _ = stopped.await;
        }));
        Node {
            url: format!("ws://{addr}{}", server.config().path),
            addr,
            server,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving (closing every socket) and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = within("the node to stop", task).await;
        }
    }
}

/// A client of `url` that reconnects quickly, with room to buffer every
/// publication of a scenario (they are read at the end).
pub async fn client(url: &str) -> Client {
    within(
        "a client to connect",
        Client::builder(url)
            .subscription_buffer(8192)
            .ack_timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(5))
            .reconnect(ReconnectPolicy {
                enabled: true,
                initial_delay: Duration::from_millis(100),
                multiplier: 2.0,
                max_delay: Duration::from_millis(1000),
            })
            .connect(),
    )
    .await
    .expect("connect")
}

/// Publishes `n` on `channel`, retrying while the cluster refuses it (a
/// broker outage): a failed publication gets no offset, so retrying keeps
/// the stream gapless.
pub async fn publish_retrying(client: &Client, channel: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match client.publish(channel, &n).await {
            Ok(()) => return,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "publication {n} on {channel} refused for {STEP:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Reads `sub` until it yields offset `until`: every offset must come once,
/// in order, after `after` (the stream's position when the reading
/// starts), with no gap notice. Returns the data values read.
pub async fn read_offsets(sub: &mut Subscription, after: u64, until: u64) -> Vec<u64> {
    let mut next = after + 1;
    let mut data = Vec::new();
    while next <= until {
        let item = within(&format!("offset {next} on {}", sub.channel()), sub.next()).await;
        match item {
            Some(Ok(p)) => {
                assert_eq!(
                    p.offset(),
                    Some(next),
                    "gap, duplicate or reordering on {}",
                    sub.channel()
                );
                data.push(p.data.as_u64().unwrap_or(u64::MAX));
                next += 1;
            }
            Some(Err(SubscriptionError::Gap(gap))) => {
                panic!("a gap on {} at offset {next}: {gap:?}", sub.channel())
            }
            other => panic!("unexpected {other:?} on {}", sub.channel()),
        }
    }
    data
}

/// A client on A misses publications made through B and recovers them,
/// coming back on A and on B.
pub async fn recovery_across_nodes(a: Arc<dyn Broker>, b: Arc<dyn Broker>, channel: &str) {
    let a = Node::start(a).await;
    let b = Node::start(b).await;
    let publisher = client(&b.url).await;
    let away = client(&a.url).await;
    let mut sub = away.subscribe(channel).await.expect("subscribe on A");
    for n in 1..=5 {
        publish_retrying(&publisher, channel, n).await;
    }
    assert_eq!(read_offsets(&mut sub, 0, 5).await, [1, 2, 3, 4, 5]);
    let position: StreamPosition = sub.position().cloned().expect("a position");
    drop(sub);
    away.close().await;
    for n in 6..=40 {
        publish_retrying(&publisher, channel, n).await;
    }
    for url in [&a.url, &b.url] {
        let back = client(url).await;
        let options = SubscribeOptions {
            since: Some(position.clone()),
            ..SubscribeOptions::default()
        };
        let mut sub = back
            .subscribe_with(channel, options)
            .await
            .expect("subscribe with recovery");
        assert_eq!(
            read_offsets(&mut sub, 5, 40).await,
            (6..=40).collect::<Vec<_>>()
        );
        back.close().await;
    }
    publish_retrying(&publisher, channel, 41).await;
    publisher.close().await;
    a.stop().await;
    b.stop().await;
}

/// Publications go on through B while `cut` breaks A's broker connection:
/// A's subscribers see every offset once, in order, with no gap notice and
/// without reconnecting.
pub async fn gap_repair<F, Fut>(a: Arc<dyn Broker>, b: Arc<dyn Broker>, channel: &str, cut: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    const TOTAL: u64 = 600;
    let a = Node::start(a).await;
    let b = Node::start(b).await;
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        let c = client(&a.url).await;
        let events = c.events();
        let sub = c.subscribe(channel).await.expect("subscribe on A");
        subscribers.push((c, events, sub));
    }
    let publisher = client(&b.url).await;
    let (halfway_tx, halfway) = oneshot::channel();
    let channel_name = channel.to_owned();
    let publishing = tokio::spawn(async move {
        let mut halfway_tx = Some(halfway_tx);
        for n in 1..=TOTAL {
            publish_retrying(&publisher, &channel_name, n).await;
            if n == TOTAL / 3
                && let Some(tx) = halfway_tx.take()
            {
                let _ = tx.send(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        publisher
    });
    within("a third of the publications", halfway)
        .await
        .expect("publisher running");
    cut().await;
    let publisher = within("the publisher", publishing)
        .await
        .expect("publisher task");
    for (c, mut events, mut sub) in subscribers {
        let data = read_offsets(&mut sub, 0, TOTAL).await;
        let mut values = data.clone();
        values.sort_unstable();
        values.dedup();
        assert_eq!(
            values,
            (1..=TOTAL).collect::<Vec<_>>(),
            "every value published"
        );
        // The subscriber never reconnected: no close among its events.
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(10), events.next()).await
        {
            assert!(
                !matches!(e, ClientEvent::Closed { .. } | ClientEvent::Gap(_)),
                "{e:?}"
            );
        }
        c.close().await;
    }
    publisher.close().await;
    a.stop().await;
    b.stop().await;
}

/// Joins, leaves and counts, seen from both nodes.
pub async fn presence_across_nodes(a: Arc<dyn Broker>, b: Arc<dyn Broker>, channel: &str) {
    let a = Node::start(a).await;
    let b = Node::start(b).await;
    let on_a = client(&a.url).await;
    let mut joins = on_a.presence_events_of(channel);
    let _sub_a = on_a.subscribe(channel).await.expect("subscribe on A");
    let on_b = client(&b.url).await;
    let sub_b = on_b.subscribe(channel).await.expect("subscribe on B");
    let id_b = on_b.id().expect("an id");
    let mut joined = Vec::new();
    while joined.len() < 2 {
        match within("join events", joins.next()).await {
            Some(Ok(PresenceChange::Join(e))) => joined.push(e.client),
            other => panic!("{other:?}"),
        }
    }
    assert!(joined.contains(&id_b), "B's join reached A: {joined:?}");
    for (node, who) in [(&a, "A"), (&b, "B")] {
        let list = node.server.presence(channel).await.expect("presence");
        assert_eq!(list.len(), 2, "presence seen from {who}: {list:?}");
        let stats = node.server.presence_stats(channel).await.expect("stats");
        assert_eq!(stats.clients, 2);
    }
    let stats = on_a.presence_stats(channel).await.expect("stats");
    assert_eq!(stats.clients, 2);
    drop(sub_b);
    on_b.close().await;
    match within("a leave event", joins.next()).await {
        Some(Ok(PresenceChange::Leave(e))) => assert_eq!(e.client, id_b),
        other => panic!("{other:?}"),
    }
    let list = a.server.presence(channel).await.expect("presence");
    assert_eq!(list.len(), 1, "{list:?}");
    on_a.close().await;
    a.stop().await;
    b.stop().await;
}

/// The `herald-fixture` binary: `HERALD_FIXTURE_BIN`, else
/// `target/debug/herald-fixture` of the workspace.
pub fn fixture_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HERALD_FIXTURE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug").join("herald-fixture")
}

/// A `herald-fixture serve --broker URL` process, killed when dropped.
pub struct FixtureProcess {
    child: Child,
    /// Its WebSocket URL.
    pub url: String,
    port: u16,
    broker: String,
    config: Option<PathBuf>,
}

impl FixtureProcess {
    /// Starts a node on `port` (0: a free one) with an optional config file
    /// text.
    pub async fn start(broker: &str, port: u16, config: Option<&str>) -> FixtureProcess {
        let config = config.map(|text| {
            let path = std::env::temp_dir().join(format!(
                "herald-node-{}-{:08x}.toml",
                std::process::id(),
                rand_u32()
            ));
            std::fs::write(&path, text).expect("write the node's config");
            path
        });
        Self::spawn(broker.to_owned(), port, config).await
    }

    async fn spawn(broker: String, port: u16, config: Option<PathBuf>) -> FixtureProcess {
        let bin = fixture_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--broker", &broker, "--auth-secret", "cluster-scenario"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(path) = &config {
            cmd.arg("--config").arg(path);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (build it first): {e}", bin.display()));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = within("the node's ready line", lines.next_line())
            .await
            .expect("read stdout")
            .expect("the node exited before its ready line");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        let port: u16 = url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        FixtureProcess {
            child,
            url,
            port,
            broker,
            config,
        }
    }

    /// SIGKILLs the node.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// The port it listens on (kept across [`FixtureProcess::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGTERMs the node (it closes its sockets and exits, as in a rolling
    /// deployment) and waits for it to exit; returns how long that took.
    pub async fn terminate(&mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) has no memory preconditions; the PID is our
            // own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let _ = within("the node to exit after SIGTERM", self.child.wait()).await;
        started.elapsed()
    }

    /// Starts the node again on the same port, with the same settings.
    pub async fn restart(&mut self) {
        let config = self.config.take();
        let fresh = Self::spawn(self.broker.clone(), self.port, config).await;
        *self = fresh;
    }
}

impl Drop for FixtureProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if let Some(path) = &self.config {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

/// Two node processes over `broker`: `clients` clients subscribed on A,
/// publications made through B all along; A is SIGKILLed, then restarted
/// on the same port. Every client comes back by itself and ends with every
/// offset exactly once, in order.
pub async fn node_killed_while_publishing(broker: &str, channel: &str, clients: usize) {
    const TOTAL: u64 = 1500;
    let mut a = FixtureProcess::start(broker, 0, None).await;
    let b = FixtureProcess::start(broker, 0, None).await;
    let mut subscribers = Vec::new();
    for _ in 0..clients {
        let c = client(&a.url).await;
        let sub = c.subscribe(channel).await.expect("subscribe on A");
        subscribers.push((c, sub));
    }
    let publisher = client(&b.url).await;
    let (third_tx, third) = oneshot::channel();
    let name = channel.to_owned();
    let publishing = tokio::spawn(async move {
        let mut third_tx = Some(third_tx);
        for n in 1..=TOTAL {
            publish_retrying(&publisher, &name, n).await;
            if n == TOTAL / 3
                && let Some(tx) = third_tx.take()
            {
                let _ = tx.send(());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        publisher
    });
    within("a third of the publications", third)
        .await
        .expect("publisher running");
    a.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.restart().await;
    let publisher = within("the publisher", publishing)
        .await
        .expect("publisher");
    for (c, mut sub) in subscribers {
        let data = read_offsets(&mut sub, 0, TOTAL).await;
        assert_eq!(data, (1..=TOTAL).collect::<Vec<_>>());
        c.close().await;
    }
    publisher.close().await;
}

/// A node process with presence entries is SIGKILLed: another node stops
/// listing them within the `presence_ttl` (set to `ttl`).
pub async fn presence_expires_after_a_node_is_killed(broker: &str, channel: &str, ttl: Duration) {
    let config = format!("presence_ttl = \"{}ms\"\n", ttl.as_millis());
    let mut a = FixtureProcess::start(broker, 0, Some(&config)).await;
    let b = FixtureProcess::start(broker, 0, Some(&config)).await;
    let on_a = client(&a.url).await;
    let _sub = on_a.subscribe(channel).await.expect("subscribe on A");
    let on_b = client(&b.url).await;
    let _sub_b = on_b.subscribe(channel).await.expect("subscribe on B");
    let stats = on_b.presence_stats(channel).await.expect("stats");
    assert_eq!(stats.clients, 2);
    // Past a ttl, refreshed entries are still there.
    tokio::time::sleep(ttl + ttl / 2).await;
    assert_eq!(
        on_b.presence_stats(channel).await.expect("stats").clients,
        2
    );
    a.kill().await;
    let killed = tokio::time::Instant::now();
    loop {
        let n = on_b.presence_stats(channel).await.expect("stats").clients;
        if n == 1 {
            break;
        }
        assert!(
            killed.elapsed() < ttl * 2 + Duration::from_secs(2),
            "the dead node's entries outlived the ttl: {n} clients after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = on_b.presence(channel).await.expect("presence");
    assert_eq!(
        list.keys().cloned().collect::<Vec<_>>(),
        [on_b.id().unwrap()]
    );
    on_b.close().await;
    drop(on_a);
}
