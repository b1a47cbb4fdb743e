//! Redis Cluster faults over 120+ subscribed channels spread across slots:
//! a primary killed (automatic failover), a manual failover, a slot
//! migrated to another primary, and subscriber connections killed with
//! `CLIENT KILL TYPE pubsub`. After each, every channel must deliver again,
//! exactly once and in order; each recovery is timed.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::*;
use herald::{Broker, BrokerStatus};
use herald_broker_redis::RedisClusterBroker;
use herald_broker_redis::cluster::slots::key_slot;
use herald_broker_redis::keys::redis_channel;
use herald_testkit::broker_conformance::Node;
use tokio::time::Instant;

struct Setup {
    a: Arc<RedisClusterBroker>,
    b: Arc<RedisClusterBroker>,
    publisher: Arc<dyn Broker>,
    node_b: Node,
    _node_a: Node,
    prefix: String,
    channels: Vec<String>,
}

/// Channels whose slot is that of `mig/0` (the key scheme hashes the
/// escaped Herald name, so braces in a Herald name do not group channels;
/// the test finds names that share a slot instead).
fn same_slot_channels(prefix: &str, n: usize) -> Vec<String> {
    let slot = |c: &str| key_slot(redis_channel(prefix, c).as_bytes());
    let target = slot("mig/0");
    let mut out = vec!["mig/0".to_owned()];
    let mut k = 1u64;
    while out.len() < n {
        let c = format!("mig/{k}");
        if slot(&c) == target {
            out.push(c);
        }
        k += 1;
    }
    out
}

/// Channels sharing the slot that the migration test moves.
const MIGRATED: usize = 10;

/// Two brokers (A publishes, B subscribes to 120 channels spread over every
/// primary, plus 10 sharing one slot).
async fn setup(cluster: &RedisCluster) -> Setup {
    let prefix = random_prefix();
    let options = fast_options(&prefix);
    let seeds = cluster.seeds();
    let a = Arc::new(
        RedisClusterBroker::connect(&seeds, options.clone())
            .await
            .unwrap(),
    );
    let b = Arc::new(RedisClusterBroker::connect(&seeds, options).await.unwrap());
    let mut channels: Vec<String> = (0..120).map(|i| format!("c/{i}")).collect();
    channels.extend(same_slot_channels(&prefix, MIGRATED));
    let node_b = Node::start(b.clone());
    let node_a = Node::start(a.clone());
    for ch in &channels {
        b.subscribe(ch).await.unwrap();
    }
    let mut setup = Setup {
        publisher: a.clone(),
        a,
        b,
        node_b,
        _node_a: node_a,
        prefix,
        channels,
    };
    let channels = setup.channels.clone();
    check_exactly_once(&setup.publisher, &mut setup.node_b, &channels, 2).await;
    // The channels are spread over every primary.
    let asked = cluster.servers[0].port;
    let mut owners = HashSet::new();
    for ch in &channels {
        let slot = key_slot(redis_channel(&setup.prefix, ch).as_bytes());
        owners.insert(cluster.owner_of(asked, slot).await);
    }
    assert_eq!(owners.len(), 3, "channels on {owners:?}");
    setup
}

impl Setup {
    fn slot_of(&self, channel: &str) -> u16 {
        key_slot(redis_channel(&self.prefix, channel).as_bytes())
    }

    /// Every channel is subscribed on exactly one live node: the primary
    /// owning its slot (none left on a replica or a former owner).
    async fn assert_placement(&self, cluster: &RedisCluster) {
        let live: Vec<u16> = cluster
            .servers
            .iter()
            .filter(|x| x.is_running())
            .map(|x| x.port)
            .collect();
        let mut placed: HashMap<String, Vec<u16>> = HashMap::new();
        for &port in &live {
            let mut c = cluster.server(port).conn().await;
            let on_node: HashSet<String> = redis::cmd("PUBSUB")
                .arg("SHARDCHANNELS")
                .arg(format!("{}*", self.prefix))
                .query_async(&mut c)
                .await
                .expect("PUBSUB SHARDCHANNELS");
            for ch in on_node {
                placed.entry(ch).or_default().push(port);
            }
        }
        for ch in &self.channels {
            let owner = cluster.owner_of(live[0], self.slot_of(ch)).await;
            let name = redis_channel(&self.prefix, ch);
            assert_eq!(
                placed.get(&name).map(Vec::as_slice),
                Some(&[owner][..]),
                "{ch} subscribed on {:?}, its slot's primary is {owner}",
                placed.get(&name)
            );
        }
    }

    async fn recovered(&mut self, since: Instant, what: &str) {
        let delivered = until_all_deliver(
            &self.publisher,
            &mut self.node_b,
            &self.channels,
            since,
            STEP * 2,
        )
        .await;
        let mut status = self.b.watch_status();
        wait_status(&mut status, BrokerStatus::Up, STEP).await;
        let up = since.elapsed();
        check_exactly_once(&self.publisher, &mut self.node_b, &self.channels, 3).await;
        let stats = self.b.stats();
        println!(
            "{what}: all {} channels delivering {delivered:?} after the fault; B up at {up:?}; B stats {stats:?}",
            self.channels.len()
        );
        assert_eq!(stats.invalid_messages, 0);
    }

