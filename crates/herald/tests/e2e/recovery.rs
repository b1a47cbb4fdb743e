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
        for s in subscribers {
            let (first, last, reconnects) = s.await.unwrap();
            assert_eq!(last, TOTAL + 1, "ended on the end marker");
            assert!(first <= 2, "subscribed before most publications ({first})");
            assert!(reconnects >= 10, "only {reconnects} reconnects");
        }
    })
    .await
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
