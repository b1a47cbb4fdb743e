//! History and resync through faults: a Redis restarted without
//! persistence starts every channel in a new epoch; a killed subscriber
//! connection is resubscribed, `resync` is reported for every channel once
//! it flows again, and offsets stay gapless; scripts a server lost are
//! loaded again and failed scripts are counted; and the envelope the
//! publish script writes is byte for byte what `Publication::encode`
//! writes.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use herald::broker::{HistoryPolicy, HistoryQuery, StreamPosition};
use herald::{Broker, BrokerSink, BrokerStatus, Publication};
use herald_broker_redis::RedisBroker;
use herald_broker_redis::keys::{ChannelKeys, redis_channel};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

fn policy() -> HistoryPolicy {
    HistoryPolicy {
        size: 1000,
        ttl: Duration::from_secs(60),
        namespace: Arc::from(""),
    }
}

fn data(n: u64) -> Option<Box<RawValue>> {
    Some(RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap())
}

fn latest(limit: usize) -> HistoryQuery {
    HistoryQuery { since: None, limit }
}

/// A broker whose sink records deliveries and resyncs.
struct Recorded {
    broker: Arc<RedisBroker>,
    delivered: mpsc::UnboundedReceiver<Arc<Publication>>,
    resynced: mpsc::UnboundedReceiver<String>,
}

async fn recorded(url: &str, prefix: &str) -> Recorded {
    let broker = Arc::new(
        RedisBroker::connect(&[url.to_owned()], fast_options(prefix))
            .await
            .expect("connect"),
    );
    let (tx, delivered) = mpsc::unbounded_channel();
    let (rtx, resynced) = mpsc::unbounded_channel();
    broker.start(BrokerSink::with_resync(
        move |p| {
            let _ = tx.send(p);
        },
        move |ch| {
            let _ = rtx.send(ch.unwrap_or("*").to_owned());
        },
    ));
    Recorded {
        broker,
        delivered,
        resynced,
    }
}

