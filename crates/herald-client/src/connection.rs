//! One connection attempt, and the dead-peer timer of an open connection.
//!
//! [`open`] does what happens before a connection is usable: TCP connect,
//! WebSocket upgrade, `#handshake` (with the stored token) and its reply. The
//! connection task runs it under the connect timeout and, while it runs, keeps
//! taking commands. [`Liveness`] is the client half of SocketCluster's
//! heartbeat: the server pings (an empty message) every `pingInterval`; if
//! nothing at all arrives for `pingTimeout` the server is presumed dead.
//!
//! Kept apart from the task so that the steps of an attempt and the timer's
//! arithmetic can be read (and tested) on their own.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use herald_protocol::inbound::{self, Message as Inbound, Packet};
use herald_protocol::{ErrorPayload, close, defaults, outbound};
use http::Uri;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_websockets::{
    ClientBuilder, CloseCode, Connector, Limits, MaybeTlsStream, Message, WebSocketStream,
};

use crate::error::Error;
use crate::tls::TlsConfig;

/// The WebSocket of an open connection.
pub(crate) type Ws = WebSocketStream<Recorded<MaybeTlsStream<TcpStream>>>;

/// Most bytes of the server's upgrade response kept to read a refusal's
/// `Retry-After`.
const HEAD_BYTES: usize = 4096;

/// A stream that keeps a copy of the first bytes it reads: the HTTP
/// response to the upgrade. tokio-websockets reports a refused upgrade by
/// its status alone, and admission control's `Retry-After` header is in
/// the response; once the upgrade is done the copy is dropped and reads
/// pass straight through.
pub(crate) struct Recorded<S> {
    inner: S,
    head: Option<Arc<Mutex<Vec<u8>>>>,
}

impl<S> Recorded<S> {
    fn new(inner: S, head: Arc<Mutex<Vec<u8>>>) -> Self {
        Self {
            inner,
            head: Some(head),
        }
    }

    /// Stops recording and drops what was kept.
    fn stop(&mut self) {
        self.head = None;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(head)) = (&poll, &this.head) {
            let mut head = head.lock().unwrap_or_else(|e| e.into_inner());
            let new = &buf.filled()[before..];
            let room = HEAD_BYTES.saturating_sub(head.len());
            head.extend_from_slice(&new[..new.len().min(room)]);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The `Retry-After` of an HTTP response head (delay in seconds; an HTTP
/// date is not used by Herald and is ignored).
fn retry_after_of(head: &[u8]) -> Option<Duration> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(head).ok()?;
    let value = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("retry-after"))?
        .value;
    let secs: u64 = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// Checks and completes a server URL: `ws://` or `wss://`, with a host; an
/// empty path becomes SocketCluster's `/socketcluster/`.
pub(crate) fn parse_url(url: &str) -> Result<Uri, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::InvalidUrl(format!("{url}: {e}")))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    match scheme {
        "ws" | "wss" => {}
        _ => {
            return Err(Error::InvalidUrl(format!(
                "{url}: the scheme must be ws:// or wss://"
            )));
        }
    }
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| Error::InvalidUrl(format!("{url}: no host")))?
        .clone();
    let path = match uri.path() {
        "" | "/" => defaults::PATH,
        p => p,
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| Error::InvalidUrl(format!("{url}: {e}")))
}

/// What the server said in its handshake reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HandshakeInfo {
    pub(crate) id: String,
    pub(crate) ping_timeout: Option<Duration>,
    pub(crate) is_authenticated: bool,
    pub(crate) auth_error: Option<ErrorPayload>,
}

impl HandshakeInfo {
    /// Reads the reply data leniently: a missing or odd field is taken as
    /// absent rather than failing the connection.
    pub(crate) fn from_data(data: Option<&serde_json::value::RawValue>) -> Self {
        let value: Value = data
            .and_then(|d| serde_json::from_str(d.get()).ok())
            .unwrap_or(Value::Null);
        Self {
            id: value
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            ping_timeout: value
                .get("pingTimeout")
                .and_then(Value::as_u64)
                .map(Duration::from_millis),
            is_authenticated: value
                .get("isAuthenticated")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            auth_error: value
                .get("authError")
                .filter(|e| !e.is_null())
                .cloned()
                .map(ErrorPayload::from_value),
        }
    }
}

/// A connection whose handshake succeeded.
pub(crate) struct Opened {
    pub(crate) ws: Ws,
    pub(crate) handshake: HandshakeInfo,
    /// Frames that arrived before the handshake reply, to process in order.
    pub(crate) early: Vec<String>,
}

