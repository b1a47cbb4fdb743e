//! Presence: who is subscribed, counts, join and leave events, and the
//! refresh that keeps entries alive.

use std::time::Duration;

use herald::ChannelOptions;
use serde_json::json;

use crate::common::*;

fn presence(join_leave: bool) -> ChannelOptions {
    ChannelOptions {
        presence: true,
        join_leave,
        ..ChannelOptions::default()
    }
}

async fn server() -> TestServer {
    TestServer::start(
        fixture()
            .namespace("room", presence(true))
            .namespace("quiet", presence(false))
            .configure(|c| c.presence_ttl = Duration::from_millis(600)),
    )
    .await
}

async fn as_user(server: &TestServer, user: &str, info: serde_json::Value) -> Client {
    let mut c = server.connect().await;
    let t = token(json!({"sub": user, "info": info}));
    assert_eq!(c.handshake(Some(&t)).await["isAuthenticated"], true);
    c
}

#[tokio::test]
async fn presence_lists_and_counts_subscribers() {
    bounded(async {
        let server = server().await;
        let mut ann = as_user(&server, "ann", json!({"name": "Ann"})).await;
        let mut ann2 = as_user(&server, "ann", json!({"name": "Ann"})).await;
        let mut anon = server.client().await;
        for c in [&mut ann, &mut ann2, &mut anon] {
            assert!(
                c.subscribe_with("quiet:1", None)
                    .await
                    .get("error")
                    .is_none()
            );
        }
        let list = anon
            .call("#herald/presence", json!({"channel": "quiet:1"}))
            .await;
        let clients = list["clients"].as_object().expect("clients");
        assert_eq!(clients.len(), 3, "{list}");
        assert_eq!(
            clients[&ann.id],
            json!({"user": "ann", "info": {"name": "Ann"}})
        );
        assert_eq!(clients[&anon.id], json!({"user": null, "info": null}));
        let stats = anon
            .call("#herald/presenceStats", json!({"channel": "quiet:1"}))
            .await;
        assert_eq!(stats, json!({"clients": 3, "users": 1}));
        // Server code reads the same.
        let list = server.server.presence("quiet:1").await.unwrap();
        assert_eq!(list.len(), 3);
        // Leaving by unsubscribe and by closing.
        let r = ann2.request("#unsubscribe", Some(json!("quiet:1"))).await;
        assert!(r.get("error").is_none());
        let anon_id = anon.id.clone();
        anon.close(1000, "").await;
        let mut left = 0;
        for _ in 0..200 {
            left = server
                .server
                .presence_stats("quiet:1")
                .await
                .unwrap()
                .clients;
            if left == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(left, 1);
        let list = server.server.presence("quiet:1").await.unwrap();
        assert!(list.contains_key(&ann.id) && !list.contains_key(&anon_id));
        // Entries outlive presence_ttl while refreshed.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let stats = ann
            .call("#herald/presenceStats", json!({"channel": "quiet:1"}))
            .await;
        assert_eq!(stats["clients"], 1, "refreshed entries stay");
        // A channel without presence.
        let e = ann
            .invoke("#herald/presence", json!({"channel": "plain"}))
            .await
            .unwrap_err();
        assert_eq!(e["name"], "NotAvailableError");
    })
    .await
}

#[tokio::test]
async fn join_and_leave_events_reach_subscribers() {
    bounded(async {
        let server = server().await;
        let mut watcher = server.client().await;
        watcher.subscribe_with("room:1", None).await;
        let own = watcher.expect_event("#herald/join").await;
        assert_eq!(own["data"]["client"], watcher.id.as_str());
        let mut bob = as_user(&server, "bob", json!(null)).await;
        bob.subscribe_with("room:1", None).await;
        let join = watcher.expect_event("#herald/join").await;
        assert_eq!(
            join["data"],
            json!({"channel": "room:1", "client": bob.id, "user": "bob"})
        );
        let bob_id = bob.id.clone();
        bob.close(1000, "").await;
        let leave = watcher.expect_event("#herald/leave").await;
        assert_eq!(
            leave["data"],
            json!({"channel": "room:1", "client": bob_id, "user": "bob"})
        );
    })
    .await
}
