//! End to end: two Herald nodes in this process, each with its own
//! `NatsBroker` on the shared NATS (random subject prefix), and raw
//! SocketCluster v2 WebSocket clients built on `tokio-websockets` and the
//! `herald-protocol` codec. Publications made on node A reach a subscriber
//! on node B (and one on A) exactly once, in order.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{STEP, random_prefix, shared_url, within};
use futures_util::{SinkExt, StreamExt};
use herald::protocol::inbound::{self, Packet};
use herald::protocol::{Cid, outbound};
use herald::{Broker, Server};
use herald_broker_nats::{NatsBroker, NatsOptions};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

/// A Herald node serving on 127.0.0.1 with a NATS broker.
struct Node {
    server: Server,
    broker: Arc<NatsBroker>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Node {
    async fn start(prefix: &str) -> Node {
        let broker = Arc::new(
            NatsBroker::connect(&shared_url(), NatsOptions::default().with_prefix(prefix))
                .await
                .expect("connect to the shared NATS"),
        );
        let server = Server::builder().broker_arc(broker.clone()).build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        Node {
            server,
            broker,
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn client(&self) -> Client {
        let url = format!("ws://{}{}", self.addr, self.server.config().path);
        Client::connect(&url).await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        within(STEP, "serve to return", self.task)
            .await
            .expect("serve task")
            .expect("serve");
    }
}

/// A frame from the server, owned.
#[derive(Debug)]
enum Frame {
    Reply { rid: u64, error: Option<String> },
    Publish { channel: String, seq: u64 },
    Other(#[allow(dead_code)] String),
}

/// A raw SocketCluster v2 client.
struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_cid: u64,
}

impl Client {
    async fn connect(url: &str) -> Client {
        let builder = ClientBuilder::new().uri(url).expect("ws url");
        let (ws, _) = within(STEP, "WebSocket upgrade", builder.connect())
            .await
            .expect("WebSocket upgrade");
        let mut client = Client { ws, next_cid: 1 };
        let cid = client.cid();
        client
            .send(outbound::handshake_request(&Cid::from(cid), None))
            .await;
        client.expect_ack(cid).await;
        client
    }

    fn cid(&mut self) -> u64 {
        self.next_cid += 1;
        self.next_cid - 1
    }

    async fn send(&mut self, frame: Bytes) {
        let text = String::from_utf8(frame.to_vec()).expect("UTF-8 frame");
        within(STEP, "send", self.ws.send(Message::text(text)))
            .await
            .expect("send");
    }

    /// The frames of the next message (answering pings).
    async fn frames(&mut self) -> Vec<Frame> {
        loop {
            let message = within(STEP, "a message from the server", self.ws.next())
                .await
                .expect("socket open")
                .expect("WebSocket message");
            let Some(text) = message.as_text() else {
                assert!(!message.is_close(), "socket closed");
                continue;
            };
            if text.is_empty() {
                // SocketCluster ping: answer with a pong.
                self.ws.send(Message::text("")).await.expect("pong");
                continue;
            }
            let parsed = inbound::parse(text).expect("parsable message");
            return parsed
                .into_packets()
                .map(|p| match p.expect("parsable frame") {
                    Packet::Response { rid, error, .. } => Frame::Reply {
                        rid: rid.as_u64().expect("integer rid"),
                        error: error.map(|e| e.get().to_owned()),
                    },
                    Packet::Publish { channel, data, .. } => {
                        let data: serde_json::Value =
                            serde_json::from_str(data.expect("data").get()).expect("JSON");
                        Frame::Publish {
                            channel: channel.into_owned(),
                            seq: data["seq"].as_u64().expect("seq"),
                        }
                    }
                    other => Frame::Other(format!("{other:?}")),
                })
                .collect();
        }
    }

    /// Waits for the successful reply to `cid`; nothing else may come first.
    async fn expect_ack(&mut self, cid: u64) {
        match self.frames().await.as_slice() {
            [Frame::Reply { rid, error: None }] if *rid == cid => {}
            other => panic!("expected the ack of {cid}, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, channel: &str) {
        let cid = self.cid();
        self.send(outbound::subscribe_request(
            channel,
            None,
            Some(&Cid::from(cid)),
        ))
        .await;
        self.expect_ack(cid).await;
    }

    async fn unsubscribe(&mut self, channel: &str) {
        let cid = self.cid();
        self.send(outbound::unsubscribe_request(
            channel,
            Some(&Cid::from(cid)),
        ))
        .await;
        self.expect_ack(cid).await;
    }

    /// Sends a publish request; returns its cid.
    async fn publish(&mut self, channel: &str, seq: u64) -> u64 {
        let cid = self.cid();
        let data = RawValue::from_string(format!("{{\"seq\":{seq}}}")).expect("JSON");
        self.send(outbound::publish_request(
            channel,
            Some(&data),
            Some(&Cid::from(cid)),
        ))
        .await;
        cid
    }

    /// Reads publications on `channel` until `last` arrives; returns them.
    async fn publications_until(&mut self, channel: &str, last: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        loop {
            for frame in self.frames().await {
                match frame {
                    Frame::Publish { channel: c, seq } if c == channel => {
                        seqs.push(seq);
                        if seq == last {
                            return seqs;
                        }
                    }
                    other => panic!("unexpected frame {other:?}"),
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_cross_nodes_exactly_once_in_order() {
    within(Duration::from_secs(60), "the whole test", async {
        let prefix = random_prefix();
        let node_a = Node::start(&prefix).await;
        let node_b = Node::start(&prefix).await;
        const CHANNEL: &str = "room/e2e";
        const N: u64 = 300;

        let mut sub_b = node_b.client().await;
        sub_b.subscribe(CHANNEL).await;
        let mut sub_a = node_a.client().await;
        sub_a.subscribe(CHANNEL).await;
        assert!(node_b.broker.is_subscribed(CHANNEL));

        // Client publications on A, every one acknowledged, in order.
        let started = Instant::now();
        let mut publisher = node_a.client().await;
        let mut cids = Vec::new();
        for seq in 0..N {
            cids.push(publisher.publish(CHANNEL, seq).await);
        }
        let mut acked = Vec::new();
        while acked.len() < cids.len() {
            for frame in publisher.frames().await {
                match frame {
                    Frame::Reply { rid, error: None } => acked.push(rid),
                    other => panic!("publisher got {other:?}"),
                }
            }
        }
        assert_eq!(acked, cids, "acks out of order");
        // A server-side publication through A's exchange, then a sentinel.
        let exchange = node_a.server.exchange();
        exchange
            .publish(CHANNEL, &json!({ "seq": N }))
            .await
            .expect("exchange publish");
        exchange
            .publish(CHANNEL, &json!({ "seq": N + 1 }))
            .await
            .expect("exchange publish");

        let expected: Vec<u64> = (0..=N + 1).collect();
        let on_b = sub_b.publications_until(CHANNEL, N + 1).await;
        let elapsed = started.elapsed();
        assert_eq!(on_b, expected, "node B: not exactly once in order");
        let on_a = sub_a.publications_until(CHANNEL, N + 1).await;
        assert_eq!(on_a, expected, "node A: not exactly once in order");

        // Nothing extra follows: the next frame after the sentinel is the
        // next publication.
        exchange
            .publish(CHANNEL, &json!({ "seq": N + 2 }))
            .await
            .expect("exchange publish");
        assert_eq!(sub_b.publications_until(CHANNEL, N + 2).await, [N + 2]);
        assert_eq!(sub_a.publications_until(CHANNEL, N + 2).await, [N + 2]);

        // The other way round: B publishes, A's subscriber gets it.
        let mut publisher_b = node_b.client().await;
        let cid = publisher_b.publish(CHANNEL, N + 3).await;
        publisher_b.expect_ack(cid).await;
        assert_eq!(sub_a.publications_until(CHANNEL, N + 3).await, [N + 3]);
        assert_eq!(sub_b.publications_until(CHANNEL, N + 3).await, [N + 3]);

        // The last local subscriber leaving unsubscribes the node on NATS.
        sub_b.unsubscribe(CHANNEL).await;
        assert!(!node_b.broker.is_subscribed(CHANNEL));
        assert!(node_a.broker.is_subscribed(CHANNEL));
        let stats_b = node_b.broker.stats();
        assert_eq!(stats_b.receive_dropped, 0);
        assert_eq!(stats_b.dropped_while_down, 0);
        eprintln!(
            "e2e: {} publications A→B through NATS delivered exactly once in order in {elapsed:?}",
            N + 2
        );

        let broker_a = node_a.broker.clone();
        node_a.stop().await;
        node_b.stop().await;
        // `serve` shut the broker down on its way out.
        assert_eq!(broker_a.status(), herald::BrokerStatus::Down);
    })
    .await;
}
