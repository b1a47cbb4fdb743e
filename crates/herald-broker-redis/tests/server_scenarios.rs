//! Herald nodes over Redis, end to end with the Rust client: recovery
//! across nodes, gap repair after the subscriber connection is killed,
//! presence across nodes, a node killed with SIGKILL while publications go
//! on, a Redis without persistence restarted, and the same on a Redis
//! Cluster (the scenarios are `herald_testkit::cluster_scenarios`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt as _;
use herald::Broker;
use herald_broker_redis::{RedisBroker, RedisClusterBroker};
use herald_client::{GapCause, SubscribeOptions, SubscriptionError};
use herald_testkit::cluster_scenarios as scenarios;

const LIMIT: Duration = Duration::from_secs(120);

async fn broker(url: &str, prefix: &str) -> Arc<dyn Broker> {
    Arc::new(
        RedisBroker::connect(&[url.to_owned()], fast_options(prefix))
            .await
            .expect("connect"),
    )
}

async fn cluster_broker(seeds: &[String], prefix: &str) -> Arc<dyn Broker> {
    Arc::new(
        RedisClusterBroker::connect(seeds, fast_options(prefix))
            .await
            .expect("connect"),
    )
}

async fn kill_pubsub(url: &str) {
    let mut c = admin(url).await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut c)
        .await
        .expect("CLIENT KILL");
    assert!(killed > 0, "no subscriber connection to kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_across_nodes() {
    init_tracing();
    let redis = RedisServer::start().await;
    let p = random_prefix();
    within(
        LIMIT,
        "recovery across nodes",
        scenarios::recovery_across_nodes(
            broker(&redis.url(), &p).await,
            broker(&redis.url(), &p).await,
            "hist:away",
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscriber_connection_is_repaired_without_the_clients_noticing() {
    init_tracing();
    let redis = RedisServer::start().await;
    let p = random_prefix();
    let url = redis.url();
    within(
        LIMIT,
        "gap repair",
        scenarios::gap_repair(
            broker(&url, &p).await,
            broker(&url, &p).await,
            "hist:gap",
            || kill_pubsub(&url),
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_by_the_nodes() {
    init_tracing();
    let p = random_prefix();
    within(
        LIMIT,
        "presence across nodes",
        scenarios::presence_across_nodes(
            broker("redis://127.0.0.1:6379", &p).await,
            broker("redis://127.0.0.1:6379", &p).await,
            "hist:room",
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_publishing_loses_no_one_anything() {
    init_tracing();
    let _heavy = HEAVY.lock().await;
    let redis = RedisServer::start().await;
    within(
        LIMIT,
        "a node killed while publishing",
        scenarios::node_killed_while_publishing(&redis.url(), "hist:kill", 20),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_presence_expires() {
    init_tracing();
    let redis = RedisServer::start().await;
    within(
        LIMIT,
        "presence expiry",
        scenarios::presence_expires_after_a_node_is_killed(
            &redis.url(),
            "hist:gone",
            Duration::from_secs(2),
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_without_persistence_is_never_a_silent_gap() {
    init_tracing();
    let mut redis = RedisServer::start().await;
    let p = random_prefix();
    let node = scenarios::Node::start(broker(&redis.url(), &p).await).await;
    let live = scenarios::client(&node.url).await;
    let mut sub = live.subscribe("hist:restart").await.expect("subscribe");
    for n in 1..=3 {
        scenarios::publish_retrying(&live, "hist:restart", n).await;
    }
    assert_eq!(scenarios::read_offsets(&mut sub, 0, 3).await, [1, 2, 3]);
    let before = sub.position().cloned().expect("a position");
    redis.restart().await;
    // The node repairs after the restart, finds a new epoch: the live
    // subscriber is told.
    match within(LIMIT, "the notice", sub.next()).await {
        Some(Err(SubscriptionError::Gap(gap))) => {
            assert_eq!(gap.cause, GapCause::Announced, "{gap:?}");
            assert_ne!(gap.resume.epoch, before.epoch);
        }
        other => panic!("expected a gap notice, got {other:?}"),
    }
    // A client coming back with the old position: recovered false.
    let back = scenarios::client(&node.url).await;
    let options = SubscribeOptions {
        since: Some(before.clone()),
        ..SubscribeOptions::default()
    };
    let mut again = back
        .subscribe_with("hist:restart", options)
        .await
        .expect("subscribe");
    match within(LIMIT, "recovered: false", again.next()).await {
        Some(Err(SubscriptionError::Gap(gap))) => {
            assert_eq!(gap.cause, GapCause::NotRecovered, "{gap:?}");
            assert_ne!(gap.resume.epoch, before.epoch);
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    live.close().await;
    back.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_and_gap_repair_on_a_redis_cluster() {
    init_tracing();
    let _heavy = HEAVY.lock().await;
    let cluster = RedisCluster::start(3, 0).await;
    let seeds = cluster.seeds();
    let p = random_prefix();
    within(
        LIMIT,
        "recovery across nodes on a cluster",
        scenarios::recovery_across_nodes(
            cluster_broker(&seeds, &p).await,
            cluster_broker(&seeds, &p).await,
            "hist:c-away",
        ),
    )
    .await;
    let urls: Vec<String> = cluster.servers.iter().map(|s| s.url()).collect();
    within(
        LIMIT,
        "gap repair on a cluster",
        scenarios::gap_repair(
            cluster_broker(&seeds, &p).await,
            cluster_broker(&seeds, &p).await,
            "hist:c-gap",
            || async {
                for url in &urls {
                    let mut c = admin(url).await;
                    let _: i64 = redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("TYPE")
                        .arg("pubsub")
                        .query_async(&mut c)
                        .await
                        .expect("CLIENT KILL");
                }
            },
        ),
    )
    .await;
}
