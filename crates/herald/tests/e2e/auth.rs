//! Authentication after the handshake: `#authenticate`, `#removeAuthToken`,
//! tokens issued by procedures and their expiry during a connection.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// Reads the next two frames, which must be the reply to `cid` and an event
/// push (in either order); returns (reply, push).
async fn reply_and_push(c: &mut Client, cid: u64) -> (Value, Value) {
    let a = c.recv_json().await;
    let b = c.recv_json().await;
    let (reply, push) = if a.get("rid").is_some() {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(reply["rid"], cid, "reply {reply} (push {push})");
    assert!(push.get("event").is_some(), "push {push} (reply {reply})");
    (reply, push)
}

/// Invokes `login` and returns the token pushed by `#setAuthToken`.
async fn login(c: &mut Client, user: &str, ttl: u64) -> String {
    let cid = c.cid();
    c.send_json(json!({"event": "login", "data": {"user": user, "ttl": ttl}, "cid": cid}))
        .await;
    let (reply, push) = reply_and_push(c, cid).await;
    assert_eq!(reply, json!({"rid": cid, "data": {"ok": 1}}));
    assert_eq!(push["event"], "#setAuthToken", "{push}");
    assert_eq!(push.as_object().unwrap().len(), 2, "{push}");
    let token = push["data"]["token"].as_str().expect("token").to_owned();
    let claims = token_claims(&token);
    assert_eq!(claims["sub"], user);
    token
}

#[tokio::test]
async fn authenticate_with_valid_token_authenticates_the_socket() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        assert_eq!(c.call("whoami", Value::Null).await, Value::Null);
        let exp = unix_now() + 600;
        let t = token(json!({"sub": "bob", "exp": exp}));
        let reply = c.request("#authenticate", Some(json!(t))).await;
        assert_eq!(
            reply["data"],
            json!({"isAuthenticated": true, "authError": null}),
            "{reply}"
        );
        assert_eq!(
            c.call("whoami", Value::Null).await,
            json!({"sub": "bob", "exp": exp})
        );
        // Now allowed on private channels (fixture rule).
        c.subscribe("private/bob").await;
    })
    .await
}

#[tokio::test]
async fn authenticate_with_bad_token_replies_error_and_removes_token() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.connect().await;
        let status = c
            .handshake(Some(&token(json!({"sub": "bob", "exp": unix_now() + 600}))))
            .await;
        assert_eq!(status["isAuthenticated"], true);

        let cid = c.cid();
        c.send_json(json!({"event": "#authenticate", "data": "garbage", "cid": cid}))
            .await;
        let (reply, push) = reply_and_push(&mut c, cid).await;
        assert_eq!(
            reply,
            json!({"rid": cid, "error": {"message": "jwt malformed", "name": "AuthTokenInvalidError", "isBadToken": true}})
        );
        assert_eq!(push, json!({"event": "#removeAuthToken"}));
        // The bad token replaced the good one: the socket is deauthenticated.
        assert_eq!(c.call("whoami", Value::Null).await, Value::Null);

        // An expired token is a bad token too.
        let cid = c.cid();
        let expired = token(json!({"sub": "bob", "exp": unix_now() - 10}));
        c.send_json(json!({"event": "#authenticate", "data": expired, "cid": cid}))
            .await;
        let (reply, push) = reply_and_push(&mut c, cid).await;
        assert_eq!(reply["error"]["name"], "AuthTokenExpiredError", "{reply}");
        assert_eq!(push, json!({"event": "#removeAuthToken"}));

        // The socket is still usable.
        assert_eq!(c.call("echo", json!(5)).await, json!(5));
    })
    .await
}

#[tokio::test]
async fn remove_auth_token_from_client_deauthenticates() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.connect().await;
        let t = token(json!({"sub": "carol"}));
        assert_eq!(c.handshake(Some(&t)).await["isAuthenticated"], true);
        assert_eq!(c.call("whoami", Value::Null).await, json!({"sub": "carol"}));

        c.send_text(r##"{"event":"#removeAuthToken"}"##).await;
        // Frames are handled in order: the invoke sees the token gone.
        assert_eq!(c.call("whoami", Value::Null).await, Value::Null);
        assert!(!server.server.socket(&c.id).unwrap().is_authenticated());
        let refused = c
            .request("#subscribe", Some(json!({"channel": "private/carol"})))
            .await;
        assert_eq!(refused["error"]["name"], "ForbiddenError", "{refused}");

        // With a cid (deauthenticate with rejectOnFailedDelivery) it is
        // acknowledged.
        c.send_text(format!(
            r##"{{"event":"#authenticate","data":"{t}","cid":30}}"##
        ))
        .await;
        assert_eq!(c.recv_json().await["data"]["isAuthenticated"], true);
        c.send_text(r##"{"event":"#removeAuthToken","cid":31}"##)
            .await;
        assert_eq!(c.recv().await, r#"{"rid":31}"#);
        assert_eq!(c.call("whoami", Value::Null).await, Value::Null);
    })
    .await
}

#[tokio::test]
async fn logout_procedure_pushes_remove_auth_token() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        login(&mut c, "dave", 600).await;
        let cid = c.cid();
        c.send_json(json!({"event": "logout", "cid": cid})).await;
        let (reply, push) = reply_and_push(&mut c, cid).await;
        // A unit procedure is acknowledged without data, as in the capture.
        assert_eq!(reply, json!({"rid": cid}));
        assert_eq!(push, json!({"event": "#removeAuthToken"}));
        assert_eq!(c.call("whoami", Value::Null).await, Value::Null);
    })
    .await
}

#[tokio::test]
async fn token_expiring_mid_connection_pushes_remove_auth_token() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        let t = login(&mut c, "u1", 1).await;
        let start = Instant::now();
        let exp = token_claims(&t)["exp"].as_u64().expect("exp");
        assert_eq!(
            c.call("whoami", Value::Null).await["sub"],
            "u1",
            "authenticated right after login"
        );

        let push = within_for(Duration::from_millis(2500), "token expiry", c.recv_json()).await;
        assert_eq!(push, json!({"event": "#removeAuthToken"}));
        assert!(
            unix_now() >= exp,
            "token removed before its exp ({exp}, now {})",
            unix_now()
        );
        assert!(start.elapsed() <= Duration::from_millis(2500));
        assert_eq!(c.call("whoami", Value::Null).await, Value::Null);
        assert!(!server.server.socket(&c.id).unwrap().is_authenticated());
    })
    .await
}

#[tokio::test]
async fn renewing_token_before_expiry_keeps_socket_authenticated() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        let first = login(&mut c, "u1", 1).await;
        let second = login(&mut c, "u1", 120).await;
        let exp1 = token_claims(&first)["exp"].as_u64().unwrap();
        let exp2 = token_claims(&second)["exp"].as_u64().unwrap();
        assert!(exp2 > exp1);

        // Wait past the first token's expiry (and the server's timer for it)
        // to show that nothing arrives: a sleep is the only way to observe
        // the absence of a push.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert!(unix_now() > exp1);

        c.send_text(r#"{"event":"whoami","cid":99}"#).await;
        let next = c.recv_json().await;
        assert_eq!(next["rid"], 99, "no #removeAuthToken expected, got {next}");
        assert_eq!(next["data"]["sub"], "u1");
        assert_eq!(next["data"]["exp"], exp2);
    })
    .await
}
