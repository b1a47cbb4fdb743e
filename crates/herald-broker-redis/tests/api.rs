//! The HTTP server API across two nodes over Redis (the shared server on
//! 6379, with a random key prefix): every method called on one node acts on
//! the clients of the other (`herald_testkit::api_scenarios`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald::Broker;
use herald_broker_redis::RedisBroker;
use herald_testkit::api_scenarios::{self as scenarios, api_node, wait_nodes};
use herald_testkit::cluster_scenarios::Node;

const LIMIT: Duration = Duration::from_secs(60);
const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

async fn broker(prefix: &str) -> Arc<dyn Broker> {
    Arc::new(
        RedisBroker::connect(&[SHARED_REDIS.to_owned()], fast_options(prefix))
            .await
            .expect("connect to the shared Redis (scripts/services.sh)"),
    )
}

/// Two nodes that know each other.
async fn two_nodes() -> (Node, Node) {
    let prefix = random_prefix();
    let a = api_node(broker(&prefix).await, "api-a").await;
    let b = api_node(broker(&prefix).await, "api-b").await;
    wait_nodes(&a, 2).await;
    wait_nodes(&b, 2).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_broadcast_and_history_across_nodes() {
    init_tracing();
    within(LIMIT, "publish and history across nodes", async {
        let (a, b) = two_nodes().await;
        scenarios::publish_and_history(&a, &b).await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_operations_across_nodes() {
    init_tracing();
    within(LIMIT, "user operations across nodes", async {
        let (a, b) = two_nodes().await;
        scenarios::users(&a, &b).await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_operations_reach_every_socket_of_the_user_across_nodes() {
    init_tracing();
    within(LIMIT, "user operations on sockets of both nodes", async {
        let (a, b) = two_nodes().await;
        scenarios::users_everywhere(&a, &b).await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_channels_and_info_across_nodes() {
    init_tracing();
    within(LIMIT, "presence and channels across nodes", async {
        let (a, b) = two_nodes().await;
        scenarios::presence_and_channels(&a, &b).await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_across_nodes() {
    init_tracing();
    within(LIMIT, "batch across nodes", async {
        let (a, b) = two_nodes().await;
        scenarios::batch(&a, &b).await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}
