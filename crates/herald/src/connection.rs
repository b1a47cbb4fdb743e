//! The connection task: one per socket, from the upgrade to the close.
//!
//! A single task owns the WebSocket and waits on everything that can happen
//! to the socket: a frame from the peer, frames in its outbound queue, the
//! ping timer, the liveness deadline (handshake timeout, then pong timeout),
//! the auth token's expiry, a close request from server code, and server
//! shutdown. Owning the socket in one task means no lock around it and a
//! single place where it is closed.
//!
//! Writes are batched: when the queue has frames, the task takes up to
//! [`MAX_BATCH`] of them, feeds them to the codec (which gathers them into
//! vectored writes) and flushes once. Inbound frames are handled in order;
//! procedures and receivers run in tasks of their own so that a slow handler
//! never holds up the socket.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use herald_protocol::error::{ErrorPayload, names};
use herald_protocol::inbound::{self, Packet};
use herald_protocol::outbound::{self, AuthenticateStatus, HandshakeStatus};
use herald_protocol::{Cid, close};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tokio_websockets::{CloseCode, Message, Payload, WebSocketStream};

use crate::auth::{Claims, TokenError, expiry_of, unix_now};
use crate::broker::Publication;
use crate::cluster::{RESERVED_PREFIX, user_channel};
use crate::handler::{Message as HandlerMessage, Request};
use crate::middleware::{
    InvokeRequest, PublishOut, PublishRequest, SubscribeRequest, TransmitRequest,
};
use crate::server::ServerInner;
use crate::socket::{AuthState, Outbound, RequestInfo, Socket, SocketShared, SocketState};

/// Most frames written per flush.
const MAX_BATCH: usize = 512;
/// How long a closing socket waits for its close frame to go out and for the
/// peer's acknowledgement.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What to do after handling a frame.
enum Flow {
    Continue,
    Close(u16, String),
}

/// A fresh random socket id: 15 random bytes, 20 URL-safe characters (the
/// length of socketcluster-server's ids).
fn new_socket_id() -> Arc<str> {
    let bytes: [u8; 15] = rand::random();
    Arc::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A token bucket for malformed frames: a burst is tolerated, a stream is not.
struct Allowance {
    tokens: f64,
    burst: f64,
    refill: Duration,
    last: Instant,
}

impl Allowance {
    fn new(burst: u32, refill: Duration) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            refill,
            last: Instant::now(),
        }
    }

    /// Takes one token; false when none is left.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        if !self.refill.is_zero() {
            let earned = now.duration_since(self.last).as_secs_f64() / self.refill.as_secs_f64();
            self.tokens = (self.tokens + earned).min(self.burst);
        }
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Conn {
    shared: Arc<SocketShared>,
    socket: Socket,
    server: Arc<ServerInner>,
    handshaken: bool,
    /// The user this socket is registered as in the cluster index.
    user: Option<Arc<str>>,
    last_inbound: Instant,
    malformed: Allowance,
}

/// Runs one socket until it closes.
pub(crate) async fn run<S>(
    mut ws: WebSocketStream<S>,
    request: Arc<RequestInfo>,
    server: Arc<ServerInner>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel(server.config.outbound_queue.max(1));
    let shared = Arc::new(SocketShared::new(
        server.next_key(),
        new_socket_id(),
        request,
        tx,
        server.clone(),
    ));
    let socket = Socket(shared.clone());
    server.register(socket.clone());
    let mut conn = Conn {
        malformed: Allowance::new(
            server.config.malformed_burst,
            server.config.malformed_refill,
        ),
        shared,
        socket,
        server,
        handshaken: false,
        user: None,
        last_inbound: Instant::now(),
    };
    let (code, reason) = conn.drive(&mut ws, &mut rx).await;
    conn.finish(code, reason).await;
}

impl Conn {
    async fn drive<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> (u16, String)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let server = self.server.clone();
        let shared = self.shared.clone();
        let cfg = &server.config;
        // A zero period would make the interval panic.
        let ping_interval = cfg.ping_interval.max(Duration::from_millis(1));
        let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let liveness = sleep(cfg.handshake_timeout);
        tokio::pin!(liveness);
        let token_expiry = sleep(Duration::ZERO);
        tokio::pin!(token_expiry);
        let mut expiry_armed = false;
        let mut peer_close: Option<(u16, String)> = None;
        let mut was_handshaken = false;

