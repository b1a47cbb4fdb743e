//! History and presence through faults: a private `nats-server` with
//! JetStream (never the shared one) is SIGKILLed and restarted, with its
//! store or with an empty one; and presence of a broker that vanishes.
//!
//! Checked: publications with history keep gapless offsets across a
//! restart, fail fast while NATS is down, and every node is asked to
//! resync once it is back; a server that lost its store yields a new epoch
//! (and a new presence bucket); presence entries nobody refreshes expire.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{NatsServer, Recorder, STEP, broker, random_prefix, shared_url, wait_status, within};
use herald::broker::{ClientInfo, HistoryPolicy, HistoryQuery, PresenceRecord, StreamPosition};
use herald::{Broker, BrokerStatus};
use herald_broker_nats::NatsOptions;
use serde_json::value::RawValue;
use tokio::sync::watch;

fn data(seq: u64) -> Option<Box<RawValue>> {
    Some(RawValue::from_string(format!("{{\"seq\":{seq}}}")).expect("JSON"))
}

fn policy(size: usize, ttl: Duration) -> HistoryPolicy {
    HistoryPolicy {
        size,
        ttl,
        namespace: Arc::from("ns"),
    }
}

fn latest(limit: usize) -> HistoryQuery {
    HistoryQuery { since: None, limit }
}

/// What the publisher saw: acknowledged positions, failures while the
/// broker was down (and the slowest of them), other failures.
#[derive(Debug, Default, Clone)]
struct Published {
    ok: Vec<StreamPosition>,
    failed_down: u64,
    slowest_down: Duration,
    failed_up: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_nats_restart() {
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
    let p = policy(100_000, Duration::from_secs(300));
    b.subscribe("h").await.expect("subscribe");

    // A publishes with history every millisecond until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (progress, mut seen) = watch::channel(Published::default());
    let publisher = tokio::spawn({
        let (a, stop, p) = (a.clone(), stop.clone(), p.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                seq += 1;
                let down = a.status() == BrokerStatus::Down;
                let started = Instant::now();
                let result = a.publish_with_history("h", data(seq), &p).await;
                let took = started.elapsed();
                progress.send_modify(|s| match result {
                    Ok(pos) => s.ok.push(pos),
                    Err(e) if down => {
                        assert!(e.to_string().contains("unreachable"), "{e}");
                        s.failed_down += 1;
                        s.slowest_down = s.slowest_down.max(took);
                    }
                    // Across the transitions: timeouts, broken pipes.
                    Err(_) => s.failed_up += 1,
                });
            }
        }
    });
    rec_b
        .wait("history flowing", |log| {
            log.get("h").is_some_and(|v| v.len() >= 100)
        })
        .await;
    let before = seen.borrow().ok.len();

    server.kill().await;
    wait_status(&a, BrokerStatus::Down, "A down").await;
    wait_status(&b, BrokerStatus::Down, "B down").await;
    within(STEP, "publications failing while down", async {
        seen.wait_for(|s| s.failed_down >= 50)
            .await
            .expect("publisher alive")
    })
    .await;

