//! One subscriber connection to one Redis server.
//!
//! Why not redis-rs's own pub/sub connections: they attribute every
//! `unsubscribe`/`sunsubscribe` they read to the oldest request in flight.
//! Redis Cluster also *pushes* `sunsubscribe` by itself when a slot migrates
//! away or a primary is demoted, and such a push would complete the wrong
//! request (or be dropped), leaving the client believing it is subscribed.
//! The subscription manager must see every reply and every push as it
//! arrives, in order, so this module owns the socket and uses redis-rs for
//! what it is good at: packing commands ([`redis::cmd`]) and decoding RESP
//! ([`redis::parse_redis_value_async`]).
//!
//! The connection speaks RESP2 in subscriber mode. Two tasks serve it:
//!
//! * the **reader** decodes values; a published message (`message` /
//!   `smessage`) is handed straight to the node's registry, on this task,
//!   without going through the manager (the hot path); everything else
//!   (confirmations, pushes, errors, pongs) is forwarded to the manager as a
//!   [`Reply`], in wire order, after the messages that preceded it;
//! * the **writer** writes the packed commands the manager queues, batching
//!   whatever is queued into one flush.
//!
//! Either task ending (EOF, I/O error) reports [`Event::Closed`] once;
//! dropping the [`SubConnection`] aborts both and closes the socket, which
//! makes the server drop every subscription of the connection.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use herald::Publication;
use redis::Value;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::keys;
use crate::shared::Shared;
use crate::subscriptions::Event;

/// A Redis server address (`host:port`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NodeAddr {
    pub(crate) host: Arc<str>,
    pub(crate) port: u16,
}

impl NodeAddr {
    pub(crate) fn new(host: &str, port: u16) -> Self {
        Self {
            host: Arc::from(host),
            port,
        }
    }

    /// Parses `host:port` (as in a `MOVED` reply; IPv6 hosts may be bare or
    /// bracketed).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let (host, port) = s.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(Self::new(host, port.parse().ok()?))
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A reply or push read on a subscriber connection (anything but a
/// published message).
#[derive(Debug)]
pub(crate) enum Reply {
    /// `subscribe` / `ssubscribe` confirmation.
    Subscribed(Arc<str>),
    /// `unsubscribe` / `sunsubscribe`: a confirmation, or a push the server
    /// sends by itself when it drops a sharded subscription.
    Unsubscribed(Arc<str>),
    /// Reply to `PING`.
    Pong,
    /// An error reply (`-MOVED ...`, `-CLUSTERDOWN ...`, `-NOPERM ...`).
    Error(redis::ServerError),
    /// Anything this client never asks for: the connection is out of sync.
    Unexpected(String),
}

/// Which pub/sub commands a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `SUBSCRIBE` / `UNSUBSCRIBE` / `PUBLISH` (one server, or sharded by
    /// Herald).
    Plain,
    /// `SSUBSCRIBE` / `SUNSUBSCRIBE` / `SPUBLISH` (Redis Cluster).
    Sharded,
}

impl Flavor {
    pub(crate) fn subscribe(self) -> &'static str {
        match self {
            Flavor::Plain => "SUBSCRIBE",
            Flavor::Sharded => "SSUBSCRIBE",
        }
    }

    pub(crate) fn unsubscribe(self) -> &'static str {
        match self {
            Flavor::Plain => "UNSUBSCRIBE",
            Flavor::Sharded => "SUNSUBSCRIBE",
        }
    }

    pub(crate) fn publish(self) -> &'static str {
        match self {
            Flavor::Plain => "PUBLISH",
            Flavor::Sharded => "SPUBLISH",
        }
    }
}

/// Aborts its tasks when dropped.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A live subscriber connection: queue commands with [`SubConnection::send`];
/// drop it to close.
pub(crate) struct SubConnection {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    _tasks: AbortOnDrop,
}

impl SubConnection {
    /// Queues a packed command. A closed connection ignores it (its
    /// `Closed` event is on its way).
    pub(crate) fn send(&self, packed: Vec<u8>) {
        let _ = self.tx.send(packed);
    }

    /// A connection without a socket: what is sent arrives on the returned
    /// receiver (the seam of the subscription manager's unit tests).
    #[cfg(test)]
    pub(crate) fn fake() -> (Self, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                _tasks: AbortOnDrop(Vec::new()),
            },
            rx,
        )
    }
}

type Decoder = combine::stream::Decoder<
    combine::parser::combinator::AnySendSyncPartialState,
    combine::stream::PointerOffset<[u8]>,
>;

