//! Channel namespaces: rules for subscribe and publish, unknown namespaces,
//! and what server code may do.

use std::time::Duration;

use herald::{ChannelOptions, PublishError, Rule, UnknownNamespaces};
use serde_json::json;

use crate::common::*;

fn rules(subscribe: Rule, publish: Rule) -> ChannelOptions {
    ChannelOptions {
        subscribe,
        publish,
        ..ChannelOptions::default()
    }
}

async fn server() -> TestServer {
    TestServer::start(
        fixture()
            .namespace("open", rules(Rule::Any, Rule::Any))
            .namespace("members", rules(Rule::Authenticated, Rule::Authenticated))
            .namespace("feed", rules(Rule::Any, Rule::None))
            .namespace("sealed", rules(Rule::None, Rule::Any)),
    )
    .await
}

async fn logged_in(server: &TestServer) -> Client {
    let mut c = server.connect().await;
    let status = c.handshake(Some(&token(json!({"sub": "ann"})))).await;
    assert_eq!(status["isAuthenticated"], true);
    c
}

fn error_name(reply: &serde_json::Value) -> String {
    reply["error"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn each_rule_is_applied_with_a_named_error() {
    bounded(async {
        let server = server().await;
        let mut anon = server.client().await;
        let mut member = logged_in(&server).await;

        // any / any
        assert!(
            anon.subscribe_with("open:a", None)
                .await
                .get("error")
                .is_none()
        );
        assert!(
            anon.publish("open:a", json!(1))
                .await
                .get("error")
                .is_none()
        );
        assert_eq!(anon.recv_json().await["data"]["data"], 1);

        // authenticated / authenticated
        let r = anon.subscribe_with("members:a", None).await;
        assert_eq!(error_name(&r), "ForbiddenError", "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("requires authentication")
        );
        assert_eq!(
            error_name(&anon.publish("members:a", json!(1)).await),
            "ForbiddenError"
        );
        assert!(
            member
                .subscribe_with("members:a", None)
                .await
                .get("error")
                .is_none()
        );
        assert!(
            member
                .publish("members:a", json!(2))
                .await
                .get("error")
                .is_none()
        );
        assert_eq!(member.recv_json().await["data"]["data"], 2);

        // publish none: clients may not, server code may.
        assert!(
            anon.subscribe_with("feed:a", None)
                .await
                .get("error")
                .is_none()
        );
        let r = member.publish("feed:a", json!(3)).await;
        assert_eq!(error_name(&r), "ForbiddenError", "{r}");
        server
            .server
            .exchange()
            .publish("feed:a", &json!(4))
            .await
            .expect("server code publishes on a publish=none namespace");
        assert_eq!(anon.recv_json().await["data"]["data"], 4);

        // subscribe none: no client subscribes, publishing is allowed.
        assert_eq!(
            error_name(&member.subscribe_with("sealed:a", None).await),
            "ForbiddenError"
        );
        assert!(
            anon.publish("sealed:a", json!(5))
                .await
                .get("error")
                .is_none()
        );
        assert_eq!(server.server.subscriber_count("sealed:a"), 0);
    })
    .await
}

#[tokio::test]
async fn middleware_still_refuses_what_a_rule_allows() {
    bounded(async {
        // The fixture's middleware refuses `private/...` to anonymous
        // sockets and client publications on `readonly/...`; the default
        // channels allow everything.
        let server = server().await;
        let mut anon = server.client().await;
        assert_eq!(
            error_name(&anon.subscribe_with("private/x", None).await),
            "ForbiddenError"
        );
        assert_eq!(
            error_name(&anon.publish("readonly/x", json!(1)).await),
            "ForbiddenError"
        );
    })
    .await
}

#[tokio::test]
async fn unknown_namespaces_are_plain_channels_unless_refused() {
    bounded(async {
        let server = server().await;
        let mut c = server.client().await;
        assert!(
            c.subscribe_with("nothere:x", None)
                .await
                .get("error")
                .is_none()
        );
        assert!(
            c.publish("nothere:x", json!(1))
                .await
                .get("error")
                .is_none()
        );
        assert_eq!(c.recv_json().await["data"]["channel"], "nothere:x");

        let strict = TestServer::start(
            fixture()
                .namespace("open", ChannelOptions::default())
                .unknown_namespaces(UnknownNamespaces::Refuse),
        )
        .await;
        let mut c = strict.client().await;
        let r = c.subscribe_with("nothere:x", None).await;
        assert_eq!(error_name(&r), "UnknownNamespaceError", "{r}");
        assert_eq!(
            error_name(&c.publish("nothere:x", json!(1)).await),
            "UnknownNamespaceError"
        );
        assert!(
            c.subscribe_with("open:x", None)
                .await
                .get("error")
                .is_none()
        );
        assert!(c.subscribe_with("plain", None).await.get("error").is_none());
        let e = strict
            .server
            .exchange()
            .publish("nothere:y", &1)
            .await
            .unwrap_err();
        assert!(
            matches!(e, PublishError::Refused(ref p) if p.name == "UnknownNamespaceError"),
            "{e}"
        );
    })
    .await
}

#[tokio::test]
async fn reserved_channels_are_refused_to_clients_and_server_code() {
    bounded(async {
        let server = server().await;
        let mut c = server.client().await;
        let r = c.subscribe_with("#herald/nodes", None).await;
        assert_eq!(error_name(&r), "InvalidActionError", "{r}");
        let r = c
            .publish(
                "#herald/user/bob",
                json!({"op": "disconnect", "code": 4000}),
            )
            .await;
        assert_eq!(error_name(&r), "InvalidActionError", "{r}");
        let e = server
            .server
            .exchange()
            .publish("#herald/nodes", &json!({}))
            .await
            .unwrap_err();
        assert!(matches!(e, PublishError::Refused(_)), "{e}");
    })
    .await
}

#[tokio::test]
async fn invalid_namespace_options_are_refused_at_build() {
    let e = herald::Server::builder()
        .namespace(
            "chat",
            ChannelOptions {
                recover: true,
                ..ChannelOptions::default()
            },
        )
        .try_build()
        .unwrap_err();
    assert!(
        e.to_string().contains("chat") && e.to_string().contains("recover"),
        "{e}"
    );
    let e = herald::Server::builder()
        .namespace(
            "a b",
            ChannelOptions {
                history_ttl: Duration::from_secs(1),
                ..ChannelOptions::default()
            },
        )
        .try_build()
        .unwrap_err();
    assert!(e.to_string().contains("a b"), "{e}");
}
