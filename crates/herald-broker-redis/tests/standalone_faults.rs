//! Faults with one Redis server and with servers sharded by channel:
//! SIGKILL and restart on the same port, placement per the documented hash.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald::{Broker, BrokerStatus};
use herald_broker_redis::keys::redis_channel;
use herald_broker_redis::{RedisBroker, shard_index};
use herald_testkit::broker_conformance::Node;
use tokio::time::Instant;

const CHANNELS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_redis_killed_and_restarted() {
    init_tracing();
    let mut server = RedisServer::start().await;
    let options = fast_options(&random_prefix());
    let urls = [server.url()];
    let a = Arc::new(RedisBroker::connect(&urls, options.clone()).await.unwrap());
    let b = Arc::new(RedisBroker::connect(&urls, options.clone()).await.unwrap());
    let publisher: Arc<dyn Broker> = a.clone();
    let mut node_b = Node::start(b.clone());
    let _node_a = Node::start(a.clone());
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("room/{i}")).collect();
    for ch in &channels {
        b.subscribe(ch).await.unwrap();
    }
    check_exactly_once(&publisher, &mut node_b, &channels, 3).await;

    let mut status_a = a.watch_status();
    let mut status_b = b.watch_status();
    let killed = Instant::now();
    server.kill();
    let down = wait_status(&mut status_b, BrokerStatus::Down, STEP).await;
    wait_status(&mut status_a, BrokerStatus::Down, STEP).await;
    assert_eq!(b.status(), BrokerStatus::Down);

    // Publishing while Redis is down fails promptly and is counted.
    let errors_before = a.stats().publish_errors;
    for i in 0..5 {
        let started = Instant::now();
        let result = publisher.publish(publication("room/0", "down", i)).await;
        let took = started.elapsed();
        assert!(result.is_err(), "publish succeeded with Redis down");
        assert!(
            took < Duration::from_secs(2),
            "publish took {took:?} to fail"
        );
    }
    assert_eq!(a.stats().publish_errors, errors_before + 5);
    // Subscribing a new channel fails within the request timeout.
    let started = Instant::now();
    assert!(b.subscribe("room/new").await.is_err());
    assert!(started.elapsed() < options.request_timeout + Duration::from_secs(1));

    let restarted_at = Instant::now();
    server.restart().await;
    wait_status(&mut status_b, BrokerStatus::Up, STEP).await;
    let up = restarted_at.elapsed();
    let delivered = until_all_deliver(&publisher, &mut node_b, &channels, restarted_at, STEP).await;
    check_exactly_once(&publisher, &mut node_b, &channels, 5).await;
    assert!(b.stats().reconnects >= 1);
    assert_eq!(b.stats().invalid_messages, 0);
    println!(
        "single redis: down detected {down:?} after SIGKILL (outage {:?}); \
         up {up:?} after the restart began; all {CHANNELS} channels delivering {delivered:?} after restart",
        restarted_at - killed
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_placement_and_server_restart() {
    init_tracing();
    let mut servers = [
        RedisServer::start().await,
        RedisServer::start().await,
        RedisServer::start().await,
    ];
    let prefix = random_prefix();
    let options = fast_options(&prefix);
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let a = Arc::new(RedisBroker::connect(&urls, options.clone()).await.unwrap());
    let b = Arc::new(RedisBroker::connect(&urls, options.clone()).await.unwrap());
    assert_eq!(b.servers().len(), 3);
    let publisher: Arc<dyn Broker> = a.clone();
    let mut node_b = Node::start(b.clone());
    let _node_a = Node::start(a.clone());
    let channels: Vec<String> = (0..60).map(|i| format!("shard/{i}")).collect();
    for ch in &channels {
        b.subscribe(ch).await.unwrap();
    }

    // Each channel is subscribed on exactly the server the hash names.
    let expected = |i: usize| -> HashSet<String> {
        channels
            .iter()
            .filter(|c| shard_index(c, 3) == i)
            .map(|c| redis_channel(&prefix, c))
            .collect()
    };
    for (i, s) in servers.iter().enumerate() {
        let mut c = s.conn().await;
        let on_server = pubsub_channels(&mut c, &format!("{prefix}*")).await;
        assert_eq!(on_server, expected(i), "channels on server {i}");
        assert!(!on_server.is_empty(), "server {i} carries no channel");
    }
    check_exactly_once(&publisher, &mut node_b, &channels, 3).await;

    // Restart server 1: its channels recover, the others never stop.
    let mut status = b.watch_status();
    let others: Vec<String> = channels
        .iter()
        .filter(|c| shard_index(c, 3) != 1)
        .cloned()
        .collect();
    let killed = Instant::now();
    servers[1].kill();
    wait_status(&mut status, BrokerStatus::Down, STEP).await;
    // Channels on the other servers keep flowing during the outage.
    check_exactly_once(&publisher, &mut node_b, &others, 2).await;
    let restarted_at = Instant::now();
    servers[1].restart().await;
    wait_status(&mut status, BrokerStatus::Up, STEP).await;
    let up = restarted_at.elapsed();
    let delivered = until_all_deliver(&publisher, &mut node_b, &channels, restarted_at, STEP).await;
    check_exactly_once(&publisher, &mut node_b, &channels, 3).await;
    let mut c = servers[1].conn().await;
    assert_eq!(
        pubsub_channels(&mut c, &format!("{prefix}*")).await,
        expected(1),
        "server 1 resubscribed"
    );
    println!(
        "sharded redis: server 1 down for {:?}; up {up:?} after the restart began; \
         all channels delivering {delivered:?} after restart",
        restarted_at - killed
    );
    a.shutdown().await;
    b.shutdown().await;
}
