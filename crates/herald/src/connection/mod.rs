//! The connection task: one per socket, from the upgrade to the close.
//!
//! A single task owns the WebSocket and waits on everything that can happen
//! to the socket: a frame from the peer, items in its outbound queue, the
//! ping timer, the liveness deadline (handshake timeout, then pong timeout),
//! the auth token's expiry, a close request from server code, and server
//! shutdown. Owning the socket in one task means no lock around it and a
//! single place where it is closed.
//!
//! **What an idle socket costs.** This task's future is carried by every
//! socket for its whole life, so it waits on three things only: the peer,
//! its queue and one timer. The pings, the liveness deadline and the
//! token's expiry share the timer; a close request, a changed token, the
//! shutdown and drained replies arrive as signals through the queue
//! ([`crate::queue::Signals`]). Rare paths and rare state are boxed when
//! they happen, and the write path is made of small hand-written futures
//! (docs/benchmarks.md, "Under 4 KiB").
//!
//! **Writing never waits for reading.** Handling a peer's message can take
//! time (middleware, a broker round trip for a subscribe or a publish), so
//! it runs as the task's *inbound job*: a future that owns the inbound
//! state ([`Conn`]) and is polled beside the writer. While it runs the task
//! keeps writing what is queued (the job's own replies included), pinging
//! and watching for a close; it reads the next message only once the job is
//! done, so a socket's messages are still handled one at a time, in order,
//! and a peer that sends faster than it is served is slowed by TCP flow
//! control. Reading also pauses while more than the queue's byte bound of
//! replies waits for a peer that does not read them (`crate::queue`).
//!
//! Rooms:
//! * this module: the task's loop, its state, closing;
//! * [`writer`]: batched writes, and each history channel's stream kept in
//!   order for the client (held publications during a subscribe, dropped
//!   duplicates);
//! * [`inbound`]: dispatch of the peer's frames;
//! * [`auth`]: handshake, `#authenticate`, token expiry, the user index;
//! * [`limits`]: the per-socket limits (malformed frames, inbound rate,
//!   requests in flight).

mod auth;
mod inbound;
mod limits;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use herald_protocol::error::ErrorPayload;
use herald_protocol::{Cid, close, outbound};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};

use crate::admission::{Admitted, Slot};
use crate::auth::unix_now;
use crate::cluster::user_channel;
use crate::queue::{Bounds, Event, Signals, queue};
use crate::server::ServerInner;
use crate::socket::{RequestInfo, Socket, SocketShared, SocketState};
use crate::transport::ws::{Message, WebSocket, WsError};
use auth::check_token_expiry;

use limits::{Allowance, Throttle};
use writer::Out;

/// How long a closing socket waits for its close frame to go out and for the
/// peer's acknowledgement.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The server's ping (`""`), shared by every socket.
static PING: bytes::Bytes = bytes::Bytes::from_static(outbound::PING.as_bytes());

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

/// The inbound side of a socket: what handling the peer's frames needs. It
/// moves into each inbound job and comes back when the job is done.
struct Conn {
    shared: Arc<SocketShared>,
    socket: Socket,
    server: Arc<ServerInner>,
    handshaken: bool,
    /// The user this socket is registered as in the cluster index, and its
    /// place in the per-user connection limit.
    user: Option<(Arc<str>, Option<Slot>)>,
    /// Channels the server subscribed the socket to because its token
    /// grants them (`crate::grants`).
    granted: Vec<Arc<str>>,
    malformed: Allowance,
    /// Inbound messages per second.
    rate: Option<Throttle>,
}

/// The running inbound job: it gives the inbound state back with what to do
/// next. The state is boxed once per socket, so that the task's future and
/// each job carry a pointer instead of a copy of it.
type Job = Pin<Box<dyn Future<Output = (Box<Conn>, Flow)> + Send>>;

/// What an inbound job does.
enum Work {
    /// Handle a message from the peer.
    Message(Message),
    /// Bring the user index in line with a changed token.
    SyncUser,
}

fn start(mut conn: Box<Conn>, work: Work) -> Job {
    Box::pin(async move {
        let flow = match work {
            Work::Message(msg) => conn.on_message(msg).await,
            Work::SyncUser => conn.sync_user().await,
        };
        (conn, flow)
    })
}

