//! The connection task: one per socket, from the upgrade to the close.
//!
//! A single task owns the WebSocket and waits on everything that can happen
//! to the socket: a frame from the peer, frames in its outbound queue, the
//! ping timer, the liveness deadline (handshake timeout, then pong timeout),
//! the auth token's expiry, a close request from server code, and server
//! shutdown. Owning the socket in one task means no lock around it and a
//! single place where it is closed.
//!
//! Rooms:
//! * this module: the task's loop, its state, closing;
//! * [`writer`]: batched writes, and each history channel's stream kept in
//!   order for the client (held publications during a subscribe, dropped
//!   duplicates);
//! * [`inbound`]: dispatch of the peer's frames;
//! * [`auth`]: handshake, `#authenticate`, token expiry, the user index;
//! * [`limits`]: the malformed-frame allowance.

mod auth;
mod inbound;
mod limits;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use herald_protocol::error::ErrorPayload;
use herald_protocol::{Cid, close, outbound};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tokio_websockets::{CloseCode, Message, Payload, WebSocketStream};

use crate::auth::unix_now;
use crate::cluster::user_channel;
use crate::server::ServerInner;
use crate::socket::{Outbound, RequestInfo, Socket, SocketShared, SocketState};

use limits::Allowance;
use writer::Writer;

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

struct Conn {
    shared: Arc<SocketShared>,
    socket: Socket,
    server: Arc<ServerInner>,
    handshaken: bool,
    /// The user this socket is registered as in the cluster index.
    user: Option<Arc<str>>,
    last_inbound: Instant,
    malformed: Allowance,
    writer: Writer,
}

/// Runs one socket until it closes.
pub(crate) async fn run<S>(
    mut ws: WebSocketStream<S>,
    request: Arc<RequestInfo>,
    server: Arc<ServerInner>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let server_queue = server.config.outbound_queue.max(1);
    let (tx, mut rx) = mpsc::channel(server_queue);
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
        writer: Writer::new(server_queue),
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
                                crate::metrics::limit_violation(crate::metrics::Limit::MessageSize);
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
                        crate::metrics::handshake_refused(crate::metrics::Refusal::Timeout);
                        return close_ws(ws, close::HANDSHAKE_TIMEOUT, close::reason(close::HANDSHAKE_TIMEOUT).into()).await;
                    }
                    let deadline = self.last_inbound + cfg.ping_timeout;
                    if Instant::now() >= deadline {
                        crate::metrics::pong_timeout();
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

    /// Unsubscribes, fails pending invokes, unregisters, runs hooks.
    async fn finish(mut self, code: u16, reason: String) {
        let was_open = self.shared.state() == SocketState::Open;
        self.shared.set_state(SocketState::Closed);
        self.server.unsubscribe_all(&self.socket).await;
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
        crate::metrics::disconnected(code);
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
}

/// The close for any message but `#handshake` before the handshake.
fn before_handshake() -> Flow {
    crate::metrics::handshake_refused(crate::metrics::Refusal::MessageBeforeHandshake);
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
}
