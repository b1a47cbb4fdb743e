//! A conformance suite for [`herald::Broker`] implementations.
//!
//! Every broker (memory, Redis, sharded Redis, Redis Cluster, NATS) must
//! behave the same towards the registry. These checks drive two broker
//! instances as two nodes, with no server around them, through the trait
//! only:
//!
//! * a publication from node A reaches node B exactly once, in publish order;
//! * a node that subscribed also receives its own publications (the registry
//!   delivers local subscribers only from the broker);
//! * after `unsubscribe` a node receives nothing more on that channel, while
//!   other channels keep flowing;
//! * many channels at once each keep their own order.
//!
//! And, for brokers that keep history and presence ([`run_history`],
//! [`run_presence`]):
//!
//! * publications with history get offsets 1, 2, 3, … in one epoch that
//!   every node sees, with no hole and no duplicate even when two nodes
//!   publish at once, and reach subscribers in offset order;
//! * history reads honour `since` and `limit`, keep at most `size`
//!   publications, create a stream (a stable epoch at offset 0) when read
//!   before any publication, and start a new epoch once the history
//!   expired or was removed;
//! * join and leave events travel like publications;
//! * presence entries written on one node are read on another, are
//!   removed, counted, refreshed, and expire when nobody refreshes them.
//!
//! A broker crate calls [`run_all`] (and [`run_history`], [`run_presence`])
//! from its tests with a factory that makes a fresh, connected broker per
//! node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald::broker::{
    ClientInfo, HistoryPolicy, HistoryQuery, MessageKind, PresenceRecord, StreamPosition,
};
use herald::{Broker, BrokerSink, Publication};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

/// One node's view: a broker and the publications its sink received.
pub struct Node {
    /// The broker under test.
    pub broker: Arc<dyn Broker>,
    /// Publications delivered to this node, in delivery order.
    pub received: mpsc::UnboundedReceiver<Arc<Publication>>,
}

impl Node {
    /// Starts `broker` with a sink that records deliveries.
    pub fn start(broker: Arc<dyn Broker>) -> Self {
        let (tx, received) = mpsc::unbounded_channel();
        broker.start(BrokerSink::new(move |p| {
            let _ = tx.send(p);
        }));
        Self { broker, received }
    }

