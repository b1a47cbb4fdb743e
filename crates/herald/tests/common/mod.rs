//! End-to-end test harness: a Herald server on `127.0.0.1:0` driven through
//! its public API, and a raw SocketCluster v2 client built on
//! `tokio-websockets` and the `herald-protocol` codec.
//!
//! The client deliberately knows nothing of Herald's internals: it writes
//! frames and reads frames, so every assertion is about what crosses the
//! wire. Every wait is bounded ([`STEP`] per frame, [`TEST`] per test).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use herald::protocol::inbound::{self, Message as Parsed, Packet};
use herald::protocol::{Cid, outbound};
use herald::{Server, ServerBuilder};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_websockets::{ClientBuilder, CloseCode, MaybeTlsStream, Message, WebSocketStream};

/// Longest wait for any single frame or event.
pub const STEP: Duration = Duration::from_secs(10);
/// Longest run of a whole test.
pub const TEST: Duration = Duration::from_secs(60);
/// The HS256 secret of test servers.
pub const SECRET: &str = "herald-e2e-secret";

/// Runs a test body with the whole-test bound.
pub async fn bounded<F: Future>(body: F) -> F::Output {
    match tokio::time::timeout(TEST, body).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {TEST:?}"),
    }
}

/// Awaits `f`, failing the test after [`STEP`] with `what` in the message.
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    within_for(STEP, what, f).await
}

/// Awaits `f`, failing the test after `limit`.
pub async fn within_for<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `cond` until it holds (bounded by [`STEP`]). For server state that
/// has no wire signal (e.g. a socket's task finishing after its close).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// An HS256 token over `claims`, signed with `secret` by `jsonwebtoken`
/// (independently of Herald's own signing code).
pub fn token_with(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign test token")
}

/// An HS256 token signed with [`SECRET`].
pub fn token(claims: Value) -> String {
    token_with(SECRET, claims)
}

/// A JWT with an arbitrary header, payload and signature text (for forged
/// tokens: `alg: none`, algorithm confusion).
pub fn forged_token(header: Value, claims: Value, signature: &str) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{}", b64(&header), b64(&claims), signature)
}

/// The claims of a JWT, read without verification.
pub fn token_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// The fixture server builder (procedures, receiver and channel rules of
/// `herald-testkit`) with the test secret.
pub fn fixture() -> ServerBuilder {
    herald_testkit::fixture(Server::builder().auth_secret(SECRET))
}

/// A server serving on an ephemeral 127.0.0.1 port until dropped or stopped.
pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Builds and serves `builder` with `Server::serve`.
    pub async fn start(builder: ServerBuilder) -> Self {
        let server = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            server,
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The fixture server with `configure` applied to its settings.
    pub async fn fixture_with(configure: impl FnOnce(&mut herald::Config)) -> Self {
        Self::start(fixture().configure(configure)).await
    }

    /// The fixture server with default settings.
    pub async fn fixture() -> Self {
        Self::start(fixture()).await
    }

    /// The WebSocket URL of the endpoint.
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.addr, self.server.config().path)
    }

    /// A connected socket that has not sent its handshake.
    pub async fn connect(&self) -> Client {
        Client::connect(&self.url()).await
    }

    /// A connected socket with `query` appended to the URL (`a=1&b=2`).
    pub async fn connect_query(&self, query: &str) -> Client {
        Client::connect(&format!("{}?{query}", self.url())).await
    }

    /// A connected, handshaken socket without token.
    pub async fn client(&self) -> Client {
        let mut c = self.connect().await;
        let status = c.handshake(None).await;
        assert_eq!(status["isAuthenticated"], false, "{status}");
        c
    }

    /// Fires the `serve` shutdown future and waits for `serve` to return.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join().await
    }

    /// Waits for `serve` to return (after a shutdown was triggered).
    pub async fn join(&mut self) -> std::io::Result<()> {
        let task = self.task.take().expect("serve task already joined");
        within("Server::serve to return", task)
            .await
            .expect("serve task panicked")
    }
}

/// What the next WebSocket message was.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A text message (`""` is a server ping).
    Text(String),
    /// A close frame: code (1005 when absent) and reason.
    Close(u16, String),
    /// The connection ended without a close frame.
    Eof,
}

/// A raw SocketCluster v2 client: sends frames, reads frames.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_cid: u64,
    /// Frames read while waiting for a specific reply, handed out first.
    buffered: VecDeque<Incoming>,
    /// Answer server pings (`""`) with pongs as they are read. On by default,
    /// like every real client.
    pub auto_pong: bool,
    /// The socket id from the handshake reply.
    pub id: String,
}

impl Client {
    /// Opens a WebSocket to `url`.
    pub async fn connect(url: &str) -> Client {
        match Self::try_connect(url).await {
            Ok(c) => c,
            Err(e) => panic!("cannot connect to {url}: {e}"),
        }
    }

