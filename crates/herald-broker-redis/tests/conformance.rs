//! The shared broker conformance suite (`herald-testkit`) against each Redis
//! flavour: one server, three sharded servers, a three-primary cluster.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use herald::Broker;
use herald_broker_redis::{RedisBroker, RedisClusterBroker, RedisOptions};
use herald_testkit::broker_conformance::{run_all, run_history, run_presence};

const LIMIT: Duration = Duration::from_secs(120);
/// History lifetime of the expiry check: short, well above Redis's expiry
/// resolution (1 ms, with lazy and active expiry).
const HISTORY_TTL: Duration = Duration::from_millis(500);
/// Presence lifetime of the presence check.
const PRESENCE_TTL: Duration = Duration::from_millis(800);

async fn single(url: String, options: RedisOptions) -> Arc<dyn Broker> {
    Arc::new(
        RedisBroker::connect(&[url], options)
            .await
            .expect("connect"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_redis_passes_conformance() {
    init_tracing();
    // The shared Redis, isolated by a random prefix.
    let options = fast_options(&random_prefix());
    within(
        LIMIT,
        "conformance suite",
        run_all(
            || single("redis://127.0.0.1:6379".into(), options.clone()),
            "conformance/",
        ),
    )
    .await;
}

/// History and presence on the shared Redis, isolated by a random prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_redis_passes_history_and_presence_conformance() {
    init_tracing();
    let options = fast_options(&random_prefix());
    let make = || single("redis://127.0.0.1:6379".into(), options.clone());
    within(
        LIMIT,
        "history conformance",
        run_history(make, "conformance/", "ns_", HISTORY_TTL),
    )
    .await;
    within(
        LIMIT,
        "presence conformance",
        run_presence(make, "conformance/", PRESENCE_TTL),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_redis_passes_conformance() {
    init_tracing();
    let servers = [
        RedisServer::start().await,
        RedisServer::start().await,
        RedisServer::start().await,
    ];
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let options = fast_options(&random_prefix());
    let make = || async {
        Arc::new(
            RedisBroker::connect(&urls, options.clone())
                .await
                .expect("connect"),
        ) as Arc<dyn Broker>
    };
    within(LIMIT, "conformance suite", run_all(make, "conformance/")).await;
    within(
        LIMIT,
        "history conformance",
        run_history(make, "conformance/", "ns_", HISTORY_TTL),
    )
    .await;
    within(
        LIMIT,
        "presence conformance",
        run_presence(make, "conformance/", PRESENCE_TTL),
    )
    .await;
    // The channels were spread: every server carried some.
    for s in &servers {
        let mut c = s.conn().await;
        let n: u64 = redis::cmd("INFO")
            .arg("stats")
            .query_async::<String>(&mut c)
            .await
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!(n > 100, "server {} saw only {n} commands", s.port);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_passes_conformance() {
    init_tracing();
    let _heavy = HEAVY.lock().await;
    let cluster = RedisCluster::start(3, 0).await;
    let seeds = cluster.seeds();
    let options = fast_options(&random_prefix());
    let make = || async {
        Arc::new(
            RedisClusterBroker::connect(&seeds, options.clone())
                .await
                .expect("connect"),
        ) as Arc<dyn Broker>
    };
    within(LIMIT, "conformance suite", run_all(make, "conformance/")).await;
    within(
        LIMIT,
        "history conformance",
        run_history(make, "conformance/", "ns_", HISTORY_TTL),
    )
    .await;
    within(
        LIMIT,
        "presence conformance",
        run_presence(make, "conformance/", PRESENCE_TTL),
    )
    .await;
}
