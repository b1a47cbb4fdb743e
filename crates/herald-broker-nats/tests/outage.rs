//! Faults: a private `nats-server` (never the shared one) is SIGKILLed and
//! restarted on the same port while two brokers use it.
//!
//! Checked: the status goes `Down` then `Up`; every subscribed channel
//! (120 of them) delivers again afterwards, as does one subscribed during
//! the outage, while one unsubscribed during the outage stays silent;
//! publications made meanwhile are delivered or counted; a publish never
//! hangs. Timings are printed (`--nocapture`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{NatsServer, Recorder, STEP, broker, publication, random_prefix, wait_status, within};
use herald::{Broker, BrokerStatus};
use herald_broker_nats::{NatsBroker, NatsOptions, WhenDown};

const CHANNELS: u64 = 120;

fn channel(i: u64) -> String {
    format!("ch/{i}")
}

/// Publishes `round` on every channel from `from` and waits until `to`
/// received all of them (except on `skip`).
async fn every_channel_delivers(from: &NatsBroker, to: &Recorder, round: u64, skip: &[u64]) {
    for i in 0..CHANNELS {
        from.publish(publication(&channel(i), round))
            .await
            .expect("publish while up");
    }
    to.wait(&format!("round {round} on every channel"), |log| {
        (0..CHANNELS)
            .filter(|i| !skip.contains(i))
            .all(|i| log.get(&channel(i)).is_some_and(|v| v.contains(&round)))
    })
    .await;
}

/// Whether `seqs` is strictly increasing (in order, no duplicate).
fn strictly_increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_nats_restart() {
    within(
        Duration::from_secs(120),
        "the whole test",
        restart_scenario(),
    )
    .await;
}