        // The notification futures live across iterations: creating them
        // anew on every turn would register and unregister a waiter (a lock)
        // each time. Each is re-armed after it fires.
        let kill = shared.kill.notified();
        tokio::pin!(kill);
        let auth_changed = shared.auth_changed.notified();
        tokio::pin!(auth_changed);
        let shutdown = server.shutdown.cancelled();
        tokio::pin!(shutdown);

        loop {
            tokio::select! {
                _ = &mut kill => {
                    kill.set(shared.kill.notified());
                    if let Some((code, reason)) = shared.requested_close() {
                        let reason = reason.unwrap_or_else(|| close::reason(code).to_owned());
                        // A slow consumer's queue is dropped; otherwise the
                        // replies of procedures still running (the one that
                        // asked for the disconnect, say) and what was queued
                        // go out first, within the close grace period.
                        if code != close::SLOW_CONSUMER {
                            let _ = tokio::time::timeout(CLOSE_GRACE, shared.wait_idle()).await;
                            self.drain(ws, rx).await;
                        }
                        return close_ws(ws, code, reason).await;
                    }
                }
                _ = &mut shutdown => {
                    self.drain(ws, rx).await;
                    return close_ws(ws, close::GOING_AWAY, "Server is shutting down".into()).await;
                }
                item = rx.recv() => {
                    // The socket's own sender lives in `shared`: never None.
                    let Some(item) = item else { continue };
                    // A close requested meanwhile (a slow consumer) is
                    // handled by the kill branch once this write is done; the
                    // write itself is bounded by `write_timeout`.
                    if let Err(e) = self.write_batch(ws, rx, item).await {
                        return (1006, e);
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(msg)) => {
                        self.last_inbound = Instant::now();
                        if let Some(text) = msg.as_text() {
                            let flow = Box::pin(self.on_text(text)).await;
                            if let Flow::Close(code, reason) = flow {
                                self.drain(ws, rx).await;
                                return close_ws(ws, code, reason).await;
                            }
                        } else if msg.is_binary() {
                            if let Flow::Close(code, reason) = self.on_malformed("binary frame") {
                                return close_ws(ws, code, reason).await;
                            }
                        } else if let Some((code, reason)) = msg.as_close() {
                            peer_close = Some((u16::from(code), reason.to_owned()));
                        }
                    }
                    Some(Err(e)) => {
                        let (code, reason) = match &e {
                            tokio_websockets::Error::PayloadTooLong { .. } => {
                                metrics::counter!("herald_oversized_frames_total").increment(1);
                                (close::MESSAGE_TOO_BIG, close::reason(close::MESSAGE_TOO_BIG).to_owned())
                            }
                            tokio_websockets::Error::Protocol(_) => (close::PROTOCOL_ERROR, e.to_string()),
                            _ => (1006, e.to_string()),
                        };
                        // The codec queued its close frame: let it go out.
                        let _ = tokio::time::timeout(CLOSE_GRACE, ws.flush()).await;
                        let _ = tokio::time::timeout(CLOSE_GRACE, async {
                            while let Some(Ok(_)) = ws.next().await {}
                        }).await;
                        return (code, reason);
                    }
                    None => return peer_close.unwrap_or((1005, String::new())),
                },
                _ = ping.tick(), if self.handshaken => {
                    let sent = tokio::time::timeout(cfg.write_timeout, ws.send(Message::text(Payload::from(outbound::PING)))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return (1006, "failed to write ping".into());
                    }
                }
                _ = &mut liveness => {
                    if !self.handshaken {
                        return close_ws(ws, close::HANDSHAKE_TIMEOUT, close::reason(close::HANDSHAKE_TIMEOUT).into()).await;
                    }
                    let deadline = self.last_inbound + cfg.ping_timeout;
                    if Instant::now() >= deadline {
                        metrics::counter!("herald_pong_timeouts_total").increment(1);
                        return close_ws(ws, close::PONG_TIMEOUT, close::reason(close::PONG_TIMEOUT).into()).await;
                    }
                    liveness.as_mut().reset(deadline);
                }
                _ = &mut token_expiry, if expiry_armed => {
                    expiry_armed = false;
                    self.check_token_expiry();
                }
                _ = &mut auth_changed => {
                    auth_changed.set(shared.auth_changed.notified());
                    match shared.auth.lock().as_ref().and_then(|a| a.expiry) {
                        Some(exp) => {
                            let now = unix_now();
                            let left = Duration::from_secs(exp.saturating_sub(now));
                            // JWT `exp` is inclusive to the second: expire
                            // just after it passes.
                            token_expiry.as_mut().reset(Instant::now() + left + Duration::from_millis(1));
                            expiry_armed = true;
                        }
                        None => expiry_armed = false,
                    }
                    self.sync_user().await;
                }
            }
            if self.handshaken && !was_handshaken {
                // Just completed the handshake: pings start now, and from now
                // on the liveness deadline is the pong timeout.
                was_handshaken = true;
                ping.reset();
                liveness
                    .as_mut()
                    .reset(self.last_inbound + cfg.ping_timeout);
            }
        }
    }

    /// Writes a batch of queued frames with one flush.
    async fn write_batch<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        rx: &mut mpsc::Receiver<Outbound>,
        first: Outbound,
    ) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let write_timeout = self.server.config.write_timeout;
        let work = async {
            let mut next = Some(first);
            let mut written = 0;
            while let Some(item) = next {
                if let Some(frame) = self.prepare(item).await {
                    ws.feed(Message::text(Payload::from(frame)))
                        .await
                        .map_err(|e| e.to_string())?;
                    written += 1;
                }
                if written >= MAX_BATCH {
                    break;
                }
                next = rx.try_recv().ok();
            }
            ws.flush().await.map_err(|e| e.to_string())
        };
        tokio::pin!(work);
        // Most batches complete without blocking: arm the write timer (a
        // timer-wheel registration) only for a write that has to wait.
        if let std::task::Poll::Ready(r) = futures_util::poll!(&mut work) {
            return r;
        }
        match tokio::time::timeout(write_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("write blocked for more than {write_timeout:?}")),
        }
    }

    /// Writes whatever is queued, within the close grace period.
    async fn drain<S>(&mut self, ws: &mut WebSocketStream<S>, rx: &mut mpsc::Receiver<Outbound>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let work = async {
            while let Ok(item) = rx.try_recv() {
                if self.write_batch(ws, rx, item).await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, work).await;
    }

    /// The frame to write for a queued item, after outbound middleware.
    async fn prepare(&self, item: Outbound) -> Option<bytes::Bytes> {
        match item {
            Outbound::Frame(frame) => Some(frame),
            Outbound::Publication(p) => {
                if self.server.publish_out.is_empty() {
                    return Some(p.frame.clone());
                }
                self.publish_out(&p).await
            }
        }
    }

    async fn publish_out(&self, p: &Publication) -> Option<bytes::Bytes> {
        let mut replaced: Option<Value> = None;
        for m in &self.server.publish_out {
            match m.publish_out(&self.socket, p).await {
                PublishOut::Deliver => {}
                PublishOut::Drop => return None,
                PublishOut::Replace(v) => replaced = Some(v),
            }
        }
        match replaced {
            None => Some(p.frame.clone()),
            Some(v) => {
                let raw = serde_json::value::to_raw_value(&v).ok()?;
                Some(outbound::publication(&p.channel, Some(&raw)))
            }
        }
    }

    /// Unsubscribes, fails pending invokes, unregisters, runs hooks.
    async fn finish(mut self, code: u16, reason: String) {
        let was_open = self.shared.state() == SocketState::Open;
        self.shared.set_state(SocketState::Closed);
        self.server.registry.unsubscribe_all(&self.shared).await;
        if let Some(user) = self.user.take() {
            self.server
                .cluster
                .remove_user_socket(&user, self.shared.key);
            self.server
                .registry
                .unsubscribe_node(&user_channel(&user))
                .await;
        }
        self.shared.abort_invokes();
        self.server.unregister(&self.shared);
        tracing::debug!(socket = %self.shared.id, code, %reason, "socket closed");
        if was_open {
            for hook in &self.server.on_disconnection {
                tokio::spawn(hook(self.socket.clone(), code, reason.clone()));
            }
        }
    }

    fn send(&self, frame: bytes::Bytes) {
        self.shared.enqueue(Outbound::Frame(frame));
    }

    fn reply(&self, cid: Option<&Cid>, result: Result<(), ErrorPayload>) {
        let Some(cid) = cid else {
            if let Err(e) = result {
                tracing::debug!(socket = %self.shared.id, error = %e, "refused a request without cid");
            }
            return;
        };
        match result {
            Ok(()) => self.send(outbound::ack(cid)),
            Err(e) => self.send(outbound::reply_error(cid, &e)),
        }
    }

    fn on_malformed(&mut self, why: &str) -> Flow {
        metrics::counter!("herald_malformed_frames_total").increment(1);
        tracing::debug!(socket = %self.shared.id, why, "ignored a malformed frame");
        if !self.handshaken {
            // socketcluster-server's strict handshake: the first message must
            // be a well-formed #handshake.
            return before_handshake();
        }
        if self.malformed.take() {
            Flow::Continue
        } else {
            Flow::Close(close::INVALID_DATA, "Too many malformed frames".into())
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        metrics::counter!("herald_messages_received_total").increment(1);
        if text.is_empty() && !self.handshaken {
            // A pong before the handshake (the server has not pinged yet).
            return before_handshake();
        }
        let message = match inbound::parse(text) {
            Ok(m) => m,
            Err(e) => return self.on_malformed(&e.to_string()),
        };
        for packet in message.into_packets() {
            let flow = match packet {
                Ok(p) => self.on_packet(p).await,
                Err(e) => self.on_malformed(&e.to_string()),
            };
            if let Flow::Close(..) = flow {
                return flow;
            }
        }
        Flow::Continue
    }

    async fn on_packet(&mut self, packet: Packet<'_>) -> Flow {
        if let Packet::Handshake { cid, auth_token } = packet {
            return self.on_handshake(cid, auth_token).await;
        }
        if !self.handshaken {
            return before_handshake();
        }
        match packet {
            Packet::Handshake { .. } => Flow::Continue,
            Packet::Authenticate { cid, token } => self.on_authenticate(cid, token).await,
            Packet::RemoveAuthToken { cid } => {
                self.shared.set_auth(None);
                if let Some(cid) = cid {
                    self.send(outbound::ack(&cid));
                }
                Flow::Continue
            }
            Packet::Subscribe {
                cid, channel, data, ..
            } => {
                self.check_token_expiry();
                let result = self.on_subscribe(&channel, data).await;
                self.reply(cid.as_ref(), result);
                Flow::Continue
            }
            Packet::Unsubscribe { cid, channel } => {
                let result = if self
                    .server
                    .registry
                    .unsubscribe(&self.shared, &channel)
                    .await
                {
                    Ok(())
                } else {
                    Err(ErrorPayload::new(
                        names::BROKER,
                        format!(
                            "Failed to unsubscribe socket from the {channel} channel - InvalidActionError: Socket {} tried to unsubscribe from a channel which it is not subscribed to",
                            self.shared.id
                        ),
                    ))
                };
                self.reply(cid.as_ref(), result);
                Flow::Continue
            }
            Packet::Publish {
                cid, channel, data, ..
            } => {
                self.check_token_expiry();
                let result = self.on_publish(&channel, data).await;
                self.reply(cid.as_ref(), result);
                Flow::Continue
            }
            Packet::Invoke {
                cid,
                procedure,
                data,
            } => {
                self.check_token_expiry();
                self.on_invoke(cid, procedure.into_owned(), data).await;
                Flow::Continue
            }
            Packet::Transmit { event, data } => {
                self.check_token_expiry();
                self.on_transmit(event.into_owned(), data).await;
                Flow::Continue
            }
            Packet::Response { rid, data, error } => {
                if let Some(rid) = rid.as_u64() {
                    let result = match error {
                        Some(e) => Err(ErrorPayload::from_value(to_value(Some(e)))),
                        None => Ok(to_value(data)),
                    };
                    self.shared.resolve_invoke(rid, result);
                }
                Flow::Continue
            }
            Packet::Invalid { cid, error } => {
                self.reply(cid.as_ref(), Err(error));
                Flow::Continue
            }
            // Server-to-client events sent by a client, and raw JSON: ignored.
            Packet::KickOut { .. } | Packet::SetAuthToken { .. } | Packet::Raw => Flow::Continue,
        }
    }

    /// Verifies a token and runs the authenticate middleware.
    async fn verify(&self, token: &str) -> Result<Claims, ErrorPayload> {
        let claims = self.server.auth.verify(token).map_err(|e| e.payload)?;
        for m in &self.server.middleware {
            m.authenticate(&self.socket, &claims).await?;
        }
        Ok(claims)
    }

    fn authenticate_with(&self, signed: String, claims: Claims) {
        let expiry = expiry_of(&claims);
        self.shared.set_auth(Some(AuthState {
            claims: Arc::new(claims),
            signed: Arc::from(signed),
            expiry,
        }));
    }

    async fn on_handshake(&mut self, cid: Option<Cid>, token: Option<String>) -> Flow {
        let Some(cid) = cid else {
            return Flow::Close(
                close::HANDSHAKE_REJECTED,
                "Handshake request was malformatted".into(),
            );
        };
        let (claims, auth_error) = match &token {
            None => (None, None),
            Some(t) => match self.verify(t).await {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e)),
            },
        };
        for m in &self.server.middleware {
            if let Err(e) = m.handshake(&self.socket, claims.as_ref()).await {
                let code = e
                    .extra
                    .get("statusCode")
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok())
                    .filter(|c| (4000..5000).contains(c))
                    .unwrap_or(close::HANDSHAKE_REJECTED);
                self.send(outbound::reply_error(&cid, &e));
                return Flow::Close(code, e.message);
            }
        }
        let is_authenticated = match (claims, token) {
            (Some(claims), Some(token)) => {
                self.authenticate_with(token, claims);
                true
            }
            _ => {
                self.shared.set_auth(None);
                false
            }
        };
        let bad_token = auth_error.as_ref().is_some_and(ErrorPayload::is_bad_token);
        let status = HandshakeStatus {
            id: self.shared.id.to_string(),
            ping_timeout: self.server.config.ping_timeout.as_millis() as u64,
            auth_error,
            is_authenticated,
        };
        let first = !self.handshaken;
        self.handshaken = true;
        self.shared.set_state(SocketState::Open);
        self.send(outbound::handshake_reply(&cid, &status));
        if bad_token {
            self.send(outbound::remove_auth_token());
        }
        if first {
            metrics::counter!("herald_handshakes_total").increment(1);
            for hook in &self.server.on_connection {
                tokio::spawn(hook(self.socket.clone()));
            }
        }
        Flow::Continue
    }

    async fn on_authenticate(&mut self, cid: Option<Cid>, token: Option<String>) -> Flow {
        let Some(cid) = cid else {
            return Flow::Close(
                close::HANDSHAKE_REJECTED,
                "Authenticate request was malformatted".into(),
            );
        };
        let Some(token) = token else {
            let e = TokenError {
                payload: ErrorPayload::new(
                    names::AUTH_TOKEN,
                    "Invalid token format - Token must be a string",
                )
                .with("isBadToken", true),
            };
            self.shared.set_auth(None);
            self.send(outbound::remove_auth_token());
            self.send(outbound::reply_error(&cid, &e.payload));
            return Flow::Continue;
        };
        let status = match self.verify(&token).await {
            Ok(claims) => {
                self.authenticate_with(token, claims);
                AuthenticateStatus {
                    is_authenticated: true,
                    auth_error: None,
                }
            }
            Err(e) if e.is_bad_token() => {
                self.shared.set_auth(None);
                self.send(outbound::reply_error(&cid, &e));
                self.send(outbound::remove_auth_token());
                return Flow::Continue;
            }
            Err(e) => {
                self.shared.set_auth(None);
                AuthenticateStatus {
                    is_authenticated: false,
                    auth_error: Some(e),
                }
            }
        };
        // AuthenticateStatus holds only a bool and an error object.
        if let Ok(frame) = outbound::reply(&cid, &status) {
            self.send(frame);
        }
        Flow::Continue
    }

    /// Keeps the cluster's user index (and this node's subscription to the
    /// user's reserved channel) in line with the socket's token.
    async fn sync_user(&mut self) {
        let claim = &self.server.config.user_claim;
        let wanted: Option<Arc<str>> =
            self.shared
                .auth
                .lock()
                .as_ref()
                .and_then(|a| match a.claims.get(claim.as_str())? {
                    Value::String(s) => Some(Arc::from(s.as_str())),
                    Value::Number(n) => Some(Arc::from(n.to_string())),
                    _ => None,
                });
        if wanted == self.user {
            return;
        }
        let key = self.shared.key;
        if let Some(old) = self.user.take() {
            self.server.cluster.remove_user_socket(&old, key);
            self.server
                .registry
                .unsubscribe_node(&user_channel(&old))
                .await;
        }
        if let Some(user) = wanted {
            match self
                .server
                .registry
                .subscribe_node(&user_channel(&user))
                .await
            {
                Ok(()) => {
                    self.server.cluster.add_user_socket(&user, key);
                    self.user = Some(user);
                }
                Err(e) => {
                    tracing::warn!(%user, error = %e, "cannot subscribe to the user's messages");
                }
            }
        }
    }

    fn check_channel(&self, channel: &str) -> Result<(), ErrorPayload> {
        if channel.starts_with(RESERVED_PREFIX) {
            return Err(ErrorPayload::new(
                names::INVALID_ACTION,
                format!("Channel names starting with {RESERVED_PREFIX} are reserved"),
            ));
        }
        let max = self.server.config.max_channel_name;
        if channel.len() > max {
            return Err(ErrorPayload::new(
                names::INVALID_ACTION,
                format!("Channel name exceeds {max} bytes"),
            ));
        }
        Ok(())
    }

    async fn on_subscribe(
        &mut self,
        channel: &str,
        data: Option<&RawValue>,
    ) -> Result<(), ErrorPayload> {
        self.check_channel(channel)?;
        if !self.server.middleware.is_empty() {
            let mut request = SubscribeRequest {
                channel: channel.to_owned(),
                data: data.map(|d| to_value(Some(d))),
            };
            for m in &self.server.middleware {
                m.subscribe(&self.socket, &mut request).await?;
            }
        }
        self.server.registry.subscribe(&self.shared, channel).await
    }

    async fn on_publish(
        &mut self,
        channel: &str,
        data: Option<&RawValue>,
    ) -> Result<(), ErrorPayload> {
        if !self.server.config.allow_client_publish {
            return Err(ErrorPayload::new(
                names::INVALID_ACTION,
                "Client publish feature is disabled",
            ));
        }
        self.check_channel(channel)?;
        let data: Option<Box<RawValue>> = if self.server.middleware.is_empty() {
            data.map(ToOwned::to_owned)
        } else {
            let original = data.map(|d| to_value(Some(d)));
            let mut request = PublishRequest {
                channel: channel.to_owned(),
                data: original.clone(),
            };
            for m in &self.server.middleware {
                m.publish_in(&self.socket, &mut request).await?;
            }
            match request.data {
                // Left alone by the middleware: forward the publisher's bytes
                // (re-encoding would sort keys and round large numbers).
                v if v == original => data.map(ToOwned::to_owned),
                Some(v) => Some(
                    serde_json::value::to_raw_value(&v)
                        .map_err(|e| ErrorPayload::new(names::INVALID_ARGUMENTS, e.to_string()))?,
                ),
                None => None,
            }
        };
        let publication = Arc::new(Publication::new(channel, data));
        metrics::counter!("herald_publications_total").increment(1);
        self.server
            .registry
            .broker()
            .publish(publication)
            .await
            .map_err(|e| ErrorPayload::new(names::BROKER, e.to_string()))
    }

    async fn on_invoke(&mut self, cid: Cid, procedure: String, data: Option<&RawValue>) {
        let mut request = InvokeRequest {
            procedure,
            data: to_value(data),
        };
        for m in &self.server.middleware {
            if let Err(e) = m.invoke(&self.socket, &mut request).await {
                self.send(outbound::reply_error(&cid, &e));
                return;
            }
        }
        let Some(handler) = self.server.procedures.get(&request.procedure).cloned() else {
            metrics::counter!("herald_unknown_procedures_total").increment(1);
            let e = ErrorPayload::new(
                names::NO_SUCH_PROCEDURE,
                format!("No procedure is registered for {}", request.procedure),
            );
            self.send(outbound::reply_error(&cid, &e));
            return;
        };
        let shared = self.shared.clone();
        let request = Request {
            socket: self.socket.clone(),
            procedure: request.procedure,
            data: request.data,
        };
        let running = shared.procedure_started();
        self.server.tasks.spawn(async move {
            let _running = running;
            let frame = match handler(request).await {
                Ok(None) => outbound::ack(&cid),
                Ok(Some(v)) => outbound::reply(&cid, &v).unwrap_or_else(|e| {
                    outbound::reply_error(&cid, &ErrorPayload::new(names::INTERNAL, e.to_string()))
                }),
                Err(e) => outbound::reply_error(&cid, &e),
            };
            shared.enqueue(Outbound::Frame(frame));
        });
    }

    async fn on_transmit(&mut self, event: String, data: Option<&RawValue>) {
        let mut request = TransmitRequest {
            event,
            data: to_value(data),
        };
        for m in &self.server.middleware {
            if let Err(e) = m.transmit(&self.socket, &mut request).await {
                tracing::debug!(socket = %self.shared.id, error = %e, "transmit refused by middleware");
                return;
            }
        }
        let Some(handler) = self.server.receivers.get(&request.event).cloned() else {
            tracing::trace!(event = %request.event, "transmit without receiver");
            return;
        };
        let message = HandlerMessage {
            socket: self.socket.clone(),
            event: request.event,
            data: request.data,
        };
        self.server.tasks.spawn(handler(message));
    }

    /// Deauthenticates the socket if its token expired: run when the expiry
    /// timer fires and before each action, as socketcluster-server does.
    fn check_token_expiry(&self) {
        let expired = {
            let auth = self.shared.auth.lock();
            auth.as_ref()
                .and_then(|a| a.expiry)
                .is_some_and(|exp| unix_now() >= exp)
        };
        if expired {
            tracing::debug!(socket = %self.shared.id, "auth token expired");
            self.shared.set_auth(None);
            self.send(outbound::remove_auth_token());
        }
    }
}

