//! The connection task: the one owner of the socket and of all protocol state.
//!
//! Each [`crate::Client`] spawns one task running [`Task::run`]. Handles talk
//! to it only through a bounded command queue ([`Command`]) and read back a
//! shared snapshot ([`Shared`]); no lock is ever held across an `.await`, and
//! the task never waits for a consumer (streams are drop-oldest queues), so a
//! slow consumer cannot stall pings or replies.
//!
//! The task cycles through: connecting (TCP, upgrade, `#handshake` with the
//! stored token) → open (reading frames, answering pings, writing commands,
//! resubscribing every channel) → lost (pending requests fail with
//! `BadConnection`, channels go back to pending) → waiting (jittered backoff)
//! → connecting again; or idle (no automatic reconnect) until a call needs the
//! server. It ends when the user closes the client or drops every handle: it
//! closes the socket with 1000, fails what is pending with `Closed` and ends
//! every stream.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use herald_protocol::error::names;
use herald_protocol::inbound::{self, Packet};
use herald_protocol::{Cid, ErrorPayload, close, defaults, outbound};
use http::Uri;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior, sleep_until};

use crate::backoff::Backoff;
use crate::config::{ClientConfig, PingTimeout};
use crate::connection::{self, Failure, HandshakeInfo, Liveness, Opened, Ws};
use crate::error::Error;
use crate::events::{ClientEvent, ConnectionState, Status};
use crate::handlers::Registry;
use crate::queue::QueueSender;
use crate::subscription::{Publication, SubItem, SubscriptionError};

/// How often pending requests whose caller gave up are swept away.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Commands handled in one go before the written frames are flushed.
const COMMAND_BATCH: usize = 64;

/// State shared between the handles and the task. Every lock is short and
/// never held across an `.await`.
pub(crate) struct Shared {
    pub(crate) status: watch::Sender<Status>,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) events: Mutex<Vec<QueueSender<ClientEvent>>>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            status: watch::Sender::new(Status::default()),
            registry: Mutex::new(Registry::default()),
            events: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn event_sinks(&self) -> MutexGuard<'_, Vec<QueueSender<ClientEvent>>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: ClientEvent) {
        tracing::debug!(?event, "herald-client event");
        self.event_sinks().retain(|s| s.push(event.clone()));
    }
}

/// What a request frame looks like; the task adds the call id.
#[derive(Debug)]
pub(crate) enum Frame {
    /// `{"event":E,"data":D,"cid":N}`.
    Event {
        event: String,
        data: Option<Box<RawValue>>,
    },
    /// `{"event":"#publish","data":{"channel":C,"data":D},"cid":N}`.
    Publish {
        channel: String,
        data: Option<Box<RawValue>>,
    },
}

/// What the task does with a reply before handing it to the caller.
#[derive(Debug)]
pub(crate) enum ReplyKind {
    Plain,
    /// `#authenticate`: on success the token is stored.
    Authenticate {
        token: String,
    },
}

/// A request to send, with or without a reply.
pub(crate) struct Request {
    pub(crate) frame: Frame,
    pub(crate) reply: Option<oneshot::Sender<Result<Value, Error>>>,
    pub(crate) kind: ReplyKind,
    /// After this the request is not sent any more and a pending reply is
    /// abandoned (the caller has timed out).
    pub(crate) deadline: Instant,
}

impl Request {
    fn abandoned(&self, now: Instant) -> bool {
        now >= self.deadline || self.reply.as_ref().is_some_and(|r| r.is_closed())
    }
}

/// What a handle asks of the task.
pub(crate) enum Command {
    Request(Request),
    Subscribe {
        channel: String,
        data: Option<Box<RawValue>>,
        id: u64,
        sink: QueueSender<SubItem>,
        ack: Option<oneshot::Sender<Result<(), Error>>>,
    },
    Unsubscribe {
        channel: String,
    },
    ListenerDropped {
        channel: String,
        id: u64,
    },
    Deauthenticate {
        done: oneshot::Sender<Result<(), Error>>,
    },
    /// Connect now if idle.
    Connect,
    Close {
        done: oneshot::Sender<()>,
    },
}

/// A procedure handler's result, tagged with the connection it belongs to.
struct ProcReply {
    generation: u64,
    cid: Cid,
    result: Result<Value, ErrorPayload>,
}