/// Why an attempt failed, as a close code and reason, and the delay the
/// server asked for before the next attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: u16,
    pub(crate) reason: String,
    /// Admission control's `Retry-After` (HTTP 503/429), or the delay of a
    /// 1013 close (`retry after N`).
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn new(code: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let retry_after = (code == close::TRY_AGAIN_LATER)
            .then(|| close::parse_retry_after(&reason).map(Duration::from_secs))
            .flatten();
        Self {
            code,
            reason,
            retry_after,
        }
    }

    /// The failure as the close of a socket that hung up (1006).
    pub(crate) fn hung_up(err: impl std::fmt::Display) -> Self {
        Self::new(1006, err.to_string())
    }
}

/// Connects, upgrades and handshakes (sending `token` and call id `cid`),
/// through TLS with `tls` for a `wss://` URL. Not bounded in time: the
/// caller applies the connect timeout.
pub(crate) async fn open(
    uri: &Uri,
    max_message_size: usize,
    cid: u64,
    token: Option<&str>,
    tls: Option<&TlsConfig>,
) -> Result<Opened, Failure> {
    // tokio-websockets would speak plain TCP to a wss:// URL without a
    // connector: there always is one (the builder puts the system roots in
    // the config when none was given).
    let connector = match (uri.scheme_str(), tls) {
        (Some("wss"), Some(tls)) => Some(tls.connector().map_err(Failure::hung_up)?),
        (Some("wss"), None) => return Err(Failure::new(1006, "wss:// without TLS settings")),
        _ => None,
    };
    let builder = ClientBuilder::from_uri(uri.clone())
        .limits(Limits::default().max_payload_len(Some(max_message_size)));
    // Connected here rather than by `builder.connect()` so that the
    // response head can be recorded (see [`Recorded`]).
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(Failure::hung_up)?;
    let _ = tcp.set_nodelay(true);
    let stream = connector
        .as_ref()
        .unwrap_or(&Connector::Plain)
        .wrap(host, tcp)
        .await
        .map_err(Failure::hung_up)?;
    let head = Arc::new(Mutex::new(Vec::new()));
    let mut ws = match builder
        .connect_on(Recorded::new(stream, head.clone()))
        .await
    {
        Ok((ws, _response)) => ws,
        Err(e) => {
            let mut failure = Failure::hung_up(&e);
            if let tokio_websockets::Error::Upgrade(
                tokio_websockets::upgrade::Error::DidNotSwitchProtocols(status @ (503 | 429)),
            ) = e
            {
                failure.code = close::TRY_AGAIN_LATER;
                failure.reason = format!("upgrade refused with HTTP {status}");
                let head = head.lock().unwrap_or_else(|e| e.into_inner());
                failure.retry_after = retry_after_of(&head);
            }
            return Err(failure);
        }
    };
    ws.get_mut().stop();
    let cid = herald_protocol::Cid::from(cid);
    ws.send(text(outbound::handshake_request(&cid, token)))
        .await
        .map_err(Failure::hung_up)?;
    let mut early = Vec::new();
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(Failure::hung_up(e)),
            None => return Err(Failure::new(1006, close::reason(1006))),
        };
        if let Some((code, reason)) = msg.as_close() {
            let code = u16::from(code);
            let reason = if reason.is_empty() {
                close::reason(code).to_owned()
            } else {
                reason.to_owned()
            };
            return Err(Failure::new(code, reason));
        }
        let Some(body) = msg.as_text() else { continue };
        if body.is_empty() {
            // A ping before the handshake reply: answer it like any other.
            ws.send(Message::text(outbound::PING))
                .await
                .map_err(Failure::hung_up)?;
            continue;
        }
        if let Ok(Inbound::One(Ok(Packet::Response { rid, data, error }))) = inbound::parse(body)
            && rid == cid
        {
            if let Some(error) = error {
                let payload = ErrorPayload::from_value(
                    serde_json::from_str(error.get()).unwrap_or(Value::Null),
                );
                let reason = format!("{}: {payload}", close::reason(close::HANDSHAKE_FAILED));
                close_with(&mut ws, close::HANDSHAKE_FAILED, "").await;
                return Err(Failure::new(close::HANDSHAKE_FAILED, reason));
            }
            let handshake = HandshakeInfo::from_data(data);
            return Ok(Opened {
                ws,
                handshake,
                early,
            });
        }
        early.push(body.to_owned());
    }
}

