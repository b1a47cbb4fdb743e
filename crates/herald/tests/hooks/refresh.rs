//! The token refresh hook: a token near its expiry is replaced without a
//! reconnect; a failing backend leaves the socket its token for the grace
//! period, retried; a refusal lets it expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use herald::{ChannelOptions, Rule};
use serde_json::json;

use crate::backend::Backend;
use crate::common::*;
use crate::{hook, ok, server};

/// A namespace only authenticated sockets may publish on: a publish tells
/// whether the socket is still authenticated.
fn members() -> ChannelOptions {
    ChannelOptions {
        publish: Rule::Authenticated,
        ..ChannelOptions::default()
    }
}

#[tokio::test]
async fn a_token_near_its_expiry_is_replaced_without_a_reconnect() {
    bounded(async {
        let backend = Backend::start(|call| async move {
            assert_eq!(call.body["hook"], "refresh");
            let user = call.body["socket"]["user"].clone();
            ok(json!({"claims": {"sub": user, "refreshed": true, "exp": unix_now() + 600}}))
        })
        .await;
        let url = backend.url("refresh");
        let server = server(|c| c.hooks.refresh = Some(hook(url))).await;
        let mut client = server.connect().await;
        let exp = unix_now() + 3;
        let status = client
            .handshake(Some(&token(json!({"sub": "ada", "exp": exp}))))
            .await;
        assert_eq!(status["isAuthenticated"], true);
        // Halfway through its life (1.5 s), before it expires.
        let set = within_for(
            Duration::from_secs(3),
            "#setAuthToken",
            client.expect_event("#setAuthToken"),
        )
        .await;
        assert!(unix_now() <= exp, "refreshed after the expiry");
        let claims = token_claims(set["data"]["token"].as_str().unwrap());
        assert_eq!(
            (claims["sub"].clone(), claims["refreshed"].clone()),
            (json!("ada"), json!(true))
        );
        let call = &backend.calls_of("refresh")[0];
        assert_eq!(call.body["exp"], exp);
        assert_eq!(call.body["socket"]["id"], client.id.as_str());
        // Past the old expiry the socket is still authenticated.
        tokio::time::sleep(Duration::from_millis(
            (exp + 1).saturating_sub(unix_now()) * 1000 + 200,
        ))
        .await;
        assert!(server.server.socket(&client.id).unwrap().is_authenticated());
    })
    .await;
}

#[tokio::test]
async fn a_failing_refresh_keeps_the_token_for_the_grace_period_and_retries() {
    bounded(async {
        let healthy = Arc::new(AtomicBool::new(false));
        let up = healthy.clone();
        let backend = Backend::start(move |call| {
            let up = up.load(Ordering::SeqCst);
            async move {
                if !up {
                    return (StatusCode::SERVICE_UNAVAILABLE, json!({}));
                }
                let user = call.body["socket"]["user"].clone();
                ok(json!({"claims": {"sub": user, "exp": unix_now() + 600}}))
            }
        })
        .await;
        let url = backend.url("refresh");
        let server = server(|c| {
            c.hooks.refresh = Some(hook(url));
            c.hooks.refresh_grace = Duration::from_secs(20);
            c.hooks.refresh_retry = Duration::from_millis(500);
            c.channels = members();
        })
        .await;
        let mut client = server.connect().await;
        let exp = unix_now() + 2;
        client
            .handshake(Some(&token(json!({"sub": "bo", "exp": exp}))))
            .await;
        backend.wait_calls("refresh", 2).await;
        // Past its exp, the socket is still authenticated (grace).
        tokio::time::sleep(Duration::from_millis(
            (exp + 1).saturating_sub(unix_now()) * 1000 + 100,
        ))
        .await;
        let reply = client.publish("room", json!("still here")).await;
        assert!(reply.get("error").is_none(), "{reply}");
        // The backend comes back: the next retry gives the socket a token.
        healthy.store(true, Ordering::SeqCst);
        let set = client.expect_event("#setAuthToken").await;
        assert_eq!(
            token_claims(set["data"]["token"].as_str().unwrap())["sub"],
            "bo"
        );
        assert!(server.server.socket(&client.id).unwrap().is_authenticated());
    })
    .await;
}

#[tokio::test]
async fn the_grace_period_ends_and_a_refusal_lets_the_token_expire() {
    bounded(async {
        let backend = Backend::start(|call| async move {
            if call.body["socket"]["user"] == "refused" {
                ok(json!({"error": {"name": "SessionEndedError", "message": "logged out"}}))
            } else {
                (StatusCode::BAD_GATEWAY, json!({}))
            }
        })
        .await;
        let url = backend.url("refresh");
        let server = server(|c| {
            c.hooks.refresh = Some(hook(url));
            c.hooks.refresh_grace = Duration::from_secs(1);
            c.hooks.refresh_retry = Duration::from_millis(300);
        })
        .await;
        for user in ["refused", "failing"] {
            let mut client = server.connect().await;
            let exp = unix_now() + 2;
            client
                .handshake(Some(&token(json!({"sub": user, "exp": exp}))))
                .await;
            // Deauthenticated: at exp when refused, within the grace when
            // the backend keeps failing.
            within_for(
                Duration::from_secs(6),
                "#removeAuthToken",
                client.expect_event("#removeAuthToken"),
            )
            .await;
            let now = unix_now();
            assert!(now >= exp, "{user}: removed before the expiry");
            assert!(now <= exp + 2, "{user}: kept past the grace period");
            assert!(!server.server.socket(&client.id).unwrap().is_authenticated());
        }
    })
    .await;
}
