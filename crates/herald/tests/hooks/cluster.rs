//! Across two nodes sharing Redis (random key prefix): a socket that the
//! connect hook subscribed on node A receives a publication made on node B,
//! and the subscribe and publish hooks apply to publications crossing
//! nodes.

use std::time::Duration;

use herald::{ChannelOptions, Server};
use herald_broker_redis::{RedisBroker, RedisOptions};
use serde_json::json;

use crate::backend::Backend;
use crate::common::*;
use crate::{hook, ok};

async fn node(prefix: &str, configure: impl FnOnce(&mut herald::Config)) -> TestServer {
    let options = RedisOptions {
        prefix: prefix.to_owned(),
        ..RedisOptions::default()
    };
    let broker = RedisBroker::connect(&["redis://127.0.0.1:6379".to_owned()], options)
        .await
        .expect("Redis on 127.0.0.1:6379 (scripts/services.sh starts it)");
    TestServer::start(
        Server::builder()
            .auth_secret(SECRET)
            .broker(broker)
            .configure(configure),
    )
    .await
}

#[tokio::test]
async fn a_hook_subscribed_socket_on_one_node_receives_a_publication_from_another() {
    bounded(async {
        let backend = Backend::start(|call| async move {
            match call.hook.as_str() {
                "connect" => ok(json!({"user": "ada", "channels": ["user:ada"]})),
                "publish" => ok(
                    json!({"data": {"text": call.body["data"]["text"], "via": call.body["node"]}}),
                ),
                _ => ok(json!({})),
            }
        })
        .await;
        let prefix = format!("hooks-{:08x}:", rand::random::<u32>());
        let channels = ChannelOptions {
            publish_hook: Some(hook(backend.url("publish"))),
            ..ChannelOptions::default()
        };
        let (connect, c2) = (backend.url("connect"), channels.clone());
        let a = node(&prefix, |c| {
            c.hooks.connect = Some(hook(connect));
            c.namespaces.insert("user".into(), c2);
        })
        .await;
        let b = node(&prefix, |c| {
            c.namespaces.insert("user".into(), channels);
        })
        .await;

        let mut on_a = a.connect().await;
        on_a.handshake(None).await;
        on_a.expect_event("#setAuthToken").await;
        let subscribed = on_a.expect_event("#herald/subscribed").await;
        assert_eq!(subscribed["data"]["channel"], "user:ada");
        within("the server-side subscription on node A", async {
            while a.server.subscriber_count("user:ada") == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        on_a.subscribe("user:ada").await;

        let mut on_b = b.client().await;
        let reply = on_b.publish("user:ada", json!({"text": "hi ada"})).await;
        assert!(reply.get("error").is_none(), "{reply}");
        let (channel, data) = Client::publication(&on_a.recv().await);
        assert_eq!(channel, "user:ada");
        let data: serde_json::Value = serde_json::from_str(&data.unwrap()).unwrap();
        // Node B's publish hook ran once, and its data crossed to node A.
        assert_eq!(data, json!({"text": "hi ada", "via": b.server.node_id()}));
        assert_eq!(backend.calls_of("publish").len(), 1);
    })
    .await;
}
