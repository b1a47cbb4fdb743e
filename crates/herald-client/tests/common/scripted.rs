//! A tiny scripted WebSocket server: each accepted connection is handed to
//! the test, which plays the server's part frame by frame. It provokes what
//! a well-behaved server cannot (silence, hang-ups, floods), and it speaks
//! Herald's protocol extension before the real server does (positions,
//! `recover`, history and presence replies, pushes).
//!
//! Every wait is bounded by [`super::STEP`].

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_websockets::{Message, ServerBuilder, WebSocketStream};

use super::within;
use herald_client::Client;

/// The server side of one connection.
pub type Conn = WebSocketStream<TcpStream>;

/// A WebSocket server on a free port of 127.0.0.1; each accepted connection
/// is handed to the test through the receiver.
pub async fn raw_server() -> (String, mpsc::UnboundedReceiver<Conn>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok((_req, ws)) = ServerBuilder::new().accept(tcp).await {
                    let _ = tx.send(ws);
                }
            });
        }
    });
    (format!("ws://127.0.0.1:{port}/socketcluster/"), rx)
}

/// The next connection.
pub async fn accept(conns: &mut mpsc::UnboundedReceiver<Conn>) -> Conn {
    within("a connection", conns.recv()).await.unwrap()
}

/// The next connection, handshaken (socket id "raw", a long ping timeout).
pub async fn accept_open(conns: &mut mpsc::UnboundedReceiver<Conn>) -> Conn {
    let mut ws = accept(conns).await;
    handshake(&mut ws, 60_000).await;
    ws
}

/// The next text message (a close or the end panics).
pub async fn recv_text(ws: &mut Conn) -> String {
    loop {
        let msg = within("a message from the client", ws.next())
            .await
            .expect("connection open")
            .expect("no error");
        if let Some(t) = msg.as_text() {
            return t.to_owned();
        }
        assert!(!msg.is_close(), "unexpected close {:?}", msg.as_close());
    }
}

/// The next text message, as JSON.
pub async fn recv_json(ws: &mut Conn) -> Value {
    let t = recv_text(ws).await;
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{t}: {e}"))
}

/// Sends one frame.
pub async fn send(ws: &mut Conn, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Sends a ping (an empty message).
pub async fn send_ping(ws: &mut Conn) {
    ws.send(Message::text("")).await.unwrap();
}

/// Answers the client's `#handshake`.
pub async fn handshake(ws: &mut Conn, ping_timeout_ms: u64) -> Value {
    let hs = recv_json(ws).await;
    assert_eq!(hs["event"], "#handshake");
    send(
        ws,
        json!({"rid": hs["cid"], "data": {"id": "raw", "pingTimeout": ping_timeout_ms, "isAuthenticated": false}}),
    )
    .await;
    hs
}

/// The close code the client sends next (other messages are skipped).
pub async fn wait_close(ws: &mut Conn) -> Option<u16> {
    within("the client's close", async {
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_close() => return m.as_close().map(|(c, _)| u16::from(c)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
}

// ---- Herald's extension ----

/// The client's next frame, which must be a `#subscribe` of `channel`.
/// Returns the frame (`cid`, `data.recover`, `data.data`).
pub async fn expect_subscribe(ws: &mut Conn, channel: &str) -> Value {
    let req = recv_json(ws).await;
    assert_eq!(req["event"], "#subscribe", "{req}");
    assert_eq!(req["data"]["channel"], channel, "{req}");
    req
}

/// The `recover` position of a `#subscribe` frame, as `(offset, epoch)`.
pub fn recover_of(subscribe: &Value) -> Option<(u64, String)> {
    let r = subscribe["data"].get("recover")?;
    Some((r["offset"].as_u64()?, r["epoch"].as_str()?.to_owned()))
}

/// The client's next frame, which must be an invoke of `procedure`.
/// Returns the frame (`cid`, `data`).
pub async fn expect_invoke(ws: &mut Conn, procedure: &str) -> Value {
    let req = recv_json(ws).await;
    assert_eq!(req["event"], procedure, "{req}");
    assert!(req["cid"].is_u64(), "an invoke has a call id: {req}");
    req
}

/// Replies to the request `req` with `data` (`{"rid":K}` when `None`).
pub async fn reply(ws: &mut Conn, req: &Value, data: Option<Value>) {
    let frame = match data {
        Some(data) => json!({"rid": req["cid"], "data": data}),
        None => json!({"rid": req["cid"]}),
    };
    send(ws, frame).await;
}

/// Replies to the request `req` with an error object.
pub async fn reply_error(ws: &mut Conn, req: &Value, name: &str, message: &str) {
    send(
        ws,
        json!({"rid": req["cid"], "error": {"name": name, "message": message}}),
    )
    .await;
}

/// Delivers a publication, with its position on a channel with history.
pub async fn publish(ws: &mut Conn, channel: &str, data: Value, at: Option<(u64, &str)>) {
    let mut body = json!({"channel": channel, "data": data});
    if let Some((offset, epoch)) = at {
        body["offset"] = json!(offset);
        body["epoch"] = json!(epoch);
    }
    send(ws, json!({"event": "#publish", "data": body})).await;
}

/// Pushes `#herald/unrecoverable`: lost for good, goes on after `offset`.
pub async fn unrecoverable(ws: &mut Conn, channel: &str, offset: u64, epoch: &str) {
    send(
        ws,
        json!({"event": "#herald/unrecoverable", "data": {"channel": channel, "offset": offset, "epoch": epoch}}),
    )
    .await;
}

/// Pushes `#herald/join` (or, with `join` false, `#herald/leave`).
pub async fn presence_push(ws: &mut Conn, join: bool, channel: &str, client: &str, user: Value) {
    let event = if join {
        "#herald/join"
    } else {
        "#herald/leave"
    };
    send(
        ws,
        json!({"event": event, "data": {"channel": channel, "client": client, "user": user}}),
    )
    .await;
}

/// Makes sure the client has handled every frame sent before: a marker
/// invoke goes out after them and its reply comes back (one connection is
/// read in order).
pub async fn roundtrip(client: &Client, ws: &mut Conn) {
    let marker = tokio::spawn({
        let client = client.clone();
        async move { client.invoke("marker", &()).await }
    });
    let req = expect_invoke(ws, "marker").await;
    reply(ws, &req, Some(json!("done"))).await;
    let r = within("the marker reply", marker).await.unwrap();
    assert_eq!(r.unwrap(), json!("done"));
}

/// Closes the client while reading its close frame (which the server side
/// echoes), so that the close handshake completes at once. Returns the
/// client's close code.
pub async fn close(client: &Client, ws: &mut Conn) -> Option<u16> {
    let server_side = async {
        let code = wait_close(ws).await;
        // Keep reading: that is what flushes the echo of the close.
        within("the end of the connection", async {
            while ws.next().await.is_some() {}
        })
        .await;
        code
    };
    let ((), code) = tokio::join!(client.close(), server_side);
    code
}
