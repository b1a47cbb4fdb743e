//! Test support shared by Herald's end-to-end suites.
//!
//! [`fixture`] registers the procedures, receiver and middleware that the
//! compatibility suite (official `socketcluster-client`), the Rust client's
//! suite and the reference socketcluster-server script
//! (`tests/node/reference/sc-server.js`) all implement identically, so the
//! same scenarios run against Herald and against socketcluster-server:
//!
//! | name | kind | behaviour |
//! |---|---|---|
//! | `echo` | procedure | replies with its data |
//! | `fail` | procedure | error `{name: "MyError", message: "nope"}` |
//! | `login` | procedure | `{user, ttl?}`: sets token `{sub: user}` (exp = now + ttl), replies `{ok: 1}` |
//! | `logout` | procedure | removes the socket's token |
//! | `whoami` | procedure | the token's claims, or null |
//! | `kick` | procedure | `{channel, message}`: kicks the caller out of the channel |
//! | `serverTransmit` | procedure | `{event, data}`: transmits to the caller |
//! | `serverInvoke` | procedure | `{procedure, data}`: invokes the caller, replies with its result |
//! | `serverPublish` | procedure | `{channel, data}`: publishes through the exchange |
//! | `disconnectMe` | procedure | `{code, reason}`: replies, then disconnects the caller |
//! | `userTransmit` | procedure | `{user, event, data}`: transmits to every socket of the user, on every node (Herald only) |
//! | `userDisconnect` | procedure | `{user, code, reason}`: disconnects the user everywhere (Herald only) |
//! | `userKick` | procedure | `{user, channel, message}`: kicks the user out of a channel everywhere (Herald only) |
//! | `nodes` | procedure | the cluster's nodes as this node sees them (Herald only) |
//! | `removeHistory` | procedure | `{channel}`: drops the channel's history (its next publication starts a new epoch) (Herald only) |
//! | `tell` | receiver | transmits `told` back with the same data |
//! | `private/*` | middleware | subscribing needs a token (`ForbiddenError`) |
//! | `readonly/*` | middleware | clients may not publish (`ForbiddenError`) |
//! | `hist:*` | namespace | history (1,000 publications, 10 min), recovery, presence, join/leave (Herald only) |
//! | `tiny:*` | namespace | history of 3 publications, recovery (Herald only) |
//! | `inbox:*` | namespace | history (100), recovery; no client may subscribe nor publish: server-side subscriptions only (Herald only) |
//!
//! Beside the fixture: [`api_scenarios`] (the HTTP server API, every
//! method, on one node or across two), [`broker_conformance`] (what every broker must do),
//! [`cluster_scenarios`] (recovery, gap repair and presence across nodes),
//! [`fault_proxy`] (a TCP proxy that delays, blackholes or resets
//! connections, also as the `herald-fault-proxy` binary, and balances over
//! several upstreams) and [`rolling_restart`] (two nodes restarted in turn
//! under subscribed clients and publishers).

pub mod api_scenarios;
pub mod broker_conformance;
pub mod cluster_scenarios;
pub mod fault_proxy;
pub mod rolling_restart;

use std::time::Duration;

