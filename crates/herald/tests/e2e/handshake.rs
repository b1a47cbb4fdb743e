//! The `#handshake` reply, and tokens presented in the handshake.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// The text of the handshake reply to cid 1 for `token`.
async fn handshake_text(server: &TestServer, token: Option<&str>) -> (Client, String) {
    let mut c = server.connect().await;
    let data = match token {
        Some(t) => json!({ "authToken": t }),
        None => json!({}),
    };
    c.send_json(json!({"event": "#handshake", "data": data, "cid": 1}))
        .await;
    let text = c.recv().await;
    (c, text)
}

/// Handshakes with a token that must be refused; returns the reply's `data`
/// and checks the `#removeAuthToken` push that follows a bad token.
async fn refused(server: &TestServer, token: &str) -> Value {
    let mut c = server.connect().await;
    let status = c.handshake(Some(token)).await;
    assert_eq!(status["isAuthenticated"], false, "{status}");
    assert_eq!(
        c.recv().await,
        r##"{"event":"#removeAuthToken"}"##,
        "a bad token is followed by #removeAuthToken"
    );
    // Unauthenticated but usable.
    assert_eq!(c.call("whoami", Value::Null).await, Value::Null);
    status["authError"].clone()
}

#[tokio::test]
async fn handshake_reply_has_socketcluster_shape() {
    bounded(async {
        let server =
            TestServer::fixture_with(|c| c.ping_timeout = Duration::from_millis(2500)).await;
        let (mut c, text) = handshake_text(&server, None).await;
        let reply: Value = serde_json::from_str(&text).unwrap();
        let id = reply["data"]["id"]
            .as_str()
            .expect("id is a string")
            .to_owned();
        assert_eq!(id.len(), 20, "{id}");
        assert!(
            id.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'),
            "{id}"
        );
        // Exact bytes, in socketcluster-server's key order, no authError.
        assert_eq!(
            text,
            format!(
                r#"{{"rid":1,"data":{{"id":"{id}","pingTimeout":2500,"isAuthenticated":false}}}}"#
            )
        );

        // A null token is no token.
        let (_c2, text2) = handshake_text(&server, None).await;
        let mut c3 = server.connect().await;
        c3.send_text(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##)
            .await;
        let text3 = c3.recv().await;
        for other in [&text2, &text3] {
            let v: Value = serde_json::from_str(other).unwrap();
            assert!(v["data"].get("authError").is_none(), "{other}");
            assert_ne!(v["data"]["id"], id.as_str(), "socket ids are unique");
        }

        // The session works and the server counts it.
        assert_eq!(c.call("echo", json!("x")).await, json!("x"));
        assert_eq!(server.server.client_count(), 3);
        assert_eq!(
            server.server.socket(&id).map(|s| s.id().to_owned()),
            Some(id)
        );
    })
    .await
}

#[tokio::test]
async fn garbage_token_gets_auth_error_then_remove_auth_token_and_socket_stays_usable() {
    bounded(async {
        let server =
            TestServer::fixture_with(|c| c.ping_timeout = Duration::from_millis(2500)).await;
        let (mut c, text) = handshake_text(&server, Some("garbage")).await;
        let reply: Value = serde_json::from_str(&text).unwrap();
        let id = reply["data"]["id"].as_str().unwrap();
        // Byte for byte what socketcluster-server 20 sends (reference capture).
        assert_eq!(
            text,
            format!(
                r#"{{"rid":1,"data":{{"id":"{id}","pingTimeout":2500,"authError":{{"message":"jwt malformed","name":"AuthTokenInvalidError","isBadToken":true}},"isAuthenticated":false}}}}"#
            )
        );
        assert_eq!(c.recv().await, r##"{"event":"#removeAuthToken"}"##);
        // Still usable, unauthenticated.
        assert_eq!(c.call("echo", json!({"a": 1})).await, json!({"a": 1}));
        assert_eq!(c.call("whoami", Value::Null).await, Value::Null);
        c.subscribe("c1").await;
        assert!(server.server.socket(id).unwrap().is_subscribed("c1"));
    })
    .await
}

#[tokio::test]
async fn expired_token_gets_auth_token_expired_error_with_expiry() {
    bounded(async {
        let server = TestServer::fixture().await;
        // 1700000000 is 2023-11-14T22:13:20Z.
        let expired = token(json!({"sub": "u1", "exp": 1_700_000_000u64}));
        let error = refused(&server, &expired).await;
        assert_eq!(
            error,
            json!({
                "message": "jwt expired",
                "name": "AuthTokenExpiredError",
                "expiry": "2023-11-14T22:13:20.000Z",
                "isBadToken": true
            })
        );
    })
    .await
}

#[tokio::test]
async fn token_signed_with_another_secret_gets_invalid_signature() {
    bounded(async {
        let server = TestServer::fixture().await;
        let foreign = token_with("not the server's secret", json!({"sub": "mallory"}));
        let error = refused(&server, &foreign).await;
        assert_eq!(
            error,
            json!({"message": "invalid signature", "name": "AuthTokenInvalidError", "isBadToken": true})
        );
    })
    .await
}

#[tokio::test]
async fn alg_none_token_is_refused_as_invalid() {
    bounded(async {
        let server = TestServer::fixture().await;
        let claims = json!({"sub": "mallory", "exp": unix_now() + 3600});
        for token in [
            forged_token(json!({"alg": "none", "typ": "JWT"}), claims.clone(), ""),
            forged_token(json!({"alg": "none", "typ": "JWT"}), claims.clone(), "c2ln"),
            forged_token(json!({"alg": "None"}), claims.clone(), ""),
        ] {
            let error = refused(&server, &token).await;
            assert_eq!(error["name"], "AuthTokenInvalidError", "{token}: {error}");
            assert_eq!(error["message"], "jwt signature is required", "{token}");
            assert_eq!(error["isBadToken"], true);
        }
    })
    .await
}

#[tokio::test]
async fn rs256_headed_token_to_hs256_server_gets_invalid_algorithm() {
    bounded(async {
        let server = TestServer::fixture().await;
        let claims = json!({"sub": "mallory", "exp": unix_now() + 3600});
        // Algorithm confusion: an RS256 header, "signed" with the HS256 secret.
        let real = token(claims.clone());
        let signature = real.rsplit('.').next().unwrap();
        let confused = forged_token(json!({"alg": "RS256", "typ": "JWT"}), claims, signature);
        let error = refused(&server, &confused).await;
        assert_eq!(
            error,
            json!({"message": "invalid algorithm", "name": "AuthTokenInvalidError", "isBadToken": true})
        );
    })
    .await
}

#[tokio::test]
async fn valid_token_authenticates_and_procedures_see_its_claims() {
    bounded(async {
        let server = TestServer::fixture().await;
        let exp = unix_now() + 3600;
        let t = token(json!({"sub": "alice", "role": "admin", "exp": exp}));
        let mut c = server.connect().await;
        let status = c.handshake(Some(&t)).await;
        assert_eq!(status["isAuthenticated"], true, "{status}");
        assert!(status.get("authError").is_none(), "{status}");
        // No #removeAuthToken: the next frame is the reply to whoami.
        c.send_text(r#"{"event":"whoami","cid":2}"#).await;
        let reply = c.recv_json().await;
        assert_eq!(
            reply,
            json!({"rid": 2, "data": {"sub": "alice", "role": "admin", "exp": exp}})
        );
        let socket = server.server.socket(&c.id).expect("socket registered");
        assert!(socket.is_authenticated());
        assert_eq!(socket.signed_auth_token().as_deref(), Some(t.as_str()));
        assert_eq!(socket.auth_claims().unwrap()["sub"], "alice");
    })
    .await
}
