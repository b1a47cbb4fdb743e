//! One connected client, as server code sees it.
//!
//! A [`Socket`] is a cheap handle (an `Arc`) on the state that the socket's
//! connection task and the rest of the server share: its id, its auth token,
//! its channels, its bounded outbound queue and its pending server-side
//! invokes. Handlers and middleware receive it; they can keep it, transmit to
//! it, invoke it, change its token, kick it out of a channel or disconnect it.
//! Every method is safe to call after the socket closed (it then fails or does
//! nothing).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use herald_protocol::error::{ErrorPayload, names};
use herald_protocol::{Cid, outbound};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, oneshot};

use crate::auth::{AuthError, Claims, TokenError};
use crate::broker::{Publication, StreamPosition};
use crate::queue::{QueueState, QueueTx, Refused, Signals};
use crate::server::ServerInner;

/// What waits in a socket's outbound queue: frames, and the markers the
/// writer needs to keep each history channel's stream in order (see
/// `connection::writer`).
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A ready frame server code sends (event, invoke, token): a delivery,
    /// bounded by the slow-consumer policy (`crate::queue`).
    Frame(Bytes),
    /// A reply to the client's own request: never refused (`crate::queue`).
    Reply(Bytes),
    /// A publication for a channel the socket is subscribed to; its frame is
    /// shared with every other subscriber.
    Publication(Arc<Publication>),
    /// Publications on a channel were lost for good (shared by every
    /// subscriber of the channel on this node).
    Unrecoverable(Arc<Notice>),
    /// A subscribe to a channel with history starts: the writer holds the
    /// channel's publications until [`Outbound::SubscribeEnd`].
    SubscribeBegin(Arc<str>),
    /// The subscribe is answered: recovered publications, the reply, then
    /// what was held.
    SubscribeEnd(Box<SubscribeEnd>),
}

/// The end of a subscribe on a channel with history.
#[derive(Debug)]
pub(crate) struct SubscribeEnd {
    pub(crate) channel: Arc<str>,
    /// Publications the client missed, oldest first (a recovery).
    pub(crate) recovered: Vec<Arc<Publication>>,
    /// The subscribe's reply frame (success or error).
    pub(crate) reply: Option<Bytes>,
    /// Where the client stands after the reply; `None` when the subscribe
    /// failed (what was held is dropped).
    pub(crate) position: Option<StreamPosition>,
}

/// `#herald/unrecoverable` for one channel, built once for every subscriber.
#[derive(Debug)]
pub(crate) struct Notice {
    pub(crate) channel: Arc<str>,
    pub(crate) position: StreamPosition,
    pub(crate) frame: Bytes,
}

impl Notice {
    pub(crate) fn new(channel: Arc<str>, position: StreamPosition) -> Self {
        let frame = outbound::unrecoverable(&channel, position.offset, &position.epoch);
        Self {
            channel,
            position,
            frame,
        }
    }
}

/// Why a [`Socket::transmit`] or [`Socket::invoke`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The socket is closed (or closing).
    #[error("socket is closed")]
    Closed,
    /// The data could not be encoded as JSON.
    #[error(transparent)]
    Encode(#[from] outbound::EncodeError),
    /// No reply arrived within the ack timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The client replied with an error.
    #[error("client replied with an error: {0}")]
    Remote(ErrorPayload),
}

impl SendError {
    /// The error as a wire payload (to pass a client's error on to another
    /// client, for instance).
    pub fn to_payload(&self) -> ErrorPayload {
        match self {
            SendError::Remote(p) => p.clone(),
            SendError::Timeout(_) => ErrorPayload::new(names::TIMEOUT, self.to_string()),
            SendError::Closed => ErrorPayload::new(names::BAD_CONNECTION, self.to_string()),
            SendError::Encode(_) => ErrorPayload::new(names::INVALID_ARGUMENTS, self.to_string()),
        }
    }
}

