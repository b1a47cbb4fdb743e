//! Two real Herald nodes sharing one Redis: a WebSocket client subscribed on
//! node B (and one on node A) receives, exactly once and in order, what a
//! client publishes on node A.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use herald::protocol::{Cid, outbound};
use herald::{BrokerStatus, Server};
use herald_broker_redis::RedisBroker;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

/// A Herald node serving on an ephemeral port until dropped.
struct TestNode {
    server: Server,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl TestNode {
    async fn start(broker: Arc<RedisBroker>) -> Self {
        let server = Server::builder().broker_arc(broker).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            server,
            addr,
            _stop: stop,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}{}", self.addr, self.server.config().path)
    }
}

/// A raw SocketCluster v2 client: frames in, frames out.
struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_cid: u64,
}

impl Client {
    async fn connect(url: &str) -> Self {
        let uri: http::Uri = url.parse().unwrap();
        let (ws, _) = within(
            STEP,
            "WebSocket upgrade",
            ClientBuilder::from_uri(uri).connect(),
        )
        .await
        .expect("connect");
        let mut c = Self { ws, next_cid: 1 };
        let cid = c.cid();
        c.send(outbound::handshake_request(&Cid::from(cid), None))
            .await;
        let reply = c.reply(cid).await;
        assert!(reply.get("error").is_none(), "handshake: {reply}");
        c
    }

    fn cid(&mut self) -> u64 {
        let cid = self.next_cid;
        self.next_cid += 1;
        cid
    }

