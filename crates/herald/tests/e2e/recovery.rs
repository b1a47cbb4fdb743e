//! Recovery on subscribe: missed publications before the reply, honest
//! `recovered: false`, no gap or duplicate across the switch to live, also
//! while publishers keep publishing; and gap repair on a node whose broker
//! lost messages.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use herald::ChannelOptions;
use serde_json::json;

use crate::common::*;
use crate::history::history;

async fn server() -> TestServer {
    TestServer::start(
        fixture()
            .namespace("chat", history(20_000))
            .namespace("tiny", history(3))
            .namespace(
                "norecover",
                ChannelOptions {
                    recover: false,
                    ..history(10)
                },
            ),
    )
    .await
}

#[tokio::test]
async fn missed_publications_arrive_before_the_reply_then_live_ones() {
    bounded(async {
        let server = server().await;
        let mut publisher = server.client().await;
        let mut c = server.client().await;
        let reply = c.subscribe_with("chat:r", None).await;
        let epoch = reply["data"]["epoch"].as_str().unwrap().to_owned();
        publisher.publish("chat:r", json!(1)).await;
        assert_eq!(c.recv_positioned().await.2, 1);
        c.close(1000, "away").await;
        for n in 2..=5 {
            publisher.publish("chat:r", json!(n)).await;
        }
        let mut c = server.client().await;
        let reply = c.subscribe_with("chat:r", Some((1, &epoch))).await;
        assert_eq!(
            reply["data"],
            json!({"offset": 5, "epoch": epoch, "recovered": true}),
            "{reply}"
        );
        // `request` kept the frames that came before the reply, in order.
        for n in 2..=5 {
            let (_, data, offset, e) = c.recv_positioned().await;
            assert_eq!(
                (offset, data.as_deref(), e.as_str()),
                (n, Some(&*n.to_string()), &*epoch)
            );
        }
        publisher.publish("chat:r", json!(6)).await;
        assert_eq!(c.recv_positioned().await.2, 6);
    })
    .await
}

#[tokio::test]
async fn recovery_is_refused_honestly() {
    bounded(async {
        let server = server().await;
        let mut publisher = server.client().await;
        for n in 1..=5 {
            publisher.publish("tiny:r", json!(n)).await;
        }
        let page = server
            .server
            .history("tiny:r", herald::HistoryQuery::default())
            .await
            .unwrap();
        let epoch = page.position.epoch.to_string();
        // Offset 2 is no longer kept (size 3): nothing from history.
        let mut c = server.client().await;
        let reply = c.subscribe_with("tiny:r", Some((1, &epoch))).await;
        assert_eq!(
            reply["data"],
            json!({"offset": 5, "epoch": epoch, "recovered": false})
        );
        // Another epoch.
        let reply = c.subscribe_with("chat:z", Some((3, "gone"))).await;
        assert_eq!(reply["data"]["recovered"], false, "{reply}");
        assert_eq!(reply["data"]["offset"], 0);
        // A namespace without recover.
        let reply = c.subscribe_with("norecover:z", Some((0, "x"))).await;
        assert_eq!(reply["data"]["recovered"], false, "{reply}");
        // Nothing was sent before those replies: the next frame is the
        // reply to this call.
        assert_eq!(c.call("echo", json!("next")).await, json!("next"));
        // Up to date: recovered with nothing to send.
        let reply = c.subscribe_with("tiny:r2", None).await;
        let e = reply["data"]["epoch"].as_str().unwrap().to_owned();
        c.close(1000, "").await;
        let mut c = server.client().await;
        let reply = c.subscribe_with("tiny:r2", Some((0, &e))).await;
        assert_eq!(
            reply["data"],
            json!({"offset": 0, "epoch": e, "recovered": true})
        );
    })
    .await
}