    async fn shutdown(self) {
        self.a.shutdown().await;
        self.b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_primary_killed_fails_over() {
    init_tracing();
    let _heavy = HEAVY.lock().await;
    let mut cluster = RedisCluster::start(3, 1).await;
    let mut s = setup(&cluster).await;
    let slot = s.slot_of("c/0");
    let asked = cluster.servers[0].port;
    let victim = cluster.owner_of(asked, slot).await;
    let witness = cluster
        .servers
        .iter()
        .map(|x| x.port)
        .find(|p| *p != victim)
        .unwrap();
    let mut status = s.b.watch_status();
    let since = Instant::now();
    cluster.server_mut(victim).kill();
    wait_status(&mut status, BrokerStatus::Down, STEP).await;
    s.recovered(
        since,
        "cluster, primary SIGKILLed (automatic failover, node timeout 1 s)",
    )
    .await;
    s.assert_placement(&cluster).await;
    let new_owner = cluster.owner_of(witness, slot).await;
    assert_ne!(new_owner, victim);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_manual_failover() {
    init_tracing();
    let _heavy = HEAVY.lock().await;
    let cluster = RedisCluster::start(3, 1).await;
    let mut s = setup(&cluster).await;
    let slot = s.slot_of("c/0");
    let asked = cluster.servers[0].port;
    let primary = cluster.owner_of(asked, slot).await;
    let primary_id = cluster.id_of(primary).await;
    let replica = cluster
        .nodes_seen_by(asked)
        .await
        .into_iter()
        .find(|n| n.primary_id.as_deref() == Some(&primary_id))
        .expect("a replica of the primary");
    let since = Instant::now();
    let mut c = cluster.server(replica.port).conn().await;
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query_async(&mut c)
        .await
        .expect("CLUSTER FAILOVER");
    s.recovered(
        since,
        "cluster, manual failover (CLUSTER FAILOVER on a replica)",
    )
    .await;
    s.assert_placement(&cluster).await;
    // Publications now go through the promoted replica, and nothing is
    // left subscribed on the demoted primary (where replicated publications
    // would be delivered a second time).
    assert_eq!(cluster.owner_of(replica.port, slot).await, replica.port);
    let mut c = cluster.server(primary).conn().await;
    let left: HashSet<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .arg(format!("{}*", s.prefix))
        .query_async(&mut c)
        .await
        .expect("PUBSUB SHARDCHANNELS");
    assert!(
        left.is_empty(),
        "still subscribed on the demoted primary: {left:?}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_slot_migrated() {
    init_tracing();
    let _heavy = HEAVY.lock().await;
    let cluster = RedisCluster::start(3, 0).await;
    let mut s = setup(&cluster).await;
    let slot = s.slot_of("mig/0");
    let asked = cluster.servers[0].port;
    let source = cluster.owner_of(asked, slot).await;
    let target = cluster
        .servers
        .iter()
        .map(|x| x.port)
        .find(|p| *p != source)
        .unwrap();
    let source_id = cluster.id_of(source).await;
    let target_id = cluster.id_of(target).await;
    let mut src = cluster.server(source).conn().await;
    let mut dst = cluster.server(target).conn().await;
    let setslot = |c: &mut redis::aio::MultiplexedConnection, state: &str, id: &str| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
        let mut c = c.clone();
        async move {
            let _: () = cmd.query_async(&mut c).await.expect("CLUSTER SETSLOT");
        }
    };
    let pattern = format!("{}*", s.prefix);
    let subscribed_on = |port: u16| {
        let pattern = pattern.clone();
        let conn = cluster.server(port).conn();
        async move {
            let mut c = conn.await;
            let set: HashSet<String> = redis::cmd("PUBSUB")
                .arg("SHARDCHANNELS")
                .arg(&pattern)
                .query_async(&mut c)
                .await
                .expect("PUBSUB SHARDCHANNELS");
            set
        }
    };
    let mig: HashSet<String> = same_slot_channels(&s.prefix, MIGRATED)
        .iter()
        .map(|c| redis_channel(&s.prefix, c))
        .collect();
    assert!(mig.is_subset(&subscribed_on(source).await));

    setslot(&mut dst, "IMPORTING", &source_id).await;
    setslot(&mut src, "MIGRATING", &target_id).await;
    let since = Instant::now();
    setslot(&mut dst, "NODE", &target_id).await;
    setslot(&mut src, "NODE", &target_id).await;
    for other in cluster
        .servers
        .iter()
        .filter(|x| x.port != source && x.port != target)
    {
        let mut c = other.conn().await;
        setslot(&mut c, "NODE", &target_id).await;
    }
    s.recovered(
        since,
        "cluster, slot migrated to another primary (SETSLOT IMPORTING/MIGRATING/NODE)",
    )
    .await;
    s.assert_placement(&cluster).await;
    assert!(
        mig.is_subset(&subscribed_on(target).await),
        "moved to the target"
    );
    assert!(
        mig.is_disjoint(&subscribed_on(source).await),
        "gone from the source"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_subscriber_connections_killed() {
    init_tracing();
    let _heavy = HEAVY.lock().await;
    let cluster = RedisCluster::start(3, 0).await;
    let mut s = setup(&cluster).await;
    let reconnects = s.b.stats().reconnects;
    let since = Instant::now();
    let mut killed = 0;
    for server in &cluster.servers {
        let mut c = server.conn().await;
        let n: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut c)
            .await
            .expect("CLIENT KILL");
        killed += n;
    }
    assert!(killed >= 3, "killed {killed} pubsub connections");
    s.recovered(since, "cluster, CLIENT KILL TYPE pubsub on every primary")
        .await;
    s.assert_placement(&cluster).await;
    assert!(s.b.stats().reconnects >= reconnects + 3);
    s.shutdown().await;
}