    async fn send(&mut self, frame: bytes::Bytes) {
        let text = String::from_utf8(frame.to_vec()).unwrap();
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next frame that is not a ping (pings are answered).
    async fn frame(&mut self) -> Value {
        loop {
            let msg = within(STEP, "a frame", self.ws.next())
                .await
                .expect("socket open")
                .expect("frame");
            let Some(text) = msg.as_text() else { continue };
            if text.is_empty() {
                self.ws
                    .send(Message::text(outbound::PING))
                    .await
                    .expect("pong");
                continue;
            }
            return serde_json::from_str(text).expect("JSON frame");
        }
    }

    async fn reply(&mut self, cid: u64) -> Value {
        loop {
            let f = self.frame().await;
            if f.get("event").is_none() && f["rid"] == cid {
                return f;
            }
        }
    }

    async fn request(&mut self, event: &str, data: Value) -> Value {
        let cid = self.cid();
        let frame = json!({"event": event, "data": data, "cid": cid}).to_string();
        self.ws.send(Message::text(frame)).await.expect("send");
        self.reply(cid).await
    }

    async fn subscribe(&mut self, channel: &str) {
        let reply = self
            .request("#subscribe", json!({"channel": channel}))
            .await;
        assert!(reply.get("error").is_none(), "subscribe: {reply}");
    }

    async fn publish(&mut self, channel: &str, data: Value) {
        let reply = self.try_publish(channel, data).await;
        assert!(reply.get("error").is_none(), "publish: {reply}");
    }

    /// Publishes and returns the whole reply frame.
    async fn try_publish(&mut self, channel: &str, data: Value) -> Value {
        self.request("#publish", json!({"channel": channel, "data": data}))
            .await
    }

    /// The next `#publish` frame, if one arrives within `limit`.
    async fn publication_within(&mut self, limit: Duration) -> Option<(String, Value)> {
        tokio::time::timeout(limit, self.publication()).await.ok()
    }

    /// The next `#publish` frame's (channel, data).
    async fn publication(&mut self) -> (String, Value) {
        loop {
            let f = self.frame().await;
            if f["event"] == "#publish" {
                return (
                    f["data"]["channel"].as_str().unwrap().to_owned(),
                    f["data"]["data"].clone(),
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_exactly_once_in_order() {
    init_tracing();
    within(Duration::from_secs(60), "the end-to-end test", async {
        let redis = RedisServer::start().await;
        let options = fast_options(&random_prefix());
        let urls = [redis.url()];
        let broker_a = RedisBroker::connect(&urls, options.clone()).await.unwrap();
        let broker_b = RedisBroker::connect(&urls, options).await.unwrap();
        let node_a = TestNode::start(Arc::new(broker_a)).await;
        let node_b = TestNode::start(Arc::new(broker_b)).await;
        assert_eq!(node_b.server.broker_status(), ("redis", BrokerStatus::Up));

        let mut sub_b = Client::connect(&node_b.url()).await;
        let mut sub_a = Client::connect(&node_a.url()).await;
        let mut publisher = Client::connect(&node_a.url()).await;
        sub_b.subscribe("e2e/room").await;
        sub_a.subscribe("e2e/room").await;
        sub_b.subscribe("e2e/other").await;

        const N: u64 = 200;
        for seq in 0..N {
            publisher.publish("e2e/room", json!({"seq": seq})).await;
        }
        publisher.publish("e2e/other", json!({"end": true})).await;
        publisher.publish("e2e/room", json!({"end": true})).await;

        // Node B: every publication once, in order, then the end marker
        // (a duplicate would show up before it).
        let mut other_seen = false;
        let mut next = 0;
        loop {
            let (channel, data) = sub_b.publication().await;
            if channel == "e2e/other" {
                assert!(!other_seen, "duplicate on e2e/other");
                other_seen = true;
                continue;
            }
            assert_eq!(channel, "e2e/room");
            if data["end"] == true {
                break;
            }
            assert_eq!(data["seq"], next, "node B: out of order or duplicated");
            next += 1;
        }
        assert_eq!(next, N, "node B missed publications");
        assert!(other_seen);

        // Node A's own subscriber gets them through Redis too, once each.
        for seq in 0..N {
            let (channel, data) = sub_a.publication().await;
            assert_eq!(channel, "e2e/room");
            assert_eq!(data["seq"], seq, "node A: out of order or duplicated");
        }
        let (_, data) = sub_a.publication().await;
        assert_eq!(data["end"], true);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_seen_by_clients() {
    init_tracing();
    within(Duration::from_secs(60), "the outage test", async {
        let mut redis = RedisServer::start().await;
        let options = fast_options(&random_prefix());
        let urls = [redis.url()];
        let broker_a = Arc::new(RedisBroker::connect(&urls, options.clone()).await.unwrap());
        let broker_b = Arc::new(RedisBroker::connect(&urls, options).await.unwrap());
        let node_a = TestNode::start(broker_a.clone()).await;
        let node_b = TestNode::start(broker_b.clone()).await;
        let mut sub_b = Client::connect(&node_b.url()).await;
        let mut publisher = Client::connect(&node_a.url()).await;
        sub_b.subscribe("outage/room").await;
        publisher.publish("outage/room", json!({"before": 1})).await;
        assert_eq!(sub_b.publication().await.1, json!({"before": 1}));

        let mut status_a = broker_a.watch_status();
        let mut status_b = broker_b.watch_status();
        redis.kill();
        wait_status(&mut status_a, BrokerStatus::Down, STEP).await;
        wait_status(&mut status_b, BrokerStatus::Down, STEP).await;
        assert_eq!(node_a.server.broker_status(), ("redis", BrokerStatus::Down));

        // The publisher is told, promptly; the failure is counted.
        let errors = broker_a.stats().publish_errors;
        let started = tokio::time::Instant::now();
        let reply = publisher
            .try_publish("outage/room", json!({"during": 1}))
            .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(reply["error"]["name"], "BrokerError", "{reply}");
        assert_eq!(broker_a.stats().publish_errors, errors + 1);
        // Both nodes keep serving their clients: RPC-level traffic works.
        let again = Client::connect(&node_b.url()).await;
        drop(again);

        redis.restart().await;
        wait_status(&mut status_a, BrokerStatus::Up, STEP).await;
        wait_status(&mut status_b, BrokerStatus::Up, STEP).await;
        // B's subscription resumes without the client doing anything.
        let mut probe = 0;
        loop {
            let reply = publisher
                .try_publish("outage/room", json!({"probe": probe}))
                .await;
            if reply.get("error").is_none()
                && sub_b
                    .publication_within(Duration::from_millis(200))
                    .await
                    .is_some()
            {
                break;
            }
            probe += 1;
            assert!(probe < 50, "subscription did not resume");
        }
        publisher.publish("outage/room", json!({"after": 1})).await;
        loop {
            let (_, data) = sub_b.publication().await;
            if data.get("probe").is_none() {
                assert_eq!(data, json!({"after": 1}));
                break;
            }
        }
    })
    .await;
}
