//! Across two nodes sharing Redis (random key prefix): a socket that the
//! connect hook subscribed on node A receives a publication made on node B,
//! and the subscribe and publish hooks apply to publications crossing
//! nodes; the subscribe, RPC and refresh hooks of a socket run on the node
//! that holds it.

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

#[tokio::test]
async fn subscribe_rpc_and_refresh_hooks_run_on_the_node_that_holds_the_socket() {
    bounded(async {
        let backend = Backend::start(|call| async move {
            let node = call.body["node"].clone();
            match call.hook.as_str() {
                "subscribe" if call.body["channel"] == "chat:secret" => {
                    ok(json!({"error": {"name": "MembersOnlyError", "message": "members only"}}))
                }
                "rpc" => ok(json!({"data": {"answered_on": node}})),
                "refresh" => ok(json!({"claims": {
                    "sub": call.body["socket"]["user"],
                    "refreshed_on": node,
                    "exp": unix_now() + 600,
                }})),
                _ => ok(json!({})),
            }
        })
        .await;
        let prefix = format!("hooks-{:08x}:", rand::random::<u32>());
        let hooked = |c: &mut herald::Config| {
            c.hooks.rpc = Some(hook(backend.url("rpc")));
            c.hooks.refresh = Some(hook(backend.url("refresh")));
            c.namespaces.insert(
                "chat".into(),
                ChannelOptions {
                    subscribe_hook: Some(hook(backend.url("subscribe"))),
                    ..ChannelOptions::default()
                },
            );
        };
        let a = node(&prefix, hooked).await;
        let b = node(&prefix, hooked).await;
        let b_id = b.server.node_id().to_owned();

        // A socket on node B with a token near its expiry.
        let mut on_b = b.connect().await;
        let exp = unix_now() + 3;
        let status = on_b
            .handshake(Some(&token(json!({"sub": "ada", "exp": exp}))))
            .await;
        assert_eq!(status["isAuthenticated"], true, "{status}");

        // Subscribe: node B asks the backend; the refusal carries its name.
        let reply = on_b
            .request("#subscribe", Some(json!({"channel": "chat:secret"})))
            .await;
        assert_eq!(reply["error"]["name"], "MembersOnlyError", "{reply}");
        on_b.subscribe("chat:open").await;
        let calls = backend.calls_of("subscribe");
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls.iter().all(|c| c.body["node"] == b_id.as_str()));
        // The hook-allowed subscription receives a publication from node A.
        let mut on_a = a.client().await;
        within("node B's subscription to reach the broker", async {
            loop {
                let reply = on_a.publish("chat:open", json!({"n": 1})).await;
                assert!(reply.get("error").is_none(), "{reply}");
                if let Ok(frame) =
                    tokio::time::timeout(Duration::from_millis(200), on_b.recv()).await
                {
                    return frame;
                }
            }
        })
        .await;

        // RPC: answered by the backend on behalf of node B.
        let answer = on_b.call("whoami", json!(null)).await;
        assert_eq!(answer, json!({"answered_on": b_id}));

        // Refresh: node B asks for a fresh token before the old one expires.
        let set = within_for(
            Duration::from_secs(3),
            "#setAuthToken",
            on_b.expect_event("#setAuthToken"),
        )
        .await;
        assert!(unix_now() <= exp, "refreshed after the expiry");
        let claims = token_claims(set["data"]["token"].as_str().unwrap());
        assert_eq!(claims["refreshed_on"], b_id.as_str(), "{claims}");
        // Node A never called the backend: the socket is not there.
        for hook in ["subscribe", "rpc", "refresh"] {
            for call in backend.calls_of(hook) {
                assert_eq!(call.body["node"], b_id.as_str(), "{hook}: {:?}", call.body);
            }
        }
    })
    .await;
}