/// Lifecycle of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SocketState {
    /// Connected, waiting for `#handshake`.
    Connecting = 0,
    /// Handshake done.
    Open = 1,
    /// Closed or closing.
    Closed = 2,
}

/// The token a socket is authenticated with.
///
/// Only the signed token is kept: its claims are in it, and are decoded
/// from it when asked for ([`AuthState::claims`]), which is rare (the
/// user index, grants and presence on a change of token, hooks, server
/// code). A decoded `serde_json::Map` beside it cost an idle socket about
/// 800 bytes (a B-tree node and a string per claim) for nothing.
#[derive(Debug, Clone)]
pub(crate) struct AuthState {
    pub(crate) signed: Arc<str>,
    /// `exp` in Unix seconds.
    pub(crate) expiry: Option<u64>,
}

impl AuthState {
    /// The state of a socket authenticated with `signed`, whose (verified
    /// or just signed) claims are `claims`.
    pub(crate) fn new(signed: &str, claims: &Claims, server: &ServerInner) -> Self {
        Self {
            signed: Arc::from(signed),
            expiry: server.auth.session_expiry(claims),
        }
    }

    /// The token's claims, decoded from the signed token (verified when it
    /// became the socket's token, or signed by this server).
    pub(crate) fn claims(&self) -> Claims {
        crate::auth::decode_claims(&self.signed)
    }
}

/// HTTP details of the upgrade request that opened a socket.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Request URI (path and query).
    pub uri: http::Uri,
    /// Request headers, but those of the WebSocket handshake itself
    /// (`Upgrade`, `Connection`, `Sec-WebSocket-Key`, `-Version` and
    /// `-Extensions`), which every socket would otherwise carry for nothing.
    pub headers: http::HeaderMap,
    /// Peer address, when the server knows it.
    pub remote_addr: Option<SocketAddr>,
}

/// Server-side invokes of one socket awaiting replies, by cid.
type Pending = HashMap<u64, oneshot::Sender<Result<Value, ErrorPayload>>>;

/// The state of one socket that its connection task, the registry's
/// fan-out and server code (through [`Socket`]) share. Every open socket
/// holds one, so rare parts are boxed on first use.
pub(crate) struct SocketShared {
    /// Process-unique number, used as a map key.
    pub(crate) key: u64,
    pub(crate) id: Arc<str>,
    pub(crate) request: Arc<RequestInfo>,
    /// The queue's sending side (crate-visible so that the fan-out can
    /// prefetch it: `registry::subscribers`).
    pub(crate) tx: QueueTx,
    pub(crate) queue: Arc<QueueState>,
    state: AtomicU8,
    /// Set when the socket must close; the connection task reads it after
    /// being woken by [`Signals::KILL`].
    close_code: AtomicU16,
    close_reason: Mutex<Option<String>>,
    /// The token; a change raises [`Signals::AUTH_CHANGED`].
    pub(crate) auth: Mutex<Option<AuthState>>,
    pub(crate) channels: Mutex<HashSet<Arc<str>>>,
    /// Server-side invokes awaiting the client's reply, by cid (boxed on
    /// the first: most sockets are never invoked).
    pending: Mutex<Option<Box<Pending>>>,
    next_cid: AtomicU64,
    /// Procedures of this socket still running (their replies are not
    /// queued yet), and the signal that the count dropped to zero.
    running: AtomicUsize,
    idle: Notify,
    /// Backend hook calls in flight for this socket (`crate::hooks`).
    pub(crate) hooks_in_flight: AtomicUsize,
    pub(crate) server: Arc<ServerInner>,
}

impl SocketShared {
    pub(crate) fn new(
        key: u64,
        id: Arc<str>,
        request: Arc<RequestInfo>,
        (tx, queue): (QueueTx, Arc<QueueState>),
        server: Arc<ServerInner>,
    ) -> Self {
        Self {
            key,
            id,
            request,
            tx,
            queue,
            state: AtomicU8::new(SocketState::Connecting as u8),
            close_code: AtomicU16::new(0),
            close_reason: Mutex::new(None),
            auth: Mutex::new(None),
            channels: Mutex::new(HashSet::new()),
            pending: Mutex::new(None),
            next_cid: AtomicU64::new(1),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            hooks_in_flight: AtomicUsize::new(0),
            server,
        }
    }

