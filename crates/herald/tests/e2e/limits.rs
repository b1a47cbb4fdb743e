//! Per-socket limits and the connection task's fairness: writing goes on
//! while inbound frames are handled, a socket's own replies never make it a
//! slow consumer, and every limit refuses with its documented error or
//! close code.

use std::sync::Arc;
use std::time::Duration;

use herald::{ErrorPayload, Middleware, Socket, SubscribeRequest};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use crate::common::*;

/// Subscribe middleware that waits until the test lets it go.
struct Gate(Arc<Notify>);

#[async_trait::async_trait]
impl Middleware for Gate {
    async fn subscribe(
        &self,
        _socket: &Socket,
        request: &mut SubscribeRequest,
    ) -> Result<(), ErrorPayload> {
        if request.channel() == "gated" {
            self.0.notified().await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_keep_flowing_while_a_slow_middleware_call_runs() {
    bounded(async {
        let gate = Arc::new(Notify::new());
        let server = TestServer::start(
            fixture()
                .middleware(Gate(gate.clone()))
                .configure(|c| c.outbound_queue = 16),
        )
        .await;
        let mut sub = server.client().await;
        sub.subscribe("news").await;
        // A subscribe held by middleware: the socket's inbound job waits.
        let cid = sub.cid();
        sub.send_json(json!({"event": "#subscribe", "data": {"channel": "gated"}, "cid": cid}))
            .await;
        // Meanwhile 100 publications (more than the queue's 16 frames) must
        // reach the socket: its writer does not wait for the middleware.
        let mut publisher = server.client().await;
        for i in 0..100 {
            publisher.publish("news", json!(i)).await;
            let (channel, data) = Client::publication(&sub.recv().await);
            assert_eq!(channel, "news");
            assert_eq!(data.as_deref(), Some(i.to_string().as_str()));
        }
        gate.notify_one();
        assert_eq!(sub.reply_to(cid).await, json!({"rid": cid}));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_invokes_is_answered_without_a_slow_consumer_close() {
    bounded(async {
        // A queue of 4 frames and 1 KiB: far below the replies of the burst.
        let server = TestServer::fixture_with(|c| {
            c.outbound_queue = 4;
            c.outbound_queue_bytes = 1024;
            // The cap on invokes in flight has a test of its own.
            c.max_in_flight = 0;
        })
        .await;
        let mut c = server.client().await;
        let payload = "x".repeat(200);
        let mut batch = Vec::new();
        let first = c.cid();
        for i in 0..500u64 {
            batch
                .push(json!({"event": "echo", "data": {"i": i, "pad": payload}, "cid": first + i}));
        }
        for _ in 1..500 {
            c.cid();
        }
        // Sent as fast as possible, 50 frames per message (the official
        // client's batching: a JSON array).
        for chunk in batch.chunks(50) {
            c.send_text(Value::Array(chunk.to_vec()).to_string()).await;
        }
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 500 {
            let reply = c.recv_json().await;
            let rid = reply["rid"].as_u64().unwrap_or_else(|| panic!("{reply}"));
            assert_eq!(reply["data"]["i"], json!(rid - first), "{reply}");
            assert!(seen.insert(rid), "reply {rid} twice");
        }
        // Still open.
        assert_eq!(c.call("echo", json!("ok")).await, json!("ok"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invokes_in_flight_are_capped_with_a_named_error() {
    bounded(async {
        let release = Arc::new(Semaphore::new(0));
        let held = release.clone();
        let server = TestServer::start(fixture().configure(|c| c.max_in_flight = 3).procedure(
            "hold",
            move |_req| {
                let held = held.clone();
                async move {
                    let _permit = held
                        .acquire()
                        .await
                        .map_err(|e| ErrorPayload::new("Closed", e.to_string()))?;
                    Ok::<Value, ErrorPayload>(json!("done"))
                }
            },
        ))
        .await;
        let mut c = server.client().await;
        let mut cids = Vec::new();
        for _ in 0..3 {
            let cid = c.cid();
            c.send_json(json!({"event": "hold", "cid": cid})).await;
            cids.push(cid);
        }
        // The fourth is refused at once, the others still run.
        let refused = c.invoke("hold", Value::Null).await.unwrap_err();
        assert_eq!(refused["name"], "InFlightLimitError", "{refused}");
        assert_eq!(refused["limit"], 3, "{refused}");
        release.add_permits(3);
        for cid in cids {
            assert_eq!(c.reply_to(cid).await["data"], "done");
        }
        // Room again.
        release.add_permits(1);
        assert_eq!(c.invoke("hold", Value::Null).await, Ok(json!("done")));
    })
    .await
}

#[tokio::test]
async fn channel_names_and_counts_are_limited() {
    bounded(async {
        let server = TestServer::fixture_with(|c| {
            c.socket_channel_limit = 2;
            c.max_channel_name = 16;
        })
        .await;
        let mut c = server.client().await;
        for bad in ["", "nul\u{0}char", "bell\u{7}", &"x".repeat(17)] {
            let reply = c.request("#subscribe", Some(json!({"channel": bad}))).await;
            assert_eq!(
                reply["error"]["name"], "InvalidActionError",
                "{bad:?}: {reply}"
            );
            let reply = c
                .request("#publish", Some(json!({"channel": bad, "data": 1})))
                .await;
            assert_eq!(
                reply["error"]["name"], "InvalidActionError",
                "{bad:?}: {reply}"
            );
        }
        c.subscribe("a").await;
        c.subscribe("tab\there").await;
        let reply = c.request("#subscribe", Some(json!({"channel": "c"}))).await;
        assert_eq!(reply["error"]["name"], "InvalidActionError", "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("limit of 2"),
            "{reply}"
        );
    })
    .await
}

#[test]
fn defaults_are_safe() {
    let c = herald::Config::default();
    assert_eq!(c.outbound_queue_bytes, 4 * 1024 * 1024);
    assert_eq!(c.socket_channel_limit, 1000);
    assert_eq!(c.max_in_flight, 64);
    assert!(c.inbound_rate > 0 && c.handshake_rate > 0);
    assert!(c.max_connections > 0 && c.max_connections_per_user > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_over_its_inbound_rate_is_read_at_its_rate() {
    bounded(async {
        let server = TestServer::fixture_with(|c| {
            c.inbound_rate = 20;
            c.inbound_burst = 20;
        })
        .await;
        let mut fast = server.client().await;
        let start = tokio::time::Instant::now();
        // 20 in the burst, then 20 at 20 per second: at least ~1 s.
        let mut cids = Vec::new();
        for i in 0..40 {
            let cid = fast.cid();
            fast.send_json(json!({"event": "echo", "data": i, "cid": cid}))
                .await;
            cids.push(cid);
        }
        for cid in cids {
            fast.reply_to(cid).await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "not throttled: {took:?}"
        );
        // Another socket is not slowed by it.
        let mut other = server.client().await;
        assert_eq!(other.call("echo", json!(1)).await, json!(1));
    })
    .await
}

#[tokio::test]
async fn connections_per_user_close_the_extra_socket_with_4102() {
    bounded(async {
        let server = TestServer::fixture_with(|c| c.max_connections_per_user = 2).await;
        let ann = token(json!({"sub": "ann"}));
        let mut a = server.connect().await;
        a.handshake(Some(&ann)).await;
        let mut b = server.connect().await;
        b.handshake(Some(&ann)).await;
        // Both hold their place once their user is indexed.
        assert_eq!(a.call("echo", json!(1)).await, json!(1));
        assert_eq!(b.call("echo", json!(1)).await, json!(1));
        let mut c = server.connect().await;
        c.handshake(Some(&ann)).await;
        assert_eq!(c.expect_close().await.0, 4102);
        // Another user is not affected; a place freed is taken again.
        let mut bob = server.connect().await;
        bob.handshake(Some(&token(json!({"sub": "bob"})))).await;
        assert_eq!(bob.call("echo", json!(2)).await, json!(2));
        a.close(1000, "").await;
        eventually("ann's place freed", || server.server.sockets().len() == 2).await;
        let mut d = server.connect().await;
        d.handshake(Some(&ann)).await;
        assert_eq!(d.call("echo", json!(3)).await, json!(3));
    })
    .await
}
