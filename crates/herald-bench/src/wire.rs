//! The client side of the SocketCluster v2 wire, as lean as a load generator
//! needs it: connect (from a chosen loopback source address), handshake,
//! subscribe, publish, and a fast reader for the publications the bench sent
//! itself.
//!
//! Frames are built and, outside the hot path, parsed with `herald-protocol`.
//! The hot path is a subscriber reading a delivery: the bench knows the exact
//! shape of its own publications (see [`Stamp`]), so [`read_message`] first
//! tries a byte-level fast path and falls back to the full protocol parser
//! for anything else (batches, other frames, a server that re-encodes JSON
//! differently). Both paths are checked against each other in the tests.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use herald_protocol::inbound::{self, Packet};
use herald_protocol::{Cid, outbound};
use serde_json::value::RawValue;
use tokio::net::{TcpSocket, TcpStream};
use tokio_websockets::{ClientBuilder, Message, Payload, WebSocketStream};

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Why a connection could not be set up or broke.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A socket operation failed (connect refused, reset...).
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket layer failed (upgrade refused, protocol error...).
    #[error("websocket: {0}")]
    Ws(#[from] tokio_websockets::Error),
    /// The URL is not `ws://IP:PORT/path`.
    #[error("invalid url {0:?}: expected ws://IP:PORT/path")]
    Url(String),
    /// The server closed the connection.
    #[error("connection closed by the server ({0})")]
    Closed(String),
    /// The server answered a request with an error object.
    #[error("server refused {what}: {error}")]
    Refused {
        /// The request (`handshake`, `subscribe`).
        what: &'static str,
        /// The error object as JSON text.
        error: String,
    },
    /// The handshake succeeded but the server did not accept the auth token
    /// (its `authError`, as JSON text).
    #[error("the server did not accept the auth token: {0}")]
    Unauthenticated(String),
    /// A step did not complete in time.
    #[error("timed out during {0}")]
    Timeout(&'static str),
}

/// Where to connect: a socket address and the WebSocket URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// The full `ws://` URL (sent in the upgrade request).
    pub url: String,
}

impl Target {
    /// Parses `ws://IP:PORT/path`. The host must be an IP literal: the bench
    /// only talks to loopback addresses and never resolves names.
    pub fn parse(url: &str) -> Result<Self, WireError> {
        let bad = || WireError::Url(url.to_owned());
        let rest = url.strip_prefix("ws://").ok_or_else(bad)?;
        let hostport = rest.split_once('/').map_or(rest, |(h, _)| h);
        let addr: SocketAddr = hostport.parse().map_err(|_| bad())?;
        Ok(Self {
            addr,
            url: url.to_owned(),
        })
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn local(port: u16, path: &str) -> Self {
        let url = format!("ws://127.0.0.1:{port}{path}");
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            url,
        }
    }
}

/// The `i`th of `count` loopback source addresses starting at 127.0.0.`first`
/// (wrapping inside 127.0.0.2..=127.0.0.254). Spreading connections over
/// source addresses keeps each one far from the ~28,000 ephemeral ports a
/// single address offers (lingering TIME_WAIT sockets of earlier runs
/// included).
pub fn source_addr(first: u8, count: u8, i: usize) -> IpAddr {
    let count = usize::from(count.max(1));
    let base = usize::from(first.clamp(2, 254)) - 2;
    let octet = 2 + (base + i % count) % 253;
    IpAddr::from([127, 0, 0, octet as u8])
}