/// Reads publications until offset `until`, checking that every offset
/// arrives exactly once and in order from `from`.
async fn read_until(c: &mut Client, from: u64, until: u64) -> u64 {
    let mut next = from;
    while next <= until {
        let (_, _, offset, _) = c.recv_positioned().await;
        assert_eq!(offset, next, "gap, duplicate or reorder");
        next += 1;
    }
    next - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_publications_with_subscribers_coming_and_going() {
    bounded(async {
        const TOTAL: u64 = 10_000;
        let server = Arc::new(server().await);
        let publisher = {
            let server = server.clone();
            tokio::spawn(async move {
                let mut p = server.client().await;
                for n in 1..=TOTAL {
                    // Without cid: the publisher does not wait for acks, so
                    // publications keep flowing during every recovery.
                    p.send_json(
                        json!({"event": "#publish", "data": {"channel": "chat:storm", "data": n}}),
                    )
                    .await;
                    if n % 500 == 0 {
                        // An ack now and then keeps the publisher's own
                        // queue bounded.
                        p.publish("chat:other", json!(n)).await;
                    }
                }
                p.publish("chat:storm", json!("end")).await;
            })
        };
        let mut subscribers = Vec::new();
        // Rust clients: the server drops them now and then (the fixture's
        // disconnectMe); they come back and recover by themselves.
        let mut rust_clients = Vec::new();
        for s in 0..2u64 {
            let url = server.url();
            rust_clients.push(tokio::spawn(async move { rust_subscriber(&url, s).await }));
        }
        for s in 0..4u64 {
            let server = server.clone();
            subscribers.push(tokio::spawn(async move {
                let mut rng = s * 7919 + 1;
                let mut next_rand = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut c = server.client().await;
                let reply = c.subscribe_with("chat:storm", None).await;
                let epoch = reply["data"]["epoch"].as_str().unwrap().to_owned();
                let mut last = reply["data"]["offset"].as_u64().unwrap();
                let first = last + 1;
                let mut seen = HashSet::new();
                let mut reconnects = 0;
                loop {
                    // Read a random number of publications, then drop the
                    // connection and come back with recover.
                    let burst = 50 + next_rand() % 400;
                    let mut done = false;
                    for _ in 0..burst {
                        let (_, data, offset, e) = c.recv_positioned().await;
                        assert_eq!(e, epoch);
                        assert_eq!(
                            offset,
                            last + 1,
                            "subscriber {s}: gap or duplicate after {last}"
                        );
                        assert!(seen.insert(offset));
                        last = offset;
                        if data.as_deref() == Some("\"end\"") {
                            done = true;
                            break;
                        }
                    }
                    if done {
                        break;
                    }
                    c.close(1000, "").await;
                    reconnects += 1;
                    if next_rand() % 3 == 0 {
                        tokio::time::sleep(Duration::from_millis(next_rand() % 20)).await;
                    }
                    c = server.client().await;
                    let reply = c.subscribe_with("chat:storm", Some((last, &epoch))).await;
                    assert_eq!(reply["data"]["recovered"], true, "subscriber {s}: {reply}");
                }
                (first, last, reconnects)
            }));
        }
        publisher.await.unwrap();
        for c in rust_clients {
            let (last, drops) = c.await.unwrap();
            assert_eq!(last, TOTAL + 1, "ended on the end marker");
            assert!(drops >= 3, "only {drops} drops");
        }
        for s in subscribers {
            let (first, last, reconnects) = s.await.unwrap();
            assert_eq!(last, TOTAL + 1, "ended on the end marker");
            assert!(first <= 2, "subscribed before most publications ({first})");
            assert!(reconnects >= 10, "only {reconnects} reconnects");
        }
    })
    .await
}

/// A Rust client subscribed to `chat:storm` that the server disconnects
/// every few hundred publications: every offset must arrive once, in order,
/// with no gap. Returns the last offset and how many times it was dropped.
async fn rust_subscriber(url: &str, seed: u64) -> (u64, u32) {
    use futures_util::StreamExt as _;
    use herald_client::{Client, ReconnectPolicy};
    let client = Client::builder(url)
        .subscription_buffer(20_000)
        .reconnect(ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_millis(30),
            multiplier: 1.5,
            max_delay: Duration::from_millis(200),
        })
        .connect()
        .await
        .expect("connect");
    let mut sub = client.subscribe("chat:storm").await.expect("subscribe");
    let mut last = sub.position().map_or(0, |p| p.offset);
    let mut drops = 0;
    let mut next_drop = last + 300 + seed * 111;
    loop {
        let p = within("a publication (Rust client)", sub.next())
            .await
            .expect("stream open")
            .unwrap_or_else(|e| panic!("Rust client {seed}: {e:?} after {last}"));
        let offset = p.offset().expect("an offset");
        assert_eq!(
            offset,
            last + 1,
            "Rust client {seed}: gap or duplicate after {last}"
        );
        last = offset;
        if p.data == serde_json::json!("end") {
            break;
        }
        if offset >= next_drop {
            next_drop = offset + 700 + seed * 97;
            drops += 1;
            let c = client.clone();
            tokio::spawn(async move {
                let _ = c
                    .invoke("disconnectMe", &json!({"code": 4099, "reason": "storm"}))
                    .await;
            });
        }
    }
    client.close().await;
    (last, drops)
}

