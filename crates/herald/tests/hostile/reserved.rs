//! The reserved `#herald/` channels carry the cluster's own messages
//! (node announcements, messages to users): no client may publish or
//! subscribe there, and server code publishing through the [`Exchange`]
//! (`publish` or `publish_raw`) is refused too, so nobody can forge a
//! control message such as "disconnect user bob".
//!
//! [`Exchange`]: herald::Exchange

use herald::PublishError;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::common::*;

const RESERVED: &[&str] = &[
    "#herald/",
    "#herald/nodes",
    "#herald/user/bob",
    "#herald/user/../nodes",
    "#herald/history",
];

#[tokio::test]
async fn clients_cannot_publish_or_subscribe_to_reserved_channels() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut bob = server.connect().await;
        let bob_token = token(json!({"sub": "bob", "exp": unix_now() + 600}));
        assert_eq!(bob.handshake(Some(&bob_token)).await["isAuthenticated"], true);
        let mut mallory = server.client().await;
        for channel in RESERVED {
            let r = mallory
                .publish(channel, json!({"op": "disconnect", "code": 4000, "reason": "forged"}))
                .await;
            assert_eq!(r["error"]["name"], "InvalidActionError", "{channel}: {r}");
            // Without a cid: nothing is answered and nothing is delivered.
            mallory
                .send_json(json!({"event": "#publish", "data": {"channel": channel, "data": {"op": "disconnect"}}}))
                .await;
            let r = mallory.subscribe_with(channel, None).await;
            assert_eq!(r["error"]["name"], "InvalidActionError", "{channel}: {r}");
        }
        // Bob was neither disconnected nor sent anything: his next frame is
        // the reply to his own call.
        assert_eq!(bob.call("whoami", Value::Null).await["sub"], "bob");
        assert!(server.server.socket(&bob.id).is_some());
        // A case variant is an ordinary channel, not a reserved one.
        mallory.subscribe("#HERALD/nodes").await;
        let r = mallory.publish("#HERALD/nodes", json!(1)).await;
        assert!(r.get("error").is_none(), "{r}");
        let (channel, data) = Client::publication(&mallory.recv().await);
        assert_eq!((channel.as_str(), data.as_deref()), ("#HERALD/nodes", Some("1")));
    })
    .await
}

#[tokio::test]
async fn server_code_cannot_publish_to_reserved_channels() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut bob = server.connect().await;
        let bob_token = token(json!({"sub": "bob", "exp": unix_now() + 600}));
        assert_eq!(
            bob.handshake(Some(&bob_token)).await["isAuthenticated"],
            true
        );
        let exchange = server.server.exchange();
        for channel in RESERVED {
            let raw =
                RawValue::from_string(r#"{"op":"disconnect","code":4000}"#.to_owned()).unwrap();
            let e = exchange.publish_raw(channel, Some(raw)).await.unwrap_err();
            assert!(
                matches!(e, PublishError::Refused(ref p) if p.name == "InvalidActionError"),
                "{channel}: {e}"
            );
            let e = exchange.publish_raw(channel, None).await.unwrap_err();
            assert!(matches!(e, PublishError::Refused(_)), "{channel}: {e}");
            let e = exchange
                .publish(channel, &json!({"op": "disconnect"}))
                .await
                .unwrap_err();
            assert!(matches!(e, PublishError::Refused(_)), "{channel}: {e}");
        }
        assert_eq!(bob.call("whoami", Value::Null).await["sub"], "bob");
    })
    .await
}
