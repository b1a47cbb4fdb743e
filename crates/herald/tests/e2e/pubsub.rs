//! Channels: subscribe, publish, unsubscribe, kickOut, batching, fan-out.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::common::*;

#[tokio::test]
async fn publisher_receives_own_publication_before_the_ack() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        c.send_text(r##"{"event":"#subscribe","data":{"channel":"c1"},"cid":5}"##)
            .await;
        assert_eq!(c.recv().await, r#"{"rid":5}"#);
        c.send_text(r##"{"event":"#publish","data":{"channel":"c1","data":"hi"},"cid":6}"##)
            .await;
        // Captured order: the publication first, then the acknowledgement.
        assert_eq!(
            c.recv().await,
            r##"{"event":"#publish","data":{"channel":"c1","data":"hi"}}"##
        );
        assert_eq!(c.recv().await, r#"{"rid":6}"#);
    })
    .await
}

#[tokio::test]
async fn publication_reaches_every_subscriber_and_not_others() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut a = server.client().await;
        let mut b = server.client().await;
        let mut outsider = server.client().await;
        a.subscribe("news").await;
        b.subscribe("news").await;
        assert_eq!(server.server.subscriber_count("news"), 2);

        let ack = outsider.publish("news", json!({"n": 1})).await;
        assert_eq!(ack.as_object().unwrap().len(), 1, "plain ack: {ack}");
        let expected = r##"{"event":"#publish","data":{"channel":"news","data":{"n":1}}}"##;
        assert_eq!(a.recv().await, expected);
        assert_eq!(b.recv().await, expected);
        // The publisher is not subscribed: its next frame is its next reply.
        assert_eq!(outsider.call("echo", json!("after")).await, json!("after"));
    })
    .await
}

#[tokio::test]
async fn publish_without_cid_is_delivered_without_ack() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut sub = server.client().await;
        let mut publisher = server.client().await;
        sub.subscribe("x").await;
        publisher
            .send_text(r##"{"event":"#publish","data":{"channel":"x","data":1}}"##)
            .await;
        publisher
            .send_text(r##"{"event":"#publish","data":{"channel":"x","data":2},"cid":40}"##)
            .await;
        // No ack for the publish without cid: the first reply is for cid 40.
        assert_eq!(publisher.recv().await, r#"{"rid":40}"#);
        assert_eq!(
            Client::publication(&sub.recv().await).1.as_deref(),
            Some("1")
        );
        assert_eq!(
            Client::publication(&sub.recv().await).1.as_deref(),
            Some("2")
        );
    })
    .await
}

#[tokio::test]
async fn unsubscribe_with_and_without_cid_stops_delivery() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut sub = server.client().await;
        let mut publisher = server.client().await;
        for ch in ["gone", "gone2", "stay"] {
            sub.subscribe(ch).await;
        }

        // With cid: acknowledged.
        let reply = sub.request("#unsubscribe", Some(json!("gone"))).await;
        assert_eq!(reply.as_object().unwrap().len(), 1, "{reply}");
        // Without cid (what the official client sends): no reply; an invoke
        // after it proves the server handled it.
        sub.send_text(r##"{"event":"#unsubscribe","data":"gone2"}"##)
            .await;
        assert_eq!(sub.call("echo", json!(0)).await, json!(0));
        assert_eq!(server.server.subscriber_count("gone"), 0);
        assert_eq!(server.server.subscriber_count("gone2"), 0);
        assert_eq!(subscriptions(&server, &sub), ["stay"]);

        publisher.publish("gone", json!("lost")).await;
        publisher.publish("gone2", json!("lost")).await;
        publisher.publish("stay", json!("sentinel")).await;
        let (channel, data) = Client::publication(&sub.recv().await);
        assert_eq!(
            (channel.as_str(), data.as_deref()),
            ("stay", Some("\"sentinel\""))
        );

        // Unsubscribing a channel the socket is not in is an error.
        let reply = sub.request("#unsubscribe", Some(json!("never"))).await;
        assert_eq!(reply["error"]["name"], "BrokerError", "{reply}");
    })
    .await
}