struct Listener {
    id: u64,
    sink: QueueSender<SubItem>,
}

/// One subscribed (or subscribing) channel.
struct Channel {
    data: Option<Box<RawValue>>,
    subscribed: bool,
    /// The call id of the `#subscribe` in flight on this connection.
    cid: Option<u64>,
    listeners: Vec<Listener>,
    /// Callers of `subscribe` waiting for the first acknowledgement.
    waiters: Vec<oneshot::Sender<Result<(), Error>>>,
}

impl Channel {
    fn prune(&mut self) {
        self.listeners.retain(|l| !l.sink.is_gone());
        self.waiters.retain(|w| !w.is_closed());
    }

    /// Ends every stream and resolves every waiter.
    fn end(self, last: Option<SubscriptionError>, waiter: impl Fn() -> Result<(), Error>) {
        for l in self.listeners {
            match &last {
                Some(e) => l.sink.push_last(SubItem::End(e.clone())),
                None => l.sink.close(),
            }
        }
        for w in self.waiters {
            let _ = w.send(waiter());
        }
    }
}

enum Pending {
    Request {
        reply: oneshot::Sender<Result<Value, Error>>,
        kind: ReplyKind,
        deadline: Instant,
    },
    Subscribe {
        channel: String,
    },
}

/// What to do with a command when not connected.
#[derive(PartialEq, Eq)]
enum Offline {
    Nothing,
    NeedsServer,
    Shutdown,
}

enum Connect {
    Opened(Box<Opened>, Option<String>),
    Failed(Failure),
    Shutdown,
}

enum Ended {
    Lost(Failure),
    Shutdown,
}

enum Next {
    Now,
    After(Duration),
    Idle,
}

/// The connection task. See the module documentation.
pub(crate) struct Task {
    uri: Uri,
    config: ClientConfig,
    shared: Arc<Shared>,
    cmd_rx: mpsc::Receiver<Command>,
    replies_tx: mpsc::UnboundedSender<ProcReply>,
    replies_rx: mpsc::UnboundedReceiver<ProcReply>,
    next_cid: u64,
    generation: u64,
    channels: HashMap<String, Channel>,
    pending: HashMap<u64, Pending>,
    outbox: VecDeque<Request>,
    /// Frames to write on the open connection.
    out: Vec<Bytes>,
    backoff: Backoff,
    /// Told the outcome of the first attempt; set when `connect()` waits.
    first: Option<oneshot::Sender<Result<(), Error>>>,
    close_done: Vec<oneshot::Sender<()>>,
}

impl Task {
    pub(crate) fn new(
        uri: Uri,
        config: ClientConfig,
        shared: Arc<Shared>,
        cmd_rx: mpsc::Receiver<Command>,
        first: Option<oneshot::Sender<Result<(), Error>>>,
    ) -> Self {
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let backoff = Backoff::new(config.reconnect.clone());
        Self {
            uri,
            config,
            shared,
            cmd_rx,
            replies_tx,
            replies_rx,
            next_cid: 1,
            generation: 0,
            channels: HashMap::new(),
            pending: HashMap::new(),
            outbox: VecDeque::new(),
            out: Vec::new(),
            backoff,
            first,
            close_done: Vec::new(),
        }
    }

    /// Runs until the client is closed.
    pub(crate) async fn run(mut self) {
        let mut next = Next::Now;
        loop {
            match next {
                Next::Now => {}
                Next::After(delay) => {
                    self.set_state(ConnectionState::Reconnecting);
                    if self.wait_offline(Some(delay)).await == Offline::Shutdown {
                        break;
                    }
                }
                Next::Idle => {
                    self.set_state(ConnectionState::Idle);
                    if self.wait_offline(None).await == Offline::Shutdown {
                        break;
                    }
                }
            }
            self.set_state(ConnectionState::Connecting);
            self.shared.emit(ClientEvent::Connecting);
            let failure = match self.connect().await {
                Connect::Shutdown => break,
                Connect::Failed(f) => {
                    tracing::debug!(code = f.code, reason = %f.reason, "connection attempt failed");
                    self.shared.emit(ClientEvent::Closed {
                        code: f.code,
                        reason: f.reason.clone(),
                    });
                    self.fail_outbox(&f);
                    if let Some(first) = self.first.take() {
                        let err = if f.code == 4007 {
                            Error::Timeout
                        } else {
                            Error::bad_connection(f.code, f.reason)
                        };
                        let _ = first.send(Err(err));
                        break;
                    }
                    f
                }
                Connect::Opened(opened, token) => {
                    self.backoff.reset();
                    match self.run_open(*opened, token).await {
                        Ended::Shutdown => break,
                        Ended::Lost(f) => {
                            tracing::debug!(code = f.code, reason = %f.reason, "connection lost");
                            self.on_lost(&f);
                            f
                        }
                    }
                }
            };
            next = self.schedule(failure.code);
            match next {
                Next::Now => self.shared.emit(ClientEvent::Reconnecting {
                    attempt: self.backoff.attempt(),
                    delay: Duration::ZERO,
                }),
                Next::After(delay) => self.shared.emit(ClientEvent::Reconnecting {
                    attempt: self.backoff.attempt(),
                    delay,
                }),
                Next::Idle => {}
            }
        }
        self.shutdown();
    }