/// The memory broker, losing the deliveries this test tells it to lose (as
/// a networked broker does while it reconnects) and telling the node to
/// resync when asked.
struct LossyBroker {
    inner: herald::MemoryBroker,
    lose: Arc<Mutex<HashSet<u64>>>,
    sink: Arc<std::sync::OnceLock<herald::BrokerSink>>,
}

#[async_trait::async_trait]
impl herald::Broker for LossyBroker {
    fn name(&self) -> &'static str {
        "lossy"
    }
    fn start(&self, sink: herald::BrokerSink) {
        let lose = self.lose.clone();
        let _ = self.sink.set(sink.clone());
        self.inner.start(herald::BrokerSink::new(
            move |p: Arc<herald::Publication>| {
                let lost = p
                    .position
                    .as_ref()
                    .is_some_and(|q| lose.lock().remove(&q.offset));
                if !lost {
                    sink.deliver(p);
                }
            },
        ));
    }
    async fn subscribe(&self, channel: &str) -> Result<(), herald::BrokerError> {
        self.inner.subscribe(channel).await
    }
    async fn unsubscribe(&self, channel: &str) -> Result<(), herald::BrokerError> {
        self.inner.unsubscribe(channel).await
    }
    async fn publish(&self, p: Arc<herald::Publication>) -> Result<(), herald::BrokerError> {
        self.inner.publish(p).await
    }
    async fn publish_with_history(
        &self,
        channel: &str,
        data: Option<Box<serde_json::value::RawValue>>,
        policy: &herald::broker::HistoryPolicy,
    ) -> Result<herald::StreamPosition, herald::BrokerError> {
        self.inner.publish_with_history(channel, data, policy).await
    }
    async fn history(
        &self,
        channel: &str,
        policy: &herald::broker::HistoryPolicy,
        query: &herald::HistoryQuery,
    ) -> Result<herald::HistoryPage, herald::BrokerError> {
        self.inner.history(channel, policy, query).await
    }
}

#[tokio::test]
async fn a_node_repairs_gaps_its_broker_left_without_the_client_noticing() {
    bounded(async {
        let lose = Arc::new(Mutex::new(HashSet::new()));
        let sink = Arc::new(std::sync::OnceLock::new());
        let server = TestServer::start(
            fixture()
                .broker(LossyBroker {
                    inner: herald::MemoryBroker::new(),
                    lose: lose.clone(),
                    sink: sink.clone(),
                })
                .namespace("chat", history(100))
                .namespace("tiny", history(3)),
        )
        .await;
        let mut c = server.client().await;
        c.subscribe_with("chat:g", None).await;
        let mut p = server.client().await;
        for n in 1..=2 {
            p.publish("chat:g", json!(n)).await;
        }
        assert_eq!(read_until(&mut c, 1, 2).await, 2);
        // 3 and 4 are lost on the way to the node; 5 reveals the gap.
        lose.lock().extend([3, 4]);
        for n in 3..=5 {
            p.publish("chat:g", json!(n)).await;
        }
        assert_eq!(read_until(&mut c, 3, 5).await, 5);
        // 6 is lost and nothing follows: the broker's resync (a reconnect)
        // repairs it.
        lose.lock().insert(6);
        p.publish("chat:g", json!(6)).await;
        sink.get().expect("started").resync("chat:g");
        assert_eq!(read_until(&mut c, 6, 6).await, 6);
        p.publish("chat:g", json!(7)).await;
        assert_eq!(read_until(&mut c, 7, 7).await, 7);

        // A gap the history cannot fill (size 3): the subscriber is told,
        // then the stream goes on.
        c.subscribe_with("tiny:g", None).await;
        p.publish("tiny:g", json!(1)).await;
        assert_eq!(c.recv_positioned().await.2, 1);
        lose.lock().extend(2..=6);
        for n in 2..=7 {
            p.publish("tiny:g", json!(n)).await;
        }
        let notice = c.expect_event("#herald/unrecoverable").await;
        assert_eq!(notice["data"]["channel"], "tiny:g");
        assert_eq!(notice["data"]["offset"], 4, "{notice}");
        assert_eq!(read_until(&mut c, 5, 7).await, 7);
    })
    .await
}