    pub(crate) fn state(&self) -> SocketState {
        match self.state.load(Ordering::Acquire) {
            0 => SocketState::Connecting,
            1 => SocketState::Open,
            _ => SocketState::Closed,
        }
    }

    pub(crate) fn set_state(&self, s: SocketState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Queues an item. A delivery that would pass the queue's bounds makes
    /// the socket a slow consumer: it is closed rather than let the queue
    /// grow (or the publisher wait). See `crate::queue`.
    pub(crate) fn enqueue(&self, item: Outbound) -> bool {
        match self.tx.send(item) {
            Ok(()) => true,
            Err(Refused::Full) => {
                self.condemn_slow_consumer();
                false
            }
            Err(Refused::Closed) => false,
        }
    }

    /// Queues a reply to the client's own request.
    pub(crate) fn reply(&self, frame: Bytes) {
        self.enqueue(Outbound::Reply(frame));
    }

    /// Procedures and receivers of this socket running now.
    pub(crate) fn in_flight(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Asks the connection task to close the socket with `code`. The first
    /// request wins; returns whether this one did.
    pub(crate) fn request_close(&self, code: u16, reason: Option<String>) -> bool {
        let won = self
            .close_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            *self.close_reason.lock() = reason;
            self.queue.signal(Signals::KILL);
        }
        won
    }

    /// Closes the socket as a slow consumer (4100), counted once however
    /// many paths find it (a full queue, an overflow while a subscribe is
    /// answered, a write blocked past `write_timeout`).
    pub(crate) fn condemn_slow_consumer(&self) {
        if self.request_close(herald_protocol::close::SLOW_CONSUMER, None) {
            crate::metrics::slow_consumer();
        }
    }

    /// Whether the socket was condemned as a slow consumer.
    pub(crate) fn is_slow_consumer(&self) -> bool {
        self.close_code.load(Ordering::Acquire) == herald_protocol::close::SLOW_CONSUMER
    }

    /// The close requested through [`Self::request_close`], if any.
    pub(crate) fn requested_close(&self) -> Option<(u16, Option<String>)> {
        match self.close_code.load(Ordering::Acquire) {
            0 => None,
            code => Some((code, self.close_reason.lock().take())),
        }
    }

    /// Counts a procedure as running until the returned guard is dropped
    /// (after its reply was queued).
    pub(crate) fn procedure_started(self: &Arc<Self>) -> RunningProcedure {
        self.running.fetch_add(1, Ordering::AcqRel);
        RunningProcedure(self.clone())
    }

    /// Resolves once no procedure of this socket is running.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn resolve_invoke(&self, rid: u64, result: Result<Value, ErrorPayload>) {
        if let Some(tx) = self.take_invoke(rid) {
            let _ = tx.send(result);
        }
    }

    /// Stops waiting for the reply to invoke `cid`: its reply channel, if
    /// still waiting.
    fn take_invoke(&self, cid: u64) -> Option<oneshot::Sender<Result<Value, ErrorPayload>>> {
        self.pending.lock().as_mut().and_then(|p| p.remove(&cid))
    }

    /// Fails every pending server-side invoke (the socket closed).
    pub(crate) fn abort_invokes(&self) {
        self.pending.lock().take();
    }

    pub(crate) fn set_auth(&self, auth: Option<AuthState>) {
        if let Some(hooks) = &self.server.hooks {
            let before = hooks.client.config.refresh_before;
            if hooks.client.config.refresh.is_some() {
                hooks.refresh.token_changed(self.key, auth.as_ref(), before);
            }
        }
        *self.auth.lock() = auth;
        self.queue.signal(Signals::AUTH_CHANGED);
    }
}

