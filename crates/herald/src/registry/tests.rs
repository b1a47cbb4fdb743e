//! The registry's broker bookkeeping and fan-out against a fake broker: which
//! `subscribe`/`unsubscribe` calls the broker sees as sockets come and go,
//! failures rolled back, and a history channel's gap repaired through the
//! broker's history.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::value::RawValue;

use crate::broker::{
    Broker, BrokerError, BrokerSink, HistoryPage, HistoryPolicy, HistoryQuery, Publication,
    StreamPosition,
};
use crate::namespace::ChannelOptions;
use crate::server::Server;
use crate::socket::{Outbound, RequestInfo, SocketShared};

/// Records every call; can be told to refuse subscriptions; serves a fixed
/// history.
#[derive(Default)]
struct FakeBroker {
    calls: Mutex<Vec<String>>,
    refuse: Mutex<bool>,
    sink: Mutex<Option<BrokerSink>>,
    history: Mutex<Vec<Arc<Publication>>>,
    /// Delay of each subscribe (to interleave calls).
    slow: Mutex<Option<Duration>>,
}

struct Handle(Arc<FakeBroker>);

#[async_trait]
impl Broker for Handle {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn start(&self, sink: BrokerSink) {
        *self.0.sink.lock() = Some(sink);
    }
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let slow = *self.0.slow.lock();
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        self.0.calls.lock().push(format!("sub {channel}"));
        if *self.0.refuse.lock() {
            return Err(BrokerError::new("fake", "refused"));
        }
        Ok(())
    }
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.0.calls.lock().push(format!("unsub {channel}"));
        Ok(())
    }
    async fn publish(&self, _p: Arc<Publication>) -> Result<(), BrokerError> {
        Ok(())
    }
    async fn history(
        &self,
        _channel: &str,
        _policy: &HistoryPolicy,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        self.0.calls.lock().push("history".into());
        let all = self.0.history.lock().clone();
        let since = query.since.as_ref().map_or(0, |s| s.offset);
        let top = all
            .last()
            .and_then(|p| p.position.as_ref())
            .map_or(0, |p| p.offset);
        Ok(HistoryPage {
            publications: all
                .into_iter()
                .filter(|p| p.position.as_ref().is_some_and(|q| q.offset > since))
                .collect(),
            position: StreamPosition::new(top, "e"),
        })
    }
}

fn server(fake: &Arc<FakeBroker>) -> Server {
    Server::builder()
        .broker(Handle(fake.clone()))
        .namespace(
            "h",
            ChannelOptions {
                history_size: 100,
                ..ChannelOptions::default()
            },
        )
        .build()
}

fn socket(server: &Server, key: u64) -> (Arc<SocketShared>, crate::queue::QueueRx) {
    let (tx, rx, state) = crate::queue::queue(crate::queue::Bounds {
        bytes: 1 << 20,
        frames: 64,
    });
    let request = Arc::new(RequestInfo {
        uri: http::Uri::from_static("/socketcluster/"),
        headers: http::HeaderMap::new(),
        remote_addr: None,
    });
    let shared = Arc::new(SocketShared::new(
        key,
        Arc::from(format!("socket-{key}")),
        request,
        (tx, state),
        server.0.clone(),
    ));
    (shared, rx)
}

fn calls(fake: &FakeBroker) -> Vec<String> {
    std::mem::take(&mut *fake.calls.lock())
}

fn positioned(offset: u64) -> Arc<Publication> {
    Arc::new(Publication::at(
        "h:c",
        Some(RawValue::from_string(offset.to_string()).unwrap()),
        Some(StreamPosition::new(offset, "e")),
    ))
}

fn offsets(rx: &mut crate::queue::QueueRx) -> VecDeque<u64> {
    let mut got = VecDeque::new();
    while let Ok(item) = rx.try_recv() {
        if let Outbound::Publication(p) = item {
            got.push_back(p.position.as_ref().map_or(0, |q| q.offset));
        }
    }
    got
}

#[tokio::test]
async fn the_broker_sees_the_first_subscriber_and_the_last_leaving() {
    let fake = Arc::new(FakeBroker::default());
    let server = server(&fake);
    let registry = server.0.registry.clone();
    let (a, _ra) = socket(&server, 1);
    let (b, _rb) = socket(&server, 2);
    let _ = calls(&fake); // the cluster's own channels
    registry.subscribe(&a, "news").await.unwrap();
    registry.subscribe(&b, "news").await.unwrap();
    registry.subscribe(&a, "news").await.unwrap(); // again: nothing
    assert_eq!(calls(&fake), ["sub news"]);
    assert_eq!(registry.subscriber_count("news"), 2);
    assert!(registry.unsubscribe(&a, "news").await);
    assert!(
        !registry.unsubscribe(&a, "news").await,
        "not subscribed any more"
    );
    assert!(calls(&fake).is_empty(), "B still needs it");
    assert!(registry.unsubscribe(&b, "news").await);
    assert_eq!(calls(&fake), ["unsub news"]);
    assert_eq!(registry.channel_count(), 0, "the channel is forgotten");
    // The node's own interest keeps the broker subscribed across sockets.
    registry.subscribe_node("#herald/user/x").await.unwrap();
    registry.subscribe(&a, "#herald/user/x").await.unwrap();
    registry.unsubscribe(&a, "#herald/user/x").await;
    assert_eq!(calls(&fake), ["sub #herald/user/x"]);
    registry.unsubscribe_node("#herald/user/x").await;
    assert_eq!(calls(&fake), ["unsub #herald/user/x"]);
}

