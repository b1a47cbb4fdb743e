//! Behaviour that a well-behaved server cannot provoke, checked against a tiny
//! scripted WebSocket server in the test: a server that stops pinging
//! (dead-peer detection), one that never answers (connect timeout), one that
//! hangs up with requests in flight, one that refuses the handshake, and a
//! flood of publications for a slow consumer.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use herald_client::{
    Client, ClientEvent, ConnectionState, Error, PingTimeout, ReconnectPolicy, SubscriptionError,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_websockets::Message;

mod common;

use common::scripted::{accept, handshake, raw_server, recv_json, recv_text, send, send_ping};
use common::within;

fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy {
        enabled: true,
        initial_delay: Duration::from_millis(20),
        multiplier: 2.0,
        max_delay: Duration::from_millis(200),
    }
}

async fn next_event(events: &mut herald_client::Events) -> ClientEvent {
    within("an event", events.next())
        .await
        .expect("events open")
}

#[tokio::test]
async fn answers_pings_and_closes_4000_when_pings_stop_then_reconnects() {
    let (url, mut conns) = raw_server().await;
    let builder = Client::builder(&url).reconnect(fast_reconnect());
    let mut events = builder.events();
    let (client, mut ws) = tokio::join!(builder.connect(), async {
        let mut ws = accept(&mut conns).await;
        handshake(&mut ws, 300).await;
        ws
    });
    let client = client.unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Connecting
    ));
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Open { .. }
    ));

    // A ping is answered with a pong (both empty messages), and keeps the
    // connection alive past the ping timeout.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        send_ping(&mut ws).await;
        assert_eq!(recv_text(&mut ws).await, "");
    }
    assert_eq!(client.state(), ConnectionState::Open);

    // Now silence: the client closes with 4000 within ~300 ms.
    let started = tokio::time::Instant::now();
    let close = within("the client's close", async {
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_close() => return m.as_close().map(|(c, _)| u16::from(c)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await;
    assert_eq!(close, Some(4000));
    assert!(started.elapsed() >= Duration::from_millis(250));
    match next_event(&mut events).await {
        ClientEvent::Closed { code, .. } => assert_eq!(code, 4000),
        e => panic!("{e:?}"),
    }
    // A ping timeout reconnects at once.
    match next_event(&mut events).await {
        ClientEvent::Reconnecting { attempt, delay } => {
            assert_eq!((attempt, delay), (1, Duration::ZERO));
        }
        e => panic!("{e:?}"),
    }
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Connecting
    ));
    let mut ws2 = accept(&mut conns).await;
    handshake(&mut ws2, 300).await;
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Open { .. }
    ));
    client.close().await;
}

#[tokio::test]
async fn fixed_ping_timeout_overrides_the_server() {
    let (url, mut conns) = raw_server().await;
    let builder = Client::builder(&url)
        .ping_timeout(PingTimeout::Fixed(Duration::from_millis(200)))
        .reconnect(ReconnectPolicy::disabled());
    let mut events = builder.events();
    let (client, _ws) = tokio::join!(builder.connect(), async {
        let mut ws = accept(&mut conns).await;
        handshake(&mut ws, 600_000).await;
        ws
    });
    let client = client.unwrap();
    loop {
        if let ClientEvent::Closed { code, .. } = next_event(&mut events).await {
            assert_eq!(code, 4000);
            break;
        }
    }
    // Reconnect disabled: the client goes idle (no Reconnecting event) and
    // connects again when a call needs the server.
    let echo = tokio::spawn({
        let client = client.clone();
        async move { client.invoke("echo", &1).await }
    });
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Connecting
    ));
    let mut ws = accept(&mut conns).await;
    handshake(&mut ws, 600_000).await;
    let req = recv_json(&mut ws).await;
    assert_eq!(req["event"], "echo");
    send(&mut ws, json!({"rid": req["cid"], "data": "pong"})).await;
    assert_eq!(within("echo", echo).await.unwrap().unwrap(), json!("pong"));
    client.close().await;
}

