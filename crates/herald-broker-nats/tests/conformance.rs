//! The shared broker conformance suite, against the machine's NATS server
//! (`HERALD_TEST_NATS_URL`, default `nats://127.0.0.1:4222`), isolated from
//! anything else on it by a random subject prefix (hence its own history
//! streams and presence bucket, deleted at the end).
//!
//! History and presence use ttls of 2 s: JetStream expires messages
//! (`max_age`) on a timer with millisecond precision, so a short ttl is
//! honoured, and the checks wait on the engine, bounded.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{STEP, random_prefix, shared_url, within};
use herald::Broker;
use herald_broker_nats::{NatsBroker, NatsOptions};
use herald_testkit::broker_conformance::{run_all, run_history, run_presence};

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

/// The namespaces `run_history` uses with namespace prefix `ns`.
fn history_namespaces(ns: &str) -> Vec<String> {
    ["order", "race", "reads", "ttl"]
        .iter()
        .map(|n| format!("{ns}{n}"))
        .collect()
}

fn nats_factory(
    prefix: &str,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Arc<dyn Broker>>>> {
    let prefix = prefix.to_owned();
    move || {
        let options = NatsOptions::default().with_prefix(prefix.clone());
        Box::pin(async move {
            let broker = NatsBroker::connect(&shared_url(), options)
                .await
                .expect("connect to the shared NATS");
            Arc::new(broker) as Arc<dyn Broker>
        })
    }
}

async fn history(channel_prefix: &str, ns: &str) {
    let prefix = random_prefix();
    let started = Instant::now();
    within(
        Duration::from_secs(120),
        "the history checks",
        run_history(
            nats_factory(&prefix),
            channel_prefix,
            ns,
            Duration::from_secs(2),
        ),
    )
    .await;
    eprintln!(
        "history conformance with channel prefix {channel_prefix:?}: {:?}",
        started.elapsed()
    );
    let naming = common::broker(&shared_url(), NatsOptions::default().with_prefix(prefix)).await;
    common::delete_jetstream_state(&shared_url(), &naming, &history_namespaces(ns)).await;
}

/// Offsets, epochs, concurrent publishers, reads, removal and expiry, in
/// JetStream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_conformance_passes() {
    history("conf/", "ns_").await;
}

/// The same with channel names and namespaces NATS cannot carry as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_conformance_passes_with_hostile_names() {
    history("a.b *.> %2E é/", "n.s *>").await;
}

/// Join/leave events, and presence in the KV bucket across nodes:
/// removal, counts, refresh and expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_conformance_passes() {
    let prefix = random_prefix();
    let started = Instant::now();
    within(
        Duration::from_secs(60),
        "the presence checks",
        run_presence(nats_factory(&prefix), "p.é *", Duration::from_secs(2)),
    )
    .await;
    eprintln!("presence conformance: {:?}", started.elapsed());
    let naming = common::broker(&shared_url(), NatsOptions::default().with_prefix(prefix)).await;
    common::delete_jetstream_state(&shared_url(), &naming, &[]).await;
}
