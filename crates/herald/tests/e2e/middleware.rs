//! Middleware: the fixture's channel rules, custom inbound middleware that
//! rewrites publications, outbound per-subscriber middleware, and refusals
//! at the HTTP upgrade and at the handshake.

use async_trait::async_trait;
use herald::{
    Claims, ErrorPayload, Middleware, Publication, PublishOut, PublishOutMiddleware,
    PublishRequest, Rejection, RequestInfo, Socket,
};
use http::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn private_channels_need_authentication() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        c.send_text(r##"{"event":"#subscribe","data":{"channel":"private/x"},"cid":2}"##)
            .await;
        assert_eq!(
            c.recv().await,
            r#"{"rid":2,"error":{"message":"private/x requires authentication","name":"ForbiddenError"}}"#
        );
        assert_eq!(server.server.subscriber_count("private/x"), 0);

        c.call("login", json!({"user": "u"})).await;
        c.subscribe("private/x").await;
        assert_eq!(server.server.subscriber_count("private/x"), 1);
    })
    .await
}

#[tokio::test]
async fn readonly_channels_refuse_client_publish() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        c.subscribe("readonly/feed").await;
        c.send_text(r##"{"event":"#publish","data":{"channel":"readonly/feed","data":"x"},"cid":3}"##)
            .await;
        // Refused with an error reply, and not delivered: the next
        // publication is the one made by server code.
        assert_eq!(
            c.recv().await,
            r#"{"rid":3,"error":{"message":"clients may not publish to readonly/feed","name":"ForbiddenError"}}"#
        );
        server
            .server
            .exchange()
            .publish("readonly/feed", &json!("from server"))
            .await
            .unwrap();
        assert_eq!(
            c.recv().await,
            r##"{"event":"#publish","data":{"channel":"readonly/feed","data":"from server"}}"##
        );
    })
    .await
}

/// Wraps every publication on `stamped/*` with its publisher's id.
struct Stamp;

#[async_trait]
impl Middleware for Stamp {
    async fn publish_in(
        &self,
        socket: &Socket,
        request: &mut PublishRequest,
    ) -> Result<(), ErrorPayload> {
        if request.channel().starts_with("stamped/") {
            request.data = Some(json!({"from": socket.id(), "body": request.data.take()}));
        }
        Ok(())
    }
}

#[tokio::test]
async fn publish_middleware_changes_the_data_subscribers_get() {
    bounded(async {
        let server = TestServer::start(fixture().middleware(Stamp)).await;
        let mut sub = server.client().await;
        let mut publisher = server.client().await;
        sub.subscribe("stamped/room").await;
        sub.subscribe("plain").await;
        publisher.publish("stamped/room", json!({"text": "hi"})).await;
        publisher.publish("plain", json!({"text": "as is"})).await;
        let frame = sub.recv_json().await;
        assert_eq!(
            frame,
            json!({"event": "#publish", "data": {"channel": "stamped/room", "data": {"from": publisher.id, "body": {"text": "hi"}}}})
        );
        assert_eq!(
            sub.recv().await,
            r##"{"event":"#publish","data":{"channel":"plain","data":{"text":"as is"}}}"##
        );
    })
    .await
}

/// Per subscriber (chosen by the upgrade URL's query): drop, replace, or
/// deliver publications on `mw/out`.
struct PerSubscriber;

#[async_trait]
impl PublishOutMiddleware for PerSubscriber {
    async fn publish_out(&self, socket: &Socket, publication: &Publication) -> PublishOut {
        if &*publication.channel != "mw/out" {
            return PublishOut::Deliver;
        }
        match socket.request().uri.query() {
            Some("role=drop") => PublishOut::Drop,
            Some("role=replace") => {
                let was: Value =
                    serde_json::from_str(publication.data.as_ref().unwrap().get()).unwrap();
                PublishOut::Replace(json!({"replaced": true, "was": was}))
            }
            _ => PublishOut::Deliver,
        }
    }
}