#[tokio::test]
async fn publication_data_is_forwarded_byte_for_byte() {
    bounded(async {
        // Once without middleware, once with the fixture's channel rules
        // (which look at channel names only and leave the data alone).
        for server in [
            TestServer::start(herald::Server::builder()).await,
            TestServer::fixture().await,
        ] {
            let mut a = server.client().await;
            let mut b = server.client().await;
            a.subscribe("raw").await;
            b.subscribe("raw").await;
            // Spaces, key order, an escape and a number beyond f64 precision.
            let data = r#"{"z": [1, 2],  "a" : "\u00e9", "big": 123456789012345678901234567890}"#;
            a.send_text(format!(
                r##"{{"event":"#publish","data":{{"channel":"raw","data":{data}}},"cid":9}}"##
            ))
            .await;
            let expected =
                format!(r##"{{"event":"#publish","data":{{"channel":"raw","data":{data}}}}}"##);
            assert_eq!(a.recv().await, expected);
            assert_eq!(a.recv().await, r#"{"rid":9}"#);
            assert_eq!(b.recv().await, expected);
        }
    })
    .await
}

#[tokio::test]
async fn channel_names_with_escapes_round_trip() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut sub = server.client().await;
        let mut publisher = server.client().await;
        let names = ["quote\"back\\slash/new\nline\ttab", "ünï/cødé/✓", "sp ace"];
        for name in names {
            sub.subscribe(name).await;
        }
        assert!(server.server.socket(&sub.id).unwrap().is_subscribed(names[0]));
        for (i, name) in names.iter().enumerate() {
            publisher.publish(name, json!(i)).await;
            let (channel, data) = Client::publication(&sub.recv().await);
            assert_eq!(channel, *name);
            assert_eq!(data.as_deref(), Some(i.to_string().as_str()));
        }
        // The same channel written with \u escapes on the wire.
        publisher
            .send_text(r##"{"event":"#publish","data":{"channel":"\u00fcn\u00ef/c\u00f8d\u00e9/\u2713","data":"esc"},"cid":77}"##)
            .await;
        let (channel, data) = Client::publication(&sub.recv().await);
        assert_eq!((channel.as_str(), data.as_deref()), (names[1], Some("\"esc\"")));
    })
    .await
}

#[tokio::test]
async fn kick_out_pushes_kick_out_and_stops_delivery() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        let mut publisher = server.client().await;
        c.subscribe("c1").await;
        c.subscribe("c2").await;

        c.send_text(r#"{"event":"kick","data":{"channel":"c1","message":"bye"},"cid":7}"#)
            .await;
        let mut frames = vec![c.recv().await, c.recv().await];
        frames.sort();
        assert_eq!(
            frames,
            vec![
                r##"{"event":"#kickOut","data":{"channel":"c1","message":"bye"}}"##.to_owned(),
                r#"{"rid":7}"#.to_owned(),
            ]
        );
        assert_eq!(server.server.subscriber_count("c1"), 0);
        assert!(!server.server.socket(&c.id).unwrap().is_subscribed("c1"));

        publisher.publish("c1", json!("after kick")).await;
        publisher.publish("c2", json!("sentinel")).await;
        let (channel, _) = Client::publication(&c.recv().await);
        assert_eq!(channel, "c2", "a kicked socket gets nothing from c1");
    })
    .await
}

