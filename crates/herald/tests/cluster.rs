//! Cluster behaviour through the public API: messages addressed to a user
//! on every node, node announcements, reserved channels, and the status
//! routes. Two nodes share an in-process bus broker so that cross-node
//! behaviour is tested without an external engine (the Redis and NATS
//! brokers have their own suites).

#[path = "common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use herald::{Broker, BrokerError, BrokerSink, Publication};
use parking_lot::Mutex;
use serde_json::json;

/// An in-process "engine" shared by several brokers, one per node.
#[derive(Default)]
struct Bus {
    nodes: Mutex<Vec<Arc<BusNode>>>,
}

#[derive(Default)]
struct BusNode {
    sink: OnceLock<BrokerSink>,
    channels: Mutex<HashSet<String>>,
}

struct BusBroker {
    bus: Arc<Bus>,
    node: Arc<BusNode>,
}

impl BusBroker {
    fn join(bus: &Arc<Bus>) -> Self {
        let node = Arc::new(BusNode::default());
        bus.nodes.lock().push(node.clone());
        Self {
            bus: bus.clone(),
            node,
        }
    }
}

#[async_trait]
impl Broker for BusBroker {
    fn name(&self) -> &'static str {
        "bus"
    }
    fn start(&self, sink: BrokerSink) {
        let _ = self.node.sink.set(sink);
    }
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.node.channels.lock().insert(channel.to_owned());
        Ok(())
    }
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.node.channels.lock().remove(channel);
        Ok(())
    }
    async fn publish(&self, publication: Arc<Publication>) -> Result<(), BrokerError> {
        let nodes = self.bus.nodes.lock().clone();
        for node in nodes {
            if node.channels.lock().contains(&*publication.channel)
                && let Some(sink) = node.sink.get()
            {
                sink.deliver(publication.clone());
            }
        }
        Ok(())
    }
}

async fn two_nodes() -> (TestServer, TestServer) {
    let bus = Arc::new(Bus::default());
    let a = TestServer::start(
        fixture()
            .node_id("node-a")
            .broker(BusBroker::join(&bus))
            .configure(|c| c.announce_interval = Duration::from_millis(100)),
    )
    .await;
    let b = TestServer::start(
        fixture()
            .node_id("node-b")
            .broker(BusBroker::join(&bus))
            .configure(|c| c.announce_interval = Duration::from_millis(100)),
    )
    .await;
    (a, b)
}

async fn logged_in(server: &TestServer, user: &str) -> Client {
    let mut c = server.client().await;
    c.call("login", json!({ "user": user })).await;
    c.expect_event("#setAuthToken").await;
    c
}

async fn wait_user_sockets(server: &TestServer, user: &str, n: usize) {
    let users = server.server.users();
    eventually(&format!("{n} local sockets of {user}"), || {
        users.local_sockets(user).len() == n
    })
    .await;
}

#[tokio::test]
async fn user_transmit_reaches_every_socket_of_the_user_on_every_node() {
    bounded(async {
        let (a, b) = two_nodes().await;
        let mut bob_a = logged_in(&a, "bob").await;
        let mut bob_b = logged_in(&b, "bob").await;
        let mut alice = logged_in(&b, "alice").await;
        wait_user_sockets(&a, "bob", 1).await;
        wait_user_sockets(&b, "bob", 1).await;
        wait_user_sockets(&b, "alice", 1).await;

        let mut sender = a.client().await;
        sender
            .call(
                "userTransmit",
                json!({ "user": "bob", "event": "note", "data": { "n": 1 } }),
            )
            .await;
        for bob in [&mut bob_a, &mut bob_b] {
            let frame = bob.expect_event("note").await;
            assert_eq!(frame["data"], json!({ "n": 1 }));
        }
        // Alice got nothing: the next frame she sees is her own transmit back.
        alice
            .send_json(json!({ "event": "tell", "data": "sentinel" }))
            .await;
        let frame = alice.expect_event("told").await;
        assert_eq!(frame["data"], "sentinel");
    })
    .await;
}