/// A text message holding `frame` (which the protocol crate built as UTF-8).
pub(crate) fn text(frame: bytes::Bytes) -> Message {
    Message::text(frame)
}

/// Sends a close frame with `code` and waits (briefly) for the peer's
/// acknowledgement, then shuts the socket down. Errors are irrelevant here:
/// the connection is being abandoned either way.
pub(crate) async fn close_with(ws: &mut Ws, code: u16, reason: &str) {
    let code = CloseCode::try_from(code).unwrap_or(CloseCode::NORMAL_CLOSURE);
    let _ = ws.send(Message::close(Some(code), reason)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close()).await;
}

/// The dead-peer timer: expires when nothing arrived for `timeout`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Liveness {
    timeout: Option<Duration>,
    last_seen: Instant,
}

impl Liveness {
    /// A timer started now; `None` never expires.
    pub(crate) fn new(timeout: Option<Duration>, now: Instant) -> Self {
        Self {
            timeout,
            last_seen: now,
        }
    }

    /// Something arrived: restart the timer.
    pub(crate) fn seen(&mut self, now: Instant) {
        self.last_seen = now;
    }

    /// When the timer expires if nothing arrives, `None` when disabled.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|t| self.last_seen + t)
    }

    /// Whether the peer is presumed dead at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_from_a_refused_upgrade() {
        let head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 12\r\ncontent-length: 4\r\n\r\nbusy";
        assert_eq!(retry_after_of(head), Some(Duration::from_secs(12)));
        assert_eq!(retry_after_of(b"HTTP/1.1 503 x\r\n\r\n"), None);
        assert_eq!(retry_after_of(b"garbage"), None);
    }

    #[test]
    fn urls_are_checked_and_completed() {
        let u = parse_url("ws://127.0.0.1:8000").unwrap();
        assert_eq!(u.to_string(), "ws://127.0.0.1:8000/socketcluster/");
        let u = parse_url("ws://localhost:1/custom/path?x=1").unwrap();
        assert_eq!(u.to_string(), "ws://localhost:1/custom/path?x=1");
        let u = parse_url("ws://h/?q=2").unwrap();
        assert_eq!(u.to_string(), "ws://h/socketcluster/?q=2");
        for bad in ["http://h/", "h:80", "", "ws:///x", "not a url"] {
            assert!(matches!(parse_url(bad), Err(Error::InvalidUrl(_))), "{bad}");
        }
        let u = parse_url("wss://h:8443").unwrap();
        assert_eq!(u.to_string(), "wss://h:8443/socketcluster/");
    }

    #[test]
    fn handshake_reply_is_read_leniently() {
        let raw = serde_json::value::RawValue::from_string(
            r#"{"id":"abc","pingTimeout":2500,"authError":{"message":"jwt malformed","name":"AuthTokenInvalidError","isBadToken":true},"isAuthenticated":false}"#.into(),
        )
        .unwrap();
        let info = HandshakeInfo::from_data(Some(&raw));
        assert_eq!(info.id, "abc");
        assert_eq!(info.ping_timeout, Some(Duration::from_millis(2500)));
        assert!(!info.is_authenticated);
        let err = info.auth_error.unwrap();
        assert_eq!(err.name, "AuthTokenInvalidError");
        assert!(err.is_bad_token());

        let info = HandshakeInfo::from_data(None);
        assert_eq!(info.id, "");
        assert_eq!(info.ping_timeout, None);
        let raw = serde_json::value::RawValue::from_string(
            r#"{"id":5,"pingTimeout":"x","isAuthenticated":true,"authError":null}"#.into(),
        )
        .unwrap();
        let info = HandshakeInfo::from_data(Some(&raw));
        assert!(info.is_authenticated && info.auth_error.is_none() && info.ping_timeout.is_none());
    }

    #[test]
    fn liveness_expires_only_after_silence() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Some(Duration::from_millis(100)), t0);
        assert!(!l.expired(t0 + Duration::from_millis(99)));
        assert!(l.expired(t0 + Duration::from_millis(100)));
        l.seen(t0 + Duration::from_millis(90));
        assert_eq!(l.deadline(), Some(t0 + Duration::from_millis(190)));
        assert!(!l.expired(t0 + Duration::from_millis(150)));
        assert!(l.expired(t0 + Duration::from_millis(200)));

        let off = Liveness::new(None, t0);
        assert_eq!(off.deadline(), None);
        assert!(!off.expired(t0 + Duration::from_secs(3600)));
    }
}