#[tokio::test]
async fn connect_timeout_and_refused() {
    // Accepts TCP but never answers the upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let r = within(
        "connect timeout",
        Client::builder(format!("ws://127.0.0.1:{port}/"))
            .connect_timeout(Duration::from_millis(200))
            .connect(),
    )
    .await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");

    // Nobody listens.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let r = within(
        "refused",
        Client::connect(format!("ws://127.0.0.1:{port}/socketcluster/")),
    )
    .await;
    assert!(
        matches!(r, Err(Error::BadConnection { code: 1006, .. })),
        "{r:?}"
    );

    let r = Client::connect("http://127.0.0.1:1/").await;
    assert!(matches!(r, Err(Error::InvalidUrl(_))), "{r:?}");
}

#[tokio::test]
async fn pending_requests_fail_when_the_server_hangs_up() {
    let (url, mut conns) = raw_server().await;
    let builder = Client::builder(&url).reconnect(fast_reconnect());
    let mut events = builder.events();
    let (client, mut ws) = tokio::join!(builder.connect(), async {
        let mut ws = accept(&mut conns).await;
        handshake(&mut ws, 60_000).await;
        ws
    });
    let client = client.unwrap();
    let mut sub = {
        let sub = tokio::spawn({
            let client = client.clone();
            async move { client.subscribe("c").await }
        });
        let req = recv_json(&mut ws).await;
        assert_eq!(req["event"], "#subscribe");
        assert_eq!(req["data"]["channel"], "c");
        send(&mut ws, json!({"rid": req["cid"]})).await;
        within("subscribe", sub).await.unwrap().unwrap()
    };
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.invoke("slow", &json!({})).await }
    });
    let req = recv_json(&mut ws).await;
    assert_eq!(req["event"], "slow");
    drop(ws); // hang up without a close frame

    let r = within("the pending call", call).await.unwrap();
    assert!(
        matches!(r, Err(Error::BadConnection { code: 1006, .. })),
        "{r:?}"
    );

    // Reconnects and resubscribes by itself.
    let mut ws = accept(&mut conns).await;
    handshake(&mut ws, 60_000).await;
    let req = recv_json(&mut ws).await;
    assert_eq!(req["event"], "#subscribe");
    assert_eq!(req["data"]["channel"], "c");
    send(&mut ws, json!({"rid": req["cid"]})).await;
    send(
        &mut ws,
        json!({"event": "#publish", "data": {"channel": "c", "data": "after"}}),
    )
    .await;
    match within("publication", sub.next()).await {
        Some(Ok(p)) => assert_eq!(p.data, json!("after")),
        other => panic!("{other:?}"),
    }
    let mut saw_reconnecting = false;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), events.next()).await {
        if let ClientEvent::Reconnecting { attempt, delay } = e {
            assert_eq!(attempt, 1);
            assert!(delay <= Duration::from_millis(20));
            saw_reconnecting = true;
        }
    }
    assert!(saw_reconnecting);
    client.close().await;
}

#[tokio::test]
async fn refused_handshake_is_retried_with_backoff() {
    let (url, mut conns) = raw_server().await;
    let builder = Client::builder(&url).reconnect(fast_reconnect());
    let mut events = builder.events();
    let client = builder.start().unwrap();
    for attempt in 1..=3u32 {
        let mut ws = accept(&mut conns).await;
        let hs = recv_json(&mut ws).await;
        send(
            &mut ws,
            json!({"rid": hs["cid"], "error": {"name": "HandshakeRefused", "message": "no"}}),
        )
        .await;
        loop {
            match next_event(&mut events).await {
                ClientEvent::Closed { code, reason } => {
                    assert_eq!(code, 4003);
                    assert!(reason.contains("HandshakeRefused"), "{reason}");
                }
                ClientEvent::Reconnecting { attempt: a, delay } => {
                    assert_eq!(a, attempt);
                    let ceiling = Duration::from_millis(20 * 2u64.pow(attempt - 1));
                    assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
                    break;
                }
                _ => {}
            }
        }
    }
    client.close().await;
}

