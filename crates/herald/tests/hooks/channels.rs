//! The subscribe and publish hooks of a namespace: allow, deny with a named
//! error, the publish hook replacing the data, and a slow hook that does
//! not hold up the deliveries to its socket.

use std::time::Duration;

use herald::ChannelOptions;
use serde_json::json;

use crate::backend::Backend;
use crate::common::*;
use crate::{hook, ok, server};

#[tokio::test]
async fn the_subscribe_hook_allows_and_refuses_by_channel() {
    bounded(async {
        let backend = Backend::start(|call| async move {
            assert_eq!(call.body["hook"], "subscribe");
            if call.body["channel"] == "chat:secret" {
                ok(json!({"error": {"name": "ForbiddenError", "message": "members only"}}))
            } else {
                ok(json!({}))
            }
        })
        .await;
        let url = backend.url("subscribe");
        let server = server(|c| {
            c.namespaces.insert(
                "chat".into(),
                ChannelOptions {
                    subscribe_hook: Some(hook(url)),
                    ..ChannelOptions::default()
                },
            );
        })
        .await;
        let mut client = server.client().await;
        let reply = client
            .request(
                "#subscribe",
                Some(json!({"channel": "chat:secret", "data": {"invite": "x"}})),
            )
            .await;
        assert_eq!(reply["error"]["name"], "ForbiddenError", "{reply}");
        assert_eq!(reply["error"]["message"], "members only");
        client.subscribe("chat:open").await;
        // Channels outside the namespace never reach the backend.
        client.subscribe("news").await;
        let calls = backend.calls_of("subscribe");
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].body["data"], json!({"invite": "x"}));
        assert_eq!(calls[0].body["socket"]["id"], client.id.as_str());
    })
    .await;
}

#[tokio::test]
async fn the_publish_hook_refuses_or_replaces_the_data() {
    bounded(async {
        let backend = Backend::start(|call| async move {
            let text = call.body["data"]["text"].as_str().unwrap_or("").to_owned();
            if text.contains("spam") {
                ok(json!({"error": {"name": "SpamError", "message": "no spam"}}))
            } else {
                ok(json!({"data": {"text": text.to_uppercase(), "checked": true}}))
            }
        })
        .await;
        let url = backend.url("publish");
        let server = server(|c| {
            c.channels = ChannelOptions {
                publish_hook: Some(hook(url)),
                ..ChannelOptions::default()
            };
        })
        .await;
        let mut client = server.client().await;
        client.subscribe("room").await;
        let reply = client.publish("room", json!({"text": "buy spam"})).await;
        assert_eq!(reply["error"]["name"], "SpamError", "{reply}");
        let reply = client.publish("room", json!({"text": "hello"})).await;
        assert!(reply.get("error").is_none(), "{reply}");
        let (channel, data) = Client::publication(&client.recv().await);
        assert_eq!(channel, "room");
        let data: serde_json::Value = serde_json::from_str(&data.unwrap()).unwrap();
        assert_eq!(data, json!({"text": "HELLO", "checked": true}));
    })
    .await;
}

#[tokio::test]
async fn a_slow_hook_does_not_delay_deliveries_to_its_socket() {
    bounded(async {
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let gate = release.clone();
        let backend = Backend::start(move |_| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                ok(json!({}))
            }
        })
        .await;
        let url = backend.url("publish");
        let server = server(|c| {
            c.namespaces.insert(
                "slow".into(),
                ChannelOptions {
                    publish_hook: Some(hook(url)),
                    ..ChannelOptions::default()
                },
            );
        })
        .await;
        let mut client = server.client().await;
        client.subscribe("news").await;
        // A publication whose hook is pending...
        let cid = client.cid();
        client
            .send_json(
                json!({"event": "#publish", "data": {"channel": "slow:x", "data": 1}, "cid": cid}),
            )
            .await;
        backend.wait_calls("publish", 1).await;
        // ...while deliveries to the same socket keep flowing.
        for n in 0..3 {
            server
                .server
                .exchange()
                .publish("news", &json!({"n": n}))
                .await
                .unwrap();
            let (channel, data) = Client::publication(&client.recv().await);
            assert_eq!(channel, "news");
            assert_eq!(data.unwrap(), format!("{{\"n\":{n}}}"));
        }
        release.notify_one();
        let reply = within_for(
            Duration::from_secs(5),
            "the publish reply",
            client.reply_to(cid),
        )
        .await;
        assert!(reply.get("error").is_none(), "{reply}");
    })
    .await;
}