/// Retries `f` (at most 3 times, no wait: each failure drops the broken
/// publishing connection and the next call reconnects).
async fn retried<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, herald::BrokerError>>,
{
    let mut last = None;
    for _ in 0..3 {
        match f().await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
    }
    panic!("failed three times: {last:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_persistence_starts_a_new_epoch() {
    init_tracing();
    let mut server = RedisServer::start().await;
    let mut node = recorded(&server.url(), &random_prefix()).await;
    let broker = node.broker.clone();
    let p = policy();
    broker.subscribe("news").await.unwrap();
    let mut old = None;
    for n in 1..=3 {
        old = Some(
            broker
                .publish_with_history("news", data(n), &p)
                .await
                .unwrap(),
        );
    }
    let old = old.unwrap();
    assert_eq!(old.offset, 3);
    for _ in 0..3 {
        within(STEP, "delivery", node.delivered.recv())
            .await
            .unwrap();
    }

    let mut status = broker.watch_status();
    server.kill();
    wait_status(&mut status, BrokerStatus::Down, STEP).await;
    server.restart().await;
    wait_status(&mut status, BrokerStatus::Up, STEP).await;

    let query = latest(10);
    let page = retried(|| broker.history("news", &p, &query)).await;
    assert_ne!(page.position.epoch, old.epoch, "the old epoch is gone");
    assert_eq!(page.position.offset, 0);
    assert!(page.publications.is_empty());
    let since_old = broker
        .history(
            "news",
            &p,
            &HistoryQuery {
                since: Some(old.clone()),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(
        !since_old.recovers(&old),
        "a client at the old epoch cannot recover"
    );
    // The subscription came back: resync reported, the channel flows.
    let resynced = within(STEP, "resync", node.resynced.recv()).await.unwrap();
    assert_eq!(resynced, "news");
    let next = broker
        .publish_with_history("news", data(4), &p)
        .await
        .unwrap();
    assert_eq!(next, StreamPosition::new(1, page.position.epoch.clone()));
    let got = within(STEP, "delivery", node.delivered.recv())
        .await
        .unwrap();
    assert_eq!(got.position.as_ref(), Some(&next));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscriber_connection_resyncs_and_offsets_stay_gapless() {
    init_tracing();
    let server = RedisServer::start().await;
    let prefix = random_prefix();
    let publisher = recorded(&server.url(), &prefix).await;
    let mut node = recorded(&server.url(), &prefix).await;
    let channels: Vec<String> = (0..5).map(|i| format!("feed/{i}")).collect();
    for ch in &channels {
        node.broker.subscribe(ch).await.unwrap();
    }
    let p = policy();
    // A publisher keeps publishing on every channel until told to stop.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let broker = publisher.broker.clone();
        let channels = channels.clone();
        let p = p.clone();
        tokio::spawn(async move {
            let mut positions: HashMap<String, Vec<StreamPosition>> = HashMap::new();
            let mut n = 0;
            let mut last_round = false;
            loop {
                n += 1;
                for ch in &channels {
                    let pos = broker
                        .publish_with_history(ch, data(n), &p)
                        .await
                        .expect("publishing is unaffected by the subscriber's fault");
                    positions.entry(ch.clone()).or_default().push(pos);
                }
                if last_round {
                    return positions;
                }
                // Once told (every channel is subscribed again), one more
                // full round, so every channel's last publication is made
                // while it is subscribed.
                last_round = n >= 20 && stopped.try_recv().is_ok();
                tokio::task::yield_now().await;
            }
        })
    };
    // Some publications flow before the fault.
    within(STEP, "first delivery", node.delivered.recv())
        .await
        .unwrap();
    let mut c = server.conn().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(killed >= 1, "killed {killed} subscriber connections");
    let mut resynced = HashMap::<String, usize>::new();
    while resynced.len() < channels.len() {
        let ch = within(STEP, "a resync per channel", node.resynced.recv())
            .await
            .unwrap();
        *resynced.entry(ch).or_default() += 1;
    }
    stop.send(()).unwrap();
    let positions = within(STEP, "the publisher", task).await.unwrap();

    for ch in &channels {
        let offsets: Vec<u64> = positions[ch].iter().map(|p| p.offset).collect();
        let n = offsets.len() as u64;
        assert_eq!(offsets, (1..=n).collect::<Vec<_>>(), "{ch}: holes");
        let epoch = &positions[ch][0].epoch;
        assert!(positions[ch].iter().all(|p| &p.epoch == epoch));
        // The history holds every offset: the gap is repairable.
        let page = node.broker.history(ch, &p, &latest(10_000)).await.unwrap();
        let kept: Vec<u64> = page
            .publications
            .iter()
            .map(|x| x.position.as_ref().unwrap().offset)
            .collect();
        assert_eq!(kept, (1..=n).collect::<Vec<_>>(), "{ch}: history");
        assert_eq!(page.position, StreamPosition::new(n, epoch.clone()));
    }
    // Deliveries: per channel, strictly increasing offsets (a gap at the
    // fault at most), ending with the last one.
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut done = 0;
    while done < channels.len() {
        let got = within(STEP, "deliveries", node.delivered.recv())
            .await
            .unwrap();
        let offset = got.position.as_ref().unwrap().offset;
        let prev = last.insert(got.channel.to_string(), offset).unwrap_or(0);
        assert!(offset > prev, "{}: {offset} after {prev}", got.channel);
        if offset == positions[&*got.channel].len() as u64 {
            done += 1;
        }
    }
    assert!(
        resynced.values().all(|n| *n == 1),
        "one resync per channel: {resynced:?}"
    );
    assert!(node.resynced.try_recv().is_err(), "no further resync");
    assert!(node.broker.stats().reconnects >= 1);
    assert_eq!(node.broker.stats().script_errors, 0);
    publisher.broker.shutdown().await;
    node.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_envelope_is_what_publication_encode_writes() {
    init_tracing();
    let prefix = random_prefix();
    let url = "redis://127.0.0.1:6379";
    let node = recorded(url, &prefix).await;
    let client = redis::Client::open(url).unwrap();
    let mut pubsub = within(STEP, "pubsub connection", client.get_async_pubsub())
        .await
        .unwrap();
    let long = format!("\"{}\"", "x".repeat(10_000));
    let cases: [(&str, Option<&str>); 5] = [
        ("room/1", Some(r#"{"a":[1,2]}"#)),
        ("é|{x}%", Some(r#""pipe|inside""#)),
        ("", Some("null")),
        ("no-data", None),
        ("long", Some(&long)),
    ];
    for (ch, _) in &cases {
        pubsub.subscribe(redis_channel(&prefix, ch)).await.unwrap();
    }
    let p = policy();
    let mut expected = Vec::new();
    for (ch, json) in &cases {
        let raw = json.map(|j| RawValue::from_string(j.to_owned()).unwrap());
        let pos = node
            .broker
            .publish_with_history(ch, raw.clone(), &p)
            .await
            .unwrap();
        assert_eq!(pos.offset, 1);
        expected.push(Publication::at(*ch, raw, Some(pos)));
    }
    let mut messages = pubsub.on_message();
    for want in expected {
        let msg = within(STEP, "the script's message", messages.next())
            .await
            .unwrap();
        assert_eq!(
            msg.get_channel_name().as_bytes(),
            redis_channel(&prefix, &want.channel).as_bytes()
        );
        let payload = msg.get_payload_bytes();
        assert_eq!(
            payload,
            &want.encode()[..],
            "byte-identical envelope for {:?}",
            want.channel
        );
        let got = Publication::decode(payload).unwrap();
        assert_eq!(got.frame, want.frame);
        assert_eq!(got.position, want.position);
        assert_eq!(got.channel, want.channel);
    }
    node.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_scripts_reload_and_script_failures_are_counted() {
    init_tracing();
    let server = RedisServer::start().await;
    let prefix = random_prefix();
    let node = recorded(&server.url(), &prefix).await;
    let broker = node.broker.clone();
    let p = policy();
    let first = broker.publish_with_history("s", data(1), &p).await.unwrap();
    let mut c = server.conn().await;
    // A server that lost its scripts (restarted, failed over, flushed)
    // gets them again on the next call.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut c)
        .await
        .unwrap();
    let second = broker.publish_with_history("s", data(2), &p).await.unwrap();
    assert_eq!(second, StreamPosition::new(2, first.epoch.clone()));
    let page = broker.history("s", &p, &latest(10)).await.unwrap();
    assert_eq!(page.publications.len(), 2);
    assert_eq!(broker.stats().script_errors, 0);

    // A foreign value where the channel's meta should be: the script
    // fails, the publisher gets an error, both counters count it.
    let meta = ChannelKeys::new(&prefix, "s").meta;
    let _: () = redis::cmd("SET")
        .arg(&meta)
        .arg("foreign")
        .query_async(&mut c)
        .await
        .unwrap();
    let before = broker.stats();
    assert!(broker.publish_with_history("s", data(3), &p).await.is_err());
    assert!(broker.history("s", &p, &latest(10)).await.is_err());
    let after = broker.stats();
    assert_eq!(after.script_errors, before.script_errors + 2);
    assert_eq!(after.publish_errors, before.publish_errors + 1);
    // Once the key is gone, the channel starts a new epoch.
    let _: () = redis::cmd("DEL")
        .arg(&meta)
        .query_async(&mut c)
        .await
        .unwrap();
    let next = broker.publish_with_history("s", data(4), &p).await.unwrap();
    assert_eq!(next.offset, 1);
    assert_ne!(next.epoch, first.epoch);
    broker.shutdown().await;
}