/// Asks the kernel to choose the source port at `connect` rather than at
/// `bind`, so that a port is shared by connections to different peers and
/// TIME_WAIT reuse applies as for an unbound socket. Best effort.
fn bind_address_no_port(socket: &TcpSocket) {
    let one: libc::c_int = 1;
    // SAFETY: the descriptor is owned by `socket` and open; the option value
    // points to a live c_int of the length given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Opens a TCP connection (from `source` when given) and upgrades it to a
/// WebSocket. Does not time out by itself: see [`connect_subscribed`].
pub async fn connect(target: &Target, source: Option<IpAddr>) -> Result<Ws, WireError> {
    connect_with(target, source, None).await
}

/// [`connect`] with the socket's receive buffer set to `recv_buffer` bytes
/// (a small one stands for a client on a slow link: the kernel holds little
/// of what it has not read, so the server's queue fills).
pub async fn connect_with(
    target: &Target,
    source: Option<IpAddr>,
    recv_buffer: Option<u32>,
) -> Result<Ws, WireError> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(ip) = source {
        bind_address_no_port(&socket);
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let builder = ClientBuilder::new()
        .uri(&target.url)
        .map_err(|_| WireError::Url(target.url.clone()))?;
    let (ws, _response) = builder.connect_on(stream).await?;
    Ok(ws)
}

/// A text message holding `frame`.
pub fn text(frame: Bytes) -> Message {
    Message::text(Payload::from(frame))
}

/// The protocol-v2 pong: an empty text message.
pub fn pong() -> Message {
    Message::text(Payload::from(outbound::PING))
}

/// Sends `frame` (a request with call id `cid`) and waits for its reply,
/// answering pings meanwhile. Anything else that arrives is ignored.
pub async fn request(
    ws: &mut Ws,
    frame: Bytes,
    cid: u64,
    what: &'static str,
) -> Result<(), WireError> {
    request_data(ws, frame, cid, what).await.map(drop)
}

/// [`request`], returning the reply's data as JSON text (`None`: no data).
pub async fn request_data(
    ws: &mut Ws,
    frame: Bytes,
    cid: u64,
    what: &'static str,
) -> Result<Option<String>, WireError> {
    ws.send(text(frame)).await?;
    loop {
        let msg = match ws.next().await {
            Some(m) => m?,
            None => return Err(WireError::Closed("end of stream".into())),
        };
        if let Some((code, reason)) = msg.as_close() {
            return Err(WireError::Closed(format!("{} {reason}", u16::from(code))));
        }
        let Some(text) = msg.as_text() else { continue };
        if text.is_empty() {
            ws.send(pong()).await?;
            continue;
        }
        let Ok(parsed) = inbound::parse(text) else {
            continue;
        };
        for packet in parsed.into_packets() {
            if let Ok(Packet::Response { rid, error, data }) = packet
                && rid.as_u64() == Some(cid)
            {
                return match error {
                    Some(e) => Err(WireError::Refused {
                        what,
                        error: e.get().to_owned(),
                    }),
                    None => Ok(data.map(|d| d.get().to_owned())),
                };
            }
        }
    }
}

/// The SocketCluster handshake (no auth token), with call id 1.
pub async fn handshake(ws: &mut Ws) -> Result<(), WireError> {
    handshake_with(ws, None).await
}

/// The handshake with call id 1, sending `token` as its `authToken` when
/// given: the server must then report the socket authenticated
/// (`isAuthenticated: true`), or the token counts as refused.
pub async fn handshake_with(ws: &mut Ws, token: Option<&str>) -> Result<(), WireError> {
    let frame = outbound::handshake_request(&Cid::from(1), token);
    let data = request_data(ws, frame, 1, "handshake").await?;
    if token.is_none() {
        return Ok(());
    }
    let status: serde_json::Value = data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    if status["isAuthenticated"] == true {
        Ok(())
    } else {
        Err(WireError::Unauthenticated(
            status.get("authError").map_or_else(
                || "isAuthenticated is not true".to_owned(),
                |e| e.to_string(),
            ),
        ))
    }
}

/// Subscribes to `channel` with call id `cid` and waits for the ack.
pub async fn subscribe(ws: &mut Ws, channel: &str, cid: u64) -> Result<(), WireError> {
    let frame = outbound::subscribe_request(channel, None, Some(&Cid::from(cid)));
    request(ws, frame, cid, "subscribe").await
}

/// Connects, handshakes and (when `channel` is given) subscribes, all within
/// `timeout`.
pub async fn connect_subscribed(
    target: &Target,
    source: Option<IpAddr>,
    channel: Option<&str>,
    timeout: Duration,
) -> Result<Ws, WireError> {
    connect_subscribed_with(target, source, None, channel, timeout).await
}

/// [`connect_subscribed`] with a receive buffer (see [`connect_with`]).
pub async fn connect_subscribed_with(
    target: &Target,
    source: Option<IpAddr>,
    recv_buffer: Option<u32>,
    channel: Option<&str>,
    timeout: Duration,
) -> Result<Ws, WireError> {
    connect_authenticated(target, source, recv_buffer, None, channel, timeout).await
}

/// [`connect_subscribed_with`], authenticating with `token` in the
/// handshake when given (see [`handshake_with`]).
pub async fn connect_authenticated(
    target: &Target,
    source: Option<IpAddr>,
    recv_buffer: Option<u32>,
    token: Option<&str>,
    channel: Option<&str>,
    timeout: Duration,
) -> Result<Ws, WireError> {
    let work = async {
        let mut ws = connect_with(target, source, recv_buffer).await?;
        handshake_with(&mut ws, token).await?;
        if let Some(channel) = channel {
            subscribe(&mut ws, channel, 2).await?;
        }
        Ok(ws)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| WireError::Timeout("connect, handshake and subscribe"))?
}

/// The fields every benchmark publication carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the publishing connection.
    pub publisher: u32,
    /// Per-publisher sequence number, from 0.
    pub seq: u64,
    /// Send time in nanoseconds on the bench's monotonic clock.
    pub sent_ns: u64,
}