/// Marks a running procedure; see [`SocketShared::procedure_started`].
pub(crate) struct RunningProcedure(Arc<SocketShared>);

impl Drop for RunningProcedure {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A handle on one connected socket. Cloning is cheap.
#[derive(Clone)]
pub struct Socket(pub(crate) Arc<SocketShared>);

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.0.id)
            .field("state", &self.state())
            .finish()
    }
}

impl Socket {
    /// The socket id, also sent to the client in the handshake.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The peer address, when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.0.request.remote_addr
    }

    /// The HTTP upgrade request that opened the socket.
    pub fn request(&self) -> &RequestInfo {
        &self.0.request
    }

    /// The socket's lifecycle state.
    pub fn state(&self) -> SocketState {
        self.0.state()
    }

    /// The claims of the socket's auth token, when authenticated.
    pub fn auth_claims(&self) -> Option<Arc<Claims>> {
        // Decoded outside the lock.
        let auth = self.0.auth.lock().clone();
        auth.map(|a| Arc::new(a.claims()))
    }

    /// The signed auth token, when authenticated.
    pub fn signed_auth_token(&self) -> Option<Arc<str>> {
        self.0.auth.lock().as_ref().map(|a| a.signed.clone())
    }

    /// Whether the socket holds a valid token.
    pub fn is_authenticated(&self) -> bool {
        self.0.auth.lock().is_some()
    }

    /// The channels the socket is subscribed to.
    pub fn subscriptions(&self) -> Vec<String> {
        self.0
            .channels
            .lock()
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    /// Whether the socket is subscribed to `channel`.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.0.channels.lock().contains(channel)
    }

    fn check_open(&self) -> Result<(), SendError> {
        match self.state() {
            SocketState::Closed => Err(SendError::Closed),
            _ => Ok(()),
        }
    }

    fn send_frame(&self, frame: Bytes) -> Result<(), SendError> {
        self.check_open()?;
        if self.0.enqueue(Outbound::Frame(frame)) {
            Ok(())
        } else {
            Err(SendError::Closed)
        }
    }

    /// Sends an event to the client (no reply expected). The official client
    /// receives it on `socket.receiver(event)`.
    pub fn transmit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), SendError> {
        let frame = outbound::event(event, Some(data))?;
        self.send_frame(frame)
    }

    /// Sends an already-encoded JSON value as an event.
    pub fn transmit_raw(&self, event: &str, data: Option<&RawValue>) -> Result<(), SendError> {
        self.send_frame(outbound::event_raw(event, data))
    }

    /// Calls a procedure on the client and waits for its reply, at most the
    /// server's ack timeout.
    pub async fn invoke<T: Serialize + ?Sized>(
        &self,
        procedure: &str,
        data: &T,
    ) -> Result<Value, SendError> {
        let timeout = self.0.server.config.ack_timeout;
        self.invoke_with_timeout(procedure, data, timeout).await
    }

    /// [`Socket::invoke`] with an explicit ack timeout.
    pub async fn invoke_with_timeout<T: Serialize + ?Sized>(
        &self,
        procedure: &str,
        data: &T,
        timeout: Duration,
    ) -> Result<Value, SendError> {
        self.check_open()?;
        let cid = self.0.next_cid.fetch_add(1, Ordering::Relaxed);
        let frame = outbound::request(procedure, Some(data), Some(&Cid::from(cid)))?;
        let (tx, rx) = oneshot::channel();
        self.0
            .pending
            .lock()
            .get_or_insert_default()
            .insert(cid, tx);
        if let Err(e) = self.send_frame(frame) {
            self.0.take_invoke(cid);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(SendError::Remote(e)),
            Ok(Err(_)) => Err(SendError::Closed),
            Err(_) => {
                self.0.take_invoke(cid);
                Err(SendError::Timeout(timeout))
            }
        }
    }

    /// Signs `claims` into a token, makes it the socket's token and sends it
    /// to the client (`#setAuthToken`). Without an `exp` claim the token
    /// expires after the server's default expiry. Returns the signed token.
    pub fn set_auth_token(&self, claims: Value) -> Result<String, AuthError> {
        let expiry = self.0.server.config.auth_default_expiry;
        self.set_auth_token_with_expiry(claims, expiry)
    }

    /// [`Socket::set_auth_token`] with an explicit lifetime (used when the
    /// claims carry no `exp`). Renewing a token this way before it expires
    /// keeps the socket authenticated.
    pub fn set_auth_token_with_expiry(
        &self,
        claims: Value,
        expiry: Duration,
    ) -> Result<String, AuthError> {
        let Value::Object(claims) = claims else {
            return Err(AuthError::ClaimsNotAnObject);
        };
        let (signed, claims) = self.0.server.auth.sign_claims(claims, expiry)?;
        self.0
            .set_auth(Some(AuthState::new(&signed, &claims, &self.0.server)));
        let _ = self.send_frame(outbound::set_auth_token(&signed));
        Ok(signed)
    }

    /// Makes `token`, signed elsewhere (a backend's token refresh, a login
    /// service, with a key or JWKS this server trusts), the socket's token
    /// and sends it to the client (`#setAuthToken`), with no reconnect. The
    /// token is verified first as a handshake token is (keys, JWKS, leeway,
    /// `aud`, `iss`, the channels claim); the authenticate middleware does
    /// not run (this is server code). On a refusal the socket keeps the
    /// token it had. Returns the token's claims.
    pub async fn set_signed_auth_token(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        let server = &self.0.server;
        let claims = Arc::new(server.verify_token(token).await?);
        self.0
            .set_auth(Some(AuthState::new(token, &claims, server)));
        let _ = self.send_frame(outbound::set_auth_token(token));
        Ok(claims)
    }

    /// Deauthenticates the socket and tells the client to drop its token
    /// (`#removeAuthToken`).
    pub fn remove_auth_token(&self) {
        self.0.set_auth(None);
        let _ = self.send_frame(outbound::remove_auth_token());
    }

    /// Subscribes the socket to `channel` on the server's behalf (a
    /// server-side subscription): the name is checked and the channel's
    /// namespace applies (history, presence), but no subscribe rule,
    /// middleware or hook runs. Publications on the channel reach the
    /// socket from then on (the client is told with `#herald/subscribed`);
    /// a client `#subscribe` to it later is answered
    /// at once (the official `socketcluster-client` needs one to hand the
    /// publications to the application). Returns once the broker delivers
    /// the channel to this node.
    pub async fn subscribe(&self, channel: &str) -> Result<(), ErrorPayload> {
        if self.state() == SocketState::Closed {
            return Err(ErrorPayload::new(names::BAD_CONNECTION, "socket is closed"));
        }
        self.0.server.subscribe_by_server(self, channel).await
    }

    /// Removes the socket from `channel` and tells the client
    /// (`#kickOut {channel, message}`).
    pub async fn kick_out<T: Serialize + ?Sized>(&self, channel: &str, message: &T) {
        if !self.is_subscribed(channel) {
            return;
        }
        let message = serde_json::value::to_raw_value(message).ok();
        let _ = self.send_frame(outbound::kick_out(channel, message.as_deref()));
        self.0.server.unsubscribe(self, channel).await;
    }

    /// The server this socket is connected to.
    pub fn server(&self) -> crate::Server {
        crate::Server(self.0.server.clone())
    }

    /// The server's exchange, to publish from a handler.
    pub fn exchange(&self) -> crate::Exchange {
        crate::Exchange(self.0.server.clone())
    }

    /// Closes the socket with a WebSocket close code and reason.
    pub fn disconnect(&self, code: u16, reason: impl Into<String>) {
        self.0.request_close(code, Some(reason.into()));
    }
}