    /// The next delivery, waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Arc<Publication>> {
        tokio::time::timeout(timeout, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

fn publication(channel: &str, seq: u64) -> Arc<Publication> {
    let raw = RawValue::from_string(format!("{{\"seq\":{seq}}}")).expect("valid JSON");
    Arc::new(Publication::new(channel, Some(raw)))
}

fn seq_of(p: &Publication) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(p.data.as_ref().expect("data").get()).expect("JSON");
    v["seq"].as_u64().expect("seq")
}

const WAIT: Duration = Duration::from_secs(10);

/// A publication from A reaches B once, in order; A gets its own when
/// subscribed.
pub async fn cross_node_in_order(a: &mut Node, b: &mut Node, channel: &str) {
    b.broker.subscribe(channel).await.expect("B subscribes");
    a.broker.subscribe(channel).await.expect("A subscribes");
    const N: u64 = 500;
    for seq in 0..N {
        a.broker
            .publish(publication(channel, seq))
            .await
            .expect("A publishes");
    }
    for node in [&mut *b, &mut *a] {
        for expected in 0..N {
            let p = node
                .next(WAIT)
                .await
                .unwrap_or_else(|| panic!("publication {expected} on {channel} not delivered"));
            assert_eq!(&*p.channel, channel);
            assert_eq!(seq_of(&p), expected, "out of order or duplicated");
            assert!(p.frame.starts_with(b"{\"event\":\"#publish\""));
        }
    }
    a.broker.unsubscribe(channel).await.expect("A unsubscribes");
    b.broker.unsubscribe(channel).await.expect("B unsubscribes");
}

/// After unsubscribe nothing more arrives on that channel; a sentinel channel
/// proves deliveries still flow.
pub async fn unsubscribe_stops_delivery(a: &mut Node, b: &mut Node, channel: &str, sentinel: &str) {
    b.broker.subscribe(channel).await.expect("subscribe");
    b.broker
        .subscribe(sentinel)
        .await
        .expect("subscribe sentinel");
    a.broker
        .publish(publication(channel, 1))
        .await
        .expect("publish");
    let p = b.next(WAIT).await.expect("first delivery");
    assert_eq!(&*p.channel, channel);
    b.broker.unsubscribe(channel).await.expect("unsubscribe");
    a.broker
        .publish(publication(channel, 2))
        .await
        .expect("publish");
    a.broker
        .publish(publication(sentinel, 3))
        .await
        .expect("publish sentinel");
    let p = b.next(WAIT).await.expect("sentinel delivery");
    assert_eq!(&*p.channel, sentinel, "delivered after unsubscribe");
    b.broker
        .unsubscribe(sentinel)
        .await
        .expect("unsubscribe sentinel");
}

/// Many channels at once, each in order, none lost.
pub async fn many_channels(a: &mut Node, b: &mut Node, prefix: &str, channels: usize) {
    let names: Vec<String> = (0..channels).map(|i| format!("{prefix}{i}")).collect();
    for name in &names {
        b.broker.subscribe(name).await.expect("subscribe");
    }
    const PER: u64 = 20;
    for seq in 0..PER {
        for name in &names {
            a.broker
                .publish(publication(name, seq))
                .await
                .expect("publish");
        }
    }
    let mut next: HashMap<String, u64> = HashMap::new();
    for _ in 0..(PER as usize * channels) {
        let p = b.next(WAIT).await.expect("delivery");
        let expected = next.entry(p.channel.to_string()).or_insert(0);
        assert_eq!(seq_of(&p), *expected, "channel {} out of order", p.channel);
        *expected += 1;
    }
    assert!(next.values().all(|n| *n == PER));
    for name in &names {
        b.broker.unsubscribe(name).await.expect("unsubscribe");
    }
}

/// Runs every check with two fresh nodes from `make`. `prefix` keeps the
/// run's channel names apart from anything else on a shared engine.
pub async fn run_all<F, Fut>(make: F, prefix: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Broker>>,
{
    let mut a = Node::start(make().await);
    let mut b = Node::start(make().await);
    cross_node_in_order(&mut a, &mut b, &format!("{prefix}order")).await;
    unsubscribe_stops_delivery(
        &mut a,
        &mut b,
        &format!("{prefix}unsub"),
        &format!("{prefix}sentinel"),
    )
    .await;
    many_channels(&mut a, &mut b, &format!("{prefix}many/"), 100).await;
    a.broker.shutdown().await;
    b.broker.shutdown().await;
}

fn data(seq: u64) -> Option<Box<RawValue>> {
    Some(RawValue::from_string(format!("{{\"seq\":{seq}}}")).expect("valid JSON"))
}

fn policy(namespace: &str, size: usize, ttl: Duration) -> HistoryPolicy {
    HistoryPolicy {
        size,
        ttl,
        namespace: Arc::from(namespace),
    }
}

fn offsets(publications: &[Arc<Publication>]) -> Vec<u64> {
    publications
        .iter()
        .map(|p| p.position.as_ref().expect("history has positions").offset)
        .collect()
}

fn all(limit: usize) -> HistoryQuery {
    HistoryQuery { since: None, limit }
}

/// Offsets 1..N in one epoch, seen alike by both nodes and delivered in
/// order with their positions and frames.
pub async fn history_offsets_in_order(a: &mut Node, b: &mut Node, channel: &str, ns: &str) {
    let p = policy(ns, 100, Duration::from_secs(60));
    b.broker.subscribe(channel).await.expect("B subscribes");
    let start = b.broker.history(channel, &p, &all(0)).await.expect("read");
    assert_eq!(start.position.offset, 0, "a fresh stream starts at 0");
    let again = a.broker.history(channel, &p, &all(0)).await.expect("read");
    assert_eq!(
        again.position, start.position,
        "the epoch is stable and shared"
    );
    const N: u64 = 50;
    for seq in 1..=N {
        let pos = a
            .broker
            .publish_with_history(channel, data(seq), &p)
            .await
            .expect("publish with history");
        assert_eq!(pos, StreamPosition::new(seq, start.position.epoch.clone()));
    }
    for expected in 1..=N {
        let got = b.next(WAIT).await.expect("delivery with history");
        assert_eq!(&*got.channel, channel);
        assert_eq!(got.kind, MessageKind::Publication);
        let pos = got.position.clone().expect("a position");
        assert_eq!(pos.offset, expected, "out of order, lost or duplicated");
        assert_eq!(pos.epoch, start.position.epoch);
        assert_eq!(seq_of(&got), expected);
        let tail = format!(",\"offset\":{expected},\"epoch\":\"{}\"}}}}", pos.epoch);
        assert!(
            got.frame.ends_with(tail.as_bytes()),
            "frame {}",
            String::from_utf8_lossy(&got.frame)
        );
    }
    let page = b
        .broker
        .history(channel, &p, &all(1000))
        .await
        .expect("read");
    assert_eq!(offsets(&page.publications), (1..=N).collect::<Vec<_>>());
    assert_eq!(
        page.position,
        StreamPosition::new(N, start.position.epoch.clone())
    );
    assert_eq!(seq_of(&page.publications[0]), 1, "history keeps the data");
    b.broker.unsubscribe(channel).await.expect("unsubscribe");
}

/// Two nodes publishing at once share one sequence: every offset exactly
/// once, and each subscriber sees them in order.
pub async fn history_concurrent_publishers(a: &mut Node, b: &mut Node, channel: &str, ns: &str) {
    let p = policy(ns, 1000, Duration::from_secs(60));
    a.broker.subscribe(channel).await.expect("A subscribes");
    b.broker.subscribe(channel).await.expect("B subscribes");
    const PER: u64 = 100;
    let publish = |broker: Arc<dyn Broker>, base: u64| {
        let p = p.clone();
        let channel = channel.to_owned();
        async move {
            let mut got = Vec::new();
            for i in 0..PER {
                let pos = broker
                    .publish_with_history(&channel, data(base + i), &p)
                    .await
                    .expect("publish with history");
                got.push(pos.offset);
            }
            got
        }
    };
    let (x, y) = tokio::join!(
        publish(a.broker.clone(), 0),
        publish(b.broker.clone(), 10_000)
    );
    let mut every: Vec<u64> = x.iter().chain(y.iter()).copied().collect();
    every.sort_unstable();
    assert_eq!(
        every,
        (1..=2 * PER).collect::<Vec<_>>(),
        "holes or duplicates"
    );
    for node in [&mut *a, &mut *b] {
        for expected in 1..=2 * PER {
            let got = node.next(WAIT).await.expect("delivery");
            assert_eq!(got.position.as_ref().expect("position").offset, expected);
        }
    }
    a.broker.unsubscribe(channel).await.expect("unsubscribe");
    b.broker.unsubscribe(channel).await.expect("unsubscribe");
}

/// `since`, `limit`, the size cap and whether a position can recover.
pub async fn history_reads(a: &mut Node, b: &mut Node, channel: &str, ns: &str) {
    let p = policy(ns, 5, Duration::from_secs(60));
    for seq in 1..=8 {
        a.broker
            .publish_with_history(channel, data(seq), &p)
            .await
            .expect("publish");
    }
    let page = b
        .broker
        .history(channel, &p, &all(100))
        .await
        .expect("read");
    assert_eq!(offsets(&page.publications), [4, 5, 6, 7, 8], "size cap");
    let epoch = page.position.epoch.clone();
    assert_eq!(page.position.offset, 8);
    let latest = b.broker.history(channel, &p, &all(2)).await.expect("read");
    assert_eq!(offsets(&latest.publications), [7, 8], "latest two");
    let since = |offset| HistoryQuery {
        since: Some(StreamPosition::new(offset, epoch.clone())),
        limit: 100,
    };
    let page = b
        .broker
        .history(channel, &p, &since(5))
        .await
        .expect("read");
    assert_eq!(offsets(&page.publications), [6, 7, 8]);
    assert!(page.recovers(&StreamPosition::new(5, epoch.clone())));
    let page = b
        .broker
        .history(channel, &p, &since(2))
        .await
        .expect("read");
    assert!(
        !page.recovers(&StreamPosition::new(2, epoch.clone())),
        "offset 3 is no longer kept"
    );
    let page = b
        .broker
        .history(channel, &p, &since(8))
        .await
        .expect("read");
    assert!(page.publications.is_empty());
    assert!(page.recovers(&StreamPosition::new(8, epoch.clone())));
    let limited = b
        .broker
        .history(
            channel,
            &p,
            &HistoryQuery {
                since: Some(StreamPosition::new(4, epoch.clone())),
                limit: 2,
            },
        )
        .await
        .expect("read");
    assert_eq!(offsets(&limited.publications), [5, 6]);
    let other = b
        .broker
        .history(
            channel,
            &p,
            &HistoryQuery {
                since: Some(StreamPosition::new(4, "not-the-epoch")),
                limit: 100,
            },
        )
        .await
        .expect("read");
    assert!(
        other.publications.is_empty(),
        "another epoch recovers nothing"
    );
    assert_eq!(other.position.epoch, epoch);
}

/// Removed or expired history starts a new epoch at offset 1.
pub async fn history_expires(a: &mut Node, b: &mut Node, channel: &str, ns: &str, ttl: Duration) {
    let p = policy(ns, 10, ttl);
    let first = a
        .broker
        .publish_with_history(channel, data(1), &p)
        .await
        .expect("publish");
    assert_eq!(first.offset, 1);
    a.broker
        .remove_history(channel, &p)
        .await
        .expect("remove history");
    let second = a
        .broker
        .publish_with_history(channel, data(2), &p)
        .await
        .expect("publish");
    assert_eq!(second.offset, 1, "removed history starts again");
    assert_ne!(second.epoch, first.epoch);
    // Expiry: wait past the ttl (engines expire lazily or on a timer; allow
    // a generous margin).
    let deadline = tokio::time::Instant::now() + ttl * 3 + Duration::from_secs(5);
    loop {
        tokio::time::sleep(ttl).await;
        let page = b.broker.history(channel, &p, &all(10)).await.expect("read");
        if page.position.epoch != second.epoch {
            assert!(page.publications.is_empty(), "expired history is gone");
            assert_eq!(page.position.offset, 0);
            let third = a
                .broker
                .publish_with_history(channel, data(3), &p)
                .await
                .expect("publish");
            assert_eq!(third, StreamPosition::new(1, page.position.epoch.clone()));
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history did not expire within {:?}",
            ttl * 3 + Duration::from_secs(5)
        );
    }
}

/// Join and leave events travel like publications, with their frames.
pub async fn presence_events_travel(a: &mut Node, b: &mut Node, channel: &str) {
    b.broker.subscribe(channel).await.expect("subscribe");
    for kind in [MessageKind::Join, MessageKind::Leave] {
        a.broker
            .publish(Arc::new(Publication::presence(
                kind,
                channel,
                "sock-1",
                Some("ann"),
            )))
            .await
            .expect("publish event");
        let got = b.next(WAIT).await.expect("event delivered");
        assert_eq!(got.kind, kind);
        assert_eq!(&*got.channel, channel);
        let name = if kind == MessageKind::Join {
            "join"
        } else {
            "leave"
        };
        let expected = format!(
            "{{\"event\":\"#herald/{name}\",\"data\":{{\"channel\":{},\"client\":\"sock-1\",\"user\":\"ann\"}}}}",
            serde_json::to_string(channel).expect("encode")
        );
        assert_eq!(String::from_utf8_lossy(&got.frame), expected);
    }
    b.broker.unsubscribe(channel).await.expect("unsubscribe");
}

fn record(channel: &str, client: &str, user: Option<&str>) -> PresenceRecord {
    PresenceRecord {
        channel: Arc::from(channel),
        client: Arc::from(client),
        info: Arc::new(ClientInfo {
            user: user.map(str::to_owned),
            info: Some(serde_json::json!({"name": client})),
        }),
    }
}

/// Presence written on A is read on B; removal, counts, refresh and expiry.
pub async fn presence_across_nodes(a: &mut Node, b: &mut Node, channel: &str, ttl: Duration) {
    a.broker
        .presence_add(
            &[
                record(channel, "s1", Some("u1")),
                record(channel, "s2", Some("u1")),
                record(channel, "s3", None),
            ],
            ttl,
        )
        .await
        .expect("presence add");
    let list = b.broker.presence(channel).await.expect("presence");
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list["s1"].user.as_deref(), Some("u1"));
    assert_eq!(list["s3"].user, None);
    assert_eq!(list["s2"].info, Some(serde_json::json!({"name": "s2"})));
    let stats = b.broker.presence_stats(channel).await.expect("stats");
    assert_eq!((stats.clients, stats.users), (3, 1));
    a.broker
        .presence_remove(channel, &[Arc::from("s2")])
        .await
        .expect("remove");
    let list = b.broker.presence(channel).await.expect("presence");
    assert_eq!(list.keys().collect::<Vec<_>>(), ["s1", "s3"]);
    // s1 is refreshed, s3 is not: after the ttl only s1 is left.
    let start = tokio::time::Instant::now();
    let deadline = start + ttl * 3 + Duration::from_secs(5);
    loop {
        tokio::time::sleep(ttl / 4).await;
        a.broker
            .presence_add(&[record(channel, "s1", Some("u1"))], ttl)
            .await
            .expect("refresh");
        let list = b.broker.presence(channel).await.expect("presence");
        assert!(list.contains_key("s1"), "a refreshed entry expired");
        if !list.contains_key("s3") {
            assert!(start.elapsed() >= ttl, "s3 expired before its ttl");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "s3 never expired");
    }
    a.broker
        .presence_remove(channel, &[Arc::from("s1")])
        .await
        .expect("remove");
    assert!(
        b.broker
            .presence(channel)
            .await
            .expect("presence")
            .is_empty()
    );
    assert_eq!(
        b.broker
            .presence_stats(channel)
            .await
            .expect("stats")
            .clients,
        0
    );
}

/// Runs the history checks with two fresh nodes from `make`. `ns` is
/// the namespace prefix of the policies (a broker may keep storage per
/// namespace); `ttl` is the history lifetime of the expiry check (short,
/// but not below what the engine can honour).
pub async fn run_history<F, Fut>(make: F, prefix: &str, ns: &str, ttl: Duration)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Broker>>,
{
    let mut a = Node::start(make().await);
    let mut b = Node::start(make().await);
    history_offsets_in_order(
        &mut a,
        &mut b,
        &format!("{prefix}h-order"),
        &format!("{ns}order"),
    )
    .await;
    history_concurrent_publishers(
        &mut a,
        &mut b,
        &format!("{prefix}h-race"),
        &format!("{ns}race"),
    )
    .await;
    history_reads(
        &mut a,
        &mut b,
        &format!("{prefix}h-reads"),
        &format!("{ns}reads"),
    )
    .await;
    history_expires(
        &mut a,
        &mut b,
        &format!("{prefix}h-ttl"),
        &format!("{ns}ttl"),
        ttl,
    )
    .await;
    a.broker.shutdown().await;
    b.broker.shutdown().await;
}

/// Runs the presence checks with two fresh nodes from `make`.
pub async fn run_presence<F, Fut>(make: F, prefix: &str, ttl: Duration)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Broker>>,
{
    let mut a = Node::start(make().await);
    let mut b = Node::start(make().await);
    presence_events_travel(&mut a, &mut b, &format!("{prefix}p-events")).await;
    presence_across_nodes(&mut a, &mut b, &format!("{prefix}p-list"), ttl).await;
    a.broker.shutdown().await;
    b.broker.shutdown().await;
}

/// One in-process [`herald::MemoryBroker`] seen as several nodes, so that
/// the two-node checks run against its history and presence stores: each
/// [`MemoryCluster::node`] is a broker of its own towards its registry
/// (its own sink, its own subscriptions) over the one shared store.
pub struct MemoryCluster {
    inner: Arc<herald::MemoryBroker>,
    nodes: Arc<parking_lot::Mutex<Vec<Arc<MemoryNode>>>>,
    started: std::sync::Once,
}

#[derive(Default)]
struct MemoryNode {
    sink: std::sync::OnceLock<BrokerSink>,
    channels: parking_lot::Mutex<std::collections::HashSet<String>>,
}

struct MemoryNodeBroker {
    cluster: Arc<MemoryCluster>,
    node: Arc<MemoryNode>,
}

impl MemoryCluster {
    /// A new cluster over one memory broker.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(herald::MemoryBroker::new()),
            nodes: Default::default(),
            started: std::sync::Once::new(),
        })
    }

    /// A broker for one more node.
    pub fn node(self: &Arc<Self>) -> Arc<dyn Broker> {
        self.started.call_once(|| {
            let nodes = self.nodes.clone();
            self.inner
                .start(BrokerSink::new(move |p: Arc<Publication>| {
                    let nodes = nodes.lock().clone();
                    for n in nodes {
                        if n.channels.lock().contains(&*p.channel)
                            && let Some(sink) = n.sink.get()
                        {
                            sink.deliver(p.clone());
                        }
                    }
                }));
        });
        let node = Arc::new(MemoryNode::default());
        self.nodes.lock().push(node.clone());
        Arc::new(MemoryNodeBroker {
            cluster: self.clone(),
            node,
        })
    }
}