    /// What follows a connection closed with `code`.
    fn schedule(&mut self, code: u16) -> Next {
        if !self.config.reconnect.enabled || code == close::NORMAL || code >= 4500 {
            return Next::Idle;
        }
        let urgent = matches!(code, close::PING_TIMEOUT | close::PONG_TIMEOUT | 1005);
        if urgent && self.backoff.attempt() == 0 {
            self.backoff.skip();
            Next::Now
        } else {
            Next::After(self.backoff.next_delay())
        }
    }

    fn set_state(&self, state: ConnectionState) {
        self.shared.status.send_if_modified(|s| {
            let changed = s.state != state;
            s.state = state;
            if state != ConnectionState::Open {
                s.id = None;
            }
            changed
        });
    }

    fn cid(&mut self) -> u64 {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        cid
    }

    // ---- not connected ----

    /// Waits for `delay` (or, when `None`, for a call that needs the server),
    /// handling commands meanwhile.
    async fn wait_offline(&mut self, delay: Option<Duration>) -> Offline {
        let until = delay.map(|d| Instant::now() + d);
        loop {
            tokio::select! {
                _ = sleep_until(until.unwrap_or_else(far_future)), if until.is_some() => {
                    return Offline::Nothing;
                }
                cmd = self.cmd_rx.recv() => match self.handle_offline(cmd) {
                    Offline::Shutdown => return Offline::Shutdown,
                    Offline::NeedsServer if until.is_none() => return Offline::NeedsServer,
                    _ => {}
                },
            }
        }
    }

    fn handle_offline(&mut self, cmd: Option<Command>) -> Offline {
        let Some(cmd) = cmd else {
            return Offline::Shutdown;
        };
        match cmd {
            Command::Request(r) => {
                let now = Instant::now();
                // Keep the queue to what callers still wait for: during a long
                // outage it would otherwise grow with every fire-and-forget call.
                while self.outbox.front().is_some_and(|q| q.abandoned(now)) {
                    if let Some(Request {
                        reply: Some(reply), ..
                    }) = self.outbox.pop_front()
                    {
                        let _ = reply.send(Err(Error::Timeout));
                    }
                }
                if !r.abandoned(now) {
                    self.outbox.push_back(r);
                }
                Offline::NeedsServer
            }
            Command::Subscribe {
                channel,
                data,
                id,
                sink,
                ack,
            } => {
                self.add_listener(channel, data, id, sink, ack);
                Offline::NeedsServer
            }
            Command::Unsubscribe { channel } => {
                self.remove_channel(&channel, false);
                Offline::Nothing
            }
            Command::ListenerDropped { channel, id } => {
                self.remove_listener(&channel, id, false);
                Offline::Nothing
            }
            Command::Deauthenticate { done } => {
                self.forget_token(true);
                let _ = done.send(Ok(()));
                Offline::Nothing
            }
            Command::Connect => Offline::NeedsServer,
            Command::Close { done } => {
                self.close_done.push(done);
                Offline::Shutdown
            }
        }
    }