#[tokio::test]
async fn publish_out_middleware_drops_for_one_subscriber_and_replaces_for_another() {
    bounded(async {
        let server = TestServer::start(fixture().publish_out_middleware(PerSubscriber)).await;
        let mut subs = Vec::new();
        for query in ["role=plain", "role=drop", "role=replace"] {
            let mut c = server.connect_query(query).await;
            c.handshake(None).await;
            c.subscribe("mw/out").await;
            c.subscribe("sentinel").await;
            subs.push(c);
        }
        let mut publisher = server.client().await;
        publisher.publish("mw/out", json!({"v": 1})).await;
        publisher.publish("sentinel", json!("s")).await;

        let sentinel = r##"{"event":"#publish","data":{"channel":"sentinel","data":"s"}}"##;
        let [plain, drop, replace] = &mut subs[..] else {
            unreachable!()
        };
        assert_eq!(
            plain.recv().await,
            r##"{"event":"#publish","data":{"channel":"mw/out","data":{"v":1}}}"##
        );
        assert_eq!(plain.recv().await, sentinel);
        assert_eq!(drop.recv().await, sentinel, "dropped for this subscriber");
        assert_eq!(
            replace.recv_json().await,
            json!({"event": "#publish", "data": {"channel": "mw/out", "data": {"replaced": true, "was": {"v": 1}}}})
        );
        assert_eq!(replace.recv().await, sentinel);
    })
    .await
}

/// Refuses upgrades with `?deny=1` and handshakes by query or by claims.
struct Gate;

#[async_trait]
impl Middleware for Gate {
    async fn upgrade(&self, request: &RequestInfo) -> Result<(), Rejection> {
        if request.uri.query() == Some("deny=1") {
            return Err(Rejection::new(StatusCode::FORBIDDEN, "go away"));
        }
        Ok(())
    }

    async fn handshake(
        &self,
        socket: &Socket,
        claims: Option<&Claims>,
    ) -> Result<(), ErrorPayload> {
        if claims.is_some_and(|c| c.get("banned") == Some(&Value::Bool(true))) {
            return Err(ErrorPayload::new("BannedError", "banned user"));
        }
        match socket.request().uri.query() {
            Some("hs=reject") => Err(ErrorPayload::new("HandshakeRejectedError", "not today")),
            Some("hs=code") => {
                Err(ErrorPayload::new("HandshakeRejectedError", "custom code")
                    .with("statusCode", 4403))
            }
            _ => Ok(()),
        }
    }
}

#[tokio::test]
async fn upgrade_middleware_rejects_with_http_403() {
    bounded(async {
        let server = TestServer::start(fixture().middleware(Gate)).await;
        match Client::try_connect(&format!("{}?deny=1", server.url())).await {
            Err(tokio_websockets::Error::Upgrade(
                tokio_websockets::upgrade::Error::DidNotSwitchProtocols(status),
            )) => assert_eq!(status, 403),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("the upgrade was accepted"),
        }
        // The body carries the rejection's message.
        let response = http_request(
            server.addr,
            "GET /socketcluster/?deny=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 403"), "{response}");
        assert!(response.ends_with("go away"), "{response}");
        assert!(server.server.sockets().is_empty());

        // Others get in.
        let mut c = server.client().await;
        assert_eq!(c.call("echo", json!(1)).await, json!(1));
    })
    .await
}

#[tokio::test]
async fn handshake_middleware_rejection_replies_error_then_closes_4008() {
    bounded(async {
        let server = TestServer::start(fixture().middleware(Gate)).await;

        let mut c = server.connect_query("hs=reject").await;
        c.send_text(r##"{"event":"#handshake","data":{},"cid":1}"##)
            .await;
        assert_eq!(
            c.recv().await,
            // socketcluster-server's bytes: the close code as `statusCode`.
            r#"{"rid":1,"error":{"message":"not today","name":"HandshakeRejectedError","statusCode":4008}}"#
        );
        let (code, reason) = c.expect_close().await;
        assert_eq!((code, reason.as_str()), (4008, "not today"));

        // The refusal sees the handshake token's claims.
        let mut c = server.connect().await;
        let banned = token(json!({"sub": "eve", "banned": true}));
        c.send_json(json!({"event": "#handshake", "data": {"authToken": banned}, "cid": 1}))
            .await;
        let reply = c.recv_json().await;
        assert_eq!(reply["error"]["name"], "BannedError", "{reply}");
        assert_eq!(c.expect_close().await.0, 4008);

        // A statusCode in 4000-4999 is used as the close code.
        let mut c = server.connect_query("hs=code").await;
        c.send_text(r##"{"event":"#handshake","data":{},"cid":1}"##)
            .await;
        assert_eq!(c.recv_json().await["error"]["statusCode"], 4403);
        assert_eq!(c.expect_close().await.0, 4403);

        assert_eq!(server.server.client_count(), 0);
    })
    .await
}