/// Connects, authenticates and names the connection, then starts its reader
/// and writer. Events carry `generation` so the manager can ignore a connection it
/// already gave up.
pub(crate) async fn open(
    addr: NodeAddr,
    generation: u64,
    auth: &redis::RedisConnectionInfo,
    connect_timeout: Duration,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
) -> Result<SubConnection, String> {
    let handshake = async {
        let stream = TcpStream::connect((&*addr.host, addr.port))
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut read, mut write) = stream.into_split();
        let mut decoder = Decoder::new();
        let mut setup = Vec::new();
        let mut auth_sent = false;
        if let Some(password) = auth.password() {
            let mut cmd = redis::cmd("AUTH");
            if let Some(user) = auth.username() {
                cmd.arg(user);
            }
            cmd.arg(password);
            setup.extend(cmd.get_packed_command());
            auth_sent = true;
        }
        setup.extend(
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg("herald-subscriber")
                .get_packed_command(),
        );
        write
            .write_all(&setup)
            .await
            .map_err(|e| format!("write to {addr}: {e}"))?;
        if auth_sent && let Value::ServerError(e) = read_value(&mut decoder, &mut read).await? {
            return Err(format!("AUTH on {addr} failed: {e}"));
        }
        // CLIENT SETNAME may be renamed away; its error is harmless.
        read_value(&mut decoder, &mut read).await?;
        Ok::<_, String>((read, write, decoder))
    };
    let (read, write, decoder) = tokio::time::timeout(connect_timeout, handshake)
        .await
        .map_err(|_| format!("connect to {addr}: timed out after {connect_timeout:?}"))??;

    let (tx, rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_loop(
        addr.clone(),
        generation,
        read,
        decoder,
        shared,
        events.clone(),
    ));
    let writer = tokio::spawn(write_loop(addr, generation, write, rx, events));
    Ok(SubConnection {
        tx,
        _tasks: AbortOnDrop(vec![reader, writer]),
    })
}

async fn read_value(decoder: &mut Decoder, read: &mut OwnedReadHalf) -> Result<Value, String> {
    redis::parse_redis_value_async(decoder, read)
        .await
        .map_err(|e| e.to_string())
}

async fn read_loop(
    addr: NodeAddr,
    generation: u64,
    mut read: OwnedReadHalf,
    mut decoder: Decoder,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
) {
    let error = loop {
        let value = match read_value(&mut decoder, &mut read).await {
            Ok(v) => v,
            Err(e) => break e,
        };
        if let Some(reply) = classify(value, &shared) {
            let event = Event::Reply {
                addr: addr.clone(),
                generation,
                reply,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    };
    let _ = events.send(Event::Closed {
        addr,
        generation,
        error,
    });
}

async fn write_loop(
    addr: NodeAddr,
    generation: u64,
    write: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut write = BufWriter::new(write);
    while let Some(first) = rx.recv().await {
        let mut result = write.write_all(&first).await;
        while result.is_ok()
            && let Ok(more) = rx.try_recv()
        {
            result = write.write_all(&more).await;
        }
        if let Err(e) = result.and(write.flush().await) {
            let _ = events.send(Event::Closed {
                addr,
                generation,
                error: format!("write: {e}"),
            });
            return;
        }
    }
}

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn channel_name(v: &Value) -> Option<Arc<str>> {
    bulk(v)
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(Arc::from)
}

/// Delivers a published message, or turns anything else into a [`Reply`].
fn classify(value: Value, shared: &Shared) -> Option<Reply> {
    let items = match value {
        Value::Array(items) => items,
        Value::SimpleString(s) if s.eq_ignore_ascii_case("PONG") => return Some(Reply::Pong),
        Value::ServerError(e) => return Some(Reply::Error(e)),
        other => return Some(Reply::Unexpected(format!("{other:?}"))),
    };
    let kind = items.first().and_then(bulk).unwrap_or_default();
    match kind {
        b"message" | b"smessage" if items.len() == 3 => {
            let mut items = items;
            let payload = match items.pop() {
                Some(Value::BulkString(p)) => p,
                _ => {
                    shared.telemetry.invalid_message();
                    return None;
                }
            };
            let channel = items.pop();
            deliver(shared, channel.as_ref().and_then(bulk), payload);
            None
        }
        b"subscribe" | b"ssubscribe" => match items.get(1).and_then(channel_name) {
            Some(ch) => Some(Reply::Subscribed(ch)),
            None => Some(Reply::Unexpected(format!("{kind:?} without channel"))),
        },
        b"unsubscribe" | b"sunsubscribe" => match items.get(1).and_then(channel_name) {
            Some(ch) => Some(Reply::Unsubscribed(ch)),
            None => Some(Reply::Unexpected(format!("{kind:?} without channel"))),
        },
        b"pong" => Some(Reply::Pong),
        _ => Some(Reply::Unexpected(format!(
            "{}",
            String::from_utf8_lossy(kind)
        ))),
    }
}

/// The hot path: rebuild the publication from the envelope it carries
/// ([`Publication::decode`]) and hand it to the registry. The Redis channel
/// name is mapped back to the Herald channel ([`crate::keys`]); anything
/// that is not a publication of the channel it arrived on (foreign
/// publisher on the same prefix, corruption) is dropped and counted.
fn deliver(shared: &Shared, channel: Option<&[u8]>, payload: Vec<u8>) {
    let Some(name) = channel.and_then(|c| keys::herald_channel(&shared.prefix, c)) else {
        shared.telemetry.invalid_message();
        return;
    };
    match Publication::decode(&payload) {
        Ok(p) if *p.channel == *name => {
            if let Some(sink) = shared.sink.get() {
                sink.deliver(Arc::new(p));
            }
        }
        _ => {
            shared.telemetry.invalid_message();
            tracing::debug!(
                channel = %name,
                "dropped a message that is not a Herald publication"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addr_parse_and_display() {
        let a = NodeAddr::parse("127.0.0.1:7000").unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:7000");
        let b = NodeAddr::parse("::1:7000").unwrap();
        assert_eq!(&*b.host, "::1");
        assert_eq!(b.to_string(), "[::1]:7000");
        assert_eq!(NodeAddr::parse("[::1]:7000").unwrap(), b);
        assert!(NodeAddr::parse("nope").is_none());
    }
}