async fn restart_scenario() {
    let mut server = NatsServer::start().await;
    let options = NatsOptions::default().with_prefix(random_prefix());
    let a = broker(&server.url(), options.clone()).await;
    let b = broker(&server.url(), options).await;
    let rec_a = Recorder::start(&*a);
    let rec_b = Recorder::start(&*b);

    for i in 0..CHANNELS {
        b.subscribe(&channel(i)).await.expect("subscribe");
    }
    a.subscribe("stream").await.expect("subscribe");
    b.subscribe("stream").await.expect("subscribe");
    every_channel_delivers(&a, &rec_b, 0, &[]).await;

    // A publishes on `stream` every millisecond until told to stop,
    // recording which publications it made while B was down.
    let stop = Arc::new(AtomicBool::new(false));
    let while_b_down = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        let (stop, while_b_down) = (stop.clone(), while_b_down.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let (mut seq, mut failed, mut slowest) = (0u64, 0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                // Publications A sends to NATS while B is not subscribed
                // there: B misses them and nobody can count them (that is
                // the gap JetStream would fill).
                let b_down = b.status() == BrokerStatus::Down && a.status() == BrokerStatus::Up;
                let started = Instant::now();
                if a.publish(publication("stream", seq)).await.is_err() {
                    failed += 1;
                }
                slowest = slowest.max(started.elapsed());
                if b_down {
                    while_b_down.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
            }
            (seq, failed, slowest)
        }
    });
    rec_b
        .wait("stream flowing", |log| {
            log.get("stream").is_some_and(|v| v.len() >= 100)
        })
        .await;

    // Outage.
    server.kill().await;
    let killed = Instant::now();
    wait_status(&a, BrokerStatus::Down, "A down").await;
    wait_status(&b, BrokerStatus::Down, "B down").await;
    let detected = killed.elapsed();
    // Meanwhile A keeps serving its own subscribers (local delivery).
    let local_before = rec_a.count("stream");
    rec_a
        .wait("local deliveries during the outage", |log| {
            log.get("stream")
                .is_some_and(|v| v.len() >= local_before + 200)
        })
        .await;
    // Subscribing and unsubscribing during the outage answer at once.
    let started = Instant::now();
    within(STEP, "subscribe while down", b.subscribe("late"))
        .await
        .expect("subscribe while down");
    within(STEP, "unsubscribe while down", b.unsubscribe(&channel(0)))
        .await
        .expect("unsubscribe while down");
    let sub_while_down = started.elapsed();

    // Recovery on the same port.
    server.restart().await;
    let restarted = Instant::now();
    wait_status(&a, BrokerStatus::Up, "A up again").await;
    let a_up = restarted.elapsed();
    wait_status(&b, BrokerStatus::Up, "B up again").await;
    let b_up = restarted.elapsed();
    // `stream` flows to B again.
    let b_before = rec_b.count("stream");
    rec_b
        .wait("stream flowing again", |log| {
            log.get("stream").is_some_and(|v| v.len() >= b_before + 100)
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    let (published, failed, slowest) = within(STEP, "publisher", publisher)
        .await
        .expect("publisher task");
    // Every channel delivers again, except the one B left during the outage;
    // the one B joined during the outage delivers.
    every_channel_delivers(&a, &rec_b, 1, &[0]).await;
    let all_channels = restarted.elapsed();
    a.publish(publication("late", 7)).await.expect("publish");
    rec_b.wait_seq("late", 7).await;
    // A sentinel after everything: once both have it, nothing is in flight.
    a.publish(publication("stream", u64::MAX))
        .await
        .expect("publish");
    rec_a.wait_seq("stream", u64::MAX).await;
    rec_b.wait_seq("stream", u64::MAX).await;
    assert_eq!(rec_b.seqs(&channel(0)), [0], "delivered after unsubscribe");

    let stats_a = a.stats();
    let stats_b = b.stats();
    let got_a: Vec<u64> = rec_a
        .seqs("stream")
        .into_iter()
        .filter(|s| *s < published)
        .collect();
    let got_b: Vec<u64> = rec_b
        .seqs("stream")
        .into_iter()
        .filter(|s| *s < published)
        .collect();
    let mut unique_a = got_a.clone();
    unique_a.sort_unstable();
    unique_a.dedup();
    let inversions_a = got_a.windows(2).filter(|w| w[0] > w[1]).count();
    eprintln!(
        "outage: published {published} ({failed} failed, slowest publish {slowest:?}); \
         A got {} ({} unique, {inversions_a} out of order), B got {}; \
         {} sent while B was down; A {stats_a:?}; B {stats_b:?}",
        got_a.len(),
        unique_a.len(),
        got_b.len(),
        while_b_down.load(Ordering::Relaxed),
    );
    eprintln!(
        "timings: kill detected by both in {detected:?}; subscribe+unsubscribe while down \
         {sub_while_down:?}; after restart A up in {a_up:?}, B up in {b_up:?}, all \
         {CHANNELS} channels delivering in {all_channels:?}"
    );

    // Status transitions were seen and counted.
    assert_eq!(stats_a.reconnects, 1);
    assert_eq!(stats_b.reconnects, 1);
    // A publish never waited long, and none failed (A delivers locally when down).
    assert_eq!(failed, 0);
    assert!(
        slowest < Duration::from_secs(1),
        "a publish took {slowest:?}"
    );
    // Publications made while down were counted as such.
    assert!(stats_a.dropped_while_down >= 200, "{stats_a:?}");
    // A's own subscriber: each publication at most once, and every missing
    // one counted as possibly lost in flight.
    assert_eq!(unique_a.len(), got_a.len(), "duplicate delivery on A");
    assert!(
        got_a.len() as u64 + stats_a.lost_in_flight >= published,
        "A lost publications uncounted: got {} of {published}, {stats_a:?}",
        got_a.len()
    );
    // B: in order, each at most once; every missing one is counted by A
    // (down, in flight) or was sent while B itself was down.
    assert!(strictly_increasing(&got_b), "B out of order or duplicated");
    let missing_b = published - got_b.len() as u64;
    let accounted =
        stats_a.dropped_while_down + stats_a.lost_in_flight + while_b_down.load(Ordering::Relaxed);
    assert!(
        missing_b <= accounted,
        "B missed {missing_b}, only {accounted} accounted for: {stats_a:?}"
    );
    assert_eq!(stats_b.receive_dropped, 0);
    // B never published: nothing of its own can have been lost.
    assert_eq!(stats_b.lost_in_flight, 0, "{stats_b:?}");

    within(STEP, "shutdown", async {
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
    assert_eq!(a.status(), BrokerStatus::Down);
}

/// With `WhenDown::Fail`, a publish during an outage fails at once (and is
/// delivered nowhere), and a subscription made during the outage works
/// once NATS is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_when_down() {
    within(Duration::from_secs(60), "the whole test", async {
        let mut server = NatsServer::start().await;
        let options = NatsOptions::default()
            .with_prefix(random_prefix())
            .with_when_down(WhenDown::Fail);
        let a = broker(&server.url(), options).await;
        let rec = Recorder::start(&*a);
        a.subscribe("x").await.expect("subscribe");
        a.publish(publication("x", 1)).await.expect("publish");
        rec.wait_seq("x", 1).await;

        server.kill().await;
        wait_status(&a, BrokerStatus::Down, "down").await;
        let started = Instant::now();
        let err = a
            .publish(publication("x", 2))
            .await
            .expect_err("publish while down fails");
        let took = started.elapsed();
        assert!(took < Duration::from_millis(100), "failing took {took:?}");
        assert!(err.to_string().contains("unreachable"), "{err}");
        assert_eq!(a.stats().dropped_while_down, 1);
        within(STEP, "subscribe while down", a.subscribe("y"))
            .await
            .expect("subscribe while down");

        server.restart().await;
        wait_status(&a, BrokerStatus::Up, "up again").await;
        a.publish(publication("y", 3)).await.expect("publish");
        a.publish(publication("x", 4)).await.expect("publish");
        rec.wait_seq("y", 3).await;
        rec.wait_seq("x", 4).await;
        assert_eq!(rec.seqs("x"), [1, 4], "the failed publication surfaced");
        assert_eq!(a.stats().reconnects, 1);
        a.shutdown().await;
    })
    .await;
}

/// Connecting to nothing fails promptly instead of hanging.
#[tokio::test]
async fn connect_to_nothing_fails() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let started = Instant::now();
    let err = NatsBroker::connect(&format!("nats://127.0.0.1:{port}"), NatsOptions::default())
        .await
        .expect_err("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

/// Messages on a channel subject that are not publication envelopes of that
/// channel are dropped and counted; the channel keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_messages_are_dropped_and_counted() {
    within(Duration::from_secs(60), "the whole test", async {
        let server = NatsServer::start().await;
        let a = broker(
            &server.url(),
            NatsOptions::default().with_prefix(random_prefix()),
        )
        .await;
        let rec = Recorder::start(&*a);
        a.subscribe("x").await.expect("subscribe");
        let raw = async_nats::connect(server.url()).await.expect("raw client");
        let subject = a.subject_for("x");
        raw.publish(subject.clone(), "not json".into())
            .await
            .expect("raw publish");
        let other = publication("y", 9);
        raw.publish(subject, other.encode())
            .await
            .expect("raw publish");
        // A valid one last, on the same connection: NATS keeps one
        // connection's order, so once it arrives the others were handled.
        raw.publish(a.subject_for("x"), publication("x", 1).encode())
            .await
            .expect("raw publish");
        rec.wait_seq("x", 1).await;
        assert_eq!(rec.seqs("x"), [1]);
        assert_eq!(rec.count("y"), 0);
        assert_eq!(a.stats().receive_dropped, 2);
        a.shutdown().await;
    })
    .await;
}
