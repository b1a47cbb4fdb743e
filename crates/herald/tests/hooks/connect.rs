//! The connect hook: allow, deny with a named error, a token / user and
//! info / channels returned, the timeout, the failure outcomes, the
//! forwarded request and its signature.

use std::time::Duration;

use axum::http::StatusCode;
use herald::{ChannelOptions, HookEndpoint, OnFailure, Rule};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::backend::Backend;
use crate::common::*;
use crate::{hook, ok, server};

#[tokio::test]
async fn allows_and_authenticates_with_user_info_and_channels() {
    bounded(async {
        let backend = Backend::start(|call| async move {
            assert_eq!(call.body["hook"], "connect");
            ok(json!({
                "user": "ada",
                "info": {"name": "Ada"},
                "channels": ["private:ada"],
            }))
        })
        .await;
        let url = backend.url("connect");
        let server = server(|c| {
            c.hooks.connect = Some(hook(url));
            c.hooks.secret = Some("hook-secret".into());
            c.namespaces.insert(
                "private".into(),
                ChannelOptions {
                    subscribe: Rule::None,
                    ..ChannelOptions::default()
                },
            );
        })
        .await;
        let mut client = server.connect_query("room=7").await;
        let status = client.handshake(None).await;
        assert_eq!(status["isAuthenticated"], true, "{status}");
        let set = client.expect_event("#setAuthToken").await;
        let claims = token_claims(set["data"]["token"].as_str().unwrap());
        assert_eq!(claims["sub"], "ada");
        assert_eq!(claims["info"], json!({"name": "Ada"}));
        // The server-side subscription is announced to the client.
        let subscribed = client.expect_event("#herald/subscribed").await;
        assert_eq!(subscribed["data"]["channel"], "private:ada");

        // What the backend received, and how it can trust it.
        let call = &backend.calls_of("connect")[0];
        assert_eq!(call.body["socket"]["id"], client.id.as_str());
        assert_eq!(call.body["socket"]["user"], Value::Null);
        assert_eq!(call.body["query"], "room=7");
        assert_eq!(call.body["node"], server.server.node_id());
        assert!(call.body["headers"].is_object(), "{}", call.body);
        assert_eq!(call.headers["x-herald-hook"], "connect");
        let timestamp = call.headers["x-herald-timestamp"].to_str().unwrap();
        assert!(timestamp.parse::<u64>().unwrap().abs_diff(unix_now()) < 60);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"hook-secret").unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&call.raw);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            call.headers["x-herald-signature"].to_str().unwrap(),
            format!("sha256={expected}")
        );

        // The hook's channel is subscribed server-side: publications reach
        // the socket; its own #subscribe to it is answered at once, while
        // any other socket is refused by the namespace's rule.
        within("the server-side subscription", async {
            while server.server.subscriber_count("private:ada") == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        client.subscribe("private:ada").await;
        server
            .server
            .exchange()
            .publish("private:ada", &json!({"n": 1}))
            .await
            .unwrap();
        let (channel, data) = Client::publication(&client.recv().await);
        assert_eq!(
            (channel.as_str(), data.as_deref()),
            ("private:ada", Some(r#"{"n":1}"#))
        );
        let mut other = server.connect().await;
        other.handshake(None).await;
        other.expect_event("#setAuthToken").await;
        let reply = other
            .request("#subscribe", Some(json!({"channel": "private:bob"})))
            .await;
        assert_eq!(reply["error"]["name"], "ForbiddenError", "{reply}");
    })
    .await;
}

#[tokio::test]
async fn a_handshake_token_reaches_the_backend_and_a_returned_token_replaces_it() {
    bounded(async {
        let backend = Backend::start(|call| async move {
            let user = call.body["socket"]["user"].clone();
            assert_eq!(call.body["socket"]["claims"]["role"], "guest");
            let token = token(json!({"sub": user, "role": "member", "exp": unix_now() + 600}));
            ok(json!({ "token": token }))
        })
        .await;
        let url = backend.url("connect");
        let server = server(|c| c.hooks.connect = Some(hook(url))).await;
        let mut client = server.connect().await;
        let status = client
            .handshake(Some(&token(json!({"sub": "grace", "role": "guest"}))))
            .await;
        assert_eq!(status["isAuthenticated"], true);
        let set = client.expect_event("#setAuthToken").await;
        let claims = token_claims(set["data"]["token"].as_str().unwrap());
        assert_eq!(
            (claims["sub"].clone(), claims["role"].clone()),
            (json!("grace"), json!("member"))
        );
        let socket = server.server.socket(&client.id).unwrap();
        assert_eq!(socket.auth_claims().unwrap()["role"], "member");
    })
    .await;
}

#[tokio::test]
async fn an_empty_answer_allows_without_authenticating() {
    bounded(async {
        let backend = Backend::start(|_| async { ok(json!({})) }).await;
        let url = backend.url("connect");
        let server = server(|c| c.hooks.connect = Some(hook(url))).await;
        let mut client = server.connect().await;
        let status = client.handshake(None).await;
        assert_eq!(status["isAuthenticated"], false);
        assert!(!server.server.socket(&client.id).unwrap().is_authenticated());
        assert_eq!(backend.calls_of("connect").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_refusal_reaches_the_client_as_its_named_error_and_closes() {
    bounded(async {
        let backend = Backend::start(|_| async {
            ok(json!({"error": {"name": "BannedError", "message": "not today", "until": 5}}))
        })
        .await;
        let url = backend.url("connect");
        let server = server(|c| c.hooks.connect = Some(hook(url))).await;
        let mut client = server.connect().await;
        let reply = client.request("#handshake", Some(json!({}))).await;
        assert_eq!(reply["error"]["name"], "BannedError", "{reply}");
        assert_eq!(reply["error"]["message"], "not today");
        assert_eq!(reply["error"]["until"], 5);
        // The close code, as socketcluster-server adds it: the official
        // client closes its side with it.
        assert_eq!(reply["error"]["statusCode"], 4008);
        assert_eq!(client.expect_close().await, (4008, "not today".into()));
    })
    .await;
}

#[tokio::test]
async fn a_slow_backend_times_out_and_denies_by_default() {
    bounded(async {
        let backend = Backend::start(|_| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            ok(json!({}))
        })
        .await;
        let url = backend.url("connect");
        let server = server(|c| {
            c.hooks.connect = Some(HookEndpoint::new(url));
            c.hooks.timeout = Duration::from_millis(200);
        })
        .await;
        let mut client = server.connect().await;
        let started = std::time::Instant::now();
        let reply = client.request("#handshake", Some(json!({}))).await;
        assert_eq!(reply["error"]["name"], "HookTimeoutError", "{reply}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(client.expect_close().await.0, 4008);
    })
    .await;
}

#[tokio::test]
async fn a_failing_backend_denies_or_allows_as_configured() {
    bounded(async {
        let backend = Backend::start(|_| async {
            (StatusCode::INTERNAL_SERVER_ERROR, json!({"oops": true}))
        })
        .await;
        let url = backend.url("connect");
        let deny = server(|c| c.hooks.connect = Some(hook(url.clone()))).await;
        let mut client = deny.connect().await;
        let reply = client.request("#handshake", Some(json!({}))).await;
        assert_eq!(reply["error"]["name"], "HookFailedError", "{reply}");
        assert!(
            reply["error"]["message"].as_str().unwrap().contains("500"),
            "{reply}"
        );

        let allow = server(|c| {
            c.hooks.connect = Some(hook(url).on_failure(OnFailure::Allow));
        })
        .await;
        let mut client = allow.connect().await;
        let status = client.handshake(None).await;
        assert_eq!(status["isAuthenticated"], false);

        // Nothing listening at all: the same failure.
        let gone = server(|c| c.hooks.connect = Some(hook("http://127.0.0.1:9/x".into()))).await;
        let mut client = gone.connect().await;
        let reply = client.request("#handshake", Some(json!({}))).await;
        assert_eq!(reply["error"]["name"], "HookFailedError", "{reply}");
    })
    .await;
}

#[tokio::test]
async fn a_returned_token_that_does_not_verify_is_a_failure() {
    bounded(async {
        let backend = Backend::start(|_| async {
            ok(json!({"token": token_with("another-secret", json!({"sub": "eve"}))}))
        })
        .await;
        let url = backend.url("connect");
        let server = server(|c| c.hooks.connect = Some(hook(url))).await;
        let mut client = server.connect().await;
        let reply = client.request("#handshake", Some(json!({}))).await;
        assert_eq!(reply["error"]["name"], "HookFailedError", "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("verify"),
            "{reply}"
        );
    })
    .await;
}