#[tokio::test]
async fn a_refused_subscription_is_rolled_back() {
    let fake = Arc::new(FakeBroker::default());
    let server = server(&fake);
    let registry = server.0.registry.clone();
    let (a, _ra) = socket(&server, 1);
    let _ = calls(&fake);
    *fake.refuse.lock() = true;
    let e = registry.subscribe(&a, "news").await.unwrap_err();
    assert_eq!(e.name, "BrokerError");
    assert!(e.message.contains("refused"), "{}", e.message);
    assert!(a.channels.lock().is_empty());
    assert_eq!(registry.subscriber_count("news"), 0);
    assert_eq!(registry.channel_count(), 0);
    *fake.refuse.lock() = false;
    registry.subscribe(&a, "news").await.unwrap();
    assert_eq!(calls(&fake), ["sub news", "sub news"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_calls_leave_the_broker_in_line_with_the_sockets() {
    let fake = Arc::new(FakeBroker::default());
    *fake.slow.lock() = Some(Duration::from_millis(2));
    let server = server(&fake);
    let registry = server.0.registry.clone();
    let mut tasks = Vec::new();
    for key in 1..=8 {
        let (s, rx) = socket(&server, key);
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                registry.subscribe(&s, "busy").await.unwrap();
                registry.unsubscribe(&s, "busy").await;
            }
            drop(rx);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log: Vec<String> = calls(&fake)
        .into_iter()
        .filter(|c| c.ends_with(" busy"))
        .collect();
    // Calls alternate, starting with a subscribe, ending with an
    // unsubscribe: the broker's view followed the local one.
    assert!(!log.is_empty());
    for (i, c) in log.iter().enumerate() {
        let expected = if i % 2 == 0 { "sub busy" } else { "unsub busy" };
        assert_eq!(c, expected, "call {i} of {log:?}");
    }
    assert_eq!(registry.channel_count(), 0);
}

#[tokio::test]
async fn publications_reach_every_subscriber_and_gaps_are_repaired_from_history() {
    let fake = Arc::new(FakeBroker::default());
    let server = server(&fake);
    let registry = server.0.registry.clone();
    let (a, mut ra) = socket(&server, 1);
    let (b, mut rb) = socket(&server, 2);
    registry.subscribe(&a, "h:c").await.unwrap();
    registry.subscribe(&b, "h:c").await.unwrap();
    let sink = fake.sink.lock().clone().expect("started");
    *fake.history.lock() = (1..=4).map(positioned).collect();
    sink.deliver(positioned(1));
    sink.deliver(positioned(1)); // a duplicate
    sink.deliver(positioned(4)); // 2 and 3 were lost on the way
    // The repair runs in a task: wait for what it releases.
    for rx in [&mut ra, &mut rb] {
        assert_eq!(next_offsets(rx, 4).await, [1, 2, 3, 4]);
        assert!(offsets(rx).is_empty(), "nothing more");
    }
    // Plain channels are fanned out as they come.
    registry.subscribe(&a, "plain").await.unwrap();
    sink.deliver(Arc::new(Publication::new("plain", None)));
    assert_eq!(offsets(&mut ra), [0]);
    assert!(offsets(&mut rb).is_empty(), "B is not subscribed to plain");
}

/// The offsets of the next `n` publications queued on `rx` (bounded wait).
async fn next_offsets(rx: &mut crate::queue::QueueRx, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < n {
            if let crate::queue::Event::Item(Outbound::Publication(p)) = rx.next_event().await {
                got.push(p.position.as_ref().map_or(0, |q| q.offset));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {got:?} queued"));
    got
}

#[tokio::test]
async fn the_fan_out_reaches_exactly_the_subscribers_left_as_they_come_and_go() {
    let fake = Arc::new(FakeBroker::default());
    let server = server(&fake);
    let registry = server.0.registry.clone();
    let mut sockets = Vec::new();
    for key in 0..40 {
        let (s, rx) = socket(&server, 100 + key);
        registry.subscribe(&s, "crowd").await.unwrap();
        sockets.push((s, rx));
    }
    // Leave out of order: every third, then the first and the last (the
    // dense list moves its last entry into each hole).
    let mut gone = Vec::new();
    for i in (0..40).step_by(3).chain([1, 38]) {
        assert!(registry.unsubscribe(&sockets[i].0, "crowd").await);
        gone.push(i);
    }
    // Back again, and a second subscribe of one already there.
    assert!(registry.unsubscribe(&sockets[5].0, "crowd").await);
    registry.subscribe(&sockets[5].0, "crowd").await.unwrap();
    registry.subscribe(&sockets[7].0, "crowd").await.unwrap();
    assert_eq!(registry.subscriber_count("crowd"), 40 - gone.len());
    let delivered = registry.deliver(&Arc::new(Publication::new("crowd", None)));
    assert_eq!(delivered, 40 - gone.len());
    for (i, (_, rx)) in sockets.iter_mut().enumerate() {
        let mut got = 0;
        while let Ok(item) = rx.try_recv() {
            assert!(matches!(item, Outbound::Publication(_)));
            got += 1;
        }
        let expected = usize::from(!gone.contains(&i));
        assert_eq!(got, expected, "socket {i}");
    }
    for (s, _) in &sockets {
        registry.unsubscribe(s, "crowd").await;
    }
    assert_eq!(registry.subscriber_count("crowd"), 0);
}
