//! The token's `channels` claim: server-side subscriptions made at
//! authentication, through the one server-side subscribe path (a
//! `#herald/subscribed` push; history, presence; the namespace's rule and
//! the subscribe middleware not asked), revoked when the token stops
//! granting them; and the
//! way clients that drop publications of channels they did not subscribe
//! to receive them (they subscribe, and the grant answers).

use futures_util::StreamExt as _;
use herald::{ChannelOptions, Rule};
use serde_json::{Value, json};

use crate::common::*;

/// The fixture with `user:` channels only tokens can open (clients may not
/// subscribe), and `inbox:` with history and presence, also token-only.
async fn server() -> TestServer {
    TestServer::start(
        fixture()
            .namespace(
                "user",
                ChannelOptions {
                    subscribe: Rule::None,
                    publish: Rule::None,
                    ..ChannelOptions::default()
                },
            )
            .namespace(
                "inbox",
                ChannelOptions {
                    subscribe: Rule::None,
                    publish: Rule::None,
                    history_size: 10,
                    recover: true,
                    presence: true,
                    ..ChannelOptions::default()
                },
            ),
    )
    .await
}

fn granting(user: &str, channels: Value) -> String {
    token(json!({"sub": user, "channels": channels, "exp": unix_now() + 600}))
}

/// Reads the `#herald/subscribed` push of a server-side subscription to
/// `channel` and returns its data.
async fn pushed(c: &mut Client, channel: &str) -> Value {
    let push = c.expect_event("#herald/subscribed").await;
    assert_eq!(push["data"]["channel"], channel, "{push}");
    push["data"].clone()
}

/// Waits until the server has `c`'s socket subscribed (or not) to `channel`.
async fn subscribed(server: &TestServer, c: &Client, channel: &str, yes: bool) {
    let socket = server.server.socket(&c.id).expect("socket");
    eventually(&format!("subscribed to {channel}: {yes}"), || {
        socket.is_subscribed(channel) == yes
    })
    .await;
}