#[tokio::test]
async fn user_disconnect_and_kick_apply_on_every_node() {
    bounded(async {
        let (a, b) = two_nodes().await;
        let mut bob_a = logged_in(&a, "bob").await;
        let mut bob_b = logged_in(&b, "bob").await;
        bob_a.subscribe("room").await;
        bob_b.subscribe("room").await;
        wait_user_sockets(&a, "bob", 1).await;
        wait_user_sockets(&b, "bob", 1).await;

        let mut admin = b.client().await;
        admin
            .call(
                "userKick",
                json!({ "user": "bob", "channel": "room", "message": "out" }),
            )
            .await;
        for bob in [&mut bob_a, &mut bob_b] {
            let frame = bob.expect_event("#kickOut").await;
            assert_eq!(
                frame["data"],
                json!({ "channel": "room", "message": "out" })
            );
        }
        eventually("bob unsubscribed on both nodes", || {
            a.server.subscriber_count("room") == 0 && b.server.subscriber_count("room") == 0
        })
        .await;

        admin
            .call(
                "userDisconnect",
                json!({ "user": "bob", "code": 4321, "reason": "banned" }),
            )
            .await;
        for bob in [&mut bob_a, &mut bob_b] {
            assert_eq!(bob.expect_close().await, (4321, "banned".to_owned()));
        }
        wait_user_sockets(&a, "bob", 0).await;
        wait_user_sockets(&b, "bob", 0).await;
    })
    .await;
}

#[tokio::test]
async fn user_index_follows_the_token() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = logged_in(&server, "bob").await;
        wait_user_sockets(&server, "bob", 1).await;
        // Logging in as someone else moves the socket to the other user.
        c.call("login", json!({ "user": "carol" })).await;
        wait_user_sockets(&server, "carol", 1).await;
        wait_user_sockets(&server, "bob", 0).await;
        c.call("logout", json!(null)).await;
        wait_user_sockets(&server, "carol", 0).await;
    })
    .await;
}

#[tokio::test]
async fn nodes_see_each_other_through_announcements() {
    bounded(async {
        let (a, b) = two_nodes().await;
        let _c = b.client().await;
        eventually("node-a sees node-b with its client", || {
            a.server
                .nodes()
                .iter()
                .any(|n| n.id == "node-b" && n.clients == 1)
        })
        .await;
        let ids: Vec<String> = a.server.nodes().into_iter().map(|n| n.id).collect();
        assert_eq!(ids, ["node-a", "node-b"]);
        // A node that stops leaves the other's view.
        b.stop().await.expect("node-b stops");
        eventually("node-a forgets node-b", || {
            a.server.nodes().iter().all(|n| n.id != "node-b")
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn reserved_channels_are_refused() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        let reply = c
            .request("#subscribe", Some(json!({ "channel": "#herald/user/bob" })))
            .await;
        assert_eq!(reply["error"]["name"], "InvalidActionError", "{reply}");
        let reply = c.publish("#herald/nodes", json!({ "node": "fake" })).await;
        assert_eq!(reply["error"]["name"], "InvalidActionError", "{reply}");
    })
    .await;
}

#[tokio::test]
async fn status_routes_report_node_and_broker() {
    bounded(async {
        let server = TestServer::start(fixture().node_id("n1")).await;
        let _c = server.client().await;
        let health = http_request(
            server.addr,
            "GET /herald/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let ready = http_request(
            server.addr,
            "GET /herald/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        let info = http_request(
            server.addr,
            "GET /herald/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let body = info.split("\r\n\r\n").nth(1).expect("a body");
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON info");
        assert_eq!(v["nodeId"], "n1");
        assert_eq!(v["broker"], json!({ "name": "memory", "up": true }));
        assert_eq!(v["clients"], 1);
    })
    .await;
}