    server.restart().await;
    let restarted = Instant::now();
    wait_status(&a, BrokerStatus::Up, "A up again").await;
    wait_status(&b, BrokerStatus::Up, "B up again").await;
    // Both nodes are told to fetch what they may have missed.
    rec_b.wait_resyncs_all(1).await;
    rec_a.wait_resyncs_all(1).await;
    let resynced = restarted.elapsed();
    let b_before = rec_b.count("h");
    rec_b
        .wait("history flowing again", |log| {
            log.get("h").is_some_and(|v| v.len() >= b_before + 100)
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    within(STEP, "publisher", publisher)
        .await
        .expect("publisher task");
    let published = seen.borrow().clone();

    // The store: one run of offsets without holes, ending with the last
    // acknowledged publication.
    let page = b.history("h", &p, &latest(100_000)).await.expect("read");
    let offsets: Vec<u64> = page
        .publications
        .iter()
        .map(|p| p.position.as_ref().expect("position").offset)
        .collect();
    let last_ok = published
        .ok
        .last()
        .expect("publications acknowledged")
        .clone();
    assert_eq!(
        page.position, last_ok,
        "the last acknowledged one is the top"
    );
    assert_eq!(
        offsets,
        (1..=page.position.offset).collect::<Vec<_>>(),
        "holes or duplicates in the history"
    );
    // Every acknowledged publication of the final epoch is in it.
    let epochs: std::collections::BTreeSet<_> =
        published.ok.iter().map(|p| p.epoch.clone()).collect();
    for pos in published
        .ok
        .iter()
        .filter(|p| p.epoch == page.position.epoch)
    {
        assert!(
            offsets.binary_search(&pos.offset).is_ok(),
            "{pos:?} missing"
        );
    }
    // Acknowledged offsets count up without holes (a publication that
    // failed uncertainly may have been stored: then it fills the hole in
    // the history, checked above).
    assert!(
        published
            .ok
            .windows(2)
            .all(|w| w[0].epoch != w[1].epoch || w[1].offset > w[0].offset),
        "acknowledged offsets went backwards"
    );
    // B saw them live in order (missing only what went by during the
    // outage, which the resync is for).
    let live = rec_b.positions("h");
    assert!(
        live.windows(2)
            .all(|w| w[0].epoch != w[1].epoch || w[1].offset > w[0].offset),
        "B saw offsets out of order"
    );
    assert!(
        published.slowest_down < Duration::from_millis(100),
        "{published:?}"
    );
    eprintln!(
        "history restart: {} acknowledged ({before} before the kill), {} failed while down \
         (slowest {:?}), {} failed across transitions, epochs {epochs:?}, top {:?}, \
         resync_all {resynced:?} after the restart; A {:?}; B {:?}",
        published.ok.len(),
        published.failed_down,
        published.slowest_down,
        published.failed_up,
        page.position,
        a.stats(),
        b.stats(),
    );
    assert!(a.stats().resyncs >= 1 && b.stats().resyncs >= 1);
    within(STEP, "shutdown", async {
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_its_store_gives_a_new_epoch() {
    within(Duration::from_secs(60), "the whole test", async {
        let mut server = NatsServer::start().await;
        let options = NatsOptions::default().with_prefix(random_prefix());
        let a = broker(&server.url(), options.clone()).await;
        let b = broker(&server.url(), options).await;
        let _ra = Recorder::start(&*a);
        let _rb = Recorder::start(&*b);
        let p = policy(100, Duration::from_secs(300));
        for seq in 1..=3 {
            a.publish_with_history("c", data(seq), &p)
                .await
                .expect("publish");
        }
        let before = b.history("c", &p, &latest(10)).await.expect("read");
        assert_eq!(before.position.offset, 3);
        let ttl = Duration::from_secs(60);
        a.presence_add(&[record("c", "s1")], ttl)
            .await
            .expect("presence");
        assert_eq!(b.presence("c").await.expect("presence").len(), 1);

        server.kill().await;
        wait_status(&a, BrokerStatus::Down, "A down").await;
        wait_status(&b, BrokerStatus::Down, "B down").await;
        let err = b
            .history("c", &p, &latest(10))
            .await
            .expect_err("no history while down");
        assert!(err.to_string().contains("unreachable"), "{err}");
        server.restart_fresh().await;
        wait_status(&a, BrokerStatus::Up, "A up again").await;
        wait_status(&b, BrokerStatus::Up, "B up again").await;

        // The history is gone: a new epoch at offset 0, the same on both.
        let after = b.history("c", &p, &latest(10)).await.expect("read");
        assert_ne!(after.position.epoch, before.position.epoch);
        assert_eq!(after.position.offset, 0);
        assert!(after.publications.is_empty());
        assert!(!after.recovers(&before.position));
        let pos = a
            .publish_with_history("c", data(4), &p)
            .await
            .expect("publish");
        assert_eq!(pos, StreamPosition::new(1, after.position.epoch.clone()));
        // Presence too: nothing left, and the bucket comes back on use.
        assert!(b.presence("c").await.expect("presence").is_empty());
        a.presence_add(&[record("c", "s2")], ttl)
            .await
            .expect("presence again");
        let list = b.presence("c").await.expect("presence");
        assert_eq!(list.keys().collect::<Vec<_>>(), ["s2"]);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

fn record(channel: &str, client: &str) -> PresenceRecord {
    PresenceRecord {
        channel: Arc::from(channel),
        client: Arc::from(client),
        info: Arc::new(ClientInfo {
            user: Some(format!("user-{client}")),
            info: None,
        }),
    }
}

/// A node that disappears without cleaning up (dropped, no shutdown, no
/// `presence_remove`): its entries expire after the ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_of_a_vanished_node_expires() {
    within(Duration::from_secs(60), "the whole test", async {
        let prefix = random_prefix();
        let options = NatsOptions::default().with_prefix(prefix);
        let a = broker(&shared_url(), options.clone()).await;
        let b = broker(&shared_url(), options).await;
        let ttl = Duration::from_millis(1500);
        let records: Vec<_> = (0..500).map(|i| record("room", &format!("s{i}"))).collect();
        let started = Instant::now();
        a.presence_add(&records, ttl).await.expect("presence add");
        let wrote = started.elapsed();
        let started = Instant::now();
        assert_eq!(b.presence("room").await.expect("presence").len(), 500);
        let read = started.elapsed();
        assert_eq!(b.presence_stats("room").await.expect("stats").users, 500);
        drop(a);
        // No signal exists for an expiry: poll, bounded.
        let deadline = Instant::now() + ttl * 3 + Duration::from_secs(5);
        loop {
            tokio::time::sleep(ttl / 4).await;
            let left = b.presence("room").await.expect("presence").len();
            if left == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{left} entries never expired");
        }
        let expired = started.elapsed();
        assert!(expired >= ttl, "expired after {expired:?}, before the ttl");
        eprintln!(
            "presence: 500 entries written in {wrote:?}, read in {read:?}, gone {expired:?} \
             after the write"
        );
        common::delete_jetstream_state(&shared_url(), &b, &[]).await;
        b.shutdown().await;
    })
    .await;
}

/// A short read walks back from the last message; when the chain breaks
/// (here a message deleted by hand) it falls back to a scan and returns
/// what is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_reads_fall_back_to_a_scan_when_the_chain_breaks() {
    within(Duration::from_secs(60), "the whole test", async {
        let prefix = random_prefix();
        let a = broker(
            &shared_url(),
            NatsOptions::default().with_prefix(prefix.clone()),
        )
        .await;
        let _r = Recorder::start(&*a);
        let p = HistoryPolicy {
            namespace: Arc::from("walk"),
            ..policy(100, Duration::from_secs(60))
        };
        for seq in 1..=10 {
            a.publish_with_history("c", data(seq), &p)
                .await
                .expect("publish");
        }
        let since = |offset: u64, epoch: &str| HistoryQuery {
            since: Some(StreamPosition::new(offset, epoch)),
            limit: 100,
        };
        let offsets = |page: &herald::broker::HistoryPage| -> Vec<u64> {
            page.publications
                .iter()
                .map(|p| p.position.as_ref().expect("position").offset)
                .collect()
        };
        let top = a.history("c", &p, &latest(0)).await.expect("read").position;
        let page = a
            .history("c", &p, &since(6, &top.epoch))
            .await
            .expect("read");
        assert_eq!(offsets(&page), [7, 8, 9, 10]);

        // Delete offset 8 behind the broker's back.
        let client = async_nats::connect(shared_url()).await.expect("raw client");
        let js = async_nats::jetstream::new(client);
        let stream = js
            .get_stream(a.history_stream("walk"))
            .await
            .expect("stream");
        let mut m = stream
            .direct_get_last_for_subject(format!("{prefix}.h.walk.c"))
            .await
            .expect("last");
        for _ in 0..2 {
            let previous: u64 = m
                .headers
                .get("Herald-Previous")
                .expect("previous")
                .as_str()
                .parse()
                .expect("a sequence");
            m = stream.direct_get(previous).await.expect("previous message");
        }
        assert_eq!(
            m.headers.get("Herald-Offset").map(|v| v.as_str()),
            Some("8")
        );
        stream.delete_message(m.sequence).await.expect("delete");

        let page = a
            .history("c", &p, &since(6, &top.epoch))
            .await
            .expect("read");
        assert_eq!(offsets(&page), [7, 9, 10], "what is stored, by a scan");
        let page = a
            .history("c", &p, &since(8, &top.epoch))
            .await
            .expect("read");
        assert_eq!(
            offsets(&page),
            [9, 10],
            "a walk that does not reach the hole"
        );
        common::delete_jetstream_state(&shared_url(), &a, &["walk".to_owned()]).await;
        a.shutdown().await;
    })
    .await;
}