#[tokio::test]
async fn a_token_subscribes_its_socket_to_its_channels_at_the_handshake() {
    bounded(async {
        let server = server().await;
        let mut c = server.connect().await;
        let status = c
            .handshake(Some(&granting("ada", json!(["user:ada", "news"]))))
            .await;
        assert_eq!(status["isAuthenticated"], true, "{status}");
        // The client is told, in the token's order; no position on a
        // channel without history.
        let data = pushed(&mut c, "user:ada").await;
        assert_eq!(data, json!({"channel": "user:ada"}));
        pushed(&mut c, "news").await;
        subscribed(&server, &c, "user:ada", true).await;
        subscribed(&server, &c, "news", true).await;
        // The socket receives what is published there, without having
        // asked (a raw client sees every #publish frame).
        server
            .server
            .exchange()
            .publish("user:ada", &json!({"note": "for ada"}))
            .await
            .unwrap();
        let (channel, data) = Client::publication(&c.recv().await);
        assert_eq!(channel, "user:ada");
        assert_eq!(data.as_deref(), Some(r#"{"note":"for ada"}"#));

        // The client's own subscribe of a granted channel is answered at
        // once, though the namespace refuses client subscribes...
        c.subscribe("user:ada").await;
        // ...and the grant is the only way in.
        let reply = c
            .request("#subscribe", Some(json!({"channel": "user:bob"})))
            .await;
        assert_eq!(reply["error"]["name"], "ForbiddenError", "{reply}");
        let mut other = server.client().await;
        let reply = other
            .request("#subscribe", Some(json!({"channel": "user:ada"})))
            .await;
        assert_eq!(reply["error"]["name"], "ForbiddenError", "{reply}");
    })
    .await
}

#[tokio::test]
async fn history_and_presence_apply_to_granted_channels() {
    bounded(async {
        let server = server().await;
        let mut c = server.connect().await;
        c.handshake(Some(&granting("ada", json!(["inbox:ada"]))))
            .await;
        // On a channel with history the push carries the stream position.
        let at = pushed(&mut c, "inbox:ada").await;
        assert_eq!(at["offset"], 0, "{at}");
        assert!(at["epoch"].is_string(), "{at}");
        subscribed(&server, &c, "inbox:ada", true).await;
        let p = server
            .server
            .exchange()
            .publish("inbox:ada", &json!("one"))
            .await
            .unwrap()
            .expect("a history channel has positions");
        let (channel, data, offset, epoch) = c.recv_positioned().await;
        assert_eq!(
            (channel.as_str(), data.as_deref()),
            ("inbox:ada", Some("\"one\""))
        );
        assert_eq!((offset, epoch.as_str()), (p.offset, p.epoch.as_ref()));
        // Presence lists the socket with its user.
        let presence = c
            .request("#herald/presence", Some(json!({"channel": "inbox:ada"})))
            .await;
        assert_eq!(
            presence["data"]["clients"][&c.id]["user"], "ada",
            "{presence}"
        );
        // A subscribe that recovers from before the publication gets it.
        let reply = c.subscribe_with("inbox:ada", Some((0, &epoch))).await;
        assert_eq!(reply["data"]["recovered"], true, "{reply}");
        let (_, data, recovered, _) = c.recv_positioned().await;
        assert_eq!((data.as_deref(), recovered), (Some("\"one\""), p.offset));
    })
    .await
}

#[tokio::test]
async fn a_new_token_or_none_revokes_what_the_old_one_granted() {
    bounded(async {
        let server = server().await;
        let mut c = server.connect().await;
        c.handshake(Some(&granting("ada", json!(["user:ada", "news"]))))
            .await;
        pushed(&mut c, "user:ada").await;
        pushed(&mut c, "news").await;
        subscribed(&server, &c, "news", true).await;

        // A new token granting less: the socket leaves what is no longer
        // granted and is told; it joins what is newly granted.
        let reply = c
            .request(
                "#authenticate",
                Some(json!(granting("ada", json!(["user:ada", "sports"])))),
            )
            .await;
        assert_eq!(reply["data"]["isAuthenticated"], true, "{reply}");
        let kick = c.expect_event("#kickOut").await;
        assert_eq!(kick["data"]["channel"], "news", "{kick}");
        assert_eq!(
            kick["data"]["message"],
            "The auth token no longer grants this channel"
        );
        pushed(&mut c, "sports").await;
        subscribed(&server, &c, "sports", true).await;
        subscribed(&server, &c, "news", false).await;
        assert!(
            server
                .server
                .socket(&c.id)
                .unwrap()
                .is_subscribed("user:ada")
        );

        // Deauthenticated: every grant goes.
        c.send_json(json!({"event": "#removeAuthToken"})).await;
        let mut kicked: Vec<String> = Vec::new();
        for _ in 0..2 {
            let kick = c.expect_event("#kickOut").await;
            kicked.push(kick["data"]["channel"].as_str().unwrap().to_owned());
        }
        kicked.sort();
        assert_eq!(kicked, ["sports", "user:ada"]);
        subscribed(&server, &c, "user:ada", false).await;
    })
    .await
}

#[tokio::test]
async fn a_malformed_channels_claim_refuses_the_token() {
    bounded(async {
        let server = server().await;
        for bad in [json!("user:ada"), json!(["user:ada", 5]), json!({"a": 1})] {
            let mut c = server.connect().await;
            let status = c.handshake(Some(&granting("ada", bad.clone()))).await;
            assert_eq!(status["isAuthenticated"], false, "{bad}: {status}");
            assert_eq!(
                status["authError"]["message"],
                "jwt claim channels must be an array of channel names",
                "{bad}"
            );
        }
        // A server that turns the claim off ignores it.
        let off = TestServer::fixture_with(|c| c.channels_claim = String::new()).await;
        let mut c = off.connect().await;
        let status = c.handshake(Some(&granting("ada", json!("whatever")))).await;
        assert_eq!(status["isAuthenticated"], true, "{status}");
    })
    .await
}

#[tokio::test]
async fn the_rust_client_receives_publications_of_a_granted_channel() {
    bounded(async {
        let server = server().await;
        let client = herald_client::Client::connect(server.url()).await.unwrap();
        client
            .authenticate(&granting("ada", json!(["user:ada"])))
            .await
            .unwrap();
        // Like the official client, it delivers the channels it subscribed
        // to: it subscribes, and the grant lets it.
        let mut sub = client.subscribe("user:ada").await.expect("granted");
        server
            .server
            .exchange()
            .publish("user:ada", &json!({"n": 1}))
            .await
            .unwrap();
        let p = within("the publication", sub.next())
            .await
            .expect("open")
            .expect("a publication");
        assert_eq!(p.data, json!({"n": 1}));
        client.close().await;
    })
    .await
}

/// Refuses every client subscribe.
struct NoSubscribes;

#[async_trait::async_trait]
impl herald::Middleware for NoSubscribes {
    async fn subscribe(
        &self,
        _socket: &herald::Socket,
        request: &mut herald::SubscribeRequest,
    ) -> Result<(), herald::ErrorPayload> {
        Err(herald::ErrorPayload::new(
            "NoSubscribesError",
            format!("no subscribe to {}", request.channel()),
        ))
    }
}

#[tokio::test]
async fn a_grant_is_the_servers_authority_the_subscribe_middleware_is_not_asked() {
    bounded(async {
        let server = TestServer::start(fixture().middleware(NoSubscribes)).await;
        let mut c = server.connect().await;
        c.handshake(Some(&granting("ada", json!(["news"])))).await;
        pushed(&mut c, "news").await;
        subscribed(&server, &c, "news", true).await;
        // The client's subscribe of the channel it holds is answered;
        // any other is refused by the middleware.
        c.subscribe("news").await;
        let reply = c
            .request("#subscribe", Some(json!({"channel": "sports"})))
            .await;
        assert_eq!(reply["error"]["name"], "NoSubscribesError", "{reply}");
    })
    .await
}