use async_trait::async_trait;
use herald::{
    ChannelOptions, ErrorPayload, Middleware, PublishRequest, ServerBuilder, Socket,
    SubscribeRequest,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The fixture's channel rules.
struct FixtureRules;

#[async_trait]
impl Middleware for FixtureRules {
    async fn subscribe(
        &self,
        socket: &Socket,
        request: &mut SubscribeRequest,
    ) -> Result<(), ErrorPayload> {
        if request.channel().starts_with("private/") && !socket.is_authenticated() {
            return Err(ErrorPayload::new(
                "ForbiddenError",
                format!("{} requires authentication", request.channel()),
            ));
        }
        Ok(())
    }

    async fn publish_in(
        &self,
        _socket: &Socket,
        request: &mut PublishRequest,
    ) -> Result<(), ErrorPayload> {
        if request.channel().starts_with("readonly/") {
            return Err(ErrorPayload::new(
                "ForbiddenError",
                format!("clients may not publish to {}", request.channel()),
            ));
        }
        Ok(())
    }
}

fn internal(e: impl std::fmt::Display) -> ErrorPayload {
    ErrorPayload::new("InternalServerError", e.to_string())
}

/// Registers the fixture procedures, receiver and middleware.
pub fn fixture(builder: ServerBuilder) -> ServerBuilder {
    #[derive(Deserialize)]
    struct Login {
        user: String,
        ttl: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Kick {
        channel: String,
        message: Option<Value>,
    }
    #[derive(Deserialize)]
    struct Transmit {
        event: String,
        #[serde(default)]
        data: Value,
    }
    #[derive(Deserialize)]
    struct Invoke {
        procedure: String,
        #[serde(default)]
        data: Value,
    }
    #[derive(Deserialize)]
    struct Publish {
        channel: String,
        #[serde(default)]
        data: Value,
    }
    #[derive(Deserialize)]
    struct UserTransmit {
        user: String,
        event: String,
        #[serde(default)]
        data: Value,
    }
    #[derive(Deserialize)]
    struct UserDisconnect {
        user: String,
        code: u16,
        #[serde(default)]
        reason: String,
    }
    #[derive(Deserialize)]
    struct UserKick {
        user: String,
        channel: String,
        #[serde(default)]
        message: Value,
    }
    #[derive(Deserialize)]
    struct Disconnect {
        code: u16,
        #[serde(default)]
        reason: String,
    }

    builder
        .middleware(FixtureRules)
        .procedure("echo", |req| async move { Ok::<_, ErrorPayload>(req.data) })
        .procedure("fail", |_req| async move {
            Err::<Value, _>(ErrorPayload::new("MyError", "nope"))
        })
        .procedure("login", |req| async move {
            let login: Login = req.parse()?;
            let mut claims = json!({ "sub": login.user });
            if let Some(ttl) = login.ttl {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(internal)?
                    .as_secs();
                claims["exp"] = json!(now + ttl);
            }
            req.socket.set_auth_token(claims).map_err(internal)?;
            Ok(json!({ "ok": 1 }))
        })
        .procedure("logout", |req| async move {
            req.socket.remove_auth_token();
            Ok::<(), ErrorPayload>(())
        })
        .procedure("whoami", |req| async move {
            Ok::<_, ErrorPayload>(match req.socket.auth_claims() {
                Some(c) => Value::Object((*c).clone()),
                None => Value::Null,
            })
        })
        .procedure("kick", |req| async move {
            let kick: Kick = req.parse()?;
            req.socket
                .kick_out(&kick.channel, &kick.message.unwrap_or(Value::Null))
                .await;
            Ok::<(), ErrorPayload>(())
        })
        .procedure("serverTransmit", |req| async move {
            let t: Transmit = req.parse()?;
            req.socket.transmit(&t.event, &t.data).map_err(internal)?;
            Ok::<(), ErrorPayload>(())
        })
        .procedure("serverInvoke", |req| async move {
            let i: Invoke = req.parse()?;
            req.socket
                .invoke_with_timeout(&i.procedure, &i.data, Duration::from_secs(5))
                .await
                .map_err(|e| e.to_payload())
        })
        .procedure("serverPublish", |req| {
            let exchange = req.socket.exchange();
            async move {
                let p: Publish = req.parse()?;
                exchange
                    .publish(&p.channel, &p.data)
                    .await
                    .map_err(internal)?;
                Ok::<(), ErrorPayload>(())
            }
        })
        .procedure("disconnectMe", |req| async move {
            let d: Disconnect = req.parse()?;
            // The reply still goes out first: a disconnect waits for the
            // socket's running procedures (this one) to queue their replies.
            req.socket.disconnect(d.code, d.reason);
            Ok::<(), ErrorPayload>(())
        })
        .procedure("userTransmit", |req| async move {
            let u: UserTransmit = req.parse()?;
            req.socket
                .server()
                .users()
                .transmit(&u.user, &u.event, &u.data)
                .await
                .map_err(internal)
        })
        .procedure("userDisconnect", |req| async move {
            let u: UserDisconnect = req.parse()?;
            req.socket
                .server()
                .users()
                .disconnect(&u.user, u.code, &u.reason)
                .await
                .map_err(internal)
        })
        .procedure("userKick", |req| async move {
            let u: UserKick = req.parse()?;
            req.socket
                .server()
                .users()
                .kick_out(&u.user, &u.channel, &u.message)
                .await
                .map_err(internal)
        })
        .procedure("nodes", |req| async move {
            Ok::<_, ErrorPayload>(req.socket.server().nodes())
        })
        .procedure("removeHistory", |req| async move {
            #[derive(Deserialize)]
            struct Channel {
                channel: String,
            }
            let Channel { channel } = req.parse()?;
            req.socket
                .server()
                .remove_history(&channel)
                .await
                .map_err(|e| e.to_payload())
        })
        .receiver("tell", |msg| async move {
            let _ = msg.socket.transmit("told", &msg.data);
        })
        .namespace(
            "hist",
            ChannelOptions {
                history_size: 1000,
                history_ttl: Duration::from_secs(600),
                recover: true,
                presence: true,
                join_leave: true,
                ..ChannelOptions::default()
            },
        )
        .namespace(
            "inbox",
            ChannelOptions {
                history_size: 100,
                history_ttl: Duration::from_secs(600),
                recover: true,
                subscribe: herald::Rule::None,
                publish: herald::Rule::None,
                ..ChannelOptions::default()
            },
        )
        .namespace(
            "tiny",
            ChannelOptions {
                history_size: 3,
                history_ttl: Duration::from_secs(600),
                recover: true,
                ..ChannelOptions::default()
            },
        )
}

/// A fresh self-signed certificate for `localhost` and `127.0.0.1`, as PEM
/// texts: the certificate (also the root a test client trusts) and its
/// private key. For the TLS tests (`herald-testcert` writes them to files).
pub fn self_signed_certificate() -> anyhow::Result<(String, String)> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}