    /// One connection attempt under the connect timeout, taking commands
    /// meanwhile.
    async fn connect(&mut self) -> Connect {
        let token = match self.config.token_store.load() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the auth token; connecting without one");
                None
            }
        };
        let uri = self.uri.clone();
        let cid = self.cid();
        let max = self.config.max_message_size;
        let attempt_token = token.clone();
        let attempt =
            async move { connection::open(&uri, max, cid, attempt_token.as_deref()).await };
        tokio::pin!(attempt);
        let deadline = sleep_until(Instant::now() + self.config.connect_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                result = &mut attempt => {
                    return match result {
                        Ok(opened) => Connect::Opened(Box::new(opened), token),
                        Err(f) => Connect::Failed(f),
                    };
                }
                _ = &mut deadline => {
                    return Connect::Failed(Failure::new(4007, close::reason(4007)));
                }
                cmd = self.cmd_rx.recv() => {
                    if self.handle_offline(cmd) == Offline::Shutdown {
                        return Connect::Shutdown;
                    }
                }
            }
        }
    }

    /// Fails every queued, unsent request (a connection attempt failed).
    fn fail_outbox(&mut self, f: &Failure) {
        for r in self.outbox.drain(..) {
            if let Some(reply) = r.reply {
                let _ = reply.send(Err(Error::bad_connection(f.code, f.reason.clone())));
            }
        }
    }

    // ---- connected ----

    async fn run_open(&mut self, opened: Opened, token: Option<String>) -> Ended {
        self.generation = self.generation.wrapping_add(1);
        let Opened {
            mut ws,
            handshake,
            early,
        } = opened;
        let ping_timeout = match self.config.ping_timeout {
            PingTimeout::FromServer => {
                Some(handshake.ping_timeout.unwrap_or(defaults::PING_TIMEOUT))
            }
            PingTimeout::Fixed(d) => Some(d),
            PingTimeout::Disabled => None,
        };
        let mut liveness = Liveness::new(ping_timeout, Instant::now());
        self.on_handshake(handshake, token);
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
        for text in early {
            self.handle_text(&text);
        }
        self.resubscribe();
        self.flush_outbox();
        if let Err(f) = self.write_out(&mut ws).await {
            return Ended::Lost(f);
        }
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let deadline = liveness.deadline();
            tokio::select! {
                msg = ws.next() => {
                    let msg = match msg {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => return Ended::Lost(failure_of(&e)),
                        None => return Ended::Lost(Failure::new(1006, close::reason(1006))),
                    };
                    liveness.seen(Instant::now());
                    if let Some((code, reason)) = msg.as_close() {
                        let code = u16::from(code);
                        let reason = if reason.is_empty() {
                            close::reason(code).to_owned()
                        } else {
                            reason.to_owned()
                        };
                        // Let tokio-websockets echo the close and shut down.
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close()).await;
                        return Ended::Lost(Failure::new(code, reason));
                    }
                    if let Some(text) = msg.as_text() {
                        self.handle_text(text);
                    }
                }
                cmd = self.cmd_rx.recv() => {
                    let mut shutdown = self.handle_online(cmd);
                    let mut n = 1;
                    while !shutdown && n < COMMAND_BATCH {
                        match self.cmd_rx.try_recv() {
                            Ok(cmd) => shutdown = self.handle_online(Some(cmd)),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                    if shutdown {
                        let _ = self.write_out(&mut ws).await;
                        connection::close_with(&mut ws, close::NORMAL, "").await;
                        self.shared.emit(ClientEvent::Closed {
                            code: close::NORMAL,
                            reason: "Client closed the connection".to_owned(),
                        });
                        return Ended::Shutdown;
                    }
                }
                Some(reply) = self.replies_rx.recv() => self.on_proc_reply(reply),
                _ = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                    if liveness.expired(Instant::now()) {
                        tracing::debug!("no ping from the server within the ping timeout");
                        connection::close_with(&mut ws, close::PING_TIMEOUT, "").await;
                        return Ended::Lost(Failure::new(
                            close::PING_TIMEOUT,
                            close::reason(close::PING_TIMEOUT),
                        ));
                    }
                }
                _ = sweep.tick() => self.sweep(),
            }
            if let Err(f) = self.write_out(&mut ws).await {
                return Ended::Lost(f);
            }
        }
    }

    /// Writes and flushes the queued frames.
    async fn write_out(&mut self, ws: &mut Ws) -> Result<(), Failure> {
        if self.out.is_empty() {
            return Ok(());
        }
        for frame in self.out.drain(..) {
            ws.feed(connection::text(frame))
                .await
                .map_err(Failure::hung_up)?;
        }
        ws.flush().await.map_err(Failure::hung_up)
    }

    fn on_handshake(&mut self, hs: HandshakeInfo, token: Option<String>) {
        let was_authenticated = self.shared.status.borrow().authenticated;
        let token = token.filter(|_| hs.is_authenticated);
        if let Some(e) = &hs.auth_error
            && e.is_bad_token()
        {
            // The server also pushes #removeAuthToken; do not rely on it.
            if let Err(e) = self.config.token_store.remove() {
                tracing::warn!(error = %e, "cannot remove the refused auth token");
            }
        }
        self.shared.status.send_modify(|s| {
            s.state = ConnectionState::Open;
            s.id = Some(hs.id.clone());
            s.authenticated = hs.is_authenticated;
            s.signed_token = token;
        });
        self.shared.emit(ClientEvent::Open {
            id: hs.id,
            is_authenticated: hs.is_authenticated,
            auth_error: hs.auth_error,
        });
        if hs.is_authenticated {
            self.shared.emit(ClientEvent::Authenticated);
        } else if was_authenticated {
            self.shared.emit(ClientEvent::Deauthenticated);
        }
    }

    /// The connection was lost: report it, fail what was in flight, put the
    /// channels back to pending.
    fn on_lost(&mut self, f: &Failure) {
        self.shared.status.send_modify(|s| s.id = None);
        self.shared.emit(ClientEvent::Closed {
            code: f.code,
            reason: f.reason.clone(),
        });
        for (_, p) in self.pending.drain() {
            if let Pending::Request { reply, .. } = p {
                let _ = reply.send(Err(Error::bad_connection(f.code, f.reason.clone())));
            }
        }
        for ch in self.channels.values_mut() {
            ch.subscribed = false;
            ch.cid = None;
        }
        self.fail_outbox(f);
        self.out.clear();
    }

    /// Returns true when the client must shut down.
    fn handle_online(&mut self, cmd: Option<Command>) -> bool {
        let Some(cmd) = cmd else { return true };
        match cmd {
            Command::Request(r) => self.send_request(r),
            Command::Subscribe {
                channel,
                data,
                id,
                sink,
                ack,
            } => {
                if self.add_listener(channel.clone(), data, id, sink, ack) {
                    self.send_subscribe(&channel);
                }
            }
            Command::Unsubscribe { channel } => self.remove_channel(&channel, true),
            Command::ListenerDropped { channel, id } => self.remove_listener(&channel, id, true),
            Command::Deauthenticate { done } => {
                self.out.push(outbound::remove_auth_token());
                self.forget_token(true);
                let _ = done.send(Ok(()));
            }
            Command::Connect => {}
            Command::Close { done } => {
                self.close_done.push(done);
                return true;
            }
        }
        false
    }

    fn send_request(&mut self, r: Request) {
        let now = Instant::now();
        if r.abandoned(now) {
            if let Some(reply) = r.reply {
                let _ = reply.send(Err(Error::Timeout));
            }
            return;
        }
        let cid = r.reply.as_ref().map(|_| self.cid());
        let wire_cid = cid.map(Cid::from);
        let frame = match &r.frame {
            Frame::Event { event, data } => {
                outbound::request_raw(event, data.as_deref(), wire_cid.as_ref())
            }
            Frame::Publish { channel, data } => {
                outbound::publish_request(channel, data.as_deref(), wire_cid.as_ref())
            }
        };
        self.out.push(frame);
        if let (Some(cid), Some(reply)) = (cid, r.reply) {
            self.pending.insert(
                cid,
                Pending::Request {
                    reply,
                    kind: r.kind,
                    deadline: r.deadline,
                },
            );
        }
    }

    fn flush_outbox(&mut self) {
        while let Some(r) = self.outbox.pop_front() {
            self.send_request(r);
        }
    }

    // ---- channels ----

    /// Registers a listener; returns true when the channel is new (a
    /// `#subscribe` must be sent).
    fn add_listener(
        &mut self,
        channel: String,
        data: Option<Box<RawValue>>,
        id: u64,
        sink: QueueSender<SubItem>,
        ack: Option<oneshot::Sender<Result<(), Error>>>,
    ) -> bool {
        let listener = Listener { id, sink };
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.listeners.push(listener);
            if let Some(ack) = ack {
                if ch.subscribed {
                    let _ = ack.send(Ok(()));
                } else {
                    ch.waiters.push(ack);
                }
            }
            return false;
        }
        self.channels.insert(
            channel,
            Channel {
                data,
                subscribed: false,
                cid: None,
                listeners: vec![listener],
                waiters: ack.into_iter().collect(),
            },
        );
        true
    }

    fn send_subscribe(&mut self, name: &str) {
        let cid = self.cid();
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        ch.cid = Some(cid);
        ch.subscribed = false;
        self.out.push(outbound::subscribe_request(
            name,
            ch.data.as_deref(),
            Some(&Cid::from(cid)),
        ));
        self.pending.insert(
            cid,
            Pending::Subscribe {
                channel: name.to_owned(),
            },
        );
    }

    /// After a handshake: subscribe again to every channel still listened to.
    fn resubscribe(&mut self) {
        self.channels.retain(|_, ch| {
            ch.prune();
            !ch.listeners.is_empty() || !ch.waiters.is_empty()
        });
        let names: Vec<String> = self.channels.keys().cloned().collect();
        for name in names {
            self.send_subscribe(&name);
        }
    }

    /// Drops a channel: its streams end. With `online`, tells the server.
    fn remove_channel(&mut self, name: &str, online: bool) {
        let Some(ch) = self.channels.remove(name) else {
            return;
        };
        if let Some(cid) = ch.cid {
            self.pending.remove(&cid);
        }
        if online {
            self.out.push(outbound::unsubscribe_request(name, None));
        }
        ch.end(None, || Ok(()));
    }

    fn remove_listener(&mut self, name: &str, id: u64, online: bool) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        ch.listeners.retain(|l| l.id != id);
        ch.prune();
        if ch.listeners.is_empty() {
            self.remove_channel(name, online);
        }
    }

    fn deliver(&mut self, name: &str, data: Option<&RawValue>) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let data = raw_to_value(data);
        ch.listeners.retain(|l| !l.sink.is_gone());
        match ch.listeners.as_slice() {
            [] => {}
            [one] => {
                one.sink.push(SubItem::Publication(Publication {
                    channel: name.to_owned(),
                    data,
                }));
            }
            many => {
                for l in many {
                    l.sink.push(SubItem::Publication(Publication {
                        channel: name.to_owned(),
                        data: data.clone(),
                    }));
                }
            }
        }
        if ch.listeners.is_empty() && ch.waiters.is_empty() {
            self.remove_channel(name, true);
        }
    }

    fn on_subscribe_reply(&mut self, name: String, cid: u64, error: Option<&RawValue>) {
        let Some(ch) = self.channels.get_mut(&name) else {
            return;
        };
        if ch.cid != Some(cid) {
            return;
        }
        ch.cid = None;
        match error {
            None => {
                ch.subscribed = true;
                for w in ch.waiters.drain(..) {
                    let _ = w.send(Ok(()));
                }
            }
            Some(error) => {
                let payload = raw_to_error(error);
                tracing::debug!(channel = %name, error = %payload, "subscription refused");
                if let Some(ch) = self.channels.remove(&name) {
                    let err = payload.clone();
                    ch.end(Some(SubscriptionError::Rejected(payload.clone())), || {
                        Err(Error::Remote(err.clone()))
                    });
                }
                self.shared.emit(ClientEvent::SubscribeFailed {
                    channel: name,
                    error: payload,
                });
            }
        }
    }

    fn kicked_out(&mut self, name: &str, message: Option<&RawValue>) {
        let Some(ch) = self.channels.remove(name) else {
            return;
        };
        if let Some(cid) = ch.cid {
            self.pending.remove(&cid);
        }
        let message = message.map(|m| raw_to_value(Some(m)));
        ch.end(
            Some(SubscriptionError::KickedOut {
                message: message.clone(),
            }),
            || Ok(()),
        );
        self.shared.emit(ClientEvent::KickedOut {
            channel: name.to_owned(),
            message,
        });
    }

    // ---- inbound ----

    fn handle_text(&mut self, text: &str) {
        if text.is_empty() {
            // A ping: answer with a pong (also empty).
            self.out.push(Bytes::from_static(outbound::PING.as_bytes()));
            return;
        }
        let message = match inbound::parse(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "ignoring an unreadable message");
                return;
            }
        };
        for packet in message.into_packets() {
            match packet {
                Ok(p) => self.handle_packet(p),
                Err(e) => tracing::debug!(error = %e, "ignoring an unreadable frame"),
            }
        }
    }

    fn handle_packet(&mut self, packet: Packet<'_>) {
        match packet {
            Packet::Publish { channel, data, .. } => self.deliver(&channel, data),
            Packet::KickOut { channel, message } => self.kicked_out(&channel, message),
            Packet::SetAuthToken { cid, token } => {
                self.set_token(token);
                if let Some(cid) = cid {
                    self.out.push(outbound::ack(&cid));
                }
            }
            Packet::RemoveAuthToken { cid } => {
                self.forget_token(true);
                if let Some(cid) = cid {
                    self.out.push(outbound::ack(&cid));
                }
            }
            Packet::Response { rid, data, error } => self.on_response(&rid, data, error),
            Packet::Invoke {
                cid,
                procedure,
                data,
            } => self.on_invoke(cid, &procedure, data),
            Packet::Transmit { event, data } => {
                let delivered = self.shared.registry().deliver(&event, raw_to_value(data));
                if !delivered {
                    tracing::trace!(%event, "no receiver for a server transmit");
                }
            }
            Packet::Invalid {
                cid: Some(cid),
                error,
            } => self.out.push(outbound::reply_error(&cid, &error)),
            Packet::Handshake { cid: Some(cid), .. }
            | Packet::Authenticate { cid: Some(cid), .. }
            | Packet::Subscribe { cid: Some(cid), .. }
            | Packet::Unsubscribe { cid: Some(cid), .. } => {
                let error = ErrorPayload::new(
                    names::INVALID_ACTION,
                    "A client does not accept this request",
                );
                self.out.push(outbound::reply_error(&cid, &error));
            }
            _ => {}
        }
    }

    fn on_response(&mut self, rid: &Cid, data: Option<&RawValue>, error: Option<&RawValue>) {
        let Some(id) = rid.as_u64() else { return };
        match self.pending.remove(&id) {
            None => {}
            Some(Pending::Subscribe { channel }) => self.on_subscribe_reply(channel, id, error),
            Some(Pending::Request { reply, kind, .. }) => {
                let result = match error {
                    Some(e) => Err(Error::Remote(raw_to_error(e))),
                    None => Ok(raw_to_value(data)),
                };
                let result = match kind {
                    ReplyKind::Plain => result,
                    ReplyKind::Authenticate { token } => self.on_authenticate_reply(token, result),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn on_authenticate_reply(
        &mut self,
        token: String,
        result: Result<Value, Error>,
    ) -> Result<Value, Error> {
        match result {
            Ok(status) if status.get("isAuthenticated").and_then(Value::as_bool) != Some(false) => {
                self.set_token(token);
                Ok(status)
            }
            Ok(status) => {
                // Refused softly: {isAuthenticated: false, authError}.
                self.forget_token(false);
                let error = status
                    .get("authError")
                    .filter(|e| !e.is_null())
                    .cloned()
                    .map(ErrorPayload::from_value)
                    .unwrap_or_else(|| {
                        ErrorPayload::new(names::AUTH, "The server did not accept the token")
                    });
                Err(Error::Remote(error))
            }
            Err(e) => {
                // Refused outright (a bad token): the socket is not
                // authenticated any more. (A timeout or a lost connection
                // never reaches this point and changes nothing.)
                self.forget_token(false);
                Err(e)
            }
        }
    }

    fn on_invoke(&mut self, cid: Cid, procedure: &str, data: Option<&RawValue>) {
        let handler = self.shared.registry().procedures.get(procedure).cloned();
        let Some(handler) = handler else {
            let error = ErrorPayload::new(
                names::NO_SUCH_PROCEDURE,
                format!("The client has no handler for procedure {procedure}"),
            );
            self.out.push(outbound::reply_error(&cid, &error));
            return;
        };
        let data = raw_to_value(data);
        let replies = self.replies_tx.clone();
        let generation = self.generation;
        let procedure = procedure.to_owned();
        tokio::spawn(async move {
            let result = AssertUnwindSafe(async move { handler(data).await })
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    tracing::error!(%procedure, "procedure handler panicked");
                    Err(ErrorPayload::new(
                        "InternalError",
                        "The client's procedure handler failed",
                    ))
                });
            let _ = replies.send(ProcReply {
                generation,
                cid,
                result,
            });
        });
    }

    fn on_proc_reply(&mut self, reply: ProcReply) {
        if reply.generation != self.generation {
            // Its connection is gone; the call id means nothing on this one.
            return;
        }
        let frame = match reply.result {
            Ok(value) => {
                let raw = serde_json::value::to_raw_value(&value).ok();
                outbound::reply_raw(&reply.cid, raw.as_deref())
            }
            Err(error) => outbound::reply_error(&reply.cid, &error),
        };
        self.out.push(frame);
    }

    // ---- auth ----

    fn set_token(&mut self, token: String) {
        if let Err(e) = self.config.token_store.save(&token) {
            tracing::warn!(error = %e, "cannot save the auth token");
        }
        self.shared.status.send_modify(|s| {
            s.authenticated = true;
            s.signed_token = Some(token);
        });
        self.shared.emit(ClientEvent::Authenticated);
    }

    /// Drops the token from memory and, with `from_store`, from the store.
    fn forget_token(&mut self, from_store: bool) {
        if from_store && let Err(e) = self.config.token_store.remove() {
            tracing::warn!(error = %e, "cannot remove the auth token");
        }
        let mut was = false;
        self.shared.status.send_modify(|s| {
            was = s.authenticated;
            s.authenticated = false;
            s.signed_token = None;
        });
        if was {
            self.shared.emit(ClientEvent::Deauthenticated);
        }
    }

    // ---- housekeeping ----

    /// Forgets requests whose caller gave up and listeners that were dropped.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.pending.retain(|_, p| match p {
            Pending::Request {
                reply, deadline, ..
            } => !reply.is_closed() && now < *deadline,
            Pending::Subscribe { .. } => true,
        });
        let idle: Vec<String> = self
            .channels
            .iter_mut()
            .filter_map(|(name, ch)| {
                ch.prune();
                (ch.listeners.is_empty() && ch.waiters.is_empty()).then(|| name.clone())
            })
            .collect();
        for name in idle {
            self.remove_channel(&name, true);
        }
        self.shared.registry().receivers.retain(|_, list| {
            list.retain(|r| !r.is_gone());
            !list.is_empty()
        });
    }

    /// The client is closed: fail and end everything.
    fn shutdown(&mut self) {
        self.set_state(ConnectionState::Closed);
        self.shared.status.send_modify(|s| s.id = None);
        self.cmd_rx.close();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            match cmd {
                Command::Request(r) => {
                    if let Some(reply) = r.reply {
                        let _ = reply.send(Err(Error::Closed));
                    }
                }
                Command::Subscribe { sink, ack, .. } => {
                    sink.close();
                    if let Some(ack) = ack {
                        let _ = ack.send(Err(Error::Closed));
                    }
                }
                Command::Deauthenticate { done } => {
                    let _ = done.send(Err(Error::Closed));
                }
                Command::Close { done } => self.close_done.push(done),
                Command::Unsubscribe { .. }
                | Command::ListenerDropped { .. }
                | Command::Connect => {}
            }
        }
        for (_, p) in self.pending.drain() {
            if let Pending::Request { reply, .. } = p {
                let _ = reply.send(Err(Error::Closed));
            }
        }
        for r in self.outbox.drain(..) {
            if let Some(reply) = r.reply {
                let _ = reply.send(Err(Error::Closed));
            }
        }
        for (_, ch) in self.channels.drain() {
            ch.end(None, || Err(Error::Closed));
        }
        self.shared.registry().close_all();
        for sink in self.shared.event_sinks().drain(..) {
            sink.close();
        }
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(Error::Closed));
        }
        for done in self.close_done.drain(..) {
            let _ = done.send(());
        }
        tracing::debug!("herald-client task ended");
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// The close code a read error stands for.
fn failure_of(e: &tokio_websockets::Error) -> Failure {
    let code = match e {
        tokio_websockets::Error::Protocol(_) => close::PROTOCOL_ERROR,
        tokio_websockets::Error::PayloadTooLong { .. } => close::MESSAGE_TOO_BIG,
        _ => 1006,
    };
    Failure::new(code, e.to_string())
}

/// Frame data as a JSON value (`Null` when absent).
fn raw_to_value(raw: Option<&RawValue>) -> Value {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or(Value::Null)
}

fn raw_to_error(raw: &RawValue) -> ErrorPayload {
    ErrorPayload::from_value(serde_json::from_str(raw.get()).unwrap_or(Value::Null))
}