/// Smallest data object: `{"p":P,"s":S,"t":T}` with one-digit numbers.
pub const MIN_PAYLOAD: usize = r#"{"p":0,"s":0,"t":0}"#.len();
/// Overhead of the padding field: `,"x":""`.
const PAD_OVERHEAD: usize = r#","x":"""#.len();

/// Writes the publication data for `stamp` into `buf`:
/// `{"p":P,"s":S,"t":T,"x":"xxx…"}`, padded with `x` so that it is exactly
/// `size` bytes long when `size` leaves room for the numbers (otherwise the
/// shortest form, without padding).
pub fn encode_data(stamp: Stamp, size: usize, buf: &mut String) {
    use std::fmt::Write as _;
    buf.clear();
    // Writing to a String cannot fail.
    let _ = write!(
        buf,
        r#"{{"p":{},"s":{},"t":{}"#,
        stamp.publisher, stamp.seq, stamp.sent_ns
    );
    let without_pad = buf.len() + 1;
    if size >= without_pad + PAD_OVERHEAD {
        buf.push_str(r#","x":""#);
        let pad = size - without_pad - PAD_OVERHEAD;
        buf.extend(std::iter::repeat_n('x', pad));
        buf.push('"');
    }
    buf.push('}');
}

/// Builds a fire-and-forget publish frame (no call id) carrying `stamp`.
pub fn publish_frame(channel: &str, stamp: Stamp, size: usize, scratch: &mut String) -> Bytes {
    encode_data(stamp, size, scratch);
    // The data was just written by encode_data: always valid JSON.
    let raw: &RawValue = serde_json::from_str(scratch).expect("bench data is valid JSON");
    outbound::publish_request(channel, Some(raw), None)
}

/// Reads an unsigned decimal number at the start of `b`.
fn number(b: &[u8]) -> Option<(u64, &[u8])> {
    let len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if len == 0 || len > 19 || (len > 1 && b[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &b[..len] {
        v = v * 10 + u64::from(c - b'0');
    }
    Some((v, &b[len..]))
}

/// Whether every byte is `x`; branch-free so that it vectorizes (this runs
/// for every delivery).
fn all_x(pad: &[u8]) -> bool {
    pad.iter().fold(0u8, |acc, &c| acc | (c ^ b'x')) == 0
}

/// Decodes the data of a bench publication with a strict byte-level scan:
/// exactly the form [`encode_data`] writes, padding included.
fn decode_data_fast(data: &str) -> Option<Stamp> {
    let b = data.as_bytes().strip_prefix(br#"{"p":"#)?;
    let (p, b) = number(b)?;
    let b = b.strip_prefix(br#","s":"#)?;
    let (s, b) = number(b)?;
    let b = b.strip_prefix(br#","t":"#)?;
    let (t, b) = number(b)?;
    let ok = match b {
        b"}" => true,
        _ => b
            .strip_prefix(br#","x":""#)
            .and_then(|b| b.strip_suffix(br#""}"#))
            .is_some_and(all_x),
    };
    let publisher = u32::try_from(p).ok()?;
    ok.then_some(Stamp {
        publisher,
        seq: s,
        sent_ns: t,
    })
}

/// Decodes the data of a bench publication: the fast scan, else a JSON
/// parse (for a server that re-encodes the data differently).
pub fn decode_data(data: &str) -> Option<Stamp> {
    #[derive(serde::Deserialize)]
    struct StampJson {
        p: u32,
        s: u64,
        t: u64,
    }
    decode_data_fast(data).or_else(|| {
        let v: StampJson = serde_json::from_str(data).ok()?;
        Some(Stamp {
            publisher: v.p,
            seq: v.s,
            sent_ns: v.t,
        })
    })
}

/// Splits `{"event":"#publish","data":{"channel":"C","data":D}}` into the
/// channel and the data text, for a channel name without escapes. A
/// Herald publication on a channel with history ends with
/// `,"offset":N,"epoch":"E"}}`; that tail is skipped.
fn fast_publication(text: &str) -> Option<(&str, &str)> {
    const PREFIX: &str = r##"{"event":"#publish","data":{"channel":""##;
    let rest = text.strip_prefix(PREFIX)?;
    let end = rest.find('"')?;
    let channel = &rest[..end];
    if channel.contains('\\') {
        return None;
    }
    let data = rest[end + 1..]
        .strip_prefix(r#","data":"#)?
        .strip_suffix("}}")?;
    Some((channel, strip_position(data)))
}

/// `D` of `D,"offset":N,"epoch":"E"` (an epoch is `[A-Za-z0-9_-]`), or the
/// text as it is.
fn strip_position(data: &str) -> &str {
    let Some(at) = data.rfind(r#","offset":"#) else {
        return data;
    };
    let tail = &data[at + r#","offset":"#.len()..];
    let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
    let epoch = tail[digits..]
        .strip_prefix(r#","epoch":""#)
        .and_then(|e| e.strip_suffix('"'));
    match epoch {
        Some(e)
            if digits > 0
                && e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            &data[..at]
        }
        _ => data,
    }
}

/// What one inbound text message was, for a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The empty message: a ping, to be answered with [`pong`].
    Ping,
    /// One or more frames (publications were passed to the callback).
    Frames,
    /// Not a protocol message at all.
    Malformed,
}

/// Reads one inbound text message, calling `on_publication(channel, stamp)`
/// for each `#publish` frame in it (`stamp` is `None` when the data is not a
/// bench publication).
pub fn read_message(text: &str, mut on_publication: impl FnMut(&str, Option<Stamp>)) -> Read {
    if text.is_empty() {
        return Read::Ping;
    }
    if let Some((channel, data)) = fast_publication(text)
        && let Some(stamp) = decode_data_fast(data)
    {
        on_publication(channel, Some(stamp));
        return Read::Frames;
    }
    match inbound::parse(text) {
        Ok(msg) => {
            for packet in msg.into_packets() {
                if let Ok(Packet::Publish { channel, data, .. }) = packet {
                    on_publication(&channel, data.and_then(|d| decode_data(d.get())));
                }
            }
            Read::Frames
        }
        Err(_) => Read::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(p: u32, s: u64, t: u64) -> Stamp {
        Stamp {
            publisher: p,
            seq: s,
            sent_ns: t,
        }
    }

    #[test]
    fn data_is_padded_to_the_exact_size() {
        let mut buf = String::new();
        for size in [0, 10, 40, 100, 1000] {
            for st in [stamp(0, 0, 0), stamp(99, 123_456, 9_876_543_210)] {
                encode_data(st, size, &mut buf);
                let _: serde_json::Value = serde_json::from_str(&buf).unwrap();
                if size >= 50 {
                    assert_eq!(buf.len(), size, "{buf}");
                }
                assert_eq!(decode_data_fast(&buf), Some(st), "{buf}");
                assert_eq!(decode_data(&buf), Some(st));
            }
        }
        const { assert!(MIN_PAYLOAD < 40) };
    }

    #[test]
    fn fast_and_full_parsers_agree_on_delivered_frames() {
        let mut scratch = String::new();
        let st = stamp(7, 42, 1_000_000);
        let publish = publish_frame("bench/3", st, 100, &mut scratch);
        // The server's delivery frame for that publication.
        let data: &RawValue = serde_json::from_str(&scratch).unwrap();
        let delivery = outbound::publication("bench/3", Some(data));
        let text = std::str::from_utf8(&delivery).unwrap();
        let mut seen = Vec::new();
        assert_eq!(
            read_message(text, |c, s| seen.push((c.to_owned(), s))),
            Read::Frames
        );
        assert_eq!(seen, [("bench/3".to_owned(), Some(st))]);
        assert!(fast_publication(text).is_some());
        // The publish request itself parses as a publish (with the full parser).
        let publish = std::str::from_utf8(&publish).unwrap();
        match inbound::parse(publish).unwrap() {
            inbound::Message::One(Ok(Packet::Publish {
                channel, data, cid, ..
            })) => {
                assert_eq!(channel, "bench/3");
                assert!(cid.is_none());
                assert_eq!(decode_data(data.unwrap().get()), Some(st));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn publications_with_a_stream_position_take_the_fast_path() {
        let mut scratch = String::new();
        let st = stamp(3, 9, 77);
        publish_frame("hist:1", st, 100, &mut scratch);
        let data: &RawValue = serde_json::from_str(&scratch).unwrap();
        let delivery = outbound::publication_at("hist:1", Some(data), Some((12, "aB-_9z")));
        let text = std::str::from_utf8(&delivery).unwrap();
        let (channel, d) = fast_publication(text).expect("fast path");
        assert_eq!((channel, decode_data_fast(d)), ("hist:1", Some(st)));
        assert_eq!(
            strip_position(r#"{"a":1},"offset":x"#),
            r#"{"a":1},"offset":x"#
        );
    }

    #[test]
    fn slow_path_handles_batches_spaces_and_foreign_data() {
        let text = r##"[{"event":"#publish","data":{"channel":"a","data":{ "p": 1, "s": 2, "t": 3, "x": "q" }}},
            {"rid":5},
            {"event":"#publish","data":{"channel":"b\"c","data":"hello"}}]"##;
        let mut seen = Vec::new();
        assert_eq!(
            read_message(text, |c, s| seen.push((c.to_owned(), s))),
            Read::Frames
        );
        assert_eq!(
            seen,
            [
                ("a".to_owned(), Some(stamp(1, 2, 3))),
                ("b\"c".to_owned(), None)
            ]
        );
        assert_eq!(read_message("", |_, _| panic!()), Read::Ping);
        assert_eq!(read_message("nope", |_, _| panic!()), Read::Malformed);
        assert_eq!(read_message(r#"{"rid":1}"#, |_, _| panic!()), Read::Frames);
    }

    #[test]
    fn strict_scan_rejects_corruption() {
        for bad in [
            r#"{"p":1,"s":2,"t":3,"x":"xxyx"}"#,
            r#"{"p":1,"s":2,"t":3,"x":"xx"#,
            r#"{"p":01,"s":2,"t":3}"#,
            r#"{"p":1,"s":-2,"t":3}"#,
            r#"{"p":1,"t":3,"s":2}"#,
            r#"{"p":99999999999,"s":2,"t":3}"#,
        ] {
            assert_eq!(decode_data_fast(bad), None, "{bad}");
        }
        // Reordered keys are still understood by the JSON fallback.
        assert_eq!(decode_data(r#"{"p":1,"t":3,"s":2}"#), Some(stamp(1, 2, 3)));
    }

    #[test]
    fn urls_and_source_addresses() {
        let t = Target::parse("ws://127.0.0.1:8000/socketcluster/").unwrap();
        assert_eq!(t.addr, SocketAddr::from(([127, 0, 0, 1], 8000)));
        assert!(Target::parse("ws://localhost:8000/").is_err());
        assert!(Target::parse("http://127.0.0.1:8000/").is_err());
        assert_eq!(Target::local(9, "/x/").url, "ws://127.0.0.1:9/x/");
        assert_eq!(source_addr(2, 4, 0), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(source_addr(2, 4, 5), IpAddr::from([127, 0, 0, 3]));
        assert_eq!(source_addr(254, 3, 1), IpAddr::from([127, 0, 0, 2]));
    }
}