    /// Opens a WebSocket to `url`, returning the upgrade error.
    pub async fn try_connect(url: &str) -> Result<Client, tokio_websockets::Error> {
        let uri: http::Uri = url.parse().expect("valid ws url");
        let (ws, _response) =
            within("WebSocket upgrade", ClientBuilder::from_uri(uri).connect()).await?;
        Ok(Client {
            ws,
            next_cid: 1,
            buffered: VecDeque::new(),
            auto_pong: true,
            id: String::new(),
        })
    }

    /// The next call id.
    pub fn cid(&mut self) -> u64 {
        let cid = self.next_cid;
        self.next_cid += 1;
        cid
    }

    /// Sends one text message as is.
    pub async fn send_text(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        within("send", self.ws.send(Message::text(text)))
            .await
            .expect("send text message");
    }

    /// Sends a JSON value as one text message.
    pub async fn send_json(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    /// Sends encoded frame bytes (from `herald_protocol::outbound`).
    pub async fn send_frame(&mut self, frame: bytes::Bytes) {
        let text = String::from_utf8(frame.to_vec()).expect("frames are UTF-8");
        self.send_text(text).await;
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: Vec<u8>) {
        within("send", self.ws.send(Message::binary(data)))
            .await
            .expect("send binary message");
    }

    /// Sends a pong (`""`).
    pub async fn pong(&mut self) {
        self.send_text(outbound::PING).await;
    }

    /// Reads the next message off the socket (not the buffer), answering a
    /// ping when `auto_pong` is on. Bounded by `limit`.
    async fn read_wire(&mut self, limit: Duration) -> Incoming {
        let next = within_for(limit, "a message from the server", self.ws.next()).await;
        let incoming = match next {
            None => Incoming::Eof,
            Some(Err(e)) => panic!("WebSocket error while reading: {e}"),
            Some(Ok(msg)) => {
                if let Some(text) = msg.as_text() {
                    Incoming::Text(text.to_owned())
                } else if msg.is_close() {
                    let (code, reason) = msg
                        .as_close()
                        .map_or((1005, String::new()), |(c, r)| (u16::from(c), r.to_owned()));
                    // Poll once more so the codec sends its close echo now
                    // (the server waits for it before finishing the socket).
                    let _ = tokio::time::timeout(limit, self.ws.next()).await;
                    Incoming::Close(code, reason)
                } else {
                    // WebSocket-level ping/pong frames: not SocketCluster's.
                    return Box::pin(self.read_wire(limit)).await;
                }
            }
        };
        if self.auto_pong && incoming == Incoming::Text(String::new()) {
            let _ = self.ws.send(Message::text(outbound::PING)).await;
        }
        incoming
    }

    /// The next message, buffered ones first, pings included.
    pub async fn recv_raw(&mut self) -> Incoming {
        self.recv_raw_for(STEP).await
    }

    /// [`Client::recv_raw`] with an explicit bound.
    pub async fn recv_raw_for(&mut self, limit: Duration) -> Incoming {
        match self.buffered.pop_front() {
            Some(i) => i,
            None => self.read_wire(limit).await,
        }
    }

    /// The next text frame that is not a ping. Panics on a close.
    pub async fn recv(&mut self) -> String {
        loop {
            match self.recv_raw().await {
                Incoming::Text(t) if t.is_empty() => continue,
                Incoming::Text(t) => return t,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// [`Client::recv`] parsed as JSON.
    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
    }

    /// The next frame, which must be the event `event`; returns the whole frame.
    pub async fn expect_event(&mut self, event: &str) -> Value {
        let frame = self.recv_json().await;
        assert_eq!(frame["event"], event, "expected {event}, got {frame}");
        frame
    }

    /// Reads until the socket closes, skipping pings; panics on any other
    /// frame. Returns the close code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.recv_raw().await {
                Incoming::Text(t) if t.is_empty() => continue,
                Incoming::Text(t) => panic!("expected a close, got frame {t}"),
                Incoming::Close(code, reason) => return (code, reason),
                Incoming::Eof => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Sends `#handshake` (cid 1 on a fresh client) and returns the reply's
    /// `data`. Records the socket id.
    pub async fn handshake(&mut self, token: Option<&str>) -> Value {
        let cid = self.cid();
        self.send_frame(outbound::handshake_request(&Cid::from(cid), token))
            .await;
        let reply = self.recv_json().await;
        assert_eq!(reply["rid"], cid, "handshake reply: {reply}");
        assert!(reply.get("error").is_none(), "handshake refused: {reply}");
        if let Some(id) = reply["data"]["id"].as_str() {
            self.id = id.to_owned();
        }
        reply["data"].clone()
    }

    /// Sends `{"event":event,"data":data,"cid":N}` and returns the whole
    /// reply frame `{"rid":N,...}`. Frames that arrive before the reply are
    /// kept for the next `recv`.
    pub async fn request(&mut self, event: &str, data: Option<Value>) -> Value {
        let cid = self.cid();
        let mut frame = json!({"event": event, "cid": cid});
        if let Some(data) = data {
            frame["data"] = data;
        }
        self.send_json(frame).await;
        self.reply_to(cid).await
    }

    /// Waits for the reply to `cid`, buffering every other message.
    pub async fn reply_to(&mut self, cid: u64) -> Value {
        let mut skipped = VecDeque::new();
        // Buffered frames first, then the wire.
        while let Some(i) = self.buffered.pop_front() {
            if let Some(reply) = Self::as_reply(&i, cid) {
                self.buffered = skipped.into_iter().chain(self.buffered.drain(..)).collect();
                return reply;
            }
            skipped.push_back(i);
        }
        loop {
            let i = self.read_wire(STEP).await;
            if let Some(reply) = Self::as_reply(&i, cid) {
                self.buffered = skipped;
                return reply;
            }
            if matches!(i, Incoming::Close(..) | Incoming::Eof) {
                panic!("socket closed while waiting for reply {cid}: {i:?} (after {skipped:?})");
            }
            skipped.push_back(i);
        }
    }

    fn as_reply(i: &Incoming, cid: u64) -> Option<Value> {
        let Incoming::Text(t) = i else { return None };
        if t.is_empty() {
            return None;
        }
        let v: Value = serde_json::from_str(t).ok()?;
        (v.get("event").is_none() && v["rid"] == cid).then_some(v)
    }

    /// Invokes a procedure: `Ok(data)` (`Null` when absent) or `Err(error)`.
    pub async fn invoke(&mut self, procedure: &str, data: Value) -> Result<Value, Value> {
        let reply = self.request(procedure, Some(data)).await;
        match reply.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(reply.get("data").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Invokes and expects success.
    pub async fn call(&mut self, procedure: &str, data: Value) -> Value {
        match self.invoke(procedure, data).await {
            Ok(v) => v,
            Err(e) => panic!("{procedure} failed: {e}"),
        }
    }

    /// Subscribes with a cid and expects the plain `{"rid":N}` ack.
    pub async fn subscribe(&mut self, channel: &str) {
        let reply = self
            .request("#subscribe", Some(json!({ "channel": channel })))
            .await;
        assert_eq!(
            reply.as_object().map(|o| o.len()),
            Some(1),
            "subscribe {channel}: {reply}"
        );
    }

    /// Subscribes with a cid (and `recover` when given) and returns the
    /// whole reply frame. Publications that arrive before the reply (a
    /// recovery) are kept for the next `recv`, in order.
    pub async fn subscribe_with(&mut self, channel: &str, recover: Option<(u64, &str)>) -> Value {
        let mut data = json!({ "channel": channel });
        if let Some((offset, epoch)) = recover {
            data["recover"] = json!({"offset": offset, "epoch": epoch});
        }
        self.request("#subscribe", Some(data)).await
    }

    /// The next frame, which must be a publication on a channel with
    /// history: (channel, data as JSON text, offset, epoch).
    pub async fn recv_positioned(&mut self) -> (String, Option<String>, u64, String) {
        let frame = self.recv().await;
        match inbound::parse(&frame) {
            Ok(Parsed::One(Ok(Packet::Publish {
                channel,
                data,
                position: Some(p),
                ..
            }))) => (
                channel.into_owned(),
                data.map(|d| d.get().to_owned()),
                p.offset,
                p.epoch.into_owned(),
            ),
            other => panic!("not a publication with a position: {other:?} in {frame}"),
        }
    }

    /// Publishes with a cid and returns the reply frame.
    pub async fn publish(&mut self, channel: &str, data: Value) -> Value {
        self.request(
            "#publish",
            Some(json!({ "channel": channel, "data": data })),
        )
        .await
    }

    /// Closes with `code` and waits for the server's acknowledgement.
    pub async fn close(mut self, code: u16, reason: &str) {
        let code = CloseCode::try_from(code).expect("valid close code");
        within("close", self.ws.send(Message::close(Some(code), reason)))
            .await
            .expect("send close");
        // Read until the server echoes the close and ends the stream.
        within("close acknowledgement", async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// The publication in `frame`, as (channel, data), read with the
    /// protocol parser. Panics when it is not a publication.
    pub fn publication(frame: &str) -> (String, Option<String>) {
        match inbound::parse(frame) {
            Ok(Parsed::One(Ok(Packet::Publish { channel, data, .. }))) => {
                (channel.into_owned(), data.map(|d| d.get().to_owned()))
            }
            other => panic!("not a publication: {other:?} in {frame}"),
        }
    }
}

/// Sends a raw HTTP/1.1 request and returns the whole response text.
pub async fn http_request(addr: SocketAddr, request: &str) -> String {
    within("HTTP response", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
}
