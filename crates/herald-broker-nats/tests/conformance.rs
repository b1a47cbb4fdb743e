//! The shared broker conformance suite, against the machine's NATS server
//! (`HERALD_TEST_NATS_URL`, default `nats://127.0.0.1:4222`), isolated from
//! anything else on it by a random subject prefix.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{STEP, random_prefix, shared_url, within};
use herald::Broker;
use herald_broker_nats::{NatsBroker, NatsOptions};
use herald_testkit::broker_conformance::run_all;

async fn run(channel_prefix: &str) {
    let prefix = random_prefix();
    let started = Instant::now();
    within(
        Duration::from_secs(120),
        "the conformance suite",
        run_all(
            || {
                let options = NatsOptions::default().with_prefix(prefix.clone());
                async move {
                    let broker = NatsBroker::connect(&shared_url(), options)
                        .await
                        .expect("connect to the shared NATS");
                    Arc::new(broker) as Arc<dyn Broker>
                }
            },
            channel_prefix,
        ),
    )
    .await;
    eprintln!(
        "conformance with channel prefix {channel_prefix:?}: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes() {
    run("conf/").await;
}

/// The same suite with channel names full of what NATS subjects cannot
/// carry as is: dots, wildcards, spaces, `%`, non-ASCII.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_with_hostile_channel_names() {
    run("a.b *.> %2E é/").await;
}

/// A publication reaches the subscriber of its channel and not the
/// subscriber of a channel whose name differs only by characters that a
/// naive mapping would confuse (`a.b` vs `a%2Eb` vs `a b`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookalike_channels_stay_apart() {
    let prefix = random_prefix();
    let options = NatsOptions::default().with_prefix(prefix);
    let a = common::broker(&shared_url(), options.clone()).await;
    let b = common::broker(&shared_url(), options).await;
    let _ = common::Recorder::start(&*a);
    let rec = common::Recorder::start(&*b);
    let names = ["a.b", "a%2Eb", "a b", "a_b", "a*", "a>", "a.>", ""];
    for name in names {
        b.subscribe(name).await.expect("subscribe");
    }
    for (seq, name) in names.iter().enumerate() {
        a.publish(common::publication(name, seq as u64))
            .await
            .expect("publish");
    }
    rec.wait("one publication per channel", |log| {
        names
            .iter()
            .all(|n| log.get(*n).is_some_and(|v| !v.is_empty()))
    })
    .await;
    for (seq, name) in names.iter().enumerate() {
        assert_eq!(rec.seqs(name), [seq as u64], "channel {name:?}");
    }
    // No subscription received another channel's message either.
    assert_eq!(b.stats().receive_dropped, 0, "{:?}", b.stats());
    within(STEP, "shutdown", async {
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}
