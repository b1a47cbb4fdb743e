//! A conformance suite for [`herald::Broker`] implementations.
//!
//! Every broker (memory, Redis, sharded Redis, Redis Cluster, NATS) must
//! behave the same towards the registry. These checks drive two broker
//! instances as two nodes, with no server around them, through the trait
//! only:
//!
//! * a publication from node A reaches node B exactly once, in publish order;
//! * a node that subscribed also receives its own publications (the registry
//!   delivers local subscribers only from the broker);
//! * after `unsubscribe` a node receives nothing more on that channel, while
//!   other channels keep flowing;
//! * many channels at once each keep their own order.
//!
//! A broker crate calls [`run_all`] from its tests with a factory that makes
//! a fresh, connected broker per node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald::{Broker, BrokerSink, Publication};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

/// One node's view: a broker and the publications its sink received.
pub struct Node {
    /// The broker under test.
    pub broker: Arc<dyn Broker>,
    /// Publications delivered to this node, in delivery order.
    pub received: mpsc::UnboundedReceiver<Arc<Publication>>,
}

impl Node {
    /// Starts `broker` with a sink that records deliveries.
    pub fn start(broker: Arc<dyn Broker>) -> Self {
        let (tx, received) = mpsc::unbounded_channel();
        broker.start(BrokerSink::new(move |p| {
            let _ = tx.send(p);
        }));
        Self { broker, received }
    }

    /// The next delivery, waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Arc<Publication>> {
        tokio::time::timeout(timeout, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

fn publication(channel: &str, seq: u64) -> Arc<Publication> {
    let raw = RawValue::from_string(format!("{{\"seq\":{seq}}}")).expect("valid JSON");
    Arc::new(Publication::new(channel, Some(raw)))
}

fn seq_of(p: &Publication) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(p.data.as_ref().expect("data").get()).expect("JSON");
    v["seq"].as_u64().expect("seq")
}

const WAIT: Duration = Duration::from_secs(10);

/// A publication from A reaches B once, in order; A gets its own when
/// subscribed.
pub async fn cross_node_in_order(a: &mut Node, b: &mut Node, channel: &str) {
    b.broker.subscribe(channel).await.expect("B subscribes");
    a.broker.subscribe(channel).await.expect("A subscribes");
    const N: u64 = 500;
    for seq in 0..N {
        a.broker
            .publish(publication(channel, seq))
            .await
            .expect("A publishes");
    }
    for node in [&mut *b, &mut *a] {
        for expected in 0..N {
            let p = node
                .next(WAIT)
                .await
                .unwrap_or_else(|| panic!("publication {expected} on {channel} not delivered"));
            assert_eq!(&*p.channel, channel);
            assert_eq!(seq_of(&p), expected, "out of order or duplicated");
            assert!(p.frame.starts_with(b"{\"event\":\"#publish\""));
        }
    }
    a.broker.unsubscribe(channel).await.expect("A unsubscribes");
    b.broker.unsubscribe(channel).await.expect("B unsubscribes");
}

/// After unsubscribe nothing more arrives on that channel; a sentinel channel
/// proves deliveries still flow.
pub async fn unsubscribe_stops_delivery(a: &mut Node, b: &mut Node, channel: &str, sentinel: &str) {
    b.broker.subscribe(channel).await.expect("subscribe");
    b.broker
        .subscribe(sentinel)
        .await
        .expect("subscribe sentinel");
    a.broker
        .publish(publication(channel, 1))
        .await
        .expect("publish");
    let p = b.next(WAIT).await.expect("first delivery");
    assert_eq!(&*p.channel, channel);
    b.broker.unsubscribe(channel).await.expect("unsubscribe");
    a.broker
        .publish(publication(channel, 2))
        .await
        .expect("publish");
    a.broker
        .publish(publication(sentinel, 3))
        .await
        .expect("publish sentinel");
    let p = b.next(WAIT).await.expect("sentinel delivery");
    assert_eq!(&*p.channel, sentinel, "delivered after unsubscribe");
    b.broker
        .unsubscribe(sentinel)
        .await
        .expect("unsubscribe sentinel");
}

/// Many channels at once, each in order, none lost.
pub async fn many_channels(a: &mut Node, b: &mut Node, prefix: &str, channels: usize) {
    let names: Vec<String> = (0..channels).map(|i| format!("{prefix}{i}")).collect();
    for name in &names {
        b.broker.subscribe(name).await.expect("subscribe");
    }
    const PER: u64 = 20;
    for seq in 0..PER {
        for name in &names {
            a.broker
                .publish(publication(name, seq))
                .await
                .expect("publish");
        }
    }
    let mut next: HashMap<String, u64> = HashMap::new();
    for _ in 0..(PER as usize * channels) {
        let p = b.next(WAIT).await.expect("delivery");
        let expected = next.entry(p.channel.to_string()).or_insert(0);
        assert_eq!(seq_of(&p), *expected, "channel {} out of order", p.channel);
        *expected += 1;
    }
    assert!(next.values().all(|n| *n == PER));
    for name in &names {
        b.broker.unsubscribe(name).await.expect("unsubscribe");
    }
}

/// Runs every check with two fresh nodes from `make`. `prefix` keeps the
/// run's channel names apart from anything else on a shared engine.
pub async fn run_all<F, Fut>(make: F, prefix: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Broker>>,
{
    let mut a = Node::start(make().await);
    let mut b = Node::start(make().await);
    cross_node_in_order(&mut a, &mut b, &format!("{prefix}order")).await;
    unsubscribe_stops_delivery(
        &mut a,
        &mut b,
        &format!("{prefix}unsub"),
        &format!("{prefix}sentinel"),
    )
    .await;
    many_channels(&mut a, &mut b, &format!("{prefix}many/"), 100).await;
    a.broker.shutdown().await;
    b.broker.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_broker_passes_within_one_node() {
        // The memory broker has no second node to talk to: check that it
        // loops every publication back in order.
        let broker: Arc<dyn Broker> = Arc::new(herald::MemoryBroker::new());
        let mut node = Node::start(broker.clone());
        node.broker.subscribe("m/c").await.unwrap();
        for seq in 0..100 {
            node.broker.publish(publication("m/c", seq)).await.unwrap();
        }
        for expected in 0..100 {
            assert_eq!(seq_of(&node.next(WAIT).await.unwrap()), expected);
        }
    }
}
