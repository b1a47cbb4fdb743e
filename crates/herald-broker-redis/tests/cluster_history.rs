//! History through a Redis Cluster slot migration done the way
//! `redis-cli --cluster reshard` does it: `SETSLOT IMPORTING/MIGRATING`,
//! `MIGRATE` of the channel's keys, `SETSLOT NODE`. Publications with
//! history keep going while the slot is half moved (the source answers
//! `ASK` for keys it no longer has, and the script runs on the target
//! after `ASKING`) and after it (`MOVED`), in the same epoch with no hole;
//! the subscriber is moved and told to resync.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald::broker::{HistoryPolicy, HistoryQuery, StreamPosition};
use herald::{Broker, BrokerSink, Publication};
use herald_broker_redis::RedisClusterBroker;
use herald_broker_redis::cluster::slots::key_slot;
use herald_broker_redis::keys::ChannelKeys;
use redis::aio::MultiplexedConnection;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

const CHANNEL: &str = "moving/1";

fn data(n: u64) -> Option<Box<RawValue>> {
    Some(RawValue::from_string(n.to_string()).unwrap())
}

async fn setslot(c: &mut MultiplexedConnection, slot: u16, state: &str, id: &str) {
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(state)
        .arg(id)
        .query_async(c)
        .await
        .expect("CLUSTER SETSLOT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_follows_a_slot_migration() {
    init_tracing();
    let _heavy = HEAVY.lock().await;
    let cluster = RedisCluster::start(3, 0).await;
    let prefix = random_prefix();
    let options = fast_options(&prefix);
    let a = RedisClusterBroker::connect(&cluster.seeds(), options.clone())
        .await
        .unwrap();
    let b = RedisClusterBroker::connect(&cluster.seeds(), options)
        .await
        .unwrap();
    let (tx, mut delivered) = mpsc::unbounded_channel::<Arc<Publication>>();
    let (rtx, mut resynced) = mpsc::unbounded_channel::<String>();
    b.start(BrokerSink::with_resync(
        move |p| {
            let _ = tx.send(p);
        },
        move |ch| {
            let _ = rtx.send(ch.unwrap_or("*").to_owned());
        },
    ));
    a.start(BrokerSink::new(|_| {}));
    b.subscribe(CHANNEL).await.unwrap();
    let p = HistoryPolicy {
        size: 100,
        ttl: Duration::from_secs(60),
        namespace: Arc::from(""),
    };
    let mut positions = Vec::new();
    for n in 1..=3 {
        positions.push(a.publish_with_history(CHANNEL, data(n), &p).await.unwrap());
    }
    for _ in 0..3 {
        within(STEP, "delivery", delivered.recv()).await.unwrap();
    }

    let keys = ChannelKeys::new(&prefix, CHANNEL);
    let slot = key_slot(keys.channel.as_bytes());
    let asked = cluster.servers[0].port;
    let source = cluster.owner_of(asked, slot).await;
    let target = cluster
        .servers
        .iter()
        .map(|s| s.port)
        .find(|p| *p != source)
        .unwrap();
    let (source_id, target_id) = (cluster.id_of(source).await, cluster.id_of(target).await);
    let mut src = cluster.server(source).conn().await;
    let mut dst = cluster.server(target).conn().await;
    setslot(&mut dst, slot, "IMPORTING", &source_id).await;
    setslot(&mut src, slot, "MIGRATING", &target_id).await;
    // Half moved, keys still on the source: the script runs there.
    positions.push(a.publish_with_history(CHANNEL, data(4), &p).await.unwrap());
    let _: () = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(target)
        .arg("")
        .arg(0)
        .arg(5000)
        .arg("KEYS")
        .arg(&keys.stream)
        .arg(&keys.meta)
        .query_async(&mut src)
        .await
        .expect("MIGRATE");
    // Keys on the target, slot not yet: ASK, then the target.
    positions.push(a.publish_with_history(CHANNEL, data(5), &p).await.unwrap());
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut dst)
        .await
        .unwrap();
    assert!(
        stats.contains("cmdstat_asking:calls="),
        "the target was asked (ASKING)"
    );
    setslot(&mut dst, slot, "NODE", &target_id).await;
    setslot(&mut src, slot, "NODE", &target_id).await;
    for other in cluster
        .servers
        .iter()
        .filter(|s| s.port != source && s.port != target)
    {
        let mut c = other.conn().await;
        setslot(&mut c, slot, "NODE", &target_id).await;
    }
    // Moved: MOVED, then the target.
    positions.push(a.publish_with_history(CHANNEL, data(6), &p).await.unwrap());
    let epoch = positions[0].epoch.clone();
    let offsets: Vec<u64> = positions.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5, 6], "no hole through the move");
    assert!(positions.iter().all(|p| p.epoch == epoch), "one epoch");

    // The subscriber follows the slot and is told to resync.
    let ch = within(STEP, "resync", resynced.recv()).await.unwrap();
    assert_eq!(ch, CHANNEL);
    let after = a.publish_with_history(CHANNEL, data(7), &p).await.unwrap();
    loop {
        let got = within(STEP, "delivery after the move", delivered.recv())
            .await
            .unwrap();
        if got.position.as_ref() == Some(&after) {
            break;
        }
    }
    let page = b
        .history(
            CHANNEL,
            &p,
            &HistoryQuery {
                since: Some(StreamPosition::new(3, epoch.clone())),
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert!(page.recovers(&StreamPosition::new(3, epoch.clone())));
    let kept: Vec<u64> = page
        .publications
        .iter()
        .map(|x| x.position.as_ref().unwrap().offset)
        .collect();
    assert_eq!(kept, [4, 5, 6, 7]);
    assert_eq!(a.stats().script_errors, 0);
    a.shutdown().await;
    b.shutdown().await;
}
