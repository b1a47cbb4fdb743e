//! A node refreshes all of its presence entries at once: one
//! `presence_add` call with thousands of records over hundreds of
//! channels, spread over three sharded servers or three cluster primaries.
//! Every entry must be readable from another node, and the batch is timed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald::Broker;
use herald::broker::{ClientInfo, PresenceRecord};
use herald_broker_redis::{RedisBroker, RedisClusterBroker};
use tokio::time::Instant;

const CHANNELS: usize = 200;
const PER_CHANNEL: usize = 10;

fn records() -> Vec<PresenceRecord> {
    let mut out = Vec::new();
    for c in 0..CHANNELS {
        for s in 0..PER_CHANNEL {
            out.push(PresenceRecord {
                channel: Arc::from(format!("room/{c}")),
                client: Arc::from(format!("sock-{c}-{s}")),
                info: Arc::new(ClientInfo {
                    user: Some(format!("user-{}", s % 3)),
                    info: None,
                }),
            });
        }
    }
    out
}

async fn check(writer: &dyn Broker, reader: &dyn Broker, what: &str) {
    let records = records();
    let ttl = Duration::from_secs(30);
    let started = Instant::now();
    writer.presence_add(&records, ttl).await.expect("batch");
    let first = started.elapsed();
    let started = Instant::now();
    writer.presence_add(&records, ttl).await.expect("refresh");
    let refresh = started.elapsed();
    for c in 0..CHANNELS {
        let channel = format!("room/{c}");
        let list = reader.presence(&channel).await.expect("presence");
        assert_eq!(list.len(), PER_CHANNEL, "{channel}");
        let stats = reader.presence_stats(&channel).await.expect("stats");
        assert_eq!((stats.clients, stats.users), (PER_CHANNEL as u64, 3));
    }
    println!(
        "{what}: presence_add of {} records over {CHANNELS} channels: {first:?}, refresh {refresh:?}",
        records.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_presence_batch() {
    init_tracing();
    let servers = [
        RedisServer::start().await,
        RedisServer::start().await,
        RedisServer::start().await,
    ];
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let options = fast_options(&random_prefix());
    let a = RedisBroker::connect(&urls, options.clone()).await.unwrap();
    let b = RedisBroker::connect(&urls, options).await.unwrap();
    within(STEP * 2, "presence batch", check(&a, &b, "sharded redis")).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_presence_batch() {
    init_tracing();
    let _heavy = HEAVY.lock().await;
    let cluster = RedisCluster::start(3, 0).await;
    let options = fast_options(&random_prefix());
    let a = RedisClusterBroker::connect(&cluster.seeds(), options.clone())
        .await
        .unwrap();
    let b = RedisClusterBroker::connect(&cluster.seeds(), options)
        .await
        .unwrap();
    within(STEP * 2, "presence batch", check(&a, &b, "redis cluster")).await;
    a.shutdown().await;
    b.shutdown().await;
}
