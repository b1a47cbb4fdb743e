//! The client's behaviour against a server with the fixture procedures
//! (see `tests/node/reference/sc-server.js`). Each scenario takes the
//! [`Target`] so that the same checks run against socketcluster-server 20 and
//! against Herald; where the two legitimately differ the scenario asks
//! `t.kind`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use herald_client::{
    Client, ClientEvent, ConnectionState, Error, ErrorPayload, FileTokenStore, MemoryTokenStore,
    SubscribeOptions, SubscriptionError,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::*;

fn remote_name(r: &Result<impl std::fmt::Debug, Error>) -> &str {
    match r {
        Err(Error::Remote(e)) => &e.name,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

/// Subscribe, publish with and without ack, fan-out to a second client,
/// several subscriptions of one channel, unsubscribe, refused actions.
pub async fn pubsub(t: &Target) {
    let a = connect(t).await;
    let b = connect(t).await;
    let mut events_a = a.events();

    let mut sub_a = within("subscribe a", a.subscribe("news")).await.unwrap();
    let mut sub_b = within("subscribe b", b.subscribe("news")).await.unwrap();
    assert_eq!(sub_a.channel(), "news");

    // Publish with ack; the publisher receives its own publication.
    within(
        "publish",
        a.publish("news", &json!({"n": 1, "title": "one"})),
    )
    .await
    .unwrap();
    #[derive(Deserialize, Debug, PartialEq)]
    struct News {
        n: u32,
        title: String,
    }
    let p = next_pub(&mut sub_a).await;
    assert_eq!(p.channel, "news");
    assert_eq!(
        p.data_as::<News>().unwrap(),
        News {
            n: 1,
            title: "one".into()
        }
    );
    assert_eq!(
        next_pub(&mut sub_b).await.data,
        json!({"n": 1, "title": "one"})
    );

    // Without ack.
    within("publish_no_ack", b.publish_no_ack("news", &2))
        .await
        .unwrap();
    assert_eq!(next_pub(&mut sub_a).await.data, json!(2));
    assert_eq!(next_pub(&mut sub_b).await.data, json!(2));

    // Two subscriptions of one channel both get every publication; dropping
    // one leaves the other subscribed.
    let mut m1 = a.subscribe("multi").await.unwrap();
    let mut m2 = a.subscribe("multi").await.unwrap();
    b.publish("multi", "x").await.unwrap();
    assert_eq!(next_pub(&mut m1).await.data, json!("x"));
    assert_eq!(next_pub(&mut m2).await.data, json!("x"));
    m1.unsubscribe();
    b.publish("multi", "y").await.unwrap();
    assert_eq!(next_pub(&mut m2).await.data, json!("y"));

    // Unsubscribe: the stream ends and the server stops delivering. The
    // sentinel publication, sent by b after the one on "news", proves that
    // the "news" one was not delivered to a.
    within("unsubscribe", a.unsubscribe("news")).await.unwrap();
    assert_eq!(next_end(&mut sub_a).await, None);
    let mut sentinel = a.subscribe("sentinel").await.unwrap();
    b.publish("news", &3).await.unwrap();
    b.publish("sentinel", "s").await.unwrap();
    assert_eq!(next_pub(&mut sentinel).await.data, json!("s"));
    assert_eq!(next_pub(&mut sub_b).await.data, json!(3));
    let mut again = a.subscribe("news").await.unwrap();
    b.publish("news", &4).await.unwrap();
    assert_eq!(next_pub(&mut again).await.data, json!(4));

    // Refusals from the server's middleware.
    let r = a.publish("readonly/feed", &1).await;
    assert_eq!(remote_name(&r), "ForbiddenError");
    let r = a.subscribe("private/room").await;
    assert_eq!(remote_name(&r), "ForbiddenError");
    let e = wait_event(&mut events_a, "SubscribeFailed", |e| {
        matches!(e, ClientEvent::SubscribeFailed { .. })
    })
    .await;
    match e {
        ClientEvent::SubscribeFailed { channel, error } => {
            assert_eq!(channel, "private/room");
            assert_eq!(error.name, "ForbiddenError");
        }
        _ => unreachable!(),
    }
    // Without waiting for the ack, the refusal arrives on the stream.
    let mut unacked = a
        .subscribe_with(
            "private/other",
            SubscribeOptions {
                wait_for_ack: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    match next_end(&mut unacked).await {
        Some(SubscriptionError::Rejected(e)) => assert_eq!(e.name, "ForbiddenError"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(next_end(&mut unacked).await, None);

    a.close().await;
    b.close().await;
}

/// Invokes: a reply, a remote error, timeouts, unknown procedures.
pub async fn rpc(t: &Target) {
    let c = connect(t).await;
    let data = json!({"a": [1, 2, {"b": null}], "s": "é\"\n"});
    let reply = within("echo", c.invoke("echo", &data)).await.unwrap();
    assert_eq!(reply, data);
    #[derive(Deserialize)]
    struct Echo {
        s: String,
    }
    let typed: Echo = c.invoke_as("echo", &data).await.unwrap();
    assert_eq!(typed.s, "é\"\n");

    let r = within("fail", c.invoke("fail", &json!({}))).await;
    match &r {
        Err(Error::Remote(e)) => {
            assert_eq!(e.name, "MyError");
            assert_eq!(e.message, "nope");
        }
        other => panic!("expected MyError, got {other:?}"),
    }

    // A procedure that never replies: the server invokes a client procedure
    // that never answers, so our call to serverInvoke times out.
    c.on_invoke("hang", |_| std::future::pending());
    let r = within(
        "a timed-out invoke",
        c.invoke_with_timeout(
            "serverInvoke",
            &json!({"procedure": "hang"}),
            Duration::from_millis(300),
        ),
    )
    .await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");

    // An unknown procedure: socketcluster-server never answers; Herald
    // replies with NoSuchProcedureError.
    let r = within(
        "an unknown procedure",
        c.invoke_with_timeout("noSuchProcedure", &json!({}), Duration::from_millis(300)),
    )
    .await;
    match t.kind {
        TargetKind::Reference => assert!(matches!(r, Err(Error::Timeout)), "{r:?}"),
        TargetKind::Herald => assert_eq!(remote_name(&r), "NoSuchProcedureError"),
    }

    // Still usable after timeouts.
    assert_eq!(c.invoke("echo", &5).await.unwrap(), json!(5));
    c.close().await;
}

/// Transmits both ways and server-to-client invokes.
pub async fn transmit(t: &Target) {
    let c = connect(t).await;

    let mut told = c.receiver("told");
    within("transmit", c.transmit("tell", &json!({"x": 1})))
        .await
        .unwrap();
    assert_eq!(
        within("told", told.next()).await.unwrap().unwrap(),
        json!({"x": 1})
    );

    let mut pushed = c.receiver("pushed");
    let mut pushed2 = c.receiver("pushed");
    c.invoke(
        "serverTransmit",
        &json!({"event": "pushed", "data": [1, 2]}),
    )
    .await
    .unwrap();
    assert_eq!(
        within("pushed", pushed.next()).await.unwrap().unwrap(),
        json!([1, 2])
    );
    assert_eq!(
        within("pushed", pushed2.next()).await.unwrap().unwrap(),
        json!([1, 2])
    );

    // The server invokes a client procedure and relays its result.
    c.on_invoke("double", |v: Value| async move {
        let n = v
            .as_i64()
            .ok_or_else(|| ErrorPayload::new("BadInput", "not a number"))?;
        Ok(json!(n * 2))
    });
    let r = within(
        "serverInvoke double",
        c.invoke("serverInvoke", &json!({"procedure": "double", "data": 21})),
    )
    .await
    .unwrap();
    assert_eq!(r, json!(42));
    let r = c
        .invoke("serverInvoke", &json!({"procedure": "double", "data": "x"}))
        .await;
    assert_eq!(remote_name(&r), "BadInput");
    // A procedure without a handler gets an error reply, not silence.
    let r = within(
        "serverInvoke unknown",
        c.invoke("serverInvoke", &json!({"procedure": "nobody", "data": 1})),
    )
    .await;
    assert_eq!(remote_name(&r), "NoSuchProcedureError");
    assert!(c.remove_procedure("double"));
    let r = c
        .invoke("serverInvoke", &json!({"procedure": "double", "data": 1}))
        .await;
    assert_eq!(remote_name(&r), "NoSuchProcedureError");
    c.close().await;
}

/// A server-issued token is stored, sent back, and removed on logout.
pub async fn auth_login(t: &Target) {
    let c = connect(t).await;
    let mut events = c.events();
    assert!(!c.is_authenticated());
    assert_eq!(c.invoke("whoami", &()).await.unwrap(), Value::Null);

    let r = within("login", c.invoke("login", &json!({"user": "alice"})))
        .await
        .unwrap();
    assert_eq!(r, json!({"ok": 1}));
    wait_event(&mut events, "Authenticated", |e| {
        matches!(e, ClientEvent::Authenticated)
    })
    .await;
    assert!(c.is_authenticated());
    let token = c.signed_token().expect("a signed token");
    assert_eq!(c.claims().unwrap()["sub"], "alice");
    assert_eq!(c.stored_token().unwrap().as_deref(), Some(token.as_str()));
    let who = c.invoke("whoami", &()).await.unwrap();
    assert_eq!(who["sub"], "alice");
    // Authenticated subscriptions are now allowed.
    within("private subscribe", c.subscribe("private/alice"))
        .await
        .unwrap();

    within("logout", c.invoke("logout", &())).await.unwrap();
    wait_event(&mut events, "Deauthenticated", |e| {
        matches!(e, ClientEvent::Deauthenticated)
    })
    .await;
    assert!(!c.is_authenticated());
    assert_eq!(c.signed_token(), None);
    assert_eq!(c.claims(), None);
    assert_eq!(c.stored_token().unwrap(), None);
    assert_eq!(c.invoke("whoami", &()).await.unwrap(), Value::Null);
    c.close().await;
}

/// A valid token in the store authenticates the handshake.
pub async fn auth_handshake_token(t: &Target) {
    let token = mint(&t.secret, &json!({"sub": "bob", "exp": now_secs() + 3600}));
    let b = builder(t).token_store(MemoryTokenStore::with_token(token.clone()));
    let mut events = b.events();
    let c = within("connect", b.connect()).await.unwrap();
    match wait_event(&mut events, "Open", |e| {
        matches!(e, ClientEvent::Open { .. })
    })
    .await
    {
        ClientEvent::Open {
            id,
            is_authenticated,
            auth_error,
        } => {
            assert!(!id.is_empty());
            assert!(is_authenticated);
            assert_eq!(auth_error, None);
        }
        _ => unreachable!(),
    }
    assert!(c.is_authenticated());
    assert_eq!(c.id().as_deref().map(str::is_empty), Some(false));
    assert_eq!(c.signed_token().as_deref(), Some(token.as_str()));
    assert_eq!(c.claims().unwrap()["sub"], "bob");
    assert_eq!(c.invoke("whoami", &()).await.unwrap()["sub"], "bob");
    c.close().await;
}

/// An expired handshake token: AuthTokenExpiredError, unauthenticated, and
/// the token is dropped from the store.
pub async fn auth_expired_token(t: &Target) {
    let token = mint(&t.secret, &json!({"sub": "carol", "exp": now_secs() - 60}));
    check_refused_handshake_token(t, token, "AuthTokenExpiredError").await;
}

/// A token signed with another key: AuthTokenInvalidError.
pub async fn auth_invalid_token(t: &Target) {
    let token = mint("not-the-server-secret", &json!({"sub": "mallory"}));
    check_refused_handshake_token(t, token, "AuthTokenInvalidError").await;
}

async fn check_refused_handshake_token(t: &Target, token: String, expected: &str) {
    let store = Arc::new(MemoryTokenStore::with_token(token));
    let b = builder(t).token_store(SharedStore(store.clone()));
    let mut events = b.events();
    let c = within("connect", b.connect()).await.unwrap();
    match wait_event(&mut events, "Open", |e| {
        matches!(e, ClientEvent::Open { .. })
    })
    .await
    {
        ClientEvent::Open {
            is_authenticated,
            auth_error,
            ..
        } => {
            assert!(!is_authenticated);
            let e = auth_error.expect("an auth error");
            assert_eq!(e.name, expected);
            assert!(e.is_bad_token());
        }
        _ => unreachable!(),
    }
    assert!(!c.is_authenticated());
    assert_eq!(c.signed_token(), None);
    use herald_client::TokenStore as _;
    assert_eq!(store.load().unwrap(), None, "a bad token is removed");
    assert_eq!(c.invoke("whoami", &()).await.unwrap(), Value::Null);
    c.close().await;
}

/// A token store shared with the test, to look inside.
struct SharedStore(Arc<MemoryTokenStore>);

impl herald_client::TokenStore for SharedStore {
    fn load(&self) -> std::io::Result<Option<String>> {
        self.0.load()
    }
    fn save(&self, token: &str) -> std::io::Result<()> {
        self.0.save(token)
    }
    fn remove(&self) -> std::io::Result<()> {
        self.0.remove()
    }
}

/// `authenticate()` and `deauthenticate()`.
pub async fn authenticate_api(t: &Target) {
    let c = connect(t).await;
    let mut events = c.events();
    let token = mint(&t.secret, &json!({"sub": "dave", "exp": now_secs() + 3600}));
    within("authenticate", c.authenticate(&token))
        .await
        .unwrap();
    assert!(c.is_authenticated());
    assert_eq!(c.signed_token().as_deref(), Some(token.as_str()));
    assert_eq!(c.stored_token().unwrap().as_deref(), Some(token.as_str()));
    wait_event(&mut events, "Authenticated", |e| {
        matches!(e, ClientEvent::Authenticated)
    })
    .await;
    assert_eq!(c.invoke("whoami", &()).await.unwrap()["sub"], "dave");

    within("deauthenticate", c.deauthenticate()).await.unwrap();
    assert!(!c.is_authenticated());
    assert_eq!(c.stored_token().unwrap(), None);
    wait_event(&mut events, "Deauthenticated", |e| {
        matches!(e, ClientEvent::Deauthenticated)
    })
    .await;
    assert_eq!(c.invoke("whoami", &()).await.unwrap(), Value::Null);

    let bad = mint("wrong-key", &json!({"sub": "eve"}));
    let r = within("bad authenticate", c.authenticate(&bad)).await;
    assert_eq!(remote_name(&r), "AuthTokenInvalidError");
    assert!(!c.is_authenticated());
    assert_eq!(c.stored_token().unwrap(), None);
    assert_eq!(c.invoke("whoami", &()).await.unwrap(), Value::Null);
    c.close().await;
}

/// `#kickOut`: an event, and the subscription stream reports it and ends.
pub async fn kick_out(t: &Target) {
    let c = connect(t).await;
    let mut events = c.events();
    let mut sub = c.subscribe("room").await.unwrap();
    let mut other = c.subscribe("hall").await.unwrap();
    within(
        "kick",
        c.invoke("kick", &json!({"channel": "room", "message": "bye"})),
    )
    .await
    .unwrap();
    match next_end(&mut sub).await {
        Some(SubscriptionError::KickedOut { message }) => assert_eq!(message, Some(json!("bye"))),
        other => panic!("expected a kick, got {other:?}"),
    }
    assert_eq!(next_end(&mut sub).await, None);
    match wait_event(&mut events, "KickedOut", |e| {
        matches!(e, ClientEvent::KickedOut { .. })
    })
    .await
    {
        ClientEvent::KickedOut { channel, message } => {
            assert_eq!(channel, "room");
            assert_eq!(message, Some(json!("bye")));
        }
        _ => unreachable!(),
    }
    // Other channels are unaffected.
    c.publish("hall", "still here").await.unwrap();
    assert_eq!(next_pub(&mut other).await.data, json!("still here"));
    c.close().await;
}

/// The server drops the connection: the pending request fails with
/// BadConnection, the client reconnects by itself, re-authenticates with its
/// token, resubscribes, and publications keep arriving on the same streams.
pub async fn reconnect_resubscribe(t: &Target) {
    let b = builder(t);
    let mut events = b.events();
    let c = within("connect", b.connect()).await.unwrap();
    c.invoke("login", &json!({"user": "frank"})).await.unwrap();
    wait_event(&mut events, "Authenticated", |e| {
        matches!(e, ClientEvent::Authenticated)
    })
    .await;
    let mut live = c.subscribe("live").await.unwrap();
    let mut private = c.subscribe("private/frank").await.unwrap();
    let first_id = c.id().unwrap();

    // A request in flight when the connection drops: serverInvoke waits on a
    // client procedure that never answers.
    let called = Arc::new(Notify::new());
    let signal = called.clone();
    c.on_invoke("hang", move |_| {
        signal.notify_one();
        std::future::pending()
    });
    let mut pending = Some({
        let c = c.clone();
        tokio::spawn(async move {
            c.invoke_with_timeout(
                "serverInvoke",
                &json!({"procedure": "hang"}),
                Duration::from_secs(30),
            )
            .await
        })
    });
    within("the server's invoke of hang", called.notified()).await;

    for (round, code) in [(1, 4321u16), (2, 1011)] {
        within(
            "disconnectMe",
            c.invoke("disconnectMe", &json!({"code": code, "reason": "test"})),
        )
        .await
        .unwrap();
        match wait_event(&mut events, "Closed", |e| {
            matches!(e, ClientEvent::Closed { .. })
        })
        .await
        {
            ClientEvent::Closed { code: got, .. } => assert_eq!(got, code),
            _ => unreachable!(),
        }
        if let Some(pending) = pending.take() {
            let r = within("the pending request", pending).await.unwrap();
            match r {
                Err(Error::BadConnection { code: got, .. }) => assert_eq!(got, code),
                other => panic!("expected BadConnection, got {other:?}"),
            }
        }
        match wait_event(&mut events, "Reconnecting", |e| {
            matches!(e, ClientEvent::Reconnecting { .. })
        })
        .await
        {
            ClientEvent::Reconnecting { attempt, delay } => {
                assert_eq!(attempt, 1);
                assert!(delay <= Duration::from_millis(50), "{delay:?}");
            }
            _ => unreachable!(),
        }
        match wait_event(&mut events, "Open", |e| {
            matches!(e, ClientEvent::Open { .. })
        })
        .await
        {
            ClientEvent::Open {
                is_authenticated, ..
            } => assert!(is_authenticated, "re-authenticated with the stored token"),
            _ => unreachable!(),
        }
        assert_eq!(c.state(), ConnectionState::Open);
        assert_ne!(c.id().unwrap(), first_id);

        // Same Subscription objects, new connection.
        c.publish("live", &json!({"round": round})).await.unwrap();
        assert_eq!(next_pub(&mut live).await.data, json!({"round": round}));
        c.publish("private/frank", &round).await.unwrap();
        assert_eq!(next_pub(&mut private).await.data, json!(round));
    }
    assert_eq!(c.invoke("whoami", &()).await.unwrap()["sub"], "frank");
    c.close().await;
}

/// `close()` closes with 1000, ends streams, fails later calls, and does not
/// reconnect; dropping the last handle does the same.
pub async fn close_and_drop(t: &Target) {
    let b = builder(t);
    let mut events = b.events();
    let c = within("connect", b.connect()).await.unwrap();
    let mut sub = c.subscribe("bye").await.unwrap();
    let mut rx = c.receiver("never");
    within("close", c.close()).await;
    match wait_event(&mut events, "Closed", |e| {
        matches!(e, ClientEvent::Closed { .. })
    })
    .await
    {
        ClientEvent::Closed { code, .. } => assert_eq!(code, 1000),
        _ => unreachable!(),
    }
    assert_eq!(within("events end", events.next()).await, None);
    assert_eq!(next_end(&mut sub).await, None);
    assert!(within("receiver end", rx.next()).await.is_none());
    assert_eq!(c.state(), ConnectionState::Closed);
    assert!(c.is_closed());
    assert!(matches!(c.invoke("echo", &1).await, Err(Error::Closed)));
    assert!(matches!(c.subscribe("x").await, Err(Error::Closed)));
    c.close().await; // twice is harmless

    let c = connect(t).await;
    let mut events = c.events();
    let mut sub = c.subscribe("drop").await.unwrap();
    let weak = c.downgrade();
    drop(c);
    assert_eq!(next_end(&mut sub).await, None);
    wait_event(&mut events, "Closed", |e| {
        matches!(e, ClientEvent::Closed { code: 1000, .. })
    })
    .await;
    assert!(weak.upgrade().is_none());
}

/// A file token store keeps the login across client instances (as a CLI
/// would across runs).
pub async fn file_token_store(t: &Target) {
    let dir = std::env::temp_dir().join(format!(
        "herald-client-test-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let path = dir.join("nested").join("token");
    let b = builder(t).token_store(FileTokenStore::new(&path));
    let mut events = b.events();
    let c = within("connect", b.connect()).await.unwrap();
    c.invoke("login", &json!({"user": "grace"})).await.unwrap();
    wait_event(&mut events, "Authenticated", |e| {
        matches!(e, ClientEvent::Authenticated)
    })
    .await;
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert_eq!(Some(on_disk), c.signed_token());
    c.close().await;

    // A later "run" connects authenticated with the saved token.
    let c2 = within(
        "connect again",
        builder(t).token_store(FileTokenStore::new(&path)).connect(),
    )
    .await
    .unwrap();
    assert!(c2.is_authenticated());
    assert_eq!(c2.invoke("whoami", &()).await.unwrap()["sub"], "grace");
    let mut events2 = c2.events();
    c2.invoke("logout", &()).await.unwrap();
    // The token file is removed before Deauthenticated is emitted.
    wait_event(&mut events2, "Deauthenticated", |e| {
        matches!(e, ClientEvent::Deauthenticated)
    })
    .await;
    assert!(!path.exists(), "logout removes the token file");
    c2.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Calls made before the connection opens are queued and sent on open.
pub async fn lazy_start(t: &Target) {
    let c: Client = builder(t).start().unwrap();
    let r = within("echo before open", c.invoke("echo", &"early"))
        .await
        .unwrap();
    assert_eq!(r, json!("early"));
    within("wait_open", c.wait_open()).await.unwrap();
    assert_eq!(c.state(), ConnectionState::Open);
    c.close().await;
}