#[async_trait::async_trait]
impl Broker for MemoryNodeBroker {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn start(&self, sink: BrokerSink) {
        let _ = self.node.sink.set(sink);
    }
    async fn subscribe(&self, channel: &str) -> Result<(), herald::BrokerError> {
        self.node.channels.lock().insert(channel.to_owned());
        Ok(())
    }
    async fn unsubscribe(&self, channel: &str) -> Result<(), herald::BrokerError> {
        self.node.channels.lock().remove(channel);
        Ok(())
    }
    async fn publish(&self, publication: Arc<Publication>) -> Result<(), herald::BrokerError> {
        self.cluster.inner.publish(publication).await
    }
    async fn publish_with_history(
        &self,
        channel: &str,
        data: Option<Box<RawValue>>,
        policy: &HistoryPolicy,
    ) -> Result<StreamPosition, herald::BrokerError> {
        self.cluster
            .inner
            .publish_with_history(channel, data, policy)
            .await
    }
    async fn history(
        &self,
        channel: &str,
        policy: &HistoryPolicy,
        query: &HistoryQuery,
    ) -> Result<herald::broker::HistoryPage, herald::BrokerError> {
        self.cluster.inner.history(channel, policy, query).await
    }
    async fn remove_history(
        &self,
        channel: &str,
        policy: &HistoryPolicy,
    ) -> Result<(), herald::BrokerError> {
        self.cluster.inner.remove_history(channel, policy).await
    }
    async fn presence_add(
        &self,
        records: &[PresenceRecord],
        ttl: Duration,
    ) -> Result<(), herald::BrokerError> {
        self.cluster.inner.presence_add(records, ttl).await
    }
    async fn presence_remove(
        &self,
        channel: &str,
        clients: &[Arc<str>],
    ) -> Result<(), herald::BrokerError> {
        self.cluster.inner.presence_remove(channel, clients).await
    }
    async fn presence(
        &self,
        channel: &str,
    ) -> Result<std::collections::BTreeMap<String, ClientInfo>, herald::BrokerError> {
        self.cluster.inner.presence(channel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_broker_passes_the_two_node_checks() {
        let cluster = MemoryCluster::new();
        let make = || {
            let cluster = cluster.clone();
            async move { cluster.node() }
        };
        run_all(make, "m/").await;
        run_history(make, "m/", "ns_", Duration::from_millis(300)).await;
        run_presence(make, "m/", Duration::from_millis(400)).await;
    }

    #[tokio::test]
    async fn memory_broker_passes_within_one_node() {
        // The memory broker has no second node to talk to: check that it
        // loops every publication back in order.
        let broker: Arc<dyn Broker> = Arc::new(herald::MemoryBroker::new());
        let mut node = Node::start(broker.clone());
        node.broker.subscribe("m/c").await.unwrap();
        for seq in 0..100 {
            node.broker.publish(publication("m/c", seq)).await.unwrap();
        }
        for expected in 0..100 {
            assert_eq!(seq_of(&node.next(WAIT).await.unwrap()), expected);
        }
    }
}