#[tokio::test]
async fn slow_consumer_drops_oldest_and_reports_the_gap() {
    let (url, mut conns) = raw_server().await;
    let builder = Client::builder(&url).subscription_buffer(4);
    let (client, mut ws) = tokio::join!(builder.connect(), async {
        let mut ws = accept(&mut conns).await;
        handshake(&mut ws, 60_000).await;
        ws
    });
    let client = client.unwrap();
    let sub = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("flood").await }
    });
    let req = recv_json(&mut ws).await;
    send(&mut ws, json!({"rid": req["cid"]})).await;
    let mut sub = within("subscribe", sub).await.unwrap().unwrap();

    // 100 publications, then an invoke reply as a marker that all were read.
    for i in 0..100 {
        send(
            &mut ws,
            json!({"event": "#publish", "data": {"channel": "flood", "data": i}}),
        )
        .await;
    }
    let marker = tokio::spawn({
        let client = client.clone();
        async move { client.invoke("marker", &()).await }
    });
    let req = recv_json(&mut ws).await;
    send(&mut ws, json!({"rid": req["cid"], "data": "done"})).await;
    assert_eq!(
        within("marker", marker).await.unwrap().unwrap(),
        json!("done")
    );

    match within("lag", sub.next()).await {
        Some(Err(SubscriptionError::Lagged(n))) => assert_eq!(n, 96),
        other => panic!("expected a lag report, got {other:?}"),
    }
    for i in 96..100 {
        match within("publication", sub.next()).await {
            Some(Ok(p)) => assert_eq!(p.data, json!(i)),
            other => panic!("{other:?}"),
        }
    }
    client.close().await;
}

#[tokio::test]
async fn server_invokes_without_handler_get_an_error_reply() {
    let (url, mut conns) = raw_server().await;
    let (client, mut ws) = tokio::join!(Client::connect(&url), async {
        let mut ws = accept(&mut conns).await;
        handshake(&mut ws, 60_000).await;
        ws
    });
    let client = client.unwrap();
    client.on_invoke("add", |v: Value| async move {
        Ok(json!(
            v["a"].as_i64().unwrap_or(0) + v["b"].as_i64().unwrap_or(0)
        ))
    });
    client.on_invoke("boom", |_| async move {
        panic!("handler bug");
    });
    send(&mut ws, json!({"event": "nobody", "data": 1, "cid": 7})).await;
    let r = recv_json(&mut ws).await;
    assert_eq!(r["rid"], 7);
    assert_eq!(r["error"]["name"], "NoSuchProcedureError");
    send(
        &mut ws,
        json!({"event": "add", "data": {"a": 2, "b": 3}, "cid": 8}),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await, json!({"rid": 8, "data": 5}));
    // A panicking handler is answered with an error, and the client survives.
    send(&mut ws, json!({"event": "boom", "cid": 9})).await;
    let r = recv_json(&mut ws).await;
    assert_eq!(r["rid"], 9);
    assert!(r["error"]["name"].is_string());
    // #setAuthToken as an invoke is acknowledged and stored.
    send(
        &mut ws,
        json!({"event": "#setAuthToken", "data": {"token": "a.eyJzdWIiOiJ4In0.c"}, "cid": 10}),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await, json!({"rid": 10}));
    assert_eq!(client.claims().unwrap()["sub"], "x");
    // Garbage from the server is ignored.
    ws.send(Message::text("not json{")).await.unwrap();
    send(
        &mut ws,
        json!({"event": "add", "data": {"a": 1}, "cid": 11}),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await, json!({"rid": 11, "data": 1}));
    client.close().await;
    // The client closes with 1000.
    let code = within("close", async {
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_close() => return m.as_close().map(|(c, _)| u16::from(c)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await;
    assert_eq!(code, Some(1000));
}
