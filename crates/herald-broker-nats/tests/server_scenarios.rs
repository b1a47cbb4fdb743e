//! Herald nodes over NATS with JetStream history, end to end with the Rust
//! client: recovery across nodes, gap repair across a NATS restart,
//! presence across nodes and its expiry after a node is killed, and a node
//! killed with SIGKILL while publications go on (the scenarios are
//! `herald_testkit::cluster_scenarios`). Each test runs its own private
//! nats-server, so no stream outlives it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald::Broker;
use herald_broker_nats::NatsOptions;
use herald_testkit::cluster_scenarios as scenarios;

const LIMIT: Duration = Duration::from_secs(120);

async fn node_broker(url: &str, prefix: &str) -> Arc<dyn Broker> {
    broker(url, NatsOptions::default().with_prefix(prefix)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_across_nodes() {
    let nats = NatsServer::start().await;
    let p = random_prefix();
    within(
        LIMIT,
        "recovery across nodes",
        scenarios::recovery_across_nodes(
            node_broker(&nats.url(), &p).await,
            node_broker(&nats.url(), &p).await,
            "hist:away",
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_is_repaired_without_the_clients_noticing() {
    let mut nats = NatsServer::start().await;
    let url = nats.url();
    let p = random_prefix();
    let a = node_broker(&url, &p).await;
    let b = node_broker(&url, &p).await;
    within(
        LIMIT,
        "gap repair",
        scenarios::gap_repair(a, b, "hist:gap", move || async move {
            nats.kill().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            nats.restart().await;
            // Kept alive until the scenario ends: moved into the closure.
            std::mem::forget(nats);
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_by_the_nodes() {
    let nats = NatsServer::start().await;
    let p = random_prefix();
    within(
        LIMIT,
        "presence across nodes",
        scenarios::presence_across_nodes(
            node_broker(&nats.url(), &p).await,
            node_broker(&nats.url(), &p).await,
            "hist:room",
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_publishing_loses_no_one_anything() {
    let nats = NatsServer::start().await;
    within(
        LIMIT,
        "a node killed while publishing",
        scenarios::node_killed_while_publishing(&nats.url(), "hist:kill", 10),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_presence_expires() {
    let nats = NatsServer::start().await;
    within(
        LIMIT,
        "presence expiry",
        scenarios::presence_expires_after_a_node_is_killed(
            &nats.url(),
            "hist:gone",
            Duration::from_secs(2),
        ),
    )
    .await;
}