#[tokio::test]
async fn batched_frames_are_processed_in_order() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        c.send_text(
            r##"[{"event":"#subscribe","data":{"channel":"b"},"cid":2},
                 {"event":"#publish","data":{"channel":"b","data":1},"cid":3},
                 {"event":"#unsubscribe","data":"b","cid":4},
                 {"event":"#publish","data":{"channel":"b","data":2},"cid":5},
                 {"event":"echo","data":"done","cid":6}]"##,
        )
        .await;
        let mut frames = Vec::new();
        for _ in 0..6 {
            frames.push(c.recv().await);
        }
        assert_eq!(
            frames,
            vec![
                r#"{"rid":2}"#,
                r##"{"event":"#publish","data":{"channel":"b","data":1}}"##,
                r#"{"rid":3}"#,
                r#"{"rid":4}"#,
                r#"{"rid":5}"#,
                r#"{"rid":6,"data":"done"}"#,
            ]
        );
    })
    .await
}

#[tokio::test]
async fn fifty_concurrent_subscribers_get_every_publication_in_order() {
    const SUBSCRIBERS: usize = 50;
    const PUBLICATIONS: u64 = 200;
    bounded(async {
        let server = TestServer::fixture().await;
        let url = server.url();
        let ready = Arc::new(Barrier::new(SUBSCRIBERS + 1));
        let mut tasks = Vec::new();
        for _ in 0..SUBSCRIBERS {
            let url = url.clone();
            let ready = ready.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = Client::connect(&url).await;
                c.handshake(None).await;
                c.subscribe("conc").await;
                ready.wait().await;
                let mut seen = Vec::new();
                while (seen.len() as u64) < PUBLICATIONS {
                    let (channel, data) = Client::publication(&c.recv().await);
                    assert_eq!(channel, "conc");
                    let v: Value = serde_json::from_str(&data.unwrap()).unwrap();
                    seen.push(v["seq"].as_u64().unwrap());
                }
                seen
            }));
        }
        ready.wait().await;
        assert_eq!(server.server.subscriber_count("conc"), SUBSCRIBERS);

        let mut publisher = server.client().await;
        for seq in 0..PUBLICATIONS {
            publisher
                .send_json(json!({"event": "#publish", "data": {"channel": "conc", "data": {"seq": seq}}, "cid": 1000 + seq}))
                .await;
        }
        for seq in 0..PUBLICATIONS {
            assert_eq!(publisher.recv_json().await, json!({"rid": 1000 + seq}));
        }
        let expected: Vec<u64> = (0..PUBLICATIONS).collect();
        for task in tasks {
            let seen = task.await.expect("subscriber task");
            assert_eq!(seen, expected);
        }
    })
    .await
}

/// The channels the server has `client` subscribed to, sorted.
fn subscriptions(server: &TestServer, client: &Client) -> Vec<String> {
    let mut subs = server.server.socket(&client.id).unwrap().subscriptions();
    subs.sort();
    subs
}

#[tokio::test]
async fn channel_limits_and_disabled_client_publish_are_refused() {
    bounded(async {
        let server = TestServer::fixture_with(|c| {
            c.socket_channel_limit = 2;
            c.max_channel_name = 16;
            c.allow_client_publish = false;
        })
        .await;
        let mut c = server.client().await;
        c.subscribe("one").await;
        c.subscribe("two").await;
        let refusal = |reply: &Value| reply["error"]["name"].as_str().map(str::to_owned);
        let third = c
            .request("#subscribe", Some(json!({"channel": "three"})))
            .await;
        assert_eq!(
            refusal(&third).as_deref(),
            Some("InvalidActionError"),
            "{third}"
        );
        c.request("#unsubscribe", Some(json!("two"))).await;
        let long = c
            .request("#subscribe", Some(json!({"channel": "x".repeat(17)})))
            .await;
        assert_eq!(
            refusal(&long).as_deref(),
            Some("InvalidActionError"),
            "{long}"
        );
        c.subscribe(&"y".repeat(16)).await;

        let publish = c.publish("one", json!(1)).await;
        assert_eq!(
            refusal(&publish).as_deref(),
            Some("InvalidActionError"),
            "{publish}"
        );
        // Server code still publishes.
        server
            .server
            .exchange()
            .publish("one", &json!(2))
            .await
            .unwrap();
        assert_eq!(Client::publication(&c.recv().await).1.as_deref(), Some("2"));
    })
    .await
}
