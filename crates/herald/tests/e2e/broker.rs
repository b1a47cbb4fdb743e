//! The broker contract: a node asks its broker for a channel once, when the
//! channel gets its first local subscriber, and lets it go once, when the
//! last one leaves (unsubscribe, kickOut or socket close).

use std::sync::Arc;

use async_trait::async_trait;
use herald::{Broker, BrokerError, BrokerSink, MemoryBroker, Publication};
use serde_json::json;
use tokio::sync::mpsc;

use crate::common::*;

/// A [`MemoryBroker`] that reports every subscribe and unsubscribe.
struct RecordingBroker {
    inner: MemoryBroker,
    calls: mpsc::UnboundedSender<String>,
}

impl RecordingBroker {
    fn record(&self, call: &str, channel: &str) {
        // Herald's own channels (cluster control, per-user delivery) are
        // not client channels: this contract is about the latter.
        if !channel.starts_with("#herald/") {
            let _ = self.calls.send(format!("{call} {channel}"));
        }
    }
}

#[async_trait]
impl Broker for RecordingBroker {
    fn name(&self) -> &'static str {
        "recording"
    }

    fn start(&self, sink: BrokerSink) {
        self.inner.start(sink);
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.record("subscribe", channel);
        self.inner.subscribe(channel).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.record("unsubscribe", channel);
        self.inner.unsubscribe(channel).await
    }

    async fn publish(&self, publication: Arc<Publication>) -> Result<(), BrokerError> {
        self.inner.publish(publication).await
    }
}

async fn recording_server() -> (TestServer, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let broker = RecordingBroker {
        inner: MemoryBroker::new(),
        calls: tx,
    };
    (TestServer::start(fixture().broker(broker)).await, rx)
}

/// The broker calls made so far. Subscribe and unsubscribe acks are sent
/// after the broker call returns, so after an ack this is complete.
fn drain(calls: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    std::iter::from_fn(|| calls.try_recv().ok()).collect()
}

#[tokio::test]
async fn broker_subscribes_once_per_channel_and_unsubscribes_after_the_last_subscriber() {
    bounded(async {
        let (server, mut calls) = recording_server().await;
        let mut a = server.client().await;
        let mut b = server.client().await;

        a.subscribe("x").await;
        assert_eq!(drain(&mut calls), ["subscribe x"]);
        b.subscribe("x").await;
        a.subscribe("x").await; // already subscribed
        assert_eq!(drain(&mut calls), Vec::<String>::new());

        // Publications flow through the broker to both.
        let mut publisher = server.client().await;
        publisher.publish("x", json!(1)).await;
        assert_eq!(Client::publication(&a.recv().await).0, "x");
        assert_eq!(Client::publication(&b.recv().await).0, "x");

        a.request("#unsubscribe", Some(json!("x"))).await;
        assert_eq!(drain(&mut calls), Vec::<String>::new());
        b.request("#unsubscribe", Some(json!("x"))).await;
        assert_eq!(drain(&mut calls), ["unsubscribe x"]);
        assert_eq!(server.server.channel_count(), 0);

        // A kickOut of the last subscriber lets the channel go too.
        a.subscribe("x").await;
        assert_eq!(drain(&mut calls), ["subscribe x"]);
        a.call("kick", json!({"channel": "x", "message": "out"}))
            .await;
        assert_eq!(drain(&mut calls), ["unsubscribe x"]);
    })
    .await
}

#[tokio::test]
async fn closing_the_last_subscriber_unsubscribes_the_broker_once() {
    bounded(async {
        let (server, mut calls) = recording_server().await;
        let mut a = server.client().await;
        let mut b = server.client().await;
        a.subscribe("shared").await;
        a.subscribe("only-a").await;
        b.subscribe("shared").await;
        let mut subscribed = drain(&mut calls);
        subscribed.sort();
        assert_eq!(subscribed, ["subscribe only-a", "subscribe shared"]);

        // A clean close: only a's own channel goes.
        a.close(1000, "").await;
        eventually("a's task to finish", || server.server.sockets().len() == 1).await;
        assert_eq!(drain(&mut calls), ["unsubscribe only-a"]);

        // An abrupt end (TCP dropped, no close frame): the last subscriber
        // of "shared" is gone.
        drop(b);
        eventually("b's task to finish", || server.server.sockets().is_empty()).await;
        assert_eq!(drain(&mut calls), ["unsubscribe shared"]);
        assert_eq!(server.server.channel_count(), 0);
    })
    .await
}

#[tokio::test]
async fn concurrent_subscribers_reach_the_broker_once_each_way() {
    const SOCKETS: usize = 20;
    bounded(async {
        let (server, mut calls) = recording_server().await;
        let mut clients = Vec::new();
        for _ in 0..SOCKETS {
            clients.push(server.client().await);
        }
        // Everyone subscribes at once...
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    c.subscribe("race").await;
                    c
                })
            })
            .collect();
        let mut clients = Vec::new();
        for t in tasks {
            clients.push(t.await.unwrap());
        }
        assert_eq!(drain(&mut calls), ["subscribe race"]);
        assert_eq!(server.server.subscriber_count("race"), SOCKETS);

        // ...and everyone leaves at once.
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    let reply = c.request("#unsubscribe", Some(json!("race"))).await;
                    assert!(reply.get("error").is_none(), "{reply}");
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(drain(&mut calls), ["unsubscribe race"]);
        assert_eq!(server.server.channel_count(), 0);
    })
    .await
}