/// The close for any message but `#handshake` before the handshake.
fn before_handshake() -> Flow {
    Flow::Close(
        close::MESSAGE_BEFORE_HANDSHAKE,
        close::reason(close::MESSAGE_BEFORE_HANDSHAKE).into(),
    )
}

/// A JSON payload as a `Value` (`null` when absent or unreadable).
fn to_value(raw: Option<&RawValue>) -> Value {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or(Value::Null)
}

/// A close code that can be sent (reserved codes become 1000).
fn close_code(code: u16) -> Option<CloseCode> {
    Some(
        CloseCode::try_from(code)
            .ok()
            .filter(|c| !c.is_reserved())
            .unwrap_or(CloseCode::NORMAL_CLOSURE),
    )
}

/// A close reason cut to the 123 bytes a close frame can carry.
fn truncate_reason(mut reason: String) -> String {
    if reason.len() > 123 {
        let mut end = 123;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// Sends a close frame and waits (briefly) for the peer's acknowledgement,
/// so that unread input does not turn the close into a reset.
async fn close_ws<S>(ws: &mut WebSocketStream<S>, code: u16, reason: String) -> (u16, String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reason = truncate_reason(reason);
    let _ = tokio::time::timeout(
        CLOSE_GRACE,
        ws.send(Message::close(close_code(code), &reason)),
    )
    .await;
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    (code, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_are_20_url_safe_chars() {
        let id = new_socket_id();
        assert_eq!(id.len(), 20);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(id, new_socket_id());
    }

    #[tokio::test(start_paused = true)]
    async fn malformed_allowance_refills() {
        let mut a = Allowance::new(2, Duration::from_secs(1));
        assert!(a.take() && a.take());
        assert!(!a.take());
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(a.take());
        assert!(!a.take());
    }
}