/// Runs one socket until it closes. `connect` yields its WebSocket (the
/// upgrade completing; `None`: it failed). `admitted` holds the socket's
/// place in the node's connection limits until it is dropped, with the
/// socket.
///
/// This future is what every socket carries for its whole life, so it is
/// an `async` block rather than an `async fn` (whose future keeps each
/// argument twice: as an argument and as the local it is moved into), and
/// it awaits the upgrade itself rather than inside another future that
/// would hold these arguments too.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would hold its arguments twice (see above)"
)]
pub(crate) fn run<S, C>(
    connect: C,
    request: Arc<RequestInfo>,
    server: Arc<ServerInner>,
    admitted: Admitted,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Future<Output = Option<WebSocket<S>>>,
{
    async move {
        let Some(mut ws) = connect.await else {
            return;
        };
        serve_socket(&mut ws, request, &server).await;
        drop(admitted);
    }
}

/// Sets up the socket's state and queue and runs its loop.
async fn serve_socket<S>(
    ws: &mut WebSocket<S>,
    request: Arc<RequestInfo>,
    server: &Arc<ServerInner>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cfg = &server.config;
    let bounds = Bounds {
        bytes: cfg.outbound_queue_bytes,
        frames: cfg.outbound_queue,
    };
    let (tx, rx, state) = queue(bounds);
    let shared = Arc::new(SocketShared::new(
        server.next_key(),
        new_socket_id(),
        request,
        (tx, state),
        server.clone(),
    ));
    let socket = Socket(shared.clone());
    server.register(socket.clone());
    if server.shutdown.is_cancelled() {
        // Registered after the drain signalled every socket (`serve.rs`).
        shared.queue.signal(Signals::SHUTDOWN);
    }
    let conn = Box::new(Conn {
        malformed: Allowance::new(cfg.malformed_burst, cfg.malformed_refill),
        rate: (cfg.inbound_rate > 0).then(|| Throttle::new(cfg.inbound_rate, cfg.inbound_burst)),
        shared: shared.clone(),
        socket: socket.clone(),
        server: server.clone(),
        handshaken: false,
        user: None,
        granted: Vec::new(),
    });
    let mut out = Out::new(socket, rx, bounds);
    let (conn, code, reason) = drive(conn, ws, &mut out).await;
    Box::pin((*conn).finish(code, reason)).await;
}

/// The task's loop; returns the inbound state (once no job holds it) and the
/// close code and reason.
async fn drive<S>(conn: Box<Conn>, ws: &mut WebSocket<S>, out: &mut Out) -> (Box<Conn>, u16, String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = conn.shared.clone();
    let server = conn.server.clone();
    let cfg = &server.config;
    // One timer for the pings, the liveness deadline (the handshake
    // timeout, then the pong timeout) and the token's expiry: it fires at
    // the earliest ([`wake_at`]). Pings start with the handshake.
    let ping_interval = cfg.ping_interval.max(Duration::from_millis(1));
    let mut next_ping: Option<Instant> = None;
    let mut deadline = Instant::now() + cfg.handshake_timeout;
    let timer = sleep_until(deadline);
    tokio::pin!(timer);
    // When the token expires (sockets whose token has an `exp`): the same
    // timer fires for it, so a socket carries no second timer.
    let mut token_expiry: Option<Instant> = None;
    // The peer's close frame, until its connection ends (boxed: it is
    // rare, and the task's future holds every local).
    let mut peer_close: Option<Box<(u16, String)>> = None;
    let mut handshaken = false;
    let mut was_handshaken = false;
    let mut last_inbound = Instant::now();
    let mut idle: Option<Box<Conn>> = Some(conn);
    let mut job: Option<Job> = None;
    let mut sync_pending = false;

    // A close requested by server code, a changed token and the server's
    // shutdown wake the task through its queue, with the items
    // (`crate::queue::Signals`): one waiter for everything.

    // How the loop ends: the close to send (None: the connection is gone
    // already, report this code).
    let (code, reason, send_close): (u16, String, bool) = loop {
        if job.is_none()
            && sync_pending
            && let Some(conn) = idle.take()
        {
            sync_pending = false;
            job = Some(start(conn, Work::SyncUser));
        }
        let reading = job.is_none() && !shared.queue.replies_backlogged();
        tokio::select! {
            done = async { job.as_mut().expect("guarded").await }, if job.is_some() => {
                job = None;
                let (conn, flow) = done;
                handshaken = conn.handshaken;
                idle = Some(conn);
                last_inbound = Instant::now();
                if let Flow::Close(code, reason) = flow {
                    Box::pin(out.drain(ws)).await;
                    break (code, reason, true);
                }
            }
            event = out.next_event() => match event {
                Event::Item(item) => {
                    // A close requested meanwhile (a slow consumer) is
                    // signalled and handled on the next turn; the write
                    // itself is bounded by `write_timeout`.
                    if let Err(e) = out.write_batch(ws, item).await {
                        break (write_failed(&shared), e, false);
                    }
                }
                Event::Signals(signals) => {
                    if signals.contains(Signals::KILL)
                        && let Some((code, reason)) = shared.requested_close()
                    {
                        let reason = reason.unwrap_or_else(|| close::reason(code).to_owned());
                        // A slow consumer's queue is dropped; otherwise the
                        // replies of procedures still running (the one that
                        // asked for the disconnect, say) and what was queued
                        // go out first, within the close grace period.
                        // (Boxed, as every rare path here: the task's future
                        // stays small.)
                        if code != close::SLOW_CONSUMER {
                            Box::pin(async {
                                let _ = tokio::time::timeout(CLOSE_GRACE, shared.wait_idle()).await;
                                out.drain(ws).await;
                            })
                            .await;
                        }
                        break (code, reason, true);
                    }
                    if signals.contains(Signals::SHUTDOWN) {
                        // Draining: in-flight replies go out, then the
                        // client is told to reconnect (to another node, or
                        // to this one once it is back).
                        Box::pin(async {
                            let _ = tokio::time::timeout(cfg.drain_timeout, shared.wait_idle()).await;
                            out.drain(ws).await;
                        })
                        .await;
                        break (close::SERVICE_RESTART, close::reason(close::SERVICE_RESTART).into(), true);
                    }
                    // `Signals::DRAINED` needs nothing here: `reading` is
                    // worked out again on the next turn.
                    if signals.contains(Signals::AUTH_CHANGED) {
                        token_expiry = shared.auth.lock().as_ref().and_then(|a| a.expiry).map(|exp| {
                            let left = Duration::from_secs(exp.saturating_sub(unix_now()));
                            // JWT `exp` is inclusive to the second: expire
                            // just after it passes.
                            Instant::now() + left + Duration::from_millis(1)
                        });
                        timer.as_mut().reset(wake_at(deadline, next_ping, token_expiry));
                        sync_pending = true;
                    }
                }
            },
            msg = ws.next(), if reading => match msg {
                Some(Ok(msg)) => {
                    last_inbound = Instant::now();
                    match msg {
                        Message::Close(code, reason) => {
                            peer_close = Some(Box::new((code.unwrap_or(1005), reason)));
                        }
                        msg if msg.is_data() => {
                            let conn = idle.take().expect("no job is running");
                            job = Some(start(conn, Work::Message(msg)));
                        }
                        _ => {}
                    }
                }
                Some(Err(e)) => {
                    let (code, reason) = match &e {
                        WsError::TooBig { .. } => {
                            crate::metrics::limit_violation(crate::metrics::Limit::MessageSize);
                            (close::MESSAGE_TOO_BIG, close::reason(close::MESSAGE_TOO_BIG).to_owned())
                        }
                        WsError::Protocol(_) | WsError::InvalidUtf8 => {
                            (e.close_code().unwrap_or(close::PROTOCOL_ERROR), e.to_string())
                        }
                        WsError::Closed | WsError::Io(_) => (1006, e.to_string()),
                    };
                    // The codec queued its close frame: let it go out.
                    Box::pin(async {
                        let _ = tokio::time::timeout(CLOSE_GRACE, ws.flush()).await;
                        let _ = tokio::time::timeout(CLOSE_GRACE, async {
                            while let Some(Ok(_)) = ws.next().await {}
                        }).await;
                    }).await;
                    break (code, reason, false);
                }
                None => {
                    let (code, reason) = peer_close.take().map_or((1005, String::new()), |c| *c);
                    break (code, reason, false);
                }
            },
            _ = &mut timer => {
                let now = Instant::now();
                if token_expiry.is_some_and(|at| now >= at) {
                    token_expiry = None;
                    check_token_expiry(&shared);
                }
                if next_ping.is_some_and(|at| now >= at) {
                    // The next ping one interval after this one, however
                    // late this one is.
                    next_ping = Some(now + ping_interval);
                    // Once per ping interval: an idle socket gives back the
                    // room its last burst left.
                    out.trim();
                    if let Err(e) = out.write_frames(ws, std::slice::from_ref(&PING)).await {
                        break (write_failed(&shared), format!("failed to write a ping: {e}"), false);
                    }
                }
                if now >= deadline {
                    if job.is_some() {
                        // The peer is not read while its message is
                        // handled: its silence is ours.
                        deadline = now + cfg.ping_timeout;
                    } else if !handshaken {
                        crate::metrics::handshake_refused(crate::metrics::Refusal::Timeout);
                        break (close::HANDSHAKE_TIMEOUT, close::reason(close::HANDSHAKE_TIMEOUT).into(), true);
                    } else {
                        // Checked lazily: a frame received moves
                        // `last_inbound`, not the timer.
                        deadline = last_inbound + cfg.ping_timeout;
                        if now >= deadline {
                            crate::metrics::pong_timeout();
                            break (close::PONG_TIMEOUT, close::reason(close::PONG_TIMEOUT).into(), true);
                        }
                    }
                }
                timer.as_mut().reset(wake_at(deadline, next_ping, token_expiry));
            }
        }
        if handshaken && !was_handshaken {
            // Just completed the handshake: pings start now, and from now on
            // the liveness deadline is the pong timeout.
            was_handshaken = true;
            let first_ping = Instant::now() + ping_interval;
            next_ping = Some(first_ping);
            deadline = last_inbound + cfg.ping_timeout;
            timer
                .as_mut()
                .reset(wake_at(deadline, next_ping, token_expiry));
        }
    };
    let (code, reason) = if send_close {
        Box::pin(close_ws(ws, code, reason)).await
    } else {
        (code, reason)
    };
    // A job still running is waited for: it holds the inbound state (the
    // user index entry, for one) that closing must clean up. The peer has
    // its close frame already.
    let conn = match (idle, job) {
        (Some(conn), _) => conn,
        (None, Some(job)) => job.await.0,
        (None, None) => unreachable!("the inbound state is either idle or in the job"),
    };
    (conn, code, reason)
}

impl Conn {
    /// Unsubscribes, fails pending invokes, unregisters, runs hooks.
    async fn finish(mut self, code: u16, reason: String) {
        let was_open = self.shared.state() == SocketState::Open;
        self.shared.set_state(SocketState::Closed);
        self.server.unsubscribe_all(&self.socket).await;
        if let Some((user, _slot)) = self.user.take() {
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

    /// Queues a reply (or another frame answering the peer's request).
    fn send(&self, frame: bytes::Bytes) {
        self.shared.reply(frame);
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

/// The close code of a socket whose write failed: 4100 if it was found a
/// slow consumer (the write blocked for `write_timeout`), else 1006.
fn write_failed(shared: &SocketShared) -> u16 {
    if shared.is_slow_consumer() {
        close::SLOW_CONSUMER
    } else {
        1006
    }
}

/// When the task's one timer must fire: at the liveness deadline, the next
/// ping or the token's expiry, whichever comes first.
fn wake_at(
    deadline: Instant,
    next_ping: Option<Instant>,
    token_expiry: Option<Instant>,
) -> Instant {
    [next_ping, token_expiry]
        .into_iter()
        .flatten()
        .fold(deadline, Instant::min)
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
async fn close_ws<S>(ws: &mut WebSocket<S>, code: u16, reason: String) -> (u16, String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reason = truncate_reason(reason);
    let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(code, &reason)).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    (code, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The future every socket's task carries, as `transport` spawns it.
    #[tokio::test]
    async fn the_connection_task_is_small() {
        let server = crate::Server::builder().build();
        let mut req = http::Request::new(());
        let on_upgrade = hyper::upgrade::on(&mut req);
        let admitted = server
            .0
            .admission
            .admit(&http::HeaderMap::new(), None)
            .expect("admitted");
        let request = Arc::new(RequestInfo {
            uri: http::Uri::default(),
            headers: http::HeaderMap::new(),
            remote_addr: None,
        });
        let task = run(
            crate::transport::upgraded(on_upgrade, 1024),
            request,
            server.0.clone(),
            admitted,
        );
        let size = std::mem::size_of_val(&task);
        println!("connection task future: {size} bytes");
        println!(
            "  parts: Sleep {}, Conn {}, Out {}, WebSocket {}",
            std::mem::size_of::<tokio::time::Sleep>(),
            std::mem::size_of::<Conn>(),
            std::mem::size_of::<Out>(),
            std::mem::size_of::<WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>>(),
        );
        // A bound on what every socket carries (1,952 bytes before the
        // signals, the write path and the upgrade moved out of the layout;
        // a debug build's futures are larger).
        let bound = if cfg!(debug_assertions) { 4096 } else { 1200 };
        assert!(size <= bound, "{size} bytes");
    }

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
